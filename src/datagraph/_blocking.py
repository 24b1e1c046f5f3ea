"""``BlockingIO``: the view of a stream that sync implementations read in a thread."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._threads import ThreadCancelled, call_from_thread

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .io import IO

__all__ = ("BlockingIO",)

T = TypeVar("T")
_MISSING: Any = object()


class BlockingIO(Generic[T]):
    """A stream read handle for sync implementations, which run in worker threads.

    Annotate an input of a sync function or generator as ``BlockingIO[T]`` (or
    ``IO[T]``); its methods block the worker thread, never the event loop.
    """

    __slots__ = ("io",)

    def __init__(self, io: IO[T]) -> None:
        #: The asynchronous handle this view reads through.
        self.io = io

    @property
    def name(self) -> str:
        """The stream's name."""
        return self.io.name

    def __repr__(self) -> str:
        return f"<BlockingIO {self.io.name!r} of run {self.io.run_id}>"

    def stream(self) -> Iterator[T]:
        """Yield every value of the stream as soon as it is written.

        The thread waits for a stored batch at a time, not for each value.
        """
        chunks = self.io.chunks()  # closed by the runtime too, if left open

        async def next_chunk() -> list[T] | None:
            return await anext(chunks, None)

        try:
            while True:
                values = call_from_thread(next_chunk)
                if values is None:
                    return
                yield from values
        finally:
            with contextlib.suppress(ThreadCancelled):  # then the runtime closes it
                call_from_thread(chunks.aclose)

    def __iter__(self) -> Iterator[T]:
        return self.stream()

    def first(self, default: Any = _MISSING) -> T:
        """Return the stream's first value (see ``IO.first``)."""
        args = () if default is _MISSING else (default,)
        result: T = call_from_thread(self.io.first, *args)
        return result

    def collect(self) -> list[T]:
        """Wait for the stream to end and return all its values."""
        return call_from_thread(self.io.collect)

    def is_complete(self) -> bool:
        """Tell whether the stream has ended."""
        return call_from_thread(self.io.is_complete)
