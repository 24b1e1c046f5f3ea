"""The Redis store over TLS, as an ACL user limited to Datagraph's key prefix.

One redis-server of this module listens on a plain port (for the test's own setup,
as the default user) and on a TLS port with a certificate signed by a CA made by
``_tls.make_certificates``. Every test gets an ACL user of its own holding only
the keys ``~<its prefix>:*`` and the commands of ``ACL_COMMANDS``, and reaches the
server as ``rediss://<user>:<password>@127.0.0.1:<tls port>/0?ssl_ca_certs=<ca>``.

The whole store conformance suite runs here on that store, on asyncio and trio;
so does the seed example, and a user lacking a key or a command gets one
``StorePermissionError``.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

from _redis_servers import RedisServer, free_port
from _tls import Certificates, add_acl_user, make_certificates, redis_command
from conftest import delete_keys
from datagraph.exceptions import (
    StoreConfigError,
    StoreConnectionError,
    StorePermissionError,
)
from datagraph.stores._redis_access import ACL_COMMANDS
from datagraph.stores.redis import RedisStore
from datagraph.testing.conformance import StoreContract
from helpers import run_seed_example

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from datagraph.stores import Store

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

PASSWORD = "s3cret-Pw"


class TlsServer:
    """The module's server: a plain port for setup, a TLS port for the store."""

    def __init__(self, server: RedisServer, tls_port: int, certs: Certificates):
        self.server = server
        self.tls_port = tls_port
        self.certs = certs

    def url(self, user: str | None = None, *, ca: Path | None = None) -> str:
        """A ``rediss://`` URL of the TLS port trusting ``ca`` (the server's CA)."""
        login = f"{user}:{PASSWORD}@" if user else ""
        ca_file = ca or self.certs.ca
        return f"rediss://{login}127.0.0.1:{self.tls_port}/0?ssl_ca_certs={ca_file}"

    def user(self, prefix: str, *rules: str) -> str:
        """Create an ACL user with ``rules`` (default: what Datagraph needs)."""
        name = f"dg-{uuid.uuid4().hex[:8]}"
        if not rules:
            rules = (f"~{prefix}:*", "+@connection", *(f"+{c}" for c in ACL_COMMANDS))
        add_acl_user(self.server.port, name, PASSWORD, "resetchannels", *rules)
        return name


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    workdir = tmp_path_factory.mktemp("redis-tls")
    certs = make_certificates(workdir)
    tls_port = free_port()
    options = ["--tls-port", str(tls_port), "--tls-auth-clients", "no",
               "--tls-cert-file", str(certs.cert), "--tls-key-file", str(certs.key),
               "--tls-ca-cert-file", str(certs.ca)]  # fmt: skip
    with RedisServer(workdir, options=options) as server:
        yield TlsServer(server, tls_port, certs)


@pytest.fixture
def store_factory(tls_server: TlsServer, redis_prefix: str) -> Callable[[], Store]:
    """Stores reaching the TLS port as an ACL user holding only the test's prefix."""
    user = tls_server.user(redis_prefix)
    return lambda: RedisStore(tls_server.url(user), prefix=redis_prefix)


@pytest.fixture
async def store(
    store_factory: Callable[[], Store],
    tls_server: TlsServer,
    redis_prefix: str,
    anyio_backend: str,
) -> AsyncIterator[Store]:
    """A store of ``store_factory``; the default user deletes its keys after."""
    async with store_factory() as fresh:
        yield fresh
    async with RedisStore(tls_server.server.url, prefix=redis_prefix) as admin:
        await delete_keys(admin)


class TestStoreContract(StoreContract):
    """The store conformance suite, on this module's ``store_factory``."""

    @pytest.fixture
    def store(self, store: Store) -> Store:
        """The module's store, whose keys the default user deletes after the test."""
        return store


# --------------------------------------------------------------------- TLS
async def test_the_store_speaks_tls_to_the_tls_port(
    tls_server: TlsServer, redis_prefix: str
) -> None:
    user = tls_server.user(redis_prefix)
    async with RedisStore(tls_server.url(user), prefix=redis_prefix) as store:
        await store.set_fields("r1", {"k": b"v"})
        assert await store.get_fields("r1", ["k"]) == {"k": b"v"}
    async with RedisStore(tls_server.server.url, prefix=redis_prefix) as admin:
        # What went over TLS is on the server, as the same server sees it.
        assert await admin.get_fields("r1", ["k"]) == {"k": b"v"}
        await delete_keys(admin)


