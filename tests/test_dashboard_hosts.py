"""The dashboard answers only requests addressed to an allowed host (DNS rebinding).

Checked through the ASGI app, through ``serve_async`` on both loops, and through
``datagraph dashboard --allow-host`` in a real process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest

from datagraph import LocalExecutor, MemoryStore, Supervisor
from datagraph.dashboard import create_app, serve_async
from datagraph.dashboard._hosts import host_name, hosts_for

if TYPE_CHECKING:
    from collections.abc import MutableMapping

TIMEOUT = 10
EXE = str(Path(sys.executable).parent / "datagraph")
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("DATAGRAPH_")}


def supervisor() -> Supervisor:
    return Supervisor(store=MemoryStore(), executor=LocalExecutor())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("localhost", "localhost"),
        ("LocalHost:8000", "localhost"),
        ("localhost.", "localhost"),
        ("127.0.0.1:80", "127.0.0.1"),
        ("[::1]:8000", "::1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("evil.example:8000", "evil.example"),
    ],
)
def test_host_name(value: str, name: str) -> None:
    assert host_name(value) == name


def test_the_bound_address_is_allowed_unless_it_is_a_wildcard() -> None:
    assert hosts_for("192.0.2.7") == {"127.0.0.1", "localhost", "::1", "192.0.2.7"}
    assert hosts_for("0.0.0.0") == {"127.0.0.1", "localhost", "::1"}
    assert hosts_for("::", ["Dash.Example:8000"]) == {
        "127.0.0.1",
        "localhost",
        "::1",
        "dash.example",
    }


# ------------------------------------------------------------------ the ASGI app


async def get(app: Any, host: str | None, path: str = "/api/runs") -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        headers = {} if host is None else {"Host": host}
        return await c.get(path, headers=headers)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.1:8000", "localhost:8000", "LOCALHOST", "[::1]:80"]
)
async def test_loopback_names_are_answered(host: str) -> None:
    response = await get(create_app(supervisor()), host)
    assert response.status_code == 200
    assert response.json() == {"runs": [], "total": 0}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "[::2]"]
)
async def test_other_names_are_refused(host: str) -> None:
    app = create_app(supervisor())
    api = await get(app, host)
    page = await get(app, host, "/")
    assert api.status_code == 400
    assert f"host {host!r} is not allowed" in api.json()["error"]
    assert f"--allow-host {host_name(host)}" in api.json()["error"]
    assert page.status_code == 400
    assert page.headers["content-type"].startswith("text/plain")
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "runs" not in page.text


@pytest.mark.anyio
async def test_a_request_without_a_host_is_refused() -> None:
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.0",
        "method": "GET",
        "scheme": "http",
        "path": "/api/runs",
        "raw_path": b"/api/runs",
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 5000),
    }
    await create_app(supervisor())(scope, receive, send)
    assert sent[0]["status"] == 400
    assert b"no Host header" in sent[1]["body"]


@pytest.mark.anyio
async def test_allowed_hosts_add_names_and_a_star_allows_any() -> None:
    app = create_app(supervisor(), allowed_hosts=["dash.example"])
    assert (await get(app, "dash.example:8000")).status_code == 200
    assert (await get(app, "localhost")).status_code == 200
    assert (await get(app, "evil.example")).status_code == 400
    anything = create_app(supervisor(), allowed_hosts=["*"])
    assert (await get(anything, "evil.example")).status_code == 200


# -------------------------------------------------------------- the real servers


@pytest.mark.anyio
async def test_serve_async_refuses_other_hosts(anyio_backend: str) -> None:
    port = free_port()
    stop = anyio.Event()
    base = f"http://127.0.0.1:{port}/api/runs"
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg, httpx.AsyncClient() as client:
            tg.start_soon(
                lambda: serve_async(
                    supervisor(),
                    port=port,
                    shutdown_trigger=stop.wait,
                    allowed_hosts=["dash.example"],
                )
            )
            while True:
                try:
                    plain = await client.get(base)
                    break
                except httpx.ConnectError:
                    await anyio.sleep(0.02)  # not listening yet
            named = await client.get(base, headers={"Host": f"dash.example:{port}"})
            evil = await client.get(base, headers={"Host": f"evil.example:{port}"})
            stop.set()
    assert plain.status_code == 200
    assert named.status_code == 200
    assert evil.status_code == 400
    assert "'evil.example:" in evil.json()["error"]


def test_the_dashboard_command_takes_allow_host() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [EXE, "dashboard", "--port", str(port), "--allow-host", "dash.example",
         "--allow-host", "other.example"],
        env=CLEAN_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.02)  # nothing to wait on but the port itself
        url = f"http://127.0.0.1:{port}/api/runs"
        codes = {
            host: httpx.get(url, headers={"Host": host}, timeout=TIMEOUT).status_code
            for host in ("127.0.0.1", "dash.example", "other.example", "evil.example")
        }
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert codes == {
        "127.0.0.1": 200,
        "dash.example": 200,
        "other.example": 200,
        "evil.example": 400,
    }
    assert proc.returncode == 0, err
