"""Sync implementations in worker threads: batches across the thread boundary,
flushing when idle, errors, retries and cancellation (src/datagraph/_threads.py).

The tests coordinate with the threads through ``threading.Event``s and with the
processors through ``anyio.Event``s, never through sleeps.
"""

import threading
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
from anyio import wait_all_tasks_blocked

from datagraph import (
    IO,
    BlockingIO,
    IOVal,
    LocalExecutor,
    Processor,
    RunCancelledError,
    Settings,
    Store,
    Supervisor,
)
from datagraph._threads import ThreadBridge, ThreadCancelled, call_from_thread
from helpers import read_until_failure, start

pytestmark = pytest.mark.anyio

TIMEOUT = 10


def _supervisor(store: Store, **settings: Any) -> Supervisor:
    # A short read_timeout: the heartbeat that notices run.cancel() beats at it.
    settings.setdefault("read_timeout", 0.1)
    return Supervisor(
        store=store, executor=LocalExecutor(), settings=Settings(**settings)
    )


async def _thread_wait(event: threading.Event) -> None:
    """Wait for a worker thread's event without blocking the event loop."""
    assert await anyio.to_thread.run_sync(event.wait, TIMEOUT)


async def test_sync_generators_pass_many_values_in_order(store: Store) -> None:
    supervisor = _supervisor(store, batch_size=7)
    source = Processor(name="th_order_src", inputs=["th_n"], outputs=["th_numbers"])
    double = Processor(name="th_order_dbl", inputs=["th_numbers"], outputs=["th_out"])

    @source
    def produce(th_n: BlockingIO[int]) -> Iterator[int]:
        yield from range(th_n.first())

    @double
    def twice(th_numbers: BlockingIO[int]) -> Iterator[IOVal[int]]:
        for x in th_numbers.stream():
            yield IOVal(name="th_out", value=x * 2)

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, source, double, inputs=[IOVal("th_n", 1000)])
        assert await run["th_out"].collect() == [x * 2 for x in range(1000)]
        await run.wait()


async def test_a_sync_generator_hands_its_values_over_a_batch_at_a_time(
    store: Store,
) -> None:
    # flush_interval is long, so only full batches and the end hand values over:
    # each stored batch is one crossing of the thread boundary.
    supervisor = _supervisor(store, batch_size=100, flush_interval=60)
    source = Processor(name="th_batch_src", inputs=["th_n"], outputs=["th_numbers"])

    @source
    def produce(th_n: BlockingIO[int]) -> Iterator[int]:
        yield from range(th_n.first())

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, source, inputs=[IOVal("th_n", 2550)])
        sizes = [len(chunk) async for chunk in run["th_numbers"].chunks()]
        await run.wait()
    assert sizes == [100] * 25 + [50]


async def test_a_sync_function_returning_many_values_writes_them_all_in_order(
    store: Store,
) -> None:
    supervisor = _supervisor(store, batch_size=16)
    proc = Processor(name="th_fn", inputs=["th_numbers"], outputs=["th_out"])

    @proc
    def squares(th_numbers: BlockingIO[int]) -> list[IOVal[int]]:
        return [IOVal("th_out", x * x) for x in th_numbers.stream()]

    with anyio.fail_after(TIMEOUT):
        run = await start(
            supervisor, proc, inputs=[IOVal("th_numbers", i) for i in range(100)]
        )
        assert await run["th_out"].collect() == [i * i for i in range(100)]
        await run.wait()


async def test_a_value_yielded_before_a_long_computation_is_flushed_after_the_interval(
    store: Store,
) -> None:
    supervisor = _supervisor(store, flush_interval=0.01)
    proc = Processor(name="th_idle", inputs=["th_n"], outputs=["th_out"])
    computing = threading.Event()  # set by the test once it has the first value

    @proc
    def produce(th_n: BlockingIO[int]) -> Iterator[int]:
        yield th_n.first()
        assert computing.wait(TIMEOUT)  # stands for a long computation
        yield 2

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc, inputs=[IOVal("th_n", 1)])
        # The thread is busy and yields nothing more until the test says so: the
        # first value can only have come out through the loop's idle flush.
        assert await run["th_out"].first() == 1
        computing.set()
        assert await run["th_out"].collect() == [1, 2]
        await run.wait()


