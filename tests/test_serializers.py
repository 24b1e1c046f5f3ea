"""Serializers under hostile values and entries, through real runs on both stores.

Deep and self-referencing values, undecodable bytes, and signed pickle entries
replayed from another run, stream or position.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

from datagraph import (
    IO,
    DatagraphError,
    Flow,
    IOVal,
    LocalExecutor,
    MsgpackSerializer,
    PickleSerializer,
    Processor,
    Run,
    RunFailedError,
    SerializationError,
    Serializer,
    SignatureError,
    Store,
    Supervisor,
)
from datagraph.exceptions import UndecodableEntryError
from datagraph.serializers import EntryContext
from helpers import read_until_failure

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

TIMEOUT = 10
SECRET = b"a secret for the serializer tests"
DEPTH = 5000


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def self_referencing() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


def make_serializer(kind: str) -> Serializer:
    return MsgpackSerializer() if kind == "msgpack" else PickleSerializer(SECRET)


@pytest.fixture(params=["msgpack", "pickle"])
def serializer(request: pytest.FixtureRequest) -> Serializer:
    return make_serializer(str(request.param))


# ------------------------------------------------------------------ deep values

deep_writer = Processor(name="ser_deep_writer", inputs=["ser_n"], outputs=["ser_deep"])


@deep_writer
async def _deep_writer(ser_n: IO[int]) -> AsyncIterator[Any]:
    count = await ser_n.first()
    for i in range(count):
        yield i
    yield nested(DEPTH)
    yield count


DEEP_FLOW = Flow.from_processors(deep_writer).resolve()


async def test_a_deep_value_fails_its_processor_clearly_and_keeps_what_came_before(
    store: Store, serializer: Serializer
) -> None:
    supervisor = Supervisor(
        store=store, executor=LocalExecutor(), serializer=serializer
    )
    with anyio.fail_after(TIMEOUT):
        run = await supervisor.start_flow(DEEP_FLOW, inputs=[IOVal("ser_n", 1500)])
        values, err = await read_until_failure(run["ser_deep"])
        with pytest.raises(RunFailedError):
            await run.wait()
    assert values == list(range(1500))
    assert err.processor == "ser_deep_writer"
    assert err.error_type == "SerializationError"
    assert "'ser_deep_writer'" in err.message
    assert "'ser_deep'" in err.message
    assert "nested too deeply" in err.message
    assert "RecursionError" not in err.message


self_writer = Processor(name="ser_self_writer", outputs=["ser_loops"])


@self_writer
async def _self_writer() -> AsyncIterator[Any]:
    yield "before"
    yield self_referencing()


async def test_a_self_referencing_value_is_a_serialization_error_with_msgpack(
    store: Store,
) -> None:
    supervisor = Supervisor(store=store, executor=LocalExecutor())
    flow = Flow.from_processors(self_writer).resolve()
    with anyio.fail_after(TIMEOUT):
        run = await supervisor.start_flow(flow)
        values, err = await read_until_failure(run["ser_loops"])
    assert values == ["before"]
    assert err.error_type == "SerializationError"
    assert "'ser_self_writer'" in err.message
    assert "'ser_loops'" in err.message
    assert "refers to itself" in err.message


async def test_pickle_carries_a_self_referencing_value(store: Store) -> None:
    """Pickle keeps shared references, so a cycle is a value like any other."""
    supervisor = Supervisor(
        store=store, executor=LocalExecutor(), serializer=PickleSerializer(SECRET)
    )
    flow = Flow.from_processors(self_writer).resolve()
    with anyio.fail_after(TIMEOUT):
        run = await supervisor.start_flow(flow)
        before, loop = await run["ser_loops"].collect()
        await run.wait()
    assert before == "before"
    assert loop[0] == 1
    assert loop[1] is loop


echo = Processor(name="ser_echo", inputs=["ser_in"], outputs=["ser_out"])


@echo
async def _echo(ser_in: IO[Any]) -> AsyncIterator[Any]:
    async for value in ser_in.stream():
        yield value


async def test_a_deep_flow_input_names_the_input_and_starts_nothing(
    store: Store, serializer: Serializer
) -> None:
    supervisor = Supervisor(
        store=store, executor=LocalExecutor(), serializer=serializer
    )
    flow = Flow.from_processors(echo).resolve()
    with anyio.fail_after(TIMEOUT):
        before = await store.list_runs()
        with pytest.raises(SerializationError) as caught:
            await supervisor.start_flow(
                flow, inputs=[IOVal("ser_in", 1), IOVal("ser_in", nested(DEPTH))]
            )
        assert await store.list_runs() == before
    assert "flow input 'ser_in'" in str(caught.value)
    assert "nested too deeply" in str(caught.value)
    assert caught.value.index == 1
    assert "RecursionError" not in str(caught.value)


def test_error_messages_show_deep_values_briefly(serializer: Serializer) -> None:
    with pytest.raises(SerializationError) as caught:
        serializer.encode([0, nested(DEPTH)])
    assert caught.value.index == 1
    assert len(str(caught.value)) < 400


# ------------------------------------------------------------ undecodable bytes


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        b"\x92\x01",
        b"\x91" * DEPTH + b"\x90",
        b"\xa3abc",
        b"\xdd\xff\xff\xff\xff",
        b"\x91\xc6\xff\xff\xff\xff",
    ],
    ids=[
        "empty",
        "reserved-byte",
        "truncated",
        "deep",
        "not-a-list",
        "claims-4G-values",
        "claims-4GB-bytes",
    ],
)
def test_msgpack_garbage_is_an_undecodable_entry(data: bytes) -> None:
    with pytest.raises(UndecodableEntryError):
        MsgpackSerializer().decode(data)


def test_pickle_garbage_is_a_signature_error() -> None:
    with pytest.raises(SignatureError):
        PickleSerializer(SECRET).decode(b"\x80\x05N." * 20)


async def test_a_garbage_entry_names_its_run_and_stream(store: Store) -> None:
    """An entry that does not decode, written straight to the store."""
    supervisor = Supervisor(store=store, executor=LocalExecutor())
    with anyio.fail_after(TIMEOUT):
        run = await echo_run(supervisor, [1])
        good = await entries(store, run.id, "ser_out")
        await rewrite(store, run.id, {"ser_out": [*good, (1, 2, b"\xc1 not msgpack")]})
        reader = run["ser_out"].stream()
        assert await anext(reader) == 1
        with pytest.raises(DatagraphError) as caught:
            await anext(reader)
        await reader.aclose()
    message = str(caught.value)
    assert f"run {run.id}" in message
    assert "'ser_out'" in message
    assert "not a MessagePack batch (DecodeError: " in message


# ----------------------------------------------------------- replayed entries


def pickling(store: Store, **settings: Any) -> Supervisor:
    return Supervisor(
        store=store,
        executor=LocalExecutor(),
        serializer=PickleSerializer(SECRET),
        **settings,
    )


async def echo_run(supervisor: Supervisor, values: list[int]) -> Run:
    flow = Flow.from_processors(echo).resolve()
    inputs = [IOVal("ser_in", v) for v in values]
    run = await supervisor.start_flow(flow, inputs=inputs, all_outputs=True)
    await run.wait()
    return run


async def entries(
    store: Store, run_id: str, stream: str
) -> list[tuple[int, int, bytes]]:
    """Return a stream's stored entries as ``(start, count, data)``."""
    batch = await store.read(run_id, stream, 0, timeout=0)
    return [(chunk.start, chunk.count, chunk.data) for chunk in batch.chunks]


