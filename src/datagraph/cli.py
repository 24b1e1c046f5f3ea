"""The ``datagraph`` command line: draw, run, watch and manage flows and runs.

Needs the ``cli`` extra: ``pip install 'datagraph[cli]'``. Every command reports a
user's mistake (a bad import path, a flow with a cycle, an unknown run, an
unreachable store) as one red line on stderr and exits with status 1, never with a
traceback.

Commands are plain functions registered on ``app`` (``runs ...`` on ``runs_app``);
the helpers above them (finding a flow by import path, the ``--redis-url`` option
and the supervisor it names, running async code on a chosen backend) are shared by
all of them. ``datagraph._live`` draws runs in the terminal.

- ``graph MODULE:FLOW``: draw a flow (text, Mermaid, DOT, SVG, PNG).
- ``run MODULE:FLOW --input NAME=VALUE``: run a flow here, live, then its outputs.
- ``watch RUN_ID``: follow a run live, from any process, until it ends.
- ``runs list|show|cancel|purge``: manage the runs in a Redis/Valkey store.
- ``dashboard``: serve the web dashboard.
- ``version``.
"""

from __future__ import annotations

import contextlib
import datetime
import enum
import importlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import msgspec

try:
    import typer
    from rich.console import Console
    from rich.text import Text
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    _msg = f"the datagraph command needs typer and rich ({exc}); install them with "
    raise ImportError(_msg + "pip install 'datagraph[cli]'") from exc

from . import viz
from .exceptions import DatagraphError, RunFailedError
from .flow import Flow
from .processor import Processor

if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterator,
        Awaitable,
        Callable,
        Iterator,
        Sequence,
    )

    from .exceptions import UpstreamError
    from .io import IO, IOVal
    from .run import Run
    from .snapshot import RunSnapshot
    from .supervisor import Supervisor

__all__ = (
    "Backend",
    "BackendOption",
    "CliError",
    "GraphFormat",
    "RedisUrlOption",
    "SharedRedisUrlOption",
    "app",
    "fail",
    "flow_inputs",
    "locate_flow",
    "main",
    "make_supervisor",
    "opened_supervisor",
    "parse_value",
    "reported_errors",
    "require_redis",
    "run_async",
    "runs_app",
    "stderr_console",
    "stdout_console",
    "write_outputs",
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
            _quiet_glide()
            return Supervisor(redis_config={"url": redis_url})
        return Supervisor(store=MemoryStore())
    except (LookupError, ImportError, ValueError, TypeError) as exc:
        raise CliError(_PASSWORD.sub(r"\1***@", str(exc))) from exc


#: The password of a URL quoted in a message: ``scheme://user:PASSWORD@``.
_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def _quiet_glide() -> None:
    """Keep the Redis client's own log lines off the terminal.

    valkey-glide logs connection failures to stdout by itself; commands report
    them as one line (a ``StoreConnectionError``), and stdout may carry a run's
    outputs. A logger configured by the user's own code is left as it is.
    """
    with contextlib.suppress(ImportError):
        from glide import Logger, LogLevel

        Logger.init(LogLevel.OFF)


def run_async(func: Callable[[], Awaitable[T]], backend: Backend) -> T:
    """Run an async function to completion on ``backend`` (from a sync command)."""
    import anyio

    async def call() -> T:
        return await func()

    return anyio.run(call, backend=backend.value)


def run_until_interrupted(
    func: Callable[[], Awaitable[T]],
    backend: Backend,
    interrupted: Callable[[], str],
    style: str | None = None,
) -> T:
    """Like ``run_async``, but Ctrl+C prints ``interrupted()`` and exits with 130."""
    from . import _live

    try:
        return run_async(func, backend)
    except BaseException as exc:
        if not isinstance(_live.unwrap(exc), KeyboardInterrupt):
            raise
        stderr_console().print(interrupted(), style=style, markup=False)
        raise typer.Exit(130) from None


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


# ----------------------------------------------------------- run, watch and runs
#
# ``run`` starts a flow in this process (on any store); ``watch`` and ``runs``
# reach runs started by any process, so they need a store shared between
# processes: Redis/Valkey. All of them draw runs with ``_live``.

#: ``--redis-url`` of the commands that only make sense with a shared store.
SharedRedisUrlOption = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        envvar="DATAGRAPH_REDIS_URL",
        help="Redis/Valkey URL of the store the runs live in. [bold]Required[/]: "
        "runs in the in-memory store exist only inside the process running them.",
        show_default=False,
    ),
]

