"""What only RedisStore promises: URLs, connections, key layout, expiry, wake-ups."""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from _redis_servers import free_port
from datagraph import Supervisor
from datagraph.exceptions import (
    DatagraphError,
    RunNotFoundError,
    StoreConfigError,
    StoreConnectionError,
    StoreError,
)
from datagraph.stores import Batch, StreamState, open_store
from datagraph.stores._redis_url import parse_url
from datagraph.stores.redis import RedisStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

pytestmark = pytest.mark.redis


async def run_keys(store: RedisStore) -> list[str]:
    """Every key under the store's prefix."""
    _, client = await store._client("inspect")
    cursor, found = b"0", []
    while True:
        cursor, keys = await client.custom_command(
            ["SCAN", cursor, "MATCH", f"{store.prefix}:*", "COUNT", "1000"]
        )
        found += [key.decode() for key in keys]
        if cursor == b"0":
            return sorted(found)


async def delete_keys(store: RedisStore) -> None:
    _, client = await store._client("inspect")
    if keys := await run_keys(store):
        await client.delete(keys)


@pytest.fixture
async def redis_factory(
    redis_url: str, redis_prefix: str, anyio_backend: str
) -> AsyncIterator[Callable[..., RedisStore]]:
    """Make RedisStore objects (as if in separate processes) sharing a prefix."""
    made: list[RedisStore] = []

    def make(**kwargs: Any) -> RedisStore:
        made.append(RedisStore(redis_url, prefix=redis_prefix, **kwargs))
        return made[-1]

    yield make
    for store in made:
        await store.aclose()
    async with RedisStore(redis_url, prefix=redis_prefix) as cleaner:
        await delete_keys(cleaner)


# ------------------------------------------------------------------------- URLs
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://localhost", ("localhost", 6379, 0, False, None, None)),
        ("redis://example.com:6380/5", ("example.com", 6380, 5, False, None, None)),
        ("rediss://cache.example/2", ("cache.example", 6379, 2, True, None, None)),
        ("redis://:secret@h:1/0", ("h", 1, 0, False, None, "secret")),
        ("redis://alice:s%40cr%3At@h/0", ("h", 6379, 0, False, "alice", "s@cr:t")),
        ("rediss://bob:pw@[::1]:7000/", ("::1", 7000, 0, True, "bob", "pw")),
        ("redis://", ("localhost", 6379, 0, False, None, None)),
    ],
)
def test_parse_url(url: str, expected: tuple[object, ...]) -> None:
    address = parse_url(url)
    assert (
        address.host,
        address.port,
        address.db,
        address.tls,
        address.username,
        address.password,
    ) == expected


@pytest.mark.parametrize(
    "url", ["http://localhost", "localhost:6379", "redis://h/db0", "redis://h:port/0"]
)
def test_invalid_url(url: str) -> None:
    with pytest.raises(StoreConfigError, match="Redis URL"):
        RedisStore(url)


@pytest.mark.parametrize(
    "make",
    [
        lambda url: Supervisor(redis_config={"url": url}),
        lambda url: open_store(url),
        lambda url: RedisStore(url),
    ],
    ids=["redis_config", "open_store", "RedisStore"],
)
def test_a_url_without_scheme_names_the_accepted_forms(
    make: Callable[[str], object],
) -> None:
    with pytest.raises(StoreConfigError) as excinfo:
        make("localhost:6379")
    message = str(excinfo.value)
    assert "'localhost:6379'" in message
    assert "did you mean 'redis://localhost:6379'?" in message
    for form in ("redis://", "rediss://", "redis+cluster://", "rediss+cluster://"):
        assert form in message
    assert isinstance(excinfo.value, DatagraphError)
    assert isinstance(excinfo.value, ValueError)  # as before: callers catching it


def test_password_never_shows() -> None:
    store = RedisStore.from_url("rediss://alice:hunter2@cache.example:6390/3")
    assert store.url == "rediss://alice@cache.example:6390/3"
    assert "hunter2" not in repr(store)
    assert "hunter2" not in repr(store.address)


