"""Datagraph's benchmark suite: every figure of the performance targets, side by side.

    python -m benchmarks.suite [--quick | --tiny | --n-scale F] [--repeat R]
                               [--only PATTERN] [--redis-url URL] [--plot PNG]

(``make bench`` runs it in full, ``make bench-quick`` with ``--quick``.) Each row
is a Datagraph figure next to a baseline measured in the same run, their ratio,
the target and whether it is met; values are medians of ``--repeat`` runs. The
table is printed and written as JSON to benchmarks/results/latest.json. A full
run also measures W3 at several N in fresh processes and plots throughput and
peak memory (docs/images/benchmarks.png). Redis servers are throwaway
``redis-server``s on free ports (or ``--redis-url``); Celery runs real worker
processes against one of them. docs/benchmarks.md explains every row.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ._common import (
    Row,
    fmt_number,
    median,
    percentile,
    ratio,
    redis_binary,
    redis_server,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .celery_peer import Workers

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "latest.json"
SWEEP = ROOT / "benchmarks" / "results" / "sweep.json"
FIGURE = ROOT / "docs" / "images" / "benchmarks.png"
T = TypeVar("T")

LATENCY_RATE = 1000.0  # values/s the paced source emits
ETL_IO_DELAY = 0.001  # seconds of simulated I/O per extracted record


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How many values each kind of row uses (a full run's sizes by default)."""

    w3: int = 1_000_000  # W3 throughput, both stores
    w3_small: int = 100_000  # the smaller N of the memory rows
    streams: int = 100_000  # the anyio-streams baseline (~15k values/s here)
    raw: int = 1_000_000  # the raw Redis pipe
    first: int = 20_000  # time to first final value
    latency: int = 2_000  # values at 1,000/s; the first 5% are warm-up
    scale: int = 400  # values through the 10 ms stage
    peer: int = 100_000  # W3 and ETL vs async-graph-data-flow, ETL vs Celery
    chains: int = 500  # Celery chains (~100-150 values/s)
    staged: int = 1_000_000  # Celery staged W3 (a reference figure)
    etl_io: int = 20_000  # ETL with 1 ms of I/O per record
    sweep: tuple[int, ...] = (10_000, 100_000, 1_000_000)  # the plot's N
    styles: int = 200_000  # W3 in each style users write, zip and merge
    first_big: int = 1_000_000  # time to first final value, seed style

    def scaled(self, factor: float) -> Sizes:
        """Every size times ``factor`` (at least 16)."""
        changes: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "sweep":
                changes["sweep"] = tuple(max(16, round(n * factor)) for n in value)
            else:
                changes[field.name] = max(16, round(value * factor))
        return dataclasses.replace(self, **changes)


#: ``--quick``: a rough picture in under 2 minutes. The smaller N of the memory
#: rows stays above the backpressure window (16,384 values), or it measures
#: nothing.
QUICK = Sizes(
    w3=100_000, w3_small=20_000, streams=5_000, raw=50_000, first=20_000,
    latency=500, scale=80, peer=10_000, chains=30, staged=100_000, etl_io=1_000,
    sweep=(1_000, 10_000), styles=50_000, first_big=1_000_000,
)  # fmt: skip
#: ``--tiny``: only checks that everything still starts (tests/test_benchmarks.py).
TINY = Sizes(
    w3=2_000, w3_small=1_000, streams=1_000, raw=1_000, first=1_000, latency=100,
    scale=16, peer=1_000, chains=5, staged=1_000, etl_io=50, sweep=(500, 1_000),
    styles=2_000, first_big=2_000,
)  # fmt: skip


def n_(n: int) -> str:
    """N as the figures print it."""
    return f"N={n:,}"


# --------------------------------------------------------------------- context
class Context:
    """What the groups share: sizes, servers started on demand, shared figures."""

    def __init__(
        self,
        sizes: Sizes,
        repeat: int,
        redis_url: str | None,
        stack: contextlib.ExitStack,
        want: Callable[[str], bool],
    ) -> None:
        self.sizes = sizes
        self.repeat = repeat
        self.want = want
        #: Whether the Redis server was given (``--redis-url``) rather than started.
        self.given_redis = redis_url is not None
        self._redis_url = redis_url
        self._stack = stack
        self._workers: Workers | None = None
        self._memo: dict[str, Any] = {}
        self.tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="dgbench-"))
        self.sweep: list[dict[str, Any]] = []

    @property
    def redis_url(self) -> str:
        """The Redis server of the run, started on first use."""
        if self._redis_url is None:
            self._redis_url = self._stack.enter_context(redis_server())
            log(f"started a throwaway redis-server at {self._redis_url}")
        return self._redis_url

    def celery(self) -> Workers:
        """The Celery workers (2 processes), started on first use."""
        if self._workers is None:
            from . import celery_peer

            start = time.perf_counter()
            self._workers = self._stack.enter_context(
                celery_peer.workers(self.redis_url)
            )
            log(f"Celery: 2 worker processes up in {time.perf_counter() - start:.1f}s")
        return self._workers

    def memo(self, key: str, compute: Callable[[], T]) -> T:
        """Compute a figure once per run (several rows may share it)."""
        if key not in self._memo:
            self._memo[key] = compute()
        value: T = self._memo[key]
        return value

    def path(self, name: str) -> str:
        """A fresh file name in the run's temporary folder."""
        return str(Path(self.tmp) / f"{name}-{time.monotonic_ns()}")


