"""The Redis store's Lua scripts: every step that must be atomic on the server.

Each script checks and writes in one step however many processes race (the
design is in ``_redis_writes``, ``_redis_reads`` and ``_redis_sessions``). They
touch only the keys they are given, all of one run, plus, on a standalone server,
the wake streams of other processes (which a standalone server allows). The
cluster's variant touches only the keys it is given, all in the run's slot: it
wakes other processes by ``PUBLISH`` on their wake channels, which names no key.

The scripts are the ``.lua`` files beside this module (``stores/lua/``, shipped
as package data); each script runs as ``lib.lua`` followed by its own file. The
numbers Python and Lua share are placeholders there, ``$NAME``: the limits below
and the status codes that open the scripts' replies (``AppendStatus``, ...,
as ``$APPEND_HELD`` and so on). This module fills them in once, when it is
imported, and checks them then: a placeholder without a value, or a ``$`` that
starts none, fails the import naming the file and line, rather than the first
time the script runs.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib.resources
import re
from typing import TYPE_CHECKING, Any

from ..exceptions import StoreError
from ._glide import Script

if TYPE_CHECKING:
    from collections.abc import Mapping
    from importlib.resources.abc import Traversable

__all__ = (
    "READ_BYTES",
    "READ_COUNT",
    "WAKE_COUNT",
    "WATCH_TTL_MS",
    "AppendStatus",
    "EntryMark",
    "ReadStatus",
    "Scripts",
    "TakeStatus",
    "fill",
    "placeholders",
    "script_sources",
    "unexpected_reply",
)

#: Most entries (batches) one read returns, and the size at which it stops adding
#: more: a reader's memory stays bounded when batches are large.
READ_COUNT = 512
READ_BYTES = 8 * 1024 * 1024
#: How long a blocked reader's registration in a stream's watchers hash lasts.
WATCH_TTL_MS = 30_000
#: Entries a wake stream keeps, and most one XREAD returns: a reply this long may
#: have lost older entries, so it wakes every reader of the loop.
WAKE_COUNT = 64
#: How long a process's wake stream outlives its last use (it is tiny).
WAKE_TTL_MS = 3_600_000


class AppendStatus(enum.IntEnum):
    """What ``append.lua`` and ``append_at_end.lua`` did: their reply's first item."""

    WRITTEN = 0  # the batch is appended (or held nothing to append)
    HELD = 1  # the stream already holds these positions (a re-run wrote them)
    ENDED = 2  # the stream has ended: nothing is written
    GAP = 3  # the batch starts past the stream's length: nothing is written


class TakeStatus(enum.IntEnum):
    """What ``take.lua`` found: its reply's first item, which fixes the rest."""

    NOTHING = 0  # {cursor, length}: nothing to take yet
    TAKEN = 1  # {start, stop, entry end, count, data, fresh}: a share
    ALL_TAKEN = 2  # {cursor, length, has_error, error}: ended, all taken
    FOREIGN = 3  # {entry id, field names}: the next entry is not Datagraph's
    LOST = 4  # {start, stop}: a retried call's share was trimmed since


class ReadStatus(enum.IntEnum):
    """What ``read.lua`` found: its reply's first item, which fixes the rest."""

    ENTRIES = 0  # {fresh, id, count, data, ...}: entries in triples
    WAITING = 1  # {fresh, length}: nothing new, and the stream has not ended


class EntryMark(enum.IntEnum):
    """Counts in a read reply's triples that mark entries other than batches."""

    END = -1  # the end marker (data '')
    FAILED_END = -2  # the end marker with a failure (data: the failure)
    FOREIGN = -9  # an entry Datagraph did not write (data: its field names)


#: Each enum's placeholders are ``$<prefix>_<member>``.
_CODES: dict[str, type[enum.IntEnum]] = {
    "APPEND": AppendStatus,
    "TAKE": TakeStatus,
    "READ": ReadStatus,
    "ENTRY": EntryMark,
}
#: The scripts the store runs, each ``lib.lua`` + ``<name>.lua``.
_NAMES = (
    "append",
    "append_at_end",
    "claim",
    "end_stream",
    "read",
    "reopen",
    "set_fields",
    "state",
    "take",
    "trim",
)
_PLACEHOLDER = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_STRAY = re.compile(r"\$(?![A-Za-z_])")
_LUA = importlib.resources.files(__package__) / "lua"


