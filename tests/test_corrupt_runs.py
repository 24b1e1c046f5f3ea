"""One corrupt run record never stops listing, showing or purging the others.

A run's record is corrupted through the public Store API (a plan or a processor
state that does not decode) on both stores, and on Redis also by overwriting its
metadata key with another type. The Python API, the ``runs`` commands and the
dashboard's API all keep working and name the bad run.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from typer.testing import CliRunner

from datagraph import (
    IO,
    Flow,
    IOVal,
    LocalExecutor,
    Processor,
    RunNotFoundError,
    Store,
    Supervisor,
)
from datagraph.cli import app
from datagraph.dashboard import create_app
from datagraph.exceptions import CorruptRunError
from datagraph.run import CorruptRun

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

TIMEOUT = 10
GARBAGE = b"\xc1 this is not msgpack"

squares = Processor(name="cr_squares", inputs=["cr_n"], outputs=["cr_squares"])


@squares
async def _squares(cr_n: IO[int]) -> AsyncIterator[int]:
    for i in range(await cr_n.first()):
        yield i * i


FLOW = Flow.from_processors(squares).resolve()


async def finished_runs(store: Store, count: int) -> list[str]:
    supervisor = Supervisor(store=store, executor=LocalExecutor())
    ids = []
    for n in range(count):
        run = await supervisor.start_flow(FLOW, inputs=[IOVal("cr_n", n + 2)])
        await run.wait()
        ids.append(run.id)
    return ids


def fresh(store: Store) -> Supervisor:
    """A supervisor that has never seen the runs (no plan in its cache)."""
    return Supervisor(store=store, executor=LocalExecutor())


# ---------------------------------------------------------------- the Python API


@pytest.mark.anyio
async def test_a_run_whose_plan_does_not_decode_is_listed_as_corrupt(
    store: Store,
) -> None:
    with anyio.fail_after(TIMEOUT):
        first, bad, last = await finished_runs(store, 3)
        await store.set_fields(bad, {"plan": GARBAGE})
        supervisor = fresh(store)
        runs = await supervisor.list_runs()
        assert [run.id for run in runs] == [first, bad, last]
        assert [await run.status() for run in runs] == [
            "succeeded",
            "corrupt",
            "succeeded",
        ]
        corrupt = runs[1]
        assert isinstance(corrupt, CorruptRun)
        assert corrupt.error.run_id == bad
        assert dict(corrupt) == {}
        for call in (corrupt.states, corrupt.snapshot, corrupt.wait, corrupt.cancel):
            with pytest.raises(CorruptRunError, match=bad):
                await call()
        with pytest.raises(CorruptRunError) as caught:
            await supervisor.get_run(bad)
        # The good ones read as ever.
        assert await runs[2]["cr_squares"].collect() == [0, 1, 4, 9]

        await supervisor.delete_run(bad)
        assert [run.id for run in await supervisor.list_runs()] == [first, last]
        with pytest.raises(RunNotFoundError):
            await supervisor.delete_run(bad)
    message = str(caught.value)
    assert f"run {bad} is corrupt: its plan does not decode" in message
    assert f"datagraph runs purge {bad}" in message
    assert caught.value.what == "plan"


@pytest.mark.anyio
async def test_a_processor_state_that_does_not_decode_makes_the_run_corrupt(
    store: Store,
) -> None:
    with anyio.fail_after(TIMEOUT):
        good, bad = await finished_runs(store, 2)
        await store.set_fields(bad, {"state:cr_squares": GARBAGE})
        supervisor = fresh(store)
        run = await supervisor.get_run(bad)
        assert await run.status() == "corrupt"
        with pytest.raises(CorruptRunError) as caught:
            await run.states()
        with pytest.raises(CorruptRunError):
            await run.snapshot()
        statuses = {r.id: await r.status() for r in await supervisor.list_runs()}
        assert statuses == {good: "succeeded", bad: "corrupt"}
        await supervisor.delete_run(bad)
        assert [r.id for r in await supervisor.list_runs()] == [good]
    assert "field 'state:cr_squares' does not decode" in str(caught.value)


@pytest.mark.anyio
@pytest.mark.redis
async def test_a_metadata_key_of_another_type_is_listed_as_corrupt(
    redis_url: str, redis_prefix: str, anyio_backend: str
) -> None:
    from conftest import delete_keys
    from datagraph import _keys
    from datagraph.stores.redis import RedisStore

    async with RedisStore(redis_url, prefix=redis_prefix) as store:
        try:
            with anyio.fail_after(TIMEOUT):
                good, bad = await finished_runs(store, 2)
                _, client = await store._client("overwrite a key")
                await client.set(_keys.meta_key(redis_prefix, bad), "a string")
                supervisor = fresh(store)
                runs = await supervisor.list_runs()
                assert [await r.status() for r in runs] == ["succeeded", "corrupt"]
                assert isinstance(runs[1], CorruptRun)
                assert "WRONGTYPE" in str(runs[1].error)
                await supervisor.delete_run(bad)
                assert [r.id for r in await supervisor.list_runs()] == [good]
        finally:
            await delete_keys(store)


# ------------------------------------------------------------------- the dashboard


@pytest.mark.anyio
async def test_the_dashboard_lists_a_corrupt_run_and_explains_it(
    store: Store,
) -> None:
    with anyio.fail_after(TIMEOUT):
        good, bad = await finished_runs(store, 2)
        await store.set_fields(bad, {"plan": GARBAGE})
        transport = httpx.ASGITransport(app=create_app(fresh(store)))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://localhost"
        ) as c:
            listing = await c.get("/api/runs")
            detail = await c.get(f"/api/runs/{bad}")
            events = await c.get(f"/api/runs/{bad}/events")
            other = await c.get(f"/api/runs/{good}")
    assert listing.status_code == 200
    runs = {run["id"]: run for run in listing.json()["runs"]}
    assert runs[good]["status"] == "succeeded"
    assert runs[good]["error"] is None
    assert runs[bad]["status"] == "corrupt"
    assert f"run {bad} is corrupt" in runs[bad]["error"]
    assert detail.status_code == 500
    assert f"run {bad} is corrupt" in detail.json()["error"]
    assert events.status_code == 500
    assert other.status_code == 200


@pytest.mark.anyio
async def test_the_dashboard_ends_the_events_of_a_run_that_turns_corrupt(
    store: Store,
) -> None:
    with anyio.fail_after(TIMEOUT):
        [bad] = await finished_runs(store, 1)
        supervisor = fresh(store)
        await supervisor.get_run(bad)  # the plan is known; then a state breaks
        await store.set_fields(bad, {"state:cr_squares": GARBAGE})
        transport = httpx.ASGITransport(app=create_app(supervisor))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://localhost"
        ) as c:
            events = await c.get(f"/api/runs/{bad}/events")
    assert events.status_code == 200
    assert "event: failure" in events.text
    assert f"run {bad} is corrupt" in events.text
    assert "event: snapshot" not in events.text


# ------------------------------------------------------------------ the commands

runner = CliRunner()


@pytest.fixture
def redis_env(redis_url: str, redis_prefix: str) -> Iterator[dict[str, str]]:
    yield {"DATAGRAPH_REDIS_URL": redis_url, "DATAGRAPH_PREFIX": redis_prefix}
    from conftest import delete_keys
    from datagraph.stores.redis import RedisStore

    async def clean() -> None:
        async with RedisStore(redis_url, prefix=redis_prefix) as store:
            await delete_keys(store)

    anyio.run(clean)


def corrupt_store(env: dict[str, str], backend: str) -> tuple[str, str]:
    """Make two finished runs in the store; corrupt the second one's plan."""
    from datagraph.stores.redis import RedisStore

    async def make() -> tuple[str, str]:
        url, prefix = env["DATAGRAPH_REDIS_URL"], env["DATAGRAPH_PREFIX"]
        async with RedisStore(url, prefix=prefix) as store:
            good, bad = await finished_runs(store, 2)
            await store.set_fields(bad, {"plan": GARBAGE})
        return good, bad

    return anyio.run(make, backend=backend)


