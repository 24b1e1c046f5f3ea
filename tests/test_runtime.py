"""Running flows: kinds of implementations, staging, failures as data, retries,
cancellation, run handles, bad inputs and serialization.

Every coordination between a test and its processors goes through ``anyio.Event``s
(or a ``threading.Event`` for worker threads), never through sleeps.
"""

import dataclasses
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.to_thread
import pydantic
import pytest

from datagraph import (
    IO,
    BlockingIO,
    Flow,
    IOVal,
    LocalExecutor,
    MissingInputError,
    MsgpackSerializer,
    PickleSerializer,
    Processor,
    ProcessorNotFoundError,
    RunCancelledError,
    RunFailedError,
    RunNotFoundError,
    SerializationError,
    SignatureError,
    Store,
    Supervisor,
    UpstreamError,
)
from datagraph.serializers import EntryContext
from helpers import read_until_failure, run_processors, start

pytestmark = pytest.mark.anyio

TIMEOUT = 10


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


class Item(pydantic.BaseModel):
    name: str
    qty: int


class Opaque:
    """Not something MessagePack can carry; pickle can."""

    def __init__(self, payload: complex) -> None:
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Opaque) and other.payload == self.payload

    __hash__ = None  # type: ignore[assignment]


# --------------------------------------------------------------------------------------
# Kinds of implementations


async def test_async_generator_routes_iovals_by_name(supervisor: Supervisor) -> None:
    proc = Processor(name="rt_agen_split", inputs=["numbers"], outputs=["even", "odd"])

    @proc
    async def impl(numbers: IO[int]) -> AsyncIterator[IOVal[int]]:
        async for n in numbers.stream():
            yield IOVal("odd" if n % 2 else "even", n)

    outputs = await run_processors(supervisor, proc, numbers=range(7))
    assert outputs == {"even": [0, 2, 4, 6], "odd": [1, 3, 5]}


async def test_async_processors_start_without_a_worker_thread(
    supervisor: Supervisor,
) -> None:
    # fast-depends calls what is not a coroutine function in a worker thread; an
    # async generator went there just to be created, at every start (and the
    # first run of a process waited for a new thread). With the only worker
    # thread token held, such a start would wait for good.
    proc = Processor(name="rt_agen_threadless", inputs=["numbers"], outputs=["twice"])

    @proc
    async def impl(numbers: IO[int]) -> AsyncIterator[int]:
        async for n in numbers.stream():
            yield 2 * n

    limiter = anyio.to_thread.current_default_thread_limiter()
    tokens, limiter.total_tokens = limiter.total_tokens, 1
    try:
        async with limiter:
            outputs = await run_processors(supervisor, proc, numbers=range(3))
    finally:
        limiter.total_tokens = tokens  # the loop may serve later tests
    assert outputs == {"twice": [0, 2, 4]}


async def test_async_function_returning_an_ioval(supervisor: Supervisor) -> None:
    proc = Processor(name="rt_afunc_ioval", inputs=["numbers"], outputs=["total"])

    @proc
    async def impl(numbers: IO[int]) -> IOVal[int]:
        return IOVal("total", sum(await numbers.collect()))

    assert await run_processors(supervisor, proc, numbers=range(5)) == {"total": [10]}


async def test_async_function_returning_a_bare_value(supervisor: Supervisor) -> None:
    proc = Processor(name="rt_afunc_bare", inputs=["numbers"], outputs=["total"])

    @proc
    async def impl(numbers: IO[int]) -> int:
        return sum(await numbers.collect())

    assert await run_processors(supervisor, proc, numbers=[4]) == {"total": [4]}


async def test_async_function_returning_a_list_of_iovals(
    supervisor: Supervisor,
) -> None:
    proc = Processor(name="rt_afunc_list", inputs=["numbers"], outputs=["low", "high"])

    @proc
    async def impl(numbers: IO[int]) -> list[IOVal[int]]:
        values = await numbers.collect()
        return [
            IOVal("high", max(values)),
            IOVal("low", min(values)),
            IOVal("high", max(values) + 1),
        ]

    outputs = await run_processors(supervisor, proc, numbers=[3, 1, 2])
    assert outputs == {"low": [1], "high": [3, 4]}