def log(message: str) -> None:
    """Progress, on stderr (the table goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def arun(func: Callable[..., Awaitable[T]], *args: Any, backend: str = "asyncio") -> T:
    """Run ``func(*args)`` in a fresh event loop of ``backend``."""
    return anyio.run(func, *args, backend=backend)


def rate(n: int, seconds: list[float]) -> float:
    """Values per second of the median run."""
    return n / median(seconds)


def alternate(
    repeat: int, what: str, measures: dict[str, Callable[[], T]]
) -> dict[str, list[T]]:
    """Measure each of ``measures`` ``repeat`` times, taking turns.

    On a noisy machine a figure and its baseline then see the same noise, so
    their ratio holds better than when one runs after the other.
    """
    results: dict[str, list[T]] = {name: [] for name in measures}
    for attempt in range(repeat):
        for name, measure in measures.items():
            log(f"{what}: {name} ({attempt + 1}/{repeat})")
            results[name].append(measure())
    return results


# ---------------------------------------------------------------------- groups
@dataclasses.dataclass(frozen=True)
class Group:
    """Rows measured together (they share runs, servers or baselines)."""

    name: str
    figures: Callable[[Sizes], list[str]]
    run: Callable[[Context], list[Row]]


def _w3_memory_figures(s: Sizes) -> list[str]:
    return [
        f"W3 throughput, memory store, {b}, {n_(s.w3)}" for b in ("asyncio", "trio")
    ]


def _w3_memory(ctx: Context) -> list[Row]:
    from . import baselines, flows

    s, rows = ctx.sizes, []
    targets = {"asyncio": 500_000, "trio": 400_000}
    for backend, figure in zip(("asyncio", "trio"), _w3_memory_figures(s), strict=True):
        if not ctx.want(figure):
            continue

        def streams(backend: str = backend) -> float:
            (seconds,) = arun(baselines.streams_times, s.streams, 1, backend=backend)
            return seconds

        def datagraph(backend: str = backend) -> float:
            (seconds,) = arun(flows.w3_times, None, s.w3, 1, backend=backend)
            return seconds

        times = alternate(
            ctx.repeat,
            figure,
            {f"anyio streams, {n_(s.streams)}": streams, "Datagraph": datagraph},
        )
        base_times, value_times = times.values()
        base, value = rate(s.streams, base_times), rate(s.w3, value_times)
        r = ratio(value, base)
        rows.append(
            Row(
                figure=figure,
                value=value,
                unit="values/s",
                baseline=(
                    f"anyio memory-object-stream pipeline, {backend} ({n_(s.streams)})"
                ),
                baseline_value=base,
                ratio=r,
                target=f">= {targets[backend]:,}/s and >= 20x",
                passed=value >= targets[backend] and r is not None and r >= 20,
            )
        )
    return rows


def _w3_redis_figures(s: Sizes) -> list[str]:
    return [f"W3 throughput, Redis store, one process, {n_(s.w3)}"]


def _dg_w3_redis(ctx: Context) -> float:
    """One timed run of W3 on the Redis store (after a warm-up); seconds."""
    from . import flows

    (seconds,) = arun(flows.w3_times, ctx.redis_url, ctx.sizes.w3, 1)
    return seconds


def _w3_redis_rate(ctx: Context) -> float:
    """W3's rate on the Redis store, measured once per suite run."""
    return ctx.memo(
        "w3-redis",
        lambda: rate(ctx.sizes.w3, [_dg_w3_redis(ctx) for _ in range(ctx.repeat)]),
    )


def _w3_redis(ctx: Context) -> list[Row]:
    from . import baselines

    s = ctx.sizes
    (figure,) = _w3_redis_figures(s)

    def raw() -> float:
        (seconds,) = arun(baselines.raw_redis_times, ctx.redis_url, s.raw, 1)
        return seconds

    times = alternate(
        ctx.repeat,
        figure,
        {f"raw producer/consumer pipe, {n_(s.raw)}": raw,
         "Datagraph": lambda: _dg_w3_redis(ctx)},
    )  # fmt: skip
    base_times, value_times = times.values()
    base = rate(s.raw, base_times)
    value = ctx.memo("w3-redis", lambda: rate(s.w3, value_times))
    r = ratio(value, base)
    return [
        Row(
            figure=figure,
            value=value,
            unit="values/s",
            baseline=(
                "raw Redis producer/consumer pipe, an entry per value, batches of "
                f"100 ({n_(s.raw)})"
            ),
            baseline_value=base,
            ratio=r,
            target=">= 200,000/s and >= 2.5x",
            passed=value >= 200_000 and r is not None and r >= 2.5,
        )
    ]


def _watched_figures(s: Sizes) -> list[str]:
    return [f"W3 throughput watched live (a snapshot every 100 ms), Redis, {n_(s.w3)}"]


def _watched(ctx: Context) -> list[Row]:
    """What live figures cost a run: W3 with a watcher polling, against without.

    Recording the figures costs nothing extra per value by design: stream lengths
    come with appends and reader cursors with reads (the same Lua call), so the
    only added work is the watcher's own reads, measured here.
    """
    from . import flows

    s = ctx.sizes
    (figure,) = _watched_figures(s)

    def watched() -> float:
        watched_w3 = functools.partial(flows.w3_times, watch=0.1)
        (seconds,) = arun(watched_w3, ctx.redis_url, s.w3, 1)
        return seconds

    times = alternate(
        ctx.repeat,
        figure,
        {"unwatched": lambda: _dg_w3_redis(ctx), "watched": watched},
    )
    base_times, value_times = times.values()
    base, value = rate(s.w3, base_times), rate(s.w3, value_times)
    r = ratio(value, base)
    return [
        Row(
            figure=figure,
            value=value,
            unit="values/s",
            baseline="the same runs without a watcher",
            baseline_value=base,
            ratio=r,
            target=">= 0.9x (watching costs the run under 10%)",
            passed=r is not None and r >= 0.9,
        )
    ]


