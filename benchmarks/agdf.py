"""The async-graph-data-flow peer (PyPI), in process, on its own asyncio loop.

Written the way its documentation shows: every node is an async generator
function, called once per item its upstream yields, joined by the library's
default (unbounded) ``asyncio.Queue``s. ``AsyncExecutor.execute()`` runs
``asyncio.run`` itself, so these functions are called outside any event loop.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import etl
from ._common import sum_check

_NOTHING: tuple[None, ...] = ()

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator


def w3_once(n: int) -> float:
    """W3 on async-graph-data-flow; return seconds (the sum is checked)."""
    from async_graph_data_flow import AsyncExecutor, AsyncGraph

    total = 0

    async def source() -> AsyncGenerator[int]:
        for i in range(n):
            yield i

    async def double(x: int) -> AsyncGenerator[int]:
        yield x * 2

    async def increment(x: int) -> AsyncGenerator[int]:
        yield x + 1

    async def consume(x: int) -> AsyncGenerator[None]:
        nonlocal total
        total += x
        for nothing in _NOTHING:  # an async generator that yields nothing: a sink
            yield nothing

    graph = AsyncGraph(halt_on_exception=True)
    for node in (source, double, increment, consume):
        graph.add_node(node)
    graph.add_edge("source", "double")
    graph.add_edge("double", "increment")
    graph.add_edge("increment", "consume")
    start = time.perf_counter()
    AsyncExecutor(graph).execute()
    elapsed = time.perf_counter() - start
    sum_check(total, n * n, f"async-graph-data-flow W3 N={n}")
    return elapsed


def w3_times(n: int, runs: int) -> list[float]:
    """Time ``runs`` runs of W3, after a warm-up."""
    w3_once(min(n, 1000))
    return [w3_once(n) for _ in range(runs)]


def etl_once(
    source: str, n: int, path: str, io_delay: float = 0.0
) -> tuple[float, float]:
    """ETL of ``source`` (``n`` records) on async-graph-data-flow.

    Returns (seconds, seconds to the first commit); the database is checked.
    """
    import asyncio

    from async_graph_data_flow import AsyncExecutor, AsyncGraph

    db = etl.open_db(path)
    buffer: list[list[Any]] = []
    first: list[float] = []

    def commit() -> None:
        etl.insert(db, buffer)
        buffer.clear()
        if not first:
            first.append(time.perf_counter())

    async def extract() -> AsyncGenerator[str]:
        for raw in etl.read_records(source):
            if io_delay:
                await asyncio.sleep(io_delay)
            yield raw

    async def parse(raw: str) -> AsyncGenerator[dict[str, Any]]:
        yield etl.parse(raw)

    async def transform(record: dict[str, Any]) -> AsyncGenerator[list[Any]]:
        yield etl.transform(record)

    async def load(row: list[Any]) -> AsyncGenerator[None]:
        buffer.append(row)
        if len(buffer) >= 100:  # a transaction per 100 rows
            commit()
        for nothing in _NOTHING:
            yield nothing

    graph = AsyncGraph(halt_on_exception=True)
    for node in (extract, parse, transform, load):
        graph.add_node(node, unpack_input=False)
    graph.add_edge("extract", "parse")
    graph.add_edge("parse", "transform")
    graph.add_edge("transform", "load")
    start = time.perf_counter()
    try:
        AsyncExecutor(graph).execute()
        if buffer:
            commit()
    finally:
        db.close()
    elapsed = time.perf_counter() - start
    etl.check_db(path, n)
    return elapsed, first[0] - start
