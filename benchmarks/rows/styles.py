"""The styles users write processors in, against bare-value W3, and their first value.

The workloads are ``benchmarks/styles.py``'s. Each style's baseline is bare-value W3
run seconds before it in the same event loop (the hot-loop forms too, as reference
rows); the seed-style first-value rows have their target as the baseline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._common import fresh_process, median
from ._base import (
    BACKENDS,
    REFERENCE,
    Context,
    Sizes,
    Target,
    arun,
    at_least_x,
    at_most_ms,
    compared,
    log,
    n_,
    rate,
)

if TYPE_CHECKING:
    from .._common import Row

#: The styles measured against bare-value W3: (label, target ratio). The hot-loop
#: forms the README recommends (``target`` None) are reference rows: they show what
#: the faster form gains, and the trio row leaves them out.
STYLE_ROWS: dict[str, tuple[str, float | None]] = {
    "ioval": ("seed style, yield IOVal(name=..., value=...)", 0.85),
    "sync_gen": ("sync generators reading BlockingIO.stream()", 0.5),
    "sync_fn": ("sync functions returning lists of IOVal", 0.5),
    "zip": ("zip stage, a.stream_with(b), per output value", 0.7),
    "merge": ("merge stage, a.as_available(b), per output value", 0.7),
    "chunks": ("hot loop, stages reading chunks() instead of stream()", None),
    "lists": ("hot loop, lists of 1,000 ints as values, per int", None),
}
#: The styles the trio row compares: those with a target.
TARGETED = tuple(n for n, (_, target) in STYLE_ROWS.items() if target is not None)
#: One paired measurement: bare's seconds, the style's, bare's CPU, the style's CPU.
Pair = tuple[float, float, float, float]


def styles_figures(s: Sizes) -> list[str]:
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


def styles(ctx: Context) -> list[Row]:
    """Each style against bare-value W3 run right before it, in one event loop.

    A measurement is one fresh event loop per backend that runs, for each style,
    bare-value W3 and then the style (after a warm-up of each). A row's ratio is
    the median over the repeats of bare's time / the style's time, so a figure
    and its baseline always ran seconds apart, through the same noise.
    """
    s, rows = ctx.sizes, []
    figures = styles_figures(s)
    for store in ("memory", "Redis"):
        if not any(ctx.want(f) for f in figures if f", {store} store," in f):
            continue
        runs = _paired_runs(ctx, store)
        for name, (label, target) in STYLE_ROWS.items():
            for backend in BACKENDS:
                figure = f"W3 {label}, {store} store, {backend}, {n_(s.styles)}"
                if ctx.want(figure):
                    pairs = runs[backend][name]
                    bare = rate(s.styles, _seconds(runs[backend], "bare"))
                    rows.append(
                        _style_row(figure, backend, pairs, bare, target, s.styles)
                    )
        figure = f"trio vs asyncio, each style, {store} store, {n_(s.styles)}"
        if ctx.want(figure):
            rows.append(_trio_vs_asyncio_row(figure, runs))
    return rows


def _paired_runs(ctx: Context, store: str) -> dict[str, dict[str, list[Pair]]]:
    """backend -> style -> its paired measurements, one per repeat."""
    from .. import styles

    url = ctx.url(store)
    runs: dict[str, dict[str, list[Pair]]] = {
        backend: {name: [] for name in STYLE_ROWS} for backend in BACKENDS
    }
    for attempt in range(ctx.repeat):
        for backend in BACKENDS:
            log(f"styles, {store} store, {backend} ({attempt + 1}/{ctx.repeat})")
            pairs = arun(
                styles.paired_times, url, list(STYLE_ROWS), ctx.sizes.styles,
                backend=backend,
            )  # fmt: skip
            for name, pair in pairs.items():
                runs[backend][name].append(pair)
    return runs


def _seconds(runs: dict[str, list[Pair]], name: str) -> list[float]:
    """The seconds of a style's runs; of ``"bare"``: every bare run of the loop."""
    if name == "bare":
        return [pair[0] for pairs in runs.values() for pair in pairs]
    return [pair[1] for pair in runs[name]]


def _style_row(
    figure: str,
    backend: str,
    pairs: list[Pair],
    bare_rate: float,
    target: float | None,
    n: int,
) -> Row:
    by_cpu = median([bare_cpu / cpu for _, _, bare_cpu, cpu in pairs])
    return compared(
        figure,
        rate(n, [seconds for _, seconds, _, _ in pairs]),
        "values/s",
        f"bare-value W3 run just before it ({backend}); by CPU time {by_cpu:.2f}x",
        bare_rate,
        REFERENCE if target is None else at_least_x(target),
        given_ratio=median([bare / seconds for bare, seconds, _, _ in pairs]),
    )


def _trio_vs_asyncio_row(figure: str, runs: dict[str, dict[str, list[Pair]]]) -> Row:
    # Per repeat, asyncio's time / trio's (both loops ran back to back in that
    # repeat), then the median: trio's figure / asyncio's.
    def twin(asyncio: list[float], trio: list[float]) -> float:
        return median([a / t for a, t in zip(asyncio, trio, strict=True)])

    twins = {
        name: twin(_seconds(runs["asyncio"], name), _seconds(runs["trio"], name))
        for name in ("bare", *TARGETED)
    }
    cpu_twins = {
        name: twin(
            [pair[3] for pair in runs["asyncio"][name]],
            [pair[3] for pair in runs["trio"][name]],
        )
        for name in TARGETED
    }
    worst = min(twins, key=twins.__getitem__)
    return compared(
        figure,
        twins[worst],
        "x (lowest)",
        f"trio / asyncio values/s; lowest: {worst} "
        f"({', '.join(f'{k} {v:.2f}' for k, v in twins.items())}); by CPU time: "
        f"{', '.join(f'{k} {v:.2f}' for k, v in cpu_twins.items())}",
        None,
        Target(">= 0.7x for every style", min_ratio=0.7),
        given_ratio=twins[worst],
    )


#: The kinds of seed-style first-value rows and their limits (ms).
FIRST_LIMITS = {
    "memory store, warm": 10.0,
    "memory store, first run of a process": 50.0,
    "Redis store, warm": 50.0,
}


def seed_first_figures(s: Sizes) -> list[str]:
    return [
        f"time to first final value, seed-style W3, {kind}, {backend}, "
        f"{n_(s.first_big)}"
        for kind in FIRST_LIMITS
        for backend in BACKENDS
    ]


def seed_first(ctx: Context) -> list[Row]:
    """Time to the first final value from before ``start_flow``, N = 1,000,000.

    Warm: runs after a short warm-up run in the same event loop. First run: a
    fresh Python process per measurement (``python -m benchmarks.styles first``),
    whose imports are done before the clock starts and whose first run is timed.
    """
    from .. import styles

    s, rows = ctx.sizes, []
    figures = iter(seed_first_figures(s))
    for kind, limit in FIRST_LIMITS.items():
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
            rows.append(
                compared(
                    figure,
                    median(seconds) * 1000,
                    "ms from before start_flow",
                    "the target",
                    limit,
                    at_most_ms(limit),
                )
            )
    return rows


def _fresh_first(backend: str, n: int, url: str | None) -> float:
    """Seconds to the first final value of a fresh process's first run."""
    args = ["first", backend, "ioval", str(n), *([url] if url else [])]
    seconds: float = fresh_process("benchmarks.styles", *args)["seconds"]
    return seconds
