"""Take the docs' screenshot of the dashboard during a live run.

    python scripts/dashboard_screenshot.py [--output docs/images/dashboard.png]
                                           [--backend asyncio|trio] [--serve]

It starts a run of a small crawler-like flow (fan-out, a ``wait=True`` report,
retries, one processor that fails, one slow loader building a backlog), serves the
dashboard on a free local port, opens it in headless Chromium (Debian's
``chromium`` through Playwright's Python package: ``apt-get install chromium`` and
``pip install playwright``), clicks the failed processor so its error shows, and
saves a screenshot. ``--serve`` keeps the dashboard running instead, to look at
it in your own browser (Ctrl+C to stop).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.from_thread

from datagraph import IO, Flow, IOVal, LocalExecutor, MemoryStore, Processor, Supervisor
from datagraph.dashboard import serve_async

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "images" / "dashboard.png"
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
PAGES = 100_000  # more than the screenshot needs: the run is cancelled afterwards

# ------------------------------------------------------------------------ the flow

fetch = Processor(name="fetch", inputs=["urls"], outputs=["pages"], retries=2)
parse = Processor(name="parse", inputs=["pages"], outputs=["links", "words"])
audit = Processor(name="audit", inputs=["pages"], outputs=["audit log"])
index = Processor(name="index", inputs=["words"], outputs=["indexed"])
report = Processor(
    name="report", inputs=["links", "indexed"], outputs=["summary"], wait=True
)


@fetch
async def _fetch(urls: IO[str]) -> AsyncIterator[dict[str, Any]]:
    base = await urls.first()
    for i in range(PAGES):
        await anyio.sleep(0.004)  # the network
        yield {"url": f"{base}/page/{i}", "title": f"Page {i}" if i != 41 else ""}


@parse
async def _parse(pages: IO[dict[str, Any]]) -> AsyncIterator[IOVal[Any]]:
    async for page in pages.stream():
        yield IOVal("words", len(page["url"]))
        if hash(page["url"]) % 3 == 0:
            yield IOVal("links", page["url"])


@audit
async def _audit(pages: IO[dict[str, Any]]) -> AsyncIterator[str]:
    async for page in pages.stream():
        if not page["title"]:
            msg = f"{page['url']} has no title"
            raise ValueError(msg)
        yield f"{page['url']}: ok"


@index
async def _index(words: IO[int]) -> AsyncIterator[int]:
    async for count in words.stream():
        await anyio.sleep(0.006)  # slower than fetch: a backlog builds up
        yield count


@report
async def _report(links: IO[str], indexed: IO[int]) -> str:
    return f"{len(await links.collect())} links, {sum(await indexed.collect())} words"


FLOW = Flow.from_processors(fetch, parse, audit, index, report).resolve()


# ------------------------------------------------------------------------ the shot


def free_port() -> int:
    """Return a TCP port free on this machine now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10) -> None:
    """Wait until something accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        if time.monotonic() > deadline:
            sys.exit(f"the dashboard did not start on port {port}")
        time.sleep(0.05)


def shoot(url: str, output: Path) -> None:
    """Open the dashboard at ``url`` and save a screenshot of it to ``output``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(
                viewport={"width": 1600, "height": 900}, device_scale_factor=1
            )
            page.goto(url)
            page.wait_for_selector(
                '#graph g.node[data-name="audit"][data-state="failed"]'
            )
            # Wait for the recent rates (a few snapshots) and a visible backlog.
            page.wait_for_function(
                "Number(document.querySelector("
                "'#graph g.edge[data-stream=\"words\"]')?.dataset.backlog) > 50"
            )
            page.click('#graph g.node[data-name="audit"]')
            page.wait_for_selector("#details pre.traceback")
            page.wait_for_timeout(2500)  # let the rates settle on their recent value
            output.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(output))
        finally:
            browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument(
        "--serve", action="store_true", help="serve the dashboard, take no screenshot"
    )
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    with anyio.from_thread.start_blocking_portal(backend=args.backend) as portal:
        supervisor = portal.call(
            lambda: Supervisor(store=MemoryStore(), executor=LocalExecutor())
        )
        stop = portal.call(anyio.Event)
        server = portal.start_task_soon(
            lambda: serve_async(supervisor, port=port, shutdown_trigger=stop.wait)
        )
        run = portal.call(
            lambda: supervisor.start_flow(
                FLOW, inputs=[IOVal("urls", "https://example.org")]
            )
        )
        wait_for_port(port)
        try:
            if args.serve:
                print(f"dashboard on {url} (Ctrl+C to stop)")
                with contextlib.suppress(KeyboardInterrupt):
                    server.result()
            else:
                shoot(url, args.output)
                print(f"wrote {args.output}")
        finally:
            portal.call(run.cancel)
            portal.call(stop.set)
            server.result(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
