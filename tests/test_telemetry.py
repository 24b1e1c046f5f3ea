"""OpenTelemetry export: a span per processor attempt, a counter per stream.

Each test reports to providers of its own (the SDK's in-memory span exporter and
metric reader), handed to ``datagraph._telemetry`` through its private setter, so
tests never share spans or counts and the process-wide global providers stay
untouched. The global-provider path, and running without OpenTelemetry at all, are
checked in fresh interpreters.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import StatusCode

from datagraph import (
    IO,
    Depends,
    Flow,
    IOVal,
    LocalExecutor,
    Processor,
    Run,
    RunFailedError,
    Store,
    Supervisor,
    _telemetry,
)
from datagraph.stores.memory import MemoryStore

pytestmark = pytest.mark.anyio

TIMEOUT = 10


@dataclass
class Otel:
    """What one test's providers received."""

    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def spans_of(self, processor: str) -> list[ReadableSpan]:
        """The spans of one processor, in the order their attempts started."""
        found = [
            s for s in self.finished() if s.name == f"datagraph.processor {processor}"
        ]
        return sorted(found, key=lambda s: s.start_time or 0)

    def counter_points(self) -> list[NumberDataPoint]:
        data = self.metrics.get_metrics_data()
        if data is None:
            return []
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == "datagraph.values_written"
            for point in metric.data.data_points
            if isinstance(point, NumberDataPoint)
        ]

    def written(self) -> dict[str, int]:
        """The counter's total per stream."""
        totals: Counter[str] = Counter()
        for point in self.counter_points():
            assert point.attributes is not None
            totals[str(point.attributes["datagraph.stream"])] += int(point.value)
        return dict(totals)


@pytest.fixture
def otel() -> Iterator[Otel]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    saved = _telemetry._otel, _telemetry._checked
    _telemetry._use_providers(tracer_provider, meter_provider)
    try:
        yield Otel(spans, reader, tracer_provider)
    finally:
        _telemetry._otel, _telemetry._checked = saved
        tracer_provider.shutdown()
        meter_provider.shutdown()


@pytest.fixture
def supervisor(store: Store) -> Supervisor:
    return Supervisor(store=store, executor=LocalExecutor())


async def _run(
    supervisor: Supervisor, *procs: Processor, inputs: Sequence[IOVal[Any]] = ()
) -> Run:
    flow = Flow.from_processors(*procs).resolve()
    return await supervisor.start_flow(flow, inputs=list(inputs), all_outputs=True)


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


# --------------------------------------------------------------------------------------
# A flow that succeeds

double = Processor(name="tm_double", inputs=["tm_numbers"], outputs=["tm_doubled"])
split = Processor(name="tm_split", inputs=["tm_doubled"], outputs=["tm_low", "tm_high"])
total = Processor(name="tm_total", inputs=["tm_low"], outputs=["tm_sum"], wait=True)


@double
async def _double(tm_numbers: IO[int]) -> AsyncIterator[int]:
    async for n in tm_numbers.stream():
        yield 2 * n


@split
async def _split(tm_doubled: IO[int]) -> AsyncIterator[IOVal[int]]:
    async for n in tm_doubled.stream():
        yield IOVal("tm_low" if n < 10 else "tm_high", n)


@total
async def _total(tm_low: IO[int]) -> int:
    return sum(await tm_low.collect())


async def test_a_span_per_processor_and_counts_per_stream(
    supervisor: Supervisor, otel: Otel
) -> None:
    before = time.time_ns()
    with anyio.fail_after(TIMEOUT):
        run = await _run(
            supervisor,
            double,
            split,
            total,
            inputs=[IOVal("tm_numbers", n) for n in range(12)],
        )
        assert await run["tm_sum"].collect() == [20]
        await run.wait()
    after = time.time_ns()

    assert sorted(s.name for s in otel.finished()) == [
        "datagraph.processor tm_double",
        "datagraph.processor tm_split",
        "datagraph.processor tm_total",
    ]
    expected = {"tm_double": (12, 12), "tm_split": (12, 12), "tm_total": (5, 1)}
    for name, (values_in, values_out) in expected.items():
        (span,) = otel.spans_of(name)
        assert _attrs(span) == {
            "datagraph.run_id": run.id,
            "datagraph.processor": name,
            "datagraph.attempt": 1,
            "datagraph.values_in": values_in,
            "datagraph.values_out": values_out,
        }
        assert span.status.status_code is StatusCode.UNSET
        assert not span.events
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name == "datagraph"
        assert span.start_time is not None
        assert span.end_time is not None
        assert before <= span.start_time <= span.end_time <= after
    # The waiting processor started only after its input ended.
    (split_span,) = otel.spans_of("tm_split")
    (total_span,) = otel.spans_of("tm_total")
    assert split_span.end_time is not None
    assert total_span.start_time is not None
    assert total_span.start_time >= split_span.end_time

    # Flow inputs are written by the supervisor, not by a processor: not counted.
    assert otel.written() == {"tm_doubled": 12, "tm_low": 5, "tm_high": 7, "tm_sum": 1}
    for point in otel.counter_points():
        assert point.attributes is not None
        assert "datagraph.run_id" not in point.attributes  # bounded cardinality


