"""Run handles: a started flow's outputs, state and control, from any process."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Literal

import anyio

from . import _plan
from ._errors import Failure, encode_failure
from ._streams import CANCELLED_FIELD, dispatch_claim, done_stream, state_field
from .exceptions import RunCancelledError, RunFailedError, UpstreamError
from .io import IO

if TYPE_CHECKING:
    from ._context import RunContext
    from ._plan import Plan, ProcessorState

__all__ = ("Run", "RunStatus")

#: The state of a whole run.
RunStatus = Literal["pending", "running", "succeeded", "failed", "cancelled"]


class Run(Mapping[str, IO[Any]]):
    """A started run: a mapping of its output streams, plus its state and control.

    ``run["name"]`` is a read handle (``IO``) on an output stream. Get a handle on
    an existing run with ``Supervisor.get_run(run_id)``, from any process attached
    to the same store.
    """

    __slots__ = ("_ctx", "_outputs")

    def __init__(self, ctx: RunContext, outputs: tuple[str, ...]) -> None:
        self._ctx = ctx
        self._outputs = outputs

    def __repr__(self) -> str:
        return f"<Run {self.id} outputs={list(self._outputs)}>"

    @property
    def id(self) -> str:
        """The run's id, unique in its store."""
        return self._ctx.run_id

    @property
    def plan(self) -> Plan:
        """The resolved flow this run executes."""
        return self._ctx.plan

    def __getitem__(self, name: str) -> IO[Any]:
        if name not in self._outputs:
            msg = (
                f"{name!r} is not an output of run {self.id}; outputs: "
                f"{list(self._outputs)} (start with all_outputs=True to read every "
                "stream)"
            )
            raise KeyError(msg)
        return IO(self._ctx, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._outputs)

    def __len__(self) -> int:
        return len(self._outputs)

    async def states(self) -> dict[str, ProcessorState]:
        """Return the recorded state of each processor."""
        names = [p.name for p in self.plan.processors]
        fields = await self._ctx.store.get_fields(
            self.id, [state_field(n) for n in names]
        )
        return {
            n: _plan.decode_state(fields[state_field(n)])
            if state_field(n) in fields
            else _plan.ProcessorState()
            for n in names
        }

    async def status(self) -> RunStatus:
        """Return where the run stands as a whole."""
        if await self._is_cancelled():
            return "cancelled"
        states = list((await self.states()).values())
        if any(s.status == "failed" for s in states):
            return "failed"
        if all(s.status == "done" for s in states):
            return "succeeded"
        if all(s.status == "pending" for s in states):
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