#: ``--interval``: how often the live view takes a snapshot of the run.
IntervalOption = Annotated[
    float,
    typer.Option(
        "--interval",
        min=0.05,
        help="Seconds between two snapshots of the run.",
    ),
]

RunIdArgument = Annotated[
    str,
    typer.Argument(
        metavar="RUN_ID",
        help="The id of a run, as printed by [cyan]datagraph run[/] or "
        "[cyan]datagraph runs list[/].",
        show_default=False,
    ),
]

FlowArgument = Annotated[
    str,
    typer.Argument(
        metavar="MODULE:FLOW",
        help="Import path of a Flow, or of a function returning one, "
        "e.g. [cyan]myapp.flows:etl[/].",
        show_default=False,
    ),
]

#: What a run's status is once it has ended.
_ENDED = ("succeeded", "failed", "cancelled")


def require_redis(redis_url: str | None, command: str) -> str:
    """Return the Redis URL a command needs, or explain why there must be one.

    Raises:
        CliError: no URL was given (nor set in ``DATAGRAPH_REDIS_URL``).
    """
    if not redis_url:
        msg = (
            f"'datagraph {command}' needs a Redis URL: pass --redis-url "
            "redis://HOST:6379/0 or set DATAGRAPH_REDIS_URL (runs in the in-memory "
            "store exist only inside the process that started them)"
        )
        raise CliError(msg)
    return redis_url


def stdout_console() -> Console:
    """Return a console on stdout for views: no auto-highlighting.

    Created per call so it writes to whatever ``sys.stdout`` is at the time.
    """
    return Console(highlight=False)


@contextlib.asynccontextmanager
async def opened_supervisor(redis_url: str | None) -> AsyncIterator[Supervisor]:
    """Make a supervisor (``make_supervisor``) and close its store afterwards."""
    import anyio

    supervisor = make_supervisor(redis_url)
    try:
        yield supervisor
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await supervisor.aclose()


def _exit_status(snapshot: RunSnapshot) -> int:
    """The exit status for a run that ended: 0 if it succeeded, else 1."""
    return 0 if snapshot.status == "succeeded" else 1


# ---------------------------------------------------------------------------- run


def parse_value(text: str) -> Any:
    """Return ``text`` parsed as JSON when it is JSON, else ``text`` itself.

    ``5`` is the number 5, ``[1, 2]`` a list, ``"5"`` the string 5, and ``hello``
    (not JSON) the string hello.
    """
    try:
        return json.loads(text)
    except ValueError:
        return text


