"""Where the runtime reports to OpenTelemetry (a no-op until it is installed).

The runtime calls two functions: ``record_processor`` once per processor attempt,
after it ends, and ``count_values`` once per appended batch. With the ``otel``
extra installed they become a span per attempt and a counter of values written
per stream, through the *global* tracer and meter providers, so an application
configures OpenTelemetry however and whenever it likes (before or after importing
Datagraph). See docs/telemetry.md.

Cost: whether ``opentelemetry`` can be imported is checked once, at the first call.
Without it, each call is one global lookup and a branch. With it but no SDK
configured, the API's proxy objects do nothing and nothing is built for them
(attributes are only computed for a recording span).

Cardinality: the counter carries the stream (and the producing processor, when the
runtime passes it), never the run id, so its number of series is bounded by the
flows' streams rather than growing with every run. Per-run figures are on the
spans (``datagraph.run_id``, ``datagraph.values_out``) and in the store's live
snapshot.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, MeterProvider
    from opentelemetry.trace import Tracer, TracerProvider
    from opentelemetry.util.types import Attributes

    from ._errors import Failure

__all__ = ("count_values", "prepare", "record_processor")

#: Instrumentation scope of every span and instrument.
SCOPE = "datagraph"
SPAN_PREFIX = "datagraph.processor "
COUNTER = "datagraph.values_written"

_NS = 1_000_000_000

logger = logging.getLogger("datagraph")


class _Otel:
    """The tracer and instruments of one set of providers, created once."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        from opentelemetry import metrics, trace
        from opentelemetry.context import Context
        from opentelemetry.trace import SpanKind, Status, StatusCode

        from . import __version__

        # With no provider given these are the API's proxies, which follow the
        # global providers even when they are set later.
        self.tracer: Tracer = trace.get_tracer(
            SCOPE, __version__, tracer_provider=tracer_provider
        )
        meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        self.values_written: Counter = meter.create_counter(
            COUNTER,
            unit="{value}",
            description="Values appended to streams by processors.",
        )
        self._kind = SpanKind.INTERNAL
        # Every attempt's span is a root: a processor runs in whatever task or
        # process its executor chose, so the span current there means nothing
        # (asyncio tasks would inherit the starter's span, trio's would not).
        self._root = Context()
        self._status = Status
        self._error = StatusCode.ERROR
        self._counter_attrs: dict[tuple[str, str | None], Attributes] = {}

    def record_processor(
        self,
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
        start_ns = int(started * _NS)
        end_ns = max(start_ns, int(ended * _NS))
        span = self.tracer.start_span(
            SPAN_PREFIX + processor,
            context=self._root,
            kind=self._kind,
            start_time=start_ns,
        )
        if not span.is_recording():  # no SDK, or not sampled: build nothing
            return
        span.set_attribute("datagraph.run_id", run_id)
        span.set_attribute("datagraph.processor", processor)
        if instance is not None:
            span.set_attribute("datagraph.instance", instance)
        span.set_attribute("datagraph.attempt", attempt)
        span.set_attribute("datagraph.values_in", values_in)
        span.set_attribute("datagraph.values_out", values_out)
        if failure is not None:
            span.set_attribute("error.type", failure.error_type)
            event: dict[str, str] = {
                "exception.type": failure.error_type,
                "exception.message": failure.message,
            }
            if failure.traceback:
                event["exception.stacktrace"] = failure.traceback
            if failure.processor != processor:  # an input failed, not this one
                event["datagraph.failed_processor"] = failure.processor
            span.add_event("exception", event, timestamp=end_ns)
            span.set_status(
                self._status(self._error, f"{failure.error_type}: {failure.message}")
            )
        span.end(end_time=end_ns)

    def count_values(self, stream: str, processor: str | None, count: int) -> None:
        key = (stream, processor)
        attrs = self._counter_attrs.get(key)
        if attrs is None:
            attrs = {"datagraph.stream": stream}
            if processor is not None:
                attrs["datagraph.processor"] = processor
            self._counter_attrs[key] = attrs
        self.values_written.add(count, attrs)


_otel: _Otel | None = None
_checked = False  # whether ``_otel`` has been decided: set once, by ``_load``
_failed = False  # whether a report has failed (and been logged) yet


def _report_failed() -> None:
    """Log the first failed report; telemetry never fails a processor."""
    global _failed
    if not _failed:
        _failed = True
        logger.exception(
            "datagraph could not report to OpenTelemetry (logged once per process)"
        )


def _load() -> _Otel | None:
    """Decide, once, whether OpenTelemetry is there; return its handles if so."""
    global _otel, _checked
    try:
        _otel = _Otel()
    except ImportError:  # the extra is not installed
        _otel = None
    except Exception:  # installed but broken: run without it
        logger.exception("datagraph could not set up OpenTelemetry; not reporting")
        _otel = None
    _checked = True
    return _otel


def prepare() -> None:
    """Decide about OpenTelemetry now, not on a run's first write.

    Importing it takes 50-100 ms: a supervisor pays that when it is made, so the
    first values of the first run are not held up by it.
    """
    if not _checked:
        _load()


def _use_providers(
    tracer_provider: TracerProvider | None, meter_provider: MeterProvider | None
) -> None:
    """Report to these providers instead of the global ones (for tests).

    ``_use_providers(None, None)`` goes back to the global providers.
    """
    global _otel, _checked
    _otel = _Otel(tracer_provider, meter_provider)
    _checked = True


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
    """Report one attempt of a processor (wall-clock ``started``/``ended``).

    Becomes a span ``datagraph.processor <processor>`` from ``started`` to
    ``ended``; a failed attempt's span has status ERROR and an ``exception`` event.
    """
    otel = _otel if _checked else _load()
    if otel is not None:
        try:
            otel.record_processor(
                run_id,
                processor,
                instance,
                attempt,
                started,
                ended,
                values_in,
                values_out,
                failure,
            )
        except Exception:
            _report_failed()


def count_values(
    *, run_id: str, stream: str, count: int, processor: str | None = None
) -> None:
    """Report ``count`` values written to a stream (by ``processor``, if given).

    Adds to the counter ``datagraph.values_written``; ``run_id`` is not an
    attribute of it (see the module's docstring).
    """
    otel = _otel if _checked else _load()
    if otel is not None:
        try:
            otel.count_values(stream, processor, count)
        except Exception:
            _report_failed()
