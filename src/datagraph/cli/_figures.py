"""How a run's figures read in a terminal: counts, rates, durations, colours.

The live view (``_view``), the summary (``_summary``) and ``runs list`` format
figures with these, and ``figures_of`` puts them onto a flow's text graph, so a
figure reads the same wherever it is shown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.style import Style
from rich.text import Text

from .. import viz

if TYPE_CHECKING:
    from ..snapshot import ProcessorFigures, RunSnapshot, StreamFigures

__all__ = (
    "NONE",
    "elapsed",
    "figures_of",
    "first_line",
    "format_count",
    "format_duration",
    "format_rate",
    "rate_text",
    "run_duration",
    "run_title",
    "state_style",
)

#: The processor state whose colour each run status borrows.
_RUN_STATES = {
    "pending": "pending",
    "running": "running",
    "succeeded": "done",
    "failed": "failed",
    "cancelled": "cancelled",
    "corrupt": "failed",
    "failing": "failed",
    "cancelling": "cancelled",
}
NONE = "-"


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


def run_title(run_id: str, state: str, gap: str = " ") -> Text:
    """Return ``Run <id><gap><state>`` in bold, the state in its colour."""
    return Text.assemble(
        ("Run ", "bold"), (run_id, "bold cyan"), gap, (state, state_style(state))
    )


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


def elapsed(proc: ProcessorFigures, now: float) -> str:
    if proc.started is None:
        return NONE
    return format_duration((proc.ended or now) - proc.started)


def _run_times(snapshot: RunSnapshot) -> tuple[float | None, float | None]:
    """Return when the run's first processor started and its last one ended."""
    starts = [p.started for p in snapshot.processors.values() if p.started]
    ends = [p.ended for p in snapshot.processors.values() if p.ended]
    start = min(starts) if starts else None
    end = max(ends) if ends and snapshot.finished else None
    return start, end


def run_duration(snapshot: RunSnapshot) -> float | None:
    start, end = _run_times(snapshot)
    if start is None:
        return None
    return (end if end is not None else snapshot.taken_at) - start


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def rate_text(stream: StreamFigures) -> str | None:
    """Return the rate to show: recent while the stream is open, then its average.

    None for a flow input (its values were all there at the start) and for a
    stream with too few values, or written over too short a time, for a rate to
    mean anything.
    """
    if stream.producer is None:
        return None
    if not stream.ended:
        rate = stream.rate if stream.rate is not None else stream.average
        return None if rate is None else format_rate(rate)
    return None if stream.average is None else f"avg {format_rate(stream.average)}"


# ---------------------------------------------------------------------- graph figures


def figures_of(snapshot: RunSnapshot) -> viz.StaticFigures:
    """Turn a snapshot into figures that ``viz`` renderers draw onto a flow's graph.

    Every edge of a stream shows ``N written``, its rate (live, or the average once
    it has ended), its backlog when there is one, and whether it ended or failed;
    the edge to each reader adds ``read N``. Processors show their state.

    Args:
        snapshot: from ``Run.snapshot()``, or ``Run.follow()`` for recent rates.

    Returns:
        Figures for ``viz.to_text(graph, figures=...)`` and the other renderers.
    """
    streams: dict[str, str] = {}
    reads: dict[tuple[str, str], str] = {}
    for name, stream in snapshot.streams.items():
        parts = [f"{format_count(stream.written)} written"]
        rate = rate_text(stream)
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
