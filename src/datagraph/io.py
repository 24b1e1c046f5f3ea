"""Values in flight (``IOVal``) and read handles on streams (``IO``, ``BlockingIO``)."""

from __future__ import annotations

import contextlib
import itertools
import operator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import anyio
import msgspec

from . import _background
from ._blocking import BlockingIO
from ._errors import decode_failure
from .exceptions import (
    CorruptDataError,
    DatagraphError,
    EmptyStreamError,
    SerializationError,
    SignatureError,
    StoreError,
    UndecodableEntryError,
)
from .serializers import EntryContext

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Iterator

    from anyio.streams.memory import MemoryObjectSendStream

    from ._context import RunContext
    from .stores import Chunk

__all__ = ("IO", "BlockingIO", "IOVal")

T = TypeVar("T")
D = TypeVar("D")
_MISSING: Any = object()
_PRUNE_AT = 64


# A frozen msgspec Struct rather than a frozen dataclass: constructing one is
# 0.1 us instead of 0.7-0.9 us, which is most of what a stage costs per value
# when it yields ``IOVal(name=..., value=...)``. The public behaviour is the same:
# positional or keyword construction, ``.name``/``.value``, equality, hashing,
# repr, ``IOVal[int]``, immutability.
#
# Not tracked by the garbage collector (``gc=False``): that makes one 40% cheaper
# to build. An IOVal cannot be part of a reference cycle that matters: a value
# that refers back to its own IOVal could not be written to a stream anyway.
class IOVal(msgspec.Struct, Generic[T], frozen=True, gc=False):
    """A value bound for (or read from) the stream ``name``.

    Args:
        name: the stream's name.
        value: the value.
    """

    name: str
    value: T


