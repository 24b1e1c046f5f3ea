"""The W3 service served by ``celery worker`` processes in the distributed rows.

Implements W3's three processors (benchmarks/flows.py); the suite starts one
``celery -A benchmarks.celery_service worker -Q datagraph.<stage>`` per stage, so
each stage runs in a worker process of its own. ``$DG_BENCH_REDIS_URL`` is the
store and the broker (its database 4); settings are the library's defaults, or
``DATAGRAPH_*`` as the suite sets them (the lease of the recovery row).
"""

from __future__ import annotations

import os

from celery import Celery

from datagraph import Settings, Supervisor
from datagraph.executors.celery import CeleryExecutor

from . import flows
from ._common import redis_database  # registers W3's implementations


def broker_url(url: str) -> str:
    """The broker's database on the bench's Redis server."""
    return redis_database(url, 4)


def make_app(url: str) -> Celery:
    """The Celery app of the distributed rows (Celery's defaults otherwise)."""
    app = Celery("dgbench-distributed", broker=broker_url(url), set_as_current=False)
    app.conf.update(
        broker_connection_retry_on_startup=True, worker_hijack_root_logger=False
    )
    return app


def make_supervisor(url: str, app: Celery) -> Supervisor:
    """A supervisor on the bench's store that dispatches through ``app``."""
    settings = Settings.from_env(redis_url=url, prefix=flows.PREFIX)
    return Supervisor(settings=settings, executor=CeleryExecutor(app))


if os.environ.get("DG_BENCH_REDIS_URL"):  # in a worker (the suite imports it too)
    _url = os.environ["DG_BENCH_REDIS_URL"]
    app = make_app(_url)
    Supervisor.attach(
        settings=Settings.from_env(redis_url=_url, prefix=flows.PREFIX),
        executor=CeleryExecutor(app),
    )
