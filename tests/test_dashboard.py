"""The web dashboard: its JSON API, its servers, and the page in a real browser.

The API is driven through httpx's ``ASGITransport`` on asyncio and trio, against
the memory and Redis stores. The servers (``serve_async``, ``serve``) are started
for real on both backends. The page is checked in headless Chromium (Debian's
``chromium``, driven by Playwright's Python package) while a run streams.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from contextlib import aclosing
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import anyio.from_thread
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from datagraph import (
    IO,
    Depends,
    Flow,
    IOVal,
    LocalExecutor,
    MemoryStore,
    Processor,
    RunFailedError,
    Store,
    Supervisor,
    viz,
)
from datagraph.dashboard import create_app, serve, serve_async
from datagraph.dashboard._model import RateTracker, figures
from datagraph.snapshot import ProcessorFigures, RunSnapshot, StreamFigures

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

    from datagraph import Run

TIMEOUT = 10
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class Pacer:
    """Lets a source write value ``i`` only once ``release()`` has allowed it.

    Create it in the event loop the run uses (its events belong to that loop).
    """

    def __init__(self) -> None:
        self.allowed = 0
        self._changed = anyio.Event()

    def release(self, count: int) -> None:
        self.allowed += count
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, index: int) -> None:
        while index >= self.allowed:
            await self._changed.wait()


def current_pacer() -> Pacer:
    """The pacer of the running test, which installs its own with ``paced``."""
    msg = "the test installs a Pacer first (with paced(supervisor))"
    raise AssertionError(msg)


@contextlib.contextmanager
def paced(supervisor: Supervisor) -> Iterator[Pacer]:
    """Hand ``dash_source`` a new pacer, through the supervisor's dependencies."""
    pacer = Pacer()
    with supervisor.override(current_pacer, lambda: pacer):
        yield pacer


source = Processor(name="dash_source", inputs=["dash_n"], outputs=["dash_values"])


@source
async def _source(
    dash_n: IO[int], pacer: Annotated[Pacer, Depends(current_pacer)]
) -> AsyncIterator[int]:
    for i in range(await dash_n.first()):
        await pacer.wait_for(i)
        yield i


double = Processor(name="dash_double", inputs=["dash_values"], outputs=["dash_doubled"])


@double
async def _double(dash_values: IO[int]) -> AsyncIterator[int]:
    async for value in dash_values.stream():
        yield value * 2


total = Processor(
    name="dash_total", inputs=["dash_doubled"], outputs=["dash_sum"], wait=True
)


@total
async def _total(dash_doubled: IO[int]) -> int:
    return sum(await dash_doubled.collect())


broken = Processor(name="dash_broken", inputs=["dash_values"], outputs=["dash_never"])


@broken
async def _broken(dash_values: IO[int]) -> AsyncIterator[int]:
    async for value in dash_values.stream():
        if value == 2:
            msg = f"dash_broken gave up on {value}"
            raise ValueError(msg)
        yield value


STREAMING = Flow.from_processors(source, double, total).resolve()
FAILING = Flow.from_processors(source, double, total, broken).resolve()


@contextlib.asynccontextmanager
async def api(supervisor: Supervisor) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(supervisor))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
        yield c


async def finished_run(supervisor: Supervisor, flow: Flow, n: int) -> Run:
    """Start a run of ``flow`` whose source writes ``n`` values; wait for its end."""
    with paced(supervisor) as pacer:
        pacer.release(n)
        run = await supervisor.start_flow(flow, inputs=[IOVal("dash_n", n)])
        with contextlib.suppress(RunFailedError):
            await run.wait(TIMEOUT)
        return run


