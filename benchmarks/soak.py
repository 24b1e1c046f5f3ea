"""Soak: many concurrent runs of a 5-processor flow on one Redis, for minutes.

Starts a throwaway redis-server and worker processes (by default two, one on
asyncio and one on trio, each running its processors with ``LocalExecutor``).
Each worker keeps its share of the runs in flight the whole time: as a run
finishes, its output is checked exactly, the run is deleted and another starts.
Every ``--interval`` seconds the parent samples each worker's RSS (psutil),
Redis's ``used_memory`` and key count (``INFO``, ``DBSIZE``), runs completed and
values/s. At the end every key must be gone, and memory must be flat:

- a linear fit of the second half of the samples rises by less than
  ``SLOPE_LIMIT`` (1%) of their mean per minute (falling is fine), and
- the mean of the last minute is within ``DRIFT_LIMIT`` (10%) of the mean of the
  second minute (the first minute is warm-up).

Usage (``make soak``; ``SOAK_MINUTES`` or ``--minutes`` shortens it)::

    python -m benchmarks.soak --minutes 10 --json soak.json --plot soak.png

It exits 1 when a run's output is wrong, a worker fails, keys are left behind
or memory is not flat (flatness is judged only for runs of 3 minutes or more).

The flow (per run, ``job = [start, n]``)::

    soak_source -> soak_map -> soak_branch -(even, odd)-> soak_merge -> soak_sink
    range(start, start + n)   x*3+1    drops multiples of 7   both      sorted list
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from datagraph import IO, Flow, IOVal, Processor, Settings, Supervisor
from datagraph.stores._redis_scripts import WATCH_TTL_MS

from ._common import RespConnection, redis_server, url_port

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence

#: Slope limit of a flat series: fraction of its mean per minute.
SLOPE_LIMIT = 0.01
#: Largest relative gap between the last minute's mean and the second minute's.
DRIFT_LIMIT = 0.10
#: Shortest soak (seconds) whose flatness is judged: warm-up, then two minutes.
JUDGED_AFTER = 180.0

# ------------------------------------------------------------------------- flow
source = Processor(name="soak_source", inputs=["job"], outputs=["numbers"])
mapper = Processor(name="soak_map", inputs=["numbers"], outputs=["mapped"])
branch = Processor(name="soak_branch", inputs=["mapped"], outputs=["even", "odd"])
merge = Processor(name="soak_merge", inputs=["even", "odd"], outputs=["merged"])
sink = Processor(name="soak_sink", inputs=["merged"], outputs=["result"])


@source
async def _source(job: IO[list[int]]) -> AsyncIterator[IOVal[int]]:
    start, n = await job.first()
    for i in range(start, start + n):
        yield IOVal(name="numbers", value=i)


@mapper
async def _map(numbers: IO[int]) -> AsyncIterator[IOVal[int]]:
    async for x in numbers.stream():
        yield IOVal(name="mapped", value=x * 3 + 1)


@branch
async def _branch(mapped: IO[int]) -> AsyncIterator[IOVal[int]]:
    async for x in mapped.stream():
        if x % 7:
            yield IOVal(name="odd" if x % 2 else "even", value=x)


@merge
async def _merge(even: IO[int], odd: IO[int]) -> AsyncIterator[IOVal[int]]:
    async for item in even.as_available(odd):
        yield IOVal(name="merged", value=item.value)


@sink
async def _sink(merged: IO[int]) -> AsyncIterator[IOVal[list[int]]]:
    yield IOVal(name="result", value=sorted(await merged.collect()))


FLOW = Flow.from_processors(source, mapper, branch, merge, sink).resolve()


def expected(start: int, n: int) -> list[int]:
    """What ``soak_sink`` must yield for ``job = [start, n]``."""
    return sorted(y for y in (x * 3 + 1 for x in range(start, start + n)) if y % 7)


# ----------------------------------------------------------------------- worker
class SoakError(AssertionError):
    """A run's output was not exactly what its input asks for."""


@dataclasses.dataclass
class _Tally:
    completed: int = 0
    values: int = 0


