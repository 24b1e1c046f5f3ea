"""The embedded store: every run's data in this process's memory."""

from __future__ import annotations

import bisect
import dataclasses
import math
import time
from typing import TYPE_CHECKING

import anyio

from ..exceptions import StoreError, StreamClosedError
from ._base import Batch, Chunk, Store, StreamState

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ("MemoryStore",)

_DEFAULT_RETENTION = 7 * 24 * 3600.0


@dataclasses.dataclass(slots=True)
class _Stream:
    chunks: list[Chunk] = dataclasses.field(default_factory=list)
    ends: list[int] = dataclasses.field(default_factory=list)  # chunk ends, for bisect
    length: int = 0
    ended: bool = False
    error: bytes | None = None
    # One event per blocked read; set and dropped on the next change.
    waiters: list[anyio.Event] = dataclasses.field(default_factory=list)

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for event in waiters:
            event.set()


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
    """

    def __init__(self, *, retention: float = _DEFAULT_RETENTION) -> None:
        if not retention > 0:
            msg = f"retention must be a positive number of seconds, got {retention!r}"
            raise ValueError(msg)
        self.retention = retention
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
        await anyio.lowlevel.checkpoint()
        s = self._stream(run_id, stream)
        if start + count <= s.length:
            return s.length  # already written by an earlier run of the producer
        if s.ended:
            msg = f"stream {stream!r} of run {run_id} has ended; cannot append to it"
            raise StreamClosedError(msg)
        if start < s.length:
            return s.length  # partly written before: the caller appends the rest
        if start > s.length:
            msg = (
                f"cannot append at position {start} to stream {stream!r} of run "
                f"{run_id}: it holds {s.length} values, so values would be missing"
            )
            raise StoreError(msg)
        if count:
            s.chunks.append(Chunk(start, count, data))
            s.ends.append(start + count)
            s.length = start + count
            s.wake()
        return s.length

    async def end(self, run_id: str, stream: str, error: bytes | None = None) -> bool:
        """End the stream; see ``Store.end``."""
        await anyio.lowlevel.checkpoint()
        s = self._stream(run_id, stream)
        if s.ended:
            return False
        s.ended, s.error = True, error
        s.wake()
        return True

    async def read(
        self, run_id: str, stream: str, position: int, *, timeout: float
    ) -> Batch:
        """Return chunks from ``position`` on, waiting up to ``timeout``."""
        s = self._stream(run_id, stream)
        if position >= s.length and not s.ended:
            event = anyio.Event()
            s.waiters.append(event)
            with anyio.move_on_after(timeout if timeout >= 0 else math.inf):
                await event.wait()
            # The stream object may have been dropped by delete_run meanwhile.
            s = self._stream(run_id, stream)
        else:
            await anyio.lowlevel.checkpoint()
        first = bisect.bisect_right(s.ends, position)
        chunks = s.chunks[first:]
        end = StreamState(s.length, True, s.error) if s.ended else None
        return Batch(chunks, end)

    async def state(self, run_id: str, stream: str) -> StreamState:
        """Return the stream's length and end state."""
        await anyio.lowlevel.checkpoint()
        run = self._run(run_id)
        s = run.streams.get(stream) if run else None
        if s is None:
            return StreamState(0)
        return StreamState(s.length, s.ended, s.error)

    async def set_fields(self, run_id: str, fields: Mapping[str, bytes]) -> None:
        """Set metadata fields of a run."""
        await anyio.lowlevel.checkpoint()
        run = self._run(run_id, write=True)
        assert run is not None
        run.fields.update(fields)

    async def get_fields(
        self, run_id: str, names: Sequence[str] | None = None
    ) -> dict[str, bytes]:
        """Return metadata fields of a run."""
        await anyio.lowlevel.checkpoint()
        run = self._run(run_id)
        if run is None:
            return {}
        if names is None:
            return dict(run.fields)
        return {n: run.fields[n] for n in names if n in run.fields}

    async def claim(self, run_id: str, name: str) -> bool:
        """Claim ``name`` in the run; True for the first caller only."""
        await anyio.lowlevel.checkpoint()
        run = self._run(run_id, write=True)
        assert run is not None
        if name in run.claims:
            return False
        run.claims.add(name)
        return True

    async def list_runs(self) -> list[str]:
        """Return the ids of the runs held, oldest first."""
        await anyio.lowlevel.checkpoint()
        self._expire()
        return list(self._runs)

    async def delete_run(self, run_id: str) -> None:
        """Forget a run; blocked readers of its streams wake up."""
        await anyio.lowlevel.checkpoint()
        run = self._runs.pop(run_id, None)
        if run is not None:
            for s in run.streams.values():
                s.wake()