async def test_values_are_handed_over_before_the_thread_waits_for_a_read(
    store: Store,
) -> None:
    # flush_interval is long: only the read that waits hands the value over.
    supervisor = _supervisor(store, flush_interval=60)
    source = Processor(name="th_read_src", outputs=["th_items"])
    echo = Processor(name="th_read_echo", inputs=["th_items"], outputs=["th_out"])
    more = anyio.Event()

    @source
    async def produce() -> AsyncIterator[int]:
        yield 1
        await more.wait()
        yield 2

    @echo
    def copy(th_items: BlockingIO[int]) -> Iterator[int]:
        for x in th_items.stream():
            yield x * 10

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, source, echo)
        assert await run["th_out"].first() == 10
        more.set()
        assert await run["th_out"].collect() == [10, 20]
        await run.wait()


async def test_a_failing_sync_generator_keeps_the_values_before_the_failure(
    store: Store,
) -> None:
    supervisor = _supervisor(store, flush_interval=60)
    proc = Processor(name="th_fail", inputs=["th_n"], outputs=["th_out"])

    @proc
    def produce(th_n: BlockingIO[int]) -> Iterator[int]:
        yield from range(th_n.first())
        raise ValueError("no more")

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc, inputs=[IOVal("th_n", 5)])
        values, error = await read_until_failure(run["th_out"])
        assert values == [0, 1, 2, 3, 4]
        assert error.processor == "th_fail"
        assert error.error_type == "ValueError"
        assert await run.status() == "failed"


async def test_a_retried_sync_generator_writes_each_value_once(store: Store) -> None:
    supervisor = _supervisor(store, batch_size=4, flush_interval=60)
    proc = Processor(name="th_retry", inputs=["th_n"], outputs=["th_out"], retries=1,
                     retry_delay=0)  # fmt: skip
    attempts: list[int] = []

    @proc
    def produce(th_n: BlockingIO[int]) -> Iterator[int]:
        attempts.append(1)
        for i in range(th_n.first()):
            if i == 6 and len(attempts) == 1:
                raise ValueError("first attempt fails half-way")
            yield i

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc, inputs=[IOVal("th_n", 10)])
        assert await run["th_out"].collect() == list(range(10))
        await run.wait()
    assert len(attempts) == 2


async def test_cancel_wakes_a_sync_generator_blocked_on_a_read(store: Store) -> None:
    supervisor = _supervisor(store)
    source = Processor(name="th_cancel_read_src", outputs=["th_items"])
    reader = Processor(name="th_cancel_read", inputs=["th_items"], outputs=["th_out"])
    reading = threading.Event()
    stopped = threading.Event()
    caught: list[BaseException] = []

    @source
    async def produce() -> AsyncIterator[int]:
        yield 1
        await anyio.sleep_forever()
        yield 2

    @reader
    def copy(th_items: BlockingIO[int]) -> Iterator[int]:
        try:
            for x in th_items.stream():
                reading.set()  # the next read blocks: nothing more comes
                yield x
        except BaseException as exc:
            caught.append(exc)
            raise
        finally:
            stopped.set()

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, source, reader)
        await _thread_wait(reading)
        await run.cancel()
        await _thread_wait(stopped)
        with pytest.raises(RunCancelledError):
            await run.wait()
        states = await run.states()
    assert states["th_cancel_read"].status == "cancelled"
    # Woken by the end run.cancel() gives the stream, or by the processor's
    # cancellation, whichever comes first: either way the thread unwound.
    assert len(caught) == 1


async def test_cancel_wakes_a_sync_generator_held_back_by_backpressure(
    store: Store,
) -> None:
    supervisor = _supervisor(store, batch_size=8, window=16)
    producer = Processor(name="th_cancel_bp", outputs=["th_items"])
    slow = Processor(name="th_cancel_bp_slow", inputs=["th_items"], outputs=["th_out"])
    produced: list[int] = []
    stopped = threading.Event()

    @producer
    def produce() -> Iterator[int]:
        try:
            i = 0
            while True:  # held back once it is a window ahead of its reader
                produced.append(i)
                yield i
                i += 1
        finally:
            stopped.set()

    @slow
    async def read_one(th_items: IO[int]) -> AsyncIterator[int]:
        yield await th_items.first()
        await anyio.sleep_forever()

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, producer, slow)
        assert await run["th_out"].first() == 0
        await run.cancel()
        await _thread_wait(stopped)
        with pytest.raises(RunCancelledError):
            await run.wait()
        states = await run.states()
    assert states["th_cancel_bp"].status == "cancelled"
    assert len(produced) < 1000  # it was held back, not running free


