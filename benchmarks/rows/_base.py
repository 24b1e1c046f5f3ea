"""What every row group shares: sizes, the run's context, taking turns, row shapes.

A group (``Group``) measures a few rows together because they share runs, servers
or baselines. It gets a ``Context`` (the sizes, ``--repeat``, a Redis server and
Celery workers started on first use, figures shared between groups) and returns
``Row``s built by ``compared()``: a Datagraph figure, its baseline, their ratio
and whether the ``Target`` is met.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .._common import Row, median, ratio, redis_server

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Awaitable, Callable

    from ..celery_peer import Workers

T = TypeVar("T")

#: The event loops the rows that run on both compare.
BACKENDS = ("asyncio", "trio")


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


def log(message: str) -> None:
    """Progress, on stderr (the table goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


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

    @property
    def redis_url(self) -> str:
        """The Redis server of the run, started on first use."""
        if self._redis_url is None:
            self._redis_url = self._stack.enter_context(redis_server())
            log(f"started a throwaway redis-server at {self._redis_url}")
        return self._redis_url

    def url(self, store: str) -> str | None:
        """The Redis URL for ``store`` "Redis" (started on first use), else None."""
        return self.redis_url if store == "Redis" else None

    def celery(self) -> Workers:
        """The Celery workers (2 processes), started on first use."""
        if self._workers is None:
            from .. import celery_peer

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

    def recall(self, key: str) -> Any:
        """A figure ``memo`` computed, or None if no row needed it."""
        return self._memo.get(key)

    def path(self, name: str) -> str:
        """A fresh file name in the run's temporary folder."""
        return str(Path(self.tmp) / f"{name}-{time.monotonic_ns()}")

    def median_of(self, measure: Callable[[], float]) -> float:
        """The median of ``--repeat`` calls of ``measure``."""
        return median([measure() for _ in range(self.repeat)])


@dataclasses.dataclass(frozen=True)
class Group:
    """Rows measured together (they share runs, servers or baselines)."""

    name: str
    figures: Callable[[Sizes], list[str]]
    run: Callable[[Context], list[Row]]


# ------------------------------------------------------------------- measuring
def arun(func: Callable[..., Awaitable[T]], *args: Any, backend: str = "asyncio") -> T:
    """Run ``func(*args)`` in a fresh event loop of ``backend``."""
    return anyio.run(func, *args, backend=backend)


def one_run(
    times: Callable[..., Awaitable[list[float]]], *args: Any, backend: str = "asyncio"
) -> Callable[[], float]:
    """A measure: the seconds of one timed run of a ``*_times(*args, runs)`` function.

    Each call runs ``times(*args, 1)`` in a fresh event loop of ``backend``.
    """

    def measure() -> float:
        (seconds,) = arun(times, *args, 1, backend=backend)
        return seconds

    return measure


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


def alternate_rates(
    ctx: Context, what: str, measures: dict[str, tuple[int, Callable[[], float]]]
) -> list[float]:
    """The rates of ``measures`` (name -> (values, a timed run)), taking turns.

    Returns the values/s of each measure's median run, in the order given.
    """
    times = alternate(ctx.repeat, what, {k: m for k, (_, m) in measures.items()})
    return [rate(n, times[name]) for name, (n, _) in measures.items()]


# ------------------------------------------------------------------ row shapes
@dataclasses.dataclass(frozen=True)
class Target:
    """What a row must reach, and the words the table shows for it.

    Bounds on the figure and on its ratio to the baseline; a ratio bound is
    missed when there is no ratio.
    """

    text: str
    min_value: float | None = None
    max_value: float | None = None
    min_ratio: float | None = None
    max_ratio: float | None = None

    def met(self, value: float, r: float | None) -> bool:
        """Whether ``value`` (and its ratio ``r``) are within every bound."""
        if self.min_value is not None and not value >= self.min_value:
            return False
        if self.max_value is not None and not value <= self.max_value:
            return False
        if self.min_ratio is not None and (r is None or not r >= self.min_ratio):
            return False
        return self.max_ratio is None or (r is not None and r <= self.max_ratio)


def at_most_ms(limit: float) -> Target:
    """A time in milliseconds that must stay within ``limit``."""
    return Target(f"<= {limit:g} ms", max_value=limit)


def at_least_x(times: float) -> Target:
    """A ratio to the baseline of at least ``times``."""
    return Target(f">= {times:g}x", min_ratio=times)


#: A figure given for reference: no target, neither met nor missed.
REFERENCE = None


def compared(
    figure: str,
    value: float,
    unit: str,
    baseline: str,
    baseline_value: float | None,
    target: Target | None,
    *,
    given_ratio: float | None = None,
) -> Row:
    """A row: ``value`` against ``baseline_value``, their ratio, the target.

    The ratio is ``value / baseline_value`` unless ``given_ratio`` gives another (a
    median of paired runs, say). ``target`` None (``REFERENCE``) makes a row
    without a target.
    """
    r = ratio(value, baseline_value) if given_ratio is None else given_ratio
    return Row(
        figure=figure,
        value=value,
        unit=unit,
        baseline=baseline,
        baseline_value=baseline_value,
        ratio=r,
        target="reference (no target)" if target is None else target.text,
        passed=None if target is None else target.met(value, r),
    )


def growth(
    ctx: Context, figure: str, unit: str, how: str, measure: Callable[[int], float]
) -> Row:
    """A memory figure at W3's N against the same at the smaller N: <= +20%.

    ``measure(n)`` takes one measurement at N=n; each N gets the median of
    ``--repeat``. ``how`` says what the progress line reports.
    """
    small, big = ctx.sizes.w3_small, ctx.sizes.w3
    peaks: dict[int, float] = {}
    for n in (small, big):
        log(f"{figure}: {how}, {n_(n)}")
        peaks[n] = ctx.median_of(functools.partial(measure, n))
    return compared(
        figure,
        peaks[big],
        unit,
        f"the same at {n_(small)}",
        peaks[small],
        Target("<= 1.20x", max_ratio=1.2),
    )


def failed(figure: str) -> Row:
    """The row of a figure whose group raised (the log has the traceback)."""
    return Row(figure, float("nan"), "", "error (see the log)", None, None, "", False)