async def rewrite(
    store: Store, run_id: str, streams: dict[str, list[tuple[int, int, bytes]]]
) -> None:
    """Replace a run's data with the given ``(start, count, data)`` entries.

    What someone with write access to the store could do; handles on the run
    keep working (they hold its plan).
    """
    await store.delete_run(run_id)
    for stream, written in streams.items():
        for start, count, data in written:
            await store.append(run_id, stream, start, count, data)
        await store.end_stream(run_id, stream)


async def test_a_pickle_entry_replayed_from_another_run_is_rejected(
    store: Store,
) -> None:
    """The issue's case: [0, 1, 2] read where [1, 3, 5] was written."""
    supervisor = pickling(store)
    with anyio.fail_after(TIMEOUT):
        source = await echo_run(supervisor, [0, 1, 2])
        victim = await echo_run(supervisor, [1, 3, 5])
        stolen = await entries(store, source.id, "ser_in")
        await rewrite(store, victim.id, {"ser_in": stolen})
        with pytest.raises(SignatureError) as caught:
            await victim["ser_in"].collect()
        assert await source["ser_in"].collect() == [0, 1, 2]
    assert f"run {victim.id}" in str(caught.value)
    assert "'ser_in'" in str(caught.value)
    assert "copied from another run, stream or position" in str(caught.value)


