"""A failure names the line of the user's code first, not the library's."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from datagraph import (
    IO,
    Flow,
    IOVal,
    LocalExecutor,
    Processor,
    RunFailedError,
    Supervisor,
    UpstreamError,
)
from datagraph._errors import user_location
from datagraph.stores.memory import MemoryStore

pytestmark = pytest.mark.anyio

HERE = str(Path(__file__).resolve())
MISSING = Path(__file__).parent / "no such folder"

list_folder = Processor(name="loc_list", inputs=["folder"], outputs=["names"])
count_names = Processor(name="loc_count", inputs=["names"], outputs=["count"])
read_number = Processor(name="loc_number", inputs=["number"], outputs=["twice"])


@list_folder
async def _list_folder(folder: IO[str]) -> AsyncIterator[str]:
    await folder.first()
    for path in MISSING.iterdir():  # raises inside pathlib
        yield path.name


@count_names
async def _count_names(names: IO[str]) -> AsyncIterator[int]:
    yield len(await names.collect())


@read_number
async def _read_number(number: IO[int]) -> AsyncIterator[int]:
    value = await number.first()  # raises inside Datagraph's decoding
    yield 2 * value


def _line_of(func: Any, marker: str) -> int:
    lines, start = inspect.getsourcelines(func)
    return start + next(i for i, line in enumerate(lines) if marker in line)


async def _failure(flow: Flow, inputs: list[IOVal[Any]]) -> RunFailedError:
    supervisor = Supervisor(store=MemoryStore(), executor=LocalExecutor())
    with anyio.fail_after(10):
        run = await supervisor.start_flow(flow.resolve(), inputs=inputs)
        with pytest.raises(RunFailedError) as caught:
            await run.wait()
    await supervisor.aclose()
    return caught.value


async def test_a_failure_in_the_standard_library_names_the_processors_line() -> None:
    flow = Flow.from_processors(list_folder, count_names)
    failed = await _failure(flow, [IOVal("folder", str(MISSING))])
    error = failed.errors["loc_list"]
    line = _line_of(_list_folder, "MISSING.iterdir()")
    assert error.location == f"{HERE}:{line} in _list_folder"
    assert str(error).endswith(f"(at {HERE}:{line} in _list_folder)")
    assert "pathlib" in error.traceback  # the whole traceback is kept
    # The reader downstream is told the same place.
    assert failed.errors["loc_count"].location == error.location


async def test_a_failure_in_datagraphs_decoding_names_the_processors_line() -> None:
    flow = Flow.from_processors(read_number)
    failed = await _failure(flow, [IOVal("number", "seven")])
    error = failed.errors["loc_number"]
    line = _line_of(_read_number, "await number.first()")
    assert error.error_type == "SerializationError"
    assert error.location == f"{HERE}:{line} in _read_number"
    assert "datagraph" in error.traceback


REMOTE = """\
Traceback (most recent call last):
  File "/srv/venv/lib/python3.12/site-packages/datagraph/_runtime.py", line 300, in run
    await self._body()
  File "/srv/app/flows.py", line 12, in _shout
    lookup(folder)
  File "/srv/app/util.py", line 3, in lookup
    return sorted(Path(folder).iterdir())
  File "/usr/lib/python3.12/pathlib.py", line 931, in iterdir
    for name in os.listdir(self):
FileNotFoundError: [Errno 2] No such file or directory: 'data'
"""

EDITABLE = """\
Traceback (most recent call last):
  File "/home/ci/datagraph/src/datagraph/_runtime.py", line 300, in run
    await self._body()
  File "/home/ci/proj/flows.py", line 7, in _parse
    async for value in numbers:
  File "/home/ci/datagraph/src/datagraph/io.py", line 101, in _decode
    raise SerializationError(msg) from exc
datagraph.exceptions.SerializationError: expected int
"""

CHAINED = """\
Traceback (most recent call last):
  File "/app/flows.py", line 5, in _load
    db.execute(sql)
sqlite3.OperationalError: no such table

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/app/flows.py", line 9, in _load
    raise LoadError(table) from exc
LoadError: orders
"""

GROUP = """\
  + Exception Group Traceback (most recent call last):
  |   File "/opt/py/lib/python3.11/site-packages/anyio/_core.py", line 9, in run
  |     raise group
  | ExceptionGroup: unhandled errors in a TaskGroup (1 sub-exception)
  +-+---------------- 1 ----------------
    | Traceback (most recent call last):
    |   File "/app/jobs.py", line 21, in fetch
    |     await client.get(url)
    |   File "/opt/py/lib/python3.11/site-packages/httpx/_client.py", line 5, in get
    |     raise ConnectError(url)
    | httpx.ConnectError: refused
    +------------------------------------
"""

INSTALLED = """\
Traceback (most recent call last):
  File "/venv/lib/python3.12/site-packages/datagraph/_runtime.py", line 300, in run
    await self._body()
  File "/venv/lib/python3.12/site-packages/acme_flows/load.py", line 40, in _load
    rows = json.loads(text)
  File "/usr/lib/python3.12/json/__init__.py", line 346, in loads
    return _default_decoder.decode(s)
json.decoder.JSONDecodeError: Expecting value
"""

LIBRARY_ONLY = """\
Traceback (most recent call last):
  File "/usr/lib/python3.12/json/__init__.py", line 346, in loads
    return _default_decoder.decode(s)
  File "/usr/lib/python3.12/json/decoder.py", line 355, in raw_decode
    raise JSONDecodeError("Expecting value", s, err.value)
json.decoder.JSONDecodeError: Expecting value
"""


@pytest.mark.parametrize(
    ("traceback", "where"),
    [
        (REMOTE, "/srv/app/util.py:3 in lookup"),
        (EDITABLE, "/home/ci/proj/flows.py:7 in _parse"),
        (CHAINED, "/app/flows.py:9 in _load"),
        (GROUP, "/app/jobs.py:21 in fetch"),
        (
            INSTALLED,
            "/venv/lib/python3.12/site-packages/acme_flows/load.py:40 in _load",
        ),
        (LIBRARY_ONLY, "/usr/lib/python3.12/json/decoder.py:355 in raw_decode"),
        (
            '  File "<frozen runpy>", line 88, in _run_code\nKeyError: 1\n',
            "<frozen runpy>:88 in _run_code",  # nothing else to name
        ),
        ("ValueError: no frames\n", None),
        ("", None),
        (None, None),
    ],
    ids=[
        "remote",
        "editable",
        "chained",
        "group",
        "installed",
        "library",
        "frozen",
        "no-frame",
        "empty",
        "none",
    ],
)
def test_user_location(traceback: str | None, where: str | None) -> None:
    assert user_location(traceback) == where


def test_an_upstream_error_without_a_location_says_nothing_of_one() -> None:
    error = UpstreamError(processor="p", error_type="ValueError", message="bad")
    assert error.location is None
    assert str(error) == "processor 'p' failed: ValueError: bad"
