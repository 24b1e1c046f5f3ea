"""``IOVal``'s public behaviour, which its cheaper implementation must keep."""

import copy
import pickle
from typing import Any

import msgspec
import pytest

from datagraph import IOVal


def test_construction_positional_and_by_keyword_is_the_same_value() -> None:
    by_position = IOVal("bar", 3)
    by_keyword = IOVal(name="bar", value=3)
    assert by_position == by_keyword
    assert (by_keyword.name, by_keyword.value) == ("bar", 3)
    assert hash(by_position) == hash(by_keyword)
    assert by_position != IOVal("bar", 4)
    assert by_position != IOVal("baz", 3)
    assert by_position != ("bar", 3)  # type: ignore[comparison-overlap]  # no tuple


def test_both_fields_are_required() -> None:
    with pytest.raises(TypeError, match="value"):
        IOVal("bar")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        IOVal()  # type: ignore[call-arg]


def test_repr_names_the_fields() -> None:
    assert repr(IOVal("bar", [1, 2])) == "IOVal(name='bar', value=[1, 2])"


def test_it_is_frozen() -> None:
    item = IOVal("bar", 1)
    with pytest.raises(AttributeError):
        item.value = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        item.other = 2  # type: ignore[attr-defined]


def test_it_is_generic() -> None:
    typed = IOVal[int]("bar", 1)
    assert typed == IOVal("bar", 1)
    assert isinstance(typed, IOVal)


def test_it_pickles_copies_and_matches() -> None:
    item = IOVal("bar", {"a": 1})
    assert pickle.loads(pickle.dumps(item)) == item
    assert copy.deepcopy(item) == item
    match item:
        case IOVal(name, value):
            assert (name, value) == ("bar", {"a": 1})
        case _:  # pragma: no cover
            pytest.fail("IOVal did not match positionally")


def test_it_round_trips_through_msgpack_as_a_value() -> None:
    item = IOVal("bar", [1, "x"])
    decoded: Any = msgspec.msgpack.decode(
        msgspec.msgpack.encode(item), type=IOVal[list[Any]]
    )
    assert decoded == item