async def wait_until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll an async ``condition()`` until it is true, or fail saying ``what``."""
    try:
        with anyio.fail_after(TIMEOUT):
            # The figures of a run change in the store, with no event to wait on.
            while not await condition():  # noqa: ASYNC110
                await anyio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"waited {TIMEOUT} s for {what}")


# ------------------------------------------------------------------------- the API


@pytest.mark.anyio
async def test_runs_are_listed_newest_first(store: Store) -> None:
    supervisor = Supervisor(store=store, executor=LocalExecutor())
    first = await finished_run(supervisor, STREAMING, 3)
    second = await finished_run(supervisor, FAILING, 5)
    async with api(supervisor) as client:
        response = await client.get("/api/runs")
        limited = await client.get("/api/runs", params={"limit": 1})
        bad = await client.get("/api/runs", params={"limit": "many"})

    assert response.status_code == 200
    body = response.json()
    assert body["total"] == 2
    assert [r["id"] for r in body["runs"]] == [second.id, first.id]
    assert [r["status"] for r in body["runs"]] == ["failed", "succeeded"]
    assert [r["processors"] for r in body["runs"]] == [4, 3]
    assert body["runs"][0]["created"] >= body["runs"][1]["created"] > 0
    assert [r["id"] for r in limited.json()["runs"]] == [second.id]
    assert limited.json()["total"] == 2
    assert bad.status_code == 400
    assert "limit" in bad.json()["error"]


@pytest.mark.anyio
async def test_a_run_shows_its_graph_and_live_figures(store: Store) -> None:
    supervisor = Supervisor(store=store, executor=LocalExecutor())
    with paced(supervisor) as pacer:
        run = await supervisor.start_flow(STREAMING, inputs=[IOVal("dash_n", 10)])
        pacer.release(4)

        async def four_doubled() -> bool:
            snap = await run.snapshot()
            return snap.streams["dash_doubled"].written == 4

        await wait_until(four_doubled, "4 values through dash_double")
        async with api(supervisor) as client:
            live = (await client.get(f"/api/runs/{run.id}")).json()
            pacer.release(6)
            await run.wait(TIMEOUT)
            done = (await client.get(f"/api/runs/{run.id}")).json()

        # The graph is the viz model of the run's flow, with the figures as labels.
        plain = viz.to_json(viz.to_graph(STREAMING))
        graph = live["graph"]
        assert [n["id"] for n in graph["nodes"]] == [n["id"] for n in plain["nodes"]]
        assert [(e["stream"], e["source"], e["target"]) for e in graph["edges"]] == [
            (e["stream"], e["source"], e["target"]) for e in plain["edges"]
        ]
        states = {n["name"]: n.get("state") for n in graph["nodes"]}
        assert states["dash_source"] == "running"
        assert states["dash_total"] == "waiting"
        labels = {(e["stream"], e["reader"]): e["label"] for e in graph["edges"]}
        assert labels["dash_values", "dash_double"].startswith("4 written")

        assert live["id"] == run.id
        assert live["status"] == "running"
        assert live["finished"] is False
        assert live["created"] > 0
        values = live["streams"]["dash_values"]
        assert values["producer"] == "dash_source"
        assert values["readers"] == ["dash_double"]
        assert values["written"] == 4
        assert 0 <= values["read"]["dash_double"] <= 4
        assert values["backlog"] == 4 - values["read"]["dash_double"]
        assert values["ended"] is False
        assert values["rate"] is None or values["rate"] >= 0
        # A reader that has not started reading is listed with 0.
        assert live["streams"]["dash_doubled"]["read"] == {"dash_total": 0}
        proc = live["processors"]["dash_source"]
        assert proc["state"] == "running"
        assert proc["attempt"] == 1
        assert proc["instances"] == 1
        assert proc["started"] is not None
        assert proc["ended"] is None
        assert proc["error"] is None
        assert live["processors"]["dash_total"]["wait"] is True
        assert live["processors"]["dash_total"]["state"] == "waiting"

        assert done["status"] == "succeeded"
        assert done["finished"] is True
        assert done["streams"]["dash_values"]["written"] == 10
        assert done["streams"]["dash_values"]["ended"] is True
        assert done["streams"]["dash_values"]["rate"] == 0
        assert done["streams"]["dash_doubled"]["read"] == {"dash_total": 10}
        assert done["streams"]["dash_sum"]["written"] == 1
        assert {p["state"] for p in done["processors"].values()} == {"done"}
        assert all(p["ended"] >= p["started"] for p in done["processors"].values())


@pytest.mark.anyio
async def test_a_failed_processor_has_its_error_and_traceback(store: Store) -> None:
    supervisor = Supervisor(store=store, executor=LocalExecutor())
    run = await finished_run(supervisor, FAILING, 5)
    async with api(supervisor) as client:
        body = (await client.get(f"/api/runs/{run.id}")).json()

    assert body["status"] == "failed"
    failed = body["processors"]["dash_broken"]
    assert failed["state"] == "failed"
    assert failed["error"] == "ValueError: dash_broken gave up on 2"
    assert "_broken" in failed["traceback"]
    assert "dash_broken gave up on 2" in failed["traceback"]
    assert body["streams"]["dash_never"]["failed"] is True
    assert body["processors"]["dash_double"]["error"] is None


@pytest.mark.anyio
async def test_unknown_runs_and_paths_are_json_404s(store: Store) -> None:
    supervisor = Supervisor(store=store, executor=LocalExecutor())
    async with api(supervisor) as client:
        run = await client.get("/api/runs/no-such-run")
        events = await client.get("/api/runs/no-such-run/events")
        path = await client.get("/api/nothing/here")
        page = await client.get("/nothing/here")
        empty = await client.get("/api/runs")

    for response in (run, events):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"error": "no run 'no-such-run' in the store"}
    assert path.status_code == 404
    assert path.json() == {"error": "Not Found"}
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/plain")
    assert empty.json() == {"runs": [], "total": 0}


@pytest.mark.anyio
async def test_a_run_deleted_elsewhere_is_a_404(store: Store) -> None:
    supervisor = Supervisor(store=store, executor=LocalExecutor())
    run = await finished_run(supervisor, STREAMING, 3)
    async with api(supervisor) as client:
        seen = await client.get(f"/api/runs/{run.id}")
        # Another process deletes it; this supervisor still knows its plan.
        await Supervisor(store=store).delete_run(run.id)
        gone = await client.get(f"/api/runs/{run.id}")
        events = await client.get(f"/api/runs/{run.id}/events")
        listed = await client.get("/api/runs")

    assert seen.status_code == 200
    assert gone.status_code == 404
    assert gone.json() == {"error": f"no run {run.id!r} in the store"}
    assert events.status_code == 404
    assert listed.json() == {"runs": [], "total": 0}


@pytest.mark.anyio
async def test_the_page_and_its_assets_are_served(store: Store) -> None:
    supervisor = Supervisor(store=store, executor=LocalExecutor())
    async with api(supervisor) as client:
        page = await client.get("/")
        script = await client.get("/static/app.js")
        style = await client.get("/static/style.css")
        meta = await client.get("/api/meta")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    # Everything is relative and local: it works offline and under any prefix.
    assert 'src="static/app.js"' in page.text
    assert 'href="static/style.css"' in page.text
    assert "http" not in page.text.replace("http-equiv", "")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert "fetch(" in script.text
    assert "https://" not in script.text
    assert style.status_code == 200
    assert meta.json()["state_colors"] == {
        s: list(c) for s, c in viz.STATE_COLORS.items()
    }


@pytest.mark.anyio
async def test_the_app_works_mounted_under_a_prefix() -> None:
    supervisor = Supervisor(store=MemoryStore(), executor=LocalExecutor())
    inner = create_app(supervisor, allowed_hosts=["d"])
    outer = Starlette(routes=[Mount("/datagraph", inner)])
    transport = httpx.ASGITransport(app=outer)
    async with httpx.AsyncClient(transport=transport, base_url="http://d") as client:
        bare = await client.get("/datagraph")
        page = await client.get("/datagraph/")
        script = await client.get("/datagraph/static/app.js")
        runs = await client.get("/datagraph/api/runs")
        unknown = await client.get("/datagraph/api/runs/nope")

    assert bare.status_code == 307
    assert bare.headers["location"] == "http://d/datagraph/"
    assert page.status_code == 200
    assert script.status_code == 200
    assert runs.json() == {"runs": [], "total": 0}
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "no run 'nope' in the store"}


@pytest.mark.anyio
async def test_events_stream_snapshots_until_the_run_ends(store: Store) -> None:
    supervisor = Supervisor(store=store, executor=LocalExecutor())
    with paced(supervisor) as pacer:
        run = await supervisor.start_flow(STREAMING, inputs=[IOVal("dash_n", 6)])
        pacer.release(2)

        async def two_written() -> bool:
            return (await run.snapshot()).streams["dash_values"].written == 2

        await wait_until(two_written, "2 values written")
        app = create_app(supervisor)
        two_snapshots_sent = anyio.Event()
        sent = 0

        async def counting(scope: Any, receive: Any, send: Any) -> None:
            """The app, counting the snapshots it sends (the client sees them last)."""

            async def send_counted(message: Any) -> None:
                nonlocal sent
                if message["type"] == "http.response.body":
                    sent += message.get("body", b"").count(b"event: snapshot")
                    if sent >= 2:
                        two_snapshots_sent.set()
                await send(message)

            await app(scope, receive, send_counted)

        transport = httpx.ASGITransport(app=counting)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://localhost"
        ) as client:
            bad = await client.get(
                f"/api/runs/{run.id}/events", params={"interval": "x"}
            )
            result: list[httpx.Response] = []

            async def listen() -> None:
                # ASGITransport hands the body over once the response ends: when the
                # run has finished.
                url = f"/api/runs/{run.id}/events"
                result.append(await client.get(url, params={"interval": 0.05}))

            with anyio.fail_after(TIMEOUT):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(listen)
                    await two_snapshots_sent.wait()  # of the paced run, still running
                    pacer.release(4)

        assert bad.status_code == 400
        (response,) = result
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = []
        for block in response.text.split("\n\n"):
            lines = dict(line.split(": ", 1) for line in block.splitlines() if line)
            if "event" in lines:
                events.append((lines["event"], json.loads(lines["data"])))
        kinds = [kind for kind, _ in events]
        assert kinds[-1] == "end"
        assert set(kinds[:-1]) == {"snapshot"}
        snapshots = [data for _, data in events[:-1]]
        assert len(snapshots) >= 2
        assert snapshots[0]["status"] == "running"
        assert snapshots[0]["streams"]["dash_values"]["written"] == 2
        assert snapshots[-1]["finished"] is True
        assert snapshots[-1]["streams"]["dash_values"]["written"] == 6
        written = [s["streams"]["dash_values"]["written"] for s in snapshots]
        assert written == sorted(written)


def _snapshot(
    taken_at: float, written: int, *, ended: bool = False, average: float | None = None
) -> RunSnapshot:
    return RunSnapshot(
        run_id="r",
        status="running",
        taken_at=taken_at,
        streams={
            "s": StreamFigures(
                name="s",
                producer="p",
                written=written,
                ended=ended,
                failed=False,
                readers={},
                backlog=0,
                average=average,
            ),
            "in": StreamFigures(
                name="in",
                producer=None,
                written=1,
                ended=False,
                failed=False,
                readers={},
                backlog=0,
            ),
        },
        processors={
            "p": ProcessorFigures(
                name="p",
                status="running",
                attempt=1,
                instances=1,
                started=90.0,
                ended=None,
                error=None,
                traceback=None,
            )
        },
    )


def _rates(tracker: RateTracker, snapshot: RunSnapshot) -> dict[str, float | None]:
    return {n: s.rate for n, s in tracker.add(snapshot).streams.items()}


def test_rates_are_recent_and_fall_back_to_the_average() -> None:
    rates = RateTracker(window=5.0)
    # First look: the producer's average so far, as the snapshot has it.
    assert _rates(rates, _snapshot(100.0, 100, average=10.0)) == {
        "s": 10.0,
        "in": None,
    }
    # Then the rate since the oldest snapshot of the window.
    assert _rates(rates, _snapshot(102.0, 140))["s"] == pytest.approx(20.0)
    assert _rates(rates, _snapshot(104.0, 140))["s"] == pytest.approx(10.0)
    # Snapshots older than the window are forgotten.
    assert _rates(rates, _snapshot(108.0, 140))["s"] == pytest.approx(0.0)
    # An ended stream moves no more: the page says 0.
    ended = rates.add(_snapshot(109.0, 150, ended=True))
    assert ended.streams["s"].rate is None
    assert figures(ended).streams["s"] == "150 written · 0.0/s"


def test_rates_remember_a_bounded_number_of_runs() -> None:
    rates = RateTracker(max_runs=2)
    for run_id in ("a", "b", "c"):
        snap = _snapshot(100.0, 10)
        rates.add(RunSnapshot(**{**_fields(snap), "run_id": run_id}))
    assert list(rates._seen) == ["b", "c"]


# ------------------------------------------------------- the badge of a failing run


def badge_gate() -> anyio.Event:
    msg = "the test overrides this dependency"
    raise NotImplementedError(msg)


badge_source = Processor(
    name="dash_badge_source", inputs=["dash_badge_n"], outputs=["dash_badge_values"]
)


@badge_source
async def _badge_source(
    dash_badge_n: IO[int], gate: Annotated[anyio.Event, Depends(badge_gate)]
) -> AsyncIterator[int]:
    for i in range(await dash_badge_n.first()):
        yield i
    await gate.wait()  # still running after dash_badge_broken has failed


badge_broken = Processor(
    name="dash_badge_broken", inputs=["dash_badge_values"], outputs=["dash_badge_no"]
)


@badge_broken
async def _badge_broken(dash_badge_values: IO[int]) -> AsyncIterator[int]:
    async for value in dash_badge_values.stream():
        if value == 2:
            msg = "dash_badge_broken gave up"
            raise ValueError(msg)
        yield value


async def test_the_badge_says_failing_while_a_processor_still_runs(
    store: Store,
) -> None:
    supervisor = Supervisor(store=store, executor=LocalExecutor())
    gate = anyio.Event()
    flow = Flow.from_processors(badge_source, badge_broken).resolve()
    with supervisor.override(badge_gate, lambda: gate):
        run = await supervisor.start_flow(flow, inputs=[IOVal("dash_badge_n", 5)])

        with anyio.fail_after(TIMEOUT):
            async with aclosing(run.follow(interval=0.02)) as snapshots:
                async for snap in snapshots:
                    if snap.processors["dash_badge_broken"].status == "failed":
                        break
        async with api(supervisor) as client:
            failing = (await client.get(f"/api/runs/{run.id}")).json()
            gate.set()
            with contextlib.suppress(RunFailedError):
                await run.wait(TIMEOUT)
            failed = (await client.get(f"/api/runs/{run.id}")).json()

    assert failing["processors"]["dash_badge_source"]["state"] == "running"
    assert failing["status"] == "failed"  # the run's status, as the API said
    assert failing["phase"] == "failing"  # what the badge says
    assert failing["finished"] is False
    assert failed["phase"] == failed["status"] == "failed"
    assert failed["finished"] is True


def _fields(snap: RunSnapshot) -> dict[str, Any]:
    return {f: getattr(snap, f) for f in snap.__dataclass_fields__}


# --------------------------------------------------------------------- the servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int) -> None:
    """Wait until the server accepts connections (it binds after starting up)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)  # nothing to wait on but the port itself