async def _worker(
    url: str, prefix: str, runs: int, values: int, seconds: float, first: int
) -> None:
    """Keep ``runs`` runs in flight for ``seconds``; print progress lines."""
    settings = Settings(redis_url=url, prefix=prefix, retention=300.0)
    supervisor = Supervisor(settings=settings)
    tally = _Tally()
    deleted: set[str] = set()
    deadline = time.monotonic() + seconds
    # Job starts of this worker: first, first + values, ...; never shared.
    counter = iter(range(first, 2**62, values))

    async def slot() -> None:
        while time.monotonic() < deadline:
            start = next(counter)
            run = await supervisor.start_flow(
                FLOW, inputs=[IOVal(name="job", value=[start, values])]
            )
            got = await run["result"].first()
            await run.wait()
            if got != expected(start, values):
                msg = f"run {run.id} (job [{start}, {values}]): wrong output"
                raise SoakError(msg)
            await supervisor.delete_run(run.id)
            deleted.add(run.id)
            tally.completed += 1
            tally.values += values

    async def report() -> None:
        while True:
            _say(tally, done=False)
            await anyio.sleep(1.0)

    async with supervisor:
        async with anyio.create_task_group() as outer:
            outer.start_soon(report)
            async with anyio.create_task_group() as slots:
                for _ in range(runs):
                    slots.start_soon(slot)
            outer.cancel_scope.cancel()
        # Other workers may still have runs in flight: only ours must be gone.
        left = deleted.intersection(r.id for r in await supervisor.list_runs())
        if left:
            msg = f"deleted runs still listed after the soak: {sorted(left)}"
            raise SoakError(msg)
    _say(tally, done=True)


def _say(tally: _Tally, *, done: bool) -> None:
    line = {"completed": tally.completed, "values": tally.values, "done": done}
    print(json.dumps(line), flush=True)


# ----------------------------------------------------------------------- parent
@dataclasses.dataclass
class _Worker:
    process: subprocess.Popen[str]
    backend: str
    latest: dict[str, Any] = dataclasses.field(default_factory=dict)
    reader: threading.Thread | None = None

    def follow(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                self.latest = json.loads(line)

    def rss(self) -> int:
        import psutil

        try:
            return int(psutil.Process(self.process.pid).memory_info().rss)
        except psutil.Error:
            return 0


def _start_workers(
    url: str, prefix: str, args: argparse.Namespace, seconds: float
) -> list[_Worker]:
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(root), env.get("PYTHONPATH", "")) if p
    )
    backends = args.backends.split(",")
    workers = []
    for index in range(args.workers):
        runs = args.runs // args.workers + (index < args.runs % args.workers)
        backend = backends[index % len(backends)]
        command = [sys.executable, "-m", "benchmarks.soak", "--worker",
                   "--redis-url", url, "--prefix", prefix, "--runs", str(runs),
                   "--values", str(args.values), "--seconds", str(seconds),
                   "--first", str(index << 48), "--backend", backend]  # fmt: skip
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=subprocess.PIPE, text=True
        )
        worker = _Worker(process, backend)
        worker.reader = threading.Thread(target=worker.follow, daemon=True)
        worker.reader.start()
        workers.append(worker)
    return workers


def _keys(conn: RespConnection, prefix: str) -> list[str]:
    keys: list[str] = []
    cursor = "0"
    while True:
        cursor, found = conn.command("SCAN", cursor, "MATCH", f"{prefix}:*")
        keys.extend(found)
        if cursor == "0":
            return keys


def leftovers(conn: RespConnection, prefix: str) -> tuple[list[str], list[str]]:
    """Split the keys under ``prefix`` into (leaked, expiring).

    A deleted run may leave a stream's watchers hash (``...:w:<stream>``, readers
    of other processes blocked on it): by design it is not in the run's key set
    and expires by itself within ``WATCH_TTL_MS``. Every other key is a leak.
    """
    leaked: list[str] = []
    expiring: list[str] = []
    for key in _keys(conn, prefix):
        ttl = conn.command("PTTL", key)
        watchers = ":w:" in key and 0 < ttl <= WATCH_TTL_MS
        (expiring if watchers else leaked).append(key)
    return leaked, expiring


