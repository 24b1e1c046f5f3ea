"""W3 throughput only: the suite's "W3 throughput" rows, as a script.

    python benchmarks/w3.py [--n N] [--quick] [--repeat R] [--redis-url URL] ...

Kept so the command the README shows still works: it runs
``python -m benchmarks.suite --only "W3 throughput"`` with ``--n N`` turned into
``--n-scale N/1,000,000``; any other suite option can follow. The W3 flow lives
in ``benchmarks/flows.py``, its baselines in ``benchmarks/baselines.py``.
"""

import argparse
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.suite import main

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--n", type=int)
    known, rest = parser.parse_known_args()
    scale = [] if known.n is None else ["--n-scale", str(known.n / 1_000_000)]
    sys.exit(main(["--only", "W3 throughput", "--no-plot", *scale, *rest]))
