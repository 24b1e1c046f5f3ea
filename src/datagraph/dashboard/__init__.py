"""A web page showing the runs of a store live: graphs, counts, states, errors.

``create_app(supervisor)`` is an ASGI app (Starlette) with a JSON API and one page
(plain JavaScript drawing an SVG graph: no build step, nothing fetched from
elsewhere, so it works offline); ``serve(supervisor)`` serves it with Hypercorn on
asyncio or trio. Needs the ``dashboard`` extra: ``pip install 'datagraph[dashboard]'``.
"""

from __future__ import annotations

try:
    import hypercorn as _hypercorn
    import starlette as _starlette
except ImportError as exc:  # pragma: no cover - depends on what is installed
    msg = (
        "the dashboard needs the 'dashboard' extra: "
        "pip install 'datagraph[dashboard]' (Starlette and Hypercorn)"
    )
    raise ModuleNotFoundError(msg, name=exc.name) from exc

from ._app import create_app
from ._server import serve, serve_async

del _hypercorn, _starlette

__all__ = ("create_app", "serve", "serve_async")
