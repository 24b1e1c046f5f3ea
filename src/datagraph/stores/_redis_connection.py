"""How the Redis store talks to its server: settings, clients, and retried commands.

Every command goes through ``RedisConnection._call``, the one place that turns
glide's errors into Datagraph's: it retries a command that got no answer (the
server stalled, restarting or out of reach) until ``store_timeout`` has passed,
and names what went wrong otherwise (a refused login, an ACL that denies a
command, data of another shape than Datagraph wrote). A first connection that is
refused, names an unknown host or fails to log in fails at once: far likelier a
wrong URL than a restart.

Clients belong to the event loop that made them, so each loop the store is used
in has a session of its own (``_redis_sessions``).
"""

from __future__ import annotations

import math
import re
import threading
import time
from typing import TYPE_CHECKING, Any, Self

import anyio

from .. import _keys
from .._wakeups import clock, current_loop
from ..exceptions import (
    CorruptDataError,
    StoreConfigError,
    StoreConnectionError,
    StoreError,
)
from ._glide import (
    AdvancedGlideClientConfiguration,
    AdvancedGlideClusterClientConfiguration,
    BackoffStrategy,
    ClosingError,
    GlideClientConfiguration,
    GlideClusterClientConfiguration,
    GlideConnectionError,
    GlideError,
    GlideLogger,
    GlideTimeoutError,
    LogLevel,
    NodeAddress,
    ServerCredentials,
)
from ._limits import DEFAULT_MAX_VALUE_SIZE, check_max_value_size
from ._redis_access import denied, is_denied, tls_config
from ._redis_scripts import Scripts
from ._redis_sessions import RETRY_FIRST_S, RETRY_MAX_S, Session, loop_finished
from ._redis_url import parse_url

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from glide import PubSubMsg

__all__ = ("BULK_BYTES", "RedisConnection")

_DEFAULT_URL = "redis://localhost:6379/0"
_DEFAULT_RETENTION = 7 * 24 * 3600.0
_DEFAULT_STORE_TIMEOUT = 60.0
_DEFAULT_COMMAND_TIMEOUT = 5.0
_LOG_LEVELS = {
    "off": LogLevel.OFF,
    "error": LogLevel.ERROR,
    "warn": LogLevel.WARN,
    "info": LogLevel.INFO,
    "debug": LogLevel.DEBUG,
}
#: Streams whose keys a store remembers (it forgets them all past that).
_KEYS_CACHED = 4096
#: Entries with more data than this travel on connections of their own (one per
#: command in flight), each allowed time in proportion to ``max_value_size``: a
#: large command neither waits behind nor delays the small ones of other runs.
BULK_BYTES = 1024 * 1024
#: The slowest transfer rate a large command is given time for (bytes/s).
_SLOWEST_RATE = 16 * 1024 * 1024
#: Longest wait to open a connection (glide's default is 2 s).
_CONNECT_TIMEOUT_MS = 1_000


#: What glide says when a first connection fails, and what Datagraph says then.
_CONNECT_FAILURES = (
    ("refused", "connection refused (is the server running, on this port?)"),
    ("lookup address", "unknown host"),
    ("name or service not known", "unknown host"),
    ("wrongpass", "authentication failed (wrong user name or password)"),
    ("noauth", "authentication failed (the server wants a password)"),
    ("auth", "authentication failed"),
    (
        "unknownissuer",
        "TLS: the server's certificate is not signed by a trusted CA "
        "(name its CA file: rediss://...?ssl_ca_certs=<path>)",
    ),
    ("invalid peer certificate", "TLS: the server's certificate was refused"),
    # What a TLS port does to a client that does not speak TLS.
    (
        "unexpectedly terminated",
        "the server closed the connection at once (a TLS port? then use rediss://)",
    ),
)


def _connect_failure(exc: Exception) -> str | None:
    """Say why a connection failed for good (refused, unknown host, login), if so."""
    detail = str(exc).lower()
    for needle, reason in _CONNECT_FAILURES:
        if needle in detail:
            return reason
    return None