async def test_counters_add_up_over_runs(supervisor: Supervisor, otel: Otel) -> None:
    with anyio.fail_after(TIMEOUT):
        for count in (3, 4):
            run = await _run(
                supervisor,
                double,
                inputs=[IOVal("tm_numbers", n) for n in range(count)],
            )
            await run.wait()
    assert otel.written() == {"tm_doubled": 7}
    # One series per stream, whatever the number of runs.
    assert len(otel.counter_points()) == 1
    runs = {_attrs(s)["datagraph.run_id"] for s in otel.spans_of("tm_double")}
    assert len(runs) == 2


# --------------------------------------------------------------------------------------
# Failures

broken = Processor(name="tm_broken", inputs=["tm_raw"], outputs=["tm_parsed"])
after_broken = Processor(name="tm_after_broken", inputs=["tm_parsed"], outputs=["tm_x"])


@broken
async def _broken(tm_raw: IO[str]) -> AsyncIterator[int]:
    async for text in tm_raw.stream():
        yield int(text)  # "x" raises ValueError


@after_broken
async def _after_broken(tm_parsed: IO[int]) -> AsyncIterator[int]:
    async for n in tm_parsed.stream():
        yield n + 1


async def test_a_failed_processor_has_an_error_span(
    supervisor: Supervisor, otel: Otel
) -> None:
    with anyio.fail_after(TIMEOUT):
        run = await _run(
            supervisor,
            broken,
            after_broken,
            inputs=[IOVal("tm_raw", t) for t in ["1", "2", "3", "x", "5"]],
        )
        with pytest.raises(RunFailedError):
            await run.wait()

    (span,) = otel.spans_of("tm_broken")
    attrs = _attrs(span)
    # Values in are those the attempt read from the store, a batch at a time:
    # "5" came in the same batch as "x".
    assert attrs["datagraph.values_in"] in (4, 5)
    assert attrs["datagraph.values_out"] == 3  # written before the failure
    assert attrs["error.type"] == "ValueError"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description is not None
    assert span.status.description.startswith("ValueError: invalid literal for int()")
    (event,) = span.events
    assert event.name == "exception"
    assert event.timestamp == span.end_time
    event_attrs = dict(event.attributes or {})
    assert event_attrs["exception.type"] == "ValueError"
    assert (
        event_attrs["exception.message"]
        == "invalid literal for int() with base 10: 'x'"
    )
    stack = str(event_attrs["exception.stacktrace"])
    assert stack.startswith("Traceback (most recent call last):")
    assert "in _broken" in stack
    assert "ValueError: invalid literal for int()" in stack
    assert "datagraph.failed_processor" not in event_attrs

    # Its reader fails because of it: an error span pointing at the origin.
    (downstream,) = otel.spans_of("tm_after_broken")
    assert downstream.status.status_code is StatusCode.ERROR
    (down_event,) = downstream.events
    down_attrs = dict(down_event.attributes or {})
    assert down_attrs["exception.type"] == "ValueError"
    assert down_attrs["datagraph.failed_processor"] == "tm_broken"
    assert _attrs(downstream)["datagraph.values_out"] == 3

    assert otel.written() == {"tm_parsed": 3, "tm_x": 3}


# --------------------------------------------------------------------------------------
# Retries: one span per attempt

flaky = Processor(name="tm_flaky", outputs=["tm_flaky_out"], retries=2, retry_delay=0)


def get_attempts() -> list[int]:
    """Where a retried processor counts its attempts (each test gives its own)."""
    raise NotImplementedError("each test overrides get_attempts")


Attempts = Annotated[list[int], Depends(get_attempts)]


@flaky
async def _flaky(attempts: Attempts) -> AsyncIterator[int]:
    attempts.append(len(attempts) + 1)
    if len(attempts) < 3:
        msg = f"flaky on attempt {len(attempts)}"
        raise ConnectionError(msg)
    for i in range(4):
        yield i


