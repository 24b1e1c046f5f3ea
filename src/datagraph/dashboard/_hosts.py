"""Refusing requests for unexpected ``Host`` names (DNS rebinding).

A page on any web site can make its own name resolve to 127.0.0.1 and then read
what a local server answers as if it were its own: the browser sees one origin.
The one thing that gives such a request away is its ``Host`` header, which names
the attacker's domain. So the dashboard answers only requests addressed to a name
on an allow-list: this machine's loopback names by default, plus the address it
is bound to and whatever the user adds.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ("DEFAULT_HOSTS", "HostCheck", "host_name", "hosts_for")

#: The names that always reach this machine only.
DEFAULT_HOSTS = ("127.0.0.1", "localhost", "::1")
#: Bind addresses that mean "every interface", not a name to be called by.
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "*"})


def host_name(value: str) -> str:
    """Return the name part of a ``Host`` value: no port, no brackets, lower case.

    ``"Example.COM:8000"`` -> ``"example.com"``, ``"[::1]:8000"`` -> ``"::1"``,
    ``"localhost."`` -> ``"localhost"``.
    """
    value = value.strip().lower()
    if value.startswith("["):  # an IPv6 literal, with or without a port
        name, _, _ = value[1:].partition("]")
        return name
    if value.count(":") == 1:  # name:port (a bare IPv6 address has several)
        value = value.partition(":")[0]
    return value.rstrip(".")


def hosts_for(bound: str | None, extra: Iterable[str] = ()) -> frozenset[str]:
    """Return the host names a dashboard bound to ``bound`` answers to.

    Args:
        bound: the address the server listens on; added unless it is a wildcard
            such as ``0.0.0.0``.
        extra: more names (``"*"`` allows any, turning the check off).
    """
    names = {*DEFAULT_HOSTS, *(host_name(h) for h in extra)}
    if bound is not None and host_name(bound) not in _WILDCARDS:
        names.add(host_name(bound))
    if "*" in extra:
        names.add("*")
    return frozenset(names)


class HostCheck:
    """ASGI middleware answering 400 to requests whose ``Host`` is not allowed.

    Args:
        app: the app to protect.
        allowed: host names as ``host_name`` returns them; ``"*"`` allows any.
    """

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or "*" in self.allowed:
            await self.app(scope, receive, send)
            return
        raw = None
        for key, value in scope["headers"]:
            if key == b"host":
                raw = value.decode("latin-1")
                break
        name = host_name(raw) if raw is not None else None
        if name in self.allowed:
            await self.app(scope, receive, send)
            return
        await _refuse(scope, send, raw)


async def _refuse(scope: Scope, send: Send, raw: str | None) -> None:
    if raw is None:
        message = "the request has no Host header"
    else:
        shown = raw[:100]
        message = (
            f"host {shown!r} is not allowed; to serve the dashboard under that "
            f"name, start it with --allow-host {host_name(shown) or shown}"
        )
    if scope["type"] == "websocket":  # refuse the handshake
        await send({"type": "websocket.close", "code": 1008, "reason": message})
        return
    path = scope.get("path", "")
    if path.startswith(f"{scope.get('root_path', '')}/api/"):
        body, kind = json.dumps({"error": message}).encode(), b"application/json"
    else:
        body, kind = message.encode(), b"text/plain; charset=utf-8"
    headers = [
        (b"content-type", kind),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),  # the name is echoed back
    ]
    await send({"type": "http.response.start", "status": 400, "headers": headers})
    await send({"type": "http.response.body", "body": body})
