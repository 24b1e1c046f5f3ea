"""Store faults: a stalled server, a restarted one, lost answers, huge values, bad URLs.

Each test that hurts a server starts a redis-server of its own
(``tests/_redis_servers.py``) and pauses it (SIGSTOP), or kills and restarts it on
the same port with an append-only file. Short ``command_timeout``s make the store
retry within a second instead of five, so the tests stay quick; the pauses are the
faults themselves, not waits for something to happen.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from _redis_servers import RedisServer, free_port
from datagraph import IO, Flow, IOVal, LocalExecutor, Processor, Supervisor
from datagraph.exceptions import (
    ConfigurationError,
    CorruptDataError,
    RunFailedError,
    StoreConfigError,
    StoreConnectionError,
    StoreError,
    UpstreamError,
    ValueTooLargeError,
)
from datagraph.settings import Settings
from datagraph.stores import MemoryStore, Store
from datagraph.stores.redis import RedisStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

TIMEOUT = 30
#: Values of the runs below, in batches of 64: about 50 appends per stream.
COUNT = 3000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone, persisting every write before answering."""
    with RedisServer(tmp_path, aof=True) as running:
        yield running


@pytest.fixture
async def store(server: RedisServer, anyio_backend: str) -> AsyncIterator[RedisStore]:
    """A store on the test's server that retries quickly: 0.25 s per attempt."""
    async with RedisStore(server.url, command_timeout=0.25, store_timeout=20) as made:
        yield made


def _flow(tag: str) -> Flow:
    """numbers -> double -> doubled, with processors named for the test."""
    produce = Processor(name=f"faults_produce_{tag}", inputs=["n"], outputs=["numbers"])
    double = Processor(
        name=f"faults_double_{tag}", inputs=["numbers"], outputs=["doubled"]
    )

    @produce
    async def _produce(n: IO[int]) -> AsyncIterator[int]:
        for i in range(await n.first()):
            yield i

    @double
    async def _double(numbers: IO[int]) -> AsyncIterator[int]:
        async for value in numbers.stream():
            yield value * 2

    return Flow.from_processors(produce, double).resolve()


async def _run_through(
    store: Store, tag: str, fault: Any, *, at: int = COUNT // 3
) -> list[int]:
    """Run the flow, calling ``fault()`` once the reader has ``at`` values."""
    supervisor = Supervisor(store=store, executor=LocalExecutor(), batch_size=64)
    run = await supervisor.start_flow(_flow(tag), inputs=[IOVal("n", COUNT)])
    seen: list[int] = []
    async for value in run["doubled"].stream():
        seen.append(value)
        if len(seen) == at:
            await fault()
    await run.wait()
    assert await run.status() == "succeeded"
    return seen


# ------------------------------------------------------------ stalls and restarts
async def test_a_run_survives_a_paused_server(
    server: RedisServer, store: RedisStore
) -> None:
    async def pause() -> None:
        server.pause()
        await anyio.sleep(1.5)  # the fault: six attempts' worth of silence
        server.resume()

    with anyio.fail_after(TIMEOUT):
        seen = await _run_through(store, "pause", pause)
    assert seen == [2 * i for i in range(COUNT)]


async def test_a_run_survives_a_restart_with_aof(
    server: RedisServer, store: RedisStore
) -> None:
    async def restart() -> None:
        server.restart()

    with anyio.fail_after(TIMEOUT):
        seen = await _run_through(store, "restart", restart)
    assert seen == [2 * i for i in range(COUNT)]


async def test_a_stall_past_store_timeout_fails_clearly(server: RedisServer) -> None:
    async with RedisStore(server.url, command_timeout=0.2, store_timeout=1) as store:
        await store.append("r", "s", 0, 1, b"a")
        server.pause()
        try:
            started = anyio.current_time()
            with anyio.fail_after(TIMEOUT), pytest.raises(StoreConnectionError) as info:
                await store.append("r", "s", 1, 1, b"b")
            waited = anyio.current_time() - started
        finally:
            server.resume()
        message = str(info.value)
        assert "append to stream 's' of run r" in message
        assert "store_timeout is 1s" in message
        assert server.url in message
        assert waited >= 1  # it kept trying for the whole window
        # Once the server answers again, so does the store.
        assert (await store.state("r", "s")).length == 2


