"""Property tests of the serializers (hypothesis).

Every supported value round-trips; any bytes at all decode to a value or raise a
Datagraph error, never another exception and never a hang; deep values fail as
``SerializationError``s, never ``RecursionError``s.
"""

from __future__ import annotations

import dataclasses
import math
import pickle
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from datagraph import (
    MsgpackSerializer,
    PickleSerializer,
    SerializationError,
    SignatureError,
)
from datagraph.exceptions import UndecodableEntryError
from datagraph.serializers import EntryContext

#: Bounded and reproducible: the suite stays fast and never flaky.
FUZZ = settings(
    max_examples=80,
    deadline=2000,  # ms per example: generous on a loaded machine, still no hang
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
SECRET = b"the fuzzing secret, 32 bytes...."
WHERE = EntryContext("0123456789abcdef0123456789abcdef", "values", 7, 3)


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    label: str
    tags: list[str]


# Plain data as msgpack carries it (tuples come back as lists, so none here).
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=50)
    | st.binary(max_size=50)
)
plain = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(st.text(max_size=10), inner, max_size=6)
    ),
    max_leaves=12,
)
points = st.builds(
    Point,
    x=st.integers(-1000, 1000),
    label=st.text(max_size=20),
    tags=st.lists(st.text(max_size=5), max_size=4),
)
# What pickle carries on top: tuples, sets, complex numbers, big ints.
picklable = st.recursive(
    scalars
    | st.complex_numbers(allow_nan=False)
    | st.integers()
    | st.frozensets(st.integers(), max_size=5)
    | points,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=12,
)
contexts = st.builds(
    EntryContext,
    run_id=st.text(max_size=40),
    stream=st.text(min_size=1, max_size=20),
    start=st.none() | st.integers(0, 2**40),
    count=st.integers(0, 10_000),
)


def mutations(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Valid entries with bytes flipped, cut, or inserted: near misses decode far."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        original = draw(valid)
        data = bytearray(original)
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(["flip", "cut", "insert"]))
            where = draw(st.integers(0, max(0, len(data) - 1)))
            if kind == "flip" and data:
                data[where] ^= draw(st.integers(1, 255))
            elif kind == "cut":
                del data[where : where + draw(st.integers(1, 8))]
            else:
                data[where:where] = draw(st.binary(min_size=1, max_size=8))
        assume(data != original)  # a cut and an insert can cancel out
        return bytes(data)

    return mutate()


msgpack_entries = st.lists(plain, max_size=8).map(MsgpackSerializer().encode)
hostile_msgpack = st.binary(max_size=300) | mutations(msgpack_entries)


# ------------------------------------------------------------------ round trips


@FUZZ
@given(values=st.lists(plain, max_size=10), where=st.none() | contexts)
def test_msgpack_round_trips_plain_data(
    values: list[Any], where: EntryContext | None
) -> None:
    serializer = MsgpackSerializer()
    assert serializer.decode(serializer.encode(values, where), Any, where) == values


@FUZZ
@given(values=st.lists(points, max_size=10))
def test_msgpack_round_trips_dataclasses_into_their_type(values: list[Point]) -> None:
    serializer = MsgpackSerializer()
    decoded = serializer.decode(serializer.encode(values, WHERE), Point, WHERE)
    assert decoded == values
    assert all(type(value) is Point for value in decoded)


@FUZZ
@given(values=st.lists(picklable, max_size=10), where=st.none() | contexts)
def test_pickle_round_trips_what_pickle_carries(
    values: list[Any], where: EntryContext | None
) -> None:
    serializer = PickleSerializer(SECRET)
    assert serializer.decode(serializer.encode(values, where), Any, where) == values


@settings(FUZZ, max_examples=40)
@given(depth=st.integers(0, 4000), kind=st.sampled_from(["msgpack", "pickle"]))
def test_deep_values_round_trip_or_fail_as_serialization_errors(
    depth: int, kind: str
) -> None:
    serializer = MsgpackSerializer() if kind == "msgpack" else PickleSerializer(SECRET)
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    try:
        data = serializer.encode([value], WHERE)
    except SerializationError as exc:  # RecursionError would fail the test
        message = str(exc)
        assert "nested too deeply" in message
        return
    try:
        decoded = serializer.decode(data, Any, WHERE)
    except UndecodableEntryError:
        return  # deeper than the decoder goes; a clear error all the same
    for _ in range(depth):
        (decoded,) = decoded  # compare iteratively: == would recurse too
    assert decoded == ["leaf"]


# -------------------------------------------------------------- any bytes in


TYPES = [Any, int, str, Point, list[int], dict[str, float]]


@settings(FUZZ, max_examples=200)
@given(data=hostile_msgpack)
def test_msgpack_decodes_any_bytes_to_values_or_a_datagraph_error(data: bytes) -> None:
    serializer = MsgpackSerializer()
    for type_ in TYPES:
        try:
            values = serializer.decode(data, type_, WHERE)
        except SerializationError:
            continue  # any other exception fails the test
        assert isinstance(values, list)


@FUZZ
@given(
    data=st.binary(max_size=300)
    | mutations(
        st.lists(plain, max_size=6).map(
            lambda v: PickleSerializer(SECRET).encode(v, WHERE)
        )
    )
)
def test_pickle_refuses_unsigned_or_altered_bytes(data: bytes) -> None:
    serializer = PickleSerializer(SECRET)
    with pytest.raises(SignatureError):
        serializer.decode(data, Any, WHERE)


def sign(payload: bytes) -> bytes:
    """Sign ``payload`` as the serializer would: what a writer holding the secret
    could store (say, with another version of a class), not what an attacker can."""
    return PickleSerializer(SECRET)._sign(payload, WHERE) + payload


plain_pickles = st.lists(plain, max_size=6).map(lambda v: pickle.dumps(v, protocol=5))


@settings(FUZZ, max_examples=150)
@given(
    payload=mutations(plain_pickles)
    | st.binary(max_size=200).map(lambda b: b"\x80\x05" + b)
)
def test_pickle_decodes_signed_garbage_to_values_or_a_datagraph_error(
    payload: bytes,
) -> None:
    try:
        values = PickleSerializer(SECRET).decode(sign(payload), Any, WHERE)
    except UndecodableEntryError:
        return  # any other exception fails the test
    assert isinstance(values, list)


def test_floats_round_trip_bit_for_bit() -> None:
    """NaN and the infinities (left out above: NaN != NaN) survive both."""
    values = [math.nan, math.inf, -math.inf, -0.0]
    for serializer in (MsgpackSerializer(), PickleSerializer(SECRET)):
        back = serializer.decode(serializer.encode(values, WHERE), Any, WHERE)
        assert [repr(v) for v in back] == [repr(v) for v in values]
