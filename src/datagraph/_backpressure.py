"""Keeping a producer within reach of its readers, and freeing what they all read.

A producer may run ``window`` values ahead of the slowest processor reading its
stream; past that it waits. Readers count once they have started reading (a reader
scheduled late, or a ``wait=True`` one, does not hold the producer back), and stop
counting when they finish. External readers of a run's outputs never hold it back.

Trimming rule: a stream is trimmed up to its slowest reader only when every
processor reading it has started reading, none of them has retries (a retry reads
its inputs again from the first value), and no one else may read it: a flow output,
or any stream of a run started with ``all_outputs=True``, is kept whole until the
run expires. Nor is any stream of a run whose jobs may be taken over after a
worker is lost: a taken-over reader reads its inputs again from the first value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from ._streams import KEEP_ALL_FIELD

if TYPE_CHECKING:
    from ._context import RunContext

__all__ = ("Backpressure",)

_FIRST_DELAY = 0.0005
_MAX_DELAY = 0.05


class Backpressure:
    """The reading side of one stream, as its producer sees it."""

    __slots__ = ("_ctx", "_finished", "_low", "_readers", "_stream", "_trim", "window")

    def __init__(self, ctx: RunContext, stream: str) -> None:
        consumers = ctx.plan.consumers_of(stream)
        self._ctx = ctx
        self._stream = stream
        #: How far the producer may run ahead; 0 when nothing is ever held.
        self.window = ctx.settings.window
        # Only processors that stream their input can hold the producer back.
        self._readers = [p.name for p in consumers if not p.wait]
        self._trim: list[str] | None = (
            [p.name for p in consumers]
            if stream not in ctx.plan.outputs
            and all(p.retries == 0 for p in consumers)
            and not ctx.takeover
            else None
        )
        self._finished: set[str] = set()
        self._low = 0  # the slowest reader's position when last looked

    def holds(self, written: int) -> bool:
        """Tell (cheaply) whether the producer must look at its readers now."""
        return written - self._low > self.window > 0

    async def wait(self, written: int) -> None:
        """Wait until the slowest active reader is within ``window`` of ``written``."""
        ctx, delay = self._ctx, _FIRST_DELAY
        while True:
            cursors = await ctx.store.cursors(ctx.run_id, self._stream)
            await self._maybe_trim(cursors)
            active = {
                r: cursors[r]
                for r in self._readers
                if r in cursors and r not in self._finished
            }
            self._low = min(active.values(), default=written)
            if written - self._low <= self.window:
                return
            for reader, position in active.items():
                if position == self._low and await self._has_finished(reader):
                    self._finished.add(reader)
            await anyio.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)

    async def _has_finished(self, reader: str) -> bool:
        state = await self._ctx.job_record(reader)
        return state is not None and state.finished

    async def _maybe_trim(self, cursors: dict[str, int]) -> None:
        if self._trim is None or not all(r in cursors for r in self._trim):
            return
        ctx = self._ctx
        if KEEP_ALL_FIELD in await ctx.store.get_fields(ctx.run_id, [KEEP_ALL_FIELD]):
            self._trim = None
            return
        await ctx.store.trim(
            ctx.run_id, self._stream, min(cursors[r] for r in self._trim)
        )
