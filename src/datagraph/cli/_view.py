"""The live view of a run in a terminal: one frame per snapshot, on one screen.

``datagraph run``, ``datagraph watch`` and ``datagraph runs show`` draw a
``RunSnapshot`` with ``render_snapshot``: a header line, a table of processors
(state in colour, attempt, instances, elapsed time, error) and a table of streams
(writer, values written, readers and how far each has read, backlog, rate, state).
Each figure is shown once, and a frame of a flow of a few processors fits in an
80x24 terminal. ``LiveView`` redraws the frames in place on a terminal and prints
a line per change elsewhere (a pipe, a file, a CI log).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .. import viz
from ._figures import (
    NONE,
    elapsed,
    figures_of,
    first_line,
    format_count,
    format_duration,
    rate_text,
    run_duration,
    run_title,
    state_style,
)

if TYPE_CHECKING:
    from types import TracebackType

    from rich.console import Console, RenderableType

    from ..snapshot import ProcessorFigures, RunSnapshot

__all__ = ("LiveView", "progress_line", "render_snapshot")

#: How the tables of a frame are laid out: compact, to fit 80 columns.
_TABLE: dict[str, Any] = {
    "box": box.SIMPLE_HEAD,
    "show_edge": False,
    "pad_edge": False,
    "padding": (0, 1),
}


def _header(snapshot: RunSnapshot) -> Text:
    procs = snapshot.processors.values()
    done = sum(p.status == "done" for p in procs)
    duration = run_duration(snapshot)
    text = run_title(snapshot.run_id, snapshot.phase, gap="  ")
    if duration is not None:
        verb = "took" if snapshot.finished else "running for"
        text.append(f"  {verb} {format_duration(duration)}")
    text.append(f"  {done}/{len(procs)} processors done", style="dim")
    return text


def _readers_of(graph: viz.FlowGraph, stream: str) -> list[str]:
    return [e.reader for e in graph.edges_of(stream) if e.reader is not None]


def _processors_table(snapshot: RunSnapshot, graph: viz.FlowGraph) -> Table:
    table = Table(**_TABLE)
    table.add_column("processor", style="bold", overflow="fold")
    table.add_column("state", no_wrap=True)
    table.add_column("attempt", justify="right", no_wrap=True)
    table.add_column("instances", justify="right", no_wrap=True)
    table.add_column("elapsed", justify="right", no_wrap=True)
    # One line per processor, whatever its error says: the summary has it all.
    table.add_column("note", overflow="ellipsis", no_wrap=True)
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


def _streams_table(snapshot: RunSnapshot, graph: viz.FlowGraph) -> Table:
    table = Table(**_TABLE)
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
            rate_text(stream) or NONE,
            state,
        )
    return table


_STATE_TAG = re.compile(r"\[(" + "|".join(viz.STATE_COLORS) + r")\]")


def _shape(snapshot: RunSnapshot, graph: viz.FlowGraph) -> Text:
    """The flow's processors in order, what each reads and writes, and its state.

    The processor lines of ``viz.to_text``, without its list of streams: their
    figures are in the streams table already.
    """
    drawn = viz.to_text(graph, figures=figures_of(snapshot))
    text = Text(drawn.partition("\n\nStreams:")[0].rstrip("\n"))
    for match in _STATE_TAG.finditer(text.plain):
        text.stylize(state_style(match.group(1)), match.start(), match.end())
    return text


def render_snapshot(
    snapshot: RunSnapshot, graph: viz.FlowGraph, *, shape: bool = False
) -> RenderableType:
    """Draw one frame of a run: a header, its processors and its streams.

    Args:
        snapshot: from ``Run.snapshot()``, or ``Run.follow()`` for streams' rates
            (without, an open stream shows its writer's average).
        graph: ``viz.to_graph(run.plan)``: the order of streams and processors, and
            who reads what.
        shape: also draw the flow's shape (``viz.to_text``'s processor lines), for
            a frame shown once rather than redrawn.

    Returns:
        A renderable for ``Console.print()`` or ``rich.live.Live``.
    """
    parts: list[RenderableType] = [
        _header(snapshot),
        Text(),
        _processors_table(snapshot, graph),
        Text(),
        _streams_table(snapshot, graph),
    ]
    if shape:
        parts += [Text(), _shape(snapshot, graph)]
    return Group(*parts)


def progress_line(snapshot: RunSnapshot) -> str:
    """Return a run's figures as one plain line, for output that is no terminal.

    ``running for 2.4s · 2/4 processors done · files 300 (128/s) · loaded 25``:
    the run's phase and duration, then each stream a processor writes, with its
    rate when it has one.
    """
    procs = snapshot.processors.values()
    done = sum(p.status == "done" for p in procs)
    duration = run_duration(snapshot)
    head: str = snapshot.phase
    if duration is not None:
        verb = "took" if snapshot.finished else "for"
        head += f" {verb} {format_duration(duration)}"
    parts = [head, f"{done}/{len(procs)} processors done"]
    for name, stream in snapshot.streams.items():
        if stream.producer is None:
            continue
        rate = rate_text(stream)
        figure = f"{name} {format_count(stream.written)}"
        parts.append(f"{figure} ({rate})" if rate else figure)
    return " · ".join(parts)


class LiveView:
    """Frames of a run, redrawn in place on a terminal (``rich.live.Live``).

    On a terminal the frame is cut to the screen's height. Elsewhere (a pipe, a
    file, a CI log) a frame cannot be redrawn: each change of the figures prints a
    ``progress_line``, at most one every ``every`` seconds of the run, and the
    last frame is printed when the view closes.

    Args:
        console: where to draw.
        graph: the run's flow, ``viz.to_graph(run.plan)``.
        enabled: False to draw nothing at all.
        every: seconds between two progress lines, off a terminal.
    """

    def __init__(
        self,
        console: Console,
        graph: viz.FlowGraph,
        *,
        enabled: bool = True,
        every: float = 2.0,
    ) -> None:
        self.console = console
        self.graph = graph
        self.enabled = enabled
        self.every = every
        self.last: RenderableType | None = None
        self._live: Live | None = None
        self._printed: tuple[float, str] | None = None

    def __enter__(self) -> LiveView:
        if self.enabled and self.console.is_terminal:
            self._live = Live(
                console=self.console,
                auto_refresh=False,
                vertical_overflow="ellipsis",
            )
            self._live.start()
        return self

    def show(self, snapshot: RunSnapshot) -> None:
        """Draw a frame of the run (or a progress line, off a terminal)."""
        if not self.enabled:
            return
        self.last = render_snapshot(snapshot, self.graph)
        if self._live is not None:
            self._live.update(self.last, refresh=True)
            return
        if snapshot.finished:
            return  # the last frame follows
        line = progress_line(snapshot)
        figures = line.partition(" · ")[2]  # what changes, not the duration
        if self._printed is not None:
            at, before = self._printed
            if snapshot.taken_at - at < self.every or figures == before:
                return
        self._printed = (snapshot.taken_at, figures)
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

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
