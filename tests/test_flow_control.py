"""Backpressure and trimming: memory stays bounded, and nothing deadlocks."""

from collections.abc import AsyncIterator
from typing import Annotated

import anyio
import anyio.lowlevel
import pytest

from datagraph import (
    IO,
    Depends,
    Flow,
    IOVal,
    LocalExecutor,
    Processor,
    Store,
    Supervisor,
)
from datagraph.testing import run_flow

pytestmark = pytest.mark.anyio

TIMEOUT = 10
WINDOW = 64
BATCH = 8


@pytest.fixture
def supervisor(store: Store) -> Supervisor:
    return Supervisor(
        store=store, executor=LocalExecutor(), window=WINDOW, batch_size=BATCH
    )


source = Processor(name="fc_source", inputs=["fc_n"], outputs=["fc_numbers"])


@source
async def _source(fc_n: IO[int]) -> AsyncIterator[int]:
    for i in range(await fc_n.first()):
        yield i
        await anyio.lowlevel.checkpoint()  # let the flusher run: small batches


class Gate:
    """What a test shares with its processors (each test injects its own)."""

    def __init__(self) -> None:
        #: Set by the reader once it reads; the gated source starts then.
        self.reading = anyio.Event()
        #: The slow reader holds its first value until this is set (and the
        #: eager one its end).
        self.release = anyio.Event()
        #: Set by the eager reader once it has read its whole input.
        self.read_all = anyio.Event()
        #: How many values the gated source has handed over.
        self.produced = 0
        #: The total of each attempt of the retried processor.
        self.attempts: list[int] = []


def get_gate() -> Gate:
    raise NotImplementedError("each test overrides get_gate with its own Gate")


Shared = Annotated[Gate, Depends(get_gate)]

gated = Processor(name="fc_gated", inputs=["fc_n"], outputs=["fc_numbers"])


@gated
async def _gated(fc_n: IO[int], gate: Shared) -> AsyncIterator[int]:
    # Readers count from their first read: start producing once the reader is in.
    await gate.reading.wait()
    for i in range(await fc_n.first()):
        yield i
        gate.produced += 1
        await anyio.lowlevel.checkpoint()


slow_reader = Processor(name="fc_slow", inputs=["fc_numbers"], outputs=["fc_total"])


@slow_reader
async def _slow(fc_numbers: IO[int], gate: Shared) -> AsyncIterator[int]:
    total = 0
    values = fc_numbers.stream()
    gate.reading.set()  # its first read (below) records the reader before a checkpoint
    async for value in values:
        if value == 0:
            await gate.release.wait()
        total += value
    yield total


async def test_a_slow_reader_holds_the_producer_back(
    supervisor: Supervisor, store: Store
) -> None:
    gate = Gate()
    flow = Flow.from_processors(gated, slow_reader).resolve()
    bound = WINDOW + 2 * BATCH  # the window past the reader's first batch
    with supervisor.override(get_gate, lambda: gate), anyio.fail_after(TIMEOUT):
        run = await supervisor.start_flow(flow, inputs=[IOVal("fc_n", 10_000)])
        # The reader sits on its first value: the producer runs a window ahead...
        while (written := (await store.state(run.id, "fc_numbers")).length) < WINDOW:
            await anyio.wait_all_tasks_blocked()
        # ...and no further, however long it is given.
        for _ in range(50):
            await anyio.wait_all_tasks_blocked()
            written = (await store.state(run.id, "fc_numbers")).length
            assert WINDOW <= written <= bound
            assert gate.produced <= bound + BATCH  # at most a batch in hand
        gate.release.set()
        assert await run["fc_total"].collect() == [sum(range(10_000))]
        await run.wait()


late = Processor(
    name="fc_late", inputs=["fc_numbers"], outputs=["fc_late_total"], wait=True
)


@late
async def _late(fc_numbers: IO[int]) -> int:
    return sum(await fc_numbers.collect())


