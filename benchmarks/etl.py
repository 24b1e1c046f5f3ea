"""Workload ETL: N small JSON records -> parse -> transform -> load into SQLite.

The records exist before a run starts: ``write_records`` writes them as JSON lines
to a file, and extraction reads that file a line at a time (optionally awaiting
``io_delay`` of simulated I/O per record). The record functions are shared by
every system that runs the workload (Datagraph, async-graph-data-flow, Celery),
so they all do the same work: ``parse`` is ``json.loads``, ``transform``
validates and normalises one record into a row, and SQLite gets the rows. Each
system commits the way it naturally would: Datagraph per batch it reads,
async-graph-data-flow per 100 rows, a Celery chain per record, a Celery staged
pipeline once.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from typing import TYPE_CHECKING, Any

import anyio

from datagraph import IO, Flow, IOVal, Processor, RunCancelledError, Supervisor

from ._common import sum_check

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence

_FIRST = ["ada", "grace", "alan", "edsger", "barbara", "donald", "margaret", "ken"]
_LAST = ["lovelace", "hopper", "turing", "dijkstra", "liskov", "knuth", "hamilton"]
_SKUS = ["kb-101", "ms-220", "mon-27", "cab-usb", "hd-2tb", "cam-hd", "dock-3"]

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS orders (id INTEGER NOT NULL, customer TEXT NOT "
    "NULL, email TEXT NOT NULL, sku TEXT NOT NULL, quantity INTEGER NOT NULL, "
    "unit_price_cents INTEGER NOT NULL, total_cents INTEGER NOT NULL, ordered_on "
    "TEXT NOT NULL)"
)
INSERT = "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


def make_record(i: int) -> str:
    """Record ``i``: a small JSON document, as a file or an API would give it."""
    first, last = _FIRST[i % len(_FIRST)], _LAST[i % len(_LAST)]
    return json.dumps(
        {
            "id": i,
            "customer": f"  {first} {last.upper()} ",
            "email": f"{first}.{last}@Example.COM",
            "sku": _SKUS[i % len(_SKUS)],
            "qty": i % 5 + 1,
            "price": f"{100 + i % 900}.{i % 100:02d}",
            "date": f"{1 + i % 28:02d}/{1 + i % 12:02d}/2024",
        }
    )


def write_records(path: str, n: int) -> None:
    """Write the first ``n`` records to ``path``, one JSON document per line."""
    with open(path, "w", encoding="utf-8") as out:
        for i in range(n):
            out.write(make_record(i) + "\n")


def read_records(path: str) -> Iterator[str]:
    """Yield the records of a file written by ``write_records``."""
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            yield line.rstrip("\n")


def parse(raw: str) -> dict[str, Any]:
    """Parse one record."""
    record: dict[str, Any] = json.loads(raw)
    return record


def transform(record: dict[str, Any]) -> list[Any]:
    """Validate and normalise one record into a row of ``orders``.

    Raises:
        ValueError: a field does not validate.
    """
    quantity = int(record["qty"])
    if quantity <= 0:
        msg = f"record {record['id']}: quantity must be positive"
        raise ValueError(msg)
    units, _, cents = str(record["price"]).partition(".")
    price = int(units) * 100 + int(cents or 0)
    email = str(record["email"]).strip().lower()
    if "@" not in email:
        msg = f"record {record['id']}: {email!r} is not an address"
        raise ValueError(msg)
    day, month, year = str(record["date"]).split("/")
    return [
        int(record["id"]),
        " ".join(str(record["customer"]).split()).title(),
        email,
        str(record["sku"]).upper(),
        quantity,
        price,
        quantity * price,
        f"{year}-{month}-{day}",
    ]


def expected_total(n: int) -> int:
    """The sum of ``total_cents`` over the first ``n`` records."""
    total = 0
    for i in range(n):
        total += (i % 5 + 1) * ((100 + i % 900) * 100 + i % 100)
    return total


def open_db(path: str) -> sqlite3.Connection:
    """Open the target database (WAL, no fsync: the disk is not what is measured)."""
    db = sqlite3.connect(path, timeout=60, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute(SCHEMA)
    return db


def insert(db: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> None:
    """Insert rows in one transaction."""
    db.execute("BEGIN")
    db.executemany(INSERT, rows)
    db.execute("COMMIT")


def check_db(path: str, n: int) -> None:
    """Fail unless the database holds each of the ``n`` records once, correctly."""
    db = sqlite3.connect(path)
    try:
        count, ids, total = db.execute(
            "SELECT count(*), count(DISTINCT id), coalesce(sum(total_cents), 0) "
            "FROM orders"
        ).fetchone()
    finally:
        db.close()
    sum_check(count, n, "ETL rows loaded")
    sum_check(ids, n, "ETL distinct records loaded")
    sum_check(total, expected_total(n), "ETL total_cents")


# ---------------------------------------------------------------- Datagraph
extract = Processor(name="etl_extract", inputs=["etl_spec"], outputs=["etl_raw"])
parse_step = Processor(name="etl_parse", inputs=["etl_raw"], outputs=["etl_records"])
transform_step = Processor(
    name="etl_transform", inputs=["etl_records"], outputs=["etl_rows"]
)
load = Processor(name="etl_load", inputs=["etl_rows", "etl_db"], outputs=["etl_loaded"])

#: perf_counter() when the current run's first row was committed (this process).
first_commit: list[float] = []


@extract
async def _extract(etl_spec: IO[list[Any]]) -> AsyncIterator[str]:
    source, io_delay = await etl_spec.first()
    for raw in read_records(source):
        if io_delay:
            await anyio.sleep(io_delay)
        yield raw


@parse_step
async def _parse(etl_raw: IO[str]) -> AsyncIterator[dict[str, Any]]:
    async for raw in etl_raw.stream():
        yield parse(raw)


@transform_step
async def _transform(etl_records: IO[dict[str, Any]]) -> AsyncIterator[list[Any]]:
    async for record in etl_records.stream():
        yield transform(record)


@load
async def _load(etl_rows: IO[list[Any]], etl_db: IO[str]) -> AsyncIterator[int]:
    db = open_db(await etl_db.first())
    try:
        # One transaction per batch of rows that is there to read: large batches
        # when the rows come fast, a row at a time when they trickle in.
        async for rows in etl_rows.chunks():
            insert(db, rows)
            if not first_commit:
                first_commit.append(time.perf_counter())
            yield len(rows)
    finally:
        db.close()


ETL = Flow.from_processors(extract, parse_step, transform_step, load).resolve()


def _inputs(source: str, io_delay: float, path: str) -> list[IOVal[Any]]:
    return [IOVal("etl_spec", [source, io_delay]), IOVal("etl_db", path)]


async def etl_throughput(
    supervisor: Supervisor, source: str, n: int, path: str
) -> float:
    """Run the ETL flow on ``source`` (``n`` records) to the end; return seconds.

    The database at ``path`` is checked afterwards.
    """
    start = time.perf_counter()
    run = await supervisor.start_flow(ETL, inputs=_inputs(source, 0.0, path))
    loaded = sum(await run["etl_loaded"].collect())
    await run.wait()
    elapsed = time.perf_counter() - start
    await supervisor.store.delete_run(run.id)
    sum_check(loaded, n, "ETL rows reported loaded")
    check_db(path, n)
    return elapsed


async def etl_first_loaded(
    supervisor: Supervisor, source: str, io_delay: float, path: str
) -> float:
    """Start the ETL flow; return seconds until its first row is committed.

    Counted from just before ``start_flow``. The run is cancelled right after
    (its first committed rows are what is measured).
    """
    first_commit.clear()
    start = time.perf_counter()
    run = await supervisor.start_flow(ETL, inputs=_inputs(source, io_delay, path))
    async for _ in run["etl_loaded"].chunks():
        break
    await run.cancel()
    with contextlib.suppress(RunCancelledError):  # the cancellation asked for
        await run.wait(timeout=30)
    await supervisor.store.delete_run(run.id)
    return first_commit[0] - start
