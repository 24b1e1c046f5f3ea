"""The ``Store`` contract: every promise of ``datagraph.stores.Store``, as pytest tests.

A store author runs them on their store by subclassing ``StoreContract`` in a test
module and giving it a ``store_factory`` fixture::

    import pytest
    from datagraph.testing.conformance import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store_factory(self):
            shared = MyServer()  # each store object reaches the same data
            return lambda: MyStore(shared)

pytest then collects every contract test for that store, on asyncio and on trio.
``store_factory`` makes store objects that share their data, as the stores of
other processes would; for a store that keeps its data in the object, it hands out
that one object. Each test opens a store with ``async with store_factory()``;
override the ``store`` fixture to clean up after it (e.g. delete the test's keys).

The promises are grouped by area, one module each: one stream (``_streams``), reader
cursors and trimming (``_cursors``), shared output and consumer groups
(``_groups``), and a run's fields, claims and resumption (``_runs``). A failing
test's name says which promise the store broke.

Needs pytest and trio: ``pip install datagraph[testing]``.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from ._cursors import CursorContract
from ._groups import GroupContract
from ._runs import RunContract
from ._streams import StreamContract

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from datagraph.stores import Store

__all__ = ["StoreContract"]


class StoreContract(StreamContract, CursorContract, GroupContract, RunContract):
    """Every test of the contract, for the store of a subclass's ``store_factory``.

    Subclass it (as ``Test...``) and define the ``store_factory`` fixture (in the
    subclass, its module or a conftest): a function returning a store object on
    each call, all of them sharing their data. pytest collects the test methods
    this class inherits from each area of the contract, with these fixtures.
    """

    pytestmark: ClassVar[Any] = pytest.mark.anyio

    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request: pytest.FixtureRequest) -> str:
        """Each test on both event loops."""
        return str(request.param)

    @pytest.fixture
    async def store(
        self, store_factory: Callable[[], Store], anyio_backend: str
    ) -> AsyncIterator[Store]:
        """A store of ``store_factory``, open for the test."""
        async with store_factory() as fresh:
            yield fresh

    @pytest.fixture
    def run_id(self) -> str:
        """A run of the test's own."""
        return uuid.uuid4().hex
