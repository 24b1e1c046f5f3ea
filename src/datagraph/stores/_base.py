"""The storage contract shared by every store.

A store holds the data of flow runs: for each run, named append-only streams of
encoded value batches, a few small metadata fields, and one-shot claims. Processors in
any process coordinate only through it.

Positions: every value of a stream has a position (0, 1, 2, ...). A producer appends
batches at explicit positions, so a producer that runs again (a retry, a redelivered
task) re-appends at the same positions and the store ignores what it already holds:
re-runs neither lose nor duplicate values.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

__all__ = ("Batch", "Chunk", "Share", "Store", "StreamState")


@dataclasses.dataclass(frozen=True, slots=True)
class Chunk:
    """One appended batch: ``count`` encoded values starting at ``start``."""

    start: int
    count: int
    data: bytes

    @property
    def stop(self) -> int:
        """The position just past this chunk's last value."""
        return self.start + self.count


@dataclasses.dataclass(frozen=True, slots=True)
class StreamState:
    """Where a stream stands: how many values it holds and whether it has ended."""

    length: int
    ended: bool = False
    #: The failure it ended with (an encoded ``datagraph._errors.Failure``), if any.
    error: bytes | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Batch:
    """The answer to ``Store.read()``."""

    #: Chunks in order, together covering positions from the one asked for; the first
    #: chunk may start before it (the reader skips what it has seen).
    chunks: Sequence[Chunk]
    #: The stream's final state, set once it has ended and ``chunks`` reach its
    #: last value.
    final: StreamState | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Share:
    """The values ``Store.take()`` handed to one member of a group."""

    #: The batch holding them; None when nothing was taken.
    chunk: Chunk | None
    #: Positions ``start`` to ``stop - 1`` of the stream are this member's alone.
    start: int
    stop: int
    #: The stream's final state, set once it has ended and the group has taken
    #: every value.
    final: StreamState | None = None


class Store(ABC):
    """Append-only value streams, metadata and claims of flow runs.

    Implementations: ``MemoryStore`` (one process, the embedded default) and
    ``RedisStore`` (Redis >= 7.0 or Valkey >= 7.2; many processes). Both pass the
    store conformance suite, ``datagraph.testing.conformance``: subclass its
    ``StoreContract`` to run it on a store of your own.
    """

    @abstractmethod
    async def append(
        self, run_id: str, stream: str, start: int, count: int, data: bytes
    ) -> int:
        """Append a batch of ``count`` encoded values at position ``start``.

        Idempotent: when ``start`` is below the stream's length, the stream already
        holds these positions (a re-run wrote them) and nothing is written. A batch
        that only partly overlaps is not written either: the caller sees the returned
        length and appends the part past it.

        Returns:
            The stream's length after the call.

        Raises:
            StreamClosedError: the stream has ended and the batch holds new values.
            ValueTooLargeError: ``data`` is larger than the store's
                ``max_value_size`` (nothing is written).
            StoreError: ``start`` lies past the stream's length (values would be
                missing).
        """

    @abstractmethod
    async def end_stream(
        self, run_id: str, stream: str, error: bytes | None = None
    ) -> bool:
        """End a stream after its last value, with a failure when ``error`` is set.

        Readers that reach the end stop (or see the failure). Only the first call
        counts, so the first failure recorded is the one every reader sees.

        Returns:
            True if this call ended the stream, False if it had already ended.
        """

    @abstractmethod
    async def reopen(self, run_id: str, stream: str) -> bool:
        """Take back a stream's end (and its failure), keeping every value.

        For a run resumed after a failure: the processor running again continues
        the stream by position.

        Returns:
            True if the stream had ended, False if it was open.
        """

    @abstractmethod
    async def append_at_end(
        self, run_id: str, stream: str, count: int, data: bytes
    ) -> int:
        """Append a batch after whatever the stream holds (for several producers).

        Unlike ``append``, not idempotent: the instances of a scaled-out processor
        share their output stream this way.

        Returns:
            The position of the batch's first value.

        Raises:
            StreamClosedError: the stream has ended.
            ValueTooLargeError: ``data`` is larger than the store's
                ``max_value_size`` (nothing is written).
        """

    @abstractmethod
    async def read(
        self,
        run_id: str,
        stream: str,
        position: int,
        *,
        timeout: float,
        reader: str | None = None,
    ) -> Batch:
        """Return the chunks holding values from ``position`` on.

        Returns as soon as there is at least one such value or the stream has ended;
        otherwise waits up to ``timeout`` seconds (0: not at all) and returns an
        empty batch. A store may return fewer chunks than it holds; read again from
        the ``stop`` of the last one for the rest. Positions trimmed away are skipped:
        the first chunk then starts after ``position``.

        With ``reader``, the same call records that reader's cursor: it has
        consumed every value before ``position`` (see ``cursors``).

        Raises:
            CorruptDataError: the entry at ``position`` is not one Datagraph wrote;
                the valid entries before it are returned by the reads before.
        """

    @abstractmethod
    async def take(
        self,
        run_id: str,
        stream: str,
        group: str,
        max_count: int,
        *,
        timeout: float,
    ) -> Share:
        """Hand the next values no member of ``group`` has taken to this caller.

        Each value of the stream goes to exactly one caller of the group, at most
        ``max_count`` at a time, in stream order. Waits up to ``timeout`` seconds
        for values like ``read``. The group's progress is its cursor, under the
        group's name.

        Raises:
            CorruptDataError: the next entry is not one Datagraph wrote.
        """

    @abstractmethod
    async def cursors(self, run_id: str, stream: str) -> dict[str, int]:
        """Return how many values each named reader (or group) has consumed."""

    @abstractmethod
    async def trim(self, run_id: str, stream: str, before: int) -> None:
        """Drop the chunks whose values all lie before position ``before``.

        The stream's length and end stay as they are; only memory is freed.
        """

    @abstractmethod
    async def state(self, run_id: str, stream: str) -> StreamState:
        """Return the stream's length and whether it has ended (length 0 if unknown)."""

    @abstractmethod
    async def set_fields(self, run_id: str, fields: Mapping[str, bytes]) -> None:
        """Set metadata fields of a run (plan, processor states, ...)."""

    @abstractmethod
    async def get_fields(
        self, run_id: str, names: Sequence[str] | None = None
    ) -> dict[str, bytes]:
        """Return the run's metadata fields (all of them when ``names`` is None).

        Fields that are not set are left out; an unknown run gives ``{}``.
        """

    @abstractmethod
    async def delete_fields(self, run_id: str, names: Sequence[str]) -> None:
        """Remove metadata fields of a run (those not set are ignored)."""

    @abstractmethod
    async def claim(self, run_id: str, name: str) -> bool:
        """Atomically claim ``name`` within a run: True for the first caller only.

        Across every process sharing the store, exactly one caller wins; this is
        how a waiting processor gets dispatched exactly once.
        """

    @abstractmethod
    async def list_runs(self) -> list[str]:
        """Return the ids of the runs in the store, oldest first."""

    @abstractmethod
    async def delete_run(self, run_id: str) -> None:
        """Delete every stream, field and claim of a run."""

    async def aclose(self) -> None:
        """Release connections; the store may not be used afterwards."""
        return

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