@pytest.mark.anyio
async def test_serve_async_serves_on_the_running_backend(anyio_backend: str) -> None:
    """Hypercorn serves the app on asyncio, and on trio natively."""
    supervisor = Supervisor(store=MemoryStore(), executor=LocalExecutor())
    run = await finished_run(supervisor, STREAMING, 3)
    port = free_port()
    stop = anyio.Event()
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg, httpx.AsyncClient() as client:
            tg.start_soon(
                lambda: serve_async(supervisor, port=port, shutdown_trigger=stop.wait)
            )
            while True:
                try:
                    response = await client.get(f"http://127.0.0.1:{port}/api/runs")
                    break
                except httpx.ConnectError:
                    await anyio.sleep(0.02)  # not listening yet
            detail = await client.get(f"http://127.0.0.1:{port}/api/runs/{run.id}")
            stop.set()

    assert [r["id"] for r in response.json()["runs"]] == [run.id]
    assert detail.json()["status"] == "succeeded"


SERVE_SCRIPT = """
import sys
from datagraph import MemoryStore, Supervisor
from datagraph.dashboard import serve

serve(Supervisor(store=MemoryStore()), port=int(sys.argv[1]), backend=sys.argv[2])
print("stopped")
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_serve_blocks_until_interrupted(backend: str) -> None:
    """``serve()`` (what ``datagraph dashboard`` calls) stops cleanly on Ctrl+C."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SERVE_SCRIPT), str(port), backend],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port)
        response = httpx.get(f"http://127.0.0.1:{port}/api/runs", timeout=TIMEOUT)
        assert response.json() == {"runs": [], "total": 0}
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out == "stopped\n"
    assert f"Running on http://127.0.0.1:{port}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_taken_port_is_one_plain_error(backend: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        supervisor = Supervisor(store=MemoryStore(), executor=LocalExecutor())
        with pytest.raises(OSError, match="cannot serve the dashboard") as caught:
            serve(supervisor, port=port, backend=backend)  # type: ignore[arg-type]
    assert str(caught.value) == (
        f"cannot serve the dashboard on 127.0.0.1:{port}: Address already in use"
    )
    assert caught.value.errno == errno.EADDRINUSE


