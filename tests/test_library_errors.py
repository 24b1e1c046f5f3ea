"""The library raises Datagraph errors, each naming what is at fault.

Each also subclasses the builtin raised before for the same mistake, so code that
caught ``ValueError`` (or ``TypeError``, ``KeyError``, ``RuntimeError``) still does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from datagraph import (
    IO,
    ConfigurationError,
    DatagraphError,
    DeclarationError,
    Flow,
    FlowError,
    InputError,
    IOVal,
    LocalExecutor,
    NotAttachedError,
    PickleSerializer,
    Processor,
    Settings,
    StreamNotFoundError,
    Supervisor,
    UnknownInputError,
    UnknownStreamError,
)
from datagraph.flow import near_name
from datagraph.stores.memory import MemoryStore

evens = Processor(name="err_evens", inputs=["numbers"], outputs=["odds", "evens"])
count = Processor(name="err_count", inputs=["odd"], outputs=["counted"])


@evens
async def _evens(numbers: IO[int]) -> AsyncIterator[IOVal[int]]:
    async for n in numbers.stream():
        yield IOVal("evens" if n % 2 == 0 else "odds", n)


# ------------------------------------------------------------- misspelled streams


def test_a_read_stream_close_to_a_written_one_is_refused_at_resolve() -> None:
    with pytest.raises(UnknownStreamError) as caught:
        Flow.from_processors(evens, count).resolve()
    error = caught.value
    assert str(error) == (
        "processor 'err_count' reads 'odd', which no processor writes: did you "
        "mean 'odds'? (if 'odd' is an input of the flow, declare it: "
        "Flow(..., inputs=['odd']))"
    )
    assert (error.processor, error.stream, error.suggestion) == (
        "err_count",
        "odd",
        "odds",
    )
    assert isinstance(error, FlowError)
    assert isinstance(error, ValueError)


def test_a_declared_input_may_be_close_to_a_written_stream() -> None:
    flow = Flow.from_processors(evens, count, inputs=["odd"]).resolve()
    assert flow.inputs == ("numbers", "odd")
    assert Flow([evens, count], inputs=["odd"]).resolve().inputs == flow.inputs


def test_an_input_far_from_every_written_stream_needs_no_declaration() -> None:
    assert Flow.from_processors(evens).resolve().inputs == ("numbers",)


@pytest.mark.parametrize(
    ("typed", "written", "meant"),
    [
        ("odd", ["odds", "evens"], "odds"),
        ("numbrs", ["numbers"], "numbers"),
        ("ordres", ["orders"], "orders"),
        ("order_item", ["order_items"], "order_items"),
        ("Odds", ["odds"], "odds"),
        ("fan_n", ["fan"], None),  # a word more: another name
        ("idle_n", ["idle_c"], None),  # one-letter words: names, not slips
        ("part1", ["part2"], None),  # a series
        ("c0", ["c10"], None),
        ("a", ["b"], None),
    ],
)
def test_near_name(typed: str, written: list[str], meant: str | None) -> None:
    assert near_name(typed, written) == meant


def test_a_numbered_series_is_not_taken_for_a_typo() -> None:
    # c0 feeds a chain that writes c1 .. c10: c0 is close to c10, but numbered.
    chain = [
        Processor(name=f"err_chain{i}", inputs=[f"c{i}"], outputs=[f"c{i + 1}"])
        for i in range(10)
    ]
    assert Flow(chain).resolve().inputs == ("c0",)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (["odds"], "'odds' is declared as an input of the flow, but processor "
                   "'err_evens' writes it"),
        (["odd", "colour"], "'colour' is declared as an input of the flow, but no "
                            "processor reads it"),
    ],
)  # fmt: skip
def test_a_declared_input_must_be_one(inputs: list[str], message: str) -> None:
    with pytest.raises(FlowError, match=f"^{message}$"):
        Flow.from_processors(evens, count, inputs=inputs).resolve()


def test_declared_inputs_are_a_list() -> None:
    with pytest.raises(DeclarationError, match=r"write \['odd'\]"):
        Flow.from_processors(evens, count, inputs="odd")


# -------------------------------------------------------------------- declarations


@pytest.mark.parametrize(
    ("make", "builtin", "message"),
    [
        (lambda: Processor(name=" "), ValueError, "a processor needs a non-empty name"),
        (lambda: Processor(name="p", inputs="xs"), TypeError,
         "inputs of processor 'p' must be a list of stream names"),
        (lambda: Processor(name="p", inputs=["a"], outputs=["a"]), ValueError,
         "processor 'p' both reads and writes"),
        (lambda: Processor(name="p", retries=-1), ValueError,
         "retry_max_delay of processor 'p' must be >= 0"),
        (lambda: Processor(name="p", instances=0), ValueError,
         "processor 'p' needs at least 1 instance"),
        (lambda: Processor(name="p", retry_on=[3]), TypeError,  # type: ignore[list-item]
         "retry_on of processor 'p' takes exception types"),
        (lambda: Flow(["p"]), TypeError,  # type: ignore[list-item]
         "a flow is made of Processor declarations, got 'p'"),
    ],
)  # fmt: skip
def test_a_bad_declaration_is_a_declaration_error(
    make: object, builtin: type[Exception], message: str
) -> None:
    assert callable(make)
    with pytest.raises(DeclarationError) as caught:
        make()
    assert message in str(caught.value)
    assert isinstance(caught.value, builtin)
    assert isinstance(caught.value, FlowError)


# ------------------------------------------------------------ settings, serializers


def test_an_unknown_setting_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown setting\(s\) \['leese'\]"):
        Settings.from_env({}, leese=3)
    with pytest.raises(TypeError):  # what it raised before
        Settings.from_env({}, leese=3)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Settings(lease=0), "setting lease must be a positive number, got 0"),
        (lambda: Settings(window=-1), "setting window must be an integer >= 0"),
        (lambda: Settings(client_log_level="loud"), "client_log_level must be one"),
        (lambda: Settings.from_env({"DATAGRAPH_LEASE": "soon"}),
         "DATAGRAPH_LEASE='soon' is not a valid lease"),
        (lambda: PickleSerializer(b"short"), "a secret of at least 16 bytes"),
    ],
)  # fmt: skip
def test_an_unusable_value_is_a_configuration_error(make: object, message: str) -> None:
    assert callable(make)
    with pytest.raises(ConfigurationError, match=message) as caught:
        make()
    assert isinstance(caught.value, ValueError)


# ----------------------------------------------------------------- starting runs


def test_the_instance_before_attach_is_a_not_attached_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Supervisor, "_attached", None)
    with pytest.raises(NotAttachedError, match=r"call Supervisor\.attach") as caught:
        _ = Supervisor.instance
    assert isinstance(caught.value, RuntimeError)


@pytest.mark.anyio
async def test_inputs_that_do_not_fit_are_input_errors() -> None:
    supervisor = Supervisor(store=MemoryStore(), executor=LocalExecutor())
    flow = Flow.from_processors(evens).resolve()
    with pytest.raises(UnknownInputError) as caught:
        await supervisor.start_flow(flow, inputs=[IOVal("number", 1)])
    assert str(caught.value) == (
        "'number' is not an input of the flow; did you mean 'numbers'? its inputs "
        "are ['numbers']"
    )
    assert isinstance(caught.value, ValueError)
    with pytest.raises(
        InputError, match=r"given as IOVal\(name=\.\.\., value=\.\.\.\)"
    ):
        await supervisor.start_flow(flow, inputs=[("numbers", 1)])  # type: ignore[list-item]
    for name in (["numbers"], None):  # unhashable, or no str at all
        with pytest.raises(UnknownInputError) as caught:
            await supervisor.start_flow(flow, inputs=[IOVal(name, 1)])  # type: ignore[arg-type]
        assert str(caught.value) == (
            f"flow inputs are named by str, got IOVal(name={name!r}, ...); the "
            "flow's inputs are ['numbers']"
        )
    assert await supervisor.list_runs() == []  # nothing was started
    await supervisor.aclose()


@pytest.mark.anyio
async def test_a_stream_a_run_does_not_hand_back_is_a_stream_not_found_error() -> None:
    supervisor = Supervisor(store=MemoryStore(), executor=LocalExecutor())
    flow = Flow.from_processors(evens).resolve()
    with anyio.fail_after(10):
        run = await supervisor.start_flow(flow, inputs=[IOVal("numbers", 1)])
        with pytest.raises(StreamNotFoundError) as caught:
            run["even"]
        await run.wait()
    error = caught.value
    assert error.stream == "even"
    assert str(error) == (
        f"'even' is not an output of run {run.id}; did you mean 'evens'? outputs: "
        "['odds', 'evens'] (start with all_outputs=True to read every stream)"
    )
    assert isinstance(error, KeyError)
    assert isinstance(error, DatagraphError)
    await supervisor.aclose()