def _name_value(option: str, item: str, what: str, example: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name:
        msg = f"{option} takes NAME={what}, e.g. {option} {example}; got {item!r}"
        raise CliError(msg)
    return name, value


def flow_inputs(
    flow: Flow, values: Sequence[str], files: Sequence[str]
) -> list[IOVal[Any]]:
    """Turn ``--input NAME=VALUE`` and ``--input-file NAME=PATH`` into inputs.

    Values of ``--input`` come first, in the order given, then the lines of each
    ``--input-file``, in order; each value or line is parsed by ``parse_value``.
    Blank lines are skipped.

    Raises:
        CliError: an option is not ``NAME=...``, or names no input of the flow.
        OSError: a file cannot be read.
    """
    from .io import IOVal

    pairs = [_name_value("--input", item, "VALUE", "count=5") for item in values]
    sources = [
        _name_value("--input-file", item, "PATH", "count=counts.jsonl")
        for item in files
    ]
    known = flow.plan.inputs
    for name in dict.fromkeys(name for name, _ in (*pairs, *sources)):
        if name not in known:
            its = f"its inputs are {', '.join(known)}" if known else "it has no inputs"
            msg = f"{name!r} is not an input of the flow; {its}"
            raise CliError(msg)
    found = [IOVal(name, parse_value(text)) for name, text in pairs]
    for name, path in sources:
        with Path(path).open(encoding="utf-8") as lines:
            found.extend(
                IOVal(name, parse_value(line.rstrip("\r\n")))
                for line in lines
                if line.strip()
            )
    return found


def _output_files(directory: Path, streams: Sequence[str]) -> dict[str, Path]:
    """Name a JSONL file in ``directory`` for each stream (names made safe)."""
    files: dict[str, Path] = {}
    taken: set[str] = set()
    for stream in streams:
        stem = re.sub(r"[^\w.-]+", "_", stream).strip("._") or "stream"
        name, count = stem, 1
        while name.lower() in taken:
            count += 1
            name = f"{stem}-{count}"
        taken.add(name.lower())
        files[stream] = directory / f"{name}.jsonl"
    return files


def _to_json(value: object) -> str:
    """One line of JSON; what JSON cannot hold is written as its ``str()``."""
    return msgspec.json.encode(value, enc_hook=str).decode()


async def _drain(handle: IO[Any], write: Callable[[str], object]) -> int:
    """Write each value of a stream as a line of JSON; return how many.

    A stream whose producer failed gives the values written before the failure.
    """
    from contextlib import aclosing

    from .exceptions import UpstreamError

    count = 0
    try:
        async with aclosing(handle.chunks()) as chunks:
            async for values in chunks:
                for value in values:
                    write(_to_json(value) + "\n")
                count += len(values)
    except UpstreamError:
        pass  # the failure is in the summary
    return count


async def write_outputs(run: Run, directory: Path | None) -> None:
    """Print the run's outputs on stdout, or write one JSONL file each.

    On stdout, each value is a line of JSON; when the run has several outputs,
    each line starts with the output's name and a tab (as ``grep`` prefixes lines
    with a file name when it searches several).
    """
    if directory is None:
        several = len(run) > 1
        for name, handle in run.items():
            prefix = f"{name}\t" if several else ""

            def write(line: str, prefix: str = prefix) -> None:
                sys.stdout.write(prefix + line)

            await _drain(handle, write)
        sys.stdout.flush()
        return
    files = _output_files(directory, list(run))
    for name, handle in run.items():
        path = files[name]
        with path.open("w", encoding="utf-8") as out:
            count = await _drain(handle, out.write)
        stderr_console().print(
            f"Wrote {path} ({count} value{'' if count == 1 else 's'})",
            style="green",
            markup=False,
        )


@app.command("run")
def run_command(
    target: FlowArgument,
    inputs: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            "-i",
            metavar="NAME=VALUE",
            help="A value of the flow input NAME, parsed as JSON when it is JSON "
            "(else a string). Repeat for several values, and for several inputs.",
            show_default=False,
        ),
    ] = None,
    input_files: Annotated[
        list[str] | None,
        typer.Option(
            "--input-file",
            metavar="NAME=PATH",
            help="Values of the flow input NAME, one per line of a JSON Lines file "
            "(a line that is not JSON is a string).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="DIR|-",
            help="Write one JSONL file per output into DIR (created if need be); "
            "[dim]default, or -: print the outputs on stdout.[/]",
            show_default=False,
        ),
    ] = None,
    all_outputs: Annotated[
        bool,
        typer.Option(
            "--all-outputs", help="Hand back every stream, not just the outputs."
        ),
    ] = False,
    redis_url: RedisUrlOption = None,
    backend: BackendOption = Backend.asyncio,
    live: Annotated[
        bool,
        typer.Option(
            "--live/--no-live",
            help="Draw the run's live view on stderr while it runs.",
        ),
    ] = True,
    interval: IntervalOption = 0.5,
) -> None:
    """Run a flow here, with a live view, then print or save its outputs.

    The flow's processors run in this process, so their module must register
    their implementations when imported. The run lives in the store of
    [cyan]--redis-url[/] (other processes can watch it) or else in memory. Exit
    status: 0 when the run succeeded, 1 when it failed.
    """
    from . import _live

    with reported_errors():
        flow = locate_flow(target)
        values = flow_inputs(flow, inputs or (), input_files or ())
        directory = None if output in (None, "-") else Path(str(output))
        if directory is not None:
            if directory.exists() and not directory.is_dir():
                msg = f"--output {directory}: not a directory"
                raise CliError(msg)
            directory.mkdir(parents=True, exist_ok=True)
        err = stderr_console()

        cancelled: list[str] = []  # the run, once cancelled by Ctrl+C

        async def body() -> tuple[RunSnapshot, dict[str, UpstreamError]]:
            import anyio

            async with opened_supervisor(redis_url) as supervisor:
                run = await supervisor.start_flow(flow, values, all_outputs=all_outputs)
                try:
                    err.print(f"Run {run.id} started", style="bold", markup=False)
                    view = _live.LiveView(err, viz.to_graph(run.plan), enabled=live)
                    with view:
                        final = await _live.follow(
                            run, interval=interval, on_snapshot=view.show
                        )
                except BaseException as exc:
                    stopped = _live.unwrap(exc)
                    if isinstance(stopped, KeyboardInterrupt) or _live.is_cancellation(
                        stopped
                    ):  # Ctrl+C: the run must not go on without its processors
                        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                            await run.cancel()
                            cancelled.append(run.id)
                    raise
                await write_outputs(run, directory)
                errors = await run.errors() if _exit_status(final) else {}
                return final, errors

        final, errors = run_until_interrupted(
            body,
            backend,
            lambda: (
                "Interrupted" + (f": run {cancelled[0]} cancelled" if cancelled else "")
            ),
            style="bold red",
        )
        err.print(_live.render_summary(final, errors))
    raise typer.Exit(_exit_status(final))