def _latency_figures(s: Sizes) -> list[str]:
    return [
        f"latency {q}, {store} store, 1,000 values/s"
        for store in ("memory", "Redis")
        for q in ("p50", "p99")
    ]


def _latency(ctx: Context) -> list[Row]:
    from . import baselines, flows

    s = ctx.sizes
    warmup = s.latency // 20  # values while the processors start
    figures = _latency_figures(s)
    stores = [
        store
        for store, pair in (("memory", figures[:2]), ("Redis", figures[2:]))
        if any(ctx.want(f) for f in pair)
    ]
    if not stores:
        return []

    def measure(store: str) -> Callable[[], list[float]]:
        if store == "anyio":
            return lambda: arun(
                baselines.streams_latency, s.latency, LATENCY_RATE, warmup
            )
        url = ctx.redis_url if store == "Redis" else None
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
        p50_figure, p99_figure = figures[:2] if store == "memory" else figures[2:]
        p50, p99 = quantile(store, 50), quantile(store, 99)
        limit = limits[store]
        rows.append(
            Row(
                figure=p50_figure,
                value=p50,
                unit="ms",
                baseline="anyio memory-object-stream pipeline, same pacing",
                baseline_value=base_p50,
                ratio=ratio(p50, base_p50),
                target=f"<= {limit:g} ms",
                passed=p50 <= limit,
            )
        )
        r = ratio(p99, p50)
        rows.append(
            Row(
                figure=p99_figure,
                value=p99,
                unit="ms",
                baseline=(
                    "Datagraph p50, same runs (anyio pipeline's p99: "
                    f"{base_p99:.2f} ms)"
                ),
                baseline_value=p50,
                ratio=r,
                target="<= 4x p50",
                passed=r is not None and r <= 4,
            )
        )
    return rows


def _rss_figures(s: Sizes) -> list[str]:
    return [f"peak RSS, W3 memory store, {n_(s.w3)}"]


def _rss(ctx: Context) -> list[Row]:
    from .probe import probe

    s = ctx.sizes
    (figure,) = _rss_figures(s)
    peaks: dict[int, float] = {}
    for n in (s.w3_small, s.w3):
        log(f"{figure}: {ctx.repeat} fresh process(es) at {n_(n)}")
        peaks[n] = median(
            [probe("datagraph-memory", n)["peak_rss"] / 1e6 for _ in range(ctx.repeat)]
        )
    return [_growth_row(figure, "MB", peaks, s.w3_small, s.w3)]


#: The styles measured against bare-value W3: (label, target ratio).
STYLE_ROWS = {
    "ioval": ("seed style, yield IOVal(name=..., value=...)", 0.85),
    "sync_gen": ("sync generators reading BlockingIO.stream()", 0.5),
    "sync_fn": ("sync functions returning lists of IOVal", 0.5),
    "zip": ("zip stage, a.stream_with(b), per output value", 0.7),
    "merge": ("merge stage, a.as_available(b), per output value", 0.7),
}
BACKENDS = ("asyncio", "trio")


def _styles_figures(s: Sizes) -> list[str]:
    figures = [
        f"W3 {label}, {store} store, {backend}, {n_(s.styles)}"
        for store in ("memory", "Redis")
        for label, _ in STYLE_ROWS.values()
        for backend in BACKENDS
    ]
    figures += [
        f"trio vs asyncio, each style, {store} store, {n_(s.styles)}"
        for store in ("memory", "Redis")
    ]
    return figures


def _styles(ctx: Context) -> list[Row]:
    """Each style against bare-value W3 run right before it, in one event loop.

    A measurement is one fresh event loop per backend that runs, for each style,
    bare-value W3 and then the style (after a warm-up of each). A row's ratio is
    the median over the repeats of bare's time / the style's time, so a figure
    and its baseline always ran seconds apart, through the same noise.
    """
    from . import styles

    s, rows = ctx.sizes, []
    figures = _styles_figures(s)
    for store in ("memory", "Redis"):
        wanted = [f for f in figures if f", {store} store," in f and ctx.want(f)]
        if not wanted:
            continue
        url = ctx.redis_url if store == "Redis" else None
        names = ["bare", *STYLE_ROWS]
        times: dict[str, dict[str, list[float]]] = {
            b: {name: [] for name in names} for b in BACKENDS
        }
        bares: dict[str, dict[str, list[float]]] = {
            b: {name: [] for name in STYLE_ROWS} for b in BACKENDS
        }
        cpus: dict[str, dict[str, list[float]]] = {
            b: {name: [] for name in STYLE_ROWS} for b in BACKENDS
        }
        cpu_abs: dict[str, dict[str, list[float]]] = {
            b: {name: [] for name in STYLE_ROWS} for b in BACKENDS
        }
        for attempt in range(ctx.repeat):
            for backend in BACKENDS:
                log(f"styles, {store} store, {backend} ({attempt + 1}/{ctx.repeat})")
                pairs = arun(
                    styles.paired_times, url, list(STYLE_ROWS), s.styles,
                    backend=backend,
                )  # fmt: skip
                for name, (bare, seconds, bare_cpu, cpu) in pairs.items():
                    bares[backend][name].append(bare)
                    times[backend]["bare"].append(bare)
                    times[backend][name].append(seconds)
                    cpus[backend][name].append(bare_cpu / cpu)
                    cpu_abs[backend][name].append(cpu)
        rates = {
            (backend, name): rate(s.styles, times[backend][name])
            for backend in BACKENDS
            for name in names
        }
        for name, (label, target) in STYLE_ROWS.items():
            for backend in BACKENDS:
                figure = f"W3 {label}, {store} store, {backend}, {n_(s.styles)}"
                if not ctx.want(figure):
                    continue
                r = median(
                    [
                        bare / seconds
                        for bare, seconds in zip(
                            bares[backend][name], times[backend][name], strict=True
                        )
                    ]
                )
                rows.append(
                    Row(
                        figure=figure,
                        value=rates[backend, name],
                        unit="values/s",
                        baseline=(
                            f"bare-value W3 run just before it ({backend}); by "
                            f"CPU time {median(cpus[backend][name]):.2f}x"
                        ),
                        baseline_value=rates[backend, "bare"],
                        ratio=r,
                        target=f">= {target:g}x",
                        passed=r >= target,
                    )
                )
        figure = f"trio vs asyncio, each style, {store} store, {n_(s.styles)}"
        if ctx.want(figure):
            # Per repeat, asyncio's time / trio's (both loops ran back to back
            # in that repeat), then the median: trio's figure / asyncio's.
            twins = {
                name: median(
                    [
                        a / t
                        for a, t in zip(
                            times["asyncio"][name], times["trio"][name], strict=True
                        )
                    ]
                )
                for name in names
            }
            cpu_twins = {
                name: median(
                    [
                        a / t
                        for a, t in zip(
                            cpu_abs["asyncio"][name], cpu_abs["trio"][name], strict=True
                        )
                    ]
                )
                for name in STYLE_ROWS
            }
            worst = min(twins, key=twins.__getitem__)
            rows.append(
                Row(
                    figure=figure,
                    value=twins[worst],
                    unit="x (lowest)",
                    baseline=(
                        f"trio / asyncio values/s; lowest: {worst} "
                        f"({', '.join(f'{k} {v:.2f}' for k, v in twins.items())}); "
                        "by CPU time: "
                        f"{', '.join(f'{k} {v:.2f}' for k, v in cpu_twins.items())}"
                    ),
                    baseline_value=None,
                    ratio=twins[worst],
                    target=">= 0.7x for every style",
                    passed=twins[worst] >= 0.7,
                )
            )
    return rows


