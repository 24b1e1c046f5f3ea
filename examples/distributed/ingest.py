"""Service "ingest": reads order files and splits them into rows.

Serve it with ``celery -A examples.distributed.ingest worker``: the worker
consumes the queues of extract and parse (``datagraph.extract``,
``datagraph.parse``) and nothing else.
"""

import csv
import io
import os
from collections.abc import AsyncIterator

import anyio

from datagraph import IO

from .orders import RawRecord, SourceFile, attach, extract, parse

app = attach()
#: Simulated latency of reading one file (a network share, an object store...).
IO_DELAY = float(os.environ.get("DEMO_IO_DELAY", "0.005"))


@extract
async def _extract(folder: IO[str]) -> AsyncIterator[SourceFile]:
    """List the folder, then read the files one by one."""
    root = anyio.Path(await folder.first())
    paths = sorted([p async for p in root.iterdir() if p.suffix == ".csv"])
    for path in paths:
        await anyio.sleep(IO_DELAY)
        yield SourceFile(path.name, await path.read_text(encoding="utf-8"))


@parse
async def _parse(files: IO[SourceFile]) -> AsyncIterator[RawRecord]:
    """Turn each file into its rows."""
    async for file in files.stream():
        for number, row in enumerate(csv.DictReader(io.StringIO(file.text)), 2):
            yield RawRecord(f"{file.name}:{number}", row)
