"""A run's live figures drawn in a terminal, with rich (the ``cli`` extra).

``datagraph watch``, ``datagraph run`` and ``datagraph runs show`` draw a
``RunSnapshot`` with these functions: a header, a table of streams (values
written, read by each reader, backlog, rate), a table of processors (state in
colour, attempt, instances, elapsed time, error), progress bars for the streams
whose total is known, and the flow's text graph with the same figures on it.

Everything but ``follow()`` and ``LiveView`` is a pure function of a snapshot (and
of the rates between snapshots), so a frame is the same wherever it is drawn.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import sys
from typing import TYPE_CHECKING, Any

import anyio
from rich import box
from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.style import Style
from rich.table import Table
from rich.text import Text

from . import viz
from ._errors import user_location
from .exceptions import DatagraphError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import TracebackType

    from rich.console import Console, RenderableType

    from .exceptions import UpstreamError
    from .run import Run
    from .snapshot import ProcessorFigures, RunSnapshot, StreamFigures

__all__ = (
    "LiveView",
    "Rates",
    "error_location",
    "figures_of",
    "follow",
    "format_count",
    "format_duration",
    "format_rate",
    "is_cancellation",
    "render_errors",
    "render_snapshot",
    "render_summary",
    "state_style",
    "unwrap",
)

#: The processor state whose colour each run status borrows.
_RUN_STATES = {
    "pending": "pending",
    "running": "running",
    "succeeded": "done",
    "failed": "failed",
    "cancelled": "cancelled",
    "corrupt": "failed",
}
_NONE = "-"
#: How the tables of a frame are laid out: compact, to fit 80 columns.
_TABLE: dict[str, Any] = {"show_edge": False, "pad_edge": False, "padding": (0, 1)}


# ------------------------------------------------------------------------ formatting


def state_style(state: str) -> Style:
    """Return the style of a processor state, or of a run status, in a terminal.

    The colour is the stroke colour of ``viz.STATE_COLORS`` (what the Mermaid and
    DOT drawings use), so a state looks the same in every view.
    """
    colors = viz.STATE_COLORS.get(_RUN_STATES.get(state, state))
    if colors is None:
        return Style(bold=True)
    return Style(color=colors[1], bold=True)


def format_count(count: int) -> str:
    """Return a count with thousands separators: ``12,345``."""
    return f"{count:,}"


def format_rate(rate: float) -> str:
    """Return values per second, short: ``0.5/s``, ``35/s``, ``1.2k/s``, ``3.4M/s``."""
    if rate >= 999_500:
        return f"{rate / 1e6:.1f}M/s"
    if rate >= 9_995:
        return f"{rate / 1e3:.0f}k/s"
    if rate >= 999.5:
        return f"{rate / 1e3:.1f}k/s"
    if rate >= 9.95:
        return f"{rate:.0f}/s"
    return f"{rate:.1f}/s"


def format_duration(seconds: float) -> str:
    """Return a duration, short: ``0.4s``, ``12.0s``, ``3m 05s``, ``2h 07m``."""
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def _elapsed(proc: ProcessorFigures, now: float) -> str:
    if proc.started is None:
        return _NONE
    return format_duration((proc.ended or now) - proc.started)


def _run_times(snapshot: RunSnapshot) -> tuple[float | None, float | None]:
    """Return when the run's first processor started and its last one ended."""
    starts = [p.started for p in snapshot.processors.values() if p.started]
    ends = [p.ended for p in snapshot.processors.values() if p.ended]
    start = min(starts) if starts else None
    end = max(ends) if ends and snapshot.finished else None
    return start, end


def _run_duration(snapshot: RunSnapshot) -> float | None:
    start, end = _run_times(snapshot)
    if start is None:
        return None
    return (end if end is not None else snapshot.taken_at) - start


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


# ------------------------------------------------------------------------------ rates


