"""Liveness: after a process dies, a run completes exactly or ends failed, in time.

Each job of these runs is a process of its own (``tests.procs.executor``), so a
test can SIGKILL the one running a producer or a consumer mid-stream. A short
lease keeps them quick.
"""

import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import pytest

from datagraph import IOVal, RunFailedError, RunNotFoundError, Supervisor
from datagraph.executors import Executor
from procs.executor import ProcessExecutor
from procs.flows import LIVENESS

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

ROOT = Path(__file__).resolve().parent.parent
LEASE = 3.0
N = 3000
TIMEOUT = 60


@pytest.fixture(autouse=True)
def short_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    """Children read their settings from the environment: a short lease there too."""
    monkeypatch.setenv("DATAGRAPH_LEASE", str(LEASE))
    monkeypatch.setenv("DATAGRAPH_READ_TIMEOUT", "0.25")


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file lv_source waits for halfway: a test creates it after its kill."""
    path = tmp_path / "gate"
    monkeypatch.setenv("DG_LV_GATE", str(path))
    return path


@pytest.fixture
def prefix() -> str:
    return f"dgtest-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def pids(tmp_path: Path) -> Iterator[Path]:
    """Where ProcessExecutors note their jobs' processes; all killed afterwards."""
    folder = tmp_path / "pids"
    folder.mkdir()
    yield folder
    for file in folder.iterdir():
        _kill(int(file.read_text()))


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _supervisor(url: str, prefix: str, executor: Executor | None = None) -> Supervisor:
    return Supervisor(redis_config={"url": url, "prefix": prefix}, executor=executor)


async def _until(
    holds: Callable[[], Awaitable[bool]], what: str, timeout: float = 15
) -> None:
    """Wait until ``holds()``: polling the store, as another process would."""
    with anyio.move_on_after(timeout):
        while not await holds():  # noqa: ASYNC110 - the store has no events
            await anyio.sleep(0.05)
        return
    pytest.fail(f"timed out after {timeout}s waiting until {what}")


@pytest.mark.parametrize("victim", ["lv_double", "lv_source"])
async def test_a_killed_job_is_taken_over_and_the_output_is_exact(
    redis_url: str,
    prefix: str,
    pids: Path,
    gate: Path,
    anyio_backend: str,
    victim: str,
) -> None:
    executor = ProcessExecutor(redis_url, prefix, anyio_backend, pids, takes_over=True)
    supervisor = _supervisor(redis_url, prefix, executor)
    try:
        with anyio.fail_after(TIMEOUT):
            run = await supervisor.start_flow(LIVENESS, inputs=[IOVal("lv_n", N)])

            async def mid_stream() -> bool:
                figures = (await run.snapshot()).streams["lv_numbers"]
                return figures.readers.get("lv_double", 0) >= N // 4

            await _until(mid_stream, "the consumer is mid-stream", 30)
            _kill(executor.pid(victim))
            killed = time.monotonic()
            await anyio.Path(gate).touch()

            async def taken_over() -> bool:
                return (await run.states())[victim].epoch == 1

            # The takeover is the store's part; starting a process, the
            # executor's, is measured by the benchmark suite.
            await _until(taken_over, "a peer took the job over", LEASE + 10)
            recovery = time.monotonic() - killed
            await run.wait()
            values = await run["lv_doubled"].collect()
            state = (await run.states())[victim]
            # Kept whole while read (a re-run reads from 0), freed once all read
            # (right after the reader ended its streams, which wait() saw).

            async def freed() -> bool:
                batch = await supervisor.store.read(run.id, "lv_numbers", 0, timeout=0)
                return not batch.chunks and batch.final is not None

            await _until(freed, "the consumed stream is freed")
    finally:
        executor.close()
        await supervisor.aclose()
    assert values == [2 * i for i in range(N)]  # nothing lost, nothing twice
    assert recovery <= LEASE + 5
    # Taken over once (a machine so loaded that a lease lapses again may take
    # it over once more: what matters is that each takeover was one).
    assert state.history
    assert {f.error_type for f in state.history} == {"Takeover"}