def placeholders() -> dict[str, str]:
    """Return the value of every placeholder the scripts may use."""
    values = {
        "READ_COUNT": str(READ_COUNT),
        "READ_BYTES": str(READ_BYTES),
        "WATCH_TTL_MS": str(WATCH_TTL_MS),
        "WAKE_COUNT": str(WAKE_COUNT),
        "WAKE_TTL_MS": str(WAKE_TTL_MS),
    }
    for prefix, codes in _CODES.items():
        for code in codes:
            name = f"{prefix}_{code.name}"
            assert name not in values, f"two placeholders named {name}"
            values[name] = str(int(code))
    return values


def unexpected_reply(reply: object, *, script: str) -> StoreError:
    """Return the error for a reply that ``lua/<script>.lua`` never gives."""
    msg = f"the Redis store's {script} script gave a reply it never gives: {reply!r}"
    return StoreError(msg)


def fill(text: str, values: Mapping[str, str], source: str) -> str:
    """Return ``text`` with every ``$NAME`` replaced by ``values[NAME]``.

    Raises:
        StoreError: a placeholder has no value, or a ``$`` starts none; the
            message names ``source`` and the line.
    """

    def fail(offset: int, what: str) -> StoreError:
        line = text.count("\n", 0, offset) + 1
        return StoreError(f"Lua script {source}, line {line}: {what}")

    for found in _PLACEHOLDER.finditer(text):
        if found.group(1) not in values:
            known = ", ".join(f"${name}" for name in sorted(values))
            msg = f"unknown placeholder ${found.group(1)} (known: {known})"
            raise fail(found.start(), msg)
    if stray := _STRAY.search(text):
        raise fail(stray.start(), "a '$' that starts no placeholder name")
    return _PLACEHOLDER.sub(lambda found: values[found.group(1)], text)


def _load(root: Traversable, name: str, values: Mapping[str, str]) -> str:
    try:
        text = (root / name).read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"cannot read Lua script lua/{name} of the Redis store: {exc}"
        raise StoreError(msg) from exc
    return fill(text, values, f"lua/{name}")


def script_sources(*, cluster: bool, root: Traversable = _LUA) -> dict[str, str]:
    """Return the whole text of each script, by name, its placeholders filled.

    Args:
        cluster: the variant for a Redis Cluster (wakes by PUBLISH, see
            ``notify`` in ``lib.lua``).
        root: the folder of the ``.lua`` files.

    Raises:
        StoreError: a file is missing, or a placeholder in it is unknown.
    """
    values = placeholders()
    wake = "wake_channel.lua" if cluster else "wake_stream.lua"
    values["NOTIFY_WAKE"] = _load(root, wake, values).rstrip()
    lib = _load(root, "lib.lua", values)
    return {name: lib + _load(root, f"{name}.lua", values) for name in _NAMES}


@dataclasses.dataclass(frozen=True, slots=True)
class Scripts:
    """The store's scripts, registered with glide (one set per variant)."""

    append: Any  # glide's Script, which glide leaves untyped
    append_at_end: Any
    claim: Any
    end_stream: Any
    read: Any
    reopen: Any
    set_fields: Any
    state: Any
    take: Any
    trim: Any

    @classmethod
    def load(cls, *, cluster: bool) -> Scripts:
        """Load, check and register the scripts of one variant."""
        sources = script_sources(cluster=cluster)
        return cls(**{name: _script(code) for name, code in sources.items()})

    @staticmethod
    def get(*, cluster: bool = False) -> Scripts:
        """Return the scripts for a standalone server or for a Redis Cluster."""
        return _CLUSTER if cluster else _STANDALONE


def _script(code: str) -> Any:
    return Script(code)  # type: ignore[no-untyped-call]  # glide leaves it untyped


# Once, at import: a broken script fails here, not in the middle of a run.
_STANDALONE = Scripts.load(cluster=False)
_CLUSTER = Scripts.load(cluster=True)