async def test_async_function_returning_none_ends_its_outputs_empty(
    supervisor: Supervisor,
) -> None:
    proc = Processor(name="rt_afunc_none", inputs=["numbers"], outputs=["nothing"])
    seen: list[int] = []

    @proc
    async def impl(numbers: IO[int]) -> None:
        seen.extend(await numbers.collect())

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc, inputs=[IOVal("numbers", 1)])
        assert await run["nothing"].collect() == []
        await run.wait()
        assert await run["nothing"].is_complete()
        assert seen == [1]
        assert await run.status() == "succeeded"


async def test_sync_function_runs_in_a_worker_thread(supervisor: Supervisor) -> None:
    proc = Processor(
        name="rt_sync_func", inputs=["numbers", "label"], outputs=["report"]
    )
    threads: list[int] = []

    @proc
    def impl(numbers: BlockingIO[int], label: BlockingIO[str]) -> IOVal[str]:
        threads.append(threading.get_ident())
        values = numbers.collect()
        assert numbers.is_complete()
        return IOVal("report", f"{label.first()}={sum(values)}")

    with anyio.fail_after(TIMEOUT):
        run = await start(
            supervisor,
            proc,
            inputs=[IOVal("numbers", 1), IOVal("numbers", 2), IOVal("label", "sum")],
        )
        assert await run["report"].collect() == ["sum=3"]
        await run.wait()
    assert threads
    assert threads[0] != threading.get_ident()


async def test_sync_generator_runs_in_a_worker_thread_without_blocking_the_loop(
    supervisor: Supervisor,
) -> None:
    proc = Processor(name="rt_sync_gen", inputs=["numbers"], outputs=["doubled"])
    gate = threading.Event()
    gate_opened: list[bool] = []
    threads: list[int] = []

    @proc
    def impl(numbers: BlockingIO[int]) -> Iterator[int]:
        threads.append(threading.get_ident())
        for n in numbers.stream():
            yield 2 * n
            if n == 1:
                # Blocks this thread only: the event loop goes on, so the test can
                # read the first value and open the gate.
                gate_opened.append(gate.wait(timeout=5))

    with anyio.fail_after(TIMEOUT):
        run = await start(
            supervisor, proc, inputs=[IOVal("numbers", n) for n in (1, 2, 3)]
        )
        assert await run["doubled"].first() == 2
        gate.set()
        assert await run["doubled"].collect() == [2, 4, 6]
        await run.wait()
    assert gate_opened == [True]
    assert threads[0] != threading.get_ident()


async def test_sync_implementation_may_annotate_inputs_as_io(
    supervisor: Supervisor,
) -> None:
    proc = Processor(name="rt_sync_io_annotation", inputs=["numbers"], outputs=["out"])

    @proc
    def impl(numbers: IO[int]) -> Iterator[int]:
        # Sync code gets a blocking view whatever the annotation says.
        handed: object = numbers
        assert isinstance(handed, BlockingIO)
        yield from handed.stream()

    assert await run_processors(supervisor, proc, numbers=[9]) == {"out": [9]}


# --------------------------------------------------------------------------------------
# Waiting processors


async def test_waiting_processor_starts_while_an_unrelated_branch_streams(
    supervisor: Supervisor,
) -> None:
    a_src = Processor(name="rt_stage_a_src", outputs=["a_items"])
    a_wait = Processor(
        name="rt_stage_a_wait", inputs=["a_items"], outputs=["a_total"], wait=True
    )
    b_src = Processor(name="rt_stage_b_src", outputs=["b_items"])
    a_release = anyio.Event()
    a_started = anyio.Event()
    a_input_complete: list[bool] = []
    b_streaming_when_a_started: list[bool] = []
    b_done = False

    @a_src
    async def produce_a() -> AsyncIterator[int]:
        yield 1
        yield 2
        await a_release.wait()
        yield 3

    @a_wait
    async def total_a(a_items: IO[int]) -> IOVal[int]:
        a_input_complete.append(await a_items.is_complete())
        b_streaming_when_a_started.append(not b_done)
        a_started.set()
        return IOVal("a_total", sum(await a_items.collect()))

    @b_src
    async def produce_b() -> AsyncIterator[str]:
        nonlocal b_done
        yield "b1"
        # Branch B keeps streaming until A's waiting processor has started: a
        # runtime that held waiting processors until every stream ended would
        # never get past this point.
        await a_started.wait()
        yield "b2"
        b_done = True

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, a_src, a_wait, b_src, all_outputs=True)
        assert await run["a_items"].first() == 1
        assert await run["b_items"].first() == "b1"
        # A's input is still open: its waiting processor has not started.
        assert (await run.states())["rt_stage_a_wait"].status == "pending"
        assert not a_started.is_set()
        a_release.set()

        assert await run["a_total"].collect() == [6]
        assert await run["b_items"].collect() == ["b1", "b2"]
        await run.wait()
    assert a_input_complete == [True]
    assert b_streaming_when_a_started == [True]


