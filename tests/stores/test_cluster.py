"""RedisStore on a Redis Cluster: URLs, runs spread over every node, wake-ups, seed.

The cluster is the session's throwaway 3-node one (``conftest.redis_cluster_url``);
the store conformance suite runs on it too (its ``store_factory`` kind "cluster").
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from glide import ClusterScanCursor

from datagraph import _keys
from datagraph.stores import Batch
from datagraph.stores._redis_url import parse_url
from datagraph.stores.redis import RedisStore
from helpers import run_seed_example

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable


# ------------------------------------------------------------------------- URLs
@pytest.mark.parametrize(
    ("url", "seeds", "tls", "user", "password"),
    [
        ("redis+cluster://h1", [("h1", 6379)], False, None, None),
        ("redis+cluster://h1:7000,h2:7001", [("h1", 7000), ("h2", 7001)], False,
         None, None),
        ("rediss+cluster://al:s%40c@h1:7000,[::1]:7001/0",
         [("h1", 7000), ("::1", 7001)], True, "al", "s@c"),
    ],
)  # fmt: skip
def test_parse_a_cluster_url(
    url: str,
    seeds: list[tuple[str, int]],
    tls: bool,
    user: str | None,
    password: str | None,
) -> None:
    address = parse_url(url)
    assert address.cluster
    assert list(address.seeds) == seeds
    assert (address.tls, address.username, address.password) == (tls, user, password)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+cluster://h1:7000/3", "only database 0"),
        ("redis+cluster://h1:7000,u:p@h2:7001", "only the first node"),
        ("redis+cluster://h1:port", "invalid port"),
        ("redis+cluster://h1,,h2", "names host:port"),
    ],
)
def test_invalid_cluster_urls(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        RedisStore(url)


def test_a_cluster_url_makes_a_cluster_client_and_hides_the_password() -> None:
    store = RedisStore("rediss+cluster://al:hunter2@h1:7000,h2:7001")
    assert store.url == "rediss+cluster://al@h1:7000,h2:7001"
    assert "hunter2" not in repr(store)
    config = store._config("datagraph")
    assert type(config).__name__ == "GlideClusterClientConfiguration"
    assert [(a.host, a.port) for a in config.addresses] == [("h1", 7000), ("h2", 7001)]
    assert config.use_tls is True
    assert config.credentials.password == "hunter2"


# ------------------------------------------------------------------ on a cluster
@pytest.fixture
async def cluster_factory(
    redis_cluster_url: str, redis_prefix: str, anyio_backend: str
) -> AsyncIterator[Callable[..., RedisStore]]:
    """Make RedisStore objects (as if in separate processes) on the cluster."""
    made: list[RedisStore] = []

    def make(**kwargs: Any) -> RedisStore:
        made.append(RedisStore(redis_cluster_url, prefix=redis_prefix, **kwargs))
        return made[-1]

    yield make
    for store in made:
        await store.aclose()
    async with RedisStore(redis_cluster_url, prefix=redis_prefix) as cleaner:
        await _delete_all(cleaner)


async def _scan(store: RedisStore) -> list[bytes]:
    """Every key under the store's prefix, on every node."""
    _, client = await store._client("inspect")
    cursor = ClusterScanCursor()  # type: ignore[no-untyped-call]  # glide: untyped
    found: list[bytes] = []
    while not cursor.is_finished():
        cursor, keys = await client.scan(cursor, match=f"{store.prefix}:*")
        found += keys
    return found


async def _delete_all(store: RedisStore) -> None:
    _, client = await store._client("clean up")
    if keys := await _scan(store):
        await client.delete(keys)


async def _node_of(store: RedisStore, key: str) -> bytes:
    """The id of the node serving ``key`` (CLUSTER NODES: id, ..., slot ranges)."""
    _, client = await store._client("inspect")
    slot = await client.custom_command(["CLUSTER", "KEYSLOT", key])
    nodes: bytes = await client.custom_command(["CLUSTER", "NODES"])
    for line in nodes.decode().splitlines():
        fields = line.split()
        for part in fields[8:]:
            first, _, last = part.partition("-")
            if int(first) <= slot <= int(last or first):
                return fields[0].encode()
    raise AssertionError(f"no node serves slot {slot}")


@pytest.mark.redis
@pytest.mark.anyio
async def test_runs_on_every_node_are_listed_and_deleted(
    cluster_factory: Callable[..., RedisStore],
) -> None:
    store = cluster_factory()
    # Runs until each of the three nodes holds one (uuids spread over the slots).
    by_node: dict[bytes, str] = {}
    while len(by_node) < 3:
        run_id = uuid.uuid4().hex
        node = await _node_of(store, _keys.meta_key(store.prefix, run_id))
        by_node.setdefault(node, run_id)
    run_ids = list(by_node.values())
    for run_id in run_ids:
        await store.append(run_id, "s", 0, 1, b"x")
        await store.set_fields(run_id, {"status": b"ok"})
    assert await store.list_runs() == run_ids
    await store.delete_run(run_ids[1])
    assert await store.list_runs() == [run_ids[0], run_ids[2]]
    for run_id in (run_ids[0], run_ids[2]):
        await store.delete_run(run_id)
    assert await store.list_runs() == []
    assert await _scan(store) == []


