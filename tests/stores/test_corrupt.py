"""Corrupt and foreign data: every bad entry is a ``CorruptDataError`` naming run and
stream, never a foreign exception and never a silently short stream.

The Redis tests write bad entries straight into a stream key (as a bug, a hand edit
or another program would); a reader started afterwards still gets every valid value
before the bad entry, then the error.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from datagraph import IO, Flow, LocalExecutor, Processor, Supervisor
from datagraph.exceptions import CorruptDataError
from datagraph.serializers import MsgpackSerializer
from datagraph.stores.redis import RedisStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from datagraph.stores import Store

pytestmark = pytest.mark.anyio

TIMEOUT = 10
_SOURCE = Processor(name="corrupt_source", inputs=[], outputs=["out"])


def encode(*values: int) -> bytes:
    return MsgpackSerializer().encode(list(values))


def reader(store: Store, run_id: str, name: str = "out") -> IO[Any]:
    """A new read handle on a stream of a run that nobody produces right now."""
    supervisor = Supervisor(store=store, executor=LocalExecutor())
    plan = Flow.from_processors(_SOURCE).resolve().plan
    return IO(supervisor._new_context(run_id, plan, takeover=False), name)


async def read_until_error(io: IO[Any]) -> tuple[list[Any], CorruptDataError]:
    """Read a stream that must fail: the values before the error, and the error."""
    values: list[Any] = []
    with anyio.fail_after(TIMEOUT), pytest.raises(CorruptDataError) as info:
        await _collect_into(io, values)
    return values, info.value


async def _collect_into(io: IO[Any], values: list[Any]) -> None:
    async for value in io.stream():
        values.append(value)  # noqa: PERF401  # keep those before the error


def check_names(error: CorruptDataError, run_id: str, stream: str | None) -> None:
    assert (error.run_id, error.stream) == (run_id, stream)
    assert run_id in str(error)
    if stream is not None:
        assert repr(stream) in str(error)


# ------------------------------------------------------------------- any store
async def test_an_entry_that_does_not_decode(store: Store) -> None:
    run_id = uuid.uuid4().hex
    await store.append(run_id, "out", 0, 3, encode(0, 1, 2))
    await store.append(run_id, "out", 3, 2, b"\xc1 not msgpack")
    await store.end_stream(run_id, "out")
    values, error = await read_until_error(reader(store, run_id))
    assert values == [0, 1, 2]
    check_names(error, run_id, "out")
    assert "values 3 to 4" in str(error)
    assert "DecodeError" in str(error)


async def test_an_entry_with_fewer_values_than_it_claims(store: Store) -> None:
    run_id = uuid.uuid4().hex
    await store.append(run_id, "out", 0, 5, encode(0, 1, 2))  # says 5, holds 3
    await store.append(run_id, "out", 5, 1, encode(5))
    await store.end_stream(run_id, "out")
    values, error = await read_until_error(reader(store, run_id))
    assert values == []
    check_names(error, run_id, "out")
    assert "it holds 3 values" in str(error)


async def test_a_failure_that_does_not_decode(store: Store) -> None:
    run_id = uuid.uuid4().hex
    await store.append(run_id, "out", 0, 2, encode(0, 1))
    await store.end_stream(run_id, "out", b"\xc1 not a failure")
    values, error = await read_until_error(reader(store, run_id))
    assert values == [0, 1]
    check_names(error, run_id, "out")
    assert "ended with a failure that does not decode" in str(error)


# ---------------------------------------------------------- Redis, written by hand


@pytest.fixture
async def redis(
    redis_url: str, redis_prefix: str, anyio_backend: str
) -> AsyncIterator[RedisStore]:
    async with RedisStore(redis_url, prefix=redis_prefix) as made:
        yield made
        _, client = await made._client("clean up")
        cursor = b"0"
        while True:
            cursor, keys = await client.custom_command(
                ["SCAN", cursor, "MATCH", f"{redis_prefix}:*", "COUNT", "1000"]
            )
            if keys:
                await client.delete(keys)
            if cursor == b"0":
                break


async def raw(store: RedisStore, *command: str | bytes) -> Any:
    _, client = await store._client("write by hand")
    return await client.custom_command(list(command))


def key(store: RedisStore, run_id: str, stream: str = "out") -> str:
    return f"{store.prefix}:{{{run_id}}}:s:{stream}"


async def valid_then(store: RedisStore, run_id: str, *bad: str | bytes) -> None:
    """Write values 0, 1, 2 properly, then a bad entry by hand."""
    await store.append(run_id, "out", 0, 3, encode(0, 1, 2))
    await raw(store, "XADD", key(store, run_id), *bad)


@pytest.mark.redis
async def test_a_count_that_is_not_a_number(redis: RedisStore) -> None:
    run_id = uuid.uuid4().hex
    await valid_then(redis, run_id, "5-0", "n", "two", "d", encode(3, 4))
    for _ in range(2):  # a new reader, too, gets the values before the bad entry
        values, error = await read_until_error(reader(redis, run_id))
        assert values == [0, 1, 2]
        check_names(error, run_id, "out")
        assert "entry 5-0" in str(error)
        assert "count b'two' is not a number" in str(error)


@pytest.mark.redis
async def test_an_entry_with_unexpected_fields(redis: RedisStore) -> None:
    run_id = uuid.uuid4().hex
    await valid_then(redis, run_id, "4-0", "foo", "bar")
    values, error = await read_until_error(reader(redis, run_id))
    assert values == [0, 1, 2]
    check_names(error, run_id, "out")
    assert "fields 'foo'" in str(error)
    assert "trimmed" not in str(error)


@pytest.mark.redis
async def test_entries_that_overlap_never_repeat_a_position(redis: RedisStore) -> None:
    run_id = uuid.uuid4().hex
    await valid_then(redis, run_id, "5-0", "n", "3", "d", encode(2, 3, 4))
    await redis.end_stream(run_id, "out")
    # One read never returns both: the second entry claims position 2 again.
    batch = await redis.read(run_id, "out", 0, timeout=0)
    assert [(c.start, c.count) for c in batch.chunks] == [(0, 3)]
    # A reader at 3 takes the second entry from there, as after any resume.
    with anyio.fail_after(TIMEOUT):
        assert await reader(redis, run_id).collect() == [0, 1, 2, 3, 4]


@pytest.mark.redis
async def test_a_count_that_does_not_fit_the_id(redis: RedisStore) -> None:
    run_id = uuid.uuid4().hex
    await raw(redis, "XADD", key(redis, run_id), "2-0", "n", "9", "d", encode(0, 1))
    values, error = await read_until_error(reader(redis, run_id))
    assert values == []
    assert "count 9 does not fit its id" in str(error)


@pytest.mark.redis
async def test_take_of_a_foreign_entry(redis: RedisStore) -> None:
    run_id = uuid.uuid4().hex
    await valid_then(redis, run_id, "4-0", "foo", "bar")
    share = await redis.take(run_id, "out", "g", 5, timeout=0)
    assert (share.start, share.stop) == (0, 3)
    with pytest.raises(CorruptDataError) as info:
        await redis.take(run_id, "out", "g", 5, timeout=0)
    check_names(info.value, run_id, "out")
    await raw(redis, "XADD", key(redis, run_id, "other"), "4-0", "n", "x", "d", "")
    with pytest.raises(CorruptDataError, match="'other'"):
        await redis.take(run_id, "other", "g", 5, timeout=0)


@pytest.mark.redis
async def test_a_stream_key_overwritten_with_another_type(redis: RedisStore) -> None:
    run_id = uuid.uuid4().hex
    await redis.append(run_id, "out", 0, 3, encode(0, 1, 2))
    await raw(redis, "SET", key(redis, run_id), "garbage")
    values, error = await read_until_error(reader(redis, run_id))
    assert values == []
    check_names(error, run_id, "out")
    assert "holds another type of value" in str(error)
    # Writers and the runtime's checks hear of it the same way.
    with pytest.raises(CorruptDataError, match="'out'"):
        await redis.append(run_id, "out", 3, 1, encode(3))
    with pytest.raises(CorruptDataError, match="'out'"):
        await redis.end_stream(run_id, "out")
    with pytest.raises(CorruptDataError, match="'out'"):
        await redis.state(run_id, "out")


@pytest.mark.redis
async def test_run_metadata_overwritten_with_another_type(redis: RedisStore) -> None:
    run_id = uuid.uuid4().hex
    await redis.set_fields(run_id, {"plan": b"x"})
    await raw(redis, "SET", f"{redis.prefix}:{{{run_id}}}:meta", "garbage")
    with pytest.raises(CorruptDataError) as info:
        await redis.get_fields(run_id)
    check_names(info.value, run_id, None)
    with pytest.raises(CorruptDataError):
        await redis.set_fields(run_id, {"plan": b"y"})


@pytest.mark.redis
async def test_cursors_that_are_not_numbers(redis: RedisStore) -> None:
    run_id = uuid.uuid4().hex
    await raw(redis, "HSET", f"{redis.prefix}:{{{run_id}}}:c:out", "r", "soon")
    with pytest.raises(CorruptDataError) as info:
        await redis.cursors(run_id, "out")
    check_names(info.value, run_id, "out")
