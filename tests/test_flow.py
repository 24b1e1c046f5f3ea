"""Building and resolving flows: the graph checks and the flow's inputs and outputs."""

from collections.abc import AsyncIterator

import anyio
import pytest

from datagraph import (
    IO,
    CycleError,
    DuplicateProcessorError,
    DuplicateProducerError,
    Flow,
    FlowError,
    IOVal,
    LocalExecutor,
    Processor,
    RegistrationError,
    Store,
    Supervisor,
    UnresolvedFlowError,
)


def _check_cycle(err: CycleError, flow: Flow) -> None:
    """Each processor of ``err.cycle`` writes the stream the next one reads."""
    by_name = {p.name: p for p in flow.processors}
    cycle = err.cycle
    for i, (writer, stream) in enumerate(cycle):
        reader = cycle[(i + 1) % len(cycle)][0]
        assert stream in by_name[writer].outputs, (writer, stream)
        assert stream in by_name[reader].inputs, (reader, stream)


def test_two_processor_cycle_names_the_loop() -> None:
    a = Processor(name="flow_cyc_a", inputs=["y"], outputs=["x"])
    b = Processor(name="flow_cyc_b", inputs=["x"], outputs=["y"])
    flow = Flow.from_processors(a, b)

    with pytest.raises(CycleError) as excinfo:
        flow.resolve()

    err = excinfo.value
    assert {proc for proc, _ in err.cycle} == {"flow_cyc_a", "flow_cyc_b"}
    assert {stream for _, stream in err.cycle} == {"x", "y"}
    _check_cycle(err, flow)
    message = str(err)
    # The whole loop is printed, back to where it started.
    assert message in (
        "the flow has a cycle: flow_cyc_a --[x] -> flow_cyc_b --[y] -> flow_cyc_a",
        "the flow has a cycle: flow_cyc_b --[y] -> flow_cyc_a --[x] -> flow_cyc_b",
    )
    assert isinstance(err, FlowError)
    assert isinstance(err, ValueError)
    assert not flow.resolved


def test_cycle_leaves_out_processors_that_only_feed_it() -> None:
    src = Processor(name="flow_cyc3_src", outputs=["seed"])
    a = Processor(name="flow_cyc3_a", inputs=["seed", "c_out"], outputs=["a_out"])
    b = Processor(name="flow_cyc3_b", inputs=["a_out"], outputs=["b_out"])
    c = Processor(name="flow_cyc3_c", inputs=["b_out"], outputs=["c_out", "side"])
    sink = Processor(name="flow_cyc3_sink", inputs=["side"], outputs=["done"])
    flow = Flow.from_processors(sink, src, a, b, c)

    with pytest.raises(CycleError) as excinfo:
        flow.resolve()

    err = excinfo.value
    assert len(err.cycle) == 3
    assert {proc for proc, _ in err.cycle} == {
        "flow_cyc3_a",
        "flow_cyc3_b",
        "flow_cyc3_c",
    }
    assert {stream for _, stream in err.cycle} == {"a_out", "b_out", "c_out"}
    _check_cycle(err, flow)
    message = str(err)
    for name in (
        "flow_cyc3_a",
        "flow_cyc3_b",
        "flow_cyc3_c",
        "a_out",
        "b_out",
        "c_out",
    ):
        assert name in message
    assert "flow_cyc3_src" not in message
    assert "flow_cyc3_sink" not in message


def test_two_producers_of_one_stream() -> None:
    a = Processor(name="flow_dup_a", inputs=["in"], outputs=["shared", "a_only"])
    b = Processor(name="flow_dup_b", inputs=["in"], outputs=["shared"])
    flow = Flow.from_processors(a, b)

    with pytest.raises(DuplicateProducerError) as excinfo:
        flow.resolve()

    err = excinfo.value
    assert err.stream == "shared"
    assert set(err.producers) == {"flow_dup_a", "flow_dup_b"}
    message = str(err)
    assert "'shared'" in message
    assert "'flow_dup_a'" in message
    assert "'flow_dup_b'" in message
    assert isinstance(err, FlowError)
    assert not flow.resolved


def test_two_different_processors_with_one_name() -> None:
    a = Processor(name="flow_same_name", inputs=["x"], outputs=["y"])
    b = Processor(name="flow_same_name", inputs=["x"], outputs=["z"])

    with pytest.raises(DuplicateProcessorError) as excinfo:
        Flow.from_processors(a, b)

    assert excinfo.value.name == "flow_same_name"
    assert "'flow_same_name'" in str(excinfo.value)
    assert isinstance(excinfo.value, FlowError)