async def test_answers_lost_in_a_stall_do_not_repeat_or_lose_anything(
    server: RedisServer, store: RedisStore
) -> None:
    """Each command below is sent several times while the server is paused (each
    attempt times out after 0.25 s) and the server runs every copy once it
    resumes: tokens and positions make the copies harmless."""
    other = RedisStore(server.url, command_timeout=0.25, store_timeout=20)
    run_id = uuid.uuid4().hex
    await store.append(run_id, "shared", 0, 4, b"abcd")
    results: dict[str, Any] = {}
    # Load every script first: a copy sent before its script is loaded fails
    # with NOSCRIPT (glide then loads it and sends it once more), so it would
    # not test anything.
    await store.append_at_end("warm", "s", 1, b"w")
    await store.take("warm", "s", "g", 1, timeout=0)
    await store.claim("warm", "c")
    big = bytes(range(256)) * 8192  # 2 MiB: a blob on a connection of its own

    async def call(name: str, command: Any) -> None:
        results[name] = await command

    async with other, anyio.create_task_group() as tg:
        server.pause()
        tg.start_soon(call, "at_end", store.append_at_end(run_id, "out", 2, b"xy"))
        tg.start_soon(call, "append", store.append(run_id, "pos", 0, 3, b"abc"))
        tg.start_soon(call, "big", store.append_at_end(run_id, "big", 1, big))
        tg.start_soon(call, "take_1", store.take(run_id, "shared", "g", 2, timeout=0))
        tg.start_soon(call, "take_2", other.take(run_id, "shared", "g", 2, timeout=0))
        tg.start_soon(call, "claim_1", store.claim(run_id, "dispatch:p"))
        tg.start_soon(call, "claim_2", other.claim(run_id, "dispatch:p"))
        await anyio.sleep(1.2)  # the fault: about four attempts of each command
        server.resume()

    assert results["at_end"] == 0
    out = await store.read(run_id, "out", 0, timeout=0)
    assert [(c.start, c.count, c.data) for c in out.chunks] == [(0, 2, b"xy")]
    assert (await store.state(run_id, "out")).length == 2
    assert results["append"] == 3
    assert (await store.state(run_id, "pos")).length == 3
    assert results["big"] == 0
    batch = await store.read(run_id, "big", 0, timeout=0)
    assert [(c.start, c.count, c.data) for c in batch.chunks] == [(0, 1, big)]
    assert (await store.state(run_id, "big")).length == 1
    # Each value of "shared" went to exactly one member, none got lost.
    shares = [(results[n].start, results[n].stop) for n in ("take_1", "take_2")]
    assert sorted(shares) == [(0, 2), (2, 4)]
    assert (await store.cursors(run_id, "shared"))["g"] == 4
    # Exactly one claimant won, and it knows it.
    assert sorted([results["claim_1"], results["claim_2"]]) == [False, True]


async def test_a_store_that_was_closed_says_so(server: RedisServer) -> None:
    store = RedisStore(server.url, command_timeout=0.2, store_timeout=5)
    await store.append("r", "s", 0, 1, b"a")
    server.pause()
    try:
        async with anyio.create_task_group() as tg:

            async def append() -> None:
                with pytest.raises(StoreConnectionError, match="was closed"):
                    await store.append("r", "s", 1, 1, b"b")

            tg.start_soon(append)
            await anyio.wait_all_tasks_blocked()
            await store.aclose()
    finally:
        server.resume()


# ------------------------------------------------------------------ large values
async def test_a_large_command_goes_on_a_connection_of_its_own(
    server: RedisServer, store: RedisStore
) -> None:
    big = bytes(range(256)) * (8 * 4096)  # 8 MiB: a large command
    small_run, big_run = uuid.uuid4().hex, uuid.uuid4().hex
    names: list[bytes] = []

    async def small_commands() -> None:
        for i in range(200):
            await store.append(small_run, "s", i, 1, bytes([i]))
            batch = await store.read(small_run, "s", i, timeout=0)
            assert [c.data for c in batch.chunks] == [bytes([i])]

    async def big_command() -> None:
        await store.append(big_run, "s", 0, 1, big)
        _, client = await store._client("inspect")
        listing = await client.custom_command(["CLIENT", "LIST"])
        names.extend(listing.split(b"\n"))

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(small_commands)
            tg.start_soon(big_command)
        batch = await store.read(big_run, "s", 0, timeout=0)
    assert [(c.start, c.count) for c in batch.chunks] == [(0, 1)]
    assert batch.chunks[0].data == big
    assert (await store.state(small_run, "s")).length == 200
    assert any(b"name=datagraph-bulk" in line for line in names)


