"""The ``datagraph`` command line: draw flows (and, later, run and watch them).

Needs the ``cli`` extra: ``pip install 'datagraph[cli]'``. Every command reports a
user's mistake (a bad import path, a flow with a cycle, an unreachable store) as one
red line on stderr and exits with status 1, never with a traceback.

Commands are plain functions registered on ``app``; the helpers above them (finding
a flow by import path, the ``--redis-url`` option and the supervisor it names,
running async code on a chosen backend) are shared by all of them.
"""

from __future__ import annotations

import contextlib
import enum
import importlib
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path  # noqa: TC003 - typer reads annotations at run time
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

try:
    import typer
    from rich.console import Console
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    _msg = f"the datagraph command needs typer and rich ({exc}); install them with "
    raise ImportError(_msg + "pip install 'datagraph[cli]'") from exc

from . import viz
from .exceptions import DatagraphError
from .flow import Flow
from .processor import Processor

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    from .supervisor import Supervisor

__all__ = (
    "Backend",
    "BackendOption",
    "CliError",
    "GraphFormat",
    "RedisUrlOption",
    "app",
    "fail",
    "locate_flow",
    "main",
    "make_supervisor",
    "reported_errors",
    "run_async",
    "stderr_console",
)

T = TypeVar("T")

app = typer.Typer(
    name="datagraph",
    help="Draw, run and watch Datagraph flows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


# ---------------------------------------------------------------------------- errors


class CliError(Exception):
    """A problem to report to the user in one line, without a traceback."""


def fail(message: str) -> NoReturn:
    """Print ``Error: <message>`` in red on stderr, as one line, and exit with 1.

    Raises:
        typer.Exit: always, with code 1.
    """
    line = " ".join(message.split())  # one line, whatever the message holds
    stderr_console().print(f"Error: {line}", style="bold red", markup=False)
    raise typer.Exit(1)


def stderr_console() -> Console:
    """Return a console on stderr for messages: no wrapping, no auto-highlighting.

    Created per call so it writes to whatever ``sys.stderr`` is at the time (tests
    swap it).
    """
    return Console(stderr=True, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn the errors a user can fix into one red line and exit status 1.

    Wrap the body of every command in it: ``CliError``, every ``DatagraphError``
    (a cycle, an unknown run, an unreachable store...) and ``OSError`` (a file
    that cannot be written) are reported; anything else is a bug and keeps its
    traceback.
    """
    try:
        yield
    except (CliError, DatagraphError, OSError) as exc:
        fail(str(exc) or type(exc).__name__)


# ------------------------------------------------------------------- finding a flow


def locate_flow(target: str) -> Flow:
    """Find a flow by its import path, ``package.module:attribute``.

    The attribute may be dotted (``module:Flows.etl``) and is either a ``Flow``
    or a callable taking no arguments that returns one. The current directory is
    importable, as for ``python -m``. An unresolved flow is resolved.

    Args:
        target: ``module:attribute``.

    Returns:
        The resolved flow.

    Raises:
        CliError: the path is malformed, the module cannot be imported, the
            attribute is missing, or it is not a flow.
        FlowError: resolving the flow failed (a cycle, two producers of a stream).
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        msg = (
            f"{target!r} is not an import path of a flow: write MODULE:ATTRIBUTE, "
            "e.g. myapp.flows:etl"
        )
        raise CliError(msg)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (
            module_name == exc.name or module_name.startswith(f"{exc.name}.")
        ):
            msg = (
                f"cannot import module {module_name!r} (from {target!r}): no module "
                f"named {exc.name!r}; check the spelling, and run from the directory "
                "that contains it or install it"
            )
            raise CliError(msg) from exc
        msg = f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        raise CliError(msg) from exc
    except Exception as exc:  # the user's module raised while being imported
        msg = f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        raise CliError(msg) from exc
    found: Any = module
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            msg = f"{module_name!r} has no attribute {attr!r} (from {target!r})"
            raise CliError(msg) from None
    if isinstance(found, Processor):
        msg = (
            f"{target} is a Processor, not a Flow; make a flow of it, e.g. "
            f"flow = Flow.from_processors({attr.rpartition('.')[2]}, ...)"
        )
        raise CliError(msg)
    if not isinstance(found, Flow) and callable(found) and not isinstance(found, type):
        try:
            inspect.signature(found).bind()
        except TypeError as exc:
            msg = f"{target} must be a Flow or a function taking no arguments: {exc}"
            raise CliError(msg) from exc
        except ValueError:  # no signature to check (some builtins): just call it
            pass
        try:
            found = found()
        except DatagraphError:
            raise
        except Exception as exc:  # the user's factory failed
            msg = f"calling {target}() failed: {type(exc).__name__}: {exc}"
            raise CliError(msg) from exc
    if not isinstance(found, Flow):
        msg = (
            f"{target} is {type(found).__name__} {found!r:.60}, not a datagraph Flow "
            "(or a function returning one)"
        )
        raise CliError(msg)
    if not found.resolved:
        found.resolve()
    return found


# ------------------------------------------------- options shared by the commands

#: ``--redis-url``: where runs live; commands that reach a store take it.
RedisUrlOption = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        envvar="DATAGRAPH_REDIS_URL",
        help="Redis/Valkey URL of the store (default: the in-memory store).",
        show_default=False,
    ),
]


