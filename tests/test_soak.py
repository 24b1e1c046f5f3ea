"""A short soak (benchmarks/soak.py): many runs in flight, every output exact, no leak.

The soak's workers are real processes, one on asyncio and one on trio, on a
redis-server of this test's own; no performance figure is checked here (the full
soak, ``make soak``, judges flatness).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from _redis_servers import RedisServer
from datagraph.stores._redis_scripts import WATCH_TTL_MS

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the benchmarks package lives beside src/

from benchmarks import soak  # noqa: E402


def _command(port: int, *args: str) -> bytes:
    """Send one inline command to the server; return its raw reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(" ".join(args).encode() + b"\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            reply += sock.recv(65536)
        return reply


def _keys(port: int) -> list[str]:
    reply = _command(port, "KEYS", "*").decode().split("\r\n")
    return [line for line in reply[2::2] if line]  # *N, then $len / key pairs


def test_the_expected_output_is_what_the_processors_compute() -> None:
    # The same five steps, evaluated plainly: the soak's check is not circular.
    numbers = range(10, 10 + 40)
    mapped = [x * 3 + 1 for x in numbers]
    kept = [x for x in mapped if x % 7 != 0]
    even = [x for x in kept if x % 2 == 0]
    odd = [x for x in kept if x % 2 == 1]
    assert soak.expected(10, 40) == sorted(even + odd)
    assert len(soak.expected(10, 40)) == 35  # 5 multiples of 7 dropped


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_a_short_soak_checks_every_run_and_leaves_nothing(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
        )
        out = tmp_path / "soak.json"
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.soak", "--minutes", "0.25",
             "--runs", "20", "--values", "400", "--interval", "1",
             "--redis-url", server.url, "--settle", "0", "--json", str(out)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=100,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(out.read_text())
        keys = _keys(server.port)
        ttls = {key: int(_command(server.port, "PTTL", key)[1:]) for key in keys}

    # Both workers ran to the end; each checked every output exactly (a wrong one
    # ends the worker with SoakError and the soak with exit code 1).
    assert report["workers"] == ["asyncio", "trio"]
    assert report["failures"] == []
    assert report["completed"] > 20  # more than one run per slot
    assert report["values"] == report["completed"] * 400
    # Nothing leaks: each deleted run's keys are gone, the runs index too. What
    # may be left are watcher hashes of streams, which expire by themselves.
    assert report["keys_leaked"] == 0
    assert all(":w:" in key for key in keys), keys
    assert all(0 < ttl <= WATCH_TTL_MS for ttl in ttls.values()), ttls
    # Watchers may expire between the soak's count and this listing (on a loaded
    # machine, many do): none may appear.
    assert len(keys) <= report["keys_expiring"]
    # The samples carry every series the full soak judges.
    samples = report["samples"]
    steady = [s for s in samples if s["t"] <= 15]  # both workers surely alive
    assert len(steady) >= 5
    assert all(s["rss_0"] > 0 and s["rss_1"] > 0 for s in steady), steady
    assert all(s["used_memory"] > 0 for s in samples)
    counts = [s["completed"] for s in samples]  # the last may miss the final line
    assert counts == sorted(counts)
    assert counts[-1] <= report["completed"]
    assert report["series"]["rss"]["flat"] is None  # too short to be judged


def test_flatness_is_judged_by_slope_and_drift() -> None:
    def series(values: list[float]) -> list[dict[str, float]]:
        return [{"t": 10.0 * i, "m": v} for i, v in enumerate(values)]

    flat = series([100.0] * 6 + [110.0] * 6 + [111.0, 110.0] * 12)
    growing = series([100.0 + 2 * i for i in range(36)])  # +12 a minute, ~8% of it
    assert soak.judge(flat, "m", judged=True)["flat"] is True
    verdict = soak.judge(growing, "m", judged=True)
    assert verdict["flat"] is False
    assert verdict["slope_per_minute"] == pytest.approx(12.0)
    assert soak.judge(growing, "m", judged=False)["flat"] is None
    falling = series([200.0 - 0.5 * i for i in range(36)])  # -3 a minute
    assert soak.judge(falling, "m", judged=True)["flat"] is True