async def test_large_batches_live_in_blobs_that_trim_and_delete_remove(
    store: RedisStore,
) -> None:
    run_id = uuid.uuid4().hex
    big = bytes(range(256)) * 8192  # 2 MiB: over the 1 MiB kept in the entry
    await store.append(run_id, "s", 0, 2, big)
    assert await store.append_at_end(run_id, "s", 1, big[::-1]) == 2
    await store.append(run_id, "s", 3, 1, b"small")

    async def blobs() -> list[bytes]:
        keys = await _keys(store, f"{store.prefix}:{{{run_id}}}:v:*")
        return sorted(keys)

    assert len(await blobs()) == 2
    batch = await store.read(run_id, "s", 0, timeout=0)  # a blob ends a batch
    assert [(c.start, c.count, c.data) for c in batch.chunks] == [(0, 2, big)]
    batch = await store.read(run_id, "s", 2, timeout=0)
    assert [(c.start, c.data) for c in batch.chunks] == [(2, big[::-1])]
    share = await store.take(run_id, "s", "g", 5, timeout=0)
    assert share.chunk is not None
    assert (share.start, share.stop, share.chunk.data) == (0, 2, big)
    await store.trim(run_id, "s", 2)
    assert len(await blobs()) == 1
    await store.delete_run(run_id)
    assert await _keys(store, f"{store.prefix}:{{{run_id}}}*") == []


async def _keys(store: RedisStore, pattern: str) -> list[bytes]:
    _, client = await store._client("inspect")
    found: list[bytes] = await client.custom_command(["KEYS", pattern])
    return found


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_an_entry_over_max_value_size_is_refused_by_the_store(
    kind: str, redis_url: str
) -> None:
    made: Store = (
        MemoryStore(max_value_size=1000)
        if kind == "memory"
        else RedisStore(
            redis_url, prefix=f"dgtest-{uuid.uuid4().hex}", max_value_size=1000
        )
    )
    run_id = uuid.uuid4().hex
    async with made as store:
        await store.append(run_id, "s", 0, 1, b"x" * 1000)  # at the limit: fine
        with pytest.raises(ValueTooLargeError) as info:
            await store.append(run_id, "s", 1, 2, b"y" * 1001)
        with pytest.raises(ValueTooLargeError):
            await store.append_at_end(run_id, "s", 1, b"y" * 1001)
        batch = await store.read(run_id, "s", 0, timeout=0)
        assert [c.data for c in batch.chunks] == [b"x" * 1000]
        await store.delete_run(run_id)
    error = info.value
    assert (error.run_id, error.stream, error.size, error.limit) == (
        run_id,
        "s",
        1001,
        1000,
    )
    assert "a batch of 2 values of 1,001 bytes to stream 's'" in str(error)


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_batches_over_max_value_size_are_split_and_a_lone_value_refused(
    kind: str, redis_url: str
) -> None:
    limit = 4096
    store: Store = (
        MemoryStore()
        if kind == "memory"
        else RedisStore(redis_url, prefix=f"dgtest-{uuid.uuid4().hex}")
    )
    supervisor = Supervisor(
        store=store, executor=LocalExecutor(), max_value_size=limit, batch_size=1024
    )
    tag = f"{kind}"
    proc = Processor(name=f"faults_sizes_{tag}", inputs=["n"], outputs=["blobs"])
    # A batch of one value of n bytes: 1 byte of array header, 3 of bin 16 header.
    fits = limit - 4

    @proc
    async def _sizes(n: IO[int]) -> AsyncIterator[bytes]:
        for i in range(await n.first()):
            yield bytes([i % 256]) * 100  # 100 of these are a 10 KB batch
        yield b"f" * fits
        yield b"!" * (fits + 1)
        yield b"never written"

    async with store:
        run = await supervisor.start_flow(
            Flow.from_processors(proc).resolve(), inputs=[IOVal("n", 100)]
        )
        with anyio.fail_after(TIMEOUT):
            got: list[bytes] = []
            with pytest.raises(UpstreamError, match="ValueTooLargeError"):
                await _collect_into(run["blobs"], got)
            with pytest.raises(RunFailedError) as info:
                await run.wait()
        await store.delete_run(run.id)
    assert got == [bytes([i % 256]) * 100 for i in range(100)] + [b"f" * fits]
    failure = info.value.errors[proc.name]
    assert failure.error_type == "ValueTooLargeError"
    assert f"processor {proc.name!r} wrote a value of 4,097 bytes" in failure.message
    assert "to stream 'blobs'" in failure.message


