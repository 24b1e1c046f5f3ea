"""Processor declarations, registration of implementations, the ``processor`` decorator.

Registration checks an implementation's signature against its declaration at once
(when the function is decorated), not when a run first dispatches it.
"""

import os
import pickle
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

import msgspec
import pytest

from datagraph import (
    IO,
    BlockingIO,
    DatagraphError,
    Depends,
    IOVal,
    Processor,
    RegistrationError,
    processor,
)


def get_offset() -> int:
    return 1


# --------------------------------------------------------------------------------------
# Declarations


def test_declaration_is_a_hashable_value() -> None:
    a = Processor(name="proc_value", inputs=["x"], outputs=["y"])
    b = Processor(name="proc_value", inputs=("x",), outputs=("y",))

    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1
    assert a.inputs == ("x",)
    assert a.outputs == ("y",)
    assert a.wait is False
    assert a != Processor(name="proc_value", inputs=["x"], outputs=["y"], wait=True)


def test_declaration_is_immutable() -> None:
    p = Processor(name="proc_frozen", outputs=["y"])
    with pytest.raises(AttributeError):
        p.name = "other"  # type: ignore[misc]


def test_declaration_survives_pickle_and_msgpack() -> None:
    p = Processor(
        name="proc_serial",
        inputs=["a", "b"],
        outputs=["c"],
        wait=True,
        retries=2,
        retry_delay=0.5,
    )

    assert pickle.loads(pickle.dumps(p)) == p
    encoded = msgspec.msgpack.encode(p)
    assert msgspec.msgpack.decode(encoded, type=Processor) == p


def test_declaration_needs_no_implementation() -> None:
    p = Processor(name="proc_declared_only", inputs=["x"], outputs=["y"])
    assert p.implementation is None


@pytest.mark.parametrize("name", ["", "   "])
def test_declaration_rejects_empty_name(name: str) -> None:
    with pytest.raises(ValueError, match="non-empty name"):
        Processor(name=name)


def test_declaration_rejects_a_bare_string_of_streams() -> None:
    with pytest.raises(TypeError, match=r"list of stream names.*\['numbers'\]"):
        Processor(name="proc_str_inputs", inputs="numbers")


def test_declaration_rejects_a_stream_named_twice() -> None:
    with pytest.raises(ValueError, match=r"proc_twice.*name a stream twice"):
        Processor(name="proc_twice", outputs=["y", "y"])


def test_declaration_rejects_reading_and_writing_one_stream() -> None:
    with pytest.raises(ValueError, match=r"proc_loop.*both reads and writes \['x'\]"):
        Processor(name="proc_loop", inputs=["x"], outputs=["x"])


def test_declaration_rejects_reserved_stream_names() -> None:
    with pytest.raises(ValueError, match="reserved"):
        Processor(name="proc_reserved", outputs=["!done:x"])


@pytest.mark.parametrize(
    ("retries", "retry_delay"), [(-1, 1.0), (0, -0.5)], ids=["retries", "delay"]
)
def test_declaration_rejects_negative_retry_settings(
    retries: int, retry_delay: float
) -> None:
    with pytest.raises(ValueError, match="proc_neg_retry"):
        Processor(name="proc_neg_retry", retries=retries, retry_delay=retry_delay)


# --------------------------------------------------------------------------------------
# Registration


def test_decorating_registers_and_returns_the_function() -> None:
    p = Processor(name="proc_registered", inputs=["x"], outputs=["y"])

    async def impl(x: IO[int]) -> AsyncIterator[int]:
        async for v in x.stream():
            yield v

    assert p(impl) is impl
    registered = p.implementation
    assert registered is not None
    assert registered.func is impl
    assert registered.processor == p


def test_an_equal_declaration_finds_the_implementation() -> None:
    p = Processor(name="proc_equal_decl", inputs=["x"], outputs=["y"])

    @p
    async def impl(x: IO[int]) -> IOVal[int]:
        return IOVal("y", await x.first())

    again = Processor(name="proc_equal_decl", inputs=["x"], outputs=["y"])
    assert again.implementation is not None
    assert again.implementation.func is impl
    # A declaration of the same name that differs is not implemented by it.
    other = Processor(name="proc_equal_decl", inputs=["x"], outputs=["z"])
    assert other.implementation is None