async def test_waiting_processor_waits_for_all_of_its_inputs(
    supervisor: Supervisor,
) -> None:
    slow = Processor(name="rt_stage_all_slow", outputs=["slow"])
    join = Processor(
        name="rt_stage_all_join",
        inputs=["given", "slow"],
        outputs=["joined"],
        wait=True,
    )
    release = anyio.Event()

    @slow
    async def produce() -> AsyncIterator[int]:
        yield 1
        await release.wait()
        yield 2

    @join
    async def join_impl(given: IO[int], slow: IO[int]) -> IOVal[list[int]]:
        assert await given.is_complete()
        assert await slow.is_complete()
        return IOVal("joined", [*await given.collect(), *await slow.collect()])

    with anyio.fail_after(TIMEOUT):
        run = await start(
            supervisor, slow, join, inputs=[IOVal("given", 0)], all_outputs=True
        )
        assert await run["slow"].first() == 1
        # "given" ended when the run started; "slow" has not.
        assert await run["given"].is_complete()
        assert not await run["slow"].is_complete()
        assert (await run.states())["rt_stage_all_join"].status == "pending"
        release.set()
        assert await run["joined"].collect() == [[0, 1, 2]]
        await run.wait()


async def test_waiting_processor_on_flow_inputs_starts_at_once(
    supervisor: Supervisor,
) -> None:
    proc = Processor(
        name="rt_stage_inputs_only", inputs=["x"], outputs=["y"], wait=True
    )

    @proc
    async def impl(x: IO[int]) -> IOVal[int]:
        return IOVal("y", len(await x.collect()))

    assert await run_processors(supervisor, proc, x=[1, 2]) == {"y": [2]}


# --------------------------------------------------------------------------------------
# Failure is data


async def test_failure_reaches_every_reader_within_a_second(
    supervisor: Supervisor,
) -> None:
    failing = Processor(name="rt_fail_src", outputs=["numbers"])
    relay = Processor(name="rt_fail_relay", inputs=["numbers"], outputs=["relayed"])
    other = Processor(name="rt_fail_other", inputs=["words"], outputs=["upper"])
    fail_now = anyio.Event()

    @failing
    async def failing_impl() -> AsyncIterator[int]:
        yield 1
        yield 2
        await fail_now.wait()
        msg = "boom after 2"
        raise ValueError(msg)

    @relay
    async def relay_impl(numbers: IO[int]) -> AsyncIterator[int]:
        async for n in numbers.stream():
            yield 10 * n

    @other
    async def other_impl(words: IO[str]) -> AsyncIterator[str]:
        async for w in words.stream():
            yield w.upper()

    readers = [("numbers", 0), ("numbers", 1), ("relayed", 2)]
    outcomes: dict[int, tuple[list[Any], UpstreamError]] = {}
    two_values = [anyio.Event() for _ in readers]

    async def read(stream: str, index: int) -> None:
        values: list[Any] = []
        try:
            async for value in run[stream].stream():
                values.append(value)
                if len(values) == 2:
                    two_values[index].set()
        except UpstreamError as exc:
            outcomes[index] = (values, exc)

    with anyio.fail_after(TIMEOUT):
        run = await start(
            supervisor,
            failing,
            relay,
            other,
            inputs=[IOVal("words", w) for w in ("a", "b")],
            all_outputs=True,
        )
        async with anyio.create_task_group() as tg:
            for stream, index in readers:
                tg.start_soon(read, stream, index)
            for event in two_values:
                await event.wait()
            fail_now.set()
            failed_at = anyio.current_time()
        elapsed = anyio.current_time() - failed_at

    assert elapsed < 1.0
    assert sorted(outcomes) == [0, 1, 2]
    for index, (stream, _) in enumerate(readers):
        values, err = outcomes[index]
        assert values == ([1, 2] if stream == "numbers" else [10, 20])
        assert err.processor == "rt_fail_src"
        assert err.error_type == "ValueError"
        assert err.message == "boom after 2"
        assert "ValueError: boom after 2" in err.traceback
        assert "failing_impl" in err.traceback
        assert err.stream == stream
        assert "'rt_fail_src'" in str(err)
        assert "ValueError: boom after 2" in str(err)

    with anyio.fail_after(TIMEOUT):
        # The branch that does not depend on the failure still finishes.
        assert await run["upper"].collect() == ["A", "B"]
        with pytest.raises(RunFailedError) as excinfo:
            await run.wait()
        assert await run.status() == "failed"
        states = await run.states()
        errors = await run.errors()

    failed = excinfo.value
    assert failed.run_id == run.id
    assert "rt_fail_src" in failed.errors
    assert "rt_fail_other" not in failed.errors
    assert failed.errors["rt_fail_src"].error_type == "ValueError"
    assert "rt_fail_src" in str(failed)
    assert "ValueError: boom after 2" in str(failed)
    assert states["rt_fail_src"].status == "failed"
    assert states["rt_fail_other"].status == "done"
    assert set(errors) == set(failed.errors)


