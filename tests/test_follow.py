"""Following a run: ``Run.follow()``, ``RateWindow``, and what "finished" means.

Runs are driven by the test: processors wait on events the test hands them through
``Supervisor.override``, and the test sets them once a snapshot shows what it
waits for, so nothing depends on how fast a machine is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from typing import Annotated, Any

import anyio
import pytest

from datagraph import (
    IO,
    Depends,
    Flow,
    IOVal,
    LocalExecutor,
    Processor,
    RateWindow,
    RunNotFoundError,
    RunSnapshot,
    Settings,
    Store,
    StreamFigures,
    Supervisor,
)
from datagraph.snapshot import MIN_RATE_SPAN, ProcessorFigures, average_rate

TIMEOUT = 10


@dataclasses.dataclass
class Gates:
    """What the test lets the processors of a run do, one event each."""

    release: anyio.Event = dataclasses.field(default_factory=anyio.Event)
    reached: anyio.Event = dataclasses.field(default_factory=anyio.Event)


def gates() -> Gates:
    msg = "the test overrides this dependency"
    raise NotImplementedError(msg)


GatesDep = Annotated[Gates, Depends(gates)]


@contextmanager
def _gated(supervisor: Supervisor, *, released: bool = False) -> Iterator[Gates]:
    """Hand the processors of the supervisor's runs fresh gates, for TIMEOUT at most.

    ``released``: the processors need not wait to be let go.
    """
    gate = Gates()
    if released:
        gate.release.set()
    with supervisor.override(gates, lambda: gate), anyio.fail_after(TIMEOUT):
        yield gate


source = Processor(name="fw_source", inputs=["fw_n"], outputs=["fw_values"])


@source
async def _source(fw_n: IO[int], gate: GatesDep) -> AsyncIterator[int]:
    """Write ``n`` values, wait to be released, then write ``n`` more."""
    n = await fw_n.first()
    for i in range(n):
        yield i
    await gate.release.wait()
    for i in range(n, 2 * n):
        yield i


sink = Processor(name="fw_sink", inputs=["fw_values"], outputs=["fw_out"])


@sink
async def _sink(fw_values: IO[int]) -> AsyncIterator[int]:
    async for value in fw_values.stream():
        yield value * 10


async def test_follow_yields_snapshots_with_rates_until_the_run_finishes(
    store: Store,
) -> None:
    supervisor = Supervisor(store=store, executor=LocalExecutor())
    flow = Flow.from_processors(source, sink).resolve()
    seen: list[RunSnapshot] = []
    window = 0.5
    stalled_since: float | None = None
    stalled_rate: float | None = -1.0
    with _gated(supervisor) as gate:
        run = await supervisor.start_flow(flow, [IOVal("fw_n", 5)])
        follow = run.follow(interval=0.02, window=window)
        async with aclosing(follow) as snapshots:
            async for snap in snapshots:
                seen.append(snap)
                values = snap.streams["fw_values"]
                if values.written != 5 or gate.release.is_set():
                    continue
                # Stalled at 5: once every snapshot in the window says 5, the
                # recent rate is 0, while the average is not.
                if stalled_since is None:
                    stalled_since = snap.taken_at
                elif snap.taken_at - stalled_since >= window + MIN_RATE_SPAN:
                    stalled_rate = values.rate
                    gate.release.set()

    final = seen[-1]
    assert final.finished
    assert final.status == final.phase == "succeeded"
    assert not any(s.finished for s in seen[:-1])
    assert stalled_rate == 0.0
    assert final.created is not None
    assert final.created == await run.created()
    assert final.created <= seen[0].taken_at
    for snap in seen:
        # A flow input has no rate: its values were all there at the start.
        assert snap.streams["fw_n"].rate is None
        assert snap.streams["fw_n"].average is None
    values = final.streams["fw_values"]
    assert values.written == 10
    assert values.ended
    assert values.rate is None  # ended: its average says it all
    # The source ran for longer than it was stalled: an average there is.
    assert values.average is not None
    assert values.average > 0


explode = Processor(name="fw_explode", inputs=["fw_values"], outputs=["fw_never"])


@explode
async def _explode(fw_values: IO[int]) -> AsyncIterator[int]:
    async for value in fw_values.stream():
        if value == 2:
            msg = "cannot take 2"
            raise ValueError(msg)
        yield value


async def test_a_run_is_failing_until_every_processor_has_stopped(
    store: Store,
) -> None:
    supervisor = Supervisor(store=store, executor=LocalExecutor())
    # fw_source goes on (held by the gate) after fw_explode has failed.
    flow = Flow.from_processors(source, explode).resolve()
    with _gated(supervisor) as gate:
        run = await supervisor.start_flow(flow, [IOVal("fw_n", 5)])
        async with aclosing(run.follow(interval=0.02)) as snapshots:
            async for snap in snapshots:
                if snap.processors["fw_explode"].status != "failed":
                    continue
                if not gate.release.is_set():
                    assert snap.processors["fw_source"].status == "running"
                    assert snap.status == "failed"
                    assert snap.phase == "failing"
                    assert not snap.finished
                    gate.release.set()
    assert snap.finished
    assert snap.phase == snap.status == "failed"
    assert snap.processors["fw_source"].finished


async def test_follow_ends_as_soon_as_the_run_does(store: Store) -> None:
    supervisor = Supervisor(store=store, executor=LocalExecutor())
    flow = Flow.from_processors(source, explode).resolve()
    with _gated(supervisor, released=True):
        run = await supervisor.start_flow(flow, [IOVal("fw_n", 5)])
        # Far longer than the test may take: the end of the run wakes it.
        seen = [snap async for snap in run.follow(interval=3 * TIMEOUT)]
    assert seen[-1].finished
    assert seen[-1].processors["fw_explode"].error == "ValueError: cannot take 2"


async def test_created_of_a_deleted_run_raises(store: Store) -> None:
    supervisor = Supervisor(store=store, executor=LocalExecutor())
    flow = Flow.from_processors(source, sink).resolve()
    with _gated(supervisor, released=True):
        run = await supervisor.start_flow(flow, [IOVal("fw_n", 1)])
        await run.wait()
        assert (await run.snapshot()).created == await run.created()
        await supervisor.delete_run(run.id)
        with pytest.raises(RunNotFoundError, match=run.id):
            await run.created()


slow = Processor(name="fw_slow", inputs=["fw_in"], outputs=["fw_slow_out"])


@slow
async def _slow(fw_in: IO[int], gate: GatesDep) -> AsyncIterator[int]:
    async for value in fw_in.stream():
        if value == 5:
            gate.reached.set()
            await gate.release.wait()
        yield value


async def test_a_reader_records_its_progress_through_a_long_batch(store: Store) -> None:
    # The ten input values are one batch; the reader stops inside it, at value 5.
    # Its heartbeat (every read_timeout) records values 0 to 4 as read, though the
    # reader has not read again since.
    settings = Settings(read_timeout=0.05)
    supervisor = Supervisor(store=store, executor=LocalExecutor(), settings=settings)
    flow = Flow.from_processors(slow).resolve()
    with _gated(supervisor) as gate:
        run = await supervisor.start_flow(flow, [IOVal("fw_in", i) for i in range(10)])
        await gate.reached.wait()
        async with aclosing(run.follow(interval=0.01)) as snapshots:
            async for snapshot in snapshots:
                inside = snapshot.streams["fw_in"]
                if inside.readers.get("fw_slow", 0) >= 5:
                    break
        gate.release.set()
        await run.wait()
    assert inside.readers["fw_slow"] == 5
    assert inside.backlog == 5


# ------------------------------------------------------------------- RateWindow


def _stream(written: int, **more: Any) -> StreamFigures:
    fields: dict[str, Any] = {
        "name": "s",
        "producer": "p",
        "written": written,
        "ended": False,
        "failed": False,
        "readers": {},
        "backlog": 0,
    }
    fields.update(more)
    return StreamFigures(**fields)


def _at(when: float, written: int, **more: Any) -> RunSnapshot:
    producer = ProcessorFigures(
        name="p",
        status="running",
        attempt=1,
        instances=1,
        started=90.0,
        ended=None,
        error=None,
        traceback=None,
    )
    return RunSnapshot(
        run_id="r",
        status="running",
        taken_at=when,
        streams={
            "s": _stream(written, **more),
            "in": _stream(5, name="in", producer=None, ended=True),
        },
        processors={"p": producer},
    )


def _rate(window: RateWindow, snapshot: RunSnapshot) -> float | None:
    return window.add(snapshot).streams["s"].rate


def test_rates_are_recent_and_fall_back_to_the_average() -> None:
    rates = RateWindow(window=2.0)
    # No earlier snapshot: the producer's average so far, as the snapshot says.
    first = rates.add(_at(100.0, 100, average=10.0))
    assert first.streams["s"].rate == 10.0
    assert first.streams["in"].rate is None  # a flow input
    assert _rate(rates, _at(100.1, 200, average=20.0)) == 20.0  # too soon to tell
    assert _rate(rates, _at(101.0, 110)) == pytest.approx(10.0)
    assert _rate(rates, _at(102.0, 140)) == pytest.approx(20.0)  # over 2 s
    assert _rate(rates, _at(103.0, 140)) == pytest.approx(15.0)  # from t=101
    assert _rate(rates, _at(105.0, 140)) == pytest.approx(0.0)  # from t=103
    # Ended: no recent rate (its average says it all).
    assert _rate(rates, _at(106.0, 150, ended=True, average=9.0)) is None


def test_a_clock_that_goes_back_measures_afresh() -> None:
    rates = RateWindow(window=2.0)
    rates.add(_at(100.0, 100))
    assert _rate(rates, _at(99.0, 150, average=3.0)) == 3.0


@pytest.mark.parametrize(
    ("written", "started", "until", "average"),
    [
        (10, 100.0, 102.0, 5.0),
        (1, 100.0, 102.0, None),  # one value is no rate
        (0, 100.0, 102.0, None),
        (10, 100.0, 100.0 + MIN_RATE_SPAN / 2, None),  # too short to tell
        (10, None, 102.0, None),  # never started
        (10, 100.0, None, None),
    ],
)
def test_average_rate(
    written: int, started: float | None, until: float | None, average: float | None
) -> None:
    assert average_rate(written, started, until) == average
