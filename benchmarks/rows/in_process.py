"""Datagraph in one process against its own baselines: W3, latency, memory, scale-out.

The workloads are ``benchmarks/flows.py``'s; the baselines are
``benchmarks/baselines.py``'s (anyio memory-object streams, a raw Redis pipe) or
Datagraph itself (unwatched, one instance, a smaller N).
"""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING

from .._common import median, percentile, redis_server
from ._base import (
    BACKENDS,
    Context,
    Sizes,
    Target,
    alternate,
    alternate_rates,
    arun,
    at_most_ms,
    compared,
    growth,
    n_,
    one_run,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._common import Row

LATENCY_RATE = 1000.0  # values/s the paced source emits


def w3_memory_figures(s: Sizes) -> list[str]:
    return [f"W3 throughput, memory store, {b}, {n_(s.w3)}" for b in BACKENDS]


def w3_memory(ctx: Context) -> list[Row]:
    from .. import baselines, flows

    s, rows = ctx.sizes, []
    floors = {"asyncio": 500_000, "trio": 400_000}
    for backend, figure in zip(BACKENDS, w3_memory_figures(s), strict=True):
        if not ctx.want(figure):
            continue
        streams = one_run(baselines.streams_times, s.streams, backend=backend)
        datagraph = one_run(flows.w3_times, None, s.w3, backend=backend)
        base, value = alternate_rates(
            ctx,
            figure,
            {f"anyio streams, {n_(s.streams)}": (s.streams, streams),
             "Datagraph": (s.w3, datagraph)},
        )  # fmt: skip
        floor = floors[backend]
        rows.append(
            compared(
                figure,
                value,
                "values/s",
                f"anyio memory-object-stream pipeline, {backend} ({n_(s.streams)})",
                base,
                Target(f">= {floor:,}/s and >= 20x", min_value=floor, min_ratio=20),
            )
        )
    return rows


def w3_redis_figures(s: Sizes) -> list[str]:
    return [f"W3 throughput, Redis store, one process, {n_(s.w3)}"]


def w3_redis_run(ctx: Context) -> Callable[[], float]:
    """A measure: one timed run of W3 on the Redis store (after a warm-up)."""
    from .. import flows

    return one_run(flows.w3_times, ctx.redis_url, ctx.sizes.w3)


def w3_redis_rate(ctx: Context) -> float:
    """W3's rate on the Redis store, measured once per suite run."""
    measure = w3_redis_run(ctx)
    return ctx.memo("w3-redis", lambda: ctx.sizes.w3 / ctx.median_of(measure))


def w3_redis(ctx: Context) -> list[Row]:
    from .. import baselines

    s = ctx.sizes
    (figure,) = w3_redis_figures(s)
    raw = one_run(baselines.raw_redis_times, ctx.redis_url, s.raw)
    base, measured = alternate_rates(
        ctx,
        figure,
        {f"raw producer/consumer pipe, {n_(s.raw)}": (s.raw, raw),
         "Datagraph": (s.w3, w3_redis_run(ctx))},
    )  # fmt: skip
    value = ctx.memo("w3-redis", lambda: measured)
    return [
        compared(
            figure,
            value,
            "values/s",
            "raw Redis producer/consumer pipe, an entry per value, batches of "
            f"100 ({n_(s.raw)})",
            base,
            Target(">= 200,000/s and >= 2.5x", min_value=200_000, min_ratio=2.5),
        )
    ]


def watched_figures(s: Sizes) -> list[str]:
    return [f"W3 throughput watched live (a snapshot every 100 ms), Redis, {n_(s.w3)}"]


def watched(ctx: Context) -> list[Row]:
    """What live figures cost a run: W3 with a watcher polling, against without.

    Recording the figures costs nothing extra per value by design: stream lengths
    come with appends and reader cursors with reads (the same Lua call), so the
    only added work is the watcher's own reads, measured here.
    """
    from .. import flows

    s = ctx.sizes
    (figure,) = watched_figures(s)
    watched_w3 = functools.partial(flows.w3_times, watch=0.1)
    base, value = alternate_rates(
        ctx,
        figure,
        {"unwatched": (s.w3, w3_redis_run(ctx)),
         "watched": (s.w3, one_run(watched_w3, ctx.redis_url, s.w3))},
    )  # fmt: skip
    return [
        compared(
            figure,
            value,
            "values/s",
            "the same runs without a watcher",
            base,
            Target(">= 0.9x (watching costs the run under 10%)", min_ratio=0.9),
        )
    ]


def latency_figures(s: Sizes) -> list[str]:
    return [
        f"latency {q}, {store} store, 1,000 values/s"
        for store in ("memory", "Redis")
        for q in ("p50", "p99")
    ]


def latency(ctx: Context) -> list[Row]:
    from .. import baselines, flows

    s = ctx.sizes
    warmup = s.latency // 20  # values while the processors start
    figures = latency_figures(s)
    pairs = {"memory": figures[:2], "Redis": figures[2:]}
    stores = [store for store, pair in pairs.items() if any(map(ctx.want, pair))]
    if not stores:
        return []

    def measure(store: str) -> Callable[[], list[float]]:
        if store == "anyio":
            return lambda: arun(
                baselines.streams_latency, s.latency, LATENCY_RATE, warmup
            )
        url = ctx.url(store)
        return lambda: arun(flows.latency_run, url, s.latency, LATENCY_RATE, warmup)

    runs = alternate(
        ctx.repeat,
        f"latency, {s.latency:,} values at 1,000/s",
        {store: measure(store) for store in ("anyio", *stores)},
    )

    def quantile(store: str, q: float) -> float:
        return median([percentile(r, q) for r in runs[store]]) * 1000

    base_p50, base_p99 = quantile("anyio", 50), quantile("anyio", 99)
    rows = []
    limits = {"memory": 2.0, "Redis": 5.0}
    for store in stores:
        p50_figure, p99_figure = pairs[store]
        p50, p99 = quantile(store, 50), quantile(store, 99)
        rows += [
            compared(
                p50_figure,
                p50,
                "ms",
                "anyio memory-object-stream pipeline, same pacing",
                base_p50,
                at_most_ms(limits[store]),
            ),
            compared(
                p99_figure,
                p99,
                "ms",
                f"Datagraph p50, same runs (anyio pipeline's p99: {base_p99:.2f} ms)",
                p50,
                Target("<= 4x p50", max_ratio=4),
            ),
        ]
    return rows


def rss_figures(s: Sizes) -> list[str]:
    return [f"peak RSS, W3 memory store, {n_(s.w3)}"]


def rss(ctx: Context) -> list[Row]:
    from ..probe import probe

    (figure,) = rss_figures(ctx.sizes)

    def peak_mb(n: int) -> float:
        return float(probe("datagraph-memory", n)["peak_rss"]) / 1e6

    return [growth(ctx, figure, "MB", "a fresh process per run", peak_mb)]


def redis_memory_figures(s: Sizes) -> list[str]:
    return [f"Redis peak used_memory, W3 Redis store, {n_(s.w3)}"]


def redis_memory(ctx: Context) -> list[Row]:
    from .. import flows

    (figure,) = redis_memory_figures(ctx.sizes)
    with contextlib.ExitStack() as stack:
        # A server of its own, so nothing else's keys move used_memory.
        url = ctx.redis_url if ctx.given_redis else stack.enter_context(redis_server())

        def peak_mb(n: int) -> float:
            return arun(flows.w3_redis_memory, url, n)[0] / 1e6

        return [growth(ctx, figure, "MB above idle", "sampling INFO memory", peak_mb)]


def scale_figures(s: Sizes) -> list[str]:
    return [
        f"scale-out, 8 instances vs 1, 10 ms per value, {store} store, {n_(s.scale)}"
        for store in ("memory", "Redis")
    ]


def scale(ctx: Context) -> list[Row]:
    from .. import flows

    s, rows = ctx.sizes, []
    for store, figure in zip(("memory", "Redis"), scale_figures(s), strict=True):
        if not ctx.want(figure):
            continue
        url = ctx.url(store)
        one, eight = alternate_rates(
            ctx,
            figure,
            {f"{count} instance{'s' * (count > 1)}": (
                s.scale, one_run(flows.scale_out_times, url, count, s.scale))
             for count in (1, 8)},
        )  # fmt: skip
        rows.append(
            compared(
                figure,
                eight,
                "values/s",
                "the same stage with 1 instance",
                one,
                Target(">= 6x, each value exactly once (checked)", min_ratio=6),
            )
        )
    return rows
