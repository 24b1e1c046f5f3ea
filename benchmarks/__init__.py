"""Datagraph's benchmark suite: ``python -m benchmarks.suite`` (or ``make bench``).

Each module measures one workload or peer; ``suite`` runs them and prints the
table described in docs/benchmarks.md.
"""
