"""Property tests of flows (hypothesis).

Any set of processors resolves to a valid order or raises the ``FlowError`` that
fits; random acyclic flows, run for real on both stores and both loops, give every
stream exactly what a plain sequential evaluation of the same processors gives.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datagraph import (
    IO,
    CycleError,
    DuplicateProducerError,
    Flow,
    IOVal,
    LocalExecutor,
    Processor,
    Store,
    Supervisor,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

TIMEOUT = 20

# ---------------------------------------------------------------- resolve()


@dataclasses.dataclass(frozen=True)
class Shape:
    """A processor's streams, drawn from a small pool so that graphs collide."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


@st.composite
def shapes(draw: st.DrawFn, pool: int) -> Shape:
    names = [f"s{i}" for i in range(pool)]
    inputs = draw(st.lists(st.sampled_from(names), unique=True, max_size=3))
    rest = [n for n in names if n not in inputs]
    outputs = (
        draw(st.lists(st.sampled_from(rest), unique=True, max_size=2)) if rest else []
    )
    return Shape(tuple(inputs), tuple(outputs))


graphs = st.integers(2, 9).flatmap(
    lambda pool: st.lists(shapes(pool), min_size=1, max_size=8)
)


def find_cycle(procs: list[Processor]) -> bool:
    """Tell whether the processors feed each other in a loop (Kahn's algorithm)."""
    producer = {s: p.name for p in procs for s in p.outputs}
    upstream = {p.name: {producer[s] for s in p.inputs if s in producer} for p in procs}
    left = dict(upstream)
    while True:
        ready = [name for name, ups in left.items() if not ups]
        if not ready:
            return bool(left)
        for name in ready:
            del left[name]
        left = {name: ups - set(ready) for name, ups in left.items()}


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(drawn=graphs)
def test_resolve_gives_a_valid_order_or_the_fitting_flow_error(
    drawn: list[Shape],
) -> None:
    procs = [
        Processor(name=f"fz_resolve_{i}", inputs=s.inputs, outputs=s.outputs)
        for i, s in enumerate(drawn)
    ]
    writers: dict[str, int] = {}
    for proc in procs:
        for stream in proc.outputs:
            writers[stream] = writers.get(stream, 0) + 1
    flow = Flow.from_processors(*procs)

    if any(count > 1 for count in writers.values()):
        with pytest.raises(DuplicateProducerError):
            flow.resolve()
        return
    if find_cycle(procs):
        with pytest.raises(CycleError) as caught:
            flow.resolve()
        # The loop it names is real: each writes what the next one reads.
        by_name = {p.name: p for p in procs}
        loop = caught.value.cycle
        for (writer, stream), (reader, _) in zip(
            loop, loop[1:] + loop[:1], strict=True
        ):
            assert stream in by_name[writer].outputs
            assert stream in by_name[reader].inputs
        return

    plan = flow.resolve().plan
    assert sorted(p.name for p in plan.processors) == sorted(p.name for p in procs)
    seen: set[str] = set()
    for proc in plan.processors:  # every producer comes before its readers
        for stream in proc.inputs:
            if stream in writers:
                assert plan.producer_of(stream) in seen
        seen.add(proc.name)
    read = {s for p in procs for s in p.inputs}
    assert set(plan.inputs) == read - set(writers)
    assert set(plan.outputs) == set(writers) - read


def test_a_chain_of_thousands_of_processors_resolves() -> None:
    chain = [
        Processor(name=f"fz_chain_{i}", inputs=[f"c{i}"], outputs=[f"c{i + 1}"])
        for i in range(3000)
    ]
    plan = Flow.from_processors(*reversed(chain)).resolve().plan
    assert [p.name for p in plan.processors] == [p.name for p in chain]
    assert (plan.inputs, plan.outputs) == (("c0",), ("c3000",))
    looped = Processor(name="fz_chain_back", inputs=["c3000"], outputs=["c0"])
    with pytest.raises(CycleError) as caught:
        Flow.from_processors(*chain, looped).resolve()
    assert len(caught.value.cycle) == 3001


# ------------------------------------------------------------ random flow runs

STYLES = ("async_gen", "async_fn", "sync_gen")
_names = itertools.count()


