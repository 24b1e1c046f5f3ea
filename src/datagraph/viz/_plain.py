"""Renderers of a flow's graph to plain forms: terminal text, and JSON values."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from ._figures import edge_label, state_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ._figures import Figures
    from ._graph import FlowGraph, Node

__all__ = ("to_json", "to_text")


# ----------------------------------------------------------------------------- text


def _table(rows: Iterable[tuple[str, ...]]) -> list[str]:
    """Align columns; the last column is not padded."""
    rows = list(rows)
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  " + "".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + r[-1]
        for r in rows
    ]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def to_text(graph: FlowGraph, *, figures: Figures | None = None) -> str:
    """Render the graph for a terminal, in plain text.

    One line per processor, in the order they run (what it reads, then what it
    writes; ``[in]`` and ``[out]`` mark the flow's inputs and outputs), then one
    line per stream and reader, with its figures when given::

        [in] numbers  --> double (waits for inputs)  --> [out] doubled

    Args:
        graph: from ``to_graph()``.
        figures: live figures of a run, shown on the lines.

    Returns:
        The text, ending with a newline.
    """
    inputs, outputs = set(graph.inputs), set(graph.outputs)

    def stream(name: str) -> str:
        if name in inputs:
            return f"[in] {name}"
        return f"[out] {name}" if name in outputs else name

    def proc(node: Node) -> str:
        notes = list(node.details)
        text = node.name + (f" ({', '.join(notes)})" if notes else "")
        state = state_of(node, figures)
        return text + (f" [{state}]" if state else "")

    read: dict[str, list[str]] = {}
    written: dict[str, list[str]] = {}
    for edge in graph.edges:
        if edge.reader is not None:
            read.setdefault(edge.reader, []).append(edge.stream)
        if edge.writer is not None and edge.stream not in written.get(edge.writer, ()):
            written.setdefault(edge.writer, []).append(edge.stream)
    procs = graph.processors
    head = (
        f"Flow: {_plural(len(procs), 'processor')}, "
        f"{_plural(len(inputs), 'input')}, {_plural(len(outputs), 'output')}"
    )
    lines = [head, ""]
    lines += _table(
        (
            ", ".join(stream(s) for s in read.get(node.name, ())) or "(no inputs)",
            "  -->  ",
            proc(node),
            "  -->  ",
            ", ".join(stream(s) for s in written.get(node.name, ())) or "(no outputs)",
        )
        for node in procs
    )
    lines += ["", "Streams:"]
    rows: list[tuple[str, ...]] = []
    for edge in graph.edges:
        source = "[in]" if edge.writer is None else edge.writer
        target = "[out]" if edge.reader is None else edge.reader
        extra = edge_label(edge, figures)
        rows.append(
            (edge.stream, "  ", source, " --> ", target, f"   {extra}" if extra else "")
        )
    lines += [line.rstrip() for line in _table(rows)]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- json


def to_json(graph: FlowGraph, *, figures: Figures | None = None) -> dict[str, Any]:
    """Render the graph as a dict of plain values, ready for ``json.dumps()``.

    Args:
        graph: from ``to_graph()``.
        figures: live figures of a run: adds ``state`` to processor nodes and
            ``label`` to edges.

    Returns:
        ``{"nodes": [...], "edges": [...], "inputs": [...], "outputs": [...]}``;
        each node has ``id``, ``kind``, ``name``, ``wait`` and ``retries``, each
        edge ``stream``, ``source``, ``target``, ``writer`` and ``reader``.
    """
    as_dict: Callable[[Any], dict[str, Any]] = dataclasses.asdict
    nodes = []
    for node in graph.nodes:
        item = as_dict(node)
        if figures is not None and node.kind == "processor":
            item["state"] = state_of(node, figures)
        nodes.append(item)
    edges = []
    for edge in graph.edges:
        item = as_dict(edge)
        if figures is not None:
            item["label"] = edge_label(edge, figures)
        edges.append(item)
    return {
        "nodes": nodes,
        "edges": edges,
        "streams": list(graph.streams),
        "inputs": list(graph.inputs),
        "outputs": list(graph.outputs),
    }
