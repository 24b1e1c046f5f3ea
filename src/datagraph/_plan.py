"""What a run records in the store: its plan, and a record of each job.

A job is one processor of a run, or one instance of a scaled-out processor; its
``JobRecord`` is the bookkeeping the supervisor and the workers share (status,
attempt, epoch, heartbeat, history). What users see of it is ``RunSnapshot``.
"""

from __future__ import annotations

import functools
from typing import Literal

import msgspec

from ._errors import Failure
from ._streams import instance_job
from .processor import Processor

__all__ = ("JobRecord", "JobStatus", "Plan", "decode_job_record", "decode_plan")

#: The life of a processor within a run.
JobStatus = Literal["pending", "running", "retrying", "done", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"done", "failed", "cancelled"})


class Plan(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """A resolved flow as stored with each run: enough for any process to run it."""

    processors: tuple[Processor, ...]
    #: Streams no processor writes: the values a run must be started with.
    inputs: tuple[str, ...]
    #: Streams no processor reads: what a run hands back by default.
    outputs: tuple[str, ...]

    @functools.cached_property
    def by_name(self) -> dict[str, Processor]:
        """Processors by name."""
        return {p.name: p for p in self.processors}

    @functools.cached_property
    def producers(self) -> dict[str, str]:
        """The processor writing each stream."""
        return {s: p.name for p in self.processors for s in p.outputs}

    @functools.cached_property
    def streams(self) -> tuple[str, ...]:
        """Every stream of the flow: inputs first, then in processor order."""
        seen = dict.fromkeys(self.inputs)
        for p in self.processors:
            seen.update(dict.fromkeys(p.inputs))
            seen.update(dict.fromkeys(p.outputs))
        return tuple(seen)

    @functools.cached_property
    def jobs(self) -> dict[str, tuple[Processor, int | None]]:
        """What executors dispatch: each processor, or each instance of it."""
        jobs: dict[str, tuple[Processor, int | None]] = {}
        for p in self.processors:
            if p.instances == 1:
                jobs[p.name] = (p, None)
            else:
                jobs.update(
                    (instance_job(p.name, i), (p, i)) for i in range(p.instances)
                )
        return jobs

    def producer_of(self, stream: str) -> str | None:
        """Return the processor writing ``stream`` (None for a flow input)."""
        return self.producers.get(stream)

    def consumers_of(self, stream: str) -> tuple[Processor, ...]:
        """Return the processors reading ``stream``."""
        return tuple(p for p in self.processors if stream in p.inputs)


class JobRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The stored record of one job of a run: where it stands, and its past."""

    status: JobStatus = "pending"
    attempt: int = 0
    started: float | None = None
    ended: float | None = None
    #: Wall-clock time of the last sign of life while running.
    heartbeat: float = 0.0
    error: Failure | None = None
    #: When the job was last handed to the executor, and where it went: a job
    #: no worker starts within ``Settings.dispatch_timeout`` fails the run.
    dispatched: float | None = None
    where: str | None = None
    #: Bumped each time the job is dispatched again (a takeover or a resume): a
    #: process still running an older epoch has been superseded and stops.
    epoch: int = 0
    #: How many times the run was resumed; claims of each round are its own.
    round: int = 0
    #: The failures of earlier attempts (retries, lost workers), oldest first.
    history: tuple[Failure, ...] = ()

    @property
    def finished(self) -> bool:
        """Whether the processor has stopped for good (done, failed or cancelled)."""
        return self.status in FINISHED

    @property
    def live(self) -> bool:
        """Whether a process is (or should be) running the processor now."""
        return self.status in ("running", "retrying")


_encoder = msgspec.msgpack.Encoder()
_plan_decoder = msgspec.msgpack.Decoder(Plan)
_job_record_decoder = msgspec.msgpack.Decoder(JobRecord)


def encode(value: Plan | JobRecord) -> bytes:
    """Encode a plan or a job record for the store."""
    return _encoder.encode(value)


def decode_plan(data: bytes) -> Plan:
    """Decode a stored plan."""
    return _plan_decoder.decode(data)


def decode_job_record(data: bytes) -> JobRecord:
    """Decode a stored job record."""
    return _job_record_decoder.decode(data)
