"""The write side of a processor: buffering values and appending them in batches."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio

from . import _telemetry
from ._backpressure import Backpressure
from ._wakeups import checkpoint, wakeup
from .exceptions import OutputError, SerializationError
from .io import IOVal
from .serializers import EntryContext
from .stores._limits import value_too_large

if TYPE_CHECKING:
    from ._context import RunContext
    from .processor import Processor

__all__ = ("Outputs",)

_FIRST_BATCH = 16
#: How many bare-value types ``Outputs.put`` remembers (a bound for processors
#: that yield instances of classes they create on the fly).
_KNOWN_TYPES = 64


class Outputs:
    """Buffers a processor's values per output stream and appends them in batches.

    A batch goes to the store when it is full, when the oldest buffered value has
    waited ``flush_interval``, or as soon as the producer lets the event loop run
    (``run_flusher``): batching never holds a value back from an idle producer.
    Positions start at 0 on every attempt, so a re-run rewrites the same positions
    and the store drops what it already holds.
    """

    def __init__(
        self, ctx: RunContext, processor: Processor, *, shared: bool = False
    ) -> None:
        self._ctx = ctx
        # Instances of a scaled-out processor share its outputs: they append at
        # the end instead of at positions of their own.
        self._shared = shared
        self._pressure = {name: Backpressure(ctx, name) for name in processor.outputs}
        self._processor = processor
        self._names = processor.outputs
        self._single = processor.outputs[0] if len(processor.outputs) == 1 else None
        self._buffers: dict[str, list[Any]] = {name: [] for name in processor.outputs}
        # The buffer of the single output (bare values go there), and the types
        # of the bare values seen so far (see ``put``).
        self._single_buffer: list[Any] = self._buffers.get(self._single or "", [])
        self._bare_types: set[type] = set()
        self._positions = dict.fromkeys(processor.outputs, 0)
        self._pending = 0
        self._oldest = 0.0
        # Slow start: the first batches are small, so the first values reach
        # the next processor within a fraction of a millisecond; each flush
        # doubles the size up to ``batch_size``.
        self._full = ctx.settings.batch_size
        self._batch_size = self._limit = min(self._full, _FIRST_BATCH)
        self._interval = ctx.settings.flush_interval
        self._lock = anyio.Lock(fast_acquire=True)  # no checkpoint when free
        self._wake = wakeup()
        self._error: Exception | None = None  # a failed background flush
        #: Values this attempt added to the store, over all outputs (values an
        #: earlier attempt had written already do not count).
        self.appended = 0
        self._stored: dict[str, int] = {}  # known length of each output stream

    @property
    def written(self) -> dict[str, int]:
        """How many values each output has received so far (this attempt)."""
        return dict(self._positions)

    def put(self, item: Any) -> bool:
        """Buffer a yielded item (an ``IOVal`` or, for one output, a bare value).

        Returns:
            True when the caller should ``await flush()`` now.

        Raises:
            OutputError: the item names no declared output, or is a bare value while
                the processor has several outputs (or none).
        """
        # The hot path of every processor, once per value. An exact IOVal (the
        # seed's style) is told by ``type() is``; a bare value by a set of the
        # types seen before: ``isinstance`` against IOVal (a msgspec Struct,
        # whose metaclass is not ``type``) costs more than the whole lookup.
        cls = type(item)
        if cls is IOVal:
            try:  # a subscript is cheaper than ``.get`` and a test of its result
                self._buffers[item.name].append(item.value)
            except (KeyError, TypeError):  # TypeError: an unhashable name
                raise self._unknown_output(item.name) from None
        elif cls in self._bare_types:
            self._single_buffer.append(item)
        elif isinstance(item, IOVal):  # an instance of a subclass: rare
            return self.put(IOVal(item.name, item.value))
        elif self._single is not None:
            self._single_buffer.append(item)
            if len(self._bare_types) < _KNOWN_TYPES:
                self._bare_types.add(cls)
        else:
            raise self._bare_value(item)
        pending = self._pending = self._pending + 1
        if pending == 1:
            self._oldest = time.monotonic()
            self._wake.set()
            return False
        # The clock is read every 64 values: it is the dearest part of a put.
        # ``_limit`` drops to 0 when a background flush fails, so the producer
        # flushes (and sees the failure) at its next value.
        return pending >= self._limit or (
            not pending & 63 and time.monotonic() - self._oldest >= self._interval
        )

    def _unknown_output(self, name: object) -> OutputError:
        declared = ", ".join(repr(n) for n in self._names) or "none"
        return OutputError(
            f"processor {self._processor.name!r} yielded IOVal(name={name!r}, ...), "
            f"but {name!r} is not one of its declared outputs ({declared})"
        )

    def _bare_value(self, item: Any) -> OutputError:
        text = repr(item)[:100]
        if not self._names:
            return OutputError(
                f"processor {self._processor.name!r} has no outputs but produced {text}"
            )
        return OutputError(
            f"processor {self._processor.name!r} produced the bare value {text}, but "
            f"it has {len(self._names)} outputs ({', '.join(self._names)}); produce "
            "IOVal(name=..., value=...) to say which one it is for"
        )

    async def flush(self) -> None:
        """Append everything buffered, in order, then let the readers run.

        Raises:
            SerializationError: a value cannot be encoded; the values before it are
                written first, so nothing valid is lost.
        """
        await self._write()
        # A producer that flushes a full batch goes on producing: yield, or it
        # would run a whole backpressure window ahead of its readers on a store
        # whose appends do not suspend.
        await checkpoint()

    async def _write(self) -> None:
        async with self._lock:
            # Checked under the lock: a background flush may be failing right now.
            if self._error is not None:
                raise self._error
            for name, buffer in self._buffers.items():
                if buffer:
                    self._buffers[name] = []
                    if name == self._single:
                        self._single_buffer = self._buffers[name]
                    self._pending -= len(buffer)
                    await self._append(name, buffer)
            self._batch_size = self._limit = min(self._full, self._batch_size * 2)

    async def run_flusher(self) -> None:
        """Flush whenever values wait and the producer has yielded the event loop."""
        while True:
            await self._wake.wait()
            self._wake = wakeup()
            try:
                await self._write()  # the readers run while this task waits again
            except Exception as exc:
                self._error = exc  # raised to the producer by its next put/flush
                self._limit = 0
                return

    async def _append(self, name: str, values: list[Any]) -> None:
        ctx = self._ctx
        # Shared outputs learn a batch's position only as the store appends it.
        at = None if self._shared else self._positions[name]
        context = EntryContext(ctx.run_id, name, at, len(values))
        try:
            data = ctx.serializer.encode(values, context)
        except SerializationError as exc:
            if exc.index:  # keep the good values in front of the bad one
                await self._append(name, values[: exc.index])
            msg = (
                f"processor {self._processor.name!r} wrote a value to stream "
                f"{name!r} that {ctx.serializer!r} cannot encode: {exc}"
            )
            raise SerializationError(msg, index=exc.index, value=exc.value) from exc
        if len(data) > ctx.settings.max_value_size:
            await self._append_split(name, values, len(data))
            return
        if self._shared:
            start = await ctx.store.append_at_end(ctx.run_id, name, len(values), data)
            new = len(values)
        else:
            start = self._positions[name]
            stored = self._stored.get(name)
            if stored is None:  # what earlier runs of this processor left there
                stored = (await ctx.store.state(ctx.run_id, name)).length
            length = await ctx.store.append(ctx.run_id, name, start, len(values), data)
            if start < length < start + len(values):
                # An earlier attempt wrote part of this batch: append just the rest.
                await self._append_at(name, length, values[length - start :])
            new = max(0, start + len(values) - max(start, stored))
            self._stored[name] = max(stored, start + len(values))
        written = self._positions[name] = start + len(values)
        self.appended += new
        if new:
            _telemetry.count_values(
                run_id=ctx.run_id,
                stream=name,
                count=new,
                processor=self._processor.name,
            )
        pressure = self._pressure[name]
        if pressure.holds(written):
            await pressure.wait(written)

    async def _append_split(self, name: str, values: list[Any], size: int) -> None:
        """Append a batch over ``max_value_size`` in halves; refuse a lone value.

        Raises:
            ValueTooLargeError: one value alone is over the limit (the values
                before it are written first).
        """
        if len(values) == 1:
            ctx, limit = self._ctx, self._ctx.settings.max_value_size
            processor = self._processor.name
            raise value_too_large(ctx.run_id, name, 1, size, limit, processor)
        half = len(values) // 2
        await self._append(name, values[:half])
        await self._append(name, values[half:])

    async def _append_at(self, name: str, start: int, values: list[Any]) -> None:
        ctx = self._ctx
        context = EntryContext(ctx.run_id, name, start, len(values))
        data = ctx.serializer.encode(values, context)
        await ctx.store.append(ctx.run_id, name, start, len(values), data)