async def test_a_pickle_entry_replayed_from_another_stream_is_rejected(
    store: Store,
) -> None:
    supervisor = pickling(store)
    with anyio.fail_after(TIMEOUT):
        run = await echo_run(supervisor, [7, 8])
        assert await run["ser_out"].collect() == [7, 8]
        # The input's batch, at the same position of the output stream.
        copied = await entries(store, run.id, "ser_in")
        await rewrite(store, run.id, {"ser_out": copied})
        with pytest.raises(SignatureError) as caught:
            await run["ser_out"].collect()
    assert f"run {run.id}" in str(caught.value)
    assert "'ser_out'" in str(caught.value)


async def test_a_pickle_entry_replayed_at_another_position_is_rejected(
    store: Store,
) -> None:
    supervisor = pickling(store)
    with anyio.fail_after(TIMEOUT):
        run = await echo_run(supervisor, [5, 6, 7])
        (start, count, data), *_ = await entries(store, run.id, "ser_out")
        # The stream's first entry, once where it belongs and once right after.
        replayed = [(start, count, data), (start + count, count, data)]
        await rewrite(store, run.id, {"ser_out": replayed})
        reader = run["ser_out"].chunks()
        assert await anext(reader) == [5, 6, 7][:count]
        with pytest.raises(SignatureError) as caught:
            await anext(reader)
        await reader.aclose()
    assert f"run {run.id}" in str(caught.value)
    assert "'ser_out'" in str(caught.value)
    assert f"positions {count}..{2 * count - 1}" in str(caught.value)


def test_pickle_signatures_cover_every_part_of_the_context() -> None:
    serializer = PickleSerializer(SECRET)
    where = EntryContext("run1", "s", 0, 2)
    data = serializer.encode(["a", "b"], where)
    assert serializer.decode(data, Any, where) == ["a", "b"]
    for elsewhere in (
        EntryContext("run2", "s", 0, 2),
        EntryContext("run1", "t", 0, 2),
        EntryContext("run1", "s", 2, 2),
        EntryContext("run1", "s", None, 2),
        EntryContext("run1", "s", 0, 3),
        None,
    ):
        with pytest.raises(SignatureError):
            serializer.decode(data, Any, elsewhere)


def test_msgpack_ignores_the_context() -> None:
    serializer = MsgpackSerializer()
    data = serializer.encode([1, "x"], EntryContext("run1", "s", 0, 2))
    assert data == serializer.encode([1, "x"])
    assert serializer.decode(data, Any, EntryContext("other", "t", 9, 1)) == [1, "x"]


shared_worker = Processor(
    name="ser_shared", inputs=["ser_items"], outputs=["ser_squares"], instances=3
)


@shared_worker
async def _shared(ser_items: IO[int]) -> AsyncIterator[int]:
    async for value in ser_items.stream():
        yield value * value


async def test_pickle_works_for_a_scaled_out_processor(store: Store) -> None:
    """Instances append at the end: their entries are bound to run and stream."""
    supervisor = Supervisor(
        store=store,
        executor=LocalExecutor(),
        serializer=PickleSerializer(SECRET),
        share_size=2,
    )
    flow = Flow.from_processors(shared_worker).resolve()
    with anyio.fail_after(TIMEOUT):
        run = await supervisor.start_flow(
            flow, inputs=[IOVal("ser_items", i) for i in range(20)]
        )
        squares = await run["ser_squares"].collect()
        await run.wait()
        # One of their entries copied into a stream of another run is refused.
        other = await supervisor.start_flow(
            flow, inputs=[IOVal("ser_items", i) for i in range(2)]
        )
        await other.wait()
        _, count, data = (await entries(store, run.id, "ser_squares"))[0]
        await rewrite(store, other.id, {"ser_squares": [(0, count, data)]})
        with pytest.raises(SignatureError):
            await other["ser_squares"].collect()
    assert sorted(squares) == [i * i for i in range(20)]