async def test_waiting_readers_and_external_readers_never_block_a_producer(
    supervisor: Supervisor,
) -> None:
    flow = Flow.from_processors(source, late).resolve()
    # run_flow reads the outputs once the run is over: nobody read fc_numbers
    # while it was written.
    outputs = await run_flow(
        flow, {"fc_n": [2_000]}, all_outputs=True, supervisor=supervisor
    )
    assert outputs["fc_late_total"] == [sum(range(2_000))]
    assert len(outputs["fc_numbers"]) == 2_000


quitter = Processor(name="fc_quitter", inputs=["fc_numbers"], outputs=["fc_first"])


@quitter
async def _quitter(fc_numbers: IO[int]) -> int:
    return int(await fc_numbers.first())


async def test_a_reader_that_finished_early_stops_holding_the_producer(
    supervisor: Supervisor,
) -> None:
    flow = Flow.from_processors(source, quitter).resolve()
    outputs = await run_flow(flow, {"fc_n": [2_000]}, supervisor=supervisor)
    assert outputs == {"fc_first": [0]}


double = Processor(name="fc_double", inputs=["fc_numbers"], outputs=["fc_doubled"])


@double
async def _double(fc_numbers: IO[int]) -> AsyncIterator[int]:
    async for value in fc_numbers.stream():
        yield value * 2


eager = Processor(name="fc_eager", inputs=["fc_numbers"], outputs=["fc_doubled"])


@eager
async def _eager(fc_numbers: IO[int], gate: Shared) -> AsyncIterator[int]:
    values = fc_numbers.stream()
    gate.reading.set()  # the gated source starts once this reader is in
    async for value in values:
        yield value * 2
    gate.read_all.set()
    # Once its last reader is done, a stream goes whole: the test looks first.
    await gate.release.wait()


async def test_intermediate_streams_are_trimmed_and_outputs_kept(
    supervisor: Supervisor, store: Store
) -> None:
    # Trimming needs every reader to have started while the producer still writes;
    # the gated source waits for its reader, so that holds on any schedule.
    gate = Gate()
    flow = Flow.from_processors(gated, eager).resolve()
    with supervisor.override(get_gate, lambda: gate), anyio.fail_after(TIMEOUT):
        run = await supervisor.start_flow(flow, inputs=[IOVal("fc_n", 3_000)])
        await gate.read_all.wait()  # and the reader still runs
        held = await store.read(run.id, "fc_numbers", 0, timeout=0)
        assert held.chunks[0].start > 0  # read by every reader, then freed
        assert held.final is not None
        assert held.final.length == 3_000  # trimming frees memory, not positions
        gate.release.set()
        await run.wait()
        assert await run["fc_doubled"].collect() == [2 * i for i in range(3_000)]


async def test_nothing_is_trimmed_when_a_run_hands_back_every_stream(
    supervisor: Supervisor,
) -> None:
    flow = Flow.from_processors(source, double).resolve()
    outputs = await run_flow(
        flow, {"fc_n": [3_000]}, all_outputs=True, supervisor=supervisor
    )
    assert outputs["fc_numbers"] == list(range(3_000))


retried = Processor(
    name="fc_retried", inputs=["fc_numbers"], outputs=["fc_sum"], retries=1
)


@retried
async def _retried(fc_numbers: IO[int], gate: Shared) -> int:
    total = 0
    async for value in fc_numbers.stream():
        total += value
    gate.attempts.append(total)
    if len(gate.attempts) == 1:
        raise RuntimeError("first attempt fails after reading everything")
    return total


async def test_inputs_of_a_processor_with_retries_are_kept_for_the_retry(
    supervisor: Supervisor, store: Store
) -> None:
    gate = Gate()
    flow = Flow.from_processors(source, retried).resolve()
    with supervisor.override(get_gate, lambda: gate), anyio.fail_after(TIMEOUT):
        run = await supervisor.start_flow(flow, inputs=[IOVal("fc_n", 3_000)])
        assert await run["fc_sum"].collect() == [sum(range(3_000))]
        await run.wait()
    assert gate.attempts == [sum(range(3_000))] * 2
    held = await store.read(run.id, "fc_numbers", 0, timeout=0)
    assert held.chunks[0].start == 0
