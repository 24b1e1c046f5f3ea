"""Where the Redis store keeps things: the whole key layout in one place.

Every key of one run carries the hash tag ``{<run id>}``, so on a Redis Cluster a
run lives in one slot and the store's Lua scripts may touch several of its keys::

    <prefix>:{<run>}:s:<stream>   Redis Stream of a value stream (one entry per batch)
    <prefix>:{<run>}:c:<stream>   hash of a stream's cursors (reader or group: position)
    <prefix>:{<run>}:w:<stream>   hash of the wake streams of readers blocked on it
                                  (expires on its own; not in the run's key set)
    <prefix>:{<run>}:t:<stream>   hash of the call tokens of append_at_end and take
    <prefix>:{<run>}:b:<stream>   sorted set of the stream's blobs, by the position
                                  their batch ends at
    <prefix>:{<run>}:v:<stream>:<token>  a blob: the data of one large batch
    <prefix>:{<run>}:meta         hash of the run's metadata fields
    <prefix>:{<run>}:claims       hash of one-shot claims (HSETNX)
    <prefix>:{<run>}:keys         set of the run's keys above, for delete_run
    <prefix>:runs                 sorted set of run ids, scored by first-seen time
    <prefix>:wake:<token>         one event loop's wake stream: writers elsewhere add to
                                  it, and the loop's one XREAD BLOCK wakes its readers
                                  (on a Redis Cluster, a pub/sub channel of that name:
                                  no key, so every script stays in its run's slot)
"""

from __future__ import annotations

import dataclasses
import uuid

from .exceptions import RunNotFoundError, StoreConfigError

__all__ = (
    "StreamKeys",
    "blob_prefix",
    "blobs_key",
    "check_prefix",
    "claims_key",
    "cursors_key",
    "keys_key",
    "meta_key",
    "run_tag",
    "runs_key",
    "stream_key",
    "stream_keys",
    "tokens_key",
    "wake_key",
    "watchers_key",
)


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can start keys, else raise ``StoreConfigError``.

    A brace in the prefix would become the hash tag of every key and put all runs
    into one cluster slot.
    """
    if not prefix or "{" in prefix or "}" in prefix:
        msg = f"a key prefix must be non-empty and free of braces, got {prefix!r}"
        raise StoreConfigError(msg)
    return prefix


def run_tag(prefix: str, run_id: str) -> str:
    """Return the part shared by every key of a run: ``<prefix>:{<run id>}``.

    Raises:
        RunNotFoundError: ``run_id`` is empty or holds a brace (no run has such
            an id, and it would break the tag).
    """
    if not run_id or "{" in run_id or "}" in run_id:
        msg = f"no run {run_id!r}: a run id is non-empty and free of braces"
        raise RunNotFoundError(msg)
    return f"{prefix}:{{{run_id}}}"


def stream_key(prefix: str, run_id: str, stream: str) -> str:
    """Return the key of the Redis Stream that holds a value stream."""
    return f"{run_tag(prefix, run_id)}:s:{stream}"


def cursors_key(prefix: str, run_id: str, stream: str) -> str:
    """Return the key of the hash of a stream's cursors (readers and groups)."""
    return f"{run_tag(prefix, run_id)}:c:{stream}"


def meta_key(prefix: str, run_id: str) -> str:
    """Return the key of the hash of a run's metadata fields."""
    return f"{run_tag(prefix, run_id)}:meta"


def claims_key(prefix: str, run_id: str) -> str:
    """Return the key of the hash of a run's claims."""
    return f"{run_tag(prefix, run_id)}:claims"


def keys_key(prefix: str, run_id: str) -> str:
    """Return the key of the set that lists every other key of a run."""
    return f"{run_tag(prefix, run_id)}:keys"


def runs_key(prefix: str) -> str:
    """Return the key of the index of runs (a sorted set, oldest first)."""
    return f"{prefix}:runs"


def wake_key(prefix: str, token: str) -> str:
    """Return the key that a process writes to interrupt its own blocked XREAD."""
    return f"{prefix}:wake:{token}"


def watchers_key(prefix: str, run_id: str, stream: str) -> str:
    """Return the key of the hash of processes waiting for a stream to change.

    Fields are wake stream keys, values the server time (ms) a registration ends.
    It expires on its own shortly after the last registration, so it is not in the
    run's key set (a blocked read must not index a run that does not exist yet).
    """
    return f"{run_tag(prefix, run_id)}:w:{stream}"


def tokens_key(prefix: str, run_id: str, stream: str) -> str:
    """Return the key of the hash of a stream's call tokens.

    ``append_at_end`` and ``take`` record what each call did under a token of the
    call until the caller has the answer, so a call retried after a lost answer
    is answered the same. In the run's key set.
    """
    return f"{run_tag(prefix, run_id)}:t:{stream}"


def blobs_key(prefix: str, run_id: str, stream: str) -> str:
    """Return the key of the sorted set of a stream's blobs (by batch end)."""
    return f"{run_tag(prefix, run_id)}:b:{stream}"


def blob_prefix(prefix: str, run_id: str, stream: str) -> str:
    """Return the start of the keys of a stream's blobs (a token follows)."""
    return f"{run_tag(prefix, run_id)}:v:{stream}:"


@dataclasses.dataclass(frozen=True, slots=True)
class StreamKeys:
    """The keys a value stream's commands use, worked out once per stream."""

    stream: str
    tracked: bytes  # the stream's key as a session tracks it
    keyset: str
    cursors: str
    watchers: str
    tokens: str
    blobs: str
    blob_prefix: str

    def blob(self) -> str:
        """Return a new key for the data of one large batch."""
        return self.blob_prefix + uuid.uuid4().hex


def stream_keys(prefix: str, run_id: str, stream: str) -> StreamKeys:
    """Return every key of a value stream and the run's key set."""
    key = stream_key(prefix, run_id, stream)
    return StreamKeys(
        stream=key,
        tracked=key.encode(),
        keyset=keys_key(prefix, run_id),
        cursors=cursors_key(prefix, run_id, stream),
        watchers=watchers_key(prefix, run_id, stream),
        tokens=tokens_key(prefix, run_id, stream),
        blobs=blobs_key(prefix, run_id, stream),
        blob_prefix=blob_prefix(prefix, run_id, stream),
    )
