"""What both services and the starter share: records, declarations, set-up.

No implementation lives here: ``ingest`` implements extract and parse,
``warehouse`` implements transform and load, and the starter (``demo.py``)
implements nothing. The declarations match ``examples/etl.py``'s flow.
"""

import dataclasses
import os

from celery import Celery

from datagraph import CeleryExecutor, Flow, Processor, Supervisor


@dataclasses.dataclass(frozen=True, slots=True)
class SourceFile:
    """A file as extracted: its name and text."""

    name: str
    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class RawRecord:
    """One CSV row as found, every field still a string."""

    where: str
    fields: dict[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class Order:
    """A validated order line, ready to load."""

    order_id: str
    customer: str
    sku: str
    quantity: int
    total_cents: int


@dataclasses.dataclass(frozen=True, slots=True)
class Reject:
    """A line that failed validation, and why."""

    where: str
    reason: str


extract = Processor(name="extract", inputs=["folder"], outputs=["files"])
parse = Processor(name="parse", inputs=["files"], outputs=["records"])
transform = Processor(
    name="transform", inputs=["records"], outputs=["orders", "rejects"]
)
load = Processor(name="load", inputs=["orders"], outputs=["loaded"])
FLOW = Flow.from_processors(extract, parse, transform, load).resolve()


def attach() -> Celery:
    """Attach this process's supervisor with the Celery executor; return the app.

    Every process does the same: the services, so their workers run what they
    implement, and the starter, so it can dispatch. Redis holds the runs and
    carries Celery's messages (``DATAGRAPH_REDIS_URL``; ``DEMO_BROKER_URL`` to
    use another broker, such as RabbitMQ).
    """
    redis_url = os.environ.get("DATAGRAPH_REDIS_URL")
    if not redis_url:  # a KeyError would not say what to do
        msg = (
            "the services of this demo share a Redis server: set DATAGRAPH_REDIS_URL "
            "(python -m examples.distributed.demo starts a throwaway one)"
        )
        raise RuntimeError(msg)
    app = Celery("orders", broker=os.environ.get("DEMO_BROKER_URL", redis_url))
    app.conf.broker_connection_retry_on_startup = True
    Supervisor.attach(redis_config={"url": redis_url}, executor=CeleryExecutor(app))
    return app
