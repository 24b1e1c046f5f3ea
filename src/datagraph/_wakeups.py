"""The primitives of the per-value paths: a one-shot wake-up, the clock, a checkpoint.

When values cross a stage one at a time (a paced source, a slow producer), every
value makes a reader wait and a writer wake it. anyio's ``Event``, ``move_on_at``,
``current_time`` and ``checkpoint`` first look the running backend up through
sniffio, and on asyncio that lookup, plus a cancel scope around a timed wait, costs
more than the rest of the hop: about 3 µs for an ``anyio.Event()`` against 0.2 µs
for an ``asyncio.Event()``, and 12 µs for a ``move_on_after`` block. These are the
few primitives the hot paths need, built on the running loop's own: an asyncio
future with a timer handle, or a trio Event. anyio's cancel scopes still apply to
them, as anyio cancels a task through its loop.
"""

from __future__ import annotations

import asyncio

__all__ = ("Wakeup", "checkpoint", "clock", "current_loop", "wakeup")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    # asyncio's own test of "inside a running asyncio loop", without the
    # exception of ``get_running_loop``; anyio runs on asyncio or trio, so
    # None means trio.
    return asyncio.events._get_running_loop()


class Wakeup:
    """A one-shot signal that one task waits for, until it is set or a deadline.

    ``wakeup()`` makes one for the running loop. Setting it again, or after its
    waiter was cancelled or timed out, does nothing.
    """

    __slots__ = ()

    def set(self) -> None:
        """Wake the waiter (now, or as soon as it waits)."""
        raise NotImplementedError

    async def wait(self, deadline: float | None = None) -> bool:
        """Wait until set or until ``clock()`` reaches ``deadline``.

        Returns:
            Whether it was set.
        """
        raise NotImplementedError


class _AsyncioWakeup(Wakeup):
    __slots__ = ("_future", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._future: asyncio.Future[bool] = loop.create_future()

    def set(self) -> None:
        if not self._future.done():
            self._future.set_result(True)

    async def wait(self, deadline: float | None = None) -> bool:
        future = self._future
        if future.done():
            return not future.cancelled() and future.result()
        if deadline is None:
            return await future
        timer = self._loop.call_at(deadline, _time_out, future)
        try:
            return await future
        finally:
            timer.cancel()


def _time_out(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)


class _TrioWakeup(Wakeup):
    __slots__ = ("_event",)

    def __init__(self) -> None:
        import trio

        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self, deadline: float | None = None) -> bool:
        import trio

        if deadline is None:
            await self._event.wait()
        else:
            with trio.move_on_at(deadline):
                await self._event.wait()
        return self._event.is_set()


def wakeup() -> Wakeup:
    """Return a new ``Wakeup`` for the running event loop."""
    loop = _running_loop()
    return _AsyncioWakeup(loop) if loop is not None else _TrioWakeup()


def clock() -> float:
    """Return the running loop's clock, as ``anyio.current_time()`` does."""
    loop = _running_loop()
    if loop is not None:
        return loop.time()
    import trio

    return trio.current_time()


def current_loop() -> object:
    """Return the running event loop, as ``anyio.lowlevel.current_token()`` names it.

    The asyncio loop, or trio's token of the run: what objects bound to one
    event loop (a connection, a future) are kept by.
    """
    loop = _running_loop()
    if loop is not None:
        return loop
    import trio

    return trio.lowlevel.current_trio_token()


async def checkpoint() -> None:
    """Let other tasks run (and a cancellation arrive), as anyio's checkpoint does."""
    if _running_loop() is not None:
        await asyncio.sleep(0)
    else:
        import trio

        await trio.lowlevel.checkpoint()
