"""Service "warehouse": validates rows and loads the orders into SQLite.

Serve it with ``celery -A examples.distributed.warehouse worker``; the database
is ``$DEMO_DATABASE``, by default ``datagraph-orders.sqlite3`` in the temporary
directory (never the worker's working directory).
"""

import dataclasses
import os
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal, InvalidOperation
from typing import Annotated

from datagraph import IO, BlockingIO, Depends, IOVal

from .orders import Order, RawRecord, Reject, attach, load, transform

app = attach()

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT NOT NULL, customer TEXT NOT NULL, sku TEXT NOT NULL,
    quantity INTEGER NOT NULL, total_cents INTEGER NOT NULL
)
"""


def validate(record: RawRecord) -> Order:
    """Return the order a row describes, or raise ValueError saying what is wrong."""
    row = record.fields
    customer = " ".join(row.get("customer", "").split()).title()
    if not customer:
        msg = "no customer"
        raise ValueError(msg)
    try:
        quantity = int(row.get("quantity", ""))
        price = Decimal(row.get("unit_price", ""))
    except (ValueError, InvalidOperation):
        msg = (
            f"bad quantity or price: {row.get('quantity')!r}, {row.get('unit_price')!r}"
        )
        raise ValueError(msg) from None
    if quantity <= 0:
        msg = f"quantity must be positive: {quantity}"
        raise ValueError(msg)
    cents = int(price * 100) * quantity
    return Order(row["order_id"], customer, row.get("sku", "?"), quantity, cents)


@transform
async def _transform(records: IO[RawRecord]) -> AsyncIterator[IOVal[Order | Reject]]:
    """Validate each row: an order to ``orders``, a bad row to ``rejects``."""
    async for record in records.stream():
        try:
            order = validate(record)
        except ValueError as exc:
            yield IOVal("rejects", Reject(record.where, str(exc)))
        else:
            yield IOVal("orders", order)


def get_db() -> Iterator[sqlite3.Connection]:
    """Open the database for one processor run, and close it after."""
    default = os.path.join(tempfile.gettempdir(), "datagraph-orders.sqlite3")
    db = sqlite3.connect(os.environ.get("DEMO_DATABASE") or default)
    try:
        db.execute(SCHEMA)
        yield db
    finally:
        db.close()


@load
def _load(
    orders: BlockingIO[Order], db: Annotated[sqlite3.Connection, Depends(get_db)]
) -> Iterator[int]:
    """Insert the orders 100 rows per transaction; yield each count.

    A plain generator: it runs in a thread of the worker's event loop.
    """
    insert = "INSERT INTO orders VALUES (?, ?, ?, ?, ?)"
    batch = []
    for order in orders.stream():
        batch.append(dataclasses.astuple(order))
        if len(batch) == 100:
            with db:
                db.executemany(insert, batch)
            yield len(batch)
            batch = []
    if batch:
        with db:
            db.executemany(insert, batch)
        yield len(batch)