# --------------------------------------------------------------------------------------
# The bridge on its own: what only it can stop


class ListSink:
    """A real sink that keeps what it is given (``Outputs`` in a processor)."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.buffered: list[Any] = []
        self.flushed: list[list[Any]] = []

    def put(self, item: Any) -> bool:
        self.buffered.append(item)
        return len(self.buffered) >= self.batch_size

    async def flush(self) -> None:
        if self.buffered:
            self.flushed.append(self.buffered)
            self.buffered = []


async def test_cancelling_the_caller_wakes_a_thread_waiting_on_the_loop() -> None:
    bridge = ThreadBridge("th_unit", ListSink(4), batch_size=4, flush_interval=60)
    waiting = threading.Event()
    caught: list[BaseException] = []

    async def wait_forever() -> None:
        waiting.set()
        await anyio.sleep_forever()

    def in_thread() -> None:
        try:
            call_from_thread(wait_forever)
        except BaseException as exc:
            caught.append(exc)
            raise

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(bridge.run, in_thread)
            await _thread_wait(waiting)
            tg.cancel_scope.cancel()
    assert len(caught) == 1
    assert isinstance(caught[0], ThreadCancelled)
    assert str(caught[0]) == "processor 'th_unit' was cancelled"


async def test_a_call_after_the_cancellation_raises_instead_of_waiting_for_good() -> (
    None
):
    # The thread is busy in blocking code when its processor is cancelled, and
    # only then asks the loop for something that never comes. On asyncio, anyio
    # does not cancel such a call (anyio discussion #1427): the bridge must.
    bridge = ThreadBridge("th_unit", ListSink(4), batch_size=4, flush_interval=60)
    busy, resume = threading.Event(), threading.Event()
    caught: list[BaseException] = []

    def in_thread() -> None:
        busy.set()
        assert resume.wait(TIMEOUT)  # stands for a long computation
        try:
            call_from_thread(anyio.sleep_forever)
        except BaseException as exc:
            caught.append(exc)
            raise

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(bridge.run, in_thread)
            await _thread_wait(busy)
            tg.cancel_scope.cancel()
            with anyio.CancelScope(shield=True):
                await wait_all_tasks_blocked()  # the bridge has seen it
            resume.set()
    assert len(caught) == 1
    assert isinstance(caught[0], ThreadCancelled)


async def test_the_bridge_hands_values_over_in_batches_in_order() -> None:
    sink = ListSink(4)
    bridge = ThreadBridge("th_unit", sink, batch_size=4, flush_interval=60)

    def in_thread() -> None:
        bridge.drive(i for i in range(10))

    with anyio.fail_after(TIMEOUT):
        await bridge.run(in_thread)
    # Two full batches crossed while the generator ran; the last two values
    # were taken when it ended (the processor's caller flushes them).
    assert sink.flushed == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert sink.buffered == [8, 9]


async def test_an_error_in_the_thread_comes_out_as_it_is_after_the_values() -> None:
    sink = ListSink(100)
    bridge = ThreadBridge("th_unit", sink, batch_size=100, flush_interval=60)

    def produce() -> Generator[int]:
        yield 1
        yield 2
        raise KeyError("bad")

    def in_thread() -> None:
        bridge.drive(produce())

    with anyio.fail_after(TIMEOUT), pytest.raises(KeyError, match="bad"):
        await bridge.run(in_thread)
    assert sink.buffered == [1, 2]


class FailingSink(ListSink):
    """A sink whose writes fail (a value that cannot be encoded, a dead store)."""

    def __init__(self) -> None:
        super().__init__(batch_size=100)
        self.failed = threading.Event()

    async def flush(self) -> None:
        self.failed.set()
        raise ValueError("cannot write")


async def test_a_failed_flush_of_idle_values_is_raised_in_the_thread() -> None:
    sink = FailingSink()
    bridge = ThreadBridge("th_unit", sink, batch_size=100, flush_interval=0.001)
    caught: list[BaseException] = []

    def produce() -> Generator[int]:
        yield 1
        assert sink.failed.wait(TIMEOUT)  # busy while the loop flushes the 1
        try:
            call_from_thread(anyio.lowlevel.checkpoint)
        except ValueError as exc:
            caught.append(exc)
            raise

    def in_thread() -> None:
        bridge.drive(produce())

    with anyio.fail_after(TIMEOUT), pytest.raises(ValueError, match="cannot write"):
        await bridge.run(in_thread)
    assert len(caught) == 1
