"""Runs seen from other processes attached to the same Redis."""

import os
import sys
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Annotated

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from datagraph import IO, Depends, Flow, IOVal, Processor, Supervisor, UpstreamError

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 20


@pytest.fixture
def prefix() -> str:
    return f"dgtest-{uuid.uuid4().hex[:8]}"


async def _lines(process: Process) -> AsyncGenerator[str]:
    assert process.stdout is not None
    pending = ""
    async for text in TextReceiveStream(process.stdout):
        pending += text
        *lines, pending = pending.split("\n")
        for line in lines:
            yield line


async def _child(module: str, *args: str) -> Process:
    return await anyio.open_process(
        [sys.executable, "-m", f"tests.procs.{module}", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def get_go() -> anyio.Event:
    """Set once the other process saw the first half (each test gives its own)."""
    raise NotImplementedError("each test overrides get_go")


halting = Processor(name="mp_halting", inputs=["mp_count"], outputs=["mp_ticks"])


@halting
async def _halting(
    mp_count: IO[int], go: Annotated[anyio.Event, Depends(get_go)]
) -> AsyncIterator[int]:
    count = await mp_count.first()
    for i in range(count // 2):
        yield i
    await go.wait()  # the second half only once the other process saw the first
    for i in range(count // 2, count):
        yield i


async def test_another_process_finds_a_run_by_id_and_streams_it(
    redis_url: str, prefix: str, anyio_backend: str
) -> None:
    go = anyio.Event()
    supervisor = Supervisor(redis_config={"url": redis_url, "prefix": prefix})
    flow = Flow.from_processors(halting).resolve()
    with supervisor.override(get_go, lambda: go), anyio.fail_after(TIMEOUT):
        run = await supervisor.start_flow(flow, inputs=[IOVal("mp_count", 10)])
        async with await _child(
            "read", redis_url, prefix, run.id, "mp_ticks", anyio_backend
        ) as child:
            seen: list[str] = []
            async with aclosing(_lines(child)) as lines:
                async for line in lines:
                    seen.append(line)
                    if len(seen) == 5:
                        # The reader got the first half while the run still goes.
                        assert await run.status() == "running"
                        go.set()
                    if line == "end":
                        break
            assert await child.wait() == 0
    assert seen == [str(i) for i in range(10)] + ["end"]
    await supervisor.store.delete_run(run.id)
    await supervisor.aclose()


async def test_a_reader_learns_that_its_producer_process_died(
    redis_url: str, prefix: str, anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Short leases so that the loss shows within seconds (both processes).
    monkeypatch.setenv("DATAGRAPH_LEASE", "1")
    monkeypatch.setenv("DATAGRAPH_READ_TIMEOUT", "0.2")
    supervisor = Supervisor(redis_config={"url": redis_url, "prefix": prefix})
    with anyio.fail_after(TIMEOUT):
        async with await _child("produce", redis_url, prefix, anyio_backend) as child:
            async with aclosing(_lines(child)) as lines:
                run_id = await anext(lines)
            run = await supervisor.get_run(run_id)
            async with aclosing(run["mp_values"].stream()) as values:
                assert [await anext(values) for _ in range(3)] == [0, 1, 2]
                child.kill()  # the worker dies without a word
                await child.wait()
                with pytest.raises(UpstreamError) as caught:
                    await anext(values)
    assert caught.value.processor == "mp_stalling"
    assert caught.value.error_type == "ProcessorLost"
    assert "heartbeat" in caught.value.message
    await supervisor.store.delete_run(run_id)
    await supervisor.aclose()