# ---------------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright's sync API.

    Playwright's own browser download is not used: it needs a host this machine
    cannot reach. The sync API keeps the test a plain function, whatever backend
    serves the page (Playwright's async API would run on asyncio only, not trio).
    """
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"the browser tests need Chromium at {CHROMIUM}: apt-get install -y "
            "chromium (.ci/run installs it)",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.mark.parametrize("server_backend", ["asyncio", "trio"])
def test_the_page_shows_a_run_streaming(browser: Any, server_backend: str) -> None:
    """The page loads, draws every processor, counts up, and shows an error."""
    port = free_port()
    with anyio.from_thread.start_blocking_portal(backend=server_backend) as portal:
        # The server and the run share the portal's event loop (and MemoryStore).
        supervisor = portal.call(
            lambda: Supervisor(store=MemoryStore(), executor=LocalExecutor())
        )
        pacer = portal.call(Pacer)
        with supervisor.override(current_pacer, lambda: pacer):
            stop = portal.call(anyio.Event)
            server = portal.start_task_soon(
                lambda: serve_async(supervisor, port=port, shutdown_trigger=stop.wait)
            )
            run = portal.call(
                lambda: supervisor.start_flow(FAILING, inputs=[IOVal("dash_n", 20)])
            )
            portal.call(pacer.release, 3)  # dash_broken fails on value 2
            wait_for_port(port)

            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(TIMEOUT * 1000)
            try:
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector(f'#runs li[data-run-id="{run.id}"]')
                for proc in FAILING.plan.processors:
                    page.wait_for_selector(f'#graph g.node[data-name="{proc.name}"]')
                shown = page.eval_on_selector_all(
                    "#graph g.node.processor", "nodes => nodes.map(n => n.dataset.name)"
                )
                assert sorted(shown) == sorted(p.name for p in FAILING.plan.processors)
                assert page.text_content("#run-id") == run.id

                # The counts on an edge go up while the run streams.
                edge = '#graph g.edge[data-stream="dash_values"]'
                edge += '[data-reader="dash_double"]'
                page.wait_for_selector(f'{edge}[data-written="3"]')
                assert page.text_content(f"{edge} .v-written") == "3"
                portal.call(pacer.release, 4)
                page.wait_for_selector(f'{edge}[data-written="7"]')
                page.wait_for_selector(f'{edge}[data-read="7"]')
                assert page.text_content(f"{edge} .v-written") == "7"
                node = '#graph g.node[data-name="dash_source"]'
                assert page.get_attribute(node, "data-state") == "running"
                fill = page.eval_on_selector(f"{node} rect", "r => r.style.fill")
                assert fill == "rgb(219, 234, 254)"  # STATE_COLORS["running"]: #dbeafe

                # A failed processor shows its error, and its traceback, on click.
                failed = '#graph g.node[data-name="dash_broken"]'
                page.wait_for_selector(f'{failed}[data-state="failed"]')
                page.click(failed)
                page.wait_for_selector("#details .error")
                error = page.text_content("#details .error")
                assert error == "ValueError: dash_broken gave up on 2"
                assert "_broken" in (page.text_content("#details pre.traceback") or "")
                # The run has failed, but its other processors go on: "failing".
                page.wait_for_selector('#run-status[data-status="failing"]')
                assert page.text_content("#run-status") == "failing"

                # The end of the run shows too.
                portal.call(pacer.release, 20)
                page.wait_for_selector(
                    '#graph g.node[data-name="dash_total"][data-state="done"]'
                )
                page.wait_for_selector("#run-live", state="hidden")
                assert page.text_content("#run-status") == "failed"
            finally:
                page.close()
                with contextlib.suppress(RunFailedError):
                    portal.call(run.wait, TIMEOUT)
                portal.call(stop.set)
                server.result(timeout=TIMEOUT)
