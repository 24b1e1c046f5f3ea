"""How a crash-test service attaches with Celery.

The environment names the server (DG_TEST_REDIS_URL: the store, and the broker
in database 5 of the same server) and the key prefix (DG_TEST_PREFIX).
"""

import os

from celery import Celery

from datagraph import Supervisor
from datagraph.executors.celery import CeleryExecutor


def broker_url(url: str) -> str:
    """The Celery broker's database on the test's Redis server."""
    return f"{url.rsplit('/', 1)[0]}/5"


def make_app(url: str) -> Celery:
    """The crash test's Celery app (its defaults, a Redis broker)."""
    app = Celery("dgcrash", broker=broker_url(url), set_as_current=False)
    app.conf.broker_connection_retry_on_startup = True
    app.conf.worker_hijack_root_logger = False
    return app


def attach() -> Celery:
    """Attach this service's supervisor (settings such as the lease from env)."""
    url, prefix = os.environ["DG_TEST_REDIS_URL"], os.environ["DG_TEST_PREFIX"]
    app = make_app(url)
    Supervisor.attach(
        redis_config={"url": url, "prefix": prefix}, executor=CeleryExecutor(app)
    )
    return app
