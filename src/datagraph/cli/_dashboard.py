"""``datagraph dashboard`` and ``datagraph version``."""

from __future__ import annotations

import contextlib
import importlib
import sys
from typing import Annotated

import typer

from ._common import (
    Backend,
    BackendOption,
    CliError,
    RedisUrlOption,
    is_cancellation,
    make_supervisor,
    reported_errors,
    stderr_console,
    unwrap,
)

__all__ = ("dashboard", "version")


def dashboard(
    host: Annotated[
        str, typer.Option("--host", help="Interface to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")
    ] = 8000,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            metavar="NAME",
            help="Also answer requests for this host name (repeatable); by "
            "default only 127.0.0.1, localhost, [::1] and --host are answered, "
            "which keeps web pages from reading the dashboard by DNS rebinding.",
            show_default=False,
        ),
    ] = None,
    redis_url: RedisUrlOption = None,
    backend: BackendOption = Backend.asyncio,
) -> None:
    """Serve the web dashboard: the runs in the store, live, in a browser."""
    with reported_errors():
        try:
            module = importlib.import_module("datagraph.dashboard")
        except ModuleNotFoundError as exc:
            if exc.name in ("datagraph.dashboard", None):
                msg = (
                    "the dashboard is not available: this installation of Datagraph "
                    "has no datagraph.dashboard module"
                )
            else:
                msg = (
                    f"the dashboard needs {exc.name!r}, which is not installed; "
                    "install it with pip install 'datagraph[dashboard]'"
                )
            raise CliError(msg) from exc
        except ImportError as exc:
            msg = f"cannot load the dashboard: {type(exc).__name__}: {exc}"
            raise CliError(msg) from exc
        supervisor = make_supervisor(redis_url)
        if not redis_url:
            stderr_console().print(
                "No --redis-url: the dashboard shows the runs of an in-memory store "
                "of its own",
                style="yellow",
                markup=False,
            )
        try:
            module.serve(
                supervisor,
                host=host,
                port=port,
                backend=backend.value,
                allowed_hosts=tuple(allow_host or ()),
            )
        except BaseException as exc:  # Ctrl+C may surface as a cancellation
            stopped = unwrap(exc)
            if not (isinstance(stopped, KeyboardInterrupt) or is_cancellation(stopped)):
                raise


def version() -> None:
    """Print the version of Datagraph and of the libraries it runs on."""
    from importlib import metadata

    from .. import __version__

    parts = [f"datagraph {__version__}"]
    for dist in ("anyio", "trio", "valkey-glide"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            parts.append(f"{dist} {metadata.version(dist)}")
    parts.append(f"python {sys.version.split()[0]}")
    typer.echo(", ".join(parts))
