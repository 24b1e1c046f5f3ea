"""The embedded store: every run's data in this process's memory."""

from __future__ import annotations

import bisect
import dataclasses
import time
from typing import TYPE_CHECKING

import anyio

from .._wakeups import Wakeup, checkpoint, clock, wakeup
from ..exceptions import StoreConfigError, StoreError, StreamClosedError
from ._base import Batch, Chunk, Share, Store, StreamState
from ._limits import DEFAULT_MAX_VALUE_SIZE, check_max_value_size, value_too_large

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ("MemoryStore",)

_DEFAULT_RETENTION = 7 * 24 * 3600.0


@dataclasses.dataclass(slots=True)
class _Stream:
    chunks: list[Chunk] = dataclasses.field(default_factory=list)
    stops: list[int] = dataclasses.field(default_factory=list)  # of chunks, to bisect
    length: int = 0
    cursors: dict[str, int] = dataclasses.field(default_factory=dict)
    ended: bool = False
    error: bytes | None = None
    # One wake-up per blocked read; set and dropped on the next change.
    waiters: list[Wakeup] = dataclasses.field(default_factory=list)

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for event in waiters:
            event.set()

    def add(self, start: int, count: int, data: bytes) -> None:
        self.chunks.append(Chunk(start, count, data))
        self.stops.append(start + count)
        self.length = start + count
        self.wake()

    async def wait(self, deadline: float) -> None:
        """Wait for the next change, at most until ``clock()`` reaches ``deadline``."""
        waiter = wakeup()
        self.waiters.append(waiter)
        await waiter.wait(deadline)

    def move_cursor(self, reader: str, position: int) -> None:
        if position > self.cursors.get(reader, -1):
            self.cursors[reader] = position


@dataclasses.dataclass(slots=True)
class _Run:
    touched: float
    streams: dict[str, _Stream] = dataclasses.field(default_factory=dict)
    fields: dict[str, bytes] = dataclasses.field(default_factory=dict)
    claims: set[str] = dataclasses.field(default_factory=set)