async def _collect_into(io: IO[bytes], got: list[bytes]) -> None:
    """Read a stream into ``got``, keeping what came before an error."""
    async for value in io.stream():
        got.append(value)  # noqa: PERF401  # keep those before the error


def test_settings_reach_the_stores() -> None:
    env = {
        "DATAGRAPH_REDIS_URL": "redis://127.0.0.1:1/0",
        "DATAGRAPH_STORE_TIMEOUT": "7",
        "DATAGRAPH_MAX_VALUE_SIZE": "1000",
    }
    settings = Settings.from_env(env, command_timeout=0.5, client_log_level="error")
    store = Supervisor(settings=settings).store
    assert isinstance(store, RedisStore)
    assert (store.store_timeout, store.command_timeout) == (7.0, 0.5)
    assert store.max_value_size == 1000
    memory = Supervisor(settings=Settings(max_value_size=2000)).store
    assert isinstance(memory, MemoryStore)
    assert memory.max_value_size == 2000
    with pytest.raises(ConfigurationError, match="client_log_level"):
        Settings(client_log_level="loud")


def test_max_value_size_defaults_below_the_redis_limit() -> None:
    assert Settings().max_value_size < 512 * 1024 * 1024
    assert RedisStore().max_value_size == Settings().max_value_size
    assert MemoryStore().max_value_size == Settings().max_value_size
    with pytest.raises(ConfigurationError, match="max_value_size"):
        Settings(max_value_size=0)
    with pytest.raises(StoreConfigError, match="store_timeout"):
        RedisStore(store_timeout=0)


async def test_a_full_server_is_a_store_error_not_corrupt_data(
    tmp_path: Path,
) -> None:
    async def fill(store: RedisStore) -> None:
        for i in range(100):  # 500 KB batches until the server is full
            await store.append("r", "s", i, 1, b"x" * 500_000)

    with RedisServer(tmp_path, options=["--maxmemory", "2mb"]) as server:
        async with RedisStore(server.url, store_timeout=5) as store:
            with pytest.raises(StoreError, match="OOM") as info:
                await fill(store)
    assert not isinstance(info.value, CorruptDataError)
    assert "run r: OOM: command not allowed" in str(info.value)


# ------------------------------------------------------------------------- URLs
async def test_a_refused_port_fails_at_once_and_says_refused() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", store_timeout=30)
    started = anyio.current_time()
    with pytest.raises(StoreConnectionError) as info:
        await store.append("r", "s", 0, 1, b"a")
    assert anyio.current_time() - started < 1  # the requirement, not a guess
    message = str(info.value)
    assert "connection refused" in message
    assert "\n" not in message
    assert info.value.__cause__ is None  # glide's own traceback is not shown


async def test_an_unknown_host_says_unknown_host() -> None:
    store = RedisStore("redis://no-such-host.invalid:6379/0", store_timeout=30)
    with pytest.raises(StoreConnectionError, match="unknown host"):
        await store.state("r", "s")


async def test_a_wrong_password_says_authentication_failed(tmp_path: Path) -> None:
    with RedisServer(tmp_path, options=["--requirepass", "right"]) as server:
        url = server.url.replace("redis://", "redis://:wrong@")
        store = RedisStore(url, store_timeout=30)
        with pytest.raises(StoreConnectionError, match="authentication failed"):
            await store.state("r", "s")


_REFUSED_SCRIPT = """
import anyio, sys
from datagraph.stores.redis import RedisStore

async def main():
    store = RedisStore(sys.argv[1], **eval(sys.argv[2]))
    try:
        await store.state("r", "s")
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}")

anyio.run(main)
"""


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # a subprocess: one is enough
def test_glide_log_lines_are_hidden_unless_asked_for(anyio_backend: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"

    def start(options: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", _REFUSED_SCRIPT, url, options],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
        out, err = process.communicate(timeout=50)
        assert process.returncode == 0, err
        return subprocess.CompletedProcess(process.args, 0, out, err)

    # Both at once: starting Python with glide takes seconds on a busy machine.
    quiet_process, loud_process = start("{}"), start("{'client_log_level': 'warn'}")
    quiet = run(quiet_process)  # glide logs to stdout, where the script prints
    (line,) = quiet.stdout.splitlines()
    assert line.startswith("StoreConnectionError: cannot reach Redis at")
    assert "connection refused" in line
    assert quiet.stderr == ""
    loud = run(loud_process)
    assert "WARN" in loud.stdout
    assert "glide_logger" in loud.stdout