class Rates:
    """Values written per second on each stream, over the last few snapshots.

    Rates between two consecutive snapshots jump about; these are measured (with
    ``RunSnapshot.rates()``) from the newest snapshot at least ``window`` seconds
    older than the latest, or the oldest one seen.
    """

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._recent: collections.deque[RunSnapshot] = collections.deque()

    def add(self, snapshot: RunSnapshot) -> dict[str, float]:
        """Record a snapshot; return the rates up to it (empty for the first)."""
        recent = self._recent
        while len(recent) > 1 and snapshot.taken_at - recent[1].taken_at >= self.window:
            recent.popleft()
        rates = snapshot.rates(recent[0]) if recent else {}
        recent.append(snapshot)
        return rates


def _rate_text(
    stream: StreamFigures, snapshot: RunSnapshot, rates: Mapping[str, float] | None
) -> str | None:
    """Return the rate to show: live while the stream is open, then its average."""
    if stream.producer is None:
        return None  # a flow input: all its values were there at the start
    if not stream.ended:
        rate = (rates or {}).get(stream.name)
        return None if rate is None else format_rate(rate)
    proc = snapshot.processors.get(stream.producer)
    if proc is None or proc.started is None or proc.ended is None:
        return None
    spent = proc.ended - proc.started
    if spent <= 0 or not stream.written:
        return None
    return f"avg {format_rate(stream.written / spent)}"


# ---------------------------------------------------------------------- graph figures


def figures_of(
    snapshot: RunSnapshot, rates: Mapping[str, float] | None = None
) -> viz.StaticFigures:
    """Turn a snapshot into figures that ``viz`` renderers draw onto a flow's graph.

    Every edge of a stream shows ``N written``, its rate (live, or the average once
    it has ended), its backlog when there is one, and whether it ended or failed;
    the edge to each reader adds ``read N``. Processors show their state.

    Args:
        snapshot: from ``Run.snapshot()``.
        rates: values per second on each stream, e.g. ``snapshot.rates(earlier)``.

    Returns:
        Figures for ``viz.to_text(graph, figures=...)`` and the other renderers.
    """
    streams: dict[str, str] = {}
    reads: dict[tuple[str, str], str] = {}
    for name, stream in snapshot.streams.items():
        parts = [f"{format_count(stream.written)} written"]
        rate = _rate_text(stream, snapshot, rates)
        if rate is not None:
            parts.append(rate)
        if stream.backlog:
            parts.append(f"backlog {format_count(stream.backlog)}")
        if stream.failed:
            parts.append("failed")
        elif stream.ended:
            parts.append("ended")
        streams[name] = " · ".join(parts)
        for reader, count in stream.readers.items():
            reads[name, reader] = f"read {format_count(count)}"
    processors = {name: proc.status for name, proc in snapshot.processors.items()}
    return viz.StaticFigures(streams=streams, reads=reads, processors=processors)


# ---------------------------------------------------------------------------- a frame


def _header(snapshot: RunSnapshot) -> Text:
    procs = snapshot.processors.values()
    done = sum(p.status == "done" for p in procs)
    duration = _run_duration(snapshot)
    text = Text.assemble(
        ("Run ", "bold"),
        (snapshot.run_id, "bold cyan"),
        "  ",
        (snapshot.status, state_style(snapshot.status)),
    )
    if duration is not None:
        verb = "took" if snapshot.finished else "running for"
        text.append(f"  {verb} {format_duration(duration)}")
    text.append(f"  {done}/{len(procs)} processors done", style="dim")
    return text


def _readers_of(graph: viz.FlowGraph, stream: str) -> list[str]:
    return [e.reader for e in graph.edges_of(stream) if e.reader is not None]