def soak(args: argparse.Namespace, url: str, prefix: str = "dgsoak") -> dict[str, Any]:
    """Run the soak against ``url``; return its samples, figures and verdicts."""
    seconds = args.minutes * 60
    conn = RespConnection(url_port(url))
    began = time.monotonic()
    workers = _start_workers(url, prefix, args, seconds)
    samples: list[dict[str, float]] = []
    try:
        while any(w.process.poll() is None for w in workers):
            now = time.monotonic() - began
            rss = [w.rss() for w in workers]
            samples.append({
                "t": round(now, 2),
                "rss": sum(rss),
                **{f"rss_{i}": r for i, r in enumerate(rss)},
                "used_memory": conn.used_memory(),
                "keys": conn.command("DBSIZE"),
                "completed": sum(w.latest.get("completed", 0) for w in workers),
                "values": sum(w.latest.get("values", 0) for w in workers),
            })  # fmt: skip
            for worker in workers:  # wait for the next sample, or all exits
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.process.wait(
                        max(0.0, began + now + args.interval - time.monotonic())
                    )
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.kill()
            worker.process.wait()
            if worker.reader is not None:
                worker.reader.join(5)
    leaked, expiring = leftovers(conn, prefix)
    settle = time.monotonic() + args.settle
    while expiring and time.monotonic() < settle:
        time.sleep(1.0)  # let the watcher hashes expire: a server clock, not a guess
        leaked, expiring = leftovers(conn, prefix)
    conn.close()
    failures = [
        f"worker {i} ({w.backend}) exited with {w.process.returncode}"
        for i, w in enumerate(workers)
        if w.process.returncode or not w.latest.get("done")
    ]
    if leaked:
        failures.append(f"{len(leaked)} keys leaked, e.g. {leaked[:5]}")
    report: dict[str, Any] = {
        "minutes": args.minutes,
        "runs_in_flight": args.runs,
        "workers": [w.backend for w in workers],
        "values_per_run": args.values,
        "completed": sum(w.latest.get("completed", 0) for w in workers),
        "values": sum(w.latest.get("values", 0) for w in workers),
        "keys_leaked": len(leaked),
        "keys_expiring": len(expiring),
        "samples": samples,
    }
    steady = [s for s in samples if s["t"] <= seconds]
    report["series"] = {
        name: judge(steady, name, judged=seconds >= JUDGED_AFTER)
        for name in ("rss", "used_memory")
    }
    failures.extend(
        f"{name} is not flat: {verdict['why']}"
        for name, verdict in report["series"].items()
        if verdict["flat"] is False
    )
    report["failures"] = failures
    return report


