"""The benchmark suite still starts (benchmarks/suite.py).

Never a performance check: the rows run on tiny N, and only the shape of what the
suite prints and writes is checked, not whether a target is met.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the benchmarks package lives beside src/

from benchmarks.rows._base import REFERENCE, Target, compared  # noqa: E402

FIELDS = {
    "figure",
    "value",
    "unit",
    "baseline",
    "baseline_value",
    "ratio",
    "target",
    "passed",
}
# Cheap rows: W3 on the memory store (asyncio) and on Redis, against their
# baselines (anyio streams, a raw Redis pipe); neither needs the bench group.
ONLY = "W3 throughput, (memory store, asyncio|Redis store)"


def run_suite(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.suite", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )


@pytest.mark.redis
def test_the_suite_runs_a_memory_and_a_redis_row_on_tiny_n(
    redis_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "rows.json"
    done = run_suite(
        "--tiny", "--only", ONLY, "--redis-url", redis_url, "--json", str(out)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(out.read_text())
    assert [row["figure"] for row in rows] == [
        "W3 throughput, memory store, asyncio, N=2,000",
        "W3 throughput, Redis store, one process, N=2,000",
    ]
    for row in rows:
        assert set(row) == FIELDS
        assert row["unit"] == "values/s"
        assert row["value"] > 0
        assert row["baseline_value"] > 0
        assert row["ratio"] == pytest.approx(
            row["value"] / row["baseline_value"], rel=1e-3
        )
        assert isinstance(row["passed"], bool)  # met or not: not checked here
        assert row["figure"] in done.stdout  # the printed table has the row


def test_every_row_can_be_listed_and_a_pattern_that_matches_none_is_refused() -> None:
    listed = run_suite("--list")
    assert listed.returncode == 0, listed.stderr
    figures = listed.stdout.splitlines()
    assert len(figures) >= 19
    for wanted in ("W3 throughput", "time to first", "latency p99", "peak RSS",
                   "used_memory", "scale-out", "async-graph-data-flow",
                   "Celery chains", "ETL time to first loaded"):  # fmt: skip
        assert any(wanted in figure for figure in figures), wanted

    refused = run_suite("--tiny", "--only", "no such figure")
    assert refused.returncode == 2
    assert "no figure matches" in refused.stderr


def test_the_style_rows_run_on_tiny_n(tmp_path: Path) -> None:
    # The seed-style and hot-loop rows of the memory store, on both loops
    # (benchmarks/styles.py): every style runs (each after a bare-value W3), only
    # those rows are kept; the hot loops are reference rows, without a target.
    out = tmp_path / "rows.json"
    done = run_suite(
        "--tiny",
        "--only",
        "^W3 (seed style|hot loop).*memory store",
        "--json",
        str(out),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(out.read_text())
    reference = "reference (no target)"
    targets = {
        "seed style, yield IOVal(name=..., value=...)": ">= 0.85x",
        "hot loop, stages reading chunks() instead of stream()": reference,
        "hot loop, lists of 1,000 ints as values, per int": reference,
    }
    expected = [
        (f"W3 {label}, memory store, {loop}, N=2,000", target)
        for label, target in targets.items()
        for loop in ("asyncio", "trio")
    ]
    assert [(row["figure"], row["target"]) for row in rows] == expected
    for row in rows:
        assert set(row) == FIELDS
        assert row["value"] > 0
        assert row["baseline_value"] > 0
        assert row["ratio"] > 0  # of paired runs: not value / baseline_value
        # Met or not is not checked here; a reference row is neither.
        if row["target"] == reference:
            assert row["passed"] is None
        else:
            assert isinstance(row["passed"], bool)


def test_a_row_meets_its_target_only_within_every_bound() -> None:
    floor = Target(">= 100/s and >= 2x", min_value=100, min_ratio=2)
    assert compared("f", 300, "values/s", "b", 100, floor).passed is True
    assert compared("f", 300, "values/s", "b", 200, floor).passed is False  # 1.5x
    assert compared("f", 90, "values/s", "b", 10, floor).passed is False  # < 100/s
    assert compared("f", 300, "values/s", "b", None, floor).passed is False  # no ratio
    ceiling = Target("<= 1.20x", max_ratio=1.2)
    assert compared("f", 12, "MB", "b", 10, ceiling).passed is True
    assert compared("f", 13, "MB", "b", 10, ceiling).passed is False
    row = compared("f", 4, "ms", "b", 8, REFERENCE)
    assert (row.ratio, row.target, row.passed) == (0.5, "reference (no target)", None)
    paired = compared("f", 4, "ms", "b", 8, Target(">= 0.7x", min_ratio=0.7),
                      given_ratio=0.9)  # fmt: skip
    assert (paired.ratio, paired.passed) == (0.9, True)
