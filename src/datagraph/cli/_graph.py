"""``datagraph graph``: draw a flow as text, Mermaid, DOT, SVG or PNG."""

from __future__ import annotations

import enum
import shutil
import subprocess
import sys
from pathlib import Path  # noqa: TC003 - typer reads annotations at run time
from typing import Annotated

import typer

from .. import viz
from ._common import (
    CliError,
    FlowArgument,
    locate_flow,
    reported_errors,
    stderr_console,
)

__all__ = ("GraphFormat", "graph", "render_graphviz")


class GraphFormat(enum.StrEnum):
    """What ``datagraph graph`` writes."""

    text = "text"
    mermaid = "mermaid"
    dot = "dot"
    svg = "svg"
    png = "png"


_SUFFIX_FORMATS = {
    ".txt": GraphFormat.text,
    ".mmd": GraphFormat.mermaid,
    ".mermaid": GraphFormat.mermaid,
    ".dot": GraphFormat.dot,
    ".gv": GraphFormat.dot,
    ".svg": GraphFormat.svg,
    ".png": GraphFormat.png,
}

GRAPHVIZ_MISSING = (
    "Graphviz's 'dot' program is needed for svg and png and is not on PATH; "
    "install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install "
    "graphviz; others: https://graphviz.org/download/) or use --format dot"
)


def render_graphviz(dot_source: str, fmt: str) -> bytes:
    """Render DOT source to an image with Graphviz's ``dot`` program.

    Args:
        dot_source: from ``viz.to_dot()``.
        fmt: ``svg``, ``png`` or any other ``dot -T`` format.

    Returns:
        The image.

    Raises:
        CliError: ``dot`` is not installed, or it failed.
    """
    exe = shutil.which("dot")
    if exe is None:
        raise CliError(GRAPHVIZ_MISSING)
    proc = subprocess.run(
        [exe, f"-T{fmt}"],
        input=dot_source.encode(),
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        why = proc.stderr.decode(errors="replace").strip() or f"exit {proc.returncode}"
        msg = f"Graphviz's dot failed: {why}"
        raise CliError(msg)
    return proc.stdout


def graph(
    target: FlowArgument,
    fmt: Annotated[
        GraphFormat | None,
        typer.Option(
            "--format",
            "-f",
            help="Output format; svg and png need Graphviz. "
            "[dim]Default: from the --output suffix, else text.[/]",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write to this file instead of stdout.",
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
) -> None:
    """Draw a flow: processors, the streams between them, its inputs and outputs.

    Processors that wait for complete inputs are drawn differently (a dashed
    hexagon); flow inputs and outputs have shapes of their own.
    """
    with reported_errors():
        if fmt is None:
            suffix = output.suffix.lower() if output else ""
            fmt = _SUFFIX_FORMATS.get(suffix, GraphFormat.text)
        flow_graph = viz.to_graph(locate_flow(target))
        data: str | bytes
        if fmt is GraphFormat.text:
            data = viz.to_text(flow_graph)
        elif fmt is GraphFormat.mermaid:
            data = viz.to_mermaid(flow_graph)
        elif fmt is GraphFormat.dot:
            data = viz.to_dot(flow_graph)
        else:
            if fmt is GraphFormat.png and output is None and sys.stdout.isatty():
                msg = "png is binary: write it to a file with --output FILE.png"
                raise CliError(msg)
            data = render_graphviz(viz.to_dot(flow_graph), fmt.value)
        if output is not None:
            if isinstance(data, str):
                output.write_text(data, encoding="utf-8")
            else:
                output.write_bytes(data)
            stderr_console().print(
                f"Wrote {output} ({fmt.value})", style="green", markup=False
            )
        elif isinstance(data, str):
            sys.stdout.write(data)
            sys.stdout.flush()
        else:
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
