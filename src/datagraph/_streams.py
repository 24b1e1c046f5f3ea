"""Names of the internal streams, fields and claims of a run (one place for them)."""

from __future__ import annotations

__all__ = (
    "CANCELLED_FIELD",
    "KEEP_ALL_FIELD",
    "PLAN_FIELD",
    "dispatch_claim",
    "done_stream",
    "done_stream_owner",
    "finish_claim",
    "instance_job",
    "is_internal",
    "parse_job",
    "state_field",
)

PLAN_FIELD = "plan"
CANCELLED_FIELD = "cancelled"
#: Set when a run hands back every stream: nothing may then be trimmed.
KEEP_ALL_FIELD = "keep_all"
_INTERNAL = "!"  # user stream names cannot start with it


def done_stream(processor: str) -> str:
    """The empty stream a processor ends when it finishes (with its failure)."""
    return f"{_INTERNAL}done:{processor}"


def done_stream_owner(stream: str) -> str | None:
    """Return the processor whose done stream this is, if it is one."""
    prefix = f"{_INTERNAL}done:"
    return stream[len(prefix) :] if stream.startswith(prefix) else None


def state_field(processor: str, instance: int | None = None) -> str:
    """The run field holding the ``ProcessorState`` of a processor (or instance)."""
    if instance is None:
        return f"state:{processor}"
    return f"state:{processor}#{instance}"


def instance_job(processor: str, instance: int) -> str:
    """What executors dispatch for one instance of a scaled-out processor."""
    return f"{processor}#{instance}"


def parse_job(job: str) -> tuple[str, int | None]:
    """Split a dispatched job into the processor's name and the instance (if any)."""
    name, sep, index = job.rpartition("#")
    if sep and index.isdigit():
        return name, int(index)
    return job, None


def finish_claim(processor: str) -> str:
    """The claim won by whoever records a processor's final state."""
    return f"finish:{processor}"


def dispatch_claim(processor: str) -> str:
    """The claim that makes exactly one process dispatch a waiting processor."""
    return f"dispatch:{processor}"


def is_internal(stream: str) -> bool:
    """Tell whether a stream name is reserved for Datagraph itself."""
    return stream.startswith(_INTERNAL)