async def test_failure_before_any_value(supervisor: Supervisor) -> None:
    proc = Processor(name="rt_fail_at_once", inputs=["x"], outputs=["y"])

    @proc
    async def impl(x: IO[int]) -> IOVal[int]:
        return IOVal("y", 1 // (await x.first()))

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc, inputs=[IOVal("x", 0)])
        values, err = await read_until_failure(run["y"])
        assert values == []
        assert err.error_type == "ZeroDivisionError"
        assert "ZeroDivisionError" in err.traceback
        with pytest.raises(RunFailedError, match="rt_fail_at_once"):
            await run.wait()


async def test_sync_failure_is_data_too(supervisor: Supervisor) -> None:
    proc = Processor(name="rt_fail_sync", inputs=["x"], outputs=["y"])

    @proc
    def impl(x: BlockingIO[int]) -> Iterator[int]:
        for v in x.stream():
            if v == 3:
                msg = f"cannot handle {v}"
                raise LookupError(msg)
            yield v

    with anyio.fail_after(TIMEOUT):
        run = await start(
            supervisor, proc, inputs=[IOVal("x", v) for v in (1, 2, 3, 4)]
        )
        values, err = await read_until_failure(run["y"])
        assert values == [1, 2]
        assert (err.processor, err.error_type, err.message) == (
            "rt_fail_sync",
            "LookupError",
            "cannot handle 3",
        )
        with pytest.raises(RunFailedError):
            await run.wait()
        assert await run.status() == "failed"


async def test_waiting_processor_behind_a_failure_fails_too(
    supervisor: Supervisor,
) -> None:
    src = Processor(name="rt_fail_before_wait_src", outputs=["items"])
    later = Processor(
        name="rt_fail_before_wait_later", inputs=["items"], outputs=["total"], wait=True
    )
    ran: list[bool] = []

    @src
    async def produce() -> AsyncIterator[int]:
        yield 1
        msg = "source broke"
        raise OSError(msg)

    @later
    async def total(items: IO[int]) -> IOVal[int]:
        ran.append(True)
        return IOVal("total", sum(await items.collect()))

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, src, later)
        values, err = await read_until_failure(run["total"])
        assert values == []
        assert err.processor == "rt_fail_before_wait_src"
        assert err.message == "source broke"
        with pytest.raises(RunFailedError) as excinfo:
            await run.wait()
    assert "rt_fail_before_wait_src" in excinfo.value.errors
    assert ran == []


# --------------------------------------------------------------------------------------
# Retries


