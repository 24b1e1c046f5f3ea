"""The Celery app and supervisor set-up that every test service shares.

The test process builds the same app (``make_app``) to start runs: routing is a
sending-side decision, so starters and workers must agree on it.
"""

import os

from celery import Celery

from datagraph import CeleryExecutor, Supervisor

#: Celery's own routing: svc_label goes to a queue named by task_routes.
TASK_ROUTES = {"datagraph.svc_label": {"queue": "dgtest.labels"}}
#: The executor's routing: svc_total goes to a queue the executor names.
QUEUES = {"svc_total": "dgtest.totals"}


def make_app(broker: str) -> Celery:
    """Return the tests' Celery app on ``broker``."""
    app = Celery("dgtest", broker=broker, set_as_current=False)
    app.conf.task_routes = TASK_ROUTES
    app.conf.broker_connection_retry_on_startup = True
    app.conf.worker_hijack_root_logger = False
    return app


def make_executor(app: Celery, backend: str | None = None) -> CeleryExecutor:
    """Return the executor of the tests' services."""
    return CeleryExecutor(app, queue=QUEUES, backend=backend)


def serve() -> Celery:
    """Attach this service's supervisor, configured from the environment."""
    app = make_app(os.environ["DGTEST_BROKER"])
    Supervisor.attach(
        redis_config={
            "url": os.environ["DATAGRAPH_REDIS_URL"],
            "prefix": os.environ["DATAGRAPH_PREFIX"],
        },
        executor=make_executor(app),
    )
    return app
