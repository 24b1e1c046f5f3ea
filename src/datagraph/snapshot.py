"""Live figures of a run: where its data is, and where it is stuck.

Everything here is read from what the runtime records anyway (stream lengths on
append, reader cursors on read, processor states), so watching a run costs the run
nothing. ``Run.snapshot()`` takes one ``RunSnapshot``; ``Run.follow()`` takes them
one after another until the run has finished, with each stream's recent rate
(``RateWindow``).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import time
from typing import TYPE_CHECKING, Literal

import anyio

from ._plan import FINISHED
from .exceptions import DatagraphError

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Mapping

    from .run import Run, RunStatus

__all__ = (
    "MIN_RATE_SPAN",
    "MIN_RATE_VALUES",
    "ProcessorFigures",
    "RateWindow",
    "RunPhase",
    "RunSnapshot",
    "StreamFigures",
    "average_rate",
    "follow",
)

#: A processor's state as shown: ``waiting`` is a ``wait=True`` processor whose
#: inputs are not complete yet.
ProcessorStatus = Literal[
    "pending", "waiting", "running", "retrying", "done", "failed", "cancelled"
]
#: A run's status as it reads while it goes on: ``failing`` and ``cancelling`` are
#: a failed or cancelled run some of whose processors have not stopped yet.
RunPhase = Literal[
    "pending",
    "running",
    "failing",
    "cancelling",
    "succeeded",
    "failed",
    "cancelled",
    "corrupt",
]
#: The run statuses that do not change any more once every processor has stopped.
_ENDED = frozenset({"succeeded", "failed", "cancelled"})
#: Fewer values than this, or a shorter time, and a rate says nothing.
MIN_RATE_VALUES = 2
MIN_RATE_SPAN = 0.2


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class StreamFigures:
    """One stream of a run at one moment."""

    name: str
    #: The processor writing it; None for a flow input.
    producer: str | None
    #: Values written so far.
    written: int
    ended: bool
    failed: bool
    #: Values consumed so far by each processor reading it (that has started).
    readers: Mapping[str, int]
    #: Values written but not yet read by the slowest reading processor.
    backlog: int
    #: Values written per second lately (its ``average`` until there is an
    #: earlier snapshot to measure from): only from ``Run.follow()`` or a
    #: ``RateWindow``, and only for an open stream a processor writes; else None.
    rate: float | None = None
    #: Values written per second over the time its producer has run (all of it,
    #: once the stream has ended); None for a flow input, and while there are too
    #: few values or too little time to tell (``MIN_RATE_VALUES``, ``MIN_RATE_SPAN``).
    average: float | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ProcessorFigures:
    """One processor of a run at one moment."""

    name: str
    status: ProcessorStatus
    attempt: int
    instances: int
    #: Wall-clock times (seconds since the epoch).
    started: float | None
    ended: float | None
    #: ``"Type: message"`` of its failure, and the original traceback text.
    error: str | None
    traceback: str | None
    #: Where a dispatched processor waits for a worker to start it (say, a
    #: Celery queue); None once it runs.
    where: str | None = None
    #: How many times a peer took it over after its worker was lost.
    takeovers: int = 0
    #: ``"Type: message"`` of each earlier attempt's failure, oldest first.
    history: tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        """Whether the processor has stopped for good (done, failed or cancelled)."""
        return self.status in FINISHED


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunSnapshot:
    """The figures of every stream and processor of a run, taken together."""

    run_id: str
    status: RunStatus
    #: Wall-clock time the snapshot was taken.
    taken_at: float = dataclasses.field(default_factory=time.time)
    streams: Mapping[str, StreamFigures]
    processors: Mapping[str, ProcessorFigures]
    #: When the run was started (seconds since the epoch), if the store says.
    created: float | None = None

    def rates(self, earlier: RunSnapshot) -> dict[str, float]:
        """Return values written per second on each stream since ``earlier``."""
        elapsed = self.taken_at - earlier.taken_at
        if elapsed <= 0:
            return dict.fromkeys(self.streams, 0.0)
        return {
            name: (fig.written - before.written) / elapsed
            if (before := earlier.streams.get(name)) is not None
            else 0.0
            for name, fig in self.streams.items()
        }

    @property
    def finished(self) -> bool:
        """Whether the run is over: it has ended and every processor has stopped.

        A run fails as soon as one processor does, while others may still be
        running (and writing); it is finished only once they have stopped too,
        and its figures no longer change. The one notion of "finished" that
        ``Run.follow()``, the command line and the dashboard go by.
        """
        return self.status in _ENDED and all(
            p.finished for p in self.processors.values()
        )

    @property
    def phase(self) -> RunPhase:
        """The run's status as it reads while it goes on.

        ``status`` says ``failed`` (or ``cancelled``) as soon as one processor
        failed (or the run was cancelled); ``phase`` says ``failing`` (or
        ``cancelling``) until every processor has stopped, then the same as
        ``status``.
        """
        if self.status == "failed" and not self.finished:
            return "failing"
        if self.status == "cancelled" and not self.finished:
            return "cancelling"
        return self.status


def average_rate(
    written: int, started: float | None, until: float | None
) -> float | None:
    """Return ``written`` values over the time from ``started`` to ``until``.

    None when there are too few values or too little time for a rate to mean
    anything (``MIN_RATE_VALUES``, ``MIN_RATE_SPAN``): one value written in 3 ms
    is no rate of 347/s.
    """
    if started is None or until is None or written < MIN_RATE_VALUES:
        return None
    span = until - started
    return written / span if span >= MIN_RATE_SPAN else None


class RateWindow:
    """The recent rate of each open stream of a run, from the snapshots it was shown.

    A snapshot holds counts; a rate needs an earlier count. The window keeps the
    snapshots of one run from the last ``window`` seconds and measures each
    stream's rate since the oldest of them, so the rate is the recent one however
    often snapshots are taken. Without an earlier snapshot (the first look at a
    run, or one taken less than ``MIN_RATE_SPAN`` before) an open stream's rate is
    its producer's average so far; a stream that has ended, and a flow input, have
    none.

    ``Run.follow()`` keeps one; keep your own to add rates to snapshots taken
    otherwise (say, one per request of a web page).

    Args:
        window: seconds of snapshots to measure over.
    """

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._recent: collections.deque[RunSnapshot] = collections.deque(maxlen=256)

    def add(self, snapshot: RunSnapshot) -> RunSnapshot:
        """Record ``snapshot``; return it with the rate of each open stream."""
        now, recent = snapshot.taken_at, self._recent
        # Too old, or newer than this one (the clock went back): no measure.
        while recent and not now - self.window <= recent[0].taken_at <= now:
            recent.popleft()
        earlier = (
            recent[0] if recent and now - recent[0].taken_at >= MIN_RATE_SPAN else None
        )
        recent.append(snapshot)
        streams = {}
        for name, stream in snapshot.streams.items():
            rate = None
            if stream.producer is not None and not stream.ended:
                before = earlier.streams.get(name) if earlier is not None else None
                if earlier is not None and before is not None:
                    gained = max(0, stream.written - before.written)
                    rate = gained / (now - earlier.taken_at)
                else:
                    rate = stream.average
            streams[name] = dataclasses.replace(stream, rate=rate)
        return dataclasses.replace(snapshot, streams=streams)


async def follow(
    run: Run, *, interval: float = 0.5, window: float = 2.0
) -> AsyncGenerator[RunSnapshot]:
    """Yield snapshots of a run, with rates, until it has finished.

    The implementation of ``Run.follow()``; see there.
    """
    rates = RateWindow(window)
    waited = False
    while True:
        snapshot = rates.add(await run.snapshot())
        yield snapshot
        if snapshot.finished:
            return
        if waited or snapshot.status in _ENDED:
            # Over, but not every processor has recorded its end yet: poll.
            await anyio.sleep(interval)
            continue
        # Wait for the run's end meanwhile: the last snapshot is then taken as
        # soon as it ends rather than up to ``interval`` later.
        with anyio.move_on_after(interval) as scope:
            with contextlib.suppress(DatagraphError):  # the snapshot tells
                await run.wait()
        waited = not scope.cancelled_caught