async def test_retries_then_success_writes_each_value_once(
    supervisor: Supervisor,
) -> None:
    proc = Processor(name="rt_retry_ok", outputs=["out"], retries=2, retry_delay=0)
    attempts = 0

    @proc
    async def impl() -> AsyncIterator[int]:
        nonlocal attempts
        attempts += 1
        for i in range(5):
            # Attempt 1 dies after 2 values, attempt 2 after 4, attempt 3 succeeds.
            if i == 2 * attempts:
                msg = f"flaky on attempt {attempts}"
                raise ConnectionError(msg)
            yield i

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc)
        assert await run["out"].collect() == [0, 1, 2, 3, 4]
        await run.wait()
        assert await run.status() == "succeeded"
        state = (await run.states())["rt_retry_ok"]
    assert attempts == 3
    assert state.status == "done"
    assert state.attempt == 3


async def test_retries_exhausted_fail_the_processor(supervisor: Supervisor) -> None:
    proc = Processor(name="rt_retry_fail", outputs=["out"], retries=1, retry_delay=0)
    attempts = 0

    @proc
    async def impl() -> AsyncIterator[int]:
        nonlocal attempts
        attempts += 1
        yield 0
        msg = f"attempt {attempts} failed"
        raise ConnectionError(msg)

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc)
        values, err = await read_until_failure(run["out"])
        with pytest.raises(RunFailedError):
            await run.wait()
    assert attempts == 2
    assert values == [0]
    assert err.message == "attempt 2 failed"


# --------------------------------------------------------------------------------------
# Cancellation


async def test_cancel_stops_every_processor(supervisor: Supervisor) -> None:
    src = Processor(name="rt_cancel_src", outputs=["items"])
    later = Processor(
        name="rt_cancel_later", inputs=["items"], outputs=["summary"], wait=True
    )
    stopped = anyio.Event()
    later_ran: list[bool] = []

    @src
    async def produce() -> AsyncIterator[int]:
        try:
            yield 1
            await anyio.sleep_forever()
            yield 2
        finally:
            stopped.set()

    @later
    async def summarize(items: IO[int]) -> IOVal[int]:
        later_ran.append(True)
        return IOVal("summary", len(await items.collect()))

    blocked_reader: list[tuple[list[Any], UpstreamError]] = []

    async def read_items() -> None:
        blocked_reader.append(await read_until_failure(run["items"]))

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, src, later, all_outputs=True)
        assert await run["items"].first() == 1
        assert await run.status() == "running"
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_items)
            await run.cancel()
        await stopped.wait()  # the running processor was stopped
        with pytest.raises(RunCancelledError) as excinfo:
            await run.wait()
        assert await run.status() == "cancelled"
        _, summary_err = await read_until_failure(run["summary"])
        states = await run.states()

    ((values, err),) = blocked_reader
    assert values == [1]
    assert err.error_type == "Cancelled"
    assert summary_err.error_type == "Cancelled"
    assert isinstance(excinfo.value, RunFailedError)
    assert excinfo.value.run_id == run.id
    assert later_ran == []
    assert states["rt_cancel_later"].status == "cancelled"
    assert states["rt_cancel_src"].status == "cancelled"


# --------------------------------------------------------------------------------------
# Run handles


async def test_run_handle_maps_the_flow_outputs(
    supervisor: Supervisor, store: Store
) -> None:
    first = Processor(name="rt_handle_first", inputs=["x"], outputs=["mid"])
    second = Processor(name="rt_handle_second", inputs=["mid"], outputs=["out"])

    @first
    async def inc(x: IO[int]) -> AsyncIterator[int]:
        async for v in x.stream():
            yield v + 1

    @second
    async def neg(mid: IO[int]) -> AsyncIterator[int]:
        async for v in mid.stream():
            yield -v

    with anyio.fail_after(TIMEOUT):
        run = await start(
            supervisor, first, second, inputs=[IOVal("x", 1), IOVal("x", 2)]
        )
        assert isinstance(run, dict)  # a dict of the outputs, as the seed expects
        assert list(run) == ["out"]
        assert len(run) == 1
        assert "mid" not in run
        with pytest.raises(KeyError, match="all_outputs=True"):
            run["mid"]
        assert isinstance(run.id, str)
        assert run.id

        # Any supervisor attached to the same store finds the run by its id.
        elsewhere = Supervisor(store=store, executor=LocalExecutor())
        found = await elsewhere.get_run(run.id)
        assert found.id == run.id
        assert list(found) == ["out"]
        assert await found["out"].collect() == [-2, -3]
        await found.wait()
        assert await found.status() == "succeeded"

        everything = await start(
            supervisor, first, second, inputs=[IOVal("x", 5)], all_outputs=True
        )
        assert set(everything) == {"x", "mid", "out"}
        assert await everything["mid"].collect() == [6]
        await everything.wait()