class MemoryStore(Store):
    """Keep run data in this process: the embedded default, no server needed.

    Readers and writers must share the process (and this object); values are still
    encoded, so what works here works unchanged on Redis. Runs are forgotten
    ``retention`` seconds after their last write.

    Args:
        retention: seconds a run's data is kept after its last write.
        max_value_size: largest entry (encoded batch) in bytes, as for Redis, so
            that a flow that fits here fits there.
    """

    def __init__(
        self,
        *,
        retention: float = _DEFAULT_RETENTION,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
    ) -> None:
        if not retention > 0:
            msg = f"retention must be a positive number of seconds, got {retention!r}"
            raise StoreConfigError(msg)
        self.retention = retention
        self.max_value_size = check_max_value_size(max_value_size)
        self._runs: dict[str, _Run] = {}

    def __repr__(self) -> str:
        return f"MemoryStore(runs={len(self._runs)}, retention={self.retention})"

    def _expire(self) -> None:
        horizon = time.monotonic() - self.retention
        for run_id in [r for r, run in self._runs.items() if run.touched < horizon]:
            del self._runs[run_id]

    def _run(self, run_id: str, *, write: bool = False) -> _Run | None:
        run = self._runs.get(run_id)
        if write:
            now = time.monotonic()
            if run is None:
                self._expire()  # new runs are rare enough to sweep old ones here
                run = self._runs[run_id] = _Run(touched=now)
            run.touched = now
        elif run is not None and run.touched < time.monotonic() - self.retention:
            del self._runs[run_id]
            return None
        return run

    def _stream(self, run_id: str, stream: str) -> _Stream:
        run = self._run(run_id, write=True)
        assert run is not None
        found = run.streams.get(stream)
        if found is None:
            found = run.streams[stream] = _Stream()
        return found

    async def append(
        self, run_id: str, stream: str, start: int, count: int, data: bytes
    ) -> int:
        """Append a batch at ``start``; see ``Store.append``."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        if len(data) > self.max_value_size:
            raise value_too_large(run_id, stream, count, len(data), self.max_value_size)
        s = self._stream(run_id, stream)
        # Positions below the length were written by an earlier run of the producer
        # (all of them, or a part: the caller appends the rest).
        if start + count > s.length:
            if s.ended:
                msg = (
                    f"stream {stream!r} of run {run_id} has ended; cannot append to it"
                )
                raise StreamClosedError(msg)
            if start > s.length:
                msg = (
                    f"cannot append at position {start} to stream {stream!r} of run "
                    f"{run_id}: it holds {s.length} values, so values would be missing"
                )
                raise StoreError(msg)
            if start == s.length:
                s.add(start, count, data)
        # Yield only now: the readers just woken run in the same round. Not
        # shielded (a cancel scope costs more than the rest of the call): a
        # call cancelled here has written its batch, which is harmless, as the
        # append is idempotent by position.
        await checkpoint()
        return s.length

    async def append_at_end(
        self, run_id: str, stream: str, count: int, data: bytes
    ) -> int:
        """Append a batch after the stream's last value; see ``Store.append_at_end``."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        if len(data) > self.max_value_size:
            raise value_too_large(run_id, stream, count, len(data), self.max_value_size)
        s = self._stream(run_id, stream)
        if s.ended:
            msg = f"stream {stream!r} of run {run_id} has ended; cannot append to it"
            raise StreamClosedError(msg)
        start = s.length
        if count:
            s.add(start, count, data)
        await anyio.lowlevel.cancel_shielded_checkpoint()  # after waking readers
        return start

    async def end_stream(
        self, run_id: str, stream: str, error: bytes | None = None
    ) -> bool:
        """End the stream; see ``Store.end_stream``."""
        await checkpoint()
        s = self._stream(run_id, stream)
        if s.ended:
            return False
        s.ended, s.error = True, error
        s.wake()
        return True

    async def reopen(self, run_id: str, stream: str) -> bool:
        """Take back the stream's end; see ``Store.reopen``."""
        await checkpoint()
        s = self._stream(run_id, stream)
        if not s.ended:
            return False
        s.ended, s.error = False, None
        s.wake()
        return True

    async def read(
        self,
        run_id: str,
        stream: str,
        position: int,
        *,
        timeout: float,
        reader: str | None = None,
    ) -> Batch:
        """Return chunks from ``position`` on, waiting up to ``timeout``."""
        deadline = clock() + max(timeout, 0)
        s = self._stream(run_id, stream)
        if reader is not None:
            s.move_cursor(reader, position)
        waited = False
        # Nothing held past the position (it is at the end, or trimmed away): wait
        # for a change that reaches it; others (a batch before a position beyond
        # the end) only wake the wait.
        while bisect.bisect_right(s.stops, position) == len(s.chunks) and not s.ended:
            if clock() >= deadline:
                break
            await s.wait(deadline)
            waited = True
            run = self._runs.get(run_id)
            if run is None or run.streams.get(stream) is not s:
                return Batch(())  # delete_run dropped the stream meanwhile
        if not waited:
            await checkpoint()
        first = bisect.bisect_right(s.stops, position)
        chunks = s.chunks[first:]
        final = StreamState(s.length, True, s.error) if s.ended else None
        return Batch(chunks, final)

    async def take(
        self,
        run_id: str,
        stream: str,
        group: str,
        max_count: int,
        *,
        timeout: float,
    ) -> Share:
        """Hand the group's next untaken values to this caller; see ``Store.take``."""
        deadline = clock() + max(timeout, 0)
        await checkpoint()
        while True:
            # The stream object may have been dropped by delete_run meanwhile.
            s = self._stream(run_id, stream)
            cursor = s.cursors.get(group, 0)
            first = bisect.bisect_right(s.stops, cursor)
            if first < len(s.chunks):
                chunk = s.chunks[first]
                start = max(cursor, chunk.start)  # positions trimmed away are skipped
                stop = min(chunk.stop, start + max(max_count, 1))
                s.cursors[group] = stop
                return Share(chunk, start, stop)
            if s.ended:
                final = StreamState(s.length, True, s.error)
                return Share(None, cursor, cursor, final)
            if clock() >= deadline:
                return Share(None, cursor, cursor)
            # Woken values may go to another member first: then wait again.
            await s.wait(deadline)

    async def cursors(self, run_id: str, stream: str) -> dict[str, int]:
        """Return each reader's (and group's) position in the stream."""
        await checkpoint()
        run = self._run(run_id)
        s = run.streams.get(stream) if run else None
        return dict(s.cursors) if s is not None else {}

    async def trim(self, run_id: str, stream: str, before: int) -> None:
        """Forget the chunks that end at or before ``before``."""
        await checkpoint()
        run = self._run(run_id)
        s = run.streams.get(stream) if run else None
        if s is not None:
            drop = bisect.bisect_right(s.stops, before)
            del s.chunks[:drop], s.stops[:drop]

    async def state(self, run_id: str, stream: str) -> StreamState:
        """Return the stream's length and end state."""
        await checkpoint()
        run = self._run(run_id)
        s = run.streams.get(stream) if run else None
        if s is None:
            return StreamState(0)
        return StreamState(s.length, s.ended, s.error)

    async def set_fields(self, run_id: str, fields: Mapping[str, bytes]) -> None:
        """Set metadata fields of a run."""
        await checkpoint()
        run = self._run(run_id, write=True)
        assert run is not None
        run.fields.update(fields)

    async def get_fields(
        self, run_id: str, names: Sequence[str] | None = None
    ) -> dict[str, bytes]:
        """Return metadata fields of a run."""
        await checkpoint()
        run = self._run(run_id)
        if run is None:
            return {}
        if names is None:
            return dict(run.fields)
        return {n: run.fields[n] for n in names if n in run.fields}

    async def delete_fields(self, run_id: str, names: Sequence[str]) -> None:
        """Remove metadata fields of a run."""
        await checkpoint()
        run = self._run(run_id, write=True)
        assert run is not None
        for name in names:
            run.fields.pop(name, None)

    async def claim(self, run_id: str, name: str) -> bool:
        """Claim ``name`` in the run; True for the first caller only."""
        await checkpoint()
        run = self._run(run_id, write=True)
        assert run is not None
        if name in run.claims:
            return False
        run.claims.add(name)
        return True

    async def list_runs(self) -> list[str]:
        """Return the ids of the runs held, oldest first."""
        await checkpoint()
        self._expire()
        return list(self._runs)

    async def delete_run(self, run_id: str) -> None:
        """Forget a run; blocked readers of its streams wake up."""
        await checkpoint()
        run = self._runs.pop(run_id, None)
        if run is not None:
            for s in run.streams.values():
                s.wake()
