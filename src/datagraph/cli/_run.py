"""``datagraph run`` and ``datagraph watch``: a run live, then its outcome.

``run`` starts a flow in this process, feeds it the values of ``--input`` and
``--input-file``, draws it live and writes its outputs as JSON lines; ``watch``
follows a run started by any process. Both end with a summary of the run.
"""

from __future__ import annotations

import json
import re
import sys
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import typer

from .. import viz
from ._common import (
    Backend,
    BackendOption,
    CliError,
    FlowArgument,
    IntervalOption,
    RedisUrlOption,
    RunIdArgument,
    SharedRedisUrlOption,
    exit_status,
    is_cancellation,
    locate_flow,
    opened_supervisor,
    reported_errors,
    require_redis,
    run_until_interrupted,
    stderr_console,
    stdout_console,
    unwrap,
)
from ._summary import render_summary
from ._view import LiveView

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..exceptions import UpstreamError
    from ..flow import Flow
    from ..io import IO, IOVal
    from ..run import Run
    from ..snapshot import RunSnapshot

__all__ = (
    "flow_inputs",
    "follow",
    "parse_value",
    "run_command",
    "watch",
    "write_outputs",
)


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
    from ..io import IOVal

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

    from ..exceptions import UpstreamError

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


async def follow(run: Run, view: LiveView, interval: float) -> RunSnapshot:
    """Show the run in ``view`` until it has finished; return its last snapshot."""
    async with aclosing(run.follow(interval=interval)) as snapshots:
        async for snapshot in snapshots:
            view.show(snapshot)
    return snapshot


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
                    view = LiveView(err, viz.to_graph(run.plan), enabled=live)
                    with view:
                        final = await follow(run, view, interval)
                except BaseException as exc:
                    stopped = unwrap(exc)
                    if isinstance(stopped, KeyboardInterrupt) or is_cancellation(
                        stopped
                    ):  # Ctrl+C: the run must not go on without its processors
                        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                            await run.cancel()
                            cancelled.append(run.id)
                    raise
                await write_outputs(run, directory)
                errors = await run.errors() if exit_status(final) else {}
                return final, errors

        final, errors = run_until_interrupted(
            body,
            backend,
            lambda: (
                "Interrupted" + (f": run {cancelled[0]} cancelled" if cancelled else "")
            ),
            style="bold red",
        )
        if live:
            err.print()  # after the last frame
        err.print(render_summary(final, errors))
    raise typer.Exit(exit_status(final))


# -------------------------------------------------------------------------- watch


def watch(
    run_id: RunIdArgument,
    redis_url: SharedRedisUrlOption = None,
    interval: IntervalOption = 0.5,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Watch a run live, from any process: its processors and streams.

    Per processor: its state, attempt, instances, elapsed time and error; per
    stream: values written, read by each reader, backlog and rate. Off a
    terminal, a line per change. Ends when the run does, with a summary. Exit
    status: 0 when the run succeeded, 1 when it failed or was cancelled.
    """
    with reported_errors():
        url = require_redis(redis_url, "watch")
        console = stdout_console()

        async def body() -> tuple[RunSnapshot, dict[str, UpstreamError]]:
            async with opened_supervisor(url) as supervisor:
                run = await supervisor.get_run(run_id)
                with LiveView(console, viz.to_graph(run.plan)) as view:
                    final = await follow(run, view, interval)
                errors = await run.errors() if exit_status(final) else {}
                return final, errors

        final, errors = run_until_interrupted(
            body, backend, lambda: f"Stopped watching run {run_id}; the run goes on"
        )
        console.print()
        console.print(render_summary(final, errors))
    raise typer.Exit(exit_status(final))
