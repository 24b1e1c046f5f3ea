"""Names of the internal streams, fields and claims of a run (one place for them)."""

from __future__ import annotations

__all__ = (
    "CANCELLED_FIELD",
    "CREATED_FIELD",
    "KEEP_ALL_FIELD",
    "PLAN_FIELD",
    "TAKEOVER_FIELD",
    "dispatch_claim",
    "done_stream",
    "done_stream_owner",
    "expire_claim",
    "finish_claim",
    "instance_job",
    "is_internal",
    "parse_job",
    "record_field",
    "start_claim",
)

PLAN_FIELD = "plan"
#: When the run started (seconds since the epoch, as text); gone once it expired.
CREATED_FIELD = "created"
CANCELLED_FIELD = "cancelled"
#: Set when a run hands back every stream: nothing may then be trimmed.
KEEP_ALL_FIELD = "keep_all"
#: Set when the run's executor reaches its workers from any process: a peer that
#: sees a processor's lease expire dispatches it again instead of reporting it lost.
TAKEOVER_FIELD = "takeover"
_INTERNAL = "!"  # user stream names cannot start with it


def done_stream(processor: str) -> str:
    """The empty stream a processor ends when it finishes (with its failure)."""
    return f"{_INTERNAL}done:{processor}"


def done_stream_owner(stream: str) -> str | None:
    """Return the processor whose done stream this is, if it is one."""
    prefix = f"{_INTERNAL}done:"
    return stream[len(prefix) :] if stream.startswith(prefix) else None


def record_field(processor: str, instance: int | None = None) -> str:
    """The run field holding the ``JobRecord`` of a processor (or instance).

    Its name in the store, ``state:...``, is part of the stored format and stays.
    """
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


def finish_claim(processor: str, round_: int) -> str:
    """The claim won by whoever records a processor's final state (per round)."""
    return f"finish:{processor}@{round_}"


def dispatch_claim(processor: str, round_: int) -> str:
    """The claim that makes exactly one process dispatch a waiting processor."""
    return f"dispatch:{processor}@{round_}"


def start_claim(job: str, epoch: int) -> str:
    """The claim that lets one delivery of a job's epoch run (engines may redeliver)."""
    return f"start:{job}@{epoch}"


def expire_claim(job: str, epoch: int, window: int = 0) -> str:
    """The claim that lets one process act on a job's lapsed lease (or dispatch).

    ``window`` counts whole leases since the lapse began (0: the job itself
    hands its work back as it stops): should the winner die before it acts,
    a peer may claim the next window.
    """
    return f"expire:{job}@{epoch}:{window}"


def is_internal(stream: str) -> bool:
    """Tell whether a stream name is reserved for Datagraph itself."""
    return stream.startswith(_INTERNAL)