def _seed_first_figures(s: Sizes) -> list[str]:
    return [
        f"time to first final value, seed-style W3, {kind}, {backend}, "
        f"{n_(s.first_big)}"
        for kind in ("memory store, warm", "memory store, first run of a process",
                     "Redis store, warm")
        for backend in BACKENDS
    ]  # fmt: skip


def _seed_first(ctx: Context) -> list[Row]:
    """Time to the first final value from before ``start_flow``, N = 1,000,000.

    Warm: runs after a short warm-up run in the same event loop. First run: a
    fresh Python process per measurement (``python -m benchmarks.styles first``),
    whose imports are done before the clock starts and whose first run is timed.
    """
    from . import styles

    s, rows = ctx.sizes, []
    limits = {"memory store, warm": 10.0, "memory store, first run of a process": 50.0,
              "Redis store, warm": 50.0}  # fmt: skip
    figures = iter(_seed_first_figures(s))
    for kind, limit in limits.items():
        for backend in BACKENDS:
            figure = next(figures)
            if not ctx.want(figure):
                continue
            url = ctx.redis_url if kind.startswith("Redis") else None
            log(f"{figure}: measuring")
            if kind.endswith("first run of a process"):
                seconds = [
                    _fresh_first(backend, s.first_big, url) for _ in range(ctx.repeat)
                ]
            else:
                seconds = arun(  # cheap runs: more of them than --repeat
                    styles.first_times,
                    url,
                    "ioval",
                    s.first_big,
                    2 * ctx.repeat + 1,
                    backend=backend,
                )
            value = median(seconds) * 1000
            rows.append(
                Row(
                    figure=figure,
                    value=value,
                    unit="ms from before start_flow",
                    baseline="the target",
                    baseline_value=limit,
                    ratio=ratio(value, limit),
                    target=f"<= {limit:g} ms",
                    passed=value <= limit,
                )
            )
    return rows


