"""A small but real ETL job: a folder of CSV and JSON order files into SQLite.

    python examples/etl.py [--files N] [--backend asyncio|trio] [--redis-url URL]

It writes N order files (CSV and JSON, a few rows deliberately broken) to a
temporary folder (or ``--dir``), then runs a flow of four streaming processors::

    folder -> extract -> files -> parse -> records -> transform -> orders -> load
                                                                -> rejects

(``load`` writes how many rows each transaction committed to a stream ``loaded``.)

The flow also runs from the ``datagraph`` command on a folder of such files (the
demo keeps its files with ``--dir``)::

    python examples/etl.py --dir /tmp/datagraph-orders
    datagraph run examples.etl:FLOW --input folder=/tmp/datagraph-orders

It then loads into ``$ETL_DATABASE``, by default ``datagraph-etl.sqlite3`` in the
temporary directory (never the working tree). Loading is idempotent: a line is
keyed by its file and row, so running the flow twice on the same files gives the
same rows.

All four start at once and each works on a value as soon as it arrives, so the
first orders are committed to SQLite while most files have not been read yet;
the demo prints when that happens and when extraction ends. The run uses the
embedded in-memory store unless ``--redis-url`` (or ``DATAGRAPH_REDIS_URL``) names
a Redis/Valkey server.
"""

import argparse
import csv
import dataclasses
import io
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import anyio

from datagraph import IO, BlockingIO, Depends, Flow, IOVal, Processor, Run, Supervisor

# --------------------------------------------------------------------------- settings


def default_database() -> str:
    """Return ``$ETL_DATABASE``, else a database in the temporary directory."""
    tmp = Path(tempfile.gettempdir()) / "datagraph-etl.sqlite3"
    return os.environ.get("ETL_DATABASE") or str(tmp)


@dataclasses.dataclass(frozen=True)
class EtlSettings:
    """What the processors need to know; injected wherever they ask for it."""

    database: str = dataclasses.field(default_factory=default_database)
    #: Simulated latency of reading one file (a network share, an object store...).
    io_delay: float = 0.005
    #: Rows per SQLite transaction.
    batch_size: int = 100


def get_settings() -> EtlSettings:
    """Provide the settings (the CLI replaces this dependency with its own)."""
    return EtlSettings()


SettingsDep = Annotated[EtlSettings, Depends(get_settings)]

# ------------------------------------------------------------------------ the records


@dataclasses.dataclass(frozen=True, slots=True)
class SourceFile:
    """A file as extracted: its name, format and text."""

    name: str
    kind: str  # "csv" or "json"
    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class RawRecord:
    """One order line as found in a file, every field still a string."""

    where: str  # file and row, for error messages
    fields: dict[str, str]
    problem: str | None = None  # set when the file itself could not be parsed


@dataclasses.dataclass(frozen=True, slots=True)
class Order:
    """A validated, normalised order line, ready to load."""

    order_id: str
    customer: str
    email: str
    sku: str
    quantity: int
    unit_price_cents: int
    total_cents: int
    ordered_on: str  # ISO date
    source: str


@dataclasses.dataclass(frozen=True, slots=True)
class Reject:
    """A line that failed validation, and why."""

    where: str
    reason: str


