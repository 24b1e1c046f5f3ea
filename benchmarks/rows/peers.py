"""Datagraph against its peers: async-graph-data-flow and Celery, on W3 and the ETL.

The peers are ``benchmarks/agdf.py`` (in process) and ``benchmarks/celery_peer.py``
(2 Celery worker processes, started by the first group that needs them); the ETL
workload, shared by every system, is ``benchmarks/etl.py``.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from .._common import median
from ._base import (
    REFERENCE,
    Context,
    Sizes,
    Target,
    alternate_rates,
    arun,
    at_least_x,
    at_most_ms,
    compared,
    log,
    n_,
    one_run,
    rate,
)
from .in_process import w3_redis_rate

if TYPE_CHECKING:
    from .._common import Row

ETL_IO_DELAY = 0.001  # seconds of simulated I/O per extracted record


def etl_source(ctx: Context, n: int) -> str:
    """A file of ``n`` ETL records, written once per suite run."""
    from .. import etl

    def write() -> str:
        path = ctx.path(f"records-{n}.jsonl")
        etl.write_records(path, n)
        return path

    return ctx.memo(f"etl-source-{n}", write)


def datagraph_etl(ctx: Context, url: str | None, source: str, n: int) -> float:
    """One timed ETL run on Datagraph (after a warm-up), in a fresh event loop."""
    from .. import etl, flows

    small = etl_source(ctx, 1000)

    async def once() -> float:
        async with flows.make_supervisor(url) as supervisor:
            await etl.etl_throughput(supervisor, small, 1000, ctx.path("warm.db"))
            return await etl.etl_throughput(supervisor, source, n, ctx.path("dg.db"))

    return arun(once)


def celery_chains_rate(ctx: Context) -> float:
    """W3 through Celery chains (values/s), measured once per suite run."""
    from .. import celery_peer

    def measure() -> float:
        n = ctx.sizes.chains
        ctx.celery()
        log(f"Celery chains, {n_(n)}")
        celery_peer.w3_chains_once(min(n, 20))  # warm-up
        return rate(n, [celery_peer.w3_chains_once(n) for _ in range(ctx.repeat)])

    return ctx.memo("celery-chains", measure)


def agdf_figures(s: Sizes) -> list[str]:
    return [
        f"W3 vs async-graph-data-flow, memory store, {n_(s.peer)}",
        f"ETL vs async-graph-data-flow, memory store, {n_(s.peer)} records",
    ]


def agdf(ctx: Context) -> list[Row]:
    from .. import agdf, flows

    s, rows = ctx.sizes, []
    w3_figure, etl_figure = agdf_figures(s)
    if ctx.want(w3_figure):

        def agdf_w3() -> float:
            (seconds,) = agdf.w3_times(s.peer, 1)
            return seconds

        base, value = alternate_rates(
            ctx,
            w3_figure,
            {"async-graph-data-flow": (s.peer, agdf_w3),
             "Datagraph": (s.peer, one_run(flows.w3_times, None, s.peer))},
        )  # fmt: skip
        rows.append(
            compared(
                w3_figure,
                value,
                "values/s",
                "async-graph-data-flow",
                base,
                at_least_x(3),
            )
        )
    if ctx.want(etl_figure):
        source = etl_source(ctx, s.peer)
        small = etl_source(ctx, 1000)

        def agdf_etl() -> float:
            agdf.etl_once(small, 1000, ctx.path("warm.db"))
            seconds, _ = agdf.etl_once(source, s.peer, ctx.path("agdf.db"))
            return seconds

        base, value = alternate_rates(
            ctx,
            etl_figure,
            {"async-graph-data-flow": (s.peer, agdf_etl),
             "Datagraph": (s.peer, functools.partial(
                 datagraph_etl, ctx, None, source, s.peer))},
        )  # fmt: skip
        rows.append(
            compared(
                etl_figure,
                value,
                "records/s",
                "async-graph-data-flow",
                base,
                at_least_x(3),
            )
        )
    return rows


def first_figures(s: Sizes) -> list[str]:
    return [
        f"time to first final value, W3, {store} store, {n_(s.first)}"
        for store in ("memory", "Redis")
    ]


def first(ctx: Context) -> list[Row]:
    from .. import celery_peer, flows

    s = ctx.sizes
    values = {}
    for store, figure in zip(("memory", "Redis"), first_figures(s), strict=True):
        if ctx.want(figure):
            log(f"{figure}: Datagraph")
            first_values = functools.partial(flows.w3_times, first=True)
            values[store, figure] = (
                median(arun(first_values, ctx.url(store), s.first, ctx.repeat)) * 1000
            )
    if not values:
        return []
    ctx.celery()
    log(f"time to first final value: Celery staged, {n_(s.first)}")
    celery_peer.w3_staged_once(min(s.first, 1000))
    base = ctx.median_of(lambda: celery_peer.w3_staged_once(s.first)) * 1000
    limits = {"memory": 10.0, "Redis": 50.0}
    return [
        compared(
            figure,
            value,
            "ms after start_flow returns",
            "Celery staged, a task per stage (first value = whole run)",
            base,
            at_most_ms(limits[store]),
        )
        for (store, figure), value in values.items()
    ]


def celery_w3_figures(s: Sizes) -> list[str]:
    return [
        f"W3 vs Celery chains, Redis store, {n_(s.w3)} (chains: {n_(s.chains)})",
        f"W3 vs Celery staged, Redis store, {n_(s.w3)} (staged: {n_(s.staged)})",
    ]


def celery_w3(ctx: Context) -> list[Row]:
    from .. import celery_peer

    s, rows = ctx.sizes, []
    chains_figure, staged_figure = celery_w3_figures(s)
    log("W3 vs Celery: Datagraph, Redis store")
    value = w3_redis_rate(ctx)
    ctx.celery()
    if ctx.want(chains_figure):
        rows.append(
            compared(
                chains_figure,
                value,
                "values/s",
                "Celery, a chain of 3 tasks per value, 2 worker processes",
                celery_chains_rate(ctx),
                at_least_x(100),
            )
        )
    if ctx.want(staged_figure):
        log(f"{staged_figure}: Celery staged")
        base = rate(
            s.staged, [celery_peer.w3_staged_once(s.staged) for _ in range(ctx.repeat)]
        )
        rows.append(
            compared(
                staged_figure,
                value,
                "values/s",
                "Celery, a task per stage over the whole list",
                base,
                REFERENCE,
            )
        )
    return rows


def celery_etl_figures(s: Sizes) -> list[str]:
    return [
        f"ETL vs Celery chains, Redis store, {n_(s.peer)} records "
        f"(chains: {n_(s.chains)})",
        f"ETL time to first loaded record, 1 ms I/O per record, memory store, "
        f"{n_(s.etl_io)}",
        f"ETL time to first loaded record, 1 ms I/O per record, Redis store, "
        f"{n_(s.etl_io)}",
    ]


def celery_etl(ctx: Context) -> list[Row]:
    s = ctx.sizes
    chains_figure, *first_figures = celery_etl_figures(s)
    rows = [_etl_chains_row(ctx, chains_figure)] if ctx.want(chains_figure) else []
    wanted = [f for f in first_figures if ctx.want(f)]
    return rows + (_etl_first_rows(ctx, wanted) if wanted else [])


def _etl_chains_row(ctx: Context, figure: str) -> Row:
    """ETL throughput on Redis against Celery chains of its steps."""
    from .. import celery_peer

    s = ctx.sizes
    source = etl_source(ctx, s.peer)
    log(f"{figure}: Datagraph, Redis store")
    seconds = [
        datagraph_etl(ctx, ctx.redis_url, source, s.peer) for _ in range(ctx.repeat)
    ]
    ctx.celery()
    log(f"{figure}: Celery chains")
    small = etl_source(ctx, s.chains)
    base = rate(
        s.chains,
        [
            celery_peer.etl_chains_once(small, s.chains, ctx.path("celery.db"))
            for _ in range(ctx.repeat)
        ],
    )
    return compared(
        figure,
        rate(s.peer, seconds),
        "records/s",
        "Celery, a chain of parse, transform, load per record, 2 workers",
        base,
        at_least_x(100),
    )


def _etl_first_rows(ctx: Context, figures: list[str]) -> list[Row]:
    """ETL with 1 ms of I/O per record: time to the first loaded record."""
    from .. import celery_peer, etl, flows

    s = ctx.sizes
    source = etl_source(ctx, s.etl_io)
    values = {}
    for figure in figures:
        url = ctx.redis_url if "Redis" in figure else None
        log(f"{figure}: Datagraph")

        async def first(url: str | None = url) -> list[float]:
            async with flows.make_supervisor(url) as supervisor:
                return [
                    await etl.etl_first_loaded(
                        supervisor, source, ETL_IO_DELAY, ctx.path("first.db")
                    )
                    for _ in range(ctx.repeat + 1)
                ][1:]  # the first run warms up

        values[figure] = median(arun(first)) * 1000
    ctx.celery()
    log(f"ETL time to first loaded record: Celery staged, {n_(s.etl_io)}")

    def staged() -> float:
        path = ctx.path("staged.db")
        return celery_peer.etl_staged_once(source, s.etl_io, path, ETL_IO_DELAY)

    base = ctx.median_of(staged) * 1000
    return [
        compared(
            figure,
            value,
            "ms after start",
            "Celery staged: extract, parse, transform, load tasks",
            base,
            Target("<= 1/100 of the baseline", max_ratio=0.01),
        )
        for figure, value in values.items()
    ]