def _streams_table(
    snapshot: RunSnapshot, graph: viz.FlowGraph, rates: Mapping[str, float] | None
) -> Table:
    table = Table(title="Streams", title_justify="left", box=box.SIMPLE_HEAD, **_TABLE)
    table.add_column("stream", style="bold", overflow="fold")
    table.add_column("from", overflow="fold")
    table.add_column("written", justify="right", no_wrap=True)
    table.add_column("read by", overflow="fold")
    table.add_column("backlog", justify="right", no_wrap=True)
    table.add_column("rate", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    outputs = set(graph.outputs)
    for name in graph.streams:
        stream = snapshot.streams.get(name)
        if stream is None:
            continue
        source = Text(stream.producer) if stream.producer else Text("input", "dim")
        read_by = Text()
        for reader in _readers_of(graph, name):
            count = stream.readers.get(reader)
            shown = _NONE if count is None else format_count(count)
            read_by.append(f"{reader} {shown}\n")
        if name in outputs:
            read_by.append("output\n", style="dim")
        read_by.rstrip()
        if stream.failed:
            state = Text("failed", state_style("failed"))
        elif stream.ended:
            state = Text("ended", state_style("done"))
        else:
            state = Text("open", state_style("running"))
        backlog = Text(format_count(stream.backlog))
        if stream.backlog:
            backlog.stylize("bold yellow")
        table.add_row(
            name,
            source,
            format_count(stream.written),
            read_by,
            backlog,
            _rate_text(stream, snapshot, rates) or _NONE,
            state,
        )
    return table


def _processors_table(snapshot: RunSnapshot, graph: viz.FlowGraph) -> Table:
    table = Table(
        title="Processors", title_justify="left", box=box.SIMPLE_HEAD, **_TABLE
    )
    table.add_column("processor", style="bold", overflow="fold")
    table.add_column("state", no_wrap=True)
    table.add_column("attempt", justify="right", no_wrap=True)
    table.add_column("instances", justify="right", no_wrap=True)
    table.add_column("elapsed", justify="right", no_wrap=True)
    table.add_column("error", overflow="fold")
    for node in graph.processors:
        proc = snapshot.processors.get(node.name)
        if proc is None:
            continue
        table.add_row(
            proc.name,
            Text(proc.status, state_style(proc.status)),
            str(proc.attempt) if proc.attempt else _NONE,
            str(proc.instances),
            _elapsed(proc, snapshot.taken_at),
            _processor_note(proc),
        )
    return table


def _processor_note(proc: ProcessorFigures) -> Text:
    """Its error; else where it waits for a worker, or how often it was taken over."""
    if proc.error:
        return Text(_first_line(proc.error), "red")
    if proc.where is not None:
        return Text(f"waiting for a worker: {proc.where}", "yellow")
    if proc.takeovers:
        return Text(f"taken over {proc.takeovers}x", "dim")
    return Text()


def _progress_table(snapshot: RunSnapshot, graph: viz.FlowGraph) -> Table | None:
    """Progress of each reader through each stream whose total is known.

    A stream's total is known once it has ended without failing: its producer is
    done (or it is a flow input, complete from the start).
    """
    table = Table(
        title="Progress", title_justify="left", show_header=False, box=None, **_TABLE
    )
    table.add_column("stream → reader", overflow="fold")
    table.add_column("bar", width=30)
    table.add_column("count", justify="right")
    table.add_column("percent", justify="right")
    rows = 0
    for name in graph.streams:
        stream = snapshot.streams.get(name)
        if stream is None or not stream.ended or stream.failed:
            continue
        total = stream.written
        for reader in _readers_of(graph, name):
            read = min(stream.readers.get(reader, 0), total)
            share = read / total if total else 1.0
            table.add_row(
                f"{name} → {reader}",
                ProgressBar(total=max(total, 1), completed=read if total else 1),
                f"{format_count(read)}/{format_count(total)}",
                f"{share:.0%}",
            )
            rows += 1
    return table if rows else None


_STATE_TAG = re.compile(r"\[(" + "|".join(viz.STATE_COLORS) + r")\]")


def _graph_text(
    snapshot: RunSnapshot, graph: viz.FlowGraph, rates: Mapping[str, float] | None
) -> Text:
    text = Text(viz.to_text(graph, figures=figures_of(snapshot, rates)).rstrip("\n"))
    for match in _STATE_TAG.finditer(text.plain):
        text.stylize(state_style(match.group(1)), match.start(), match.end())
    return text


def render_snapshot(
    snapshot: RunSnapshot,
    graph: viz.FlowGraph,
    rates: Mapping[str, float] | None = None,
) -> RenderableType:
    """Draw one frame of a run: header, streams, processors, progress and graph.

    Args:
        snapshot: from ``Run.snapshot()``.
        graph: ``viz.to_graph(run.plan)``: the order of streams and processors, and
            who reads what.
        rates: values per second on each stream (``Rates.add()``); without them
            open streams show no rate.

    Returns:
        A renderable for ``Console.print()`` or ``rich.live.Live``.
    """
    parts: list[RenderableType] = [
        _header(snapshot),
        Text(),
        _streams_table(snapshot, graph, rates),
        Text(),
        _processors_table(snapshot, graph),
    ]
    progress = _progress_table(snapshot, graph)
    if progress is not None:
        parts += [Text(), progress]
    parts += [Text(), _graph_text(snapshot, graph, rates)]
    return Group(*parts)


# ------------------------------------------------------------------ summary, errors


def error_location(traceback: str | None) -> str | None:
    """Return where the user's code raised a failure: ``path/to/file.py:12 in func``.

    See ``_errors.user_location``: the innermost frame that is not Datagraph's,
    the standard library's or an installed package's.
    """
    return user_location(traceback)


def render_summary(
    snapshot: RunSnapshot, errors: Mapping[str, UpstreamError] | None = None
) -> RenderableType:
    """Draw how a run ended: status, duration, outcomes, errors and where raised.

    One line per processor with its outcome; one per error, with the place in the
    user's code it was raised from (see ``error_location``).

    Args:
        snapshot: a snapshot of the finished run.
        errors: ``Run.errors()``; tells a processor that failed because a processor
            upstream did from the one that failed first.

    Returns:
        A renderable for ``Console.print()``.
    """
    errors = errors or {}
    duration = _run_duration(snapshot)
    head = Text.assemble(
        ("Run ", "bold"),
        (snapshot.run_id, "bold cyan"),
        " ",
        (snapshot.status, state_style(snapshot.status)),
    )
    if duration is not None:
        head.append(f" in {format_duration(duration)}")
    procs = list(snapshot.processors.values())
    name_width = max((len(p.name) for p in procs), default=0)
    state_width = max((len(p.status) for p in procs), default=0)
    lines: list[RenderableType] = []
    for proc in procs:
        notes = []
        if proc.where is not None:
            notes.append(f"waiting for a worker: {proc.where}")
        if proc.attempt > 1:
            notes.append(f"attempt {proc.attempt}")
        if proc.takeovers:
            notes.append(f"taken over {proc.takeovers}x")
        origin = errors.get(proc.name)
        if origin is not None and _failed_upstream(proc.name, origin):
            notes.append(f"after {origin.processor} failed")
        line = Text.assemble(
            "  ",
            (proc.name.ljust(name_width), "bold"),
            "  ",
            (proc.status.ljust(state_width), state_style(proc.status)),
            "  ",
            _elapsed(proc, snapshot.taken_at).rjust(6),
        )
        if notes:
            line.append(f"  ({', '.join(notes)})", style="dim")
        lines.append(line)
    parts: list[RenderableType] = [head, *lines]
    failed = [
        p
        for p in procs
        if p.error
        and p.status != "cancelled"
        and not p.error.startswith("Cancelled:")
        and not _failed_upstream(p.name, errors.get(p.name))
    ]
    if failed:
        parts.append(Text("Errors", style="bold red"))
        for proc in failed:
            line = Text.assemble(
                "  ", (proc.name, "bold"), ": ", (_first_line(proc.error or ""), "red")
            )
            parts.append(line)
            where = error_location(proc.traceback)
            if where is not None:
                parts.append(Text(f"    at {where}", style="dim"))
    return Group(*parts)


def _failed_upstream(name: str, origin: UpstreamError | None) -> bool:
    """Whether a processor failed only because one upstream of it did."""
    return (
        origin is not None
        and origin.processor != name
        and origin.error_type != "Cancelled"
    )


def render_errors(
    snapshot: RunSnapshot, errors: Mapping[str, UpstreamError] | None = None
) -> RenderableType | None:
    """Draw each failed processor's error with its full traceback, or None.

    Args:
        snapshot: a snapshot of the run.
        errors: ``Run.errors()``; a processor that failed only because one
            upstream of it did gets one line naming that one, not the same
            traceback again.
    """
    errors = errors or {}
    parts: list[RenderableType] = []
    for proc in snapshot.processors.values():
        if not proc.error:
            continue
        line = Text.assemble(
            (proc.name, "bold"), " ", (proc.status, state_style(proc.status)), ": "
        )
        origin = errors.get(proc.name)
        if origin is not None and _failed_upstream(proc.name, origin):
            line.append(f"after {origin.processor} failed ({_first_line(proc.error)})")
            parts += [line, Text()]
            continue
        line.append(proc.error, "red")
        parts.append(line)
        if proc.traceback:
            parts.append(Text(proc.traceback.rstrip("\n"), style="dim"))
        parts.append(Text())
    if not parts:
        return None
    return Group(Text("Errors", style="bold red"), *parts[:-1])


# ------------------------------------------------------------------ following a run


async def follow(
    run: Run,
    *,
    interval: float = 0.5,
    on_snapshot: Callable[[RunSnapshot, Mapping[str, float]], object] | None = None,
) -> RunSnapshot:
    """Take snapshots of a run every ``interval`` seconds until it has finished.

    A task waits for the run's end meanwhile, so the last snapshot is taken as
    soon as the run finishes rather than up to ``interval`` later.

    Args:
        run: a run, from any process attached to its store.
        interval: seconds between snapshots.
        on_snapshot: called with each snapshot and the rates up to it.

    Returns:
        The first snapshot that shows the run finished.
    """
    rates = Rates()
    ended = anyio.Event()

    async def wait_for_end() -> None:
        with contextlib.suppress(DatagraphError):  # failures are in the snapshot
            await run.wait()
        ended.set()

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait_for_end)
            while True:
                snapshot = await run.snapshot()
                figures = rates.add(snapshot)
                if on_snapshot is not None:
                    on_snapshot(snapshot, figures)
                if snapshot.finished:
                    tasks.cancel_scope.cancel()
                    return snapshot
                with anyio.move_on_after(interval):
                    if ended.is_set():  # ended, but not all recorded yet: poll
                        await anyio.sleep(interval)
                    else:
                        await ended.wait()
    except BaseExceptionGroup as group:
        # A store error, or Ctrl+C on trio: raise it as such, not in a group.
        raise unwrap(group) from None
    msg = "unreachable"  # pragma: no cover - the loop returns
    raise AssertionError(msg)  # pragma: no cover


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def unwrap(exc: BaseException) -> BaseException:
    """Return the one exception that an exception group (of a task group) stands for.

    ``KeyboardInterrupt`` first, then the first exception that is not a
    cancellation, then the first cancellation; anything but a group is returned
    as it is.
    """
    leaves = _leaves(exc)
    for leaf in leaves:
        if isinstance(leaf, KeyboardInterrupt):
            return leaf
    for leaf in leaves:
        if not is_cancellation(leaf):
            return leaf
    return leaves[0] if leaves else exc


