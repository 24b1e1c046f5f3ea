"""Property tests of reading stored entries, whatever they hold (hypothesis).

Through the public Store API on both stores: entries whose count, payload or both
are wrong are read as exactly the values written or raise a Datagraph error, never
another exception and never a stream silently shorter or longer than its entries
claim. On Redis, raw stream entries with arbitrary fields (someone else's data
under Datagraph's keys) are read the same way.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datagraph import (
    IO,
    DatagraphError,
    Flow,
    IOVal,
    LocalExecutor,
    MsgpackSerializer,
    Processor,
    Run,
    Store,
    Supervisor,
)

TIMEOUT = 10
#: A read of a handful of entries takes milliseconds; a hang is a failure.
HANG = 5
FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

holder = Processor(name="fze_holder", inputs=["fze_in"], outputs=["fze_out"])


@holder
async def _holder(fze_in: IO[int]) -> None:
    await fze_in.collect()


FLOW = Flow.from_processors(holder).resolve()

#: An entry as appended: the count it claims, and the values its payload holds
#: (or raw bytes instead of a payload).
entries = st.lists(
    st.tuples(
        st.integers(1, 6),
        st.lists(st.integers(-5, 5), max_size=7) | st.binary(max_size=20),
    ),
    min_size=1,
    max_size=6,
)


async def finished_run(store: Store) -> tuple[Supervisor, Run]:
    supervisor = Supervisor(store=store, executor=LocalExecutor())
    run = await supervisor.start_flow(
        FLOW, inputs=[IOVal("fze_in", 1)], all_outputs=True
    )
    await run.wait()
    return supervisor, run


@pytest.mark.anyio
@FUZZ
@given(written=entries)
async def test_entries_read_as_what_they_hold_or_a_datagraph_error(
    store: Store, written: list[tuple[int, list[int] | bytes]]
) -> None:
    serializer = MsgpackSerializer()
    with anyio.fail_after(TIMEOUT):
        _, run = await finished_run(store)
        await store.delete_run(run.id)
        start, expected, honest = 0, [], True
        for count, held in written:
            data = held if isinstance(held, bytes) else serializer.encode(held)
            await store.append(run.id, "fze_out", start, count, data)
            start += count
            if isinstance(held, bytes) or len(held) != count:
                honest = False
            else:
                expected += held
        await store.end_stream(run.id, "fze_out")
        try:
            got = await run["fze_out"].collect()
        except DatagraphError:
            assert not honest, "a stream of sound entries failed to read"
            return
    assert honest, f"read {got} from entries that do not hold what they claim"
    assert got == expected


fields = st.sampled_from([b"n", b"d", b"end", b"error", b"x"])
field_values = (
    st.integers(-3, 10).map(lambda i: str(i).encode())
    | st.binary(max_size=12)
    | st.lists(st.integers(-9, 9), max_size=3).map(MsgpackSerializer().encode)
)
raw_entries = st.lists(
    st.lists(st.tuples(fields, field_values), min_size=1, max_size=4),
    min_size=1,
    max_size=5,
)


@pytest.mark.anyio
@pytest.mark.redis
@FUZZ
@given(raw=raw_entries, gaps=st.lists(st.integers(1, 4), min_size=5, max_size=5))
async def test_raw_redis_entries_read_as_values_or_a_datagraph_error(
    redis_url: str,
    redis_prefix: str,
    anyio_backend: str,
    raw: list[list[tuple[bytes, bytes]]],
    gaps: list[int],
) -> None:
    from conftest import delete_keys
    from datagraph import _keys
    from datagraph.stores.redis import RedisStore

    async with RedisStore(redis_url, prefix=redis_prefix) as store:
        try:
            with anyio.fail_after(HANG):
                _, run = await finished_run(store)
                await store.delete_run(run.id)
                # Entries as a foreign writer might leave them under the key.
                await store.append(
                    run.id, "fze_out", 0, 1, MsgpackSerializer().encode([7])
                )
                _, client = await store._client("write raw entries")
                key = _keys.stream_key(redis_prefix, run.id, "fze_out")
                stop = 1
                for gap, pairs in zip(gaps, raw, strict=False):
                    stop += gap
                    args: list[str | bytes] = ["XADD", key, f"{stop}-0"]
                    for name, value in pairs:
                        args += [name, value]
                    await client.custom_command(args)
                values = await _read_all(run["fze_out"])
        finally:
            await delete_keys(store)
    if values is not None:
        assert values[:1] == [7]


async def _read_all(io: IO[Any]) -> list[Any] | None:
    """Read a stream to its end; None when it fails with a Datagraph error."""
    values: list[Any] = []
    try:
        async for value in io.stream():
            values.append(value)
            if len(values) > 100:  # a stream this size was never written
                pytest.fail(f"read more values than were written: {values[:10]}...")
    except DatagraphError:
        return None
    return values
