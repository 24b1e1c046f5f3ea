"""Running one processor of one run, in whatever process the executor chose."""

from __future__ import annotations

import contextlib
import itertools
import time
from contextlib import AsyncExitStack, aclosing
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from . import _plan, _telemetry
from ._errors import Failure, encode_failure, failure_from_exception
from ._outputs import Outputs
from ._plan import ProcessorState
from ._streams import (
    CANCELLED_FIELD,
    dispatch_claim,
    done_stream,
    finish_claim,
    instance_job,
    state_field,
)
from ._threads import run_sync_implementation
from .exceptions import UpstreamError
from .io import IO, IOVal
from .processor import Implementation, implementation_of

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable, Iterable

    from fast_depends.core import CallModel

    from ._context import RunContext
    from .executors import Executor
    from .processor import Processor

__all__ = ("ProcessorRun", "dispatch", "dispatch_ready")


async def dispatch(executor: Executor, run_id: str, processor: Processor) -> None:
    """Dispatch a processor: once, or once per instance when it is scaled out."""
    if processor.instances == 1:
        await executor.dispatch(run_id, processor.name)
        return
    for instance in range(processor.instances):
        await executor.dispatch(run_id, instance_job(processor.name, instance))


async def dispatch_ready(
    ctx: RunContext, executor: Executor, ended_streams: Iterable[str]
) -> None:
    """Dispatch each waiting processor whose inputs have all ended.

    Called by whoever ended the streams. Several processes may see the same
    processor ready; the claim in the store lets exactly one of them dispatch it.
    """
    candidates = {
        proc.name: proc
        for stream in ended_streams
        for proc in ctx.plan.consumers_of(stream)
        if proc.wait
    }
    for proc in candidates.values():
        states = [await ctx.store.state(ctx.run_id, s) for s in proc.inputs]
        if all(s.ended for s in states) and await ctx.store.claim(
            ctx.run_id, dispatch_claim(proc.name)
        ):
            await dispatch(executor, ctx.run_id, proc)


