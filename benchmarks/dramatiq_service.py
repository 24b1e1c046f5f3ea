"""The W3 service served by ``dramatiq`` workers in the distributed rows.

Implements W3's three processors (benchmarks/flows.py); the suite starts one
``dramatiq benchmarks.dramatiq_service -Q datagraph.<stage>`` per stage, so each
stage runs in a worker process of its own. ``$DG_BENCH_REDIS_URL`` is the store
and the broker (its database 3); settings are the library's defaults, or
``DATAGRAPH_*`` as the suite sets them.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from datagraph import Settings, Supervisor
from datagraph.executors.dramatiq import DramatiqExecutor

from . import flows
from ._common import redis_database


def broker_url(url: str) -> str:
    """The broker's database on the bench's Redis server."""
    return redis_database(url, 3)


def make_broker(url: str) -> RedisBroker:
    """The broker of the bench's Dramatiq workers."""
    return RedisBroker(url=broker_url(url), namespace="dgbench")  # type: ignore[no-untyped-call]


def make_supervisor(url: str, broker: RedisBroker) -> Supervisor:
    """A supervisor on the bench's store that dispatches through ``broker``."""
    return Supervisor(
        settings=Settings.from_env(redis_url=url, prefix=flows.PREFIX),
        executor=DramatiqExecutor(broker),
    )


if os.environ.get("DG_BENCH_REDIS_URL"):  # in a worker (the suite imports it too)
    _url = os.environ["DG_BENCH_REDIS_URL"]
    _broker = make_broker(_url)
    dramatiq.set_broker(_broker)
    Supervisor.attach(
        settings=Settings.from_env(redis_url=_url, prefix=flows.PREFIX),
        executor=DramatiqExecutor(_broker),
    )
