from __future__ import annotations

import os
import shutil
import uuid
from typing import TYPE_CHECKING, cast

import pytest

from _redis_servers import RedisServer
from _workers import broker_url as broker_url  # Celery's brokers (test_celery.py)
from _workers import rabbitmq_url as rabbitmq_url
from datagraph import LocalExecutor, Supervisor
from datagraph.stores.memory import MemoryStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from datagraph.stores import Store
    from datagraph.stores.redis import RedisStore


@pytest.fixture(params=["asyncio", "trio"])  # explicit: a missing trio fails, not skips
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a Redis server: ``$REDIS_URL``, else a throwaway local server."""
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    if shutil.which("redis-server") is None and shutil.which("valkey-server") is None:
        pytest.fail(
            "the Redis tests need a Redis server: install one "
            "(apt-get install -y redis-server) so the tests can start it, or set "
            "REDIS_URL=redis://host:port/db to use a running server",
            pytrace=False,
        )
    workdir = tmp_path_factory.mktemp("redis")
    for _attempt in range(3):  # the free port may be taken before the server binds
        server = RedisServer(workdir)
        try:
            server.start()
            break
        except RuntimeError as exc:
            failure = exc
    else:
        pytest.fail(
            f"{failure}\nset REDIS_URL to use a running server instead",
            pytrace=False,
        )
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own, so tests never see each other's keys."""
    return f"dgtest-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis Cluster: ``$REDIS_CLUSTER_URL``, else a throwaway local 3-node one."""
    if url := os.environ.get("REDIS_CLUSTER_URL"):
        yield url
        return
    from _redis_cluster import RedisCluster

    with RedisCluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster.url


async def delete_keys(store: RedisStore) -> None:
    """Delete every key under the store's prefix (on a cluster, of every node)."""
    _, client = await store._client("clean up")
    if store.address.cluster:
        from glide import ClusterScanCursor

        scan = ClusterScanCursor()  # type: ignore[no-untyped-call]  # glide: untyped
        while not scan.is_finished():
            scan, keys = await client.scan(scan, match=f"{store.prefix}:*", count=1000)
            if keys:
                await client.delete(keys)
        return
    cursor = b"0"
    while True:
        cursor, keys = await client.custom_command(
            ["SCAN", cursor, "MATCH", f"{store.prefix}:*", "COUNT", "1000"]
        )
        if keys:
            await client.delete(keys)
        if cursor == b"0":
            break


#: Every kind of store. The suite runs on the first two; a module that runs on a
#: Redis Cluster too (the store conformance suite) opts in with
#: ``pytestmark = pytest.mark.parametrize("store_factory", ALL_STORE_KINDS,
#: indirect=True)``: the whole suite on a cluster adds a minute and a half.
ALL_STORE_KINDS = [
    "memory",
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("cluster", marks=pytest.mark.redis),
]


@pytest.fixture(params=ALL_STORE_KINDS[:2])
def store_factory(request: pytest.FixtureRequest) -> Callable[[], Store]:
    """Make stores of one kind that all share the same data.

    MemoryStore keeps its data in the object, so that kind hands out one object;
    RedisStore objects share a server (or, kind "cluster", a 3-node Redis Cluster)
    and a key prefix (unique to the test).
    """
    if request.param == "memory":
        shared = MemoryStore()
        return lambda: shared
    from datagraph.stores.redis import RedisStore

    fixture = "redis_cluster_url" if request.param == "cluster" else "redis_url"
    url = request.getfixturevalue(fixture)
    prefix = request.getfixturevalue("redis_prefix")
    return lambda: RedisStore(url, prefix=prefix)


@pytest.fixture
async def store(
    store_factory: Callable[[], Store], anyio_backend: str
) -> AsyncIterator[Store]:
    """A fresh store of each kind; a Redis store's keys are deleted afterwards."""
    async with store_factory() as fresh:
        try:
            yield fresh
        finally:
            if not isinstance(fresh, MemoryStore):
                await delete_keys(cast("RedisStore", fresh))


@pytest.fixture
def supervisor(store: Store) -> Supervisor:
    """A supervisor on the test's store, running processors in this process."""
    return Supervisor(store=store, executor=LocalExecutor())