def _fresh_first(backend: str, n: int, url: str | None) -> float:
    """Seconds to the first final value of a fresh process's first run."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    command = [sys.executable, "-m", "benchmarks.styles", "first", backend, "ioval"]
    command += [str(n), *([url] if url else [])]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        msg = f"{' '.join(command)} failed:\n{done.stderr[-3000:]}"
        raise RuntimeError(msg)
    seconds: float = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    return seconds


def _redis_memory_figures(s: Sizes) -> list[str]:
    return [f"Redis peak used_memory, W3 Redis store, {n_(s.w3)}"]


def _redis_memory(ctx: Context) -> list[Row]:
    from . import flows

    s = ctx.sizes
    (figure,) = _redis_memory_figures(s)
    with contextlib.ExitStack() as stack:
        # A server of its own, so nothing else's keys move used_memory.
        url = ctx.redis_url if ctx.given_redis else stack.enter_context(redis_server())
        peaks: dict[int, float] = {}
        for n in (s.w3_small, s.w3):
            log(f"{figure}: sampling INFO memory, {n_(n)}")
            peaks[n] = median(
                [
                    arun(flows.w3_redis_memory, url, n)[0] / 1e6
                    for _ in range(ctx.repeat)
                ]
            )
    return [_growth_row(figure, "MB above idle", peaks, s.w3_small, s.w3)]


def _growth_row(
    figure: str, unit: str, peaks: dict[int, float], small: int, big: int
) -> Row:
    """A memory figure at N=``big`` against the same at N=``small``: <= +20%."""
    r = ratio(peaks[big], peaks[small])
    return Row(
        figure=figure,
        value=peaks[big],
        unit=unit,
        baseline=f"the same at {n_(small)}",
        baseline_value=peaks[small],
        ratio=r,
        target="<= 1.20x",
        passed=r is not None and r <= 1.2,
    )


def _scale_figures(s: Sizes) -> list[str]:
    return [
        f"scale-out, 8 instances vs 1, 10 ms per value, {store} store, {n_(s.scale)}"
        for store in ("memory", "Redis")
    ]


def _scale(ctx: Context) -> list[Row]:
    from . import flows

    s, rows = ctx.sizes, []
    for store, figure in zip(("memory", "Redis"), _scale_figures(s), strict=True):
        if not ctx.want(figure):
            continue
        url = ctx.redis_url if store == "Redis" else None

        def scaled(instances: int, url: str | None = url) -> float:
            (seconds,) = arun(flows.scale_out_times, url, instances, s.scale, 1)
            return seconds

        times = alternate(
            ctx.repeat,
            figure,
            {"1 instance": lambda: scaled(1), "8 instances": lambda: scaled(8)},
        )
        rates = {
            count: rate(s.scale, seconds)
            for count, seconds in zip((1, 8), times.values(), strict=True)
        }
        r = ratio(rates[8], rates[1])
        rows.append(
            Row(
                figure=figure,
                value=rates[8],
                unit="values/s",
                baseline="the same stage with 1 instance",
                baseline_value=rates[1],
                ratio=r,
                target=">= 6x, each value exactly once (checked)",
                passed=r is not None and r >= 6,
            )
        )
    return rows


def _agdf_figures(s: Sizes) -> list[str]:
    return [
        f"W3 vs async-graph-data-flow, memory store, {n_(s.peer)}",
        f"ETL vs async-graph-data-flow, memory store, {n_(s.peer)} records",
    ]


def _etl_source(ctx: Context, n: int) -> str:
    from . import etl

    def write() -> str:
        path = ctx.path(f"records-{n}.jsonl")
        etl.write_records(path, n)
        return path

    return ctx.memo(f"etl-source-{n}", write)


def _agdf(ctx: Context) -> list[Row]:
    from . import agdf, flows

    s, rows = ctx.sizes, []
    w3_figure, etl_figure = _agdf_figures(s)
    if ctx.want(w3_figure):

        def agdf_w3() -> float:
            (seconds,) = agdf.w3_times(s.peer, 1)
            return seconds

        def datagraph_w3() -> float:
            (seconds,) = arun(flows.w3_times, None, s.peer, 1)
            return seconds

        times = alternate(
            ctx.repeat,
            w3_figure,
            {"async-graph-data-flow": agdf_w3, "Datagraph": datagraph_w3},
        )
        base_times, value_times = times.values()
        rows.append(
            _peer_row(
                w3_figure,
                rate(s.peer, value_times),
                "values/s",
                "async-graph-data-flow",
                rate(s.peer, base_times),
            )
        )
    if ctx.want(etl_figure):
        source = _etl_source(ctx, s.peer)
        small = _etl_source(ctx, 1000)

        def agdf_etl() -> float:
            agdf.etl_once(small, 1000, ctx.path("warm.db"))
            seconds, _ = agdf.etl_once(source, s.peer, ctx.path("agdf.db"))
            return seconds

        times = alternate(
            ctx.repeat,
            etl_figure,
            {
                "async-graph-data-flow": agdf_etl,
                "Datagraph": lambda: _dg_etl(ctx, None, source, s.peer),
            },
        )
        base_times, value_times = times.values()
        rows.append(
            _peer_row(
                etl_figure,
                rate(s.peer, value_times),
                "records/s",
                "async-graph-data-flow",
                rate(s.peer, base_times),
            )
        )
    return rows


def _dg_etl(ctx: Context, url: str | None, source: str, n: int) -> float:
    """One timed ETL run on Datagraph (after a warm-up), in a fresh event loop."""
    from . import etl, flows

    small = _etl_source(ctx, 1000)

    async def once() -> float:
        supervisor = flows.make_supervisor(url)
        try:
            await etl.etl_throughput(supervisor, small, 1000, ctx.path("warm.db"))
            return await etl.etl_throughput(supervisor, source, n, ctx.path("dg.db"))
        finally:
            await supervisor.aclose()

    return arun(once)


def _peer_row(
    figure: str, value: float, unit: str, baseline: str, base: float, times: float = 3
) -> Row:
    r = ratio(value, base)
    return Row(
        figure=figure,
        value=value,
        unit=unit,
        baseline=baseline,
        baseline_value=base,
        ratio=r,
        target=f">= {times:g}x",
        passed=r is not None and r >= times,
    )


def _first_figures(s: Sizes) -> list[str]:
    return [
        f"time to first final value, W3, {store} store, {n_(s.first)}"
        for store in ("memory", "Redis")
    ]


def _first(ctx: Context) -> list[Row]:
    from . import celery_peer, flows

    s, rows = ctx.sizes, []
    values = {}
    for store, figure in zip(("memory", "Redis"), _first_figures(s), strict=True):
        if ctx.want(figure):
            url = ctx.redis_url if store == "Redis" else None
            log(f"{figure}: Datagraph")
            times = arun(
                functools.partial(flows.w3_times, first=True), url, s.first, ctx.repeat
            )
            values[figure] = median(times) * 1000
    if not values:
        return []
    ctx.celery()
    log(f"time to first final value: Celery staged, {n_(s.first)}")
    celery_peer.w3_staged_once(min(s.first, 1000))
    base = (
        median([celery_peer.w3_staged_once(s.first) for _ in range(ctx.repeat)]) * 1000
    )
    limits = {"memory": 10.0, "Redis": 50.0}
    for figure, value in values.items():
        limit = limits["memory" if "memory" in figure else "Redis"]
        rows.append(
            Row(
                figure=figure,
                value=value,
                unit="ms after start_flow returns",
                baseline="Celery staged, a task per stage (first value = whole run)",
                baseline_value=base,
                ratio=ratio(value, base),
                target=f"<= {limit:g} ms",
                passed=value <= limit,
            )
        )
    return rows


def _celery_w3_figures(s: Sizes) -> list[str]:
    return [
        f"W3 vs Celery chains, Redis store, {n_(s.w3)} (chains: {n_(s.chains)})",
        f"W3 vs Celery staged, Redis store, {n_(s.w3)} (staged: {n_(s.staged)})",
    ]


def _celery_w3(ctx: Context) -> list[Row]:
    from . import celery_peer

    s, rows = ctx.sizes, []
    chains_figure, staged_figure = _celery_w3_figures(s)
    log("W3 vs Celery: Datagraph, Redis store")
    value = _w3_redis_rate(ctx)
    ctx.celery()
    if ctx.want(chains_figure):
        log(f"{chains_figure}: Celery chains")
        celery_peer.w3_chains_once(min(s.chains, 20))
        base = rate(
            s.chains, [celery_peer.w3_chains_once(s.chains) for _ in range(ctx.repeat)]
        )
        ctx.memo("celery-chains", lambda: base)
        rows.append(
            _peer_row(
                chains_figure,
                value,
                "values/s",
                "Celery, a chain of 3 tasks per value, 2 worker processes",
                base,
                times=100,
            )
        )
    if ctx.want(staged_figure):
        log(f"{staged_figure}: Celery staged")
        base = rate(
            s.staged, [celery_peer.w3_staged_once(s.staged) for _ in range(ctx.repeat)]
        )
        rows.append(
            Row(
                figure=staged_figure,
                value=value,
                unit="values/s",
                baseline="Celery, a task per stage over the whole list",
                baseline_value=base,
                ratio=ratio(value, base),
                target="reference (no target)",
                passed=None,
            )
        )
    return rows


def _celery_etl_figures(s: Sizes) -> list[str]:
    return [
        f"ETL vs Celery chains, Redis store, {n_(s.peer)} records "
        f"(chains: {n_(s.chains)})",
        f"ETL time to first loaded record, 1 ms I/O per record, memory store, "
        f"{n_(s.etl_io)}",
        f"ETL time to first loaded record, 1 ms I/O per record, Redis store, "
        f"{n_(s.etl_io)}",
    ]


def _celery_etl(ctx: Context) -> list[Row]:
    from . import celery_peer, etl, flows

    s, rows = ctx.sizes, []
    chains_figure, *first_figures = _celery_etl_figures(s)
    if ctx.want(chains_figure):
        source = _etl_source(ctx, s.peer)
        log(f"{chains_figure}: Datagraph, Redis store")
        seconds = [
            _dg_etl(ctx, ctx.redis_url, source, s.peer) for _ in range(ctx.repeat)
        ]
        value = rate(s.peer, seconds)
        ctx.celery()
        log(f"{chains_figure}: Celery chains")
        small = _etl_source(ctx, s.chains)
        base = rate(
            s.chains,
            [
                celery_peer.etl_chains_once(small, s.chains, ctx.path("celery.db"))
                for _ in range(ctx.repeat)
            ],
        )
        rows.append(
            _peer_row(
                chains_figure,
                value,
                "records/s",
                "Celery, a chain of parse, transform, load per record, 2 workers",
                base,
                times=100,
            )
        )
    wanted = [f for f in first_figures if ctx.want(f)]
    if wanted:
        source = _etl_source(ctx, s.etl_io)
        values = {}
        for figure in wanted:
            url = ctx.redis_url if "Redis" in figure else None
            log(f"{figure}: Datagraph")

            async def first(url: str | None = url) -> list[float]:
                supervisor = flows.make_supervisor(url)
                try:
                    return [
                        await etl.etl_first_loaded(
                            supervisor, source, ETL_IO_DELAY, ctx.path("first.db")
                        )
                        for _ in range(ctx.repeat + 1)
                    ][1:]  # the first run warms up
                finally:
                    await supervisor.aclose()

            values[figure] = median(arun(first)) * 1000
        ctx.celery()
        log(f"ETL time to first loaded record: Celery staged, {n_(s.etl_io)}")
        base = (
            median(
                [
                    celery_peer.etl_staged_once(
                        source, s.etl_io, ctx.path("staged.db"), ETL_IO_DELAY
                    )
                    for _ in range(ctx.repeat)
                ]
            )
            * 1000
        )
        for figure, value in values.items():
            r = ratio(value, base)
            rows.append(
                Row(
                    figure=figure,
                    value=value,
                    unit="ms after start",
                    baseline="Celery staged: extract, parse, transform, load tasks",
                    baseline_value=base,
                    ratio=r,
                    target="<= 1/100 of the baseline",
                    passed=r is not None and r <= 0.01,
                )
            )
    return rows


def _distributed_figures(s: Sizes) -> list[str]:
    from .distributed import RECOVERY_LEASE

    figures = []
    for engine in ("Celery", "Dramatiq"):
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


def _distributed(ctx: Context) -> list[Row]:
    """W3 with a worker process per stage (issue 7), Celery's rows with targets."""
    from . import celery_peer, distributed

    s, rows = ctx.sizes, []
    figures = _distributed_figures(s)
    for i, engine in enumerate(("celery", "dramatiq")):
        w3_figure, first_figure, kill_figure = figures[3 * i : 3 * i + 3]
        celery = engine == "celery"
        if ctx.want(w3_figure) or ctx.want(first_figure):
            log(f"distributed: W3 across {engine} workers")
            with distributed.stage_workers(engine, ctx.redis_url):
                seconds, firsts = arun(
                    distributed.w3_times,
                    engine,
                    ctx.redis_url,
                    s.w3,
                    ctx.repeat,
                    s.first,
                )
            value, first = rate(s.w3, seconds), median(firsts) * 1000
            if celery:
                ctx.celery()

                def chains() -> float:
                    log(f"distributed: Celery chains, {n_(s.chains)}")
                    celery_peer.w3_chains_once(min(s.chains, 20))
                    times = [
                        celery_peer.w3_chains_once(s.chains) for _ in range(ctx.repeat)
                    ]
                    return rate(s.chains, times)

                base: float | None = ctx.memo("celery-chains", chains)
                log("distributed: one Celery chain of 3 tasks")
                distributed.one_chain_seconds()  # warm-up
                one_chain = median(
                    [distributed.one_chain_seconds() for _ in range(ctx.repeat)]
                )
                r = ratio(value, base)
                rows += [
                    Row(
                        figure=w3_figure,
                        value=value,
                        unit="values/s",
                        baseline="Celery, a chain of 3 tasks per value, 2 workers",
                        baseline_value=base,
                        ratio=r,
                        target=">= 150,000/s and >= 1,000x",
                        passed=value >= 150_000 and r is not None and r >= 1000,
                    ),
                    Row(
                        figure=first_figure,
                        value=first,
                        unit="ms after start_flow",
                        baseline="one Celery chain of 3 tasks, to its result "
                        "(polled every 5 ms)",
                        baseline_value=one_chain * 1000,
                        ratio=ratio(first, one_chain * 1000),
                        target="<= 100 ms",
                        passed=first <= 100,
                    ),
                ]
            else:
                rows += [
                    Row(w3_figure, value, "values/s", "-", None, None,
                        "reference (no target)", None),
                    Row(first_figure, first, "ms after start_flow", "-", None, None,
                        "reference (no target)", None),
                ]  # fmt: skip
        if ctx.want(kill_figure):
            log(f"distributed: SIGKILL to recovery, {engine}")
            kills = distributed.recovery_times(engine, ctx.redis_url, ctx.repeat)
            lease = distributed.RECOVERY_LEASE
            value = median(kills)
            rows.append(
                Row(
                    figure=kill_figure,
                    value=value,
                    unit="s",
                    baseline="the lease (no heartbeat for this long: lost)",
                    baseline_value=lease,
                    ratio=ratio(value, lease),
                    target=f"<= lease + 5 s ({lease + 5:g} s)",
                    passed=value <= lease + 5,
                )
            )
    return rows


