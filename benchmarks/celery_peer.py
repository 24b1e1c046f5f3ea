"""The Celery peer: real worker processes, driven from the suite's process.

``workers()`` starts ``celery worker --concurrency 2`` (prefork: two worker
processes) against a throwaway Redis; the functions below submit the work and
time it from the first submission to the last result.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import etl
from ._common import sum_check

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = 2


class Workers:
    """A running ``celery worker``: its process and a memory sampler."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    def rss(self) -> int:
        """Bytes resident in the worker and its pool processes, together."""
        import psutil

        try:
            main = psutil.Process(self.process.pid)
            tree = [main, *main.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for proc in tree:
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return int(total)

    @contextlib.contextmanager
    def peak_rss(self) -> Iterator[list[int]]:
        """Sample ``rss()`` every 20 ms within the block; yields [peak] after."""
        peak = [self.rss()]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.02):
                peak[0] = max(peak[0], self.rss())

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield peak
        finally:
            stop.set()
            thread.join()
            peak[0] = max(peak[0], self.rss())


@contextlib.contextmanager
def workers(redis_url: str) -> Iterator[Workers]:
    """Start 2 Celery worker processes on ``redis_url``; stop them afterwards."""
    from . import celery_app

    celery_app.configure(redis_url)
    env = dict(os.environ, DG_BENCH_CELERY_URL=redis_url)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "benchmarks.celery_app",
             "worker", "--concurrency", str(CONCURRENCY), "--pool", "prefork",
             "--queues", celery_app.QUEUE, "--loglevel", "WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--hostname", f"dgbench-{os.getpid()}@%h"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its pool processes stop with it
        )  # fmt: skip
        try:
            try:
                # One answer from each pool process (best effort) before timing.
                pings = [celery_app.ping.delay() for _ in range(4 * CONCURRENCY)]
                for result in pings:
                    result.get(timeout=60)
            except Exception as exc:
                log.seek(0)
                output = log.read().decode(errors="replace")[-3000:]
                msg = f"the Celery workers did not answer: {exc}\n{output}"
                raise RuntimeError(msg) from exc
            yield Workers(process)
        finally:
            _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # warm shutdown: stops its pool too
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the group we started
        process.wait()


# ------------------------------------------------------------------------ W3
def w3_chains_once(n: int) -> float:
    """Submit W3 as ``n`` chains of 3 tasks; return seconds to the last result."""
    from celery import chain
    from celery.result import ResultSet

    from . import celery_app as c

    start = time.perf_counter()
    results = [
        chain(c.w3_source.s(i), c.w3_double.s(), c.w3_increment.s()).apply_async()
        for i in range(n)
    ]
    total = sum(ResultSet(results).get(timeout=600))
    elapsed = time.perf_counter() - start
    sum_check(total, n * n, f"Celery chains W3 N={n}")
    return elapsed


def w3_staged_once(n: int) -> float:
    """W3 as one task per stage over the whole list; return seconds.

    The first final value is available only when this returns: the staged
    pipeline's time to first value is its whole run time.
    """
    from celery import chain

    from . import celery_app as c

    start = time.perf_counter()
    flow = chain(
        c.w3_stage_source.s(n), c.w3_stage_double.s(), c.w3_stage_increment.s()
    )
    values = flow.apply_async().get(timeout=600)
    elapsed = time.perf_counter() - start
    sum_check(sum(values), n * n, f"Celery staged W3 N={n}")
    return elapsed


# ----------------------------------------------------------------------- ETL
def etl_chains_once(source: str, n: int, path: str) -> float:
    """Submit the ETL as one chain of parse, transform, load per record."""
    from celery import chain
    from celery.result import ResultSet

    from . import celery_app as c

    start = time.perf_counter()
    results = [
        chain(c.etl_parse.s(raw), c.etl_transform.s(), c.etl_load.s(path)).apply_async()
        for raw in etl.read_records(source)
    ]
    loaded = sum(ResultSet(results).get(timeout=600))
    elapsed = time.perf_counter() - start
    sum_check(loaded, n, "Celery chains ETL rows")
    etl.check_db(path, n)
    return elapsed


def etl_staged_once(source: str, n: int, path: str, io_delay: float) -> float:
    """The ETL as one task per stage; return seconds to the first loaded record."""
    from celery import chain

    from . import celery_app as c

    start = time.time()
    flow = chain(
        c.etl_stage_extract.s(source, io_delay),
        c.etl_stage_parse.s(),
        c.etl_stage_transform.s(),
        c.etl_stage_load.s(path),
    )
    committed: float = flow.apply_async().get(timeout=600)
    etl.check_db(path, n)
    return committed - start