def test_client_configuration() -> None:
    store = RedisStore("rediss://alice:s%40cret@cache.example:6390/3")
    config = store._config("datagraph")
    assert config.use_tls is True
    assert config.database_id == 3
    assert config.credentials.username == "alice"
    assert config.credentials.password == "s@cret"
    assert [(a.host, a.port) for a in config.addresses] == [("cache.example", 6390)]
    assert RedisStore("redis://h")._config("x").credentials is None


def test_invalid_arguments() -> None:
    with pytest.raises(StoreConfigError, match="retention"):
        RedisStore(retention=0)
    with pytest.raises(StoreConfigError, match="prefix"):
        RedisStore(prefix="a{b}")
    with pytest.raises(StoreConfigError, match="prefix"):
        RedisStore(prefix="")


@pytest.mark.anyio
async def test_run_ids_with_braces_are_refused(
    redis_factory: Callable[..., RedisStore],
) -> None:
    store = redis_factory()
    with pytest.raises(RunNotFoundError, match="run id"):
        await store.append("a}b", "s", 0, 1, b"x")


# ------------------------------------------------------------------ connections
@pytest.mark.anyio
async def test_connection_error_names_the_url_but_not_the_password() -> None:
    port = free_port()  # nothing listens there
    store = RedisStore(f"redis://alice:hunter2@127.0.0.1:{port}/0")
    with pytest.raises(StoreConnectionError) as info:
        await store.append("run", "s", 0, 1, b"x")
    message = str(info.value)
    assert f"redis://alice@127.0.0.1:{port}/0" in message
    assert "append" in message
    assert "hunter2" not in message
    await store.aclose()


@pytest.mark.anyio
async def test_refused_login_is_a_connection_error(redis_url: str) -> None:
    address = parse_url(redis_url)
    host = f"[{address.host}]" if ":" in address.host else address.host
    url = f"redis://nobody:hunter2@{host}:{address.port}/{address.db}"
    async with RedisStore(url) as store:
        with pytest.raises(StoreConnectionError) as info:
            await store.state("run", "s")
    assert "hunter2" not in str(info.value)


@pytest.mark.anyio
async def test_server_errors_are_store_errors(
    redis_factory: Callable[..., RedisStore],
) -> None:
    store = redis_factory()
    _, client = await store._client("inspect")
    await client.set(f"{store.prefix}:{{run}}:s:s", "not a stream")
    with pytest.raises(StoreError) as info:
        await store.append("run", "s", 0, 1, b"x")
    assert not isinstance(info.value, StoreConnectionError)
    assert "append to stream 's' of run run" in str(info.value)
    assert isinstance(info.value.__cause__, Exception)


@pytest.mark.anyio
async def test_use_after_aclose_is_refused(
    redis_factory: Callable[..., RedisStore],
) -> None:
    # As Store.aclose says: a closed store opens no connection behind its
    # owner's back (one that nobody would ever close).
    store = redis_factory()
    await store.append("run", "s", 0, 1, b"x")
    await store.aclose()
    await store.aclose()  # twice is fine
    with pytest.raises(StoreConnectionError, match="was closed"):
        await store.state("run", "s")
    async with redis_factory() as other:
        assert await other.state("run", "s") == StreamState(1)


@pytest.mark.parametrize(
    "backends",
    [("asyncio", "trio", "asyncio"), ("trio", "asyncio", "trio"), ("trio", "trio")],
)
def test_one_store_in_successive_event_loops(
    redis_url: str, redis_prefix: str, backends: tuple[str, ...]
) -> None:
    # Supervisor.attach() creates the store outside any loop; each anyio.run()
    # (or a switch from asyncio to trio) must find it working.
    store = RedisStore(redis_url, prefix=redis_prefix)

    async def use(step: int) -> None:
        assert await store.append("run", "s", step, 1, bytes([step])) == step + 1
        # A blocked read, woken by this process: exercises the waiting client.
        got: list[Batch] = []

        async def reader() -> None:
            got.append(await store.read("run", "t", step, timeout=10))

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await wait_all_tasks_blocked()
            await store.append("run", "t", step, 1, b"t")
        assert [c.start for c in got[0].chunks] == [step]

    async def read_all_now() -> Batch:
        return await store.read("run", "s", 0, timeout=0)

    try:
        for step, backend in enumerate(backends):
            anyio.run(use, step, backend=backend)
        batch = anyio.run(read_all_now, backend=backends[0])
        assert b"".join(c.data for c in batch.chunks) == bytes(range(len(backends)))
    finally:

        async def clean_up() -> None:
            await delete_keys(store)
            await store.aclose()

        anyio.run(clean_up)