GROUPS = [
    Group("w3-memory", _w3_memory_figures, _w3_memory),
    Group("w3-redis", _w3_redis_figures, _w3_redis),
    Group("watched", _watched_figures, _watched),
    Group("latency", _latency_figures, _latency),
    Group("rss", _rss_figures, _rss),
    Group("redis-memory", _redis_memory_figures, _redis_memory),
    Group("scale-out", _scale_figures, _scale),
    Group("agdf", _agdf_figures, _agdf),
    Group("styles", _styles_figures, _styles),
    Group("seed-first", _seed_first_figures, _seed_first),
    # From here on Celery's workers run (started by the first group needing them).
    Group("first-value", _first_figures, _first),
    Group("celery-w3", _celery_w3_figures, _celery_w3),
    Group("celery-etl", _celery_etl_figures, _celery_etl),
    Group("distributed", _distributed_figures, _distributed),
]


# ----------------------------------------------------------------------- sweep
def sweep(ctx: Context) -> list[dict[str, Any]]:
    """W3 at each N of the sweep, a fresh process per run, for the plot.

    Each point is the median of ``repeat`` runs, except the slow in-process
    baselines (anyio streams, async-graph-data-flow) above N=100,000: one run.
    """
    from . import celery_peer
    from .probe import probe

    def point(system: str, n: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "system": system,
            "n": n,
            "seconds": median([r["seconds"] for r in runs]),
            "peak_rss": median([r["peak_rss"] for r in runs]),
            "runs": len(runs),
        }

    points: list[dict[str, Any]] = []
    for n in ctx.sizes.sweep:
        for system in ("datagraph-memory", "datagraph-redis", "anyio-streams", "agdf"):
            slow = system in ("anyio-streams", "agdf") and n > 100_000
            count = 1 if slow else ctx.repeat
            log(f"sweep: {system}, {n_(n)}, {count} run(s)")
            url = ctx.redis_url if system == "datagraph-redis" else None
            points.append(
                point(system, n, [probe(system, n, url) for _ in range(count)])
            )
        log(f"sweep: Celery staged, {n_(n)}")
        workers = ctx.celery()
        runs = []
        for _ in range(ctx.repeat):
            with workers.peak_rss() as peak:
                seconds = celery_peer.w3_staged_once(n)
            runs.append({"seconds": seconds, "peak_rss": peak[0]})
        points.append(point("celery-staged", n, runs))
    chains: float | None = ctx.memo("celery-chains", lambda: None)
    if chains is not None:
        n = ctx.sizes.chains
        points.append(
            {"system": "celery-chains", "n": n, "seconds": n / chains, "peak_rss": None}
        )
    return points