async def test_a_retried_processor_has_a_span_per_attempt(
    supervisor: Supervisor, otel: Otel
) -> None:
    attempts: list[int] = []
    with supervisor.override(get_attempts, lambda: attempts), anyio.fail_after(TIMEOUT):
        run = await _run(supervisor, flaky)
        assert await run["tm_flaky_out"].collect() == [0, 1, 2, 3]
        await run.wait()

    spans = otel.spans_of("tm_flaky")
    assert [_attrs(s)["datagraph.attempt"] for s in spans] == [1, 2, 3]
    assert [s.status.status_code for s in spans] == [
        StatusCode.ERROR,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
    for attempt, span in enumerate(spans[:2], start=1):
        (event,) = span.events
        assert dict(event.attributes or {})["exception.message"] == (
            f"flaky on attempt {attempt}"
        )
    assert [_attrs(s)["datagraph.values_out"] for s in spans] == [0, 0, 4]
    assert {_attrs(s)["datagraph.run_id"] for s in spans} == {run.id}
    for earlier, later in itertools.pairwise(spans):
        assert earlier.end_time is not None
        assert later.start_time is not None
        assert earlier.end_time <= later.start_time  # attempts one after another
    assert otel.written() == {"tm_flaky_out": 4}


partial = Processor(
    name="tm_partial", outputs=["tm_partial_out"], retries=1, retry_delay=0
)


@partial
async def _partial(attempts: Attempts) -> AsyncIterator[int]:
    attempts.append(len(attempts) + 1)
    for i in range(5):
        if i == 2 and len(attempts) == 1:
            msg = "fails after two values"
            raise ConnectionError(msg)
        yield i


async def test_values_a_retry_rewrites_are_counted_once(
    supervisor: Supervisor, otel: Otel
) -> None:
    attempts: list[int] = []
    with supervisor.override(get_attempts, lambda: attempts), anyio.fail_after(TIMEOUT):
        run = await _run(supervisor, partial)
        assert await run["tm_partial_out"].collect() == [0, 1, 2, 3, 4]
        await run.wait()
    spans = otel.spans_of("tm_partial")
    # The retry writes positions 0-4 again; the store keeps 0 and 1 from before.
    assert [_attrs(s)["datagraph.values_out"] for s in spans] == [2, 3]
    assert otel.written() == {"tm_partial_out": 5}


# --------------------------------------------------------------------------------------
# Scale-out: a span per instance

fan_source = Processor(name="tm_fan_source", inputs=["tm_fan_n"], outputs=["tm_fan"])
fan_worker = Processor(
    name="tm_fan_worker", inputs=["tm_fan"], outputs=["tm_fanned"], instances=3
)


@fan_source
async def _fan_source(tm_fan_n: IO[int]) -> AsyncIterator[int]:
    for i in range(await tm_fan_n.first()):
        yield i


@fan_worker
async def _fan_worker(tm_fan: IO[int]) -> AsyncIterator[int]:
    async for i in tm_fan.stream():
        yield -i


async def test_each_instance_of_a_scaled_out_processor_has_a_span(
    supervisor: Supervisor, otel: Otel
) -> None:
    with anyio.fail_after(TIMEOUT):
        run = await _run(
            supervisor, fan_source, fan_worker, inputs=[IOVal("tm_fan_n", 50)]
        )
        assert sorted(await run["tm_fanned"].collect()) == sorted(-i for i in range(50))
        await run.wait()

    spans = otel.spans_of("tm_fan_worker")
    assert sorted(_attrs(s)["datagraph.instance"] for s in spans) == [0, 1, 2]
    assert sum(_attrs(s)["datagraph.values_in"] for s in spans) == 50
    assert sum(_attrs(s)["datagraph.values_out"] for s in spans) == 50
    (source_span,) = otel.spans_of("tm_fan_source")
    assert "datagraph.instance" not in _attrs(source_span)
    assert otel.written() == {"tm_fan": 50, "tm_fanned": 50}


# --------------------------------------------------------------------------------------
# The module's own behaviour


async def test_a_memory_store_supervisor_reports_too(
    otel: Otel, anyio_backend: str
) -> None:
    supervisor = Supervisor(store=MemoryStore())
    with anyio.fail_after(TIMEOUT):
        run = await _run(supervisor, double, inputs=[IOVal("tm_numbers", 1)])
        await run.wait()
    (span,) = otel.spans_of("tm_double")
    assert _attrs(span)["datagraph.run_id"] == run.id
    assert otel.written() == {"tm_doubled": 1}


async def test_processor_spans_are_roots_on_every_backend(
    supervisor: Supervisor, otel: Otel
) -> None:
    # asyncio tasks inherit the starter's current span and trio's do not: so that
    # neither decides, a processor's span never has a parent.
    tracer = otel.tracer_provider.get_tracer("app")
    with anyio.fail_after(TIMEOUT), tracer.start_as_current_span("job"):
        run = await _run(supervisor, double, inputs=[IOVal("tm_numbers", 1)])
        await run.wait()
    (span,) = otel.spans_of("tm_double")
    assert span.parent is None


async def test_a_failing_exporter_never_fails_a_run(
    supervisor: Supervisor,
    otel: Otel,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("exporter down")

    assert _telemetry._otel is not None
    monkeypatch.setattr(_telemetry._otel.values_written, "add", broken)
    monkeypatch.setattr(_telemetry._otel.tracer, "start_span", broken)
    monkeypatch.setattr(_telemetry, "_failed", False)
    with anyio.fail_after(TIMEOUT):
        run = await _run(
            supervisor, double, inputs=[IOVal("tm_numbers", n) for n in range(3)]
        )
        assert await run["tm_doubled"].collect() == [0, 2, 4]
        await run.wait()
    assert await run.status() == "succeeded"
    logged = [r for r in caplog.records if "OpenTelemetry" in r.getMessage()]
    assert len(logged) == 1  # once, not once per report
    assert logged[0].exc_info is not None
    assert "exporter down" in str(logged[0].exc_info[1])


def test_processor_attribute_on_the_counter_when_given(otel: Otel) -> None:
    _telemetry.count_values(run_id="r1", stream="s", count=2, processor="p")
    _telemetry.count_values(run_id="r2", stream="s", count=3, processor="p")
    _telemetry.count_values(run_id="r1", stream="s", count=1)
    points = {
        tuple(sorted((point.attributes or {}).items())): point.value
        for point in otel.counter_points()
    }
    assert points == {
        (("datagraph.processor", "p"), ("datagraph.stream", "s")): 5,
        (("datagraph.stream", "s"),): 1,
    }


def test_end_before_start_is_clamped(otel: Otel) -> None:
    _telemetry.record_processor(
        run_id="r",
        processor="p",
        instance=None,
        attempt=1,
        started=100.0,
        ended=99.5,  # wall clocks step back sometimes
        values_in=0,
        values_out=0,
        failure=None,
    )
    (span,) = otel.finished()
    assert span.start_time == span.end_time == 100 * 1_000_000_000


def _python(script: str) -> str:
    """Run ``script`` in a fresh interpreter; return what it printed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


FLOW = """
from collections.abc import AsyncIterator

import anyio
from datagraph import IO, Flow, IOVal, Processor, Supervisor
from datagraph.stores.memory import MemoryStore

copy = Processor(name="copy", inputs=["src"], outputs=["dst"])

@copy
async def _copy(src: IO[int]) -> AsyncIterator[int]:
    async for n in src.stream():
        yield n

async def one_run() -> str:
    supervisor = Supervisor(store=MemoryStore())
    flow = Flow.from_processors(copy).resolve()
    run = await supervisor.start_flow(flow, inputs=[IOVal("src", n) for n in range(5)])
    await run.wait()
    return run.id
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_global_providers_set_after_import_and_first_run(backend: str) -> None:
    out = _python(
        FLOW
        + f"""
import itertools
import json
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

unseen = anyio.run(one_run, backend={backend!r})  # no SDK yet: a no-op

spans = InMemorySpanExporter()
tracer_provider = TracerProvider()
tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
trace.set_tracer_provider(tracer_provider)
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

seen = anyio.run(one_run, backend={backend!r})
data = reader.get_metrics_data()
print(json.dumps({{
    "unseen": unseen,
    "seen": seen,
    "spans": [[s.name, s.attributes["datagraph.run_id"]]
              for s in spans.get_finished_spans()],
    "counts": [[m.name, m.unit, dict(p.attributes), p.value]
               for r in data.resource_metrics for sc in r.scope_metrics
               for m in sc.metrics for p in m.data.data_points],
}}))
"""
    )
    result = json.loads(out)
    assert result["spans"] == [["datagraph.processor copy", result["seen"]]]
    assert result["counts"] == [
        [
            "datagraph.values_written",
            "{value}",
            {"datagraph.stream": "dst", "datagraph.processor": "copy"},
            5,
        ]
    ]


def test_without_opentelemetry_nothing_is_imported() -> None:
    out = _python(
        """
import sys
sys.modules["opentelemetry"] = None  # as if the extra were not installed
"""
        + FLOW
        + """
from datagraph import _telemetry

anyio.run(one_run)
print(_telemetry._checked, _telemetry._otel,
      any(m.startswith("opentelemetry.") for m in sys.modules))
"""
    )
    assert out.split() == ["True", "None", "False"]


def test_the_import_check_happens_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[None] = []
    real_load = _telemetry._load

    def counting_load() -> Any:
        calls.append(None)
        return real_load()

    monkeypatch.setattr(_telemetry, "_load", counting_load)
    monkeypatch.setattr(_telemetry, "_otel", None)
    monkeypatch.setattr(_telemetry, "_checked", False)
    for _ in range(3):
        _telemetry.count_values(run_id="r", stream="s", count=1)
    assert len(calls) == 1
    assert _telemetry._checked
