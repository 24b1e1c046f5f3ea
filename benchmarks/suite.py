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
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from ._common import ROOT, Row, fmt_number, median, redis_binary
from .rows import GROUPS, QUICK, TINY, Context, Sizes, failed, log, n_

RESULTS = ROOT / "benchmarks" / "results" / "latest.json"
SWEEP = ROOT / "benchmarks" / "results" / "sweep.json"
FIGURE = ROOT / "docs" / "images" / "benchmarks.png"


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
    chains: float | None = ctx.recall("celery-chains")
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
                measured = [failed(f) for f in group.figures(sizes) if want(f)]
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