# ------------------------------------------------------------------- key layout
@pytest.mark.anyio
async def test_every_key_of_a_run_shares_one_hash_tag(
    redis_factory: Callable[..., RedisStore],
) -> None:
    store = redis_factory()
    run_id = uuid.uuid4().hex
    await store.append(run_id, "a", 0, 1, b"x")
    await store.end_stream(run_id, "b", b"failed")
    await store.set_fields(run_id, {"plan": b"p"})
    await store.claim(run_id, "c")

    keys = await run_keys(store)
    run_keys_ = [k for k in keys if run_id in k]
    assert len(run_keys_) == 5  # two streams, meta, claims, the key set
    for key in run_keys_:
        assert key.startswith(f"{store.prefix}:{{{run_id}}}:"), key
    others = set(keys) - set(run_keys_)
    assert others == {f"{store.prefix}:runs"}

    await store.delete_run(run_id)
    assert [k for k in await run_keys(store) if run_id in k] == []


@pytest.mark.anyio
async def test_every_write_sets_the_expiry(
    redis_factory: Callable[..., RedisStore],
) -> None:
    store = redis_factory(retention=60)
    run_id = uuid.uuid4().hex
    await store.append(run_id, "a", 0, 1, b"x")
    await store.end_stream(run_id, "b")
    await store.set_fields(run_id, {"plan": b"p"})
    await store.claim(run_id, "c")

    _, client = await store._client("inspect")
    for key in [k for k in await run_keys(store) if run_id in k]:
        ttl = await client.pttl(key)
        assert 0 < ttl <= 60_000, key


@pytest.mark.anyio
async def test_run_data_expires_after_retention(
    redis_factory: Callable[..., RedisStore],
) -> None:
    store = redis_factory(retention=0.3)
    run_id = uuid.uuid4().hex
    await store.append(run_id, "s", 0, 1, b"x")
    await store.set_fields(run_id, {"plan": b"p"})
    assert await store.list_runs() == [run_id]

    async def expired() -> bool:
        # Each key expires 0.3 s after its own last write, so the stream can go
        # a moment before the fields written after it.
        stream = await store.state(run_id, "s")
        return stream == StreamState(0) and await store.get_fields(run_id) == {}

    with anyio.fail_after(5):
        # Expiry follows the server's clock: there is no event to wait for.
        while not await expired():  # noqa: ASYNC110
            await anyio.sleep(0.05)
    assert await store.list_runs() == []
    _, client = await store._client("inspect")
    assert await client.zcard(f"{store.prefix}:runs") == 0  # pruned from the index


# ---------------------------------------------------------------------- reading
@pytest.mark.anyio
async def test_one_read_returns_at_most_512_chunks(
    redis_factory: Callable[..., RedisStore],
) -> None:
    store = redis_factory()
    for i in range(600):
        await store.append("run", "s", i, 1, b"v")
    batch = await store.read("run", "s", 0, timeout=1)
    assert len(batch.chunks) == 512
    batch = await store.read("run", "s", 512, timeout=1)
    assert [c.start for c in batch.chunks] == list(range(512, 600))


@pytest.mark.anyio
async def test_one_read_stops_after_8_mib(
    redis_factory: Callable[..., RedisStore],
) -> None:
    store = redis_factory()
    mib = 1024 * 1024
    for i in range(12):
        await store.append("run", "s", i * mib, mib, os.urandom(mib))
    await store.end_stream("run", "s")
    batch = await store.read("run", "s", 0, timeout=1)
    assert len(batch.chunks) == 8
    assert batch.final is None
    batch = await store.read("run", "s", 8 * mib, timeout=1)
    assert len(batch.chunks) == 4
    assert batch.final == StreamState(12 * mib, True)


#: A blocked read or take waits this long; the tests below see it woken far sooner
#: (how soon is a benchmark figure: ``scripts/cluster_latency.py``, ``make bench``).
BLOCKED_FOR = 60
WOKEN_WITHIN = 10


