"""A job's life as the store records it: dispatched, taken over, lost, ended.

A job is one processor of a run (or one instance of a scaled-out one), as handed to
an executor. Every step here may be taken by any process attached to the store: the
one that started the run, a worker running another processor of it, a reader, a
process watching it. Claims in the store make each step happen once.

Leases: a running job writes a heartbeat every third of ``Settings.lease``. A peer
that finds it silent for longer than the lease acts on it, once per epoch (the
``expire`` claim):

- when the run's executor reaches its workers from any process (``takes_over``),
  a peer with such an executor dispatches the job again under a new epoch; its
  re-run rewrites its outputs from position 0 and the store keeps what it already
  holds, so nothing is lost or written twice;
- otherwise it records the job as failed (``ProcessorLost``) and ends its streams
  with that failure, so readers and ``Run.wait()`` learn it at once. In a run that
  could be taken over, a peer that cannot take it over itself leaves a whole second
  lease for one that can before it does this.

A job dispatched but not started within ``Settings.dispatch_timeout`` fails the same
way (``DispatchTimeout``): no running service implements it, or none serves its queue.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio
import msgspec

from . import _plan
from ._errors import Failure, encode_failure
from ._plan import JobRecord
from ._streams import (
    KEEP_ALL_FIELD,
    dispatch_claim,
    done_stream,
    expire_claim,
    finish_claim,
    instance_job,
    record_field,
)
from .exceptions import StoreConnectionError, StoreError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from ._context import RunContext
    from .processor import Processor

__all__ = (
    "HISTORY",
    "dispatch",
    "dispatch_ready",
    "dispatched_record",
    "jobs_of",
    "record_end",
    "record_end_patiently",
    "settle",
    "take_over",
)

logger = logging.getLogger("datagraph")

#: How many failures of earlier attempts a state keeps.
HISTORY = 10


def jobs_of(processor: Processor) -> list[str]:
    """Return the jobs a processor is dispatched as: itself, or each instance."""
    if processor.instances == 1:
        return [processor.name]
    return [instance_job(processor.name, i) for i in range(processor.instances)]


def dispatched_record(
    ctx: RunContext, job: str, previous: JobRecord | None = None
) -> JobRecord:
    """Return the record of ``job`` as it is handed to the executor."""
    base = previous or JobRecord()
    return msgspec.structs.replace(
        base,
        status="pending",
        dispatched=time.time(),
        where=ctx.executor.where(job),
        heartbeat=0.0,
    )


async def dispatch(
    ctx: RunContext, processor: Processor, previous: JobRecord | None = None
) -> None:
    """Record a processor's jobs as dispatched, then hand them to the executor."""
    jobs = jobs_of(processor)
    await ctx.store.set_fields(
        ctx.run_id,
        {
            ctx.field_of(job): _plan.encode(dispatched_record(ctx, job, previous))
            for job in jobs
        },
    )
    for job in jobs:
        await ctx.executor.dispatch(ctx.run_id, job)


async def dispatch_ready(ctx: RunContext, ended_streams: Iterable[str]) -> None:
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
        inputs = [await ctx.store.state(ctx.run_id, s) for s in proc.inputs]
        if not all(s.ended for s in inputs):
            continue
        state = await ctx.job_record(proc.name) or JobRecord()
        if state.status != "pending" or state.dispatched is not None:
            continue
        if await ctx.store.claim(ctx.run_id, dispatch_claim(proc.name, state.round)):
            await dispatch(ctx, proc, state)


async def record_end(
    ctx: RunContext,
    processor: Processor,
    instance: int | None,
    state: JobRecord,
    *,
    cancelled: bool = False,
) -> None:
    """Record a job's final ``state``; end the processor's streams when it is over.

    For a scaled-out processor, the first instance to fail ends its streams, or
    else the last one to finish. Every stream is ended even when ending another
    one fails; the first such error is raised afterwards.
    """
    run_id, store = ctx.run_id, ctx.store
    await store.set_fields(
        run_id, {record_field(processor.name, instance): _plan.encode(state)}
    )
    failed = state.error is not None
    if instance is not None:
        if not await _finishes_processor(ctx, processor, failed, state.round):
            return
        final = msgspec.structs.replace(state, attempt=0, heartbeat=0.0)
        await store.set_fields(
            run_id, {record_field(processor.name): _plan.encode(final)}
        )
    error = encode_failure(state.error) if state.error is not None else None
    problems: list[StoreError] = []
    for stream in (*processor.outputs, done_stream(processor.name)):
        try:
            await store.end_stream(run_id, stream, error)
        except StoreError as exc:
            problems.append(exc)
    if problems:
        raise problems[0]
    if not cancelled:
        await dispatch_ready(ctx, processor.outputs)
    if ctx.takeover and state.status == "done":
        await _free_inputs(ctx, processor)


async def _free_inputs(ctx: RunContext, processor: Processor) -> None:
    """Trim the inputs of a finished processor that no reader needs any more.

    A run whose jobs may be taken over keeps each stream whole while it is read
    (a taken-over reader starts again from its first value); once every reader
    is done, no re-run needs it, so its values go.
    """
    if KEEP_ALL_FIELD in await ctx.store.get_fields(ctx.run_id, [KEEP_ALL_FIELD]):
        return
    for stream in processor.inputs:
        if stream in ctx.plan.outputs:
            continue
        readers = [p.name for p in ctx.plan.consumers_of(stream)]
        states = await ctx.job_records([], also=readers)
        if all(states[name].status == "done" for name in readers):
            length = (await ctx.store.state(ctx.run_id, stream)).length
            await ctx.store.trim(ctx.run_id, stream, length)