async def test_unknown_run_id(supervisor: Supervisor) -> None:
    with (
        anyio.fail_after(TIMEOUT),
        pytest.raises(RunNotFoundError, match="no-such-run"),
    ):
        await supervisor.get_run("no-such-run")


async def test_wait_with_a_timeout(supervisor: Supervisor) -> None:
    proc = Processor(name="rt_wait_timeout", outputs=["out"])
    release = anyio.Event()

    @proc
    async def impl() -> AsyncIterator[int]:
        yield 1
        await release.wait()

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc)
        assert await run["out"].first() == 1
        with pytest.raises(TimeoutError):
            await run.wait(timeout=0.05)
        assert await run.status() == "running"
        release.set()
        await run.wait()
        assert await run.status() == "succeeded"


async def test_one_output_takes_every_kind_of_item(supervisor: Supervisor) -> None:
    """Bare values of any type (also types seen for the first time after many
    others), IOVals and instances of IOVal subclasses all reach the one output."""

    class Tagged(IOVal[int], frozen=True):
        pass

    proc = Processor(name="rt_item_kinds", outputs=["out"])
    # More bare types than ``Outputs.put`` remembers, each new to it.
    kinds = [dataclasses.make_dataclass(f"Kind{i}", [("i", int)]) for i in range(100)]
    expected: list[Any] = [1, "two", {"name": "x", "value": 3}, 4, 5, 6.0]
    expected += [{"i": i} for i in range(100)] + [7]

    @proc
    async def impl() -> AsyncIterator[Any]:
        yield 1
        yield "two"
        yield IOVal("out", IOVal("x", 3))  # an IOVal as a value (read as a map)
        yield IOVal("out", 4)
        yield Tagged("out", 5)
        yield 6.0
        for i, kind in enumerate(kinds):
            yield kind(i)
        yield 7

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc)
        values = await run["out"].collect()
        await run.wait()
    assert values == expected


# --------------------------------------------------------------------------------------
# Errors for bad input


@pytest.mark.parametrize("name", ["nope", ["good"], 3], ids=["str", "list", "int"])
async def test_undeclared_output_name(supervisor: Supervisor, name: Any) -> None:
    proc = Processor(name="rt_bad_output_name", outputs=["good", "also_good"])

    @proc
    async def impl() -> AsyncIterator[IOVal[int]]:
        yield IOVal("good", 1)
        yield IOVal(name, 2)  # an unhashable name is no different

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc)
        values, err = await read_until_failure(run["good"])
        with pytest.raises(RunFailedError):
            await run.wait()
    assert values == [1]
    assert err.processor == "rt_bad_output_name"
    assert err.error_type == "OutputError"
    for part in ("'rt_bad_output_name'", repr(name), "'good'", "'also_good'"):
        assert part in err.message


async def test_bare_value_with_two_outputs(supervisor: Supervisor) -> None:
    proc = Processor(name="rt_bare_two_outputs", outputs=["left", "right"])

    @proc
    async def impl() -> AsyncIterator[Any]:
        yield IOVal("left", 1)
        yield 5

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc)
        values, err = await read_until_failure(run["left"])
        right_values, right_err = await read_until_failure(run["right"])
        with pytest.raises(RunFailedError):
            await run.wait()
    assert values == [1]
    assert right_values == []
    assert err.error_type == right_err.error_type == "OutputError"
    assert "'rt_bare_two_outputs'" in err.message
    assert "bare value 5" in err.message
    assert "left" in err.message
    assert "right" in err.message


async def test_unencodable_value_keeps_earlier_values(supervisor: Supervisor) -> None:
    proc = Processor(name="rt_unencodable", outputs=["out"])
    count = 3000

    @proc
    async def impl() -> AsyncIterator[object]:
        for i in range(count):
            yield i
        yield object()
        yield count

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc)
        values, err = await read_until_failure(run["out"])
        with pytest.raises(RunFailedError, match="SerializationError"):
            await run.wait()
        # Reading again gives the same values: nothing was lost or corrupted.
        again, _ = await read_until_failure(run["out"])
    assert values == list(range(count))
    assert again == values
    assert err.processor == "rt_unencodable"
    assert err.error_type == "SerializationError"
    assert "'rt_unencodable'" in err.message
    assert "'out'" in err.message
    assert "object" in err.message