class IO(Generic[T]):
    """A read handle on one stream of a run.

    Every method reads the stream from its first value, so each reader (and each
    call) sees every value in order, however many there are.
    """

    __slots__ = (
        "_ctx",
        "_opened",
        "_reader",
        "_reading",
        "_recorded",
        "_shared",
        "_type",
        "consumed",
        "name",
    )

    def __init__(
        self,
        ctx: RunContext,
        name: str,
        type_: Any = Any,
        *,
        reader: str | None = None,
        shared: bool = False,
        opened: list[AsyncGenerator[Any]] | None = None,
    ) -> None:
        self._ctx = ctx
        self._type = type_
        # A processor reads under its own name, so its progress is recorded;
        # instances of a scaled-out one share the stream as a group of that name.
        self._reader = reader
        self._shared = shared and reader is not None
        # Iterators handed to a processor, which its runtime closes when the
        # processor ends: user code that raises inside ``async for`` leaves them
        # open, and a garbage-collected async generator is closed too late (they
        # are held strongly until then for that reason).
        self._opened = opened
        #: The stream's name.
        self.name = name
        #: Values this handle has handed out so far (all its iterators together).
        self.consumed = 0
        # The batch ``stream()`` hands out value by value (its first position,
        # length and iterator), and the last position ``record_progress`` wrote.
        self._reading: tuple[int, int, Iterator[Any]] | None = None
        self._recorded = 0

    def __repr__(self) -> str:
        return f"<IO {self.name!r} of run {self._ctx.run_id}>"

    @property
    def run_id(self) -> str:
        """The id of the run the stream belongs to."""
        return self._ctx.run_id

    def _decode(self, chunk: Chunk) -> list[T]:
        ctx = self._ctx
        context = EntryContext(
            ctx.run_id,
            self.name,
            None if _appended_at_end(ctx, self.name) else chunk.start,
            chunk.count,
        )
        try:
            values = ctx.serializer.decode(chunk.data, self._type, context)
        except SignatureError as exc:
            msg = f"{context.describe()}: {exc}"
            raise SignatureError(msg) from exc
        except UndecodableEntryError as exc:
            raise self._corrupt(chunk, str(exc)) from exc
        except SerializationError as exc:
            msg = f"{context.describe()}: {exc}"
            raise SerializationError(msg) from exc
        except DatagraphError:
            raise
        except Exception as exc:  # whatever a decoder raises on foreign bytes
            detail = f"it does not decode ({type(exc).__name__}: {exc})"
            raise self._corrupt(chunk, detail) from exc
        if len(values) != chunk.count:  # a short entry must not pass unnoticed
            raise self._corrupt(chunk, f"it holds {len(values)} values")
        return values

    def _failure(self, error: bytes) -> DatagraphError:
        """Return the exception a stream that ended with ``error`` raises."""
        try:
            return decode_failure(error).to_exception(self.name)
        except Exception as exc:  # not what encode_failure writes
            msg = (
                f"stream {self.name!r} of run {self._ctx.run_id} ended with a failure "
                f"that does not decode ({type(exc).__name__}: {exc})"
            )
            return CorruptDataError(msg, run_id=self._ctx.run_id, stream=self.name)

    def _corrupt(self, chunk: Chunk, what: str) -> CorruptDataError:
        msg = (
            f"the entry of stream {self.name!r} of run {self._ctx.run_id} holding "
            f"values {chunk.start} to {chunk.stop - 1} ({chunk.count} values) is "
            f"corrupt: {what}"
        )
        return CorruptDataError(msg, run_id=self._ctx.run_id, stream=self.name)

    def _track(self, generator: AsyncGenerator[D]) -> AsyncGenerator[D]:
        opened = self._opened
        if opened is not None:
            if len(opened) >= _PRUNE_AT:  # forget the iterators already finished
                opened[:] = [g for g in opened if _unfinished(g)]
            opened.append(generator)
        return generator

    def chunks(self) -> AsyncGenerator[list[T]]:
        """Yield the stream's values a batch at a time, as they were written.

        The fastest way to read: one iteration per stored batch, not per value.

        Raises:
            UpstreamError: the producer failed (after the values it wrote).
        """
        return self._track(self._chunks())

    async def _chunks(self) -> AsyncGenerator[list[T]]:
        if self._shared:
            async with aclosing(self._shared_chunks()) as shares:
                async for values in shares:
                    yield values
            return
        ctx, position = self._ctx, 0
        while True:
            batch = await ctx.store.read(
                ctx.run_id,
                self.name,
                position,
                timeout=ctx.settings.read_timeout,
                reader=self._reader,
            )
            for chunk in batch.chunks:
                if chunk.stop <= position:
                    continue
                if chunk.start > position:
                    msg = (
                        f"values {position} to {chunk.start - 1} of stream "
                        f"{self.name!r} of run {ctx.run_id} were trimmed before "
                        "this reader got them"
                    )
                    raise StoreError(msg)
                values = self._decode(chunk)
                if chunk.start < position:  # resumed in the middle of a batch
                    values = values[position - chunk.start :]
                position = chunk.stop
                self.consumed += len(values)
                yield values
            final = batch.final
            if final is not None and position >= final.length:
                if self._reader is not None and batch.chunks:
                    # Record that this reader consumed the last values too.
                    await ctx.store.read(
                        ctx.run_id, self.name, position, timeout=0, reader=self._reader
                    )
                if final.error is not None:
                    raise self._failure(final.error)
                return
            if not batch.chunks:
                await ctx.check_producer(self.name)

    async def _shared_chunks(self) -> AsyncGenerator[list[T]]:
        """Yield the values this member of the reading group is handed."""
        ctx = self._ctx
        assert self._reader is not None
        while True:
            share = await ctx.store.take(
                ctx.run_id,
                self.name,
                self._reader,
                ctx.settings.share_size,
                timeout=ctx.settings.read_timeout,
            )
            if share.chunk is not None:
                values = self._decode(share.chunk)
                offset = share.chunk.start
                self.consumed += share.stop - share.start
                yield values[share.start - offset : share.stop - offset]
            elif share.final is not None:
                if share.final.error is not None:
                    raise self._failure(share.final.error)
                return
            else:
                await ctx.check_producer(self.name)

    def stream(self) -> AsyncGenerator[T]:
        """Yield every value of the stream as soon as it is written.

        Raises:
            UpstreamError: the producer failed (after the values it wrote).
        """
        return self._track(self._stream())

    async def _stream(self) -> AsyncGenerator[T]:
        position = 0
        async with aclosing(self._chunks()) as chunks:
            async for values in chunks:
                batch = iter(values)
                self._reading = position, len(values), batch  # see record_progress
                for value in batch:
                    yield value
                position += len(values)

    async def record_progress(self) -> None:
        """Record how far the processor reading this stream has got in its batch.

        A reader's position is recorded each time it reads the next batch, so a
        processor taking long over one batch, value by value, would show the whole
        batch as backlog until it is done. Its heartbeat calls this instead, which
        costs the values nothing: the batch's iterator knows how many are left.
        """
        if self._reading is None or self._reader is None or self._shared:
            return
        start, count, batch = self._reading
        # The value handed out last is still being worked on: it is not read yet.
        done = start + count - operator.length_hint(batch) - 1
        if done > start and done > self._recorded:
            self._recorded = done
            ctx = self._ctx
            await ctx.store.read(
                ctx.run_id, self.name, done, timeout=0, reader=self._reader
            )

    def __aiter__(self) -> AsyncIterator[T]:
        return self.stream()

    @overload
    async def first(self) -> T: ...
    @overload
    async def first(self, default: D) -> T | D: ...
    async def first(self, default: Any = _MISSING) -> Any:
        """Return the stream's first value, waiting for it if needed.

        Raises:
            EmptyStreamError: the stream ended without a value and no ``default``
                was given.
        """
        async with aclosing(self._chunks()) as chunks:
            async for values in chunks:
                if values:
                    if self._reader is not None and not self._shared:
                        # Record that this reader is done with the first value.
                        ctx = self._ctx
                        await ctx.store.read(
                            ctx.run_id, self.name, 1, timeout=0, reader=self._reader
                        )
                    return values[0]
        if default is not _MISSING:
            return default
        msg = f"stream {self.name!r} of run {self._ctx.run_id} ended without a value"
        raise EmptyStreamError(msg)

    async def collect(self) -> list[T]:
        """Wait for the stream to end and return all its values."""
        collected: list[T] = []
        async with aclosing(self._chunks()) as chunks:
            async for values in chunks:
                collected.extend(values)
        return collected

    async def is_complete(self) -> bool:
        """Tell whether the stream has ended (successfully or not)."""
        state = await self._ctx.store.state(self._ctx.run_id, self.name)
        return state.ended

    def stream_with(
        self, *others: IO[Any], pad: bool = False, fillvalue: Any = None
    ) -> AsyncGenerator[tuple[Any, ...]]:
        """Yield tuples of the next value of this stream and of each of ``others``.

        Like ``zip``: stops when the shortest stream ends, or with ``pad=True`` goes
        on until the longest ends, filling in ``fillvalue``.
        """
        return self._track(self._stream_with(others, pad, fillvalue))

    async def _stream_with(
        self, others: tuple[IO[Any], ...], pad: bool, fillvalue: Any
    ) -> AsyncGenerator[tuple[Any, ...]]:
        # Zipped a stored batch at a time: rows are built by ``zip`` over the
        # values every stream has at hand, not by one ``anext`` per value and
        # stream (which cost more than half of a join stage's time).
        iterators = [io._chunks() for io in (self, *others)]
        batches: list[list[Any] | None] = [[] for _ in iterators]  # None: ended
        offsets = [0] * len(iterators)
        try:
            while True:
                for i, iterator in enumerate(iterators):
                    batch = batches[i]
                    while batch is not None and offsets[i] >= len(batch):
                        batch = batches[i] = await anext(iterator, None)
                        offsets[i] = 0
                live = [batch for batch in batches if batch is not None]
                if not live or (len(live) < len(batches) and not pad):
                    return
                count = min(
                    len(b) - o
                    for b, o in zip(batches, offsets, strict=True)
                    if b is not None
                )
                columns = [
                    itertools.repeat(fillvalue, count)
                    if batch is None
                    else batch[offset : offset + count]
                    for batch, offset in zip(batches, offsets, strict=True)
                ]
                offsets = [offset + count for offset in offsets]
                for row in zip(*columns):  # noqa: B905  # columns are count long
                    yield row
        finally:
            for iterator in iterators:
                await iterator.aclose()

    def as_available(self, *others: IO[Any]) -> AsyncGenerator[IOVal[Any]]:
        """Merge this stream with ``others``, yielding values as they arrive.

        Each value comes as ``IOVal(name=stream, value=...)``; values of one stream
        keep their order. Ends when every stream has ended.
        """
        return self._track(self._as_available(others))

    async def _as_available(
        self, others: tuple[IO[Any], ...]
    ) -> AsyncGenerator[IOVal[Any]]:
        ios = (self, *others)
        send, receive = anyio.create_memory_object_stream[
            tuple[str, list[Any] | Exception | None]
        ](len(ios))
        scopes = [anyio.CancelScope() for _ in ios]
        for io, scope in zip(ios, scopes, strict=True):
            _background.spawn(_pump(io, scope, send.clone()))
        send.close()
        open_streams = len(ios)
        try:
            while open_streams:
                name, item = await receive.receive()
                if item is None:
                    open_streams -= 1
                elif isinstance(item, Exception):
                    raise item
                else:
                    for value in item:
                        yield IOVal(name, value)
        finally:
            for scope in scopes:
                scope.cancel()
            receive.close()

    def blocking(self) -> BlockingIO[T]:
        """Return a view of this stream for code running in a worker thread."""
        return BlockingIO(self)


def _pump(
    io: IO[Any],
    scope: anyio.CancelScope,
    send: MemoryObjectSendStream[tuple[str, list[Any] | Exception | None]],
) -> Any:
    """Return a background job that forwards ``io``'s batches to a merge."""

    async def pump() -> None:
        with scope, send:
            item: Exception | None = None
            try:
                async with aclosing(io._chunks()) as chunks:
                    async for values in chunks:
                        await send.send((io.name, values))
            except anyio.BrokenResourceError:
                return  # the merge was closed early
            except Exception as exc:
                item = exc
            with contextlib.suppress(anyio.BrokenResourceError):
                await send.send((io.name, item))

    return pump


def _appended_at_end(ctx: RunContext, stream: str) -> bool:
    """Tell whether instances of a scaled-out processor append to ``stream``.

    Their batches get a position only when the store appends them, so their
    entries are bound to the run and stream, not to a position.
    """
    producer = ctx.plan.by_name.get(ctx.plan.producer_of(stream) or "")
    return producer is not None and producer.instances > 1


def _unfinished(generator: AsyncGenerator[Any]) -> bool:
    return getattr(generator, "ag_frame", None) is not None
