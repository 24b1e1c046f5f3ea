"""What the dashboard's JSON API says about runs: plain dicts built from snapshots.

Nothing here knows about HTTP: the ASGI app (``_app``) serves these dicts, and the
tests can check them directly.
"""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING, Any

from ..snapshot import RateWindow
from ..viz import STATE_COLORS, StaticFigures, to_graph, to_json

if TYPE_CHECKING:
    from ..run import Run
    from ..snapshot import RunSnapshot, StreamFigures

__all__ = ("RUN_STATUS_COLORS", "RateTracker", "meta", "run_detail")

#: A run's status (or phase) drawn with the colours of the matching processor state.
RUN_STATUS_COLORS: dict[str, tuple[str, str]] = {
    "pending": STATE_COLORS["pending"],
    "running": STATE_COLORS["running"],
    "failing": STATE_COLORS["failed"],
    "cancelling": STATE_COLORS["cancelled"],
    "succeeded": STATE_COLORS["done"],
    "failed": STATE_COLORS["failed"],
    "cancelled": STATE_COLORS["cancelled"],
    "corrupt": STATE_COLORS["failed"],
}


class RateTracker:
    """A ``RateWindow`` for each run the dashboard was asked about lately.

    Pages ask for a run's figures by request, not by following it: the window of
    each run is kept between requests (for at most ``max_runs`` runs, the least
    recently asked about forgotten first), so a stream's rate is the recent one
    however many pages poll it.
    """

    def __init__(self, *, window: float = 5.0, max_runs: int = 64) -> None:
        self.window = window
        self.max_runs = max_runs
        self._seen: collections.OrderedDict[str, RateWindow] = collections.OrderedDict()

    def add(self, snapshot: RunSnapshot) -> RunSnapshot:
        """Record ``snapshot``; return it with the recent rate of each open stream."""
        rates = self._seen.get(snapshot.run_id)
        if rates is None:
            rates = self._seen[snapshot.run_id] = RateWindow(self.window)
            if len(self._seen) > self.max_runs:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(snapshot.run_id)
        return rates.add(snapshot)


def _rate_text(rate: float | None) -> str | None:
    if rate is None:
        return None
    return f"{rate:.1f}/s" if rate < 10 else f"{rate:,.0f}/s"


def figures(snapshot: RunSnapshot) -> StaticFigures:
    """Turn a snapshot into ``viz`` figures: the text terminal views draw too."""
    streams = {}
    reads = {}
    for name, stream in snapshot.streams.items():
        parts = [f"{stream.written:,} written"]
        if (rate := _rate_text(_rate(stream))) is not None:
            parts.append(rate)
        streams[name] = " · ".join(parts)
        for reader, count in stream.readers.items():
            reads[name, reader] = f"read {count:,} · backlog {stream.written - count:,}"
    return StaticFigures(
        streams=streams,
        reads=reads,
        processors={n: p.status for n, p in snapshot.processors.items()},
    )


def _rate(stream: StreamFigures) -> float | None:
    """The rate the page shows: 0 once the stream has ended (it moves no more)."""
    return 0.0 if stream.ended else stream.rate


def run_detail(run: Run, snapshot: RunSnapshot) -> dict[str, Any]:
    """Return everything the page shows of one run: its graph and live figures.

    Args:
        run: the run.
        snapshot: its snapshot, with rates (``RateTracker.add``).

    Returns:
        ``{"id", "created", "status", "phase", "finished", "taken_at", "graph",
        "streams", "processors"}``: ``phase`` is ``RunSnapshot.phase`` (what the
        badge says: ``failing`` while a failed run's processors still run);
        ``graph`` is ``viz.to_json()`` of the run's flow with the figures as
        labels; ``streams`` and ``processors`` hold the figures as numbers, by
        name.
    """
    plan = run.plan
    streams = {}
    for name, stream in snapshot.streams.items():
        readers = [p.name for p in plan.consumers_of(name)]
        streams[name] = {
            "name": name,
            "producer": stream.producer,
            "readers": readers,
            "written": stream.written,
            # Every reader, with 0 for one that has not started reading yet.
            "read": {r: stream.readers.get(r, 0) for r in readers},
            "backlog": stream.backlog,
            "rate": _rate(stream),
            "average": stream.average,
            "ended": stream.ended,
            "failed": stream.failed,
        }
    processors = {}
    for proc in plan.processors:
        figs = snapshot.processors[proc.name]
        processors[proc.name] = {
            "name": proc.name,
            "state": figs.status,
            "attempt": figs.attempt,
            "retries": proc.retries,
            "instances": figs.instances,
            "wait": proc.wait,
            "inputs": list(proc.inputs),
            "outputs": list(proc.outputs),
            "started": figs.started,
            "ended": figs.ended,
            "error": figs.error,
            "traceback": figs.traceback,
        }
    return {
        "id": run.id,
        "created": snapshot.created,
        "status": snapshot.status,
        "phase": snapshot.phase,
        "finished": snapshot.finished,
        "taken_at": snapshot.taken_at,
        "graph": to_json(to_graph(plan), figures=figures(snapshot)),
        "streams": streams,
        "processors": processors,
    }


def meta() -> dict[str, Any]:
    """Return what the page needs once: the colours of states and run statuses."""
    return {
        "state_colors": {s: list(c) for s, c in STATE_COLORS.items()},
        "run_status_colors": {s: list(c) for s, c in RUN_STATUS_COLORS.items()},
        "time": time.time(),
    }