class Backend(enum.StrEnum):
    """The async library a command runs on."""

    asyncio = "asyncio"
    trio = "trio"


#: ``--backend``: the async library commands that run async code use.
BackendOption = Annotated[
    Backend,
    typer.Option("--backend", help="The async library to run on."),
]


def make_supervisor(redis_url: str | None) -> Supervisor:
    """Create the supervisor a command works with.

    Args:
        redis_url: a Redis/Valkey URL (``RedisUrlOption``); None for a new
            in-memory store.

    Returns:
        The supervisor (not attached to the process); ``await supervisor.aclose()``
        when done.

    Raises:
        CliError: the URL names no known store, or the ``redis`` extra is missing.
    """
    # Imported on use: --help and `graph` need no store.
    from .stores import MemoryStore
    from .supervisor import Supervisor

    try:
        if redis_url:
            return Supervisor(redis_config={"url": redis_url})
        return Supervisor(store=MemoryStore())
    except (LookupError, ImportError, ValueError, TypeError) as exc:
        raise CliError(str(exc)) from exc


def run_async(func: Callable[[], Awaitable[T]], backend: Backend) -> T:
    """Run an async function to completion on ``backend`` (from a sync command)."""
    import anyio

    async def call() -> T:
        return await func()

    return anyio.run(call, backend=backend.value)


# --------------------------------------------------------------------------- graph


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


@app.command()
def graph(
    target: Annotated[
        str,
        typer.Argument(
            metavar="MODULE:FLOW",
            help="Import path of a Flow, or of a function returning one, "
            "e.g. [cyan]myapp.flows:etl[/].",
            show_default=False,
        ),
    ],
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


# ---------------------------------------------------------------- other commands
#
# Further commands go here, one function each, registered with ``@app.command()``
# (or a sub-app: ``runs = typer.Typer(help=...); app.add_typer(runs, name="runs")``
# for ``datagraph runs list|show|cancel|purge``). Planned: ``run``, ``watch``,
# ``runs``, ``dashboard``. Each takes ``redis_url: RedisUrlOption = None`` (and
# ``backend: BackendOption = Backend.asyncio`` if it runs async code), builds its
# supervisor with ``make_supervisor(redis_url)``, runs async work with
# ``run_async(...)``, and wraps its body in ``with reported_errors():``.


@app.command()
def version() -> None:
    """Print the version of Datagraph and of the libraries it runs on."""
    from importlib import metadata

    from . import __version__

    parts = [f"datagraph {__version__}"]
    for dist in ("anyio", "trio", "valkey-glide"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            parts.append(f"{dist} {metadata.version(dist)}")
    parts.append(f"python {sys.version.split()[0]}")
    typer.echo(", ".join(parts))


def main() -> None:
    """Run the ``datagraph`` command (the console script's entry point)."""
    app()


if __name__ == "__main__":
    main()