@pytest.mark.redis
@pytest.mark.anyio
async def test_another_process_wakes_readers_of_runs_on_every_node(
    cluster_factory: Callable[..., RedisStore],
) -> None:
    reader_store, writer_store = cluster_factory(), cluster_factory()
    run_ids = [uuid.uuid4().hex for _ in range(6)]
    results: dict[str, Batch] = {}

    async def reader(run_id: str) -> None:
        results[run_id] = await reader_store.read(
            run_id, "s", 0, timeout=60, reader="r"
        )

    # Well within the 10 s after which a reader asks again by itself: each
    # reader is woken by the writer's message, not by its own renewal.
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for run_id in run_ids:
                tg.start_soon(reader, run_id)
            await _registered(writer_store, [(run_id, "s") for run_id in run_ids])
            for i, run_id in enumerate(run_ids):
                await writer_store.append(run_id, "s", 0, 1, bytes([i]))
    assert [results[r].chunks[0].data for r in run_ids] == [
        bytes([i]) for i in range(6)
    ]


async def _registered(store: RedisStore, streams: list[tuple[str, str]]) -> None:
    """Wait until readers of each (run, stream) have registered to be woken.

    Then a write must wake them (``wait_all_tasks_blocked`` would not do: a task
    awaiting the reply of its read script counts as blocked).
    """
    _, client = await store._client("inspect")
    keys = [f"{store.prefix}:{{{run}}}:w:{stream}" for run, stream in streams]
    with anyio.fail_after(20):
        while not all([await client.hlen(key) for key in keys]):  # noqa: ASYNC110
            await anyio.sleep(0.01)  # the server has no event to wait on


class _Monitor:
    """MONITOR of one node, read by a thread: every command it runs, in order."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(b"MONITOR\r\n")
        self.sock.settimeout(None)  # the test's end marker (or close()) ends it
        self.data = b""
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError):  # closed by a failing test
            while b"dg-monitor-end" not in self.data:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    break
                self.data += chunk
        self.done.set()

    def close(self) -> None:
        self.sock.close()

    def lines(self) -> list[str]:
        """Wait for the end marker (an ECHO sent after the exercise); the lines."""
        assert self.done.wait(30), "MONITOR never saw the end marker"
        return self.data.decode(errors="replace").split("\r\n")


_WORD = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _undeclared(lines: list[str]) -> tuple[int, list[str]]:
    """Count the commands scripts ran; list those on keys their script did not get.

    MONITOR shows each EVALSHA (with its keys) and then the commands its script
    runs (``[0 lua]``). Every command the scripts use takes its key first, but for
    XINFO (``XINFO STREAM key``), TIME and PUBLISH (no key).
    """
    declared: set[str] = set()
    ran, wrong = 0, []
    for line in lines:
        words = _WORD.findall(line)
        if not words:
            continue
        command = words[0].upper()
        if "[0 lua]" not in line:
            if command in ("EVALSHA", "EVAL"):
                declared = set(words[3 : 3 + int(words[2])])
            continue
        ran += 1
        if command in ("TIME", "PUBLISH"):
            continue
        key = words[2] if command == "XINFO" else words[1]
        if key not in declared:
            wrong.append(line[:200])
    return ran, wrong


@pytest.mark.redis
@pytest.mark.anyio
async def test_scripts_touch_only_the_keys_they_declare(
    cluster_factory: Callable[..., RedisStore], redis_cluster_url: str
) -> None:
    ports = [port for _, port in parse_url(redis_cluster_url).seeds]
    monitors = [_Monitor(port) for port in ports]
    try:
        lines = await _exercise_every_script(cluster_factory, ports, monitors)
    finally:
        for monitor in monitors:
            monitor.close()
    ran, wrong = _undeclared(lines)
    assert wrong == []
    assert ran > 50  # the scripts above ran, and were seen
    assert any('[0 lua] "PUBLISH"' in line for line in lines)  # a wake went out


async def _exercise_every_script(
    cluster_factory: Callable[..., RedisStore],
    ports: list[int],
    monitors: list[_Monitor],
) -> list[str]:
    """Run every script of the store (blobs and wakes too); the nodes' MONITOR lines."""
    store, other = cluster_factory(), cluster_factory()
    run_id = uuid.uuid4().hex
    big = bytes(range(256)) * 4400  # over 1 MiB: a blob key of its own
    await store.set_fields(run_id, {"status": b"running"})
    assert await store.claim(run_id, "first")
    await store.append(run_id, "s", 0, 1, b"a")
    await store.append(run_id, "s", 1, 1, big)
    assert await store.append_at_end(run_id, "s", 1, big) == 2

    async def blocked_read() -> None:
        await other.read(run_id, "s", 3, timeout=30, reader="r")

    async def blocked_take() -> None:
        await other.take(run_id, "t", "g", 1, timeout=30)

    async with anyio.create_task_group() as tg:  # woken across "processes"
        tg.start_soon(blocked_read)
        tg.start_soon(blocked_take)
        await _registered(store, [(run_id, "s"), (run_id, "t")])
        await store.append_at_end(run_id, "s", 1, b"b")
        await store.append(run_id, "t", 0, 1, b"c")
    assert (await store.take(run_id, "s", "g", 2, timeout=0)).stop == 1
    await store.read(run_id, "s", 0, timeout=0, reader="r2")
    await store.trim(run_id, "s", 3)
    assert await store.end_stream(run_id, "s")
    assert await store.reopen(run_id, "s")
    assert await store.end_stream(run_id, "s", b"boom")
    await store.state(run_id, "s")
    await store.delete_run(run_id)
    for port in ports:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"ECHO dg-monitor-end\r\n")
            assert sock.recv(64).startswith(b"$")
    return [line for monitor in monitors for line in monitor.lines()]


@pytest.mark.redis
def test_the_seed_example_runs_on_the_cluster(
    redis_cluster_url: str, redis_prefix: str
) -> None:
    run_seed_example(redis_cluster_url, redis_prefix)

    async def check() -> list[str]:
        async with RedisStore(redis_cluster_url, prefix=redis_prefix) as store:
            runs = await store.list_runs()
            await _delete_all(store)
            return runs

    assert len(anyio.run(check)) == 2  # on trio, then on asyncio
