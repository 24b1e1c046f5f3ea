"""Where the Redis store keeps things: the whole key layout in one place.

Every key of one run carries the hash tag ``{<run id>}``, so on a Redis Cluster a
run lives in one slot and the store's Lua scripts may touch several of its keys::

    <prefix>:{<run>}:s:<stream>   Redis Stream of a value stream (one entry per batch)
    <prefix>:{<run>}:c:<stream>   hash of a stream's cursors (reader or group: position)
    <prefix>:{<run>}:w:<stream>   hash of the wake streams of readers blocked on it
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

__all__ = (
    "check_prefix",
    "claims_key",
    "cursors_key",
    "keys_key",
    "meta_key",
    "run_tag",
    "runs_key",
    "stream_key",
    "wake_key",
)


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it can start keys, else raise ``ValueError``.

    A brace in the prefix would become the hash tag of every key and put all runs
    into one cluster slot.
    """
    if not prefix or "{" in prefix or "}" in prefix:
        msg = f"a key prefix must be non-empty and free of braces, got {prefix!r}"
        raise ValueError(msg)
    return prefix


def run_tag(prefix: str, run_id: str) -> str:
    """Return the part shared by every key of a run: ``<prefix>:{<run id>}``.

    Raises:
        ValueError: ``run_id`` is empty or holds a brace (it would break the tag).
    """
    if not run_id or "{" in run_id or "}" in run_id:
        msg = f"a run id must be non-empty and free of braces, got {run_id!r}"
        raise ValueError(msg)
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