def test_the_same_processor_twice_counts_once() -> None:
    a = Processor(name="flow_twice", inputs=["x"], outputs=["y"])
    flow = Flow.from_processors(
        a, Processor(name="flow_twice", inputs=["x"], outputs=["y"])
    )

    assert flow.processors == (a,)
    flow.resolve()
    assert flow.inputs == ("x",)
    assert flow.outputs == ("y",)


def test_inputs_and_outputs() -> None:
    extract = Processor(
        name="flow_io_extract", inputs=["paths"], outputs=["rows", "bad"]
    )
    transform = Processor(
        name="flow_io_transform", inputs=["rows", "config"], outputs=["clean"]
    )
    load = Processor(name="flow_io_load", inputs=["clean"], outputs=["loaded"])
    # Given out of order on purpose: resolve() works out the graph.
    flow = Flow.from_processors(load, transform, extract)

    assert flow.resolve() is flow
    assert flow.resolved

    assert set(flow.inputs) == {"paths", "config"}
    assert set(flow.outputs) == {"bad", "loaded"}
    # Streams written and read inside the flow are neither.
    for inner in ("rows", "clean"):
        assert inner not in flow.inputs
        assert inner not in flow.outputs
    # Every processor comes after the ones it reads from.
    order = [p.name for p in flow.plan.processors]
    assert order.index("flow_io_extract") < order.index("flow_io_transform")
    assert order.index("flow_io_transform") < order.index("flow_io_load")


def test_from_tasks_is_from_processors() -> None:
    a = Processor(name="flow_alias_a", inputs=["x"], outputs=["y"])
    b = Processor(name="flow_alias_b", inputs=["y"], outputs=["z"])

    one = Flow.from_processors(a, b).resolve()
    other = Flow.from_tasks(a, b).resolve()

    assert one.processors == other.processors
    assert one.inputs == other.inputs == ("x",)
    assert one.outputs == other.outputs == ("z",)


def test_unresolved_flow_has_no_inputs_or_outputs_yet() -> None:
    flow = Flow.from_processors(
        Processor(name="flow_unresolved", inputs=["x"], outputs=["y"])
    )

    assert not flow.resolved
    with pytest.raises(UnresolvedFlowError, match=r"'flow_unresolved'.*resolve\(\)"):
        _ = flow.inputs
    with pytest.raises(UnresolvedFlowError):
        _ = flow.outputs


def test_empty_flow_is_rejected() -> None:
    with pytest.raises(FlowError, match="at least one processor"):
        Flow.from_processors()


def test_flow_of_something_else_is_rejected() -> None:
    with pytest.raises(TypeError, match="Processor"):
        Flow.from_processors("flow_not_a_processor")  # type: ignore[arg-type]


def test_implementation_of_another_declaration_is_rejected_by_resolve() -> None:
    registered = Processor(name="flow_mismatch", inputs=["x"], outputs=["y"])

    @registered
    async def impl(x: IO[int]) -> AsyncIterator[int]:
        yield await x.first()

    declared = Processor(name="flow_mismatch", inputs=["x"], outputs=["other"])
    flow = Flow.from_processors(declared)

    with pytest.raises(RegistrationError) as excinfo:
        flow.resolve()
    message = str(excinfo.value)
    assert "'flow_mismatch'" in message
    assert "other" in message
    assert not flow.resolved


@pytest.mark.anyio
async def test_starting_an_unresolved_flow_fails(store: Store) -> None:
    proc = Processor(name="flow_start_unresolved", inputs=["x"], outputs=["y"])

    @proc
    async def impl(x: IO[int]) -> AsyncIterator[int]:
        async for v in x.stream():
            yield v

    supervisor = Supervisor(store=store, executor=LocalExecutor())
    flow = Flow.from_processors(proc)
    runs_before = await store.list_runs()

    with anyio.fail_after(5), pytest.raises(UnresolvedFlowError) as excinfo:
        await supervisor.start_flow(flow, inputs=[IOVal("x", 1)])

    assert "'flow_start_unresolved'" in str(excinfo.value)
    assert "resolve()" in str(excinfo.value)
    # Nothing was started.
    assert await store.list_runs() == runs_before
