"""What every benchmark module shares: rows, statistics and throwaway servers."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

#: The anyio backend every row runs on unless it says otherwise.
DEFAULT_BACKEND = "asyncio"
#: The repository's root: the working folder of the processes the suite starts.
ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class Row:
    """One line of the results table (and one object of latest.json).

    ``ratio`` is ``value / baseline_value``; ``passed`` is None for a row that only
    gives a reference figure (no target).
    """

    figure: str
    value: float
    unit: str
    baseline: str
    baseline_value: float | None
    ratio: float | None
    target: str
    passed: bool | None

    def as_json(self) -> dict[str, Any]:
        """Return the row as latest.json stores it (numbers rounded sensibly)."""
        return {
            "figure": self.figure,
            "value": _round(self.value),
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_value": _round(self.baseline_value),
            "ratio": _round(self.ratio),
            "target": self.target,
            "passed": self.passed,
        }


def _round(x: float | None) -> float | None:
    if x is None or not math.isfinite(x):
        return None  # JSON has no NaN
    if x == 0:
        return x
    digits = max(0, 4 - math.floor(math.log10(abs(x))))
    return round(x, digits)


def ratio(value: float, baseline: float | None) -> float | None:
    """Return ``value / baseline``, or None without a usable baseline."""
    if baseline is None or baseline == 0:
        return None
    return value / baseline


def median(values: Sequence[float]) -> float:
    """The median of at least one value."""
    return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of ``values``, by the nearest-rank rule."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def sum_check(total: int, expected: int, what: str) -> None:
    """Fail loudly when a run lost, duplicated or mangled values."""
    if total != expected:
        msg = f"{what}: wrong result, got {total}, expected {expected}"
        raise AssertionError(msg)


# -------------------------------------------------------------------- processes
def repo_env() -> dict[str, str]:
    """This process's environment with the repository first on ``PYTHONPATH``.

    What a child needs to import ``benchmarks`` (and the same ``datagraph``).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    return env


def fresh_process(module: str, *args: str) -> dict[str, Any]:
    """Run ``python -m module *args`` in a fresh process; return its JSON result.

    The result is the JSON object the process prints on its last line; a failed
    process raises ``RuntimeError`` with the end of what it wrote to stderr.
    """
    command = [sys.executable, "-m", module, *args]
    done = subprocess.run(
        command, cwd=ROOT, env=repo_env(), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        msg = f"{' '.join(command)} failed:\n{done.stderr[-3000:]}"
        raise RuntimeError(msg)
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------------ redis
def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_binary() -> str:
    """The redis-server (or valkey-server) to start throwaway servers with."""
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    return found or "/usr/bin/redis-server"


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Start a throwaway redis-server on a free port; yield its URL.

    Never the machine's own server: the suite's numbers (``used_memory``, Celery's
    queues) must not mix with anybody else's data.
    """
    binary = redis_binary()
    for _attempt in range(3):  # the free port may be taken before the server binds
        port = free_port()
        log = tempfile.TemporaryFile()  # noqa: SIM115  # closed below
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tempfile.gettempdir()],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            if _ping(port):
                break
            time.sleep(0.02)
        if process.poll() is None and _ping(port):
            break
        process.kill()
        process.wait()
        log.seek(0)
        output = log.read().decode(errors="replace")
        log.close()
    else:
        msg = f"could not start {binary} on a free port:\n{output}"
        raise RuntimeError(msg)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def redis_database(url: str, db: int) -> str:
    """The URL of database ``db`` on the Redis server of ``url``."""
    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    return f"{base}/{db}"


def url_port(url: str) -> int:
    """The port of a ``redis://host:port/db`` URL."""
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


class RespConnection:
    """A minimal RESP client for INFO and FLUSHALL (no client library needed)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self._sock = socket.create_connection((host, port), timeout=10)
        self._file = self._sock.makefile("rb")

    def close(self) -> None:
        """Close the connection."""
        self._file.close()
        self._sock.close()

    def command(self, *args: str) -> Any:
        """Send a command; return its reply (bulk strings as str)."""
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self._sock.sendall(b"".join(parts))
        return self._reply()

    def _reply(self) -> Any:
        line = self._file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self._file.read(size + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            return [self._reply() for _ in range(int(rest))]
        msg = f"unexpected RESP reply {line!r}"
        raise RuntimeError(msg)

    def used_memory(self) -> int:
        """The server's ``used_memory`` (bytes), from ``INFO memory``."""
        info: str = self.command("INFO", "memory")
        for line in info.splitlines():
            if line.startswith("used_memory:"):
                return int(line.split(":", 1)[1])
        msg = "INFO memory has no used_memory"
        raise RuntimeError(msg)


class MemorySampler:
    """Samples a Redis server's ``used_memory`` from a thread; keeps the peak."""

    def __init__(self, port: int, interval: float = 0.002) -> None:
        self._conn = RespConnection(port)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.before = self._conn.used_memory()
        self.peak = self.before
        self.samples = 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._conn.used_memory())
            self.samples += 1
            self._stop.wait(self._interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._conn.used_memory())
        self._conn.close()


def fmt_number(x: float | None) -> str:
    """Format a figure for the table: thousands separators, 3 significant digits."""
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"