# -------------------------------------------------------------------------- watch


@app.command()
def watch(
    run_id: RunIdArgument,
    redis_url: SharedRedisUrlOption = None,
    interval: IntervalOption = 0.5,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Watch a run live, from any process: streams, processors, progress, graph.

    Per stream: values written, read by each reader, backlog and rate; per
    processor: its state, attempt, instances, elapsed time and error. Ends when
    the run does, with a summary. Exit status: 0 when the run succeeded, 1 when
    it failed or was cancelled.
    """
    from . import _live

    with reported_errors():
        url = require_redis(redis_url, "watch")
        console = stdout_console()

        async def body() -> tuple[RunSnapshot, dict[str, UpstreamError]]:
            async with opened_supervisor(url) as supervisor:
                run = await supervisor.get_run(run_id)
                with _live.LiveView(console, viz.to_graph(run.plan)) as view:
                    final = await _live.follow(
                        run, interval=interval, on_snapshot=view.show
                    )
                errors = await run.errors() if _exit_status(final) else {}
                return final, errors

        final, errors = run_until_interrupted(
            body, backend, lambda: f"Stopped watching run {run_id}; the run goes on"
        )
        console.print()
        console.print(_live.render_summary(final, errors))
    raise typer.Exit(_exit_status(final))


# --------------------------------------------------------------------------- runs

runs_app = typer.Typer(
    name="runs",
    help="List, show, cancel and delete the runs in a store (needs --redis-url).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(runs_app)


async def _created(supervisor: Supervisor, run_id: str) -> float | None:
    """When a run was started (seconds since the epoch), if the store says."""
    fields = await supervisor.store.get_fields(run_id, ["created"])
    try:
        return float(fields["created"])
    except (KeyError, ValueError):
        return None


def _local_time(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


@runs_app.command("list")
def runs_list(
    redis_url: SharedRedisUrlOption = None,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """List the runs in the store, oldest first: id, start, status, progress."""
    from rich import box
    from rich.table import Table

    from . import _live

    with reported_errors():
        url = require_redis(redis_url, "runs list")

        async def body() -> tuple[str, list[tuple[str, str, str, int, int]]]:
            rows: list[tuple[str, str, str, int, int]] = []
            async with opened_supervisor(url) as supervisor:
                for run in await supervisor.list_runs():
                    states = await run.states()
                    status = await run.status(states)
                    done = sum(s.status == "done" for s in states.values())
                    created = _local_time(await _created(supervisor, run.id))
                    rows.append((run.id, created, status, done, len(states)))
                return repr(supervisor.store), rows

        store, rows = run_async(body, backend)
        console = stdout_console()
        if not rows:
            console.print(f"No runs in {store}.", markup=False, soft_wrap=True)
            return
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        table.add_column("run id", style="cyan", no_wrap=True)
        table.add_column("created", no_wrap=True)
        table.add_column("status")
        table.add_column("done", justify="right")
        for run_id, created, status, done, total in rows:
            table.add_row(
                run_id,
                created,
                Text(status, _live.state_style(status)),
                f"{done}/{total}",
            )
        console.print(table)
        console.print(f"{len(rows)} run(s) in {store}", style="dim", soft_wrap=True)


@runs_app.command("show")
def runs_show(
    run_id: RunIdArgument,
    redis_url: SharedRedisUrlOption = None,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Show a run once: its streams, processors, graph, and errors in full."""
    from . import _live

    with reported_errors():
        url = require_redis(redis_url, "runs show")

        async def body() -> tuple[
            RunSnapshot, dict[str, UpstreamError], viz.FlowGraph, float | None
        ]:
            async with opened_supervisor(url) as supervisor:
                run = await supervisor.get_run(run_id)
                snapshot = await run.snapshot()
                failures = await run.errors()
                created = await _created(supervisor, run.id)
                return snapshot, failures, viz.to_graph(run.plan), created

        snapshot, failures, graph, created = run_async(body, backend)
        console = stdout_console()
        console.print(f"Created {_local_time(created)}", style="dim", markup=False)
        console.print(_live.render_snapshot(snapshot, graph))
        errors = _live.render_errors(snapshot, failures)
        if errors is not None:
            console.print()
            console.print(errors)


@runs_app.command("cancel")
def runs_cancel(
    run_id: RunIdArgument,
    redis_url: SharedRedisUrlOption = None,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Cancel a run, wherever its processors run.

    Processors not yet started never start; running ones stop at their next read
    or write. Cancelling a cancelled run again does nothing; a run that has
    already succeeded or failed cannot be cancelled (exit status 1).
    """
    with reported_errors():
        url = require_redis(redis_url, "runs cancel")

        async def body() -> str:
            async with opened_supervisor(url) as supervisor:
                run = await supervisor.get_run(run_id)
                status = await run.status()
                if status == "cancelled":
                    return f"Run {run_id} was already cancelled"
                if status in _ENDED:
                    msg = f"run {run_id} has already {status}: nothing to cancel"
                    raise CliError(msg)
                await run.cancel()
                return (
                    f"Cancelled run {run_id}; its running processors stop at their "
                    "next read or write"
                )

        stdout_console().print(run_async(body, backend), markup=False, soft_wrap=True)


@runs_app.command("resume")
def runs_resume(
    run_id: RunIdArgument,
    service: Annotated[
        str | None,
        typer.Option(
            "--service",
            metavar="MODULE",
            help="Import this module first: the one that attaches your services' "
            "Supervisor (with, say, a CeleryExecutor), or that implements the "
            "processors to run here.",
        ),
    ] = None,
    redis_url: SharedRedisUrlOption = None,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Run again the processors of a run that failed, were lost or cancelled.

    Completed streams are kept and partly written ones go on by position. With
    --service naming a module that attaches a Supervisor, its executor
    dispatches them (to Celery workers, say); otherwise they run in this command,
    which then waits for the run to end.
    """
    with reported_errors():
        url = require_redis(redis_url, "runs resume")
        if service is not None:
            _import_service(service)

        async def body() -> str:
            async with _service_supervisor(url) as supervisor:
                run = await supervisor.get_run(run_id)
                resumed = await run.resume()
                if not resumed:
                    msg = f"run {run_id} has no failed, lost or cancelled processor"
                    raise CliError(msg)
                if supervisor.executor.takes_over:
                    return f"Resumed run {run_id}: dispatched {', '.join(resumed)}"
                with contextlib.suppress(RunFailedError):
                    await run.wait()
                status = await run.status()
                return f"Resumed run {run_id} ({', '.join(resumed)}): {status}"

        stdout_console().print(run_async(body, backend), markup=False, soft_wrap=True)


def _import_service(module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        msg = f"cannot import the service module {module!r}: {exc}"
        raise CliError(msg) from exc


@contextlib.asynccontextmanager
async def _service_supervisor(redis_url: str) -> AsyncIterator[Supervisor]:
    """The supervisor a --service module attached, else one of the command's own."""
    from .supervisor import Supervisor

    attached = Supervisor._attached
    if attached is None:
        async with opened_supervisor(redis_url) as supervisor:
            yield supervisor
        return
    yield attached


@runs_app.command("purge")
def runs_purge(
    run_ids: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[RUN_ID]...", help="Runs to delete.", show_default=False
        ),
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Delete every run in the store.")
    ] = False,
    finished: Annotated[
        bool,
        typer.Option(
            "--finished",
            help="Delete every run that has ended (succeeded, failed or cancelled).",
        ),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes", "-y", help="Do not ask for confirmation (with --all, --finished)."
        ),
    ] = False,
    redis_url: SharedRedisUrlOption = None,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Delete runs from the store: their streams, states and claims.

    Name the runs, or pick them with [cyan]--finished[/] or [cyan]--all[/] (which
    ask for confirmation first, unless [cyan]--yes[/]).
    """
    with reported_errors():
        url = require_redis(redis_url, "runs purge")
        if run_ids and (every or finished):
            msg = "name runs to purge, or pass --all or --finished, not both"
            raise CliError(msg)
        if not run_ids and not (every or finished):
            msg = "name the runs to purge, or pass --all or --finished"
            raise CliError(msg)

        async def select() -> tuple[str, list[str], int]:
            async with opened_supervisor(url) as supervisor:
                if run_ids:
                    runs = [await supervisor.get_run(i) for i in dict.fromkeys(run_ids)]
                else:
                    runs = await supervisor.list_runs()
                chosen, going = [], 0
                for run in runs:
                    states = await run.states()
                    ended = await run.status(states) in _ENDED and all(
                        s.finished for s in states.values()
                    )
                    if finished and not ended:
                        continue
                    chosen.append(run.id)
                    going += not ended
                return repr(supervisor.store), chosen, going

        store, chosen, going = run_async(select, backend)
        console = stdout_console()
        if not chosen:
            console.print(f"No runs to purge in {store}.", markup=False, soft_wrap=True)
            return
        count = f"{len(chosen)} run{'' if len(chosen) == 1 else 's'}"
        if not run_ids and not yes:
            still = f", {going} of them still running" if going else ""
            try:
                confirmed = typer.confirm(
                    f"Delete {count} from {store}{still}?", err=True
                )
            except typer.Abort:  # no answer: stdin is closed, or Ctrl+C
                confirmed = False
            if not confirmed:
                msg = "not confirmed: nothing deleted (pass --yes to skip the question)"
                raise CliError(msg)

        async def delete() -> int:
            from .exceptions import RunNotFoundError

            deleted = 0
            async with opened_supervisor(url) as supervisor:
                for run_id in chosen:
                    with contextlib.suppress(RunNotFoundError):  # gone meanwhile
                        await supervisor.delete_run(run_id)
                        deleted += 1
            return deleted

        deleted = run_async(delete, backend)
        console.print(
            f"Deleted {deleted} run{'' if deleted == 1 else 's'} from {store}",
            markup=False,
            soft_wrap=True,
        )


# ---------------------------------------------------------------------- dashboard


@app.command()
def dashboard(
    host: Annotated[
        str, typer.Option("--host", help="Interface to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")
    ] = 8000,
    redis_url: RedisUrlOption = None,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Serve the web dashboard: the runs in the store, live, in a browser."""
    with reported_errors():
        try:
            module = importlib.import_module("datagraph.dashboard")
        except ModuleNotFoundError as exc:
            if exc.name in ("datagraph.dashboard", None):
                msg = (
                    "the dashboard is not available: this installation of Datagraph "
                    "has no datagraph.dashboard module"
                )
            else:
                msg = (
                    f"the dashboard needs {exc.name!r}, which is not installed; "
                    "install it with pip install 'datagraph[dashboard]'"
                )
            raise CliError(msg) from exc
        except ImportError as exc:
            msg = f"cannot load the dashboard: {type(exc).__name__}: {exc}"
            raise CliError(msg) from exc
        supervisor = make_supervisor(redis_url)
        if not redis_url:
            stderr_console().print(
                "No --redis-url: the dashboard shows the runs of an in-memory store "
                "of its own",
                style="yellow",
                markup=False,
            )
        try:
            module.serve(supervisor, host=host, port=port, backend=backend.value)
        except BaseException as exc:  # Ctrl+C may surface as a cancellation
            from . import _live

            stopped = _live.unwrap(exc)
            if not (
                isinstance(stopped, KeyboardInterrupt) or _live.is_cancellation(stopped)
            ):
                raise


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
