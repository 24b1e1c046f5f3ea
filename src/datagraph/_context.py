"""What the pieces of one run share in one process."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ._jobs import jobs_of, settle
from ._plan import JobRecord, decode_job_record
from ._streams import CREATED_FIELD, done_stream_owner, record_field
from .exceptions import CorruptRunError, RunNotFoundError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._plan import Plan
    from .executors import Executor
    from .serializers import Serializer
    from .settings import Settings
    from .stores import Store

__all__ = ("RunContext",)


@dataclasses.dataclass(frozen=True, slots=True)
class RunContext:
    """A run's plan, store, executor and settings, as one process sees them."""

    run_id: str
    plan: Plan
    store: Store
    serializer: Serializer
    settings: Settings
    executor: Executor
    #: Whether the run was started with an executor that takes over lost jobs.
    takeover: bool = False

    @property
    def can_take_over(self) -> bool:
        """Whether this process dispatches the run's lost jobs again itself."""
        return self.takeover and self.executor.takes_over

    def field_of(self, job: str) -> str:
        """Return the run field holding the ``JobRecord`` of ``job``."""
        processor, instance = self.plan.jobs[job]
        return record_field(processor.name, instance)

    async def job_record(
        self, name: str, instance: int | None = None
    ) -> JobRecord | None:
        """Return the record of a processor (or one instance of it) in this run."""
        field = record_field(name, instance)
        fields = await self.store.get_fields(self.run_id, [field])
        return self._decode_record(field, fields[field]) if field in fields else None

    async def job_records(
        self, jobs: Sequence[str], also: Sequence[str] = ()
    ) -> dict[str, JobRecord]:
        """Return the records of ``jobs``, by job.

        ``also`` names scaled-out processors whose own state (the whole
        processor's, recorded when it ends) comes back under their name.

        Raises:
            RunNotFoundError: the run was deleted or has expired.
        """
        keys = [*jobs, *also]
        fields = [*map(self.field_of, jobs), *map(record_field, also)]
        found = await self.store.get_fields(self.run_id, [CREATED_FIELD, *fields])
        if CREATED_FIELD not in found:
            msg = f"run {self.run_id} no longer exists (it was deleted or expired)"
            raise RunNotFoundError(msg)
        return {
            key: self._decode_record(field, found[field])
            if field in found
            else JobRecord()
            for key, field in zip(keys, fields, strict=True)
        }

    def _decode_record(self, field: str, data: bytes) -> JobRecord:
        try:
            return decode_job_record(data)
        except Exception as exc:  # whatever the bytes are, the record is corrupt
            raise CorruptRunError(self.run_id, f"field {field!r}", str(exc)) from exc

    async def check_producer(self, stream: str) -> None:
        """Act on a lost producer of ``stream``; called by a reader kept waiting.

        A producer whose process died cannot end its streams, so its heartbeat
        going stale is the only sign readers get: the producer is taken over, or
        recorded as lost, which ends ``stream`` with that failure.

        Raises:
            RunNotFoundError: the run was deleted or has expired.
        """
        producer = self.plan.producer_of(stream) or done_stream_owner(stream)
        if producer is None:
            await self.job_records([])  # a flow input: still there?
            return
        jobs = jobs_of(self.plan.by_name[producer])
        await settle(self, await self.job_records(jobs))