async def test_unencodable_value_flushed_in_the_background_fails_the_run(
    supervisor: Supervisor,
) -> None:
    """The bad value sits in the buffer when the producer lets the event loop run,
    so the background flush (not the producer) meets it; the failure must still
    reach readers and the run. Repeated because which task meets it is a race."""
    proc = Processor(name="rt_unencodable_background", outputs=["out"])

    @proc
    async def impl() -> AsyncIterator[object]:
        yield 0
        yield object()
        await anyio.lowlevel.checkpoint()
        yield 2

    flow = Flow.from_processors(proc).resolve()
    for _ in range(10):
        with anyio.fail_after(TIMEOUT):
            run = await supervisor.start_flow(flow)
            values, err = await read_until_failure(run["out"])
            with pytest.raises(RunFailedError):
                await run.wait()
            assert await run.status() == "failed"
        assert values == [0]
        assert err.error_type == "SerializationError"


async def test_unencodable_flow_input_starts_nothing(
    supervisor: Supervisor, store: Store
) -> None:
    proc = Processor(name="rt_unencodable_input", inputs=["x"], outputs=["y"])

    @proc
    async def impl(x: IO[Any]) -> AsyncIterator[Any]:
        async for v in x.stream():
            yield v

    with anyio.fail_after(TIMEOUT):
        before = await store.list_runs()
        with pytest.raises(SerializationError) as excinfo:
            await start(
                supervisor, proc, inputs=[IOVal("x", 1), IOVal("x", Opaque(1j))]
            )
        assert await store.list_runs() == before
    assert "'x'" in str(excinfo.value)
    assert excinfo.value.index == 1
    assert isinstance(excinfo.value, TypeError)


async def test_missing_flow_input(supervisor: Supervisor, store: Store) -> None:
    proc = Processor(name="rt_missing_input", inputs=["x", "config"], outputs=["y"])

    @proc
    async def impl(x: IO[int], config: IO[str]) -> AsyncIterator[int]:
        async for v in x.stream():
            yield v

    with anyio.fail_after(TIMEOUT):
        before = await store.list_runs()
        with pytest.raises(MissingInputError) as excinfo:
            await start(supervisor, proc, inputs=[IOVal("x", 1)])
        with pytest.raises(ValueError, match="'typo'"):
            await start(
                supervisor,
                proc,
                inputs=[IOVal("x", 1), IOVal("config", "c"), IOVal("typo", 0)],
            )
        assert await store.list_runs() == before
    message = str(excinfo.value)
    assert "'config'" in message
    assert "rt_missing_input" in message
    assert "'x'" not in message
    assert isinstance(excinfo.value, ValueError)


async def test_unregistered_processor(supervisor: Supervisor, store: Store) -> None:
    known = Processor(name="rt_registered_part", inputs=["x"], outputs=["mid"])
    unknown = Processor(name="rt_never_registered", inputs=["mid"], outputs=["y"])

    @known
    async def impl(x: IO[int]) -> AsyncIterator[int]:
        async for v in x.stream():
            yield v

    with anyio.fail_after(TIMEOUT):
        before = await store.list_runs()
        with pytest.raises(ProcessorNotFoundError) as excinfo:
            await start(supervisor, known, unknown, inputs=[IOVal("x", 1)])
        assert await store.list_runs() == before
    assert "rt_never_registered" in str(excinfo.value)
    assert "rt_registered_part" not in str(excinfo.value)
    assert isinstance(excinfo.value, LookupError)


# --------------------------------------------------------------------------------------
# Serialization


async def test_pickle_serializer_round_trip(store: Store) -> None:
    supervisor = Supervisor(
        store=store,
        executor=LocalExecutor(),
        serializer=PickleSerializer(b"a test secret of 32 bytes......."),
    )
    proc = Processor(name="rt_pickle_round_trip", inputs=["things"], outputs=["out"])

    @proc
    async def impl(things: IO[Opaque]) -> AsyncIterator[Opaque]:
        async for thing in things.stream():
            assert isinstance(thing, Opaque)
            yield Opaque(thing.payload * 2)

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc, inputs=[IOVal("things", Opaque(1 + 2j))])
        assert await run["out"].collect() == [Opaque(2 + 4j)]
        await run.wait()