# ---------------------------------------------------------------------- output
def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    redis = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            [redis_binary(), "--version"], capture_output=True, text=True, check=False
        ).stdout
        found = re.search(r"v=(\S+)", out)
        redis = found.group(1) if found else out.strip()

    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "redis-server": redis,
        "load average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "versions": ", ".join(
            f"{p} {version(p)}"
            for p in (
                "datagraph",
                "anyio",
                "trio",
                "msgspec",
                "valkey-glide",
                "celery",
                "async-graph-data-flow",
            )
        ),
    }


def table(rows: list[Row]) -> str:
    """The rows as a fixed-width text table."""
    head = ("figure", "Datagraph", "baseline", "baseline value", "ratio", "target", "")
    lines = []
    for row in rows:
        passed = {True: "PASS", False: "FAIL", None: "-"}[row.passed]
        lines.append(
            (
                row.figure,
                f"{fmt_number(row.value)} {row.unit}",
                row.baseline,
                fmt_number(row.baseline_value),
                "-" if row.ratio is None else f"{fmt_number(row.ratio)}x",
                row.target,
                passed,
            )
        )
    widths = [max(len(str(x[i])) for x in [head, *lines]) for i in range(len(head))]
    out = []
    for i, line in enumerate([head, *lines]):
        cells = [str(c)[: widths[j]].ljust(widths[j]) for j, c in enumerate(line)]
        cells[1] = str(line[1]).rjust(widths[1])
        out.append("  ".join(cells).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown(rows: list[Row]) -> str:
    """The rows as a Markdown table (for docs/benchmarks.md)."""
    out = [
        "| figure | Datagraph | baseline | baseline value | ratio | target | |",
        "|---|---:|---|---:|---:|---|---|",
    ]
    for row in rows:
        passed = {True: "pass", False: "**FAIL**", None: "-"}[row.passed]
        ratio_text = "-" if row.ratio is None else f"{fmt_number(row.ratio)}x"
        out.append(
            f"| {row.figure} | {fmt_number(row.value)} {row.unit} | {row.baseline} | "
            f"{fmt_number(row.baseline_value)} | {ratio_text} | {row.target} | "
            f"{passed} |"
        )
    return "\n".join(out)


# ------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.suite",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_true",
        help="for development: smaller N, 1 run each, no plot (under 2 minutes)",
    )
    size.add_argument(
        "--tiny",
        action="store_true",
        help="only checks that everything starts: tiny N, 1 run each",
    )
    size.add_argument(
        "--n-scale", type=float, metavar="F", help="multiply every size by F"
    )
    parser.add_argument("--repeat", type=int, help="runs per figure (default 3)")
    parser.add_argument(
        "--only",
        metavar="PATTERN",
        help="run only the rows whose figure matches this regex (case-insensitive)",
    )
    parser.add_argument("--list", action="store_true", help="list the figures and exit")
    parser.add_argument(
        "--redis-url",
        help="use this Redis (local, no password) instead of throwaway servers",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=RESULTS,
        help=f"default: {RESULTS.relative_to(ROOT)}",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        help=(
            "measure W3 at several N and draw the figure here (default for a full "
            f"run: {FIGURE.relative_to(ROOT)})"
        ),
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the sweep")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.n_scale is not None and not args.n_scale > 0:
        parser.error("--n-scale must be positive")
    if args.only:
        try:
            re.compile(args.only)
        except re.error as exc:
            parser.error(f"--only: {exc}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the suite as the command line asks; 0 when every measured row ran."""
    args = parse_args(argv)
    if args.quick or args.tiny:
        sizes, scale = (QUICK, "quick") if args.quick else (TINY, "tiny")
    else:
        factor = args.n_scale or 1.0
        sizes = Sizes().scaled(factor) if factor != 1.0 else Sizes()
        scale = "full" if factor == 1.0 else f"x{factor:g}"
    repeat = args.repeat or (1 if args.quick or args.tiny else 3)
    pattern = re.compile(args.only, re.IGNORECASE) if args.only else None

    def want(figure: str) -> bool:
        return pattern is None or pattern.search(figure) is not None

    groups = [g for g in GROUPS if any(want(f) for f in g.figures(sizes))]
    if args.list:
        for group in GROUPS:
            for figure in group.figures(sizes):
                print(("  " if want(figure) else "x ") + figure)
        return 0
    full = scale == "full" and pattern is None
    plot_path: Path | None = args.plot or (FIGURE if full else None)
    if args.no_plot:
        plot_path = None
    if not groups and plot_path is None:
        print(f"no figure matches {args.only!r}; see --list", file=sys.stderr)
        return 2

    info = machine()
    print(f"Datagraph benchmarks: median of {repeat} run(s), {scale} sizes")
    for key, value in info.items():
        print(f"  {key}: {value}")
    print(flush=True)

    rows: list[Row] = []
    errors = 0
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        ctx = Context(sizes, repeat, args.redis_url, stack, want)
        for group in groups:
            try:
                measured = group.run(ctx)
            except Exception:
                errors += 1
                log(f"group {group.name} failed:\n{traceback.format_exc()}")
                measured = [
                    Row(
                        f,
                        float("nan"),
                        "",
                        "error (see the log)",
                        None,
                        None,
                        "",
                        False,
                    )
                    for f in group.figures(sizes)
                    if want(f)
                ]
            rows.extend(r for r in measured if want(r.figure))
        if plot_path is not None:
            points = sweep(ctx)
            SWEEP.parent.mkdir(parents=True, exist_ok=True)
            SWEEP.write_text(json.dumps(points, indent=1) + "\n")
            from .plot import plot

            plot_path.parent.mkdir(parents=True, exist_ok=True)
            plot(points, str(plot_path), f"W3 ({info['cpus']} cores, {info['cpu']})")
            log(f"figure written to {plot_path}")
    elapsed = time.perf_counter() - start

    print(table(rows))
    measured_rows = [r for r in rows if r.passed is not None]
    passed = sum(bool(r.passed) for r in measured_rows)
    print(
        f"\n{passed} of {len(measured_rows)} targets met "
        f"({len(rows) - len(measured_rows)} reference rows) in {elapsed:.0f}s; "
        f"load average now {os.getloadavg()[0]:.2f}"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps([r.as_json() for r in rows], indent=2) + "\n")
    print(f"rows written to {args.json}")
    if os.environ.get("DGBENCH_MARKDOWN"):
        print("\n" + markdown(rows))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
