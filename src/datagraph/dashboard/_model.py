"""What the dashboard's JSON API says about runs: plain dicts built from snapshots.

Nothing here knows about HTTP: the ASGI app (``_app``) serves these dicts, and the
tests can check them directly.
"""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING, Any

from ..exceptions import RunNotFoundError
from ..viz import STATE_COLORS, StaticFigures, to_graph, to_json

if TYPE_CHECKING:
    from ..run import Run
    from ..snapshot import RunSnapshot, StreamFigures
    from ..stores import Store

__all__ = ("RUN_STATUS_COLORS", "RateTracker", "created_at", "meta", "run_detail")

#: The field ``Supervisor.start_flow`` records the run's start time in.
_CREATED_FIELD = "created"
#: Snapshots kept per run at most, however often the run is looked at.
_MAX_SAMPLES = 256

#: A run's status drawn with the colours of the matching processor state.
RUN_STATUS_COLORS: dict[str, tuple[str, str]] = {
    "pending": STATE_COLORS["pending"],
    "running": STATE_COLORS["running"],
    "succeeded": STATE_COLORS["done"],
    "failed": STATE_COLORS["failed"],
    "cancelled": STATE_COLORS["cancelled"],
    "corrupt": STATE_COLORS["failed"],
}


async def created_at(store: Store, run_id: str) -> float | None:
    """Return when a run was started (seconds since the epoch).

    Returns:
        The time, or None when what is recorded is not a time.

    Raises:
        RunNotFoundError: the store holds no such run (any more): a handle on a
            run outlives its deletion, and its snapshot then shows nothing.
    """
    fields = await store.get_fields(run_id, [_CREATED_FIELD])
    raw = fields.get(_CREATED_FIELD)
    if raw is None:
        msg = f"no run {run_id!r} in the store"
        raise RunNotFoundError(msg)
    try:
        return float(raw.decode())
    except (UnicodeDecodeError, ValueError):
        return None


class RateTracker:
    """Values written per second on each stream, from the snapshots seen lately.

    A snapshot holds counts only; a rate needs an earlier count. The tracker keeps
    the snapshots of the last ``window`` seconds of each run it was shown (and of
    at most ``max_runs`` runs), so the rate of a stream still being written is the
    recent one, however many pages poll it. A stream with no earlier count (the
    first look at a run) gets its producer's average so far: values written over
    the time it has run. A stream that has ended has a rate of 0.
    """

    def __init__(self, *, window: float = 5.0, max_runs: int = 64) -> None:
        self.window = window
        self.max_runs = max_runs
        self._seen: collections.OrderedDict[
            str, collections.deque[tuple[float, dict[str, int]]]
        ] = collections.OrderedDict()

    def rates(self, snapshot: RunSnapshot) -> dict[str, float | None]:
        """Record ``snapshot`` and return the rate of each of its streams.

        Returns:
            Values per second by stream name; None for an open stream whose
            producer has not started.
        """
        now = snapshot.taken_at
        history = self._seen.get(snapshot.run_id)
        if history is None:
            history = collections.deque(maxlen=_MAX_SAMPLES)
            self._seen[snapshot.run_id] = history
            if len(self._seen) > self.max_runs:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(snapshot.run_id)
        while history and (history[0][0] < now - self.window or history[0][0] > now):
            history.popleft()
        earlier = history[0] if history and now - history[0][0] >= 0.2 else None
        history.append((now, {n: s.written for n, s in snapshot.streams.items()}))

        found: dict[str, float | None] = {}
        for name, stream in snapshot.streams.items():
            if stream.ended:
                found[name] = 0.0
            elif earlier is not None and name in earlier[1]:
                elapsed = now - earlier[0]
                found[name] = max(0, stream.written - earlier[1][name]) / elapsed
            else:
                found[name] = _average_rate(snapshot, stream)
        return found


def _average_rate(snapshot: RunSnapshot, stream: StreamFigures) -> float | None:
    producer = snapshot.processors.get(stream.producer or "")
    if producer is None or producer.started is None:
        return None
    elapsed = snapshot.taken_at - producer.started
    return stream.written / elapsed if elapsed > 0 else None


def _rate_text(rate: float | None) -> str | None:
    if rate is None:
        return None
    return f"{rate:.1f}/s" if rate < 10 else f"{rate:,.0f}/s"


def figures(snapshot: RunSnapshot, rates: dict[str, float | None]) -> StaticFigures:
    """Turn a snapshot into ``viz`` figures: the text terminal views draw too."""
    streams = {}
    reads = {}
    for name, stream in snapshot.streams.items():
        parts = [f"{stream.written:,} written"]
        if (rate := _rate_text(rates.get(name))) is not None:
            parts.append(rate)
        streams[name] = " · ".join(parts)
        for reader, count in stream.readers.items():
            reads[name, reader] = f"read {count:,} · backlog {stream.written - count:,}"
    return StaticFigures(
        streams=streams,
        reads=reads,
        processors={n: p.status for n, p in snapshot.processors.items()},
    )


def run_detail(
    run: Run,
    snapshot: RunSnapshot,
    *,
    created: float | None,
    rates: dict[str, float | None],
) -> dict[str, Any]:
    """Return everything the page shows of one run: its graph and live figures.

    Returns:
        ``{"id", "created", "status", "finished", "taken_at", "graph", "streams",
        "processors"}``: ``graph`` is ``viz.to_json()`` of the run's flow with the
        figures as labels; ``streams`` and ``processors`` hold the figures as
        numbers, by name.
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
            "rate": rates.get(name),
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
        "created": created,
        "status": snapshot.status,
        "finished": snapshot.finished,
        "taken_at": snapshot.taken_at,
        "graph": to_json(to_graph(plan), figures=figures(snapshot, rates)),
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
