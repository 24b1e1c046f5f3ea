"""The examples, run as a user runs them: as scripts.

Each runs in a subprocess with this interpreter, on the embedded store and on the
test Redis (through ``DATAGRAPH_REDIS_URL``, the way a user points them at one).
"""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "examples" / "seed.py"
ETL = ROOT / "examples" / "etl.py"
#: The installed console script, as a user runs it.
DATAGRAPH = str(Path(sys.executable).parent / "datagraph")


def run_script(
    script: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a script with this interpreter; fail with its output if it fails."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DATAGRAPH_")}
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{script.name} {' '.join(args)} exited with {proc.returncode}\n"
        f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    return proc


def _redis_command(url: str, *words: str) -> bytes:
    """Send one command to a plain ``redis://`` server; return the raw reply."""
    parts = urlsplit(url)
    commands: list[tuple[str, ...]] = []
    if parts.password:
        user = unquote(parts.username or "default")
        commands.append(("AUTH", user, unquote(parts.password)))
    commands.extend([("SELECT", parts.path.strip("/") or "0"), words])
    payload = b"".join(
        f"*{len(c)}\r\n".encode()
        + b"".join(f"${len(w.encode())}\r\n{w}\r\n".encode() for w in c)
        for c in commands
    )
    with socket.create_connection(
        (parts.hostname or "localhost", parts.port or 6379), timeout=5
    ) as sock:
        sock.sendall(payload)
        reply = b""
        while reply.count(b"\r\n") < len(commands) or not reply.endswith(b"\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    return reply


def redis_key_count(url: str, prefix: str) -> int:
    """Count the keys under ``prefix`` (then delete them: the test is done)."""
    reply = _redis_command(url, "EVAL", _COUNT_AND_DELETE, "0", f"{prefix}*")
    match = re.search(rb":(\d+)\r\n$", reply)
    assert match, f"unexpected reply from Redis: {reply!r}"
    return int(match.group(1))


_COUNT_AND_DELETE = """
local keys = redis.call('KEYS', ARGV[1])
for _, key in ipairs(keys) do redis.call('DEL', key) end
return #keys
"""


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment selecting a store: none (memory) or the test Redis."""
    if request.param == "memory":
        return {}
    url: str = request.getfixturevalue("redis_url")
    # A key prefix of this test's own, to check that the data went to Redis.
    prefix = f"dgtest-ex-{uuid.uuid4().hex[:12]}"
    return {"DATAGRAPH_REDIS_URL": url, "DATAGRAPH_PREFIX": prefix}


def assert_used_redis(env: dict[str, str]) -> None:
    """Check that a run left its data in Redis (it would pass unnoticed on memory)."""
    url = env.get("DATAGRAPH_REDIS_URL")
    if url is None or urlsplit(url).scheme != "redis":
        return  # memory store, or a TLS server this raw client cannot talk to
    assert redis_key_count(url, env["DATAGRAPH_PREFIX"]) > 0, (
        f"nothing under {env['DATAGRAPH_PREFIX']!r} in Redis: the example did not "
        "use DATAGRAPH_REDIS_URL"
    )


def test_seed_prints_the_seed_output_on_trio_then_asyncio(
    store_env: dict[str, str],
) -> None:
    proc = run_script(SEED, env=store_env)
    assert proc.stdout.split() == ["0", "2", "4", "6", "8"] * 2
    assert_used_redis(store_env)


def _in_root(
    *command: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository's root, as the docs do; it must succeed."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DATAGRAPH_")}
    clean.pop("ETL_DATABASE", None)
    proc = subprocess.run(
        command, cwd=ROOT, env={**clean, **(env or {})}, capture_output=True,
        text=True, timeout=50, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout}\n--- stderr\n{proc.stderr}"
    return proc


def test_importing_an_example_runs_nothing() -> None:
    modules = "examples.seed, examples.etl, examples.distributed.orders"
    proc = _in_root(sys.executable, "-c", f"import {modules}")
    assert (proc.stdout, proc.stderr) == ("", "")


def test_the_graph_of_the_seed_is_only_the_graph() -> None:
    proc = _in_root(DATAGRAPH, "graph", "examples.seed:FLOW")
    lines = proc.stdout.splitlines()
    assert lines[0] == "Flow: 1 processor, 1 input, 1 output"
    assert "  [in] foo  -->  foobar  -->  [out] bar" in lines
    assert not [line for line in lines if line.strip().isdigit()]  # no run's output
    assert proc.stderr == ""


def _databases_in_the_tree() -> list[Path]:
    return sorted([*ROOT.glob("*.sqlite3"), *ROOT.glob("examples/**/*.sqlite3")])


def test_the_etl_flow_run_twice_leaves_the_same_rows_outside_the_tree(
    tmp_path: Path,
) -> None:
    folder, tmp = tmp_path / "orders", tmp_path / "tmp"
    tmp.mkdir()
    demo = run_script(ETL, "--files", "20", "--dir", str(folder))
    good = _number(r"generated (\d+) good", demo.stdout)
    before = _databases_in_the_tree()
    command = (DATAGRAPH, "run", "examples.etl:FLOW", "--input", f"folder={folder}")
    counts = []
    for _ in range(2):
        _in_root(*command, "--no-live", env={"TMPDIR": str(tmp)})
        # The default database is in the temporary directory, not the tree.
        with sqlite3.connect(tmp / "datagraph-etl.sqlite3") as db:
            counts.append(db.execute("SELECT count(*) FROM orders").fetchone()[0])
        db.close()
    assert counts == [good, good]
    assert _databases_in_the_tree() == before


def _number(pattern: str, text: str) -> int:
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"no match for {pattern!r} in:\n{text}"
    return int(match.group(1))


def _seconds(pattern: str, text: str) -> float:
    match = re.search(pattern, text, re.MULTILINE)
    assert match, f"no match for {pattern!r} in:\n{text}"
    return float(match.group(1))


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_etl_streams_files_into_sqlite(
    store_env: dict[str, str], backend: str, tmp_path: Path
) -> None:
    proc = run_script(
        ETL, "--files", "60", "--backend", backend, "--dir", str(tmp_path),
        env=store_env,
    )  # fmt: skip
    out = proc.stdout
    assert f"backend {backend}" in out
    expected_store = "RedisStore at" if store_env else "MemoryStore (embedded"
    assert expected_store in out

    # Streaming: the first batch was committed while files were still being read.
    assert "-> first record loaded before extraction finished" in out
    first = _seconds(r"first record loaded at ([\d.]+)s", out)
    extracted = _seconds(r"extraction finished at ([\d.]+)s", out)
    assert first < extracted

    # Every generated line is accounted for: good ones loaded, bad ones rejected.
    lines = _number(r"JSON files, (\d+) order lines", out)
    bad = _number(r"order lines, (\d+) of them bad", out)
    assert _number(r"^  files +(\d+)", out) == 60
    loaded = _number(r"^  records loaded +(\d+)", out)
    assert loaded == lines - bad > 0
    assert _number(r"^  rejects +(\d+)", out) == bad > 0
    assert re.search(r"^  check +OK", out, re.MULTILINE)

    # And the database says the same.
    with sqlite3.connect(tmp_path / "etl.sqlite3") as db:
        (rows,) = db.execute("SELECT count(*) FROM orders").fetchone()
        (bad_rows,) = db.execute(
            "SELECT count(*) FROM orders WHERE quantity <= 0 OR email NOT LIKE '%@%'"
        ).fetchone()
    db.close()
    assert rows == loaded
    assert bad_rows == 0
    assert_used_redis(store_env)


@pytest.mark.redis
def test_etl_takes_a_redis_url_option(redis_url: str, tmp_path: Path) -> None:
    proc = run_script(
        ETL, "--files", "30", "--redis-url", redis_url, "--dir", str(tmp_path)
    )
    assert "RedisStore at" in proc.stdout
    assert "-> first record loaded before extraction finished" in proc.stdout


@pytest.mark.redis
@pytest.mark.timeout(180)  # two Celery workers start first; slow on a loaded machine
def test_distributed_demo_runs_the_etl_flow_on_two_celery_workers() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DATAGRAPH_")}
    # Run as `make demo-distributed` does: it starts its own Redis and workers.
    proc = subprocess.run(
        [sys.executable, "-m", "examples.distributed.demo", "--files", "60",
         "--backend", "trio"],
        cwd=ROOT, env=clean, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    out = proc.stdout
    assert proc.returncode == 0, f"{out}\n--- stderr\n{proc.stderr}"
    assert "started a throwaway redis-server" in out
    for service in ("ingest", "warehouse"):
        assert f"started a Celery worker for {service}" in out
    good = _number(r"(\d+) good order lines", out)
    assert f"SQLite holds {good} orders; expected {good}: OK" in out
    assert re.search(r"^Run \w+ succeeded", out, re.MULTILINE)
    assert "stopped the workers and redis-server" in out