async def _wake(
    reader_store: RedisStore, writer_store: RedisStore, stream: str
) -> None:
    """Block a reader of one store, append with another: the reader returns."""

    async def reader() -> None:
        batch = await reader_store.read("run", stream, 0, timeout=BLOCKED_FOR)
        assert batch.chunks

    with anyio.fail_after(WOKEN_WITHIN):  # woken, not timed out
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await wait_all_tasks_blocked()
            await writer_store.append("run", stream, 0, 1, b"x")


@pytest.mark.anyio
async def test_another_process_wakes_a_blocked_reader(
    redis_factory: Callable[..., RedisStore],
) -> None:
    reader_store, writer_store = redis_factory(), redis_factory()
    for i in range(20):  # on each new stream
        await _wake(reader_store, writer_store, f"s{i}")


@pytest.mark.anyio
async def test_a_new_waiter_interrupts_the_blocked_xread(
    redis_factory: Callable[..., RedisStore],
) -> None:
    # Two readers of one process block on different streams; a write from another
    # process to the second stream must wake its reader promptly (through the wake
    # stream it registered), not when some blocked read times out.
    reader_store, writer_store = redis_factory(), redis_factory()
    got: list[str] = []
    second_served = anyio.Event()

    async def reader(stream: str) -> None:
        await reader_store.read("run", stream, 0, timeout=20)
        got.append(stream)
        if stream == "second":
            second_served.set()

    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader, "first")
            await wait_all_tasks_blocked()
            tg.start_soon(reader, "second")
            await wait_all_tasks_blocked()
            started = anyio.current_time()
            await writer_store.append("run", "second", 0, 1, b"x")
            await second_served.wait()
            assert anyio.current_time() - started < 1
            await writer_store.append("run", "first", 0, 1, b"x")
    assert got == ["second", "first"]


@pytest.mark.anyio
async def test_a_cancelled_reader_does_not_stall_the_others(
    redis_factory: Callable[..., RedisStore],
) -> None:
    reader_store, writer_store = redis_factory(), redis_factory()
    got: list[str] = []

    async def reader(stream: str) -> None:
        await reader_store.read("run", stream, 0, timeout=20)
        got.append(stream)

    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            async with anyio.create_task_group() as doomed:
                doomed.start_soon(reader, "cancelled")  # leads the wait
                await wait_all_tasks_blocked()
                tg.start_soon(reader, "survivor")
                await wait_all_tasks_blocked()
                doomed.cancel_scope.cancel()
            await wait_all_tasks_blocked()
            started = anyio.current_time()
            await writer_store.append("run", "survivor", 0, 1, b"x")
        assert anyio.current_time() - started < 1
    assert got == ["survivor"]


@pytest.mark.anyio
async def test_hundreds_of_blocked_readers_share_two_connections(
    redis_factory: Callable[..., RedisStore], redis_prefix: str
) -> None:
    reader_store, writer_store = redis_factory(), redis_factory()
    n = 300
    done: list[int] = []

    async def reader(i: int) -> None:
        batch = await reader_store.read("run", f"s{i}", 0, timeout=30)
        assert batch.chunks[0].data == i.to_bytes(2, "big")
        done.append(i)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(reader, i)
            await wait_all_tasks_blocked()
            _, client = await reader_store._client("inspect")
            listing = (await client.custom_command(["CLIENT", "LIST"])).decode()
            names = [
                line.partition(" name=")[2].partition(" ")[0]
                for line in listing.splitlines()
            ]
            # Only the reader store has connected so far (the writer has not).
            assert sorted(x for x in names if x.startswith("datagraph")) == [
                "datagraph",
                "datagraph-wait",
            ]
            for i in reversed(range(n)):
                await writer_store.append("run", f"s{i}", 0, 1, i.to_bytes(2, "big"))
    assert sorted(done) == list(range(n))


@pytest.mark.anyio
async def test_reader_beyond_the_end_hears_of_the_end(
    redis_factory: Callable[..., RedisStore],
) -> None:
    reader_store, writer_store = redis_factory(), redis_factory()
    await writer_store.append("run", "s", 0, 2, b"ab")
    got: list[Batch] = []

    async def reader() -> None:
        got.append(await reader_store.read("run", "s", 5, timeout=20))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await wait_all_tasks_blocked()
            await writer_store.end_stream("run", "s")
    assert got[0].final == StreamState(2, True)


