"""Running sync implementations in worker threads, crossing to the loop in batches.

A sync function or generator runs in a thread of its own so it never blocks the
event loop. Crossing from the thread to the loop (``anyio.from_thread.run``) costs
tens of microseconds, so it is done a batch at a time both ways: a read hands the
thread a whole stored batch (``BlockingIO.stream()``), and what a generator yields
is buffered in the thread and handed to the processor's ``Outputs`` when the
buffer holds ``batch_size`` values, when the thread is about to wait for a read,
when the generator ends, or, for a generator that yields rarely, after
``flush_interval`` (the loop takes what waits).

Cancelling the processor wakes whatever the thread waits for on the loop (a read,
a full buffer held back by backpressure) and raises ``ThreadCancelled`` there, so
the thread unwinds and the processor stops like an async one.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from .exceptions import RegistrationError

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Generator

    from fast_depends.core import CallModel

    from .io import IO
    from .settings import Settings


__all__ = (
    "Sink",
    "ThreadBridge",
    "ThreadCancelled",
    "call_from_thread",
    "run_sync_implementation",
)

T = TypeVar("T")
_local = threading.local()  # .bridge: the ThreadBridge of this worker thread


class Sink(Protocol):
    """Where a bridge puts what the thread yields (``Outputs`` is one)."""

    def put(self, item: Any) -> bool:
        """Buffer ``item``; return True when the caller should ``flush()`` now."""
        ...

    async def flush(self) -> None:
        """Write out what is buffered."""
        ...


class ThreadCancelled(BaseException):  # like trio's Cancelled
    """Raised in a sync implementation's thread when its processor is cancelled.

    A ``BaseException``, like the event loops' own cancellation, so that user code
    catching ``Exception`` does not swallow it and keep the thread running.
    """


async def run_sync_implementation(
    processor: str,
    kind: str,
    model: CallModel,
    ios: dict[str, IO[Any]],
    outputs: Sink,
    settings: Settings,
) -> Any:
    """Call a sync function or generator implementation in a worker thread.

    Its inputs are handed over as ``BlockingIO`` views and its dependencies are
    resolved in the thread; a generator's values go to ``outputs`` in batches.

    Returns:
        A function's result (None for a generator), for the caller to write.

    Raises:
        RegistrationError: a dependency of the implementation is async.
    """
    if model.is_async:
        msg = (
            f"processor {processor!r} is a sync function, which runs in a worker "
            "thread, so its dependencies must be sync too"
        )
        raise RegistrationError(msg)
    blocking: dict[str, Any] = {name: io.blocking() for name, io in ios.items()}
    bridge = ThreadBridge(
        processor, outputs, settings.batch_size, settings.flush_interval
    )

    def call_in_thread() -> Any:
        with contextlib.ExitStack() as stack:
            result = model.solve(
                stack=stack, cache_dependencies={}, nested=False, **blocking
            )
            if kind == "sync":
                return result
            bridge.drive(result)
        return None

    return await bridge.run(call_in_thread)


def call_from_thread(func: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """Run ``func(*args)`` on the event loop from a worker thread; return its result.

    In the thread of a sync implementation this goes through its bridge: what the
    implementation yielded so far is handed over first (it is about to wait), and
    cancelling the processor interrupts the call.
    """
    bridge: ThreadBridge | None = getattr(_local, "bridge", None)
    if bridge is None:
        return anyio.from_thread.run(func, *args)
    return bridge.call(func, *args)


class ThreadBridge:
    """Runs one sync implementation in a worker thread and carries its values over.

    Args:
        processor: the processor's name (for messages).
        outputs: where the values the implementation yields go.
        batch_size: values buffered in the thread before they are handed over.
        flush_interval: longest a value waits in the thread's buffer (seconds).
    """

    def __init__(
        self, processor: str, outputs: Sink, batch_size: int, flush_interval: float
    ) -> None:
        self._processor = processor
        self._outputs = outputs
        self._batch_size = batch_size
        # The loop looks for values waiting in the thread this often (at most
        # every millisecond, however small the setting).
        self._interval = max(flush_interval, 0.001)
        # Appended to by the thread, emptied (popleft) only on the loop: a deque
        # is safe for one producer and one consumer in different threads.
        self._pending: collections.deque[Any] = collections.deque()
        self._cancelled = False
        self._failed: Exception | None = None  # a flush of idle values failed
        self._scopes: set[anyio.CancelScope] = set()  # calls the thread waits on

    # ------------------------------------------------------------- loop side
    async def run(self, func: Callable[[], T]) -> T:
        """Run ``func()`` in a worker thread; return what it returns.

        Its yielded values reach the outputs; if the caller is cancelled, the
        thread is woken and unwound before the cancellation propagates.
        """
        result: Any = None
        error: BaseException | None = None
        # Errors are kept out of the task group, which would wrap them in a group.
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch)
            try:
                # A thread outside anyio's default pool (40 threads): a streaming
                # processor holds it for as long as it runs, and that pool also
                # starts every async generator implementation (fast-depends
                # calls them through ``to_thread``).
                result = await anyio.to_thread.run_sync(
                    self._in_thread, func, limiter=anyio.CapacityLimiter(1)
                )
            except (Exception, ThreadCancelled) as exc:
                error = exc
            finally:
                self._take()  # what was yielded before an error (flushed by caller)
            tg.cancel_scope.cancel()
        if error is None:
            error = self._failed
        if isinstance(error, ThreadCancelled):
            # The thread stopped because this task is being cancelled: raise
            # that cancellation here, where it belongs.
            await anyio.lowlevel.checkpoint()
        if error is not None:
            raise error
        return result  # type: ignore[no-any-return]

    async def _watch(self) -> None:
        """Wake the thread when this processor is cancelled; flush idle values."""
        try:
            while True:
                await anyio.sleep(self._interval)
                if self._pending:
                    try:
                        self._take()
                        await self._outputs.flush()  # they waited long enough
                    except Exception as exc:
                        self._failed = exc  # raised in the thread by its next call
                        await anyio.sleep_forever()
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Interrupt what the thread waits for; its next call raises too."""
        self._cancelled = True
        for scope in self._scopes:
            scope.cancel()

    def _take(self) -> bool:
        pending, put = self._pending, self._outputs.put
        flush = False
        for _ in range(len(pending)):
            if put(pending.popleft()):
                flush = True
        return flush

    async def _guarded(
        self, func: Callable[..., Coroutine[Any, Any, T]], *args: Any
    ) -> T:
        """Run a call of the thread on the loop, interruptible by ``cancel()``."""
        if self._failed is not None:
            raise self._failed
        if self._take():
            await self._outputs.flush()
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                if self._cancelled:
                    scope.cancel()
                return await func(*args)
            except anyio.get_cancelled_exc_class():
                # On trio the call also sees the cancellation of the task that
                # started the thread: either way the thread must hear about it
                # as an exception it can unwind with.
                raise self._cancelled_error() from None
            finally:
                self._scopes.discard(scope)
        raise self._cancelled_error()

    def _cancelled_error(self) -> ThreadCancelled:
        return ThreadCancelled(f"processor {self._processor!r} was cancelled")

    # ----------------------------------------------------------- thread side
    def _in_thread(self, func: Callable[[], T]) -> T:
        _local.bridge = self
        try:
            return func()
        finally:
            _local.bridge = None

    def call(self, func: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """From the thread: hand over what waits, then run ``func(*args)`` on the loop.

        Raises:
            ThreadCancelled: the processor was cancelled.
        """
        if self._cancelled:
            raise self._cancelled_error()
        return anyio.from_thread.run(self._guarded, func, *args)

    def drive(self, generator: Generator[Any]) -> None:
        """From the thread: run a sync generator, buffering what it yields."""
        pending, size = self._pending, self._batch_size
        append = pending.append
        try:
            for item in generator:
                append(item)
                if len(pending) >= size:
                    self.call(_nothing)  # hands the batch over (and backpressure)
        finally:
            generator.close()


async def _nothing() -> None:
    return
