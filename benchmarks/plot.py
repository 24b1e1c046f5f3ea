"""The figure of docs/benchmarks.md: throughput and peak memory of W3 against N."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

#: How each system is drawn: label, colour, marker.
STYLES = {
    "datagraph-memory": ("Datagraph, memory store", "tab:blue", "o"),
    "datagraph-redis": ("Datagraph, Redis store", "tab:cyan", "s"),
    "anyio-streams": ("anyio memory object streams", "tab:gray", "^"),
    "agdf": ("async-graph-data-flow", "tab:orange", "v"),
    "celery-staged": (
        "Celery staged, a task per stage (memory: its worker processes)",
        "tab:red",
        "D",
    ),
    "celery-chains": ("Celery chains (3 tasks per value)", "tab:purple", "x"),
}


def plot(points: Sequence[Mapping[str, Any]], path: str, title: str) -> None:
    """Draw values/s and peak memory (MB) against N, one line per system.

    Each point is ``{"system", "n", "seconds", "peak_rss"}`` (``peak_rss`` may be
    None where it was not measured).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.2))
    for system, (label, colour, marker) in STYLES.items():
        mine = sorted((p for p in points if p["system"] == system), key=_n)
        if not mine:
            continue
        ns = [p["n"] for p in mine]
        rates = [p["n"] / p["seconds"] for p in mine]
        left.plot(ns, rates, marker=marker, color=colour, label=label)
        memory = [(p["n"], p["peak_rss"] / 1e6) for p in mine if p.get("peak_rss")]
        if memory:
            right.plot(*zip(*memory, strict=True), marker=marker, color=colour)
    left.set(
        xscale="log",
        yscale="log",
        xlabel="N (values)",
        ylabel="values/s (higher is better)",
        title="W3 throughput",
    )
    right.set(
        xscale="log",
        xlabel="N (values)",
        ylabel="peak RSS, MB (lower is better)",
        title="W3 peak memory (fresh process per point)",
    )
    right.set_ylim(bottom=0)
    for axis in (left, right):
        axis.grid(True, which="both", alpha=0.3)
    fig.legend(loc="lower center", ncol=2, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _n(point: Mapping[str, Any]) -> int:
    n: int = point["n"]
    return n