async def test_a_certificate_of_another_ca_is_refused_at_once(
    tls_server: TlsServer,
) -> None:
    url = tls_server.url(ca=tls_server.certs.other_ca)
    async with RedisStore(url, store_timeout=30) as store:
        with anyio.fail_after(5):  # far below store_timeout: not retried
            with pytest.raises(
                StoreConnectionError, match="not signed by a trusted CA"
            ):
                await store.get_fields("r1", ["k"])


async def test_redis_url_to_the_tls_port_says_so_at_once(
    tls_server: TlsServer,
) -> None:
    url = f"redis://127.0.0.1:{tls_server.tls_port}/0"
    async with RedisStore(url, store_timeout=30) as store:
        with anyio.fail_after(5):  # far below store_timeout: not retried
            with pytest.raises(
                StoreConnectionError, match=r"a TLS port\? then use rediss"
            ):
                await store.get_fields("r1", ["k"])


def test_a_missing_ca_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(StoreConfigError, match=r"cannot read the CA file .*nowhere"):
        RedisStore(f"rediss://127.0.0.1:1/0?ssl_ca_certs={missing}")


def test_a_ca_file_without_a_certificate_is_a_config_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(StoreConfigError, match="holds no PEM certificate"):
        RedisStore(f"rediss://127.0.0.1:1/0?ssl_ca_certs={junk}")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:1/0?ssl_ca_certs=/ca.pem", "must start with rediss://"),
        ("rediss://127.0.0.1:1/0?ssl_verify=no", "unknown option 'ssl_verify'"),
        ("rediss://127.0.0.1:1/0?ssl_ca_certs=", "must name one CA file"),
    ],
)
def test_wrong_tls_options_in_the_url(url: str, message: str) -> None:
    with pytest.raises(StoreConfigError, match=message):
        RedisStore(url)


def test_the_ca_file_shows_in_the_store_url(tls_server: TlsServer) -> None:
    store = RedisStore(tls_server.url("someone"))
    assert store.url == tls_server.url("someone").replace(f":{PASSWORD}", "")


# --------------------------------------------------------------------- ACL
async def test_a_user_without_the_prefix_gets_one_clear_error(
    tls_server: TlsServer, redis_prefix: str
) -> None:
    user = tls_server.user(redis_prefix)  # rights on this prefix only
    other = f"{redis_prefix}-other"
    async with RedisStore(tls_server.url(user), prefix=other) as store:
        with pytest.raises(StorePermissionError) as info:
            await store.set_fields("r1", {"k": b"v"})
    error = info.value
    assert (error.user, error.key_pattern) == (user, f"~{other}:*")
    assert f"ACL user {user!r}" in str(error)
    assert f"needs the keys ~{other}:*" in str(error)
    assert error.command is None  # Redis names no command when it refuses a key
    assert "refused to set fields of run r1" in str(error)


async def test_a_user_without_a_command_gets_one_clear_error(
    tls_server: TlsServer, redis_prefix: str
) -> None:
    rules = [c for c in ACL_COMMANDS if c != "evalsha"]
    user = tls_server.user(
        redis_prefix, f"~{redis_prefix}:*", "+@connection", *(f"+{c}" for c in rules)
    )
    async with RedisStore(tls_server.url(user), prefix=redis_prefix) as store:
        with pytest.raises(StorePermissionError) as info:
            await store.append("r1", "s", 0, 1, b"\x00")
    error = info.value
    assert (error.user, error.command) == (user, "evalsha")
    assert "may not run the 'EVALSHA' command" in str(error)


async def test_a_user_who_may_not_connect_fails_at_once(
    tls_server: TlsServer, redis_prefix: str
) -> None:
    user = tls_server.user(redis_prefix, f"~{redis_prefix}:*", "+@connection")
    url = tls_server.url(user)
    async with RedisStore(url, prefix=redis_prefix, store_timeout=30) as store:
        with anyio.fail_after(5):  # far below store_timeout: not retried
            with pytest.raises(StorePermissionError, match="'INFO' command") as info:
                await store.get_fields("r1", ["k"])
    assert (info.value.user, info.value.command) == (user, "info")


def test_the_seed_example_runs_over_tls_as_a_limited_user(
    tls_server: TlsServer, redis_prefix: str
) -> None:
    user = tls_server.user(redis_prefix)
    run_seed_example(tls_server.url(user), redis_prefix)
    reply = redis_command(tls_server.server.port, "KEYS", f"{redis_prefix}:*")
    assert not reply.startswith(b"*0"), "the run left no keys under its prefix"


def test_the_readme_lists_the_commands_a_user_needs() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    listed = readme.split("ACL SETUSER dg on", 1)[1].split("```", 1)[0].split()
    assert sorted(w[1:] for w in listed if w.startswith("+")) == sorted(
        ["@connection", *ACL_COMMANDS]
    )
