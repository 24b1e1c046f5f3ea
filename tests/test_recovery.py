"""Recovering from failures: resume, retry policies, dispatch timeouts, cancel.

Every test runs on both stores and both loops (the ``supervisor`` fixture).
"""

import itertools
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated

import anyio
import pytest
from rich.console import Console

from datagraph import (
    IO,
    Depends,
    IOVal,
    LocalExecutor,
    Processor,
    RunCancelledError,
    RunFailedError,
    Supervisor,
    viz,
)
from datagraph.cli._view import render_snapshot
from datagraph.exceptions import ExecutorError
from datagraph.executors import Executor
from datagraph.stores import Store
from helpers import start

pytestmark = pytest.mark.anyio

TIMEOUT = 20


def broken() -> bool:
    """Whether the flaky stage breaks (overridden per test)."""
    return False


rs_source = Processor(name="rs_source", inputs=["rs_n"], outputs=["rs_numbers"])
rs_flaky = Processor(name="rs_flaky", inputs=["rs_numbers"], outputs=["rs_tens"])
rs_after = Processor(name="rs_after", inputs=["rs_tens"], outputs=["rs_out"])
rs_total = Processor(name="rs_total", inputs=["rs_tens"], outputs=["rs_sum"], wait=True)


@rs_source
async def _rs_source(rs_n: IO[int]) -> AsyncIterator[int]:
    for i in range(await rs_n.first()):
        yield i


@rs_flaky
async def _rs_flaky(
    rs_numbers: IO[int], is_broken: Annotated[bool, Depends(broken)]
) -> AsyncIterator[int]:
    async for n in rs_numbers.stream():
        if n == 5 and is_broken:
            msg = "the flag is broken"
            raise RuntimeError(msg)
        yield n * 10


@rs_after
async def _rs_after(rs_tens: IO[int]) -> AsyncIterator[int]:
    async for n in rs_tens.stream():
        yield n + 1


@rs_total
async def _rs_total(rs_tens: IO[int]) -> int:
    return sum(await rs_tens.collect())


async def test_resume_runs_the_failed_processors_again_for_an_exact_output(
    supervisor: Supervisor,
) -> None:
    n = 50
    with anyio.fail_after(TIMEOUT):
        with supervisor.override(broken, lambda: True):
            run = await start(
                supervisor, rs_source, rs_flaky, rs_after, rs_total,
                inputs=[IOVal("rs_n", n)],
            )  # fmt: skip
            with pytest.raises(RunFailedError) as failed:
                await run.wait()
        assert set(failed.value.errors) == {"rs_flaky", "rs_after", "rs_total"}
        states = await run.states()
        assert states["rs_source"].status == "done"

        # The flag is mended: only what failed runs again.
        assert sorted(await run.resume()) == ["rs_after", "rs_flaky", "rs_total"]
        await run.wait()
        assert await run.status() == "succeeded"
        out = await run["rs_out"].collect()
        total = await run["rs_sum"].first()
        states = await run.states()
    assert out == [10 * i + 1 for i in range(n)]  # nothing lost, nothing twice
    assert total == sum(10 * i for i in range(n))
    assert states["rs_source"].epoch == 0  # done: not run again
    assert states["rs_flaky"].round == 1
    assert [f.message for f in states["rs_flaky"].history] == ["the flag is broken"]
    assert await run.resume() == []  # nothing left to resume


async def test_a_cancelled_run_resumes_where_it_stopped(supervisor: Supervisor) -> None:
    gate = anyio.Event()
    src = Processor(name="rs_gated", outputs=["rs_gated_out"])

    @src
    async def _gated() -> AsyncIterator[int]:
        for i in range(10):
            if i == 5:
                await gate.wait()
            yield i

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, src)
        async with aclosing(run["rs_gated_out"].stream()) as values:
            assert [await anext(values) for _ in range(5)] == [0, 1, 2, 3, 4]
        await run.cancel()
        with pytest.raises(RunCancelledError):
            await run.wait()
        errors = await run.errors()
        assert errors["rs_gated"].error_type == "Cancelled"  # not an internal error

        gate.set()
        assert await run.resume() == ["rs_gated"]
        await run.wait()
        assert await run.status() == "succeeded"
        assert await run["rs_gated_out"].collect() == list(range(10))