async def record_end_patiently(
    ctx: RunContext,
    processor: Processor,
    instance: int | None,
    state: JobRecord,
    *,
    cancelled: bool = False,
) -> None:
    """``record_end``, retried while the store is unreachable (up to a lease).

    A processor that cannot record its end leaves its readers waiting for its
    lease to expire, so a short outage of the store is worth waiting out.
    """
    delay = 0.05
    with anyio.move_on_after(ctx.settings.lease):
        while True:
            try:
                await record_end(ctx, processor, instance, state, cancelled=cancelled)
            except StoreConnectionError:
                await anyio.sleep(delay)
                delay = min(delay * 2, 2.0)
            else:
                return
    logger.error(
        "could not record the end of processor %r of run %s: the store stayed "
        "unreachable; its lease will expire instead",
        processor.name,
        ctx.run_id,
    )


async def _finishes_processor(
    ctx: RunContext, processor: Processor, failed: bool, round_: int
) -> bool:
    """Tell whether this instance records the end of the whole processor.

    The first instance to fail does, or else the last one to finish; each
    instance records its own state before asking, so the last one always sees
    the others finished, and the claim keeps two finishers from both winning.
    """
    if not failed:
        fields = [record_field(processor.name, i) for i in range(processor.instances)]
        states = await ctx.store.get_fields(ctx.run_id, fields)
        if len(states) < len(fields) or not all(
            _plan.decode_job_record(data).finished for data in states.values()
        ):
            return False
    return await ctx.store.claim(ctx.run_id, finish_claim(processor.name, round_))


def _lapse(ctx: RunContext, state: JobRecord, now: float) -> tuple[Failure, int] | None:
    """Return why a job's lease or dispatch has lapsed, or None while it has not.

    A lapsed lease that this process will take over comes back as a failure of
    type ``Takeover`` (recorded in the job's history, not as its end). The
    number is the window of the lapse (see ``expire_claim``).
    """
    settings = ctx.settings
    if state.live:
        silent = now - state.heartbeat
        if silent <= settings.lease:
            return None
        if ctx.can_take_over:
            kind = "Takeover"
        elif ctx.takeover and silent <= 2 * settings.lease:
            return None  # leave a peer that can take it over the time to do so
        else:
            kind = "ProcessorLost"
        failure = Failure(
            processor="",
            error_type=kind,
            message=(
                f"no heartbeat for {silent:.1f}s (lease {settings.lease:g}s): the "
                "process running it was lost"
            ),
        )
        return failure, int(silent // settings.lease)
    if state.status == "pending" and state.dispatched is not None:
        waited = now - state.dispatched
        if waited <= settings.dispatch_timeout:
            return None
        failure = Failure(
            processor="",
            error_type="DispatchTimeout",
            message=(
                f"not started {waited:.1f}s after it was dispatched to "
                f"{state.where or 'the executor'} (dispatch_timeout "
                f"{settings.dispatch_timeout:g}s): is a service that implements it "
                "running and serving that queue?"
            ),
        )
        return failure, int(waited // settings.dispatch_timeout)
    return None


async def settle(ctx: RunContext, states: Mapping[str, JobRecord]) -> bool:
    """Act on every job of ``states`` (by job) whose lease or dispatch has lapsed.

    Returns:
        True if anything was recorded or dispatched (states are then stale).
    """
    now, acted = time.time(), False
    for job, state in states.items():
        lapsed = _lapse(ctx, state, now)
        if lapsed is None:
            continue
        lapse, window = lapsed
        if not await ctx.store.claim(
            ctx.run_id, expire_claim(job, state.epoch, window)
        ):
            continue
        processor, instance = ctx.plan.jobs[job]
        lapse = msgspec.structs.replace(lapse, processor=processor.name)
        history = (*state.history, lapse)[-HISTORY:]
        acted = True
        if lapse.error_type == "Takeover":
            if state.epoch >= ctx.settings.takeovers:
                lapse = msgspec.structs.replace(
                    lapse,
                    error_type="ProcessorLost",
                    message=f"{lapse.message}; taken over {state.epoch} times, "
                    "the most allowed (Settings.takeovers)",
                )
            else:
                await take_over(ctx, job, state, history)
                continue
        logger.warning(
            "processor %r of run %s: %s", processor.name, ctx.run_id, lapse.message
        )
        ended = msgspec.structs.replace(
            state, status="failed", ended=now, error=lapse, history=history
        )
        await record_end(ctx, processor, instance, ended)
    return acted


async def take_over(
    ctx: RunContext,
    job: str,
    state: JobRecord,
    history: tuple[Failure, ...] = (),
) -> None:
    """Dispatch ``job`` again under the next epoch (the caller holds the claim)."""
    successor = msgspec.structs.replace(
        dispatched_record(ctx, job, state), epoch=state.epoch + 1, history=history
    )
    await ctx.store.set_fields(ctx.run_id, {ctx.field_of(job): _plan.encode(successor)})
    logger.info(
        "taking over job %r of run %s (epoch %d)", job, ctx.run_id, successor.epoch
    )
    await ctx.executor.dispatch(ctx.run_id, job)
