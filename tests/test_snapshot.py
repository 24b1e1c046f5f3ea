"""Live figures of a run, read from any process attached to the same store."""

from collections.abc import AsyncIterator
from typing import Annotated

import anyio
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
from datagraph.snapshot import RunSnapshot

pytestmark = pytest.mark.anyio

TIMEOUT = 10

numbers = Processor(name="sn_numbers", inputs=["sn_n"], outputs=["sn_values"])


class Gate:
    """Holds ``sn_halves`` at value 50 until the test has looked."""

    def __init__(self) -> None:
        self.reached = anyio.Event()
        self.opened = anyio.Event()


def get_gate() -> Gate:
    raise NotImplementedError("each test overrides get_gate with its own Gate")


@numbers
async def _numbers(sn_n: IO[int]) -> AsyncIterator[int]:
    for i in range(await sn_n.first()):
        yield i


halves = Processor(name="sn_halves", inputs=["sn_values"], outputs=["sn_halved"])


@halves
async def _halves(
    sn_values: IO[int], gate: Annotated[Gate, Depends(get_gate)]
) -> AsyncIterator[float]:
    async for value in sn_values.stream():
        if value == 50:
            gate.reached.set()
            await gate.opened.wait()
        yield value / 2


summed = Processor(name="sn_sum", inputs=["sn_halved"], outputs=["sn_total"], wait=True)


@summed
async def _summed(sn_halved: IO[float]) -> float:
    return sum(await sn_halved.collect())


async def test_a_snapshot_shows_where_the_data_is(store: Store) -> None:
    gate = Gate()
    supervisor = Supervisor(store=store, executor=LocalExecutor(), batch_size=10)
    flow = Flow.from_processors(numbers, halves, summed).resolve()
    with supervisor.override(get_gate, lambda: gate), anyio.fail_after(TIMEOUT):
        run = await supervisor.start_flow(flow, inputs=[IOVal("sn_n", 200)])
        await gate.reached.wait()
        snap = await (await supervisor.get_run(run.id)).snapshot()

        assert snap.run_id == run.id
        assert snap.status == "running"
        assert not snap.finished
        values = snap.streams["sn_values"]
        assert values.producer == "sn_numbers"
        assert values.written >= 51
        # Cursors move with each read: sn_halves has read no further than 50.
        assert 0 <= values.readers["sn_halves"] <= 50
        assert values.backlog == values.written - values.readers["sn_halves"]
        assert snap.streams["sn_n"].producer is None
        assert snap.streams["sn_n"].ended
        assert snap.processors["sn_halves"].status == "running"
        assert snap.processors["sn_sum"].status == "waiting"
        assert snap.processors["sn_halves"].started is not None

        gate.opened.set()
        await run.wait()
        done = await run.snapshot()

    assert done.status == "succeeded"
    assert done.finished
    assert done.streams["sn_values"].written == 200
    assert done.streams["sn_values"].backlog == 0
    assert done.streams["sn_halved"].readers == {"sn_sum": 200}
    assert all(p.status == "done" for p in done.processors.values())
    rates = done.rates(snap)
    assert rates["sn_halved"] > 0
    assert rates["sn_n"] == 0


failing = Processor(name="sn_failing", inputs=["sn_values"], outputs=["sn_never"])


@failing
async def _failing(sn_values: IO[int]) -> AsyncIterator[int]:
    async for value in sn_values.stream():
        if value == 3:
            raise KeyError("missing thing")
        yield value


async def test_a_snapshot_shows_a_failure_and_its_traceback(store: Store) -> None:
    supervisor = Supervisor(store=store, executor=LocalExecutor())
    flow = Flow.from_processors(numbers, failing).resolve()
    with anyio.fail_after(TIMEOUT):
        run = await supervisor.start_flow(flow, inputs=[IOVal("sn_n", 10)])
        with pytest.raises(Exception, match="sn_failing"):
            await run.wait()
        snap: RunSnapshot = await run.snapshot()
    assert snap.status == "failed"
    broken = snap.processors["sn_failing"]
    assert broken.status == "failed"
    assert broken.error == "KeyError: 'missing thing'"
    assert broken.traceback is not None
    assert "_failing" in broken.traceback
    assert snap.streams["sn_never"].failed
