"""Run handles: a started flow's outputs, state and control, from any process."""

from __future__ import annotations

from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Literal

import anyio

from . import _plan
from ._errors import Failure, encode_failure
from ._plan import ProcessorState
from ._streams import CANCELLED_FIELD, dispatch_claim, done_stream, state_field
from .exceptions import (
    CorruptRunError,
    RunCancelledError,
    RunFailedError,
    UpstreamError,
)
from .io import IO
from .snapshot import ProcessorFigures, RunSnapshot, StreamFigures

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._context import RunContext
    from ._plan import Plan

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
        msg = (
            f"{name!r} is not an output of run {self.id}; outputs: {list(self)} "
            "(start with all_outputs=True to read every stream)"
        )
        raise KeyError(msg)

    async def states(self) -> dict[str, ProcessorState]:
        """Return the recorded state of each processor.

        A scaled-out processor that has not finished shows its busiest instance:
        running (or retrying) while any instance is.
        """
        wanted = {
            proc.name: [state_field(proc.name)]
            + [state_field(proc.name, i) for i in range(proc.instances)]
            * (proc.instances > 1)
            for proc in self.plan.processors
        }
        fields = await self._ctx.store.get_fields(
            self.id, [f for names in wanted.values() for f in names]
        )
        states = {}
        decode = self._decode_state
        for name, (own, *instances) in wanted.items():
            state = decode(own, fields[own]) if own in fields else ProcessorState()
            if instances and not state.finished:
                live = [decode(f, fields[f]) for f in instances if f in fields]
                state = max(live, key=_liveliness, default=state)
            states[name] = state
        return states

    def _decode_state(self, field: str, data: bytes) -> ProcessorState:
        try:
            return _plan.decode_state(data)
        except Exception as exc:  # whatever the bytes are, the record is corrupt
            raise CorruptRunError(self.id, f"field {field!r}", str(exc)) from exc

    async def snapshot(self) -> RunSnapshot:
        """Return the live figures of every stream and processor of the run."""
        store, plan = self._ctx.store, self.plan
        states = await self.states()
        streams = {}
        for name in plan.streams:
            state = await store.state(self.id, name)
            cursors = await store.cursors(self.id, name)
            readers = {
                p.name: cursors[p.name]
                for p in plan.consumers_of(name)
                if p.name in cursors
            }
            streaming = [
                readers[p.name] for p in plan.consumers_of(name) if p.name in readers
            ]
            streams[name] = StreamFigures(
                name=name,
                producer=plan.producer_of(name),
                written=state.length,
                ended=state.ended,
                failed=state.error is not None,
                readers=readers,
                backlog=state.length - min(streaming) if streaming else 0,
            )
        processors = {
            proc.name: _figures(proc.name, proc.wait, proc.instances, states[proc.name])
            for proc in plan.processors
        }
        return RunSnapshot(
            run_id=self.id,
            status=await self.status(states),
            streams=streams,
            processors=processors,
        )

    async def status(
        self, states: Mapping[str, ProcessorState] | None = None
    ) -> RunStatus:
        """Return where the run stands as a whole."""
        if await self._is_cancelled():
            return "cancelled"
        try:
            found = list((states or await self.states()).values())
        except CorruptRunError:
            return "corrupt"
        if any(s.status == "failed" for s in found):
            return "failed"
        if all(s.status == "done" for s in found):
            return "succeeded"
        if all(s.status == "pending" for s in found):
            return "pending"
        return "running"

    async def errors(self) -> dict[str, UpstreamError]:
        """Return the failure of each failed (or cancelled) processor, by name."""
        return {
            name: state.error.to_exception()
            for name, state in (await self.states()).items()
            if state.error is not None and state.status in ("failed", "cancelled")
        }

    async def wait(self, timeout: float | None = None) -> None:
        """Wait until every processor has finished.

        Raises:
            RunFailedError: some processors failed; ``.errors`` says how.
            RunCancelledError: the run was cancelled.
            TimeoutError: ``timeout`` seconds passed first.
        """
        with anyio.fail_after(timeout):
            for proc in self.plan.processors:
                done = IO[Any](self._ctx, done_stream(proc.name))
                try:
                    async with aclosing(done.chunks()) as chunks:
                        async for _ in chunks:
                            pass
                except UpstreamError:
                    pass  # reported below, from the recorded states
        errors = await self.errors()
        if await self._is_cancelled():
            raise RunCancelledError(self.id, errors)
        if errors:
            raise RunFailedError(self.id, errors)

    async def cancel(self) -> None:
        """Stop every processor of the run, wherever it runs.

        Streams that have not ended end with a ``Cancelled`` failure, processors
        not yet started never start, and running ones stop at their next read or
        write (at the latest within ``read_timeout``).
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
            await ctx.store.end(self.id, stream, error)
        states = await self.states()
        for proc in self.plan.processors:
            # A waiting processor claimed here can no longer be dispatched.
            unstarted = states[proc.name].status == "pending" and (
                not proc.wait
                or await ctx.store.claim(self.id, dispatch_claim(proc.name))
            )
            if proc.wait and unstarted:
                state = _plan.ProcessorState(status="cancelled", error=failure)
                await ctx.store.set_fields(
                    self.id, {state_field(proc.name): _plan.encode(state)}
                )
                await ctx.store.end(self.id, done_stream(proc.name), error)

    async def _is_cancelled(self) -> bool:
        fields = await self._ctx.store.get_fields(self.id, [CANCELLED_FIELD])
        return CANCELLED_FIELD in fields


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

    async def states(self) -> dict[str, ProcessorState]:
        """Raise the run's ``CorruptRunError``."""
        raise self._fresh()

    async def snapshot(self) -> RunSnapshot:
        """Raise the run's ``CorruptRunError``."""
        raise self._fresh()

    async def status(
        self, states: Mapping[str, ProcessorState] | None = None
    ) -> RunStatus:
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


def _liveliness(state: ProcessorState) -> int:
    return _LIVELINESS.get(state.status, 1)


def _figures(
    name: str, wait: bool, instances: int, state: ProcessorState
) -> ProcessorFigures:
    error = state.error
    return ProcessorFigures(
        name=name,
        status="waiting" if wait and state.status == "pending" else state.status,
        attempt=state.attempt,
        instances=instances,
        started=state.started,
        ended=state.ended,
        error=f"{error.error_type}: {error.message}" if error else None,
        traceback=error.traceback if error else None,
    )