def test_every_kind_of_function_can_be_registered() -> None:
    async def agen(x: IO[int]) -> AsyncIterator[int]:
        yield await x.first()

    async def afunc(x: IO[int]) -> IOVal[int]:
        return IOVal("y", await x.first())

    def sfunc(x: BlockingIO[int]) -> int:
        return x.first()

    def sgen(x: BlockingIO[int]) -> Iterator[int]:
        yield from x.stream()

    declarations = {
        suffix: Processor(name=f"proc_kind_{suffix}", inputs=["x"], outputs=["y"])
        for suffix in ("agen", "afunc", "sfunc", "sgen")
    }
    declarations["agen"](agen)
    declarations["afunc"](afunc)
    declarations["sfunc"](sfunc)
    declarations["sgen"](sgen)
    for p in declarations.values():
        assert p.implementation is not None, p.name


def test_injectable_parameters_are_accepted() -> None:
    p = Processor(name="proc_injectable", inputs=["x"], outputs=["y"])

    @p
    async def impl(
        x: IO[int],
        offset: Annotated[int, Depends(get_offset)],
        other: int = Depends(get_offset),
    ) -> AsyncIterator[int]:
        async for v in x.stream():
            yield v + offset + other

    assert p.implementation is not None


def test_parameter_neither_input_nor_injectable_is_rejected_at_registration() -> None:
    p = Processor(name="proc_stray_param", inputs=["x"], outputs=["y"])

    async def impl(x: IO[int], factor: int) -> AsyncIterator[int]:
        yield await x.first() * factor

    with pytest.raises(RegistrationError) as excinfo:
        p(impl)
    message = str(excinfo.value)
    assert "'factor'" in message
    assert "'proc_stray_param'" in message
    assert "declared: x" in message
    assert "Depends" in message
    # A registration error is a TypeError too, and nothing was registered.
    assert isinstance(excinfo.value, TypeError)
    assert isinstance(excinfo.value, DatagraphError)
    assert p.implementation is None


def test_parameter_with_a_plain_default_is_not_injectable() -> None:
    p = Processor(name="proc_plain_default", inputs=["x"], outputs=["y"])

    async def impl(x: IO[int], factor: int = 3) -> AsyncIterator[int]:
        yield await x.first() * factor

    with pytest.raises(RegistrationError, match="'factor'"):
        p(impl)


def test_missing_input_parameter_is_rejected_at_registration() -> None:
    p = Processor(name="proc_missing_input", inputs=["x", "w"], outputs=["y"])

    async def impl(x: IO[int]) -> AsyncIterator[int]:
        yield await x.first()

    with pytest.raises(RegistrationError) as excinfo:
        p(impl)
    message = str(excinfo.value)
    assert "'proc_missing_input'" in message
    assert "['w']" in message
    assert p.implementation is None


def test_input_with_a_wrong_annotation_is_rejected_at_registration() -> None:
    p = Processor(name="proc_wrong_annotation", inputs=["x"], outputs=["y"])

    async def impl(x: int) -> AsyncIterator[int]:
        yield x

    with pytest.raises(RegistrationError) as excinfo:
        p(impl)
    message = str(excinfo.value)
    assert "input 'x'" in message
    assert "'proc_wrong_annotation'" in message
    assert "IO[" in message
    assert "int" in message
    assert p.implementation is None


@pytest.mark.parametrize("variadic", ["args", "kwargs"])
def test_variadic_parameters_are_rejected_at_registration(variadic: str) -> None:
    p = Processor(name=f"proc_var_{variadic}", inputs=["x"], outputs=["y"])

    async def with_args(x: IO[int], *args: Any) -> AsyncIterator[int]:
        yield await x.first()

    async def with_kwargs(x: IO[int], **kwargs: Any) -> AsyncIterator[int]:
        yield await x.first()

    impl = with_args if variadic == "args" else with_kwargs
    with pytest.raises(RegistrationError, match=rf"\*{variadic}.*by name"):
        p(impl)
    assert p.implementation is None


def test_positional_only_input_is_rejected_at_registration() -> None:
    p = Processor(name="proc_posonly", inputs=["x"], outputs=["y"])

    async def impl(x: IO[int], /) -> AsyncIterator[int]:
        yield await x.first()

    with pytest.raises(RegistrationError, match="positional-only"):
        p(impl)