#: Server errors that pass: retried like a stalled server (loading its data after
#: a restart, busy with a long script, a replica promoted, a cluster healing).
_TRANSIENT = re.compile(r"\b(LOADING|BUSY|TRYAGAIN|MASTERDOWN|READONLY|CLUSTERDOWN)\b")
#: Errors of a script that met data of another shape than it wrote: a key of
#: another type, or Lua tripping on a field (arithmetic on nil, ...).
_FOREIGN_DATA = re.compile(r"WRONGTYPE|user_script:\d+: (attempt to|bad argument)")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class RedisConnection:
    """The plumbing of ``RedisStore``: its settings, sessions and ``_call``.

    See ``RedisStore`` for the arguments.

    Raises:
        ValueError: an argument is not valid (``StoreConfigError`` for the URL).
    """

    def __init__(
        self,
        url: str = _DEFAULT_URL,
        *,
        prefix: str = "dg",
        retention: float = _DEFAULT_RETENTION,
        store_timeout: float = _DEFAULT_STORE_TIMEOUT,
        command_timeout: float = _DEFAULT_COMMAND_TIMEOUT,
        max_value_size: int = DEFAULT_MAX_VALUE_SIZE,
        client_log_level: str = "off",
    ) -> None:
        for name, value in (
            ("retention", retention),
            ("store_timeout", store_timeout),
            ("command_timeout", command_timeout),
        ):
            if not value > 0:
                msg = f"{name} must be a positive number of seconds, got {value!r}"
                raise StoreConfigError(msg)
        self.address = parse_url(url)
        self._tls = tls_config(self.address.ca_file)
        self.prefix = _keys.check_prefix(prefix)
        self.retention = retention
        self.store_timeout = float(store_timeout)
        self.command_timeout = float(command_timeout)
        self.max_value_size = check_max_value_size(max_value_size)
        _quiet_client_log(client_log_level)
        self._ttl_ms = str(max(1, math.ceil(retention * 1000)))
        self._timeout_ms = max(1, math.ceil(command_timeout * 1000))
        self._bulk_timeout_ms = self._timeout_ms + math.ceil(
            1000 * self.max_value_size / _SLOWEST_RATE
        )
        self._scripts = Scripts.get(cluster=self.address.cluster)
        self._sessions: dict[object, Session] = {}
        self._sessions_lock = threading.Lock()  # a store may serve loops in threads
        self._closed = False  # by aclose(): no new connections after it
        self._stream_keys: dict[tuple[str, str], _keys.StreamKeys] = {}
        #: Whether any connection ever succeeded: a refused first connection is
        #: far likelier a wrong URL than a restart, so it is not retried.
        self._reached = False

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Self:
        """Create a store for the server at ``url`` (arguments: ``RedisStore``)."""
        return cls(url, **kwargs)

    @property
    def url(self) -> str:
        """The server's URL without the password."""
        return self.address.safe_url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, prefix={self.prefix!r})"

    def _config(
        self,
        name: str,
        timeout_ms: int | None = None,
        on_message: Callable[[PubSubMsg, object], None] | None = None,
    ) -> Any:
        address = self.address
        credentials = None
        if address.password is not None:
            credentials = ServerCredentials(
                password=address.password, username=address.username
            )
        if address.cluster:
            subscriptions = None
            if on_message is not None:  # channels come later, by SUBSCRIBE
                subscriptions = GlideClusterClientConfiguration.PubSubSubscriptions(
                    channels_and_patterns={}, callback=on_message, context=None
                )
            return GlideClusterClientConfiguration(
                [NodeAddress(host, port) for host, port in address.seeds],
                use_tls=address.tls,
                credentials=credentials,
                request_timeout=timeout_ms or self._timeout_ms,
                client_name=name,
                reconnect_strategy=BackoffStrategy(
                    num_of_retries=0, factor=50, exponent_base=2
                ),
                pubsub_subscriptions=subscriptions,
                advanced_config=AdvancedGlideClusterClientConfiguration(
                    connection_timeout=min(_CONNECT_TIMEOUT_MS, self._timeout_ms)
                ),
            )
        return GlideClientConfiguration(
            [NodeAddress(address.host, address.port)],
            use_tls=address.tls,
            credentials=credentials,
            database_id=address.db,
            request_timeout=timeout_ms or self._timeout_ms,
            client_name=name,
            # No retries inside create(): a refused port fails at once. Once
            # connected, glide reconnects by itself without end, every 50 ms.
            reconnect_strategy=BackoffStrategy(
                num_of_retries=0, factor=50, exponent_base=2
            ),
            advanced_config=AdvancedGlideClientConfiguration(
                connection_timeout=min(_CONNECT_TIMEOUT_MS, self._timeout_ms),
                tls_config=self._tls,
            ),
        )

    async def _session(self) -> Session:
        loop = current_loop()
        session = self._sessions.get(loop)  # the usual case: no lock, no await
        if session is not None:
            return session
        with self._sessions_lock:
            if self._closed:
                msg = f"the store for {self.url} was closed (RedisStore.aclose)"
                raise StoreConnectionError(msg)
            session = self._sessions.get(loop)
            finished: list[Session] = []
            if session is None:
                finished = [s for s in self._sessions.values() if loop_finished(s.loop)]
                for s in finished:
                    del self._sessions[s.loop]
                session = self._sessions[loop] = Session(self, loop)
        for stale in finished:
            await stale.close()
        return session

    async def _client(self, operation: str) -> tuple[Session, Any]:
        """Return this loop's session and its connected multiplexed client."""
        session = await self._session()
        client = await self._call(operation, _same)
        return session, client

    async def _call(
        self,
        operation: str,
        command: Callable[[Any], Awaitable[Any]],
        *,
        run_id: str | None = None,
        stream: str | None = None,
        size: int = 0,
    ) -> Any:
        """Run ``command(client)``, retrying it until ``store_timeout`` has passed.

        ``command`` must be safe to run twice (see ``RedisStore``). A command carrying
        more than ``BULK_BYTES`` runs on a connection of its own. After a retry,
        the run (``run_id``) is indexed: the attempt that created its first key
        may have lost its answer, which says so.

        Raises:
            StoreConnectionError: no answer within ``store_timeout``, or a first
                connection failed for good (refused, unknown host, login).
            CorruptDataError: a key of the run holds another type of value.
            StoreError: the server refused the command.
        """
        session = await self._session()
        started = clock()
        delay = RETRY_FIRST_S
        attempts = 0
        while True:
            attempts += 1
            client = None
            try:
                if size > BULK_BYTES:
                    async with session.bulk_client() as bulk:
                        result = await command(bulk)
                else:
                    client = session.client or await session.connect()
                    result = await command(client)
            except GlideError as exc:
                if is_denied(str(exc)):  # the ACL refuses: no retry will help
                    raise self._denied(exc, operation) from None
                transient = isinstance(
                    exc, GlideTimeoutError | GlideConnectionError | ClosingError
                ) or bool(_TRANSIENT.search(str(exc)))
                if not transient:
                    raise self._refused(exc, operation, run_id, stream) from exc
                if client is not None and isinstance(exc, ClosingError):
                    session.discard(client)
                if session.closed:
                    msg = f"the store for {self.url} was closed; cannot {operation}"
                    raise StoreConnectionError(msg) from None
                reason = None if self._reached else _connect_failure(exc)
                if reason is not None:
                    msg = f"cannot reach Redis at {self.url} to {operation}: {reason}"
                    raise StoreConnectionError(msg) from None
                waited = clock() - started
                if waited >= self.store_timeout:
                    msg = (
                        f"cannot reach Redis at {self.url} to {operation}: no answer "
                        f"for {waited:.1f}s (store_timeout is {self.store_timeout:g}s)"
                        f"; last error: {_one_line(exc)}"
                    )
                    raise StoreConnectionError(msg) from exc
                await anyio.sleep(min(delay, self.store_timeout - waited))
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if attempts > 1 and run_id is not None:
                await self._index(run_id)
            return result

    def _refused(
        self, exc: GlideError, operation: str, run_id: str | None, stream: str | None
    ) -> StoreError:
        """Return the store's error for a command the server refused."""
        detail = _one_line(exc)
        if run_id is not None and _FOREIGN_DATA.search(detail):
            what = f"stream {stream!r} of run {run_id}" if stream else f"run {run_id}"
            kind = (
                "a key of it holds another type of value than Datagraph wrote there"
                if "WRONGTYPE" in detail
                else "it holds data Datagraph did not write"
            )
            msg = f"cannot {operation}: {kind} ({what}): {detail}"
            return CorruptDataError(msg, run_id=run_id, stream=stream)
        return StoreError(f"Redis at {self.url} failed to {operation}: {detail}")

    def _denied(self, exc: GlideError, operation: str) -> StoreError:
        address = self.address
        return denied(
            _one_line(exc),
            user=address.username if address.password is not None else None,
            prefix=self.prefix,
            url=self.url,
            operation=operation,
        )

    def _keys_of(self, run_id: str, stream: str) -> _keys.StreamKeys:
        found = self._stream_keys.get((run_id, stream))
        if found is None:
            if len(self._stream_keys) >= _KEYS_CACHED:
                self._stream_keys.clear()
            found = _keys.stream_keys(self.prefix, run_id, stream)
            self._stream_keys[run_id, stream] = found
        return found

    async def _write(
        self,
        operation: str,
        script: Any,  # glide's Script, which glide leaves untyped
        keys: Sequence[str],
        args: Sequence[str | bytes],
        *,
        run_id: str,
        stream: str | None = None,
        size: int = 0,
    ) -> list[Any]:
        """Run a script that writes a run's keys and return its reply.

        The reply's last item says whether the script created the run's first key:
        then the run goes into the index of runs.
        """
        reply: list[Any] = await self._call(
            operation,
            lambda client: client.invoke_script(
                script, keys=list(keys), args=list(args)
            ),
            run_id=run_id,
            stream=stream,
            size=size,
        )
        if reply[-1]:
            await self._index(run_id)
        return reply

    async def _index(self, run_id: str) -> None:
        """Add a run to the index of runs, keeping the time it was first seen."""
        command = ["ZADD", _keys.runs_key(self.prefix), "NX", repr(time.time()), run_id]
        await self._call(
            f"index run {run_id}", lambda client: client.custom_command(command)
        )

    async def aclose(self) -> None:
        """Close the connections; the store may not be used afterwards.

        A later call raises ``StoreConnectionError`` rather than connecting
        again: a connection opened behind the owner's back would never be closed.
        """
        with self._sessions_lock:
            self._closed = True
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()


async def _same(client: Any) -> Any:
    return client


def _quiet_client_log(level: str) -> None:
    """Set glide's log level, unless glide's ``Logger`` is already set up."""
    if level not in _LOG_LEVELS:
        msg = f"client_log_level must be one of {', '.join(_LOG_LEVELS)}, got {level!r}"
        raise StoreConfigError(msg)
    if GlideLogger._instance is None:  # glide has no public check
        GlideLogger.init(_LOG_LEVELS[level])
