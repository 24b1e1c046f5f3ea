"""The ETL flow across two services, each a Celery worker, started from here.

    python -m examples.distributed.demo [--files N] [--backend asyncio|trio]
                                        [--redis-url URL]

(``make demo-distributed`` runs it.) It starts a throwaway redis-server unless
``--redis-url`` (or ``DATAGRAPH_REDIS_URL``) names one, then two workers with
Celery's own command::

    celery -A examples.distributed.ingest worker      # extract, parse
    celery -A examples.distributed.warehouse worker   # transform, load

This process implements no processor: it writes N order files, starts a run,
shows it live with ``datagraph watch``, checks the result in SQLite, and stops
everything it started.
"""

import argparse
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import anyio

from datagraph import IOVal, Supervisor

from .orders import FLOW, attach

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("ingest", "warehouse")


def generate(folder: Path, count: int, seed: int = 7) -> tuple[int, int]:
    """Write ``count`` CSV order files; return how many rows are good and bad."""
    rng = random.Random(seed)
    good = bad = 0
    for index in range(count):
        lines = ["order_id,customer,sku,quantity,unit_price"]
        for number in range(rng.randint(5, 15)):
            quantity, customer = rng.randint(1, 5), rng.choice(["ada", "alan", "grace"])
            if rng.random() < 0.05:
                quantity, bad = 0, bad + 1
            else:
                good += 1
            price = rng.randint(199, 4999) / 100
            lines.append(
                f"o-{index}-{number},{customer},kb-{number},{quantity},{price}"
            )
        (folder / f"orders-{index:05d}.csv").write_text("\n".join(lines) + "\n")
    return good, bad


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(check: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            sys.exit(f"demo: {what} did not start in {timeout:g}s")
        time.sleep(0.1)


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def throwaway_redis(workdir: Path) -> Iterator[str]:
    """Run a redis-server of our own on a free port; stop it afterwards."""
    exe = shutil.which("redis-server") or shutil.which("valkey-server")
    if exe is None:
        sys.exit("demo: no redis-server found; install one or pass --redis-url")
    port = _free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for(lambda: _answers_ping(port), "redis-server")
        print(f"started a throwaway redis-server on port {port}")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait()


@contextmanager
def worker(service: str, env: dict[str, str], workdir: Path) -> Iterator[None]:
    """Run ``celery -A examples.distributed.<service> worker`` until the end."""
    log = workdir / f"{service}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", f"examples.distributed.{service}",
             "worker", "--loglevel", "INFO", "--concurrency", "2",
             "-n", f"{service}-{uuid.uuid4().hex[:6]}@%h"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for(
            lambda: " ready." in log.read_text() or proc.poll() is not None,
            f"the {service} worker",
        )
        if proc.poll() is not None:
            sys.exit(f"demo: the {service} worker exited:\n{log.read_text()}")
        print(f"started a Celery worker for {service} (log: {log})")
        yield
    finally:
        proc.terminate()  # a warm shutdown
        proc.wait()


async def start(folder: Path) -> str:
    """Start a run of the flow on ``folder`` and return its id."""
    supervisor = Supervisor.instance
    run = await supervisor.start_flow(FLOW, inputs=[IOVal("folder", str(folder))])
    await supervisor.aclose()
    return run.id


def main(argv: list[str] | None = None) -> int:
    """Start what is needed, run the flow across the services, check, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=300, help="files to generate")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument(
        "--redis-url", default=os.environ.get("DATAGRAPH_REDIS_URL"),
        help="use this Redis/Valkey server (default: start a throwaway one)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="datagraph-distributed-") as tmp,
        ExitStack() as stack,
    ):
        workdir = Path(tmp)
        url = args.redis_url or stack.enter_context(throwaway_redis(workdir))
        folder, database = workdir / "orders", workdir / "orders.sqlite3"
        folder.mkdir()
        good, bad = generate(folder, args.files)
        print(f"wrote {args.files} files: {good} good order lines, {bad} bad")
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p
            ),
            "DATAGRAPH_REDIS_URL": url,
            "DATAGRAPH_PREFIX": f"demo-{uuid.uuid4().hex[:8]}",
            "DATAGRAPH_WORKER_BACKEND": args.backend,
            "DEMO_DATABASE": str(database),
        }
        for service in SERVICES:
            stack.enter_context(worker(service, env, workdir))
        os.environ.update(env)
        attach()  # this process only starts the run: it implements nothing
        run_id = anyio.run(start, folder, backend=args.backend)
        print(f"started run {run_id}; watching it live:\n")
        watched = subprocess.run(
            [sys.executable, "-c", "from datagraph.cli import main; main()",
             "watch", run_id, "--redis-url", url, "--backend", args.backend],
            env=env, check=False,
        )  # fmt: skip
        with sqlite3.connect(database) as db:
            (rows,) = db.execute("SELECT count(*) FROM orders").fetchone()
        db.close()
        ok = watched.returncode == 0 and rows == good
        verdict = "OK" if ok else "MISMATCH"
        print(f"\nSQLite holds {rows} orders; expected {good}: {verdict}")
    print("stopped the workers" + ("" if args.redis_url else " and redis-server"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
