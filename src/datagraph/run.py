"""Run handles: a started flow's outputs, state and control, from any process."""

from __future__ import annotations

import contextlib
import time
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Literal

import anyio
import msgspec

from . import _plan
from ._errors import Failure, encode_failure
from ._jobs import HISTORY, dispatch_ready, dispatched_record, jobs_of, settle
from ._streams import (
    CANCELLED_FIELD,
    CREATED_FIELD,
    dispatch_claim,
    done_stream,
    record_field,
)
from .exceptions import (
    CorruptRunError,
    DatagraphError,
    RunCancelledError,
    RunFailedError,
    RunNotFoundError,
    StreamNotFoundError,
    UpstreamError,
)
from .flow import near_name
from .io import IO
from .snapshot import (
    ProcessorFigures,
    RunSnapshot,
    StreamFigures,
    average_rate,
    follow,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Mapping

    from ._context import RunContext
    from ._plan import JobRecord, Plan

__all__ = ("CorruptRun", "Run", "RunStatus")

#: The state of a whole run ("corrupt": its record in the store does not decode).
RunStatus = Literal["pending", "running", "succeeded", "failed", "cancelled", "corrupt"]


class Run(dict[str, IO[Any]]):
    """A started run: a mapping of its output streams, plus its state and control.

    ``run["name"]`` is a read handle (``IO``) on an output stream. Get a handle on
    an existing run with ``Supervisor.get_run(run_id)``, from any process attached
    to the same store. (A ``dict``, so code annotating the result of
    ``start_flow`` as ``dict[str, IO[Any]]`` type-checks.)
    """

    __slots__ = ("_ctx",)

    def __init__(self, ctx: RunContext, outputs: tuple[str, ...]) -> None:
        super().__init__((name, IO[Any](ctx, name)) for name in outputs)
        self._ctx = ctx

    def __repr__(self) -> str:
        return f"<Run {self.id} outputs={list(self)}>"

    @property
    def id(self) -> str:
        """The run's id, unique in its store."""
        return self._ctx.run_id

    @property
    def plan(self) -> Plan:
        """The resolved flow this run executes."""
        return self._ctx.plan

    def __missing__(self, name: str) -> IO[Any]:
        near = near_name(name, self)
        hint = f"did you mean {near!r}? " if near else ""
        msg = (
            f"{name!r} is not an output of run {self.id}; {hint}outputs: "
            f"{list(self)} (start with all_outputs=True to read every stream)"
        )
        raise StreamNotFoundError(msg, stream=name)

    async def states(self) -> dict[str, JobRecord]:
        """Return the recorded state of each processor.

        Jobs whose lease or dispatch has lapsed are settled first (taken over, or
        recorded as failed), so what comes back is never a lost processor shown
        as running. A scaled-out processor that has not finished shows its
        busiest instance: running (or retrying) while any instance is.

        Raises:
            RunNotFoundError: the run was deleted or has expired.
        """
        ctx = self._ctx
        jobs = list(ctx.plan.jobs)
        scaled = [p.name for p in self.plan.processors if p.instances > 1]
        states = await ctx.job_records(jobs, also=scaled)
        if await settle(ctx, {job: states[job] for job in jobs}):
            states = await ctx.job_records(jobs, also=scaled)
        result = {}
        for proc in self.plan.processors:
            if proc.instances == 1:
                result[proc.name] = states[proc.name]
                continue
            state = states[proc.name]
            if not state.finished:
                live = [states[job] for job in jobs_of(proc)]
                state = max(live, key=_liveliness, default=state)
            result[proc.name] = state
        return result

    async def created(self) -> float | None:
        """Return when the run was started (seconds since the epoch).

        Returns:
            The time, or None when what the store holds is not a time.

        Raises:
            RunNotFoundError: the run was deleted or has expired.
        """
        fields = await self._ctx.store.get_fields(self.id, [CREATED_FIELD])
        raw = fields.get(CREATED_FIELD)
        if raw is None:
            msg = f"run {self.id} no longer exists (it was deleted or expired)"
            raise RunNotFoundError(msg)
        try:
            return float(raw.decode())
        except (UnicodeDecodeError, ValueError):
            return None

    async def snapshot(self) -> RunSnapshot:
        """Return the live figures of every stream and processor of the run.

        Streams have no recent ``rate`` (it takes two snapshots): ``follow()``
        adds it.
        """
        store, plan = self._ctx.store, self.plan
        states = await self.states()
        taken_at = time.time()
        streams = {}
        for name in plan.streams:
            producer = plan.producer_of(name)
            # Cursors before the length: read the other way round, a reader
            # could be past the length read (a negative backlog).
            cursors = await store.cursors(self.id, name)
            state = await store.state(self.id, name)
            readers = {
                p.name: cursors[p.name]
                for p in plan.consumers_of(name)
                if p.name in cursors
            }
            streaming = [
                readers[p.name] for p in plan.consumers_of(name) if p.name in readers
            ]
            writer = states[producer] if producer is not None else None
            until = (writer.ended if writer and state.ended else None) or taken_at
            streams[name] = StreamFigures(
                name=name,
                producer=producer,
                written=state.length,
                ended=state.ended,
                failed=state.error is not None,
                readers=readers,
                backlog=max(0, state.length - min(streaming)) if streaming else 0,
                average=average_rate(state.length, writer.started, until)
                if writer is not None
                else None,
            )
        processors = {
            proc.name: _figures(proc.name, proc.wait, proc.instances, states[proc.name])
            for proc in plan.processors
        }
        return RunSnapshot(
            run_id=self.id,
            status=await self.status(states),
            taken_at=taken_at,
            streams=streams,
            processors=processors,
            created=await self.created(),
        )

    def follow(
        self, *, interval: float = 0.5, window: float = 2.0
    ) -> AsyncGenerator[RunSnapshot]:
        """Take snapshots of the run until it has finished, with rates.

        ``async for snapshot in run.follow(): ...`` gets a snapshot every
        ``interval`` seconds, from any process attached to the run's store; each
        open stream carries its recent ``rate`` (over ``window`` seconds, see
        ``RateWindow``). The last one yielded is the first that shows the run
        ``finished``: it comes as soon as the run ends, not up to ``interval``
        later. Failures are in the snapshots; nothing is raised for them.

        Raises:
            RunNotFoundError: the run was deleted or has expired.
            StoreError: the store failed (or cannot be reached).
        """
        return follow(self, interval=interval, window=window)

    async def status(self, states: Mapping[str, JobRecord] | None = None) -> RunStatus:
        """Return where the run stands as a whole.

        Raises:
            RunNotFoundError: the run was deleted or has expired.
        """
        try:
            found = list((states or await self.states()).values())
        except CorruptRunError:
            return "corrupt"
        if await self._is_cancelled():
            return "cancelled"
        if any(s.status in ("failed", "cancelled") for s in found):
            return "failed"
        if all(s.status == "done" for s in found):
            return "succeeded"
        if all(s.status == "pending" for s in found):
            return "pending"
        return "running"

    async def errors(self) -> dict[str, UpstreamError]:
        """Return the failure of each failed (or cancelled) processor, by name."""
        return _failures_of(await self.states())

    async def wait(self, timeout: float | None = None) -> None:
        """Wait until every processor has finished.

        Never waits on a lost processor for longer than its lease: it is taken
        over or reported, as ``states()`` says.

        Raises:
            RunFailedError: some processors failed or were lost; ``.errors``
                says how.
            RunCancelledError: the run was cancelled.
            RunNotFoundError: the run was deleted or expired meanwhile.
            TimeoutError: ``timeout`` seconds passed first.
        """
        error: Exception | None = None
        with anyio.fail_after(timeout):
            async with anyio.create_task_group() as tg:
                # Reading a done stream watches only its own processor's lease:
                # settle every job meanwhile, so that processors lost together
                # are acted on together, not one lease after another.
                tg.start_soon(self._settle_every_read_timeout)
                try:
                    await self._wait_done()
                except Exception as exc:  # raised as is, not in an ExceptionGroup
                    error = exc
                tg.cancel_scope.cancel()
        if error is not None:
            raise error
        states = await self.states()
        errors = _failures_of(states)
        if await self._is_cancelled():
            raise RunCancelledError(self.id, errors)
        for name, state in states.items():
            if state.status != "done" and name not in errors:
                # Ended without a recorded failure: never report success then.
                errors[name] = UpstreamError(
                    processor=name,
                    error_type="Unfinished",
                    message=f"processor {name!r} ended as {state.status!r}",
                )
        if errors:
            raise RunFailedError(self.id, errors)

    async def _wait_done(self) -> None:
        for proc in self.plan.processors:
            done = IO[Any](self._ctx, done_stream(proc.name))
            try:
                async with aclosing(done.chunks()) as chunks:
                    async for _ in chunks:
                        pass
            except UpstreamError:
                pass  # reported by wait(), from the recorded states

    async def _settle_every_read_timeout(self) -> None:
        while True:
            await anyio.sleep(self._ctx.settings.read_timeout)
            # Best effort: what goes wrong here (a deleted run, the store out of
            # reach) goes wrong for the waiting too, which reports it.
            with contextlib.suppress(DatagraphError):
                await self.states()

    async def cancel(self) -> None:
        """Stop every processor of the run, wherever it runs.

        Streams that have not ended end with a ``Cancelled`` failure, processors
        not yet started never start, and running ones stop within
        ``read_timeout`` (a second by default).
        """
        ctx = self._ctx
        await ctx.store.set_fields(self.id, {CANCELLED_FIELD: b"1"})
        failure = Failure(
            processor="(run)",
            error_type="Cancelled",
            message=f"run {self.id} was cancelled",
        )
        error = encode_failure(failure)
        for stream in self.plan.streams:
            await ctx.store.end_stream(self.id, stream, error)
        states = await self.states()
        for proc in self.plan.processors:
            state = states[proc.name]
            # A waiting processor claimed here can no longer be dispatched.
            if not (proc.wait and state.status == "pending"):
                continue
            if await ctx.store.claim(self.id, dispatch_claim(proc.name, state.round)):
                cancelled = msgspec.structs.replace(
                    state, status="cancelled", error=failure
                )
                await ctx.store.set_fields(
                    self.id, {record_field(proc.name): _plan.encode(cancelled)}
                )
                await ctx.store.end_stream(self.id, done_stream(proc.name), error)

    async def resume(self) -> list[str]:
        """Run again the processors that failed, were lost or were cancelled.

        Completed streams are kept; the streams of the processors run again are
        reopened, and their re-runs continue them by position (what is already
        there is not written twice). Processors still running are left alone.
        Their inputs must still be whole: a run that trimmed them cannot resume.

        Returns:
            The names of the processors dispatched again.

        Raises:
            ProcessorNotFoundError: the executor cannot run one of them (with
                ``LocalExecutor``: it is not implemented in this process).
        """
        ctx = self._ctx
        states = await self.states()
        again = [
            proc
            for proc in self.plan.processors
            if states[proc.name].status in ("failed", "cancelled")
        ]
        if not again:
            return []
        # Raises before anything changes if they cannot run where they would go.
        ctx.executor.check(_plan.Plan(processors=tuple(again), inputs=(), outputs=()))
        await ctx.store.delete_fields(self.id, [CANCELLED_FIELD])
        previous = await ctx.job_records(
            [job for p in again for job in jobs_of(p)],
            also=[p.name for p in again if p.instances > 1],
        )
        fields: dict[str, bytes] = {}
        for proc in again:
            for stream in (*proc.outputs, done_stream(proc.name)):
                await ctx.store.reopen(self.id, stream)
            for job in {proc.name, *jobs_of(proc)}:
                new = _resumed(previous[job])
                if not proc.wait and job in ctx.plan.jobs:
                    new = dispatched_record(ctx, job, new)
                field = record_field(proc.name) if job == proc.name else None
                fields[field or ctx.field_of(job)] = _plan.encode(new)
        await ctx.store.set_fields(self.id, fields)
        for proc in again:
            if not proc.wait:
                for job in jobs_of(proc):
                    await ctx.executor.dispatch(self.id, job)
        await dispatch_ready(ctx, [s for p in again if p.wait for s in p.inputs])
        return [proc.name for proc in again]

    async def _is_cancelled(self) -> bool:
        fields = await self._ctx.store.get_fields(self.id, [CANCELLED_FIELD])
        return CANCELLED_FIELD in fields


def _failures_of(states: Mapping[str, JobRecord]) -> dict[str, UpstreamError]:
    return {
        name: state.error.to_exception()
        for name, state in states.items()
        if state.error is not None and state.status in ("failed", "cancelled")
    }


def _resumed(state: JobRecord) -> JobRecord:
    """Return the state of a finished job about to run again in the next round."""
    history = state.history
    if state.error is not None:
        history = (*history, state.error)[-HISTORY:]
    return msgspec.structs.replace(
        state,
        status="pending",
        ended=None,
        error=None,
        heartbeat=0.0,
        dispatched=None,
        epoch=state.epoch + 1,
        round=state.round + 1,
        history=history,
    )


class CorruptRun(Run):
    """A listed run whose record in the store does not decode.

    ``Supervisor.list_runs()`` hands these out so that one corrupt run never
    hides the others. Its ``status()`` is ``"corrupt"``; it has no outputs and
    an empty plan; everything else raises its ``CorruptRunError``. Delete it
    with ``Supervisor.delete_run``.
    """

    __slots__ = ("error",)

    def __init__(self, ctx: RunContext, error: CorruptRunError) -> None:
        super().__init__(ctx, ())
        #: Why the run cannot be read.
        self.error = error

    def __repr__(self) -> str:
        return f"<CorruptRun {self.id}>"

    async def states(self) -> dict[str, JobRecord]:
        """Raise the run's ``CorruptRunError``."""
        raise self._fresh()

    async def snapshot(self) -> RunSnapshot:
        """Raise the run's ``CorruptRunError``."""
        raise self._fresh()

    async def status(self, states: Mapping[str, JobRecord] | None = None) -> RunStatus:
        """Return ``"corrupt"``."""
        return "corrupt"

    async def errors(self) -> dict[str, UpstreamError]:
        """Raise the run's ``CorruptRunError``."""
        raise self._fresh()

    async def wait(self, timeout: float | None = None) -> None:
        """Raise the run's ``CorruptRunError``."""
        raise self._fresh()

    async def cancel(self) -> None:
        """Raise the run's ``CorruptRunError``: delete the run instead."""
        raise self._fresh()

    def _fresh(self) -> CorruptRunError:
        # A new exception each time: raising one object again and again would
        # chain every earlier traceback onto it.
        error = self.error
        return CorruptRunError(error.run_id, error.what, error.reason)


_LIVELINESS = {"running": 4, "retrying": 3, "failed": 2, "pending": 0}


def _liveliness(state: JobRecord) -> int:
    return _LIVELINESS.get(state.status, 1)


def _figures(
    name: str, wait: bool, instances: int, state: JobRecord
) -> ProcessorFigures:
    error = state.error
    waiting = state.status == "pending" and state.dispatched is not None
    return ProcessorFigures(
        name=name,
        status="waiting" if wait and state.status == "pending" else state.status,
        attempt=state.attempt,
        instances=instances,
        started=state.started,
        ended=state.ended,
        error=f"{error.error_type}: {error.message}" if error else None,
        traceback=error.traceback if error else None,
        where=state.where if waiting else None,
        takeovers=sum(f.error_type == "Takeover" for f in state.history),
        history=tuple(f"{f.error_type}: {f.message}" for f in state.history),
    )
