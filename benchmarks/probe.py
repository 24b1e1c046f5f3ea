"""One W3 run in a fresh process, for peak memory: ``python -m benchmarks.probe``.

    python -m benchmarks.probe SYSTEM N [REDIS_URL]

SYSTEM is ``datagraph-memory``, ``datagraph-redis``, ``anyio-streams`` or
``agdf``. Prints one JSON object: the run's seconds and the process's peak RSS
(``VmHWM``) in bytes. Peak RSS only ever grows, so each measurement needs a
process of its own; the suite starts one per run with ``probe()``.
"""

from __future__ import annotations

import contextlib
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

from ._common import fresh_process

SYSTEMS = ("datagraph-memory", "datagraph-redis", "anyio-streams", "agdf")


def measure(system: str, n: int, redis_url: str | None) -> dict[str, Any]:
    """Run W3 once on ``system`` in this process; return seconds and peak RSS."""
    import anyio

    if system == "agdf":
        from . import agdf

        seconds = agdf.w3_once(n)
    elif system == "anyio-streams":
        from . import baselines

        seconds = anyio.run(baselines.streams_once, n)
    elif system.startswith("datagraph-"):
        from . import flows

        url = redis_url if system == "datagraph-redis" else None
        if system == "datagraph-redis" and not url:
            msg = "datagraph-redis needs a Redis URL"
            raise SystemExit(msg)
        (seconds,) = anyio.run(flows.w3_times, url, n, 1)
    else:
        msg = f"unknown system {system!r}; one of {', '.join(SYSTEMS)}"
        raise SystemExit(msg)
    return {"system": system, "n": n, "seconds": seconds, "peak_rss": peak_rss()}


def peak_rss() -> int:
    """This process's peak resident set size, in bytes.

    On Linux, ``VmHWM`` of /proc/self/status: ``ru_maxrss`` would not do, as it
    survives ``exec`` and so starts at the RSS of the process that spawned us.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def probe(system: str, n: int, redis_url: str | None = None) -> dict[str, Any]:
    """Run ``measure`` in a fresh Python process; return what it printed."""
    start = time.perf_counter()
    result = fresh_process(
        "benchmarks.probe", system, str(n), *filter(None, [redis_url])
    )
    result["wall"] = time.perf_counter() - start
    return result


def main(argv: list[str]) -> int:
    """Measure as the command line says; print the JSON result."""
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    redis_url = argv[2] if len(argv) == 3 else None
    print(json.dumps(measure(argv[0], int(argv[1]), redis_url)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
