"""The Celery peer's app and tasks, as the worker processes import them.

Plain Celery with its defaults (JSON, prefork pool), a Redis broker and result
backend at ``$DG_BENCH_CELERY_URL`` (databases 1 and 2 of that server). The
suite starts the workers itself (``celery_peer.workers``) against a throwaway
redis-server.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from celery import Celery

from . import etl
from ._common import redis_database

if TYPE_CHECKING:
    from collections.abc import Callable

QUEUE = "dgbench"


def _urls(url: str) -> tuple[str, str]:
    return redis_database(url, 1), redis_database(url, 2)


_broker, _backend = _urls(os.environ.get("DG_BENCH_CELERY_URL", "redis://127.0.0.1"))
app = Celery("dgbench", broker=_broker, backend=_backend)
app.conf.update(
    task_default_queue=QUEUE,
    result_expires=3600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


def task(func: Callable[..., Any]) -> Any:
    """Register ``func`` as a task of the app (a typed ``app.task``)."""
    return app.task(func)


def configure(url: str) -> None:
    """Point this process's app (the client side) at the server at ``url``."""
    broker, backend = _urls(url)
    app.conf.update(broker_url=broker, result_backend=backend)


@task
def ping() -> str:
    """Answer, once the worker is up."""
    return "pong"


# --------------------------------------------------------- W3, one chain a value
@task
def w3_source(i: int) -> int:
    """W3's source, for one value."""
    return i


@task
def w3_double(x: int) -> int:
    """x*2."""
    return x * 2


@task
def w3_increment(x: int) -> int:
    """x+1."""
    return x + 1


# ------------------------------------------------ W3, staged: a task per stage
@task
def w3_stage_source(n: int) -> list[int]:
    """All of W3's source values."""
    return list(range(n))


@task
def w3_stage_double(xs: list[int]) -> list[int]:
    """x*2 over the whole list."""
    return [x * 2 for x in xs]


@task
def w3_stage_increment(xs: list[int]) -> list[int]:
    """x+1 over the whole list."""
    return [x + 1 for x in xs]


# ------------------------------------------------------- ETL, one chain a record
@task
def etl_parse(raw: str) -> dict[str, Any]:
    """Parse one record."""
    return etl.parse(raw)


@task
def etl_transform(record: dict[str, Any]) -> list[Any]:
    """Validate and normalise one record."""
    return etl.transform(record)


_dbs: dict[str, Any] = {}


@task
def etl_load(row: list[Any], path: str) -> int:
    """Insert one row (a transaction per record: the task is the record)."""
    db = _dbs.get(path)
    if db is None:
        db = _dbs[path] = etl.open_db(path)
    etl.insert(db, [row])
    return 1


# ------------------------------------------------- ETL, staged: a task per stage
@task
def etl_stage_extract(source: str, io_delay: float) -> list[str]:
    """Read every record, waiting ``io_delay`` seconds of I/O for each."""
    records = []
    for raw in etl.read_records(source):
        if io_delay:
            time.sleep(io_delay)
        records.append(raw)
    return records


@task
def etl_stage_parse(records: list[str]) -> list[dict[str, Any]]:
    """Parse every record."""
    return [etl.parse(raw) for raw in records]


@task
def etl_stage_transform(records: list[dict[str, Any]]) -> list[list[Any]]:
    """Validate and normalise every record."""
    return [etl.transform(record) for record in records]


@task
def etl_stage_load(rows: list[list[Any]], path: str) -> float:
    """Insert every row in one transaction; return ``time.time()`` at the commit."""
    db = etl.open_db(path)
    try:
        etl.insert(db, rows)
        return time.time()
    finally:
        db.close()
