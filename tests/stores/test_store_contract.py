"""The store conformance suite of ``datagraph.testing.conformance``, on our stores.

On MemoryStore, RedisStore on one server and on a 3-node Redis Cluster, on asyncio
and trio: ``conftest.store_factory`` makes the stores of each kind. TLS with an ACL
user and Valkey 8 run the same suite in ``test_tls_acl.py`` and
``test_valkey8.py``.
"""

from __future__ import annotations

import pytest

from conftest import ALL_STORE_KINDS
from datagraph.stores import Store
from datagraph.testing.conformance import StoreContract


# The cluster too: the suite is where a cluster differs (see ALL_STORE_KINDS).
@pytest.mark.parametrize("store_factory", ALL_STORE_KINDS, indirect=True)
class TestStoreContract(StoreContract):
    @pytest.fixture
    def store(self, store: Store) -> Store:
        """The conftest's store, whose Redis keys are deleted after the test."""
        return store