# ------------------------------------------------- cursors, trimming, sharing
@pytest.mark.anyio
async def test_cursor_keys_share_the_hash_tag_and_expiry(
    redis_factory: Callable[..., RedisStore],
) -> None:
    store = redis_factory(retention=60)
    run_id = uuid.uuid4().hex
    # A reader's cursor may be the first thing a run has: the run is indexed then.
    await store.read(run_id, "a", 0, timeout=0, reader="r")
    assert await store.list_runs() == [run_id]
    await store.append(run_id, "b", 0, 2, b"xy")
    await store.take(run_id, "b", "g", 1, timeout=0)

    tag = f"{store.prefix}:{{{run_id}}}:"
    keys = [k for k in await run_keys(store) if run_id in k]
    # t:b records the take until its answer is acknowledged (see test_faults.py).
    expected = [f"{tag}c:a", f"{tag}c:b", f"{tag}keys", f"{tag}s:b", f"{tag}t:b"]
    assert sorted(keys) == expected
    _, client = await store._client("inspect")
    for key in keys:
        ttl = await client.pttl(key)
        assert 0 < ttl <= 60_000, key
    listed = {k.decode() for k in await client.smembers(f"{tag}keys")}
    assert listed == {f"{tag}c:a", f"{tag}c:b", f"{tag}s:b", f"{tag}t:b"}

    await store.delete_run(run_id)
    assert [k for k in await run_keys(store) if run_id in k] == []
    assert await store.cursors(run_id, "b") == {}


@pytest.mark.anyio
async def test_trim_frees_entries_on_the_server(
    redis_factory: Callable[..., RedisStore],
) -> None:
    store, other = redis_factory(), redis_factory()
    for i in range(10):
        await store.append("run", "s", i, 1, b"v")
    _, client = await store._client("inspect")
    key = f"{store.prefix}:{{run}}:s:s"
    await store.trim("run", "s", 4)
    assert await client.xlen(key) == 6
    await store.trim("run", "s", 10)
    assert await client.xlen(key) == 0  # every entry goes, the length stays
    assert await other.state("run", "s") == StreamState(10)
    await store.end_stream("run", "s", b"failed")
    await store.trim("run", "s", 1000)
    assert await client.xlen(key) == 1  # the end marker stays
    assert await other.state("run", "s") == StreamState(10, True, b"failed")


@pytest.mark.anyio
async def test_large_positions_survive_lua_numbers(
    redis_factory: Callable[..., RedisStore],
) -> None:
    # Lua prints numbers from 1e14 on in exponent form unless told otherwise.
    store = redis_factory()
    big = 2**50
    assert await store.append_at_end("run", "s", big, b"x") == 0
    assert await store.append_at_end("run", "s", 1, b"y") == big
    share = await store.take("run", "s", "g", big - 1, timeout=0)
    assert (share.start, share.stop) == (0, big - 1)
    share = await store.take("run", "s", "g", 10, timeout=0)
    assert (share.start, share.stop) == (big - 1, big)
    await store.read("run", "s", big + 1, timeout=0, reader="r")
    assert await store.cursors("run", "s") == {"g": big, "r": big + 1}
    await store.trim("run", "s", big)
    batch = await store.read("run", "s", 0, timeout=0)
    assert [(c.start, c.count) for c in batch.chunks] == [(big, 1)]


@pytest.mark.anyio
async def test_another_process_wakes_a_blocked_take(
    redis_factory: Callable[..., RedisStore],
) -> None:
    member_store, writer_store = redis_factory(), redis_factory()

    async def member(stream: str) -> None:
        share = await member_store.take("run", stream, "g", 5, timeout=BLOCKED_FOR)
        assert share.chunk is not None

    for i in range(10):
        with anyio.fail_after(WOKEN_WITHIN):  # woken, not timed out
            async with anyio.create_task_group() as tg:
                tg.start_soon(member, f"s{i}")
                await wait_all_tasks_blocked()
                await writer_store.append_at_end("run", f"s{i}", 1, b"x")
