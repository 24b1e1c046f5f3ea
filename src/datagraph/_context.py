"""What the pieces of one run share in one process."""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

from ._plan import ProcessorState, decode_state
from ._streams import done_stream_owner, state_field
from .exceptions import UpstreamError

if TYPE_CHECKING:
    from ._plan import Plan
    from .serializers import Serializer
    from .settings import Settings
    from .stores import Store

__all__ = ("RunContext",)


@dataclasses.dataclass(frozen=True, slots=True)
class RunContext:
    """A run's store, serializer, settings and plan, as one process sees them."""

    run_id: str
    plan: Plan
    store: Store
    serializer: Serializer
    settings: Settings

    async def processor_state(
        self, name: str, instance: int | None = None
    ) -> ProcessorState | None:
        """Return the recorded state of a processor (or instance) of this run."""
        field = state_field(name, instance)
        fields = await self.store.get_fields(self.run_id, [field])
        return decode_state(fields[field]) if field in fields else None

    async def check_producer(self, stream: str) -> None:
        """Raise ``UpstreamError`` if the producer of ``stream`` was lost.

        Called by a reader that has waited a while for a value: a producer whose
        worker died cannot end its streams, so its heartbeat going stale is the
        only sign readers get.
        """
        producer = self.plan.producer_of(stream) or done_stream_owner(stream)
        if producer is None:
            return
        count = self.plan.by_name[producer].instances
        for instance in range(count) if count > 1 else [None]:
            await self._check_alive(stream, producer, instance)

    async def _check_alive(
        self, stream: str, producer: str, instance: int | None
    ) -> None:
        state = await self.processor_state(producer, instance)
        if state is None or state.status not in ("running", "retrying"):
            return
        silent = time.time() - state.heartbeat
        if silent > self.settings.lease:
            raise UpstreamError(
                processor=producer,
                error_type="ProducerLost",
                message=(
                    f"no heartbeat for {silent:.0f}s (lease {self.settings.lease:g}s); "
                    "the process running it was probably lost"
                ),
                stream=stream,
            )
