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
from ._errors import Failure, failure_from_exception
from ._jobs import HISTORY as _HISTORY
from ._jobs import record_end_patiently, settle, take_over
from ._outputs import Outputs
from ._plan import JobRecord
from ._streams import (
    CANCELLED_FIELD,
    expire_claim,
    instance_job,
    record_field,
    start_claim,
)
from ._threads import run_sync_implementation
from .exceptions import RunNotFoundError, StoreError, UpstreamError
from .io import IO, IOVal
from .processor import Implementation, implementation_of

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable

    from fast_depends.core import CallModel

    from ._context import RunContext
    from .processor import Processor

__all__ = ("JobRunner",)


class JobRunner:
    """Runs one job (a processor, or one instance of it) of one run, start to end.

    The job runs under the epoch its record holds when it starts: a delivery of a
    job whose epoch another delivery has started does nothing, and a runner whose
    epoch is superseded (a peer took the job over, or recorded it lost) stops
    without recording anything.
    """

    def __init__(
        self,
        ctx: RunContext,
        processor: Processor,
        call_model: Callable[[Implementation], CallModel],
        instance: int | None = None,
    ) -> None:
        self.ctx = ctx
        self.processor = processor
        self._call_model = call_model
        self.name = processor.name
        self._scaled = processor.instances > 1
        self._instance = instance
        self.job = (
            processor.name if instance is None else instance_job(self.name, instance)
        )
        self._state_field = record_field(processor.name, instance)
        self._state = JobRecord()
        self._peers = [job for job in ctx.plan.jobs if job != self.job]
        # Why the heartbeat stopped the attempt, if it did.
        self._stopped_by_cancel = False  # run.cancel()
        self._superseded = False  # taken over, or recorded lost, elsewhere
        self._store_error: Exception | None = None  # the heartbeat lost the store

    async def run(self) -> None:
        """Run the job to the end, recording what happens in the store."""
        ctx = self.ctx
        found = await ctx.job_records([self.job])
        self._state = found[self.job]
        if self._state.finished:
            return  # a late duplicate of a job that has ended
        if not await ctx.store.claim(ctx.run_id, start_claim(self.job, self._epoch)):
            return  # another delivery of this epoch runs it
        if await self._cancelled():  # cancelled before it got to start
            await self._finish(None, cancelled=True)
            return
        try:
            failure = await self._attempts()
        except anyio.get_cancelled_exc_class():
            # Stopped from outside: the event loop or the worker is shutting down.
            # (If the store is closing too, nothing can be recorded: the lease
            # will tell.)
            with anyio.move_on_after(2, shield=True), contextlib.suppress(StoreError):
                await self._interrupted()
            raise
        except StoreError as exc:  # recording its own state failed: say so
            failure = failure_from_exception(self.name, exc)
        if self._superseded:
            return
        try:
            cancelled = failure is not None and await self._cancelled()
        except StoreError:
            cancelled = False  # the store is away: record the failure itself
        await self._finish(
            self._cancelled_failure() if cancelled else failure, cancelled=cancelled
        )

    @property
    def _epoch(self) -> int:
        return self._state.epoch

    async def _interrupted(self) -> None:
        """Leave the job to a peer, or report it lost, when its host goes away."""
        ctx = self.ctx
        if self._superseded or self._stopped_by_cancel:
            if self._stopped_by_cancel:
                await self._finish(self._cancelled_failure(), cancelled=True)
            return
        if not await ctx.store.claim(ctx.run_id, expire_claim(self.job, self._epoch)):
            return  # a peer is acting on it already
        if ctx.can_take_over:
            await take_over(ctx, self.job, self._state, self._state.history)
            return
        await self._finish(
            Failure(
                processor=self.name,
                error_type="ProcessorLost",
                message=(
                    f"processor {self.name!r} was stopped before it finished: the "
                    "event loop or worker running it shut down"
                ),
            ),
            cancelled=False,
        )

    async def _attempts(self) -> Failure | None:
        proc = self.processor
        try:
            impl = implementation_of(proc)
            if proc.wait:
                await self._check_inputs()
        except Exception as exc:
            return failure_from_exception(proc.name, exc)
        first = self._state.attempt + 1  # a taken-over job goes on counting
        for retried in itertools.count():
            attempt, started = first + retried, time.time()
            await self._record(
                status="running", attempt=attempt, started=started, heartbeat=started
            )
            error = await self._attempt(impl, attempt, started)
            if self._superseded:
                return None
            if self._stopped_by_cancel:
                return self._cancelled_failure()
            if error is None:
                return None
            failure = failure_from_exception(proc.name, error)
            final = (
                isinstance(error, UpstreamError)
                or retried >= proc.retries
                or not proc.retries_on(error)
                or await self._cancelled()
            )
            if final:
                return failure
            await self._record(
                status="retrying",
                error=failure,
                history=(*self._state.history, failure)[-_HISTORY:],
            )
            await anyio.sleep(proc.retry_wait(retried + 1))
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
            tg.start_soon(self._heartbeat, tg.cancel_scope, list(ios.values()))
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
        if self._store_error is not None and error is None:
            error = self._store_error
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
                put = outputs.put  # looked up once: this loop runs per value
                async with aclosing(result) as agen:
                    async for item in agen:
                        if put(item):
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
        # Each distinct type is checked once: ``isinstance`` against IOVal is
        # dear, and a list of IOVals is what a sync function usually returns.
        many = isinstance(result, list | tuple) and all(
            issubclass(cls, IOVal) for cls in set(map(type, result))
        )
        put = outputs.put
        for item in result if many else [result]:
            if put(item):
                await outputs.flush()
        await outputs.flush()

    async def _heartbeat(self, scope: anyio.CancelScope, inputs: list[IO[Any]]) -> None:
        """Show that the job lives; watch the run's cancel flag and its peers.

        Stops the attempt (through ``scope``) when the run is cancelled, when
        the job was superseded elsewhere, or when the store cannot be reached.
        Every look also settles the leases of the run's other jobs, so a lost
        peer is taken over (or reported) by whichever processor notices first,
        and records how far the job has read into its current input batches.
        """
        settings = self.ctx.settings
        beat_every = settings.lease / 3
        last_beat = time.monotonic()
        while True:
            await anyio.sleep(min(settings.read_timeout, beat_every))
            try:
                if await self._look_around():
                    scope.cancel()
                    return
                for io in inputs:
                    await io.record_progress()
                if time.monotonic() - last_beat >= beat_every:
                    last_beat = time.monotonic()
                    await self._record(heartbeat=time.time())
            except StoreError as exc:
                self._store_error = exc
                scope.cancel()
                return

    async def _look_around(self) -> bool:
        """Check the run's flag and states; tell whether the attempt must stop."""
        ctx = self.ctx
        cancelled = await self._cancelled()
        try:
            states = await ctx.job_records([self.job, *self._peers])
        except RunNotFoundError:  # deleted under it: nothing left to record
            self._superseded = True
            return True
        own = states.pop(self.job)
        if own.epoch != self._epoch or own.finished:
            self._superseded = True
            return True
        if cancelled:
            self._stopped_by_cancel = True
            return True
        await settle(ctx, states)
        return False

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
        """Record the job's final state, end its streams, wake what waits on them."""
        if cancelled and failure is None:
            failure = self._cancelled_failure()
        status: _plan.JobStatus = (
            "done" if failure is None else "cancelled" if cancelled else "failed"
        )
        self._state = msgspec.structs.replace(
            self._state, status=status, ended=time.time(), error=failure
        )
        await record_end_patiently(
            self.ctx, self.processor, self._instance, self._state, cancelled=cancelled
        )