async def test_retries_back_off_and_every_attempt_is_recorded(
    supervisor: Supervisor,
) -> None:
    proc = Processor(
        name="rs_backoff",
        outputs=["rs_backoff_out"],
        retries=3,
        retry_delay=0.05,
        retry_backoff=2,
        retry_jitter=0,
    )
    calls: list[float] = []

    @proc
    async def _backoff() -> AsyncIterator[int]:
        calls.append(anyio.current_time())
        if len(calls) < 3:
            msg = f"attempt {len(calls)}"
            raise ConnectionError(msg)
        yield 1

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc)
        await run.wait()
        state = (await run.states())["rs_backoff"]
        figures = (await run.snapshot()).processors["rs_backoff"]
    waits = [b - a for a, b in itertools.pairwise(calls)]
    assert waits[0] >= 0.05
    assert waits[1] >= 0.1  # twice the first
    assert state.attempt == 3
    assert [f.message for f in state.history] == ["attempt 1", "attempt 2"]
    assert figures.attempt == 3


async def test_retry_on_limits_which_errors_are_retried(supervisor: Supervisor) -> None:
    proc = Processor(
        name="rs_retry_on",
        outputs=["rs_retry_on_out"],
        retries=5,
        retry_delay=0,
        retry_on=[ConnectionError],
    )
    calls: list[str] = []

    @proc
    async def _picky() -> AsyncIterator[int]:
        calls.append("called")
        yield len(calls)
        if len(calls) == 1:
            msg = "worth a retry"
            raise ConnectionError(msg)
        msg = "a bug: no retry mends it"
        raise ValueError(msg)

    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc)
        with pytest.raises(RunFailedError) as failed:
            await run.wait()
    assert len(calls) == 2
    assert failed.value.errors["rs_retry_on"].error_type == "ValueError"


def test_retry_on_takes_types_or_names_and_rejects_others() -> None:
    by_type = Processor(name="p", retry_on=[KeyError, "mylib.Flaky"])
    assert by_type.retry_on == ("builtins.KeyError", "mylib.Flaky")
    assert by_type.retries_on(KeyError())
    assert not by_type.retries_on(ValueError())
    assert Processor(name="p", retry_on=["KeyError"]) == Processor(
        name="p", retry_on=[KeyError]
    )
    with pytest.raises(TypeError, match="retry_on of processor 'p'"):
        Processor(name="p", retry_on=[42])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="retry_backoff >= 1"):
        Processor(name="p", retry_backoff=0.5)


class Unserved(Executor):
    """Sends jobs to a queue no worker consumes, as a missing service would."""

    def where(self, job: str) -> str:
        return f"queue 'nobody.{job}'"

    async def dispatch(self, run_id: str, job: str) -> None:
        return


async def test_a_processor_no_one_serves_waits_visibly_then_fails(
    store: Store,
) -> None:
    supervisor = Supervisor(store=store, executor=Unserved(), dispatch_timeout=3)
    proc = Processor(name="rs_unserved", outputs=["rs_unserved_out"])
    with anyio.fail_after(TIMEOUT):
        run = await start(supervisor, proc)
        state = (await run.states())["rs_unserved"]
        assert await run.status() == "pending"
        assert state.where == "queue 'nobody.rs_unserved'"
        assert state.dispatched is not None
        snapshot = await run.snapshot()
        assert snapshot.processors["rs_unserved"].where == state.where
        shown = render_snapshot(snapshot, viz.to_graph(run.plan))
        text = Console(width=200, record=True)
        text.print(shown)
        assert "waiting for a worker: queue 'nobody.rs_unserved'" in text.export_text()
        with pytest.raises(RunFailedError) as failed:
            await run.wait()
    error = failed.value.errors["rs_unserved"]
    assert error.error_type == "DispatchTimeout"
    assert "queue 'nobody.rs_unserved'" in error.message
    assert await run.status() == "failed"


def test_an_executor_serves_one_supervisor() -> None:
    executor = LocalExecutor()
    first = Supervisor(executor=executor)
    with pytest.raises(ExecutorError, match="already serves"):
        Supervisor(executor=executor)
    assert executor.supervisor is first