def invoke(env: dict[str, str], *args: str, stdin: str | None = None) -> Any:
    result = runner.invoke(app, list(args), env=env, input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.mark.redis
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_runs_list_show_and_purge_get_past_a_corrupt_run(
    redis_env: dict[str, str], backend: str
) -> None:
    good, bad = corrupt_store(redis_env, backend)
    b = ("--backend", backend)

    listed = invoke(redis_env, "runs", "list", *b)
    assert listed.exit_code == 0, listed.stderr
    assert re.search(rf"{good} .* succeeded +1/1", listed.stdout)
    assert re.search(rf"{bad} .* corrupt +-", listed.stdout)
    assert "2 run(s) in" in listed.stdout
    assert "1 corrupt run(s)" in listed.stdout
    assert f"datagraph runs purge {bad}" in listed.stdout

    shown = invoke(redis_env, "runs", "show", bad, *b)
    assert shown.exit_code == 1
    assert shown.stdout == ""
    assert shown.stderr.startswith(f"Error: run {bad} is corrupt: its plan")
    assert len(shown.stderr.splitlines()) == 1
    assert invoke(redis_env, "runs", "show", good, *b).exit_code == 0
    for command in (["runs", "cancel"], ["watch"]):
        refused = invoke(redis_env, *command, bad, *b)
        assert refused.exit_code == 1
        assert refused.stderr.startswith(f"Error: run {bad} is corrupt")

    # --finished leaves the corrupt run (nobody can tell it ended) and says so.
    purged = invoke(redis_env, "runs", "purge", "--finished", "--yes", *b)
    assert purged.exit_code == 0, purged.stderr
    assert purged.stdout.startswith("Deleted 1 run from")
    assert "Left 1 corrupt run(s)" in purged.stderr
    assert f"datagraph runs purge {bad}" in purged.stderr

    purged = invoke(redis_env, "runs", "purge", bad, *b)
    assert purged.exit_code == 0, purged.stderr
    assert purged.stdout.startswith("Deleted 1 run from")
    assert invoke(redis_env, "runs", "list", *b).stdout.startswith("No runs in")


@pytest.mark.redis
def test_runs_purge_all_deletes_corrupt_runs_too(redis_env: dict[str, str]) -> None:
    corrupt_store(redis_env, "asyncio")
    purged = invoke(redis_env, "runs", "purge", "--all", "--yes")
    assert purged.exit_code == 0, purged.stderr
    assert purged.stdout.startswith("Deleted 2 runs from")
    assert invoke(redis_env, "runs", "list").stdout.startswith("No runs in")
