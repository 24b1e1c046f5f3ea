"""Hand-written baselines: W3 without Datagraph, in process and over Redis."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio

from ._common import sum_check

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import ObjectReceiveStream, ObjectSendStream

#: Buffer of each anyio memory object stream of the in-process baseline.
STREAM_BUFFER = 128
#: Values per pipelined batch of XADDs (one stream entry per value) of the Redis one.
RAW_BATCH = 100


# ------------------------------------------------------------- anyio streams
async def _produce(n: int, send: ObjectSendStream[int]) -> None:
    async with send:
        for i in range(n):
            await send.send(i)


async def _stage(
    func: Callable[[int], int],
    receive: ObjectReceiveStream[int],
    send: ObjectSendStream[int],
) -> None:
    async with receive, send:
        async for x in receive:
            await send.send(func(x))


def _double(x: int) -> int:
    return x * 2


def _increment(x: int) -> int:
    return x + 1


async def streams_once(n: int) -> float:
    """W3 as three tasks joined by anyio memory object streams; return seconds."""
    start = time.perf_counter()
    send1, receive1 = anyio.create_memory_object_stream[int](STREAM_BUFFER)
    send2, receive2 = anyio.create_memory_object_stream[int](STREAM_BUFFER)
    send3, receive3 = anyio.create_memory_object_stream[int](STREAM_BUFFER)
    total = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(_produce, n, send1)
        tg.start_soon(_stage, _double, receive1, send2)
        tg.start_soon(_stage, _increment, receive2, send3)
        async with receive3:
            async for value in receive3:
                total += value
    elapsed = time.perf_counter() - start
    sum_check(total, n * n, f"anyio streams N={n}")
    return elapsed


async def streams_times(n: int, runs: int) -> list[float]:
    """Time ``runs`` runs of the anyio-streams W3, after a warm-up."""
    await streams_once(min(n, 1000))
    return [await streams_once(n) for _ in range(runs)]


async def _paced_source(
    count: int, rate: float, send: ObjectSendStream[list[float]]
) -> None:
    async with send:
        start = time.perf_counter()
        for i in range(count):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await anyio.sleep(delay)
            await send.send([i, time.perf_counter()])


async def _paced_stage(
    add: int,
    mul: int,
    receive: ObjectReceiveStream[list[float]],
    send: ObjectSendStream[list[float]],
) -> None:
    async with receive, send:
        async for x, stamp in receive:
            await send.send([x * mul + add, stamp])


async def streams_latency(count: int, rate: float, warmup: int) -> list[float]:
    """The paced W3 over anyio streams; return each value's latency (seconds)."""
    send1, receive1 = anyio.create_memory_object_stream[list[float]](STREAM_BUFFER)
    send2, receive2 = anyio.create_memory_object_stream[list[float]](STREAM_BUFFER)
    send3, receive3 = anyio.create_memory_object_stream[list[float]](STREAM_BUFFER)
    latencies = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(_paced_source, count, rate, send1)
        tg.start_soon(_paced_stage, 0, 2, receive1, send2)
        tg.start_soon(_paced_stage, 1, 1, receive2, send3)
        async with receive3:
            async for _, stamp in receive3:
                latencies.append(time.perf_counter() - stamp)
    return latencies[warmup:]


# --------------------------------------------------------------- raw Redis
_END = b"end"


async def _raw_client(url: str) -> Any:
    from glide import GlideClient, GlideClientConfiguration, NodeAddress

    host, _, rest = url.removeprefix("redis://").partition(":")
    port, _, db = rest.partition("/")
    config = GlideClientConfiguration(
        [NodeAddress(host, int(port))], database_id=int(db or 0), request_timeout=5000
    )
    return await GlideClient.create(config)


async def _raw_produce(url: str, key: str, n: int) -> None:
    from glide import Batch

    client = await _raw_client(url)
    try:
        for low in range(0, n, RAW_BATCH):
            batch = Batch(is_atomic=False)
            for i in range(low, min(n, low + RAW_BATCH)):
                batch.xadd(key, [("v", str(i))])
            await client.exec(batch, raise_on_error=True)
        await client.xadd(key, [(_END, b"1")])
    finally:
        await client.close()


async def _raw_read(client: Any, key: str, last: bytes) -> tuple[bytes, list[Any]]:
    from glide import StreamReadOptions

    options = StreamReadOptions(block_ms=1000, count=RAW_BATCH)
    while True:
        found = await client.xread({key: last}, options)
        if found:
            entries = found[key.encode()]
            ids = list(entries)
            return ids[-1], [entries[i] for i in ids]


async def _raw_stage(
    url: str, source: str, target: str, func: Callable[[int], int]
) -> None:
    from glide import Batch

    client = await _raw_client(url)
    last = b"0-0"
    try:
        while True:
            last, entries = await _raw_read(client, source, last)
            batch = Batch(is_atomic=False)
            ended = False
            for fields in entries:
                field, value = fields[0]
                if field == _END:
                    ended = True
                    batch.xadd(target, [(_END, b"1")])
                    break
                batch.xadd(target, [("v", str(func(int(value))))])
            await client.exec(batch, raise_on_error=True)
            if ended:
                return
    finally:
        await client.close()


async def _raw_consume(url: str, key: str) -> int:
    client = await _raw_client(url)
    last, total = b"0-0", 0
    try:
        while True:
            last, entries = await _raw_read(client, key, last)
            for fields in entries:
                field, value = fields[0]
                if field == _END:
                    return total
                total += int(value)
    finally:
        await client.close()


async def raw_redis_once(url: str, n: int, tag: str, *, stages: int = 0) -> float:
    """A producer/consumer pipe by hand on Redis streams; return seconds.

    The producer writes one stream entry per value with XADDs pipelined in
    batches of 100; the consumer reads up to 100 entries per XREAD BLOCK and sums
    them. With ``stages`` (1 or 2), W3's x*2 and x+1 run in between as their own
    tasks, each reading a batch of entries and writing them on with one pipelined
    batch of XADDs. Every task has its own valkey-glide client (a blocking XREAD
    holds its connection), all in this process.
    """
    keys = [f"rawbench:{tag}:{i}" for i in range(stages + 1)]
    funcs = [_double, _increment][:stages]
    start = time.perf_counter()
    total = 0

    async def consume() -> None:
        nonlocal total
        total = await _raw_consume(url, keys[-1])

    async with anyio.create_task_group() as tg:
        tg.start_soon(_raw_produce, url, keys[0], n)
        for i, func in enumerate(funcs):
            tg.start_soon(_raw_stage, url, keys[i], keys[i + 1], func)
        tg.start_soon(consume)
    elapsed = time.perf_counter() - start
    client = await _raw_client(url)
    try:
        await client.delete(keys)
    finally:
        await client.close()
    expected = n * (n - 1) // 2
    if stages >= 1:
        expected *= 2
    if stages == 2:
        expected += n
    sum_check(total, expected, f"raw Redis pipe N={n}")
    return elapsed


async def raw_redis_times(
    url: str, n: int, runs: int, *, stages: int = 0
) -> list[float]:
    """Time ``runs`` runs of the raw Redis pipe, after a warm-up."""
    await raw_redis_once(url, min(n, 1000), "warm", stages=stages)
    return [await raw_redis_once(url, n, str(i), stages=stages) for i in range(runs)]