async def test_tampered_pickle_entry_is_rejected(store: Store) -> None:
    serializer = PickleSerializer("another test secret, long enough")
    supervisor = Supervisor(
        store=store, executor=LocalExecutor(), serializer=serializer
    )
    proc = Processor(name="rt_pickle_tamper", outputs=["signed"])
    release = anyio.Event()

    @proc
    async def impl() -> None:
        await release.wait()

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc)
        # Someone with access to the store slips an altered entry in after a good one.
        forged = bytearray(
            serializer.encode(["forged"], EntryContext(run.id, "signed", 1, 1))
        )
        forged[-3] ^= 0x01
        intact = serializer.encode(["intact"], EntryContext(run.id, "signed", 0, 1))
        await store.append(run.id, "signed", 0, 1, intact)
        await store.append(run.id, "signed", 1, 1, bytes(forged))
        release.set()
        await run.wait()

        reader = aiter(run["signed"].stream())
        assert await anext(reader) == "intact"
        with pytest.raises(SignatureError) as excinfo:
            await anext(reader)
    assert "'signed'" in str(excinfo.value)
    assert "signature" in str(excinfo.value)


async def test_entries_signed_with_another_secret_are_rejected(store: Store) -> None:
    writer = Supervisor(
        store=store,
        executor=LocalExecutor(),
        serializer=PickleSerializer(b"the writer's secret, 32 bytes..."),
    )
    reader = Supervisor(
        store=store,
        executor=LocalExecutor(),
        serializer=PickleSerializer(b"the reader's secret, 32 bytes..."),
    )
    proc = Processor(name="rt_pickle_other_secret", outputs=["out"])

    @proc
    async def impl() -> AsyncIterator[int]:
        yield 1

    with anyio.fail_after(TIMEOUT):
        run = await start(writer, proc)
        await run.wait()
        foreign = await reader.get_run(run.id)
        with pytest.raises(SignatureError):
            await foreign["out"].collect()
        # The entry itself is intact for those holding the right secret.
        assert await run["out"].collect() == [1]


async def test_msgpack_is_the_default_serializer(supervisor: Supervisor) -> None:
    assert isinstance(supervisor.serializer, MsgpackSerializer)


async def test_dataclass_and_pydantic_values_are_decoded_into_their_type(
    supervisor: Supervisor,
) -> None:
    src = Processor(name="rt_typed_src", outputs=["points", "items"])
    sink = Processor(name="rt_typed_sink", inputs=["points", "items"], outputs=["out"])

    @src
    async def produce() -> AsyncIterator[IOVal[Any]]:
        yield IOVal("points", Point(1, 2))
        yield IOVal("points", Point(3, 4))
        yield IOVal("items", Item(name="bolt", qty=7))

    @sink
    async def consume(points: IO[Point], items: IO[Item]) -> AsyncIterator[str]:
        async for point in points.stream():
            assert isinstance(point, Point)
            yield f"{type(point).__name__}({point.x + point.y})"
        async for item in items.stream():
            assert isinstance(item, Item)
            yield f"{type(item).__name__}({item.name}x{item.qty})"

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, src, sink)
        assert await run["out"].collect() == ["Point(3)", "Point(7)", "Item(boltx7)"]
        await run.wait()


async def test_value_that_does_not_fit_the_readers_type(supervisor: Supervisor) -> None:
    src = Processor(name="rt_misfit_src", outputs=["points"])
    sink = Processor(name="rt_misfit_sink", inputs=["points"], outputs=["out"])

    @src
    async def produce() -> AsyncIterator[Any]:
        yield "not a point"

    @sink
    async def consume(points: IO[Point]) -> AsyncIterator[int]:
        async for point in points.stream():
            yield point.x

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, src, sink)
        _, err = await read_until_failure(run["out"])
        with pytest.raises(RunFailedError):
            await run.wait()
    assert err.processor == "rt_misfit_sink"
    assert err.error_type == "SerializationError"
    assert "'points'" in err.message