async def test_without_takeover_a_killed_consumer_fails_the_run_and_frees_its_producer(
    redis_url: str, prefix: str, pids: Path, gate: Path, anyio_backend: str
) -> None:
    # A window far below N: the producer is held back by its (dead) reader.
    executor = ProcessExecutor(redis_url, prefix, anyio_backend, pids, takes_over=False)
    supervisor = _supervisor(redis_url, prefix, executor)
    os.environ["DATAGRAPH_WINDOW"] = "100"
    try:
        with anyio.fail_after(TIMEOUT):
            run = await supervisor.start_flow(LIVENESS, inputs=[IOVal("lv_n", N)])

            async def mid_stream() -> bool:
                figures = (await run.snapshot()).streams["lv_numbers"]
                return figures.readers.get("lv_double", 0) >= 50

            await _until(mid_stream, "the consumer is mid-stream", 30)
            _kill(executor.pid("lv_double"))
            killed = time.monotonic()
            await anyio.Path(gate).touch()
            with pytest.raises(RunFailedError) as failed:
                await run.wait()
            noticed = time.monotonic() - killed

            async def produced() -> bool:
                return (await run.snapshot()).streams["lv_numbers"].ended

            await _until(produced, "the producer is done")
            written = (await run.snapshot()).streams["lv_numbers"].written
            status = await run.status()
    finally:
        del os.environ["DATAGRAPH_WINDOW"]
        executor.close()
        await supervisor.aclose()
    assert set(failed.value.errors) == {"lv_double"}
    assert failed.value.errors["lv_double"].error_type == "ProcessorLost"
    assert noticed <= LEASE + 5
    assert written == N  # the producer was not left blocked behind the dead reader
    assert status == "failed"


async def _datagraph(*args: str, url: str, prefix: str) -> str:
    """Run the ``datagraph`` command on the test's Redis; return what it printed."""
    env = {**os.environ, "DATAGRAPH_REDIS_URL": url, "DATAGRAPH_PREFIX": prefix}
    result = await anyio.run_process(
        [str(Path(sys.executable).parent / "datagraph"), *args], env=env
    )
    return result.stdout.decode()


async def _started_elsewhere(how: str, url: str, prefix: str, backend: str) -> str:
    """Run a child that starts the stalling flow and then dies or leaves."""
    result = await anyio.run_process(
        [sys.executable, "-m", "tests.procs.start", url, prefix, backend, how],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,  # dying of SIGKILL is what it means to do
    )
    assert result.returncode in (0, -signal.SIGKILL), result.stderr.decode()
    return result.stdout.decode().split()[0]


async def test_a_run_whose_starter_was_killed_is_reported_failed_within_the_lease(
    redis_url: str, prefix: str, anyio_backend: str
) -> None:
    async with _supervisor(redis_url, prefix) as supervisor:
        with anyio.fail_after(TIMEOUT):
            # The child starts a LocalExecutor run, prints its id, then kills itself.
            run_id = await _started_elsewhere("die", redis_url, prefix, anyio_backend)
            died = time.monotonic()
            run = await supervisor.get_run(run_id)
            with pytest.raises(RunFailedError) as failed:
                await run.wait()
            noticed = time.monotonic() - died
            status, errors = await run.status(), await run.errors()
        listed = await _datagraph("runs", "list", url=redis_url, prefix=prefix)
        shown = await _datagraph("runs", "show", run_id, url=redis_url, prefix=prefix)
    assert noticed <= LEASE + 2
    assert failed.value.errors["mp_stalling"].error_type == "ProcessorLost"
    assert status == "failed"
    assert set(errors) == {"mp_stalling"}
    # What people look at says so too.
    (row,) = [line for line in listed.splitlines() if run_id in line]
    assert "failed" in row
    assert "ProcessorLost" in shown


async def test_a_run_outliving_its_event_loop_is_reported_failed_within_the_lease(
    redis_url: str, prefix: str, anyio_backend: str
) -> None:
    async with _supervisor(redis_url, prefix) as supervisor:
        with anyio.fail_after(TIMEOUT):
            # The child's main() starts a run and returns: its loop ends, the run
            # not. (On asyncio its processor says so as it stops; on trio the
            # store cannot be reached any more by then, and the lease tells.)
            run_id = await _started_elsewhere("leave", redis_url, prefix, anyio_backend)
            ended = time.monotonic()
            run = await supervisor.get_run(run_id)
            with pytest.raises(RunFailedError) as failed:
                await run.wait()
            noticed = time.monotonic() - ended
            status = await run.status()
    assert noticed <= LEASE + 2
    assert status == "failed"
    assert failed.value.errors["mp_stalling"].error_type == "ProcessorLost"


async def test_a_deleted_run_is_not_found_rather_than_pending(
    redis_url: str, prefix: str, gate: Path, anyio_backend: str
) -> None:
    await anyio.Path(gate).touch()
    async with _supervisor(redis_url, prefix) as supervisor:
        with anyio.fail_after(TIMEOUT):
            run = await supervisor.start_flow(LIVENESS, inputs=[IOVal("lv_n", 5)])
            await run.wait()
            await supervisor.delete_run(run.id)
            with pytest.raises(RunNotFoundError):
                await run.status()
            with pytest.raises(RunNotFoundError):
                await supervisor.get_run(run.id)  # even though its plan is cached here
            with pytest.raises(RunNotFoundError):
                await run.wait()
