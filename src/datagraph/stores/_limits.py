"""How large one stored value may be: the ``max_value_size`` limit of every store."""

from __future__ import annotations

from ..exceptions import StoreConfigError, ValueTooLargeError

__all__ = ("DEFAULT_MAX_VALUE_SIZE", "check_max_value_size", "value_too_large")

#: A quarter of the 512 MB Redis takes in one argument: the read and append
#: scripts copy an entry once more on the server, and a command this large
#: already takes seconds to travel.
DEFAULT_MAX_VALUE_SIZE = 128 * 1024 * 1024


def check_max_value_size(size: object) -> int:
    """Return ``size`` if it is a valid limit, else raise ``StoreConfigError``."""
    if not (isinstance(size, int) and size > 0):
        msg = f"max_value_size must be a positive number of bytes, got {size!r}"
        raise StoreConfigError(msg)
    return size


def value_too_large(
    run_id: str,
    stream: str,
    count: int,
    size: int,
    limit: int,
    processor: str | None = None,
) -> ValueTooLargeError:
    """Return the error for an entry of ``count`` values encoded in ``size`` bytes."""
    what = "a value" if count == 1 else f"a batch of {count} values"
    who = f"processor {processor!r} wrote " if processor else ""
    msg = (
        f"{who}{what} of {size:,} bytes to stream {stream!r} of run {run_id}, "
        f"over max_value_size ({limit:,} bytes); raise the setting (Redis takes at "
        "most 512 MB in one command) or store large data elsewhere and pass a "
        "reference"
    )
    return ValueTooLargeError(
        msg, run_id=run_id, stream=stream, size=size, limit=limit, processor=processor
    )