@dataclasses.dataclass(frozen=True)
class Spec:
    """What a processor of a random flow does: pure, so it can be evaluated."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    seed: int
    style: str
    wait: bool
    instances: int

    def produce(self, value: int, output: int) -> int | None:
        """What it writes to output ``output`` for an input value (None: nothing)."""
        if (value + self.seed + output) % 5 == 0:
            return None
        return (value * (self.seed + 2) + output) % 997

    def source(self) -> list[int]:
        """What it reads when it has no inputs."""
        return list(range(self.seed % 7 + 1))


@st.composite
def flows(draw: st.DrawFn) -> tuple[list[Spec], dict[str, list[int]]]:
    """An acyclic flow (each processor reads earlier streams) and its inputs."""
    specs: list[Spec] = []
    streams: list[str] = []
    fresh = itertools.count()
    for _ in range(draw(st.integers(1, 6))):
        choices = [*streams, f"in{next(fresh)}"]
        reads = tuple(draw(st.lists(st.sampled_from(choices), unique=True, max_size=3)))
        writes = tuple(f"out{next(fresh)}" for _ in range(draw(st.integers(1, 2))))
        streams += [s for s in (*reads, *writes) if s not in streams]
        specs.append(
            Spec(
                inputs=reads,
                outputs=writes,
                seed=draw(st.integers(0, 50)),
                style=draw(st.sampled_from(STYLES)),
                wait=draw(st.booleans()),
                instances=draw(st.sampled_from([1, 1, 2])) if reads else 1,
            )
        )
    produced = {s for spec in specs for s in spec.outputs}
    needed = sorted({s for spec in specs for s in spec.inputs} - produced)
    values = st.lists(st.integers(-50, 50), min_size=1, max_size=15)
    inputs = {name: draw(values) for name in needed}
    order = draw(st.permutations(specs))  # Flow must sort them out itself
    return list(order), inputs


def evaluate(
    specs: list[Spec], inputs: dict[str, list[int]]
) -> tuple[dict[str, list[int]], set[str]]:
    """Run the processors one after another on lists: the reference.

    Returns:
        Every stream's values, and the streams whose order a run may change
        (downstream of a scaled-out processor, whose instances interleave).
    """
    streams = {name: list(values) for name, values in inputs.items()}
    unordered: set[str] = set()
    pending = list(specs)
    while pending:
        spec = next(s for s in pending if all(i in streams for i in s.inputs))
        pending.remove(spec)
        read = [v for name in spec.inputs for v in streams[name]]
        if not spec.inputs:
            read = spec.source()
        for j, out in enumerate(spec.outputs):
            written = [spec.produce(v, j) for v in read]
            streams[out] = [v for v in written if v is not None]
            if spec.instances > 1 or unordered & set(spec.inputs):
                unordered.add(out)
    return streams, unordered


def implement(spec: Spec) -> Processor:
    """Declare the processor and register an implementation in its style."""
    proc = Processor(
        name=f"fz_run_{next(_names)}",
        inputs=spec.inputs,
        outputs=spec.outputs,
        wait=spec.wait,
        instances=spec.instances,
    )

    def results(value: int) -> Iterator[IOVal[int]]:
        for j, out in enumerate(spec.outputs):
            produced = spec.produce(value, j)
            if produced is not None:
                yield IOVal(out, produced)

    impl: Callable[..., Any]
    if spec.style == "async_gen":

        async def impl(**ios: IO[int]) -> AsyncIterator[IOVal[int]]:
            values = spec.source() if not spec.inputs else None
            for value in values or ():
                for item in results(value):
                    yield item
            for name in spec.inputs:  # one input after another
                async for value in ios[name].stream():
                    for item in results(value):
                        yield item

    elif spec.style == "async_fn":

        async def impl(**ios: IO[int]) -> list[IOVal[int]]:
            read = spec.source() if not spec.inputs else []
            for name in spec.inputs:
                read += await ios[name].collect()
            return [item for value in read for item in results(value)]

    else:

        def impl(**ios: Any) -> Iterator[IOVal[int]]:
            if not spec.inputs:
                for value in spec.source():
                    yield from results(value)
            for name in spec.inputs:
                for value in ios[name].stream():
                    yield from results(value)

    # One parameter per input, named after it, as a hand-written one would be.
    params = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in spec.inputs
    ]
    setattr(impl, "__signature__", inspect.Signature(params))  # noqa: B010
    impl.__annotations__ = {}
    proc(impl)
    return proc


@pytest.mark.anyio
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=flows())
async def test_random_flows_give_what_a_sequential_evaluation_gives(
    store: Store, drawn: tuple[list[Spec], dict[str, list[int]]]
) -> None:
    specs, inputs = drawn
    expected, unordered = evaluate(specs, inputs)
    flow = Flow.from_processors(*(implement(spec) for spec in specs)).resolve()
    supervisor = Supervisor(store=store, executor=LocalExecutor())
    given_inputs = [IOVal(name, v) for name, values in inputs.items() for v in values]
    with anyio.fail_after(TIMEOUT):
        run = await supervisor.start_flow(flow, inputs=given_inputs, all_outputs=True)
        got = {name: await run[name].collect() for name in flow.plan.streams}
        await run.wait()
        await store.delete_run(run.id)
    for name, values in expected.items():
        if name in unordered:
            assert sorted(got[name]) == sorted(values), name
        else:
            assert got[name] == values, name


idle = Processor(name="fz_waits_for_nothing", outputs=["fz_idle_out"], wait=True)


@idle
async def _idle() -> list[IOVal[int]]:
    return [IOVal("fz_idle_out", 1), IOVal("fz_idle_out", 2)]


@pytest.mark.anyio
async def test_a_waiting_processor_without_inputs_runs(supervisor: Supervisor) -> None:
    """Found by the test above: nothing ever ended its (no) inputs, so it hung."""
    with anyio.fail_after(TIMEOUT):
        run = await supervisor.start_flow(Flow.from_processors(idle).resolve())
        assert await run["fz_idle_out"].collect() == [1, 2]
        await run.wait()
