"""The live view of a run in a terminal: one frame per snapshot, redrawn in place.

``datagraph watch``, ``datagraph run`` and ``datagraph runs show`` draw a
``RunSnapshot`` with ``render_snapshot``: a header, a table of processors (state
in colour, attempt, instances, elapsed time, error), progress bars for the streams
whose total is known, and the flow's text graph with each stream's figures on it.
``LiveView`` redraws the frames in place on a terminal.
"""

from __future__ import annotations

import collections
import contextlib
import re
from typing import TYPE_CHECKING, Any

import anyio
from rich import box
from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .. import viz
from ..exceptions import DatagraphError
from ._common import unwrap
from ._figures import (
    NONE,
    elapsed,
    figures_of,
    first_line,
    format_count,
    format_duration,
    rate_text,
    run_duration,
    state_style,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import TracebackType

    from rich.console import Console, RenderableType

    from ..run import Run
    from ..snapshot import ProcessorFigures, RunSnapshot

__all__ = ("LiveView", "render_snapshot")

#: How the tables of a frame are laid out: compact, to fit 80 columns.
_TABLE: dict[str, Any] = {"show_edge": False, "pad_edge": False, "padding": (0, 1)}

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


# ---------------------------------------------------------------------------- a frame


def _header(snapshot: RunSnapshot) -> Text:
    procs = snapshot.processors.values()
    done = sum(p.status == "done" for p in procs)
    duration = run_duration(snapshot)
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
            shown = NONE if count is None else format_count(count)
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
            rate_text(stream, snapshot, rates) or NONE,
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
            str(proc.attempt) if proc.attempt else NONE,
            str(proc.instances),
            elapsed(proc, snapshot.taken_at),
            _processor_note(proc),
        )
    return table


def _processor_note(proc: ProcessorFigures) -> Text:
    """Its error; else where it waits for a worker, or how often it was taken over."""
    if proc.error:
        return Text(first_line(proc.error), "red")
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
