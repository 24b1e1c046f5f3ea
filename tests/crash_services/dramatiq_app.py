"""How a crash-test service attaches with Dramatiq.

The environment names the server (DG_TEST_REDIS_URL) and key prefix (DG_TEST_PREFIX).
"""

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from datagraph import Supervisor
from datagraph.executors.dramatiq import DramatiqExecutor


def broker(url: str, prefix: str) -> RedisBroker:
    """The broker of the services that store runs under ``prefix``."""
    return RedisBroker(url=url, namespace=f"{prefix}-dramatiq")  # type: ignore[no-untyped-call]


def attach() -> None:
    """Attach this service's supervisor (settings such as the lease from env)."""
    url, prefix = os.environ["DG_TEST_REDIS_URL"], os.environ["DG_TEST_PREFIX"]
    the_broker = broker(url, prefix)
    dramatiq.set_broker(the_broker)
    Supervisor.attach(
        redis_config={"url": url, "prefix": prefix},
        executor=DramatiqExecutor(the_broker),
    )
