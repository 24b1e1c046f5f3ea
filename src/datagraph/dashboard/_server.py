"""Serving the dashboard with Hypercorn, on asyncio or trio.

Hypercorn is the ASGI server here because it has a native trio worker as well as
an asyncio one: a dashboard started from a trio program, or with
``backend="trio"``, runs on trio itself (Uvicorn serves asyncio only).
"""

from __future__ import annotations

import functools
import signal
import socket
from typing import TYPE_CHECKING, Literal, cast

import anyio
import sniffio
from hypercorn.config import Config

from ._app import create_app
from ._hosts import hosts_for

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable

    from hypercorn.typing import Framework

    from ..supervisor import Supervisor

__all__ = ("serve", "serve_async")

Backend = Literal["asyncio", "trio"]


def _listen(host: str, port: int) -> socket.socket:
    """Bind the server's socket here, so a taken port is one plain ``OSError``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        msg = f"cannot serve the dashboard on {where}: {exc.strerror or exc}"
        error = OSError(msg)  # its text is the message alone: one clear line
        error.errno = exc.errno
        raise error from None
    return sock


def _config(sock: socket.socket) -> Config:
    config = Config()
    # Hypercorn takes over the bound socket (and closes it when it stops).
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None  # the page polls: an access line per request is noise
    config.errorlog = "-"  # "Running on http://..." and errors, to stderr
    config.graceful_timeout = 2.0  # open event streams end at once anyway
    return config


async def serve_async(
    supervisor: Supervisor,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    allowed_hosts: Iterable[str] = (),
) -> None:
    """Serve the dashboard on the running event loop (asyncio or trio).

    Returns when ``shutdown_trigger()`` returns (after a graceful shutdown), or
    when cancelled. Runs started in this process with a ``LocalExecutor`` keep
    going beside it, and show live.

    Args:
        supervisor: whose store's runs to show.
        host: the address to listen on; ``"0.0.0.0"`` exposes the dashboard (and
            what runs hold) to the network, without authentication.
        port: the TCP port.
        shutdown_trigger: an async function; when it returns, the server stops.
            Default: run until cancelled.
        allowed_hosts: host names to answer to besides this machine's loopback
            names and ``host`` (see ``create_app``).

    Raises:
        OSError: the address cannot be bound (e.g. the port is taken).
    """
    allowed = hosts_for(host, allowed_hosts)
    await _serve_socket(supervisor, _listen(host, port), shutdown_trigger, allowed)


async def _serve_socket(
    supervisor: Supervisor,
    sock: socket.socket,
    shutdown_trigger: Callable[[], Awaitable[None]] | None,
    allowed_hosts: Iterable[str],
) -> None:
    # Starlette's and Hypercorn's ASGI type hints differ in spelling only.
    app = cast("Framework", create_app(supervisor, allowed_hosts=allowed_hosts))
    config = _config(sock)
    trigger = shutdown_trigger or anyio.sleep_forever
    if sniffio.current_async_library() == "trio":
        from hypercorn.trio import serve as trio_serve

        await trio_serve(app, config, shutdown_trigger=trigger)
    else:
        from hypercorn.asyncio import serve as asyncio_serve

        await asyncio_serve(app, config, shutdown_trigger=trigger)


async def _serve_until_signalled(
    supervisor: Supervisor, host: str, port: int, allowed_hosts: Iterable[str]
) -> None:
    """Serve until SIGINT or SIGTERM: the first stops gracefully, a second at once.

    The signals are caught before the port is bound, so a signal sent as soon as
    the dashboard accepts connections is never lost.
    """
    try:
        receiver = anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
    except NotImplementedError:  # pragma: no cover - asyncio on Windows
        # Ctrl+C raises there.
        await serve_async(supervisor, host=host, port=port, allowed_hosts=allowed_hosts)
        return
    with receiver as signals:
        sock = _listen(host, port)  # a taken port raises here, not in a group
        stop = anyio.Event()

        async def watch() -> None:
            async for _ in signals:
                if stop.is_set():
                    tg.cancel_scope.cancel()
                stop.set()

        async def run() -> None:
            allowed = hosts_for(host, allowed_hosts)
            await _serve_socket(supervisor, sock, stop.wait, allowed)
            tg.cancel_scope.cancel()  # stop watching

        # The server runs in a task of its own: Hypercorn's asyncio task groups
        # can leave their task marked as cancelling, which must not be this one.
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            tg.start_soon(run)


def serve(
    supervisor: Supervisor,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    backend: Backend = "asyncio",
    allowed_hosts: Iterable[str] = (),
) -> None:
    """Serve the dashboard until Ctrl+C (SIGINT) or SIGTERM; blocks.

    Starts an event loop of ``backend`` (call it from synchronous code, such as
    the ``datagraph dashboard`` command); from async code use ``serve_async()``.
    The address is logged to stderr (``Running on http://127.0.0.1:8000``). Call
    it from the main thread: that is where signals arrive.

    Args:
        supervisor: whose store's runs to show.
        host: the address to listen on (default: this machine only).
        port: the TCP port.
        backend: ``"asyncio"`` or ``"trio"`` (needs the ``trio`` extra).
        allowed_hosts: host names to answer to besides this machine's loopback
            names and ``host`` (``datagraph dashboard --allow-host``); requests
            naming any other host get a 400 (DNS rebinding).

    Raises:
        OSError: the address cannot be bound (e.g. the port is taken).
    """
    hosts = tuple(allowed_hosts)
    run = functools.partial(_serve_until_signalled, supervisor, host, port, hosts)
    anyio.run(run, backend=backend)
