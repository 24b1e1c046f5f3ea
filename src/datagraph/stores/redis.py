"""The Redis/Valkey store: run data shared by every process that can reach a server.

``RedisStore`` is made of parts, one concept each:

- ``_redis_url``: the URL forms and how they parse;
- ``_redis_connection``: settings, clients, and ``_call``, which retries a command
  and turns glide's errors into Datagraph's;
- ``_redis_sessions``: one session per event loop, and how a blocked read is woken
  (wake streams, or pub/sub channels on a Redis Cluster);
- ``_redis_blobs``: large batches, kept in keys of their own;
- ``_redis_writes`` and ``_redis_reads``: the value streams;
- ``_redis_scripts`` and ``lua/*.lua``: every step that must be atomic, as Lua
  scripts checked when the store is imported;
- ``_redis_entries`` (checking what is read back) and ``_redis_access`` (TLS and
  ACL);
- this module: the store itself, with the run's metadata fields, claims and the
  index of runs.

Every key name is in ``datagraph._keys``.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from .. import _keys
from ._base import Store
from ._glide import Batch as GlideBatch
from ._glide import ClusterBatch
from ._redis_reads import RedisStreamReads
from ._redis_writes import RedisStreamWrites

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ("RedisStore",)


class RedisStore(RedisStreamWrites, RedisStreamReads, Store):
    """Keep run data in Redis (>= 7.0) or Valkey (>= 7.2), shared by many processes.

    Connects on first use, inside the running event loop, and again from any other
    event loop the store is later used in (asyncio or trio). Every write refreshes
    the expiry of the keys it touches, so a run's data is deleted ``retention``
    seconds after it was last written.

    A command that gets no answer (the server is stalled, restarting or out of
    reach) is retried until ``store_timeout`` seconds have passed since it was
    first sent, then ``StoreConnectionError`` is raised. Every command is safe to
    send twice: appends are idempotent by position, and the calls that are not
    (``append_at_end``, ``take``, ``claim``) carry a token that lets the server
    answer a retry the way it answered the first attempt. A first connection that
    is refused, names an unknown host or fails to log in fails at once.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``; ``rediss://`` for TLS,
            then ``?ssl_ca_certs=<path>`` to trust the CA in that file.
            A Redis Cluster: ``redis+cluster://[[user]:password@]host[:port]
            [,host[:port]...]`` naming any of its nodes (``rediss+cluster://``
            for TLS); glide's cluster client finds the others.
        prefix: first part of every key, to share a server between applications.
        retention: seconds that run data outlives its last write.
        store_timeout: seconds a command is retried before the server counts as
            unreachable.
        command_timeout: seconds one attempt of a small command may take; one
            carrying more than 1 MiB gets ``max_value_size / 16 MiB/s`` more.
        max_value_size: largest entry (encoded batch) in bytes; larger appends
            raise ``ValueTooLargeError``.
        client_log_level: level of glide's own log lines (``off``, ``error``,
            ``warn``, ``info``, ``debug``); ignored once glide's ``Logger`` is set
            up, by the application or by an earlier store.

    ``aclose()`` (or leaving ``async with``) closes every connection; a closed
    store may not be used again (a later call raises ``StoreConnectionError``).

    Raises:
        StoreConfigError: ``url`` is not one of the forms above, or names a CA
            file that cannot be read (also a ``ValueError``).
        ValueError: another argument is not valid.
    """

    async def set_fields(self, run_id: str, fields: Mapping[str, bytes]) -> None:
        """Set metadata fields of a run (HSET); see ``Store.set_fields``."""
        if not fields:
            return
        args: list[str | bytes] = [self._ttl_ms]
        for name, value in fields.items():
            args += (name, value)
        keys = [
            _keys.meta_key(self.prefix, run_id),
            _keys.keys_key(self.prefix, run_id),
        ]
        fresh = await self._call(
            f"set fields of run {run_id}",
            lambda client: client.invoke_script(
                self._scripts.set_fields, keys=keys, args=args
            ),
            run_id=run_id,
            size=sum(len(value) for value in fields.values()),
        )
        if fresh:
            await self._index(run_id)

    async def get_fields(
        self, run_id: str, names: Sequence[str] | None = None
    ) -> dict[str, bytes]:
        """Return metadata fields of a run; see ``Store.get_fields``."""
        key = _keys.meta_key(self.prefix, run_id)
        operation = f"get fields of run {run_id}"
        if names is None:
            found = await self._call(
                operation, lambda client: client.hgetall(key), run_id=run_id
            )
            return {name.decode(): value for name, value in found.items()}
        if not names:
            return {}
        wanted = list(names)
        values = await self._call(
            operation, lambda client: client.hmget(key, wanted), run_id=run_id
        )
        return {n: v for n, v in zip(wanted, values, strict=True) if v is not None}

    async def delete_fields(self, run_id: str, names: Sequence[str]) -> None:
        """Remove metadata fields of a run (HDEL); see ``Store.delete_fields``."""
        if not names:
            return
        key, wanted = _keys.meta_key(self.prefix, run_id), list(names)
        await self._call(
            f"delete fields of run {run_id}",
            lambda client: client.hdel(key, wanted),
            run_id=run_id,
        )

    async def claim(self, run_id: str, name: str) -> bool:
        """Claim ``name`` within a run (HSETNX); see ``Store.claim``.

        The claim records the winner's token, so a winner whose answer was lost
        still wins when its call is retried.
        """
        keys = [
            _keys.claims_key(self.prefix, run_id),
            _keys.keys_key(self.prefix, run_id),
        ]
        args = [self._ttl_ms, name, uuid.uuid4().hex]
        won, _ = await self._write(
            f"claim {name!r} in run {run_id}",
            self._scripts.claim,
            keys,
            args,
            run_id=run_id,
        )
        return bool(won)

    # -- runs --------------------------------------------------------------------
    async def list_runs(self) -> list[str]:
        """Return the ids of the runs in the store, oldest first.

        Runs whose data has expired are dropped from the index on the way.
        """
        runs_key = _keys.runs_key(self.prefix)
        found = await self._call(
            "list runs",
            lambda client: client.custom_command(["ZRANGE", runs_key, "0", "-1"]),
        )
        run_ids = [run_id.decode() for run_id in found or ()]
        if not run_ids:
            return []
        # Not atomic: on a cluster, glide sends each node the keys it holds.
        check = (ClusterBatch if self.address.cluster else GlideBatch)(is_atomic=False)
        for run_id in run_ids:
            check.exists([_keys.keys_key(self.prefix, run_id)])
        alive = await self._call(
            "list runs", lambda client: client.exec(check, raise_on_error=True)
        )
        expired = [r for r, n in zip(run_ids, alive, strict=True) if not n]
        if expired:
            await self._call("list runs", lambda client: client.zrem(runs_key, expired))
        return [r for r, n in zip(run_ids, alive, strict=True) if n]

    async def delete_run(self, run_id: str) -> None:
        """Delete every stream, field and claim of a run; see ``Store.delete_run``."""
        keys_key = _keys.keys_key(self.prefix, run_id)
        operation = f"delete run {run_id}"
        session = await self._session()
        # What this loop knows of the run's streams (lengths, cursors) goes too:
        # a run started afresh under the same id begins at position 0 again.
        session.forget(_keys.run_tag(self.prefix, run_id).encode() + b":")
        members = await self._call(
            operation, lambda client: client.smembers(keys_key), run_id=run_id
        )
        doomed = [
            *members,
            keys_key,
            _keys.meta_key(self.prefix, run_id),
            _keys.claims_key(self.prefix, run_id),
        ]
        await self._call(operation, lambda client: client.delete(doomed))
        await self._call(
            operation,
            lambda client: client.zrem(_keys.runs_key(self.prefix), [run_id]),
        )
