"""Tasks that outlive the call that starts them, on asyncio and on trio.

The seed API starts runs without a task group (``await start_flow(...)`` returns
while processors keep running), so processors and merge pumps run as tasks of the
event loop itself: asyncio tasks, or trio system tasks. Both are cancelled when the
loop shuts down. The functions passed here must not raise: they report their own
errors.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import sniffio

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable

__all__ = ("spawn",)

logger = logging.getLogger("datagraph")
_asyncio_tasks: set[asyncio.Task[None]] = set()  # strong references until done


async def _guarded(func: Callable[[], Awaitable[None]]) -> None:
    try:
        await func()
    except Exception:
        # A bug in Datagraph, not in user code (that is caught and recorded
        # long before); never let it crash the whole trio run.
        logger.exception("datagraph background task %r crashed", func)


def spawn(func: Callable[[], Awaitable[None]]) -> None:
    """Run ``func()`` in the background of the current event loop."""
    if sniffio.current_async_library() == "trio":
        import trio

        trio.lowlevel.spawn_system_task(_guarded, func)
    else:
        import asyncio

        task = asyncio.get_running_loop().create_task(_guarded(func))
        _asyncio_tasks.add(task)
        task.add_done_callback(_asyncio_tasks.discard)
