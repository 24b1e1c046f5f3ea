"""Declarations every service imports, and how a service attaches.

Each service module imports these declarations and implements only its own
processors; the test process implements none. ``DG_TEST_REDIS_URL`` names the
server (store and broker) and ``DG_TEST_PREFIX`` the store's key prefix, which
also names the broker's namespace.
"""

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from datagraph import Flow, Processor, Supervisor
from datagraph.executors.dramatiq import DramatiqExecutor

source = Processor(name="dq_source", inputs=["dq_n"], outputs=["dq_numbers"])
double = Processor(name="dq_double", inputs=["dq_numbers"], outputs=["dq_doubled"])
increment = Processor(name="dq_increment", inputs=["dq_doubled"], outputs=["dq_out"])
endless = Processor(name="dq_endless", inputs=["dq_seed"], outputs=["dq_ticks"])
#: More processors than the worker has threads (2): a source read by 11 others.
FAN = 11
fan_source = Processor(name="dq_fan_source", inputs=["dq_fan_n"], outputs=["dq_fan"])
fan = [
    Processor(name=f"dq_fan{i}", inputs=["dq_fan"], outputs=[f"dq_fan_out{i}"])
    for i in range(FAN)
]
#: Implemented by no service.
orphan = Processor(name="dq_orphan", inputs=["dq_numbers"], outputs=["dq_nowhere"])

#: Split across the services: source and increment in one, double in the other.
FLOW = Flow.from_processors(source, double, increment).resolve()
#: Waits for dq_orphan, which no running service implements.
ORPHANED = Flow.from_processors(source, orphan).resolve()
#: A processor that never ends by itself (for cancel).
ENDLESS = Flow.from_processors(endless).resolve()
#: 12 processors, all served by one worker process of 2 threads.
FAN_OUT = Flow.from_processors(fan_source, *fan).resolve()


def broker(url: str, prefix: str) -> RedisBroker:
    """The broker of the services that store runs under ``prefix``."""
    return RedisBroker(url=url, namespace=f"{prefix}-dramatiq")  # type: ignore[no-untyped-call]


def attach() -> Supervisor:
    """Attach this service's supervisor, as a service module does on import."""
    url, prefix = os.environ["DG_TEST_REDIS_URL"], os.environ["DG_TEST_PREFIX"]
    the_broker = broker(url, prefix)
    dramatiq.set_broker(the_broker)
    return Supervisor.attach(
        redis_config={"url": url, "prefix": prefix},
        executor=DramatiqExecutor(the_broker),
    )
