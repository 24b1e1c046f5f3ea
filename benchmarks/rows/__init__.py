"""The rows of the suite, in groups: every figure the suite can measure, in order.

Each module measures the workloads of the module it is named after (or of its
peers'): ``in_process`` runs ``flows.py`` against ``baselines.py``, ``styles``
runs ``styles.py``, ``peers`` runs async-graph-data-flow and Celery, and
``distributed`` runs W3 across worker processes. ``_base`` holds what they share.
``GROUPS`` is the order the table shows (and the suite measures) them in.
"""

from __future__ import annotations

from . import distributed, in_process, peers, styles
from ._base import QUICK, TINY, Context, Group, Sizes, failed, log, n_

__all__ = (
    "GROUPS",
    "QUICK",
    "TINY",
    "Context",
    "Group",
    "Sizes",
    "failed",
    "log",
    "n_",
)

GROUPS = (
    Group("w3-memory", in_process.w3_memory_figures, in_process.w3_memory),
    Group("w3-redis", in_process.w3_redis_figures, in_process.w3_redis),
    Group("watched", in_process.watched_figures, in_process.watched),
    Group("latency", in_process.latency_figures, in_process.latency),
    Group("rss", in_process.rss_figures, in_process.rss),
    Group("redis-memory", in_process.redis_memory_figures, in_process.redis_memory),
    Group("scale-out", in_process.scale_figures, in_process.scale),
    Group("agdf", peers.agdf_figures, peers.agdf),
    Group("styles", styles.styles_figures, styles.styles),
    Group("seed-first", styles.seed_first_figures, styles.seed_first),
    # From here on Celery's workers run (started by the first group needing them).
    Group("first-value", peers.first_figures, peers.first),
    Group("celery-w3", peers.celery_w3_figures, peers.celery_w3),
    Group("celery-etl", peers.celery_etl_figures, peers.celery_etl),
    Group("distributed", distributed.distributed_figures, distributed.distributed),
)
