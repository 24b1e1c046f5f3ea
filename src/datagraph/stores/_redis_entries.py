"""Checking what the Redis store reads back: entries Datagraph did not write.

A stream key may have been overwritten, edited by hand or written by another
program. Every entry read is checked against the shape the store writes (id
``<end>-0`` with a positive count, batches that follow on one another, the end
marker last), so a reader gets a ``CorruptDataError`` naming the run and stream,
never a foreign exception and never a silently short stream.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..exceptions import CorruptDataError
from ._base import Batch, Chunk, StreamState
from ._redis_scripts import EntryMark

__all__ = (
    "Parsed",
    "entry_position",
    "foreign_entry",
    "parse_entries",
)


@dataclasses.dataclass(frozen=True, slots=True)
class Parsed:
    """A read script's reply, checked."""

    batch: Batch
    #: ``(start, count, blob key)`` of a last, large batch kept in a key of its
    #: own, to fetch on a connection of its own.
    large: tuple[int, int, bytes] | None = None


def _corrupt(run_id: str, stream: str, entry_id: object, what: str) -> CorruptDataError:
    shown = (
        entry_id.decode(errors="replace") if isinstance(entry_id, bytes) else entry_id
    )
    msg = f"entry {shown} of stream {stream!r} of run {run_id} is corrupt: {what}"
    return CorruptDataError(msg, run_id=run_id, stream=stream)


def foreign_entry(
    entry_id: object, fields: object, run_id: str, stream: str
) -> CorruptDataError:
    """Return the error for an entry with fields Datagraph never writes."""
    names = fields.decode(errors="replace") if isinstance(fields, bytes) else fields
    what = f"it has fields {names!r}, not a batch (n, d) or an end marker (end)"
    return _corrupt(run_id, stream, entry_id, what)


def entry_position(entry_id: bytes, run_id: str, stream: str) -> int:
    """Return the position an entry id stands for (its milliseconds part)."""
    try:
        return int(entry_id.partition(b"-")[0])
    except ValueError:
        raise _corrupt(run_id, stream, entry_id, "its id is not a stream id") from None


def parse_entries(reply: list[Any], offset: int, run_id: str, stream: str) -> Parsed:
    """Turn the read script's flat ``[id, count, data, ...]`` list into a batch.

    The triples start at ``reply[offset]``; a negative count is an ``EntryMark``.
    The values before a corrupt entry are returned first; a read from there raises.

    Raises:
        CorruptDataError: the first entry is not one Datagraph wrote.
    """
    chunks: list[Chunk] = []
    final: StreamState | None = None
    for i in range(offset, len(reply), 3):
        entry_id, raw, data = reply[i], reply[i + 1], reply[i + 2]
        try:
            stop = entry_position(entry_id, run_id, stream)
            if final is not None:
                raise _corrupt(run_id, stream, entry_id, "it follows the end marker")
            if raw == EntryMark.FOREIGN:
                raise foreign_entry(entry_id, data, run_id, stream)
            if raw in (EntryMark.END, EntryMark.FAILED_END):
                if chunks and chunks[-1].stop != stop:
                    what = (
                        f"the stream ends at {stop} after values up to "
                        f"{chunks[-1].stop}"
                    )
                    raise _corrupt(run_id, stream, entry_id, what)
                final = StreamState(
                    stop, True, data if raw == EntryMark.FAILED_END else None
                )
                continue
            count = _count(raw, stop, run_id, stream, entry_id)
            if chunks and chunks[-1].stop != stop - count:
                what = (
                    f"it holds values {stop - count} to {stop - 1}, but the entry "
                    f"before ends at {chunks[-1].stop}"
                )
                raise _corrupt(run_id, stream, entry_id, what)
        except CorruptDataError:
            if chunks:  # hand out the good values; the next read raises
                return Parsed(Batch(chunks))
            raise
        if isinstance(data, list):  # a large batch: the script names its blob
            return Parsed(Batch(chunks), (stop - count, count, data[0]))
        chunks.append(Chunk(stop - count, count, data))
    return Parsed(Batch(chunks, final))


def _count(raw: object, stop: int, run_id: str, stream: str, entry_id: bytes) -> int:
    try:
        count: int = int(raw)  # type: ignore[call-overload]  # bytes from Redis
    except (TypeError, ValueError):
        what = f"its count {raw!r} is not a number"
        raise _corrupt(run_id, stream, entry_id, what) from None
    if not 0 < count <= stop:
        what = f"its count {count} does not fit its id (values end at {stop})"
        raise _corrupt(run_id, stream, entry_id, what)
    return count