# ------------------------------------------------------------------ the SQLite target

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT NOT NULL,
    customer TEXT NOT NULL,
    email TEXT NOT NULL,
    sku TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    unit_price_cents INTEGER NOT NULL,
    total_cents INTEGER NOT NULL,
    ordered_on TEXT NOT NULL,
    source TEXT NOT NULL PRIMARY KEY  -- file and row: loading again replaces
)
"""


def get_db(settings: SettingsDep) -> Iterator[sqlite3.Connection]:
    """Open the database for one processor run, and close it after (however it ends).

    ``load`` is a sync generator, so it and this dependency run in a worker
    thread: SQLite's blocking calls never stall the event loop.
    """
    db = sqlite3.connect(settings.database)
    try:
        db.execute(SCHEMA)
        yield db
    finally:
        db.close()


# ------------------------------------------------------------------------- the flow

extract = Processor(name="extract", inputs=["folder"], outputs=["files"])
parse = Processor(name="parse", inputs=["files"], outputs=["records"])
transform = Processor(
    name="transform", inputs=["records"], outputs=["orders", "rejects"]
)
load = Processor(name="load", inputs=["orders"], outputs=["loaded"])


@extract
async def _extract(folder: IO[str], settings: SettingsDep) -> AsyncIterator[SourceFile]:
    """List the folder, then read the files one by one."""
    root = anyio.Path(await folder.first())
    paths = sorted([p async for p in root.iterdir() if p.suffix in (".csv", ".json")])
    for path in paths:
        text = await path.read_text(encoding="utf-8")
        await anyio.sleep(settings.io_delay)
        yield SourceFile(name=path.name, kind=path.suffix[1:], text=text)


@parse
async def _parse(files: IO[SourceFile]) -> AsyncIterator[RawRecord]:
    """Turn each file into order lines, whatever its format."""
    async for file in files.stream():
        lines = _csv_lines(file) if file.kind == "csv" else _json_lines(file)
        for line in lines:
            yield line


def _csv_lines(file: SourceFile) -> Iterator[RawRecord]:
    reader = csv.DictReader(io.StringIO(file.text))
    for row_number, row in enumerate(reader, start=2):  # line 1 is the header
        fields = {key: value or "" for key, value in row.items() if key}
        yield RawRecord(f"{file.name}:{row_number}", fields)


def _json_lines(file: SourceFile) -> Iterator[RawRecord]:
    """Flatten orders (a customer, a date, several items) into one line per item."""
    try:
        documents = json.loads(file.text)
    except json.JSONDecodeError as exc:
        yield RawRecord(file.name, {}, problem=f"unreadable JSON ({exc})")
        return
    if not isinstance(documents, list):
        yield RawRecord(file.name, {}, problem="expected a JSON list of orders")
        return
    for number, document in enumerate(documents, start=1):
        if not isinstance(document, dict):
            yield RawRecord(f"{file.name}#{number}", {}, problem="not a JSON object")
            continue
        customer = document.get("customer") or {}
        for item_number, item in enumerate(document.get("items") or [], start=1):
            fields = {
                "order_id": document.get("id"),
                "customer": customer.get("name"),
                "email": customer.get("email"),
                "sku": item.get("sku"),
                "quantity": item.get("qty"),
                "unit_price": item.get("price"),
                "date": document.get("placed"),
            }
            yield RawRecord(
                f"{file.name}:{document.get('id')}#{item_number}",
                {k: "" if v is None else str(v) for k, v in fields.items()},
            )


class Invalid(ValueError):
    """A field that does not pass validation."""


def _quantity(text: str) -> int:
    try:
        quantity = int(text)
    except ValueError:
        msg = f"quantity {text!r} is not a whole number"
        raise Invalid(msg) from None
    if quantity <= 0:
        msg = f"quantity must be positive, got {quantity}"
        raise Invalid(msg)
    return quantity


def _cents(text: str) -> int:
    try:
        price = Decimal(text.strip().lstrip("$"))
    except InvalidOperation:
        msg = f"unit price {text!r} is not a number"
        raise Invalid(msg) from None
    if not price.is_finite() or price < 0:
        msg = f"unit price must be a non-negative amount, got {text!r}"
        raise Invalid(msg)
    return int((price * 100).to_integral_value())


def _iso_date(text: str) -> str:
    for fmt in ("%Y-%m-%d", "%d/%m/%Y"):  # the CSV and the JSON exports differ
        try:
            return datetime.strptime(text.strip(), fmt).date().isoformat()
        except ValueError:
            pass
    msg = f"date {text!r} is not a valid YYYY-MM-DD or DD/MM/YYYY date"
    raise Invalid(msg)


def validate(record: RawRecord) -> Order:
    """Normalise one raw line into an ``Order``.

    Raises:
        Invalid: saying what is wrong with the line.
    """
    if record.problem:
        raise Invalid(record.problem)
    f = record.fields
    customer = " ".join(f.get("customer", "").split()).title()
    if not customer:
        msg = "customer name is missing"
        raise Invalid(msg)
    email = f.get("email", "").strip().lower()
    if "@" not in email:
        msg = f"email {email!r} is not an address"
        raise Invalid(msg)
    quantity = _quantity(f.get("quantity", ""))
    unit_price = _cents(f.get("unit_price", ""))
    return Order(
        order_id=f.get("order_id", "").strip().upper(),
        customer=customer,
        email=email,
        sku=f.get("sku", "").strip().upper(),
        quantity=quantity,
        unit_price_cents=unit_price,
        total_cents=quantity * unit_price,
        ordered_on=_iso_date(f.get("date", "")),
        source=record.where,
    )


@transform
async def _transform(records: IO[RawRecord]) -> AsyncIterator[IOVal[Order | Reject]]:
    """Validate and normalise each line; a bad line goes to ``rejects``."""
    async for record in records.stream():
        try:
            order = validate(record)
        except Invalid as exc:
            yield IOVal("rejects", Reject(record.where, str(exc)))
        else:
            yield IOVal("orders", order)


@load
def _load(
    orders: BlockingIO[Order],
    db: Annotated[sqlite3.Connection, Depends(get_db)],
    settings: SettingsDep,
) -> Iterator[int]:
    """Upsert the orders in transactions of ``batch_size`` rows; yield each count.

    Each row is keyed by its source (file and row), so loading the same files
    again replaces the rows instead of adding them twice.

    A plain generator: Datagraph runs it in a worker thread, and ``orders`` blocks
    that thread (never the event loop) while it waits for the next order.
    """
    fields = [f.name for f in dataclasses.fields(Order)]
    insert = (
        f"INSERT OR REPLACE INTO orders ({', '.join(fields)}) "
        f"VALUES ({', '.join('?' for _ in fields)})"
    )
    batch: list[tuple[Any, ...]] = []
    for order in orders.stream():
        batch.append(dataclasses.astuple(order))
        if len(batch) >= settings.batch_size:
            with db:  # one transaction
                db.executemany(insert, batch)
            yield len(batch)
            batch = []
    if batch:
        with db:
            db.executemany(insert, batch)
        yield len(batch)


FLOW = Flow.from_processors(extract, parse, transform, load).resolve()

# ---------------------------------------------------------------------- sample data

_FIRST = ["ada", "grace", "alan", "edsger", "barbara", "donald", "margaret", "ken"]
_LAST = ["lovelace", "hopper", "turing", "dijkstra", "liskov", "knuth", "hamilton"]
_SKUS = ["kb-101", "ms-220", "mon-27", "cab-usb", "hd-2tb", "cam-hd", "dock-3"]
_CSV_HEADER = ["order_id", "customer", "email", "sku", "quantity", "unit_price", "date"]
_FAULT_RATE = 0.03  # of orders with a bad customer or date, and of bad items


@dataclasses.dataclass
class Generated:
    """What was written, so the demo can check what it loaded."""

    csv_files: int = 0
    json_files: int = 0
    lines: int = 0  # order lines, plus one per unreadable file
    bad: int = 0  # lines (and unreadable files) that must be rejected


@dataclasses.dataclass
class _Head:
    """The order-level part of a line: who ordered, and when."""

    customer: str
    email: str
    day: date | None  # None: an impossible date is written
    broken: bool


def _head(rng: random.Random, day: date) -> _Head:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    name = f"  {first} {last} " if rng.random() < 0.3 else f"{first}  {last.upper()}"
    head = _Head(name, f"{first}.{last}@Example.com", day, broken=False)
    if rng.random() < _FAULT_RATE:
        fault = rng.choice(["customer", "email", "day"])
        if fault == "customer":
            head.customer = ""
        elif fault == "email":
            head.email = f"{first}.{last}"
        else:
            head.day = None
        head.broken = True
    return head


def _item(rng: random.Random) -> tuple[str, Any, str, bool]:
    """Return sku, quantity, unit price and whether the item is broken on purpose."""
    sku, quantity = rng.choice(_SKUS), rng.randint(1, 5)
    price = f"{rng.randint(199, 49999) / 100:.2f}"
    if rng.random() < _FAULT_RATE:
        faults: list[tuple[Any, str]] = [(0, price), ("two", price), (quantity, "n/a")]
        quantity, price = rng.choice(faults)
        return sku, quantity, price, True
    return sku, quantity, price, False


def _csv_file(rng: random.Random, index: int, day: date, stats: Generated) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(_CSV_HEADER)
    for number in range(rng.randint(5, 15)):
        head = _head(rng, day)
        sku, quantity, price, broken = _item(rng)
        when = head.day.isoformat() if head.day else "2024-02-30"
        order_id = f"c-{index:05d}-{number}"
        writer.writerow(
            [order_id, head.customer, head.email, sku, quantity, price, when]
        )
        stats.lines += 1
        stats.bad += head.broken or broken
    return out.getvalue()


def _json_file(rng: random.Random, index: int, day: date, stats: Generated) -> str:
    documents = []
    for number in range(rng.randint(2, 5)):
        head = _head(rng, day)
        items = []
        for _ in range(rng.randint(1, 3)):
            sku, quantity, price, broken = _item(rng)
            amount: Any = float(price) if price[0].isdigit() else price
            items.append({"sku": sku, "qty": quantity, "price": amount})
            stats.lines += 1
            stats.bad += head.broken or broken
        documents.append(
            {
                "id": f"j-{index:05d}-{number}",
                "customer": {"name": head.customer, "email": head.email},
                "placed": head.day.strftime("%d/%m/%Y") if head.day else "30/02/2024",
                "items": items,
            }
        )
    return json.dumps(documents, indent=1)


def generate(folder: Path, count: int, seed: int = 7) -> Generated:
    """Write ``count`` order files (three CSV for every two JSON) to ``folder``."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    stats = Generated()
    for index in range(count):
        day = date.fromordinal(date(2024, 1, 1).toordinal() + index % 366)
        if index % 5 in (1, 3):
            stats.json_files += 1
            if index % 97 == 51:  # now and then a file was cut short in transit
                text = '[{"id": "j-cut", "customer": {"na'
                stats.lines += 1
                stats.bad += 1
            else:
                text = _json_file(rng, index, day, stats)
            (folder / f"orders-{index:05d}.json").write_text(text, "utf-8")
        else:
            stats.csv_files += 1
            text = _csv_file(rng, index, day, stats)
            (folder / f"orders-{index:05d}.csv").write_text(text, "utf-8")
    return stats


