"""Datagraph's benchmark suite: ``python -m benchmarks.suite`` (or ``make bench``).

Each module holds one workload or peer; ``rows`` turns them into the rows of the
table described in docs/benchmarks.md, and ``suite`` measures the rows asked for
and prints and writes the table.
"""
