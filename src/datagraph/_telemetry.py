"""Where the runtime reports to OpenTelemetry (a no-op until it is installed).

The runtime calls two functions: ``record_processor`` once per processor attempt,
after it ends, and ``count_values`` once per appended batch. Both cost nothing
measurable when OpenTelemetry is absent or disabled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._errors import Failure

__all__ = ("count_values", "record_processor")


def record_processor(
    *,
    run_id: str,
    processor: str,
    instance: int | None,
    attempt: int,
    started: float,
    ended: float,
    values_in: int,
    values_out: int,
    failure: Failure | None,
) -> None:
    """Report one attempt of a processor (wall-clock ``started``/``ended``)."""
    return


def count_values(*, run_id: str, stream: str, count: int) -> None:
    """Report ``count`` values written to a stream."""
    return
