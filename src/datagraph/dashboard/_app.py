"""The dashboard's ASGI app: a JSON API over a supervisor's store, and one page."""

from __future__ import annotations

import json
import math
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..exceptions import (
    CorruptRunError,
    RunNotFoundError,
    StoreConnectionError,
    StoreError,
)
from ..run import CorruptRun
from . import _model
from ._hosts import HostCheck, hosts_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

    from starlette.requests import Request

    from ..run import Run
    from ..supervisor import Supervisor

__all__ = ("create_app",)

STATIC = Path(__file__).parent / "static"

#: How often the events endpoint sends a snapshot, by default and at the extremes.
DEFAULT_INTERVAL = 1.0
_INTERVAL_RANGE = (0.1, 30.0)
#: Runs listed at most, newest first (``?limit=`` up to this).
MAX_RUNS = 500


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


class _Api:
    """The endpoints, sharing one supervisor and one rate tracker."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.rates = _model.RateTracker()

    async def _run(self, request: Request) -> Run:
        """Return the run the path names; 404 when the store does not hold it."""
        run_id = request.path_params["run_id"]
        try:
            run = await self.supervisor.get_run(run_id)
            # The supervisor remembers plans: make sure the run is still there.
            await run.created()
        except RunNotFoundError:
            raise HTTPException(404, f"no run {run_id!r} in the store") from None
        return run

    async def _detail(self, run: Run) -> dict[str, Any]:
        """Return the run's details.

        Raises:
            RunNotFoundError: the run was deleted (or expired).
        """
        snapshot = self.rates.add(await run.snapshot())
        return _model.run_detail(run, snapshot)

    async def meta(self, request: Request) -> Response:
        return JSONResponse(_model.meta())

    async def runs(self, request: Request) -> Response:
        try:
            limit = int(request.query_params.get("limit", MAX_RUNS))
        except ValueError:
            return _error(400, "limit must be a whole number")
        limit = max(0, min(limit, MAX_RUNS))
        created: dict[str, float | None] = {}
        runs = []
        for run in await self.supervisor.list_runs():
            try:
                created[run.id] = await run.created()
            except RunNotFoundError:
                if not isinstance(run, CorruptRun):
                    continue  # deleted since it was listed
                created[run.id] = None
            except StoreConnectionError:
                raise
            except StoreError:  # its record is unreadable: listed all the same
                created[run.id] = None
            runs.append(run)
        # Newest first; a run with no recorded start time goes last.
        runs.sort(key=lambda r: created[r.id] or -math.inf, reverse=True)
        listed = [
            {
                "id": run.id,
                "created": created[run.id],
                "status": await run.status(),
                "processors": len(run.plan.processors),
                "error": str(run.error) if isinstance(run, CorruptRun) else None,
            }
            for run in runs[:limit]
        ]
        return JSONResponse({"runs": listed, "total": len(runs)})

    async def run(self, request: Request) -> Response:
        run = await self._run(request)
        try:
            return JSONResponse(await self._detail(run))
        except RunNotFoundError:
            raise HTTPException(404, f"no run {run.id!r} in the store") from None

    async def events(self, request: Request) -> Response:
        """Send the run's details as server-sent events until the run finishes.

        Each ``snapshot`` event holds what ``GET /api/runs/{id}`` returns, from
        ``Run.follow()``; an ``end`` event follows the first snapshot of the
        finished run (as soon as it finishes), and the response ends.
        """
        try:
            interval = float(request.query_params.get("interval", DEFAULT_INTERVAL))
        except ValueError:
            return _error(400, "interval must be a number of seconds")
        if not math.isfinite(interval):
            return _error(400, "interval must be a number of seconds")
        interval = min(max(interval, _INTERVAL_RANGE[0]), _INTERVAL_RANGE[1])
        run = await self._run(request)

        async def stream() -> AsyncIterator[str]:
            # Tells EventSource how long to wait before reconnecting (ms).
            yield f"retry: {round(max(interval, 1.0) * 1000)}\n\n"
            while True:  # again after an error of the store, which may pass
                try:
                    follow = run.follow(interval=interval, window=self.rates.window)
                    async with aclosing(follow) as snapshots:
                        async for snapshot in snapshots:
                            detail = _model.run_detail(run, snapshot)
                            yield f"event: snapshot\ndata: {_dumps(detail)}\n\n"
                    yield "event: end\ndata: {}\n\n"
                    return
                except RunNotFoundError:
                    gone = f"no run {run.id!r} in the store (deleted)"
                    yield f"event: failure\ndata: {_dumps({'error': gone})}\n\n"
                    return
                except CorruptRunError as exc:
                    yield f"event: failure\ndata: {_dumps({'error': str(exc)})}\n\n"
                    return
                except StoreError as exc:
                    error = f"the store cannot be read: {exc}"
                    yield f"event: failure\ndata: {_dumps({'error': error})}\n\n"
                await anyio.sleep(interval)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


async def _index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.startswith(f"{request.scope.get('root_path', '')}/api/"):
        return _error(exc.status_code, exc.detail)
    return Response(exc.detail, status_code=exc.status_code, media_type="text/plain")


async def _store_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, CorruptRunError):  # the store answered; the run is bad
        return _error(500, str(exc))
    return _error(503, f"the store cannot be read: {exc}")


def create_app(
    supervisor: Supervisor, *, allowed_hosts: Iterable[str] = ()
) -> Starlette:
    """Create the dashboard: an ASGI app showing the runs of ``supervisor``'s store.

    Serve it with any ASGI server (``serve()`` uses Hypercorn, on asyncio or
    trio), or mount it into another app. It only reads the store: any process
    attached to the same store sees the same runs.

    It answers only requests whose ``Host`` header names this machine
    (``127.0.0.1``, ``localhost``, ``[::1]``) or one of ``allowed_hosts``, so a
    web page cannot read it through DNS rebinding; other requests get a 400
    saying how to allow the name.

    Args:
        supervisor: whose store's runs to show.
        allowed_hosts: more host names to answer to (a port is ignored);
            ``"*"`` answers any (only behind a proxy that checks names itself).

    Routes:
        ``GET /``: the page.
        ``GET /api/runs``: ``{"runs": [{"id", "created", "status", "processors",
        "error"}], "total"}``, newest first (``?limit=N``); ``error`` says why a
        corrupt run cannot be read.
        ``GET /api/runs/{id}``: the run's graph (``viz.to_json()``) and live
        figures of every stream and processor.
        ``GET /api/runs/{id}/events``: the same as server-sent events, every
        ``?interval=`` seconds (default 1) until the run finishes.
        ``GET /api/meta``: the colours of each state.

    Unknown runs and paths under ``/api/`` answer 404 with ``{"error": ...}``; a
    run whose record does not decode, 500 (it is listed with the status
    ``"corrupt"``); a store that cannot be reached, 503.
    """
    api = _Api(supervisor)
    routes = [
        Route("/", _index, methods=["GET", "HEAD"]),
        Route("/api/meta", api.meta, methods=["GET"]),
        Route("/api/runs", api.runs, methods=["GET"]),
        Route("/api/runs/{run_id}", api.run, methods=["GET"]),
        Route("/api/runs/{run_id}/events", api.events, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error, StoreError: _store_error},
        middleware=[Middleware(HostCheck, allowed=hosts_for(None, allowed_hosts))],
    )
    app.state.supervisor = supervisor
    return app
