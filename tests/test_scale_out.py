"""Scale-out: N instances of one processor share its input."""

from collections.abc import AsyncIterator
from typing import Annotated

import anyio
import pytest

from datagraph import (
    IO,
    Depends,
    Flow,
    IOVal,
    Processor,
    RunFailedError,
    Supervisor,
    UpstreamError,
)

pytestmark = pytest.mark.anyio

TIMEOUT = 10
INSTANCES = 8

source = Processor(name="so_source", inputs=["so_n"], outputs=["so_items"])


@source
async def _source(so_n: IO[int]) -> AsyncIterator[int]:
    for i in range(await so_n.first()):
        yield i


class Tally:
    """What the instances of ``so_worker`` saw, for the test to check."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.busy = 0
        self.all_busy = anyio.Event()


def get_tally() -> Tally:
    raise NotImplementedError("each test overrides get_tally with its own Tally")


worker = Processor(
    name="so_worker", inputs=["so_items"], outputs=["so_done"], instances=INSTANCES
)


@worker
async def _worker(
    so_items: IO[int], tally: Annotated[Tally, Depends(get_tally)]
) -> AsyncIterator[int]:
    async for item in so_items.stream():
        tally.seen.append(item)
        if not tally.all_busy.is_set():
            # Hold the first value until every instance holds one: this only
            # finishes if the instances really run side by side.
            tally.busy += 1
            if tally.busy == INSTANCES:
                tally.all_busy.set()
            await tally.all_busy.wait()
        yield item * 10


async def test_each_value_is_processed_by_exactly_one_instance_in_parallel(
    supervisor: Supervisor,
) -> None:
    tally = Tally()
    flow = Flow.from_processors(source, worker).resolve()
    with supervisor.override(get_tally, lambda: tally), anyio.fail_after(TIMEOUT):
        run = await supervisor.start_flow(flow, inputs=[IOVal("so_n", 500)])
        done = await run["so_done"].collect()
        await run.wait()
    assert sorted(tally.seen) == list(range(500))  # each value once: no loss, repeat
    assert sorted(done) == [i * 10 for i in range(500)]
    assert tally.all_busy.is_set()
    assert (await run.states())["so_worker"].status == "done"
    assert await run.status() == "succeeded"


picky = Processor(
    name="so_picky", inputs=["so_items"], outputs=["so_kept"], instances=4
)


@picky
async def _picky(so_items: IO[int]) -> AsyncIterator[int]:
    async for item in so_items.stream():
        if item == 7:
            raise ValueError("seven is not allowed")
        yield item


async def test_a_failing_instance_fails_the_processor_for_every_reader(
    supervisor: Supervisor,
) -> None:
    flow = Flow.from_processors(source, picky).resolve()
    with anyio.fail_after(TIMEOUT):
        run = await supervisor.start_flow(flow, inputs=[IOVal("so_n", 100)])
        with pytest.raises(UpstreamError) as caught:
            await run["so_kept"].collect()
        assert caught.value.processor == "so_picky"
        assert caught.value.error_type == "ValueError"
        with pytest.raises(RunFailedError) as failed:
            await run.wait()
    assert set(failed.value.errors) == {"so_picky"}
    assert await run.status() == "failed"


def test_instances_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1 instance"):
        Processor(name="so_none", inputs=["a"], outputs=["b"], instances=0)