# -------------------------------------------------------------------------- the demo


@dataclasses.dataclass
class Progress:
    """What the demo has seen of the run so far."""

    started: float
    total_files: int
    files: int = 0
    loaded: int = 0
    batches: int = 0
    rejects: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    first_load: float | None = None
    extracted: float | None = None

    def now(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.started

    def log(self, message: str) -> None:
        """Print a line stamped with the time since the run started."""
        print(f"[{self.now():7.3f}s] {message}", flush=True)


async def watch_files(files: IO[Any], progress: Progress) -> None:
    """Follow extraction (a flow stream can have any number of readers)."""
    quarters = {progress.total_files * q // 4 for q in (1, 2, 3)}
    async for _ in files.stream():
        progress.files += 1
        if progress.files in quarters:
            progress.log(
                f"extract: {progress.files}/{progress.total_files} files read, "
                f"{progress.loaded} records loaded so far"
            )
    progress.extracted = progress.now()
    progress.log(f"extract: finished, {progress.files} files read")


async def watch_loaded(loaded: IO[int], progress: Progress) -> None:
    """Count the rows ``load`` reports committed, batch by batch."""
    async for count in loaded.stream():
        if progress.first_load is None:
            progress.first_load = progress.now()
            progress.log(
                f"load: first {count} records committed to SQLite "
                f"({progress.files}/{progress.total_files} files read so far)"
            )
        progress.loaded += count
        progress.batches += 1
    progress.log(
        f"load: finished, {progress.loaded} records in {progress.batches} transactions"
    )


async def watch_rejects(rejects: IO[dict[str, Any]], progress: Progress) -> None:
    """Keep the rejected lines, for the summary."""
    async for reject in rejects.stream():
        progress.rejects.append(reject)


def _store_name(supervisor: Supervisor) -> str:
    url = supervisor.settings.redis_url
    if not url:
        return f"{type(supervisor.store).__name__} (embedded, in this process)"
    scheme, _, rest = url.partition("://")
    host = rest.rpartition("@")[2]  # never print a password
    return f"{type(supervisor.store).__name__} at {scheme}://{host}"


async def run_demo(
    folder: Path, stats: Generated, settings: EtlSettings, backend: str
) -> tuple[Progress, float]:
    """Run the flow on the generated folder, following it as it goes."""
    supervisor = Supervisor.instance
    print(f"  store:   {_store_name(supervisor)}, backend {backend}")
    print(f"  target:  {settings.database}")
    print()
    files_total = stats.csv_files + stats.json_files
    # The CLI's settings replace the get_settings dependency, as a test would.
    with supervisor.override(get_settings, lambda: settings):
        progress = Progress(started=time.perf_counter(), total_files=files_total)
        run: Run = await supervisor.start_flow(
            FLOW, inputs=[IOVal("folder", str(folder))], all_outputs=True
        )
        progress.log(f"run {run.id[:8]} started: all four processors at once")
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_files, run["files"], progress)
            tg.start_soon(watch_loaded, run["loaded"], progress)
            tg.start_soon(watch_rejects, run["rejects"], progress)
        await run.wait()
        elapsed = progress.now()
    await supervisor.aclose()
    return progress, elapsed


def report(
    progress: Progress, stats: Generated, settings: EtlSettings, elapsed: float
) -> bool:
    """Print the summary; return whether everything adds up."""
    with sqlite3.connect(settings.database) as db:
        rows, revenue = db.execute(
            "SELECT count(*), coalesce(sum(total_cents), 0) FROM orders"
        ).fetchone()
        top = db.execute(
            "SELECT customer, sum(total_cents) AS spent FROM orders "
            "GROUP BY customer ORDER BY spent DESC LIMIT 3"
        ).fetchall()
    db.close()

    print()
    first, extracted = progress.first_load, progress.extracted
    ok = True
    if first is not None and extracted is not None and first < extracted:
        print(
            f"Streaming: first record loaded at {first:.3f}s, extraction finished at "
            f"{extracted:.3f}s\n"
            "           -> first record loaded before extraction finished"
        )
    else:
        print(
            f"Streaming: first record loaded at {first}s, extraction finished at "
            f"{extracted}s\n"
            "           -> NOT streaming: nothing was loaded before extraction ended"
        )
        ok = False

    expected_rows, expected_rejects = stats.lines - stats.bad, stats.bad
    checks_ok = (
        rows == progress.loaded == expected_rows
        and len(progress.rejects) == expected_rejects
    )
    ok = ok and checks_ok
    print()
    print("Summary")
    print(
        f"  files            {progress.files:>8}  "
        f"({stats.csv_files} CSV, {stats.json_files} JSON)"
    )
    print(f"  records loaded   {progress.loaded:>8}  ({rows} rows in SQLite)")
    print(f"  rejects          {len(progress.rejects):>8}")
    for reject in progress.rejects[:3]:
        print(f"      {reject['where']}: {reject['reason']}")
    if len(progress.rejects) > 3:
        print(f"      ... and {len(progress.rejects) - 3} more")
    print(f"  revenue          {revenue / 100:>11,.2f}")
    for customer, spent in top:
        print(f"      {customer:<20} {spent / 100:>11,.2f}")
    print(f"  elapsed          {elapsed:>8.3f}s")
    verdict = "OK" if checks_ok else "MISMATCH"
    print(
        f"  check            {verdict:>8}  (generated {expected_rows} good and "
        f"{expected_rejects} bad lines)"
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, generate the data and run the demo."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=200, help="files to generate")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument(
        "--redis-url",
        help="run on this Redis/Valkey server instead of the embedded store "
        "(default: $DATAGRAPH_REDIS_URL, if set)",
    )
    parser.add_argument(
        "--dir", type=Path, help="write the files and database here and keep them"
    )
    parser.add_argument(
        "--delay",
        type=float,
        default=EtlSettings.io_delay,
        help="simulated I/O latency per file, in seconds",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=EtlSettings.batch_size,
        help="rows per SQLite transaction",
    )
    args = parser.parse_args(argv)
    if args.files < 1 or args.batch_size < 1 or args.delay < 0:
        parser.error("--files and --batch-size must be positive, --delay not negative")

    Supervisor.attach(redis_config={"url": args.redis_url} if args.redis_url else None)
    with tempfile.TemporaryDirectory(prefix="datagraph-etl-") as tmp:
        folder: Path = args.dir or Path(tmp)
        if args.dir:
            for old in [*folder.glob("orders-*.csv"), *folder.glob("orders-*.json")]:
                old.unlink()
        database = folder / "etl.sqlite3"
        database.unlink(missing_ok=True)
        stats = generate(folder, args.files)
        print(
            f"Datagraph ETL demo: {args.files} files -> extract -> parse -> "
            "transform -> load (SQLite)"
        )
        print(
            f"  data:    {folder} ({stats.csv_files} CSV, {stats.json_files} JSON "
            f"files, {stats.lines} order lines, {stats.bad} of them bad)"
        )
        settings = EtlSettings(
            database=str(database), io_delay=args.delay, batch_size=args.batch_size
        )
        progress, elapsed = anyio.run(
            run_demo, folder, stats, settings, args.backend, backend=args.backend
        )
        ok = report(progress, stats, settings, elapsed)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