def is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is asyncio's or trio's cancellation (no event loop needed)."""
    if isinstance(exc, asyncio.CancelledError):
        return True
    trio = sys.modules.get("trio")
    return trio is not None and isinstance(exc, trio.Cancelled)


class LiveView:
    """Frames of a run in a terminal, redrawn in place (``rich.live.Live``).

    On a console that is not a terminal (a pipe, a file, a test) nothing is drawn
    while the run goes on, and the last frame is printed when the view closes.

    Args:
        console: where to draw.
        graph: the run's flow, ``viz.to_graph(run.plan)``.
        enabled: False to draw nothing at all.
    """

    def __init__(
        self, console: Console, graph: viz.FlowGraph, *, enabled: bool = True
    ) -> None:
        self.console = console
        self.graph = graph
        self.enabled = enabled
        self.last: RenderableType | None = None
        self._live: Live | None = None

    def __enter__(self) -> LiveView:
        if self.enabled and self.console.is_terminal:
            self._live = Live(
                console=self.console,
                auto_refresh=False,
                vertical_overflow="ellipsis",
            )
            self._live.start()
        return self

    def show(self, snapshot: RunSnapshot, rates: Mapping[str, float]) -> None:
        """Draw a frame of the run (redraws in place on a terminal)."""
        if not self.enabled:
            return
        self.last = render_snapshot(snapshot, self.graph, rates)
        if self._live is not None:
            self._live.update(self.last, refresh=True)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()  # leaves the last frame on the screen
            self._live = None
        elif self.enabled and self.last is not None and exc is None:
            self.console.print(self.last)
