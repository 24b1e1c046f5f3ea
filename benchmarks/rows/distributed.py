"""W3 with each stage in a worker process of its own, on Celery and on Dramatiq.

The workload and its workers are ``benchmarks/distributed.py``'s. Celery's rows
have targets, against Celery chains of the same stages; Dramatiq's W3 rows are
figures for reference. Each engine's recovery row measures the time from SIGKILL
of a worker to its stage running again, against the lease.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._common import median
from ._base import (
    REFERENCE,
    Context,
    Sizes,
    Target,
    arun,
    at_most_ms,
    compared,
    log,
    n_,
    rate,
)
from .peers import celery_chains_rate

if TYPE_CHECKING:
    from .._common import Row

ENGINES = {"celery": "Celery", "dramatiq": "Dramatiq"}


def distributed_figures(s: Sizes) -> list[str]:
    from ..distributed import RECOVERY_LEASE

    figures = []
    for engine in ENGINES.values():
        chains = f" (chains: {n_(s.chains)})" if engine == "Celery" else ""
        figures += [
            f"W3, each stage in its own {engine} worker process, Redis store, "
            f"{n_(s.w3)}{chains}",
            f"time from start_flow to the first final value, W3 across {engine} "
            f"workers, {n_(s.first)}",
            f"time from SIGKILL of a {engine} worker to recovery, lease "
            f"{RECOVERY_LEASE:g} s",
        ]
    return figures


def distributed(ctx: Context) -> list[Row]:
    """W3 with a worker process per stage (issue 7), Celery's rows with targets."""
    figures = distributed_figures(ctx.sizes)
    rows = []
    for i, engine in enumerate(ENGINES):
        w3_figure, first_figure, kill_figure = figures[3 * i : 3 * i + 3]
        if ctx.want(w3_figure) or ctx.want(first_figure):
            rows += _w3_rows(ctx, engine, w3_figure, first_figure)
        if ctx.want(kill_figure):
            rows.append(_recovery_row(ctx, engine, kill_figure))
    return rows


def _w3_rows(ctx: Context, engine: str, w3_figure: str, first_figure: str) -> list[Row]:
    """W3's throughput and its first value across ``engine``'s stage workers."""
    from .. import distributed

    s = ctx.sizes
    log(f"distributed: W3 across {engine} workers")
    with distributed.stage_workers(engine, ctx.redis_url):
        seconds, firsts = arun(
            distributed.w3_times, engine, ctx.redis_url, s.w3, ctx.repeat, s.first
        )
    value, first = rate(s.w3, seconds), median(firsts) * 1000
    if engine != "celery":
        return [
            compared(w3_figure, value, "values/s", "-", None, REFERENCE),
            compared(first_figure, first, "ms after start_flow", "-", None, REFERENCE),
        ]
    ctx.celery()
    chains = celery_chains_rate(ctx)
    log("distributed: one Celery chain of 3 tasks")
    distributed.one_chain_seconds()  # warm-up
    one_chain = ctx.median_of(distributed.one_chain_seconds)
    return [
        compared(
            w3_figure,
            value,
            "values/s",
            "Celery, a chain of 3 tasks per value, 2 workers",
            chains,
            Target(">= 150,000/s and >= 1,000x", min_value=150_000, min_ratio=1000),
        ),
        compared(
            first_figure,
            first,
            "ms after start_flow",
            "one Celery chain of 3 tasks, to its result (polled every 5 ms)",
            one_chain * 1000,
            at_most_ms(100),
        ),
    ]


def _recovery_row(ctx: Context, engine: str, figure: str) -> Row:
    """SIGKILL of the worker running a stage, to that stage running again."""
    from .. import distributed

    log(f"distributed: SIGKILL to recovery, {engine}")
    kills = distributed.recovery_times(engine, ctx.redis_url, ctx.repeat)
    lease = distributed.RECOVERY_LEASE
    return compared(
        figure,
        median(kills),
        "s",
        "the lease (no heartbeat for this long: lost)",
        lease,
        Target(f"<= lease + 5 s ({lease + 5:g} s)", max_value=lease + 5),
    )