class ProcessorRun:
    """One processor (or one instance of it) of one run, from start to final state.

    An instance of a scaled-out processor records its own state; the last instance
    to finish, or the first to fail, ends the processor's streams.
    """

    def __init__(
        self,
        ctx: RunContext,
        processor: Processor,
        executor: Executor,
        call_model: Callable[[Implementation], CallModel],
        instance: int | None = None,
    ) -> None:
        self.ctx = ctx
        self.processor = processor
        self.executor = executor
        self._call_model = call_model
        self.name = processor.name
        self._scaled = processor.instances > 1
        self._instance = instance
        self._state_field = state_field(processor.name, instance)
        self._state = ProcessorState()
        self._stopped_by_cancel = False  # the heartbeat saw run.cancel()

    async def run(self) -> None:
        """Run the processor to the end, recording what happens in the store."""
        if await self._cancelled():  # cancelled before it got to start
            await self._finish(None, cancelled=True)
            return
        try:
            failure = await self._attempts()
        except anyio.get_cancelled_exc_class():
            # Stopped from outside (run.cancel(), or the event loop is closing):
            # still leave readers an end instead of a stream that never finishes.
            with anyio.move_on_after(2, shield=True):
                await self._finish(self._cancelled_failure(), cancelled=True)
            raise
        cancelled = failure is not None and await self._cancelled()
        await self._finish(failure, cancelled=cancelled)

    async def _attempts(self) -> Failure | None:
        proc = self.processor
        try:
            impl = implementation_of(proc)
            if proc.wait:
                await self._check_inputs()
        except Exception as exc:
            return failure_from_exception(proc.name, exc)
        for attempt in itertools.count(1):
            started = time.time()
            await self._record(
                status="running", attempt=attempt, started=started, heartbeat=started
            )
            error = await self._attempt(impl, attempt, started)
            if self._stopped_by_cancel:
                return self._cancelled_failure()
            if error is None:
                return None
            final = (
                isinstance(error, UpstreamError)
                or attempt > proc.retries
                or await self._cancelled()
            )
            if final:
                return failure_from_exception(proc.name, error)
            await self._record(
                status="retrying", error=failure_from_exception(proc.name, error)
            )
            await anyio.sleep(proc.retry_delay)
        msg = "unreachable"
        raise AssertionError(msg)  # pragma: no cover

    async def _check_inputs(self) -> None:
        """A waiting processor whose input failed fails the same way, unstarted."""
        ctx = self.ctx
        for stream in self.processor.inputs:
            state = await ctx.store.state(ctx.run_id, stream)
            if state.error is not None:
                await IO(ctx, stream).collect()  # raises the upstream failure

    async def _attempt(
        self, impl: Implementation, attempt: int, started: float
    ) -> Exception | None:
        outputs = Outputs(self.ctx, self.processor, shared=self._scaled)
        # Inputs are read under the processor's name, which records its progress
        # (backpressure, live figures); instances share them as one group.
        opened: list[AsyncGenerator[Any]] = []
        ios: dict[str, IO[Any]] = {
            name: IO(
                self.ctx,
                name,
                type_,
                reader=impl.processor.name,
                shared=self._scaled,
                opened=opened,
            )
            for name, type_ in impl.input_types.items()
        }
        error: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._heartbeat, tg.cancel_scope)
            tg.start_soon(outputs.run_flusher)
            try:
                await self._call(impl, ios, opened, outputs)
                await outputs.flush()
            except Exception as exc:
                error = exc
                # Keep what was produced before the failure (best effort).
                with anyio.CancelScope(shield=True):
                    with contextlib.suppress(Exception):  # the first error counts
                        await outputs.flush()
            tg.cancel_scope.cancel()
        failure = None if error is None else failure_from_exception(self.name, error)
        _telemetry.record_processor(
            run_id=self.ctx.run_id,
            processor=self.name,
            instance=self._instance,
            attempt=attempt,
            started=started,
            ended=time.time(),
            values_in=sum(io.consumed for io in ios.values()),
            values_out=outputs.appended,
            failure=failure,
        )
        return error

    async def _call(
        self,
        impl: Implementation,
        ios: dict[str, IO[Any]],
        opened: list[AsyncGenerator[Any]],
        outputs: Outputs,
    ) -> None:
        """Call the implementation with its inputs and dependencies; buffer results.

        Dependencies are resolved in an exit stack that closes when the call ends,
        however it ends, so generator dependencies always get their cleanup, and
        every iterator the call opened on its inputs is closed.
        """
        try:
            await self._invoke(impl, ios, outputs)
        finally:
            with anyio.CancelScope(shield=True):
                for iterator in opened:
                    with contextlib.suppress(Exception):
                        await iterator.aclose()

    async def _invoke(
        self, impl: Implementation, ios: dict[str, Any], outputs: Outputs
    ) -> None:
        model = self._call_model(impl)
        if impl.kind in ("async_gen", "async"):
            async with AsyncExitStack() as stack:
                result = await model.asolve(
                    stack=stack, cache_dependencies={}, nested=False, **ios
                )
                if impl.kind == "async":
                    await self._put_result(outputs, result)
                    return
                async with aclosing(result) as agen:
                    async for item in agen:
                        if outputs.put(item):
                            await outputs.flush()
            return
        result = await run_sync_implementation(
            self.name, impl.kind, model, ios, outputs, self.ctx.settings
        )
        await self._put_result(outputs, result)

    @staticmethod
    async def _put_result(outputs: Outputs, result: Any) -> None:
        """Buffer a function's result: None, a value, an IOVal or a list of IOVals."""
        if result is None:
            return
        many = isinstance(result, list | tuple) and all(
            isinstance(item, IOVal) for item in result
        )
        for item in result if many else [result]:
            if outputs.put(item):
                await outputs.flush()
        await outputs.flush()

    async def _heartbeat(self, scope: anyio.CancelScope) -> None:
        """Show that the processor lives, and stop it when its run is cancelled."""
        settings = self.ctx.settings
        beat_every = settings.lease / 3
        last_beat = time.monotonic()
        while True:
            await anyio.sleep(min(settings.read_timeout, beat_every))
            if await self._cancelled():
                self._stopped_by_cancel = True
                scope.cancel()
                return
            if time.monotonic() - last_beat >= beat_every:
                last_beat = time.monotonic()
                await self._record(heartbeat=time.time())

    async def _finishes_processor(self, failed: bool) -> bool:
        """Tell whether this instance records the end of the whole processor.

        The first instance to fail does, or else the last one to finish; each
        instance records its own state before asking, so the last one always sees
        the others finished, and the claim keeps two finishers from both winning.
        """
        ctx, proc = self.ctx, self.processor
        if not failed:
            fields = [state_field(proc.name, i) for i in range(proc.instances)]
            states = await ctx.store.get_fields(ctx.run_id, fields)
            if len(states) < len(fields) or not all(
                _plan.decode_state(data).finished for data in states.values()
            ):
                return False
        return await ctx.store.claim(ctx.run_id, finish_claim(proc.name))

    async def _cancelled(self) -> bool:
        fields = await self.ctx.store.get_fields(self.ctx.run_id, [CANCELLED_FIELD])
        return CANCELLED_FIELD in fields

    def _cancelled_failure(self) -> Failure:
        return Failure(
            processor=self.processor.name,
            error_type="Cancelled",
            message=f"processor {self.processor.name!r} was cancelled",
        )

    async def _record(self, **changes: Any) -> None:
        self._state = msgspec.structs.replace(self._state, **changes)
        await self.ctx.store.set_fields(
            self.ctx.run_id, {self._state_field: _plan.encode(self._state)}
        )

    async def _finish(self, failure: Failure | None, *, cancelled: bool) -> None:
        """End the outputs and the done stream, record the state, wake waiters."""
        ctx, proc = self.ctx, self.processor
        if cancelled and failure is None:
            failure = self._cancelled_failure()
        error = encode_failure(failure) if failure is not None else None
        status: _plan.Status = (
            "done" if failure is None else "cancelled" if cancelled else "failed"
        )
        await self._record(status=status, ended=time.time(), error=failure)
        if self._scaled and not await self._finishes_processor(failure is not None):
            return
        for stream in proc.outputs:
            await ctx.store.end(ctx.run_id, stream, error)
        if self._scaled:
            final = msgspec.structs.replace(self._state, attempt=0, heartbeat=0.0)
            await ctx.store.set_fields(
                ctx.run_id, {state_field(proc.name): _plan.encode(final)}
            )
        await ctx.store.end(ctx.run_id, done_stream(proc.name), error)
        if not cancelled:
            await dispatch_ready(ctx, self.executor, self.processor.outputs)