def test_unreadable_annotations_are_a_registration_error() -> None:
    p = Processor(name="proc_bad_hints", inputs=["x"], outputs=["y"])

    async def impl(x: "NoSuchType") -> AsyncIterator[int]:  # type: ignore[name-defined]  # noqa: F821
        yield 1

    with pytest.raises(RegistrationError, match=r"parameter annotations.*NoSuchType"):
        p(impl)


def test_a_return_annotation_known_only_to_type_checkers_is_fine() -> None:
    # ``-> AsyncIterator[int]`` with AsyncIterator imported under TYPE_CHECKING.
    p = Processor(name="proc_return_hint", inputs=["x"], outputs=["y"])

    async def impl(x: IO[int]) -> "OnlyForTypeCheckers[int]":  # type: ignore[name-defined]  # noqa: F821
        yield await x.first()

    p(impl)
    assert p.implementation is not None


def test_non_callable_implementation_is_rejected() -> None:
    p = Processor(name="proc_not_callable", outputs=["y"])
    with pytest.raises(RegistrationError, match="callable"):
        p(42)  # type: ignore[type-var]


def test_two_different_functions_for_one_processor_are_rejected() -> None:
    p = Processor(name="proc_two_impls", inputs=["x"], outputs=["y"])

    async def first_impl(x: IO[int]) -> AsyncIterator[int]:
        yield await x.first()

    async def second_impl(x: IO[int]) -> AsyncIterator[int]:
        yield await x.first() + 1

    p(first_impl)
    with pytest.raises(RegistrationError) as excinfo:
        p(second_impl)
    message = str(excinfo.value)
    assert "'proc_two_impls'" in message
    assert "first_impl" in message
    assert "second_impl" in message
    registered = p.implementation
    assert registered is not None
    assert registered.func is first_impl


# --------------------------------------------------------------------------------------
# The ``processor`` decorator


def test_processor_decorator_declares_and_registers() -> None:
    @processor(inputs=["x"], outputs=["y"])
    async def proc_from_decorator(x: IO[int]) -> AsyncIterator[int]:
        yield await x.first()

    assert isinstance(proc_from_decorator, Processor)
    assert proc_from_decorator.name == "proc_from_decorator"
    assert proc_from_decorator.inputs == ("x",)
    assert proc_from_decorator.outputs == ("y",)
    impl = proc_from_decorator.implementation
    assert impl is not None
    assert impl.func.__name__ == "proc_from_decorator"


def test_processor_decorator_passes_its_options() -> None:
    @processor(
        name="proc_decorator_named",
        inputs=["x"],
        outputs=["y"],
        wait=True,
        retries=3,
        retry_delay=0.25,
    )
    async def whatever(x: IO[int]) -> IOVal[int]:
        return IOVal("y", await x.first())

    assert whatever == Processor(
        name="proc_decorator_named",
        inputs=["x"],
        outputs=["y"],
        wait=True,
        retries=3,
        retry_delay=0.25,
    )
    assert whatever.implementation is not None


def test_processor_decorator_checks_the_signature() -> None:
    with pytest.raises(RegistrationError, match="'unknown'"):

        @processor(name="proc_decorator_bad", inputs=["x"], outputs=["y"])
        async def bad(x: IO[int], unknown: str) -> AsyncIterator[int]:
            yield await x.first()

    assert (
        Processor(name="proc_decorator_bad", inputs=["x"], outputs=["y"]).implementation
        is None
    )


def test_streams_declared_as_sets_mean_the_same_in_every_process() -> None:
    # A set iterates in an order that follows the process's hash seed; two
    # services must still agree on the declaration (and the starter's plan).
    code = (
        "from datagraph import Processor; "
        "print(Processor(name='p', inputs={'alpha', 'beta', 'gamma', 'delta'}, "
        "outputs={'one', 'two', 'three'}))"
    )
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in range(6)
    }
    assert len(seen) == 1
    declared = Processor(name="p", inputs={"beta", "alpha"}, outputs={"z", "y"})
    assert declared.inputs == ("alpha", "beta")
    assert declared.outputs == ("y", "z")