def _fit(ts: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ``ys`` against ``ts``."""
    n = len(ts)
    mt, my = sum(ts) / n, sum(ys) / n
    var = sum((t - mt) ** 2 for t in ts)
    if var == 0:
        return 0.0
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / var


def _mean(
    samples: Sequence[dict[str, float]], name: str, lo: float, hi: float
) -> float:
    window = [s[name] for s in samples if lo <= s["t"] < hi]
    return sum(window) / len(window) if window else float("nan")


def judge(
    samples: Sequence[dict[str, float]], name: str, *, judged: bool
) -> dict[str, Any]:
    """Figures of one series and whether it is flat (None: too short to judge)."""
    end = samples[-1]["t"] if samples else 0.0
    half = [s for s in samples if s["t"] >= end / 2]
    ts = [s["t"] / 60 for s in half]
    ys = [s[name] for s in half]
    mean = sum(ys) / len(ys) if ys else float("nan")
    slope = _fit(ts, ys) if len(ys) > 1 else 0.0
    second = _mean(samples, name, 60, 120)
    last = _mean(samples, name, end - 60, end + 1)
    verdict: dict[str, Any] = {
        "mean_second_half": mean,
        "slope_per_minute": slope,
        "slope_percent_per_minute": 100 * slope / mean if mean else float("nan"),
        "second_minute_mean": second,
        "last_minute_mean": last,
        "drift_percent": 100 * (last - second) / second if second else float("nan"),
        "flat": None,
        "why": "shorter than 3 minutes: not judged",
    }
    if judged:
        steep = slope >= SLOPE_LIMIT * mean  # growth; a falling series is fine
        drift = abs(last - second) > DRIFT_LIMIT * second
        verdict["flat"] = not (steep or drift)
        verdict["why"] = (
            f"slope {verdict['slope_percent_per_minute']:+.2f}%/min "
            f"(limit {100 * SLOPE_LIMIT:.0f}%), last minute vs second "
            f"{verdict['drift_percent']:+.1f}% (limit {100 * DRIFT_LIMIT:.0f}%)"
        )
    return verdict


# ---------------------------------------------------------------- table, plot
def table(report: dict[str, Any]) -> str:
    """The soak's figures as a plain-text table."""
    seconds = report["minutes"] * 60
    lines = [
        f"soak: {report['runs_in_flight']} runs in flight on workers "
        f"{', '.join(report['workers'])}, {report['values_per_run']:,} values a run, "
        f"{report['minutes']:g} min",
        f"runs completed and checked: {report['completed']:,}   values: "
        f"{report['values']:,} ({report['values'] / seconds:,.0f}/s)   "
        f"keys leaked: {report['keys_leaked']} (self-expiring watchers left: "
        f"{report['keys_expiring']})",
        f"{'series':<12} {'2nd min':>10} {'last min':>10} {'drift':>8} "
        f"{'slope/min':>10}  flat",
    ]
    for name, v in report["series"].items():
        lines.append(
            f"{name:<12} {v['second_minute_mean'] / 1e6:>8.1f}MB "
            f"{v['last_minute_mean'] / 1e6:>8.1f}MB {v['drift_percent']:>+7.1f}% "
            f"{v['slope_percent_per_minute']:>+9.2f}%  {v['flat']}"
        )
    lines.extend(f"FAILED: {f}" for f in report["failures"])
    return "\n".join(lines)


def rates(samples: Sequence[dict[str, float]], window: float) -> list[float]:
    """Values/s over the trailing ``window`` seconds at each sample.

    Runs finish in waves (a slot's runs take similar times), so the rate between
    two samples a few seconds apart jumps between zero and twice the mean.
    """
    out = []
    for i, s in enumerate(samples):
        j = i
        while j > 0 and s["t"] - samples[j - 1]["t"] <= window:
            j -= 1
        base = samples[j]
        out.append((s["values"] - base["values"]) / max(s["t"] - base["t"], 1e-9))
    return out


def plot(report: dict[str, Any], path: str) -> None:
    """Draw worker RSS, Redis memory and throughput over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = report["samples"]
    minutes = [s["t"] / 60 for s in samples]
    fig, (rss, redis, rate) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    for i, backend in enumerate(report["workers"]):
        series = [s[f"rss_{i}"] / 1e6 for s in samples]
        rss.plot(minutes, series, label=f"worker {i} ({backend})")
    rss.set(ylabel="MB", title="Worker RSS (psutil)")
    rss.legend(loc="lower right")
    redis.plot(minutes, [s["used_memory"] / 1e6 for s in samples], color="tab:red")
    redis.set(ylabel="MB", title="Redis used_memory (INFO memory)")
    rate.plot(minutes, rates(samples, 30.0), color="tab:green")
    rate.set(
        xlabel="minutes",
        ylabel="values/s",
        title="Source values of checked runs per second (trailing 30 s)",
    )
    for axis in (rss, redis, rate):
        axis.set_ylim(bottom=0)
        axis.grid(True, alpha=0.3)
        axis.axvline(report["minutes"], color="gray", linestyle=":")
    fig.suptitle(
        f"Soak: {report['runs_in_flight']} concurrent runs of a 5-processor flow, "
        f"{report['completed']:,} runs checked (dotted: end of the soak)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------- main
def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak")
    parser.add_argument(
        "--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "10"))
    )
    parser.add_argument("--runs", type=int, default=100, help="runs in flight")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backends", default="asyncio,trio", help="one per worker")
    parser.add_argument("--values", type=int, default=3000, help="values a run")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds")
    parser.add_argument("--redis-url", help="default: a throwaway redis-server")
    parser.add_argument("--prefix", default="dgsoak")
    parser.add_argument(
        "--settle",
        type=float,
        default=35.0,
        help="seconds to wait at the end for watcher hashes to expire",
    )
    parser.add_argument("--json", help="write the report (with samples) here")
    parser.add_argument("--plot", help="write the plot (PNG) here")
    # The worker side (started by the parent).
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="asyncio", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


@contextlib.contextmanager
def _server(url: str | None) -> Iterator[str]:
    if url:
        yield url
    else:
        with redis_server() as started:
            yield started


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak (or, with ``--worker``, one worker of it); return the exit code."""
    args = _arguments(argv)
    if args.worker:
        anyio.run(
            _worker, args.redis_url, args.prefix, args.runs, args.values,
            args.seconds, args.first, backend=args.backend,
        )  # fmt: skip
        return 0
    with _server(args.redis_url) as url:
        report = soak(args, url, args.prefix)
    print(table(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if args.plot:
        plot(report, args.plot)
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
