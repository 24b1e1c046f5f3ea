"""Live figures of a run: where its data is, and where it is stuck.

Everything here is read from what the runtime records anyway (stream lengths on
append, reader cursors on read, processor states), so watching a run costs the run
nothing.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .run import RunStatus

__all__ = ("ProcessorFigures", "RunSnapshot", "StreamFigures")

#: A processor's state as shown: ``waiting`` is a ``wait=True`` processor whose
#: inputs are not complete yet.
ProcessorStatus = Literal[
    "pending", "waiting", "running", "retrying", "done", "failed", "cancelled"
]


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


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunSnapshot:
    """The figures of every stream and processor of a run, taken together."""

    run_id: str
    status: RunStatus
    #: Wall-clock time the snapshot was taken.
    taken_at: float = dataclasses.field(default_factory=time.time)
    streams: Mapping[str, StreamFigures]
    processors: Mapping[str, ProcessorFigures]

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
        """Whether the run has ended (succeeded, failed or cancelled)."""
        return self.status in ("succeeded", "failed", "cancelled") and all(
            p.status in ("done", "failed", "cancelled")
            for p in self.processors.values()
        )
