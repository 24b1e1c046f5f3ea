"""Names of the internal streams, fields and claims of a run (one place for them)."""

from __future__ import annotations

__all__ = (
    "CANCELLED_FIELD",
    "PLAN_FIELD",
    "dispatch_claim",
    "done_stream",
    "done_stream_owner",
    "is_internal",
    "state_field",
)

PLAN_FIELD = "plan"
CANCELLED_FIELD = "cancelled"
_INTERNAL = "!"  # user stream names cannot start with it


def done_stream(processor: str) -> str:
    """The empty stream a processor ends when it finishes (with its failure)."""
    return f"{_INTERNAL}done:{processor}"


def done_stream_owner(stream: str) -> str | None:
    """Return the processor whose done stream this is, if it is one."""
    prefix = f"{_INTERNAL}done:"
    return stream[len(prefix) :] if stream.startswith(prefix) else None


def state_field(processor: str) -> str:
    """The run field holding a processor's ``ProcessorState``."""
    return f"state:{processor}"


def dispatch_claim(processor: str) -> str:
    """The claim that makes exactly one process dispatch a waiting processor."""
    return f"dispatch:{processor}"


def is_internal(stream: str) -> bool:
    """Tell whether a stream name is reserved for Datagraph itself."""
    return stream.startswith(_INTERNAL)
