"""The supervisor: one process's view of Datagraph, and where runs start."""

from __future__ import annotations

import contextlib
import functools
import time
import uuid
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, ClassVar, Self

from fast_depends import Provider
from fast_depends.core import CallModel, build_call_model

from . import _plan, _telemetry
from ._context import RunContext
from ._jobs import dispatch, dispatch_ready, dispatched_record, jobs_of
from ._runtime import JobRunner
from ._streams import (
    CREATED_FIELD,
    KEEP_ALL_FIELD,
    PLAN_FIELD,
    TAKEOVER_FIELD,
    dispatch_claim,
    record_field,
)
from .exceptions import (
    CorruptRunError,
    InputError,
    MissingInputError,
    NotAttachedError,
    ProcessorNotFoundError,
    RunNotFoundError,
    SerializationError,
    StoreConnectionError,
    StoreError,
    UnknownInputError,
)
from .executors import Executor, LocalExecutor
from .flow import near_name
from .io import IOVal
from .run import CorruptRun, Run
from .serializers import (
    EntryContext,
    MsgpackSerializer,
    PickleSerializer,
    Serializer,
)
from .settings import Settings
from .stores import Store, open_store

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    from .flow import Flow
    from .processor import Implementation

__all__ = ("Supervisor",)

_CACHED_PLANS = 256
#: The plan of a run whose own plan cannot be read: nothing to run or show.
_UNKNOWN_PLAN = _plan.Plan(processors=(), inputs=(), outputs=())


class _AttachedInstance:
    """``Supervisor.instance``: the attached supervisor, or a clear error."""

    def __get__(self, obj: object, owner: type[Supervisor]) -> Supervisor:
        if owner._attached is None:
            msg = (
                "no Supervisor is attached to this process; call "
                "Supervisor.attach(...) first (or use a Supervisor object directly)"
            )
            raise NotAttachedError(msg)
        return owner._attached


class Supervisor:
    """This process's store, executor, serializer and settings; starts runs.

    ``Supervisor.attach(...)`` creates one and makes it ``Supervisor.instance`` for
    the process, as the seed API expects; tests and libraries can instead create
    and pass ``Supervisor`` objects, which never touch the global.

    Args:
        store: where runs live. Default: a ``RedisStore`` when a Redis URL is
            configured, else a new ``MemoryStore``.
        executor: where processors run. Default: ``LocalExecutor()``.
        serializer: how values are encoded. Default: ``MsgpackSerializer()``, or
            a ``PickleSerializer`` when ``pickle_secret`` is set.
        settings: defaults to ``Settings.from_env(**overrides)``.
        redis_config: ``{"url": ...}`` (plus ``prefix``, ``retention``...), the
            seed's way to name the Redis server.
        **overrides: individual settings, e.g. ``batch_size=512``.
    """

    instance: ClassVar[_AttachedInstance] = _AttachedInstance()
    _attached: ClassVar[Supervisor | None] = None

    def __init__(
        self,
        *,
        store: Store | None = None,
        executor: Executor | None = None,
        serializer: Serializer | None = None,
        settings: Settings | None = None,
        redis_config: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> None:
        if redis_config is not None:
            config = dict(redis_config)
            overrides.setdefault("redis_url", config.pop("url", None))
            for key, value in config.items():
                overrides.setdefault(key, value)
        self.settings = settings or Settings.from_env(**overrides)
        self.store = store or self._open_store()
        if serializer is None:
            secret = self.settings.pickle_secret
            serializer = PickleSerializer(secret) if secret else MsgpackSerializer()
        self.serializer = serializer
        self.executor = executor or LocalExecutor()
        self.executor.bind(self)
        _telemetry.prepare()
        #: Replacements of dependencies, as in ``dependency_provider.override()``.
        self.dependency_provider = Provider()
        self._models: dict[int, tuple[Implementation, CallModel]] = {}
        # Each run's plan, and whether it may be taken over, as loaded once.
        self._plans: OrderedDict[str, tuple[_plan.Plan, bool]] = OrderedDict()

    def _open_store(self) -> Store:
        s = self.settings
        if s.redis_url:
            return open_store(s.redis_url, **s.store_options())
        return open_store(None, retention=s.retention, max_value_size=s.max_value_size)

    def __repr__(self) -> str:
        return f"Supervisor(store={self.store!r}, executor={self.executor!r})"

    @classmethod
    def attach(
        cls,
        redis_config: Mapping[str, Any] | None = None,
        executor: Executor | None = None,
        **options: Any,
    ) -> Supervisor:
        """Create a supervisor and make it ``Supervisor.instance`` for this process.

        Takes the same arguments as ``Supervisor(...)``. Attaching again replaces
        the previous instance (whose store is not closed: close it yourself).
        """
        supervisor = cls(redis_config=redis_config, executor=executor, **options)
        Supervisor._attached = supervisor
        return supervisor

    @classmethod
    def detach(cls) -> None:
        """Forget the attached instance."""
        Supervisor._attached = None

    async def aclose(self) -> None:
        """Close the store's connections."""
        await self.store.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @contextlib.contextmanager
    def override(
        self, dependency: Callable[..., Any], replacement: Callable[..., Any]
    ) -> Iterator[None]:
        """Replace a dependency within a ``with`` block (for tests).

        The previous provider of the dependency is back when the block ends, even
        when it raises.
        """
        overrides = self.dependency_provider.overrides  # keyed by the dependency
        previous = overrides.get(dependency)
        self.dependency_provider.override(dependency, replacement)
        try:
            yield
        finally:
            if previous is None:
                overrides.pop(dependency, None)
            else:
                overrides[dependency] = previous

    def _call_model(self, impl: Implementation) -> CallModel:
        """Return how to resolve ``impl``'s dependencies (built once per function)."""
        cached = self._models.get(id(impl))
        if cached is None or cached[0] is not impl:
            call = impl.func
            if impl.kind == "async_gen":
                # fast-depends calls what is not a coroutine function in a
                # worker thread: a thread hop (and in a fresh process, a new
                # thread) only to create the generator, every attempt.
                call = _opened_on_the_loop(call)
            model = build_call_model(
                call=call,
                dependency_provider=self.dependency_provider,
                serializer_cls=None,  # values are not cast: IO handles pass as is
                serialize_result=False,
            )
            cached = self._models[id(impl)] = (impl, model)
        return cached[1]

    async def _context(self, run_id: str) -> RunContext:
        """Return the context of an existing run, its plan loaded (once).

        Raises:
            RunNotFoundError: the store holds no such run (any more).
        """
        cached = self._plans.get(run_id)
        if cached is None:
            fields = await self.store.get_fields(run_id, [PLAN_FIELD, TAKEOVER_FIELD])
            if PLAN_FIELD not in fields:
                msg = f"no run {run_id!r} in {self.store!r} (never started, or expired)"
                raise RunNotFoundError(msg)
            try:
                plan = _plan.decode_plan(fields[PLAN_FIELD])
            except Exception as exc:  # whatever the bytes are, the record is bad
                raise CorruptRunError(run_id, "plan", str(exc)) from exc
            cached = plan, TAKEOVER_FIELD in fields
            self._remember_plan(run_id, *cached)
        return self._new_context(run_id, *cached)

    def _new_context(self, run_id: str, plan: _plan.Plan, takeover: bool) -> RunContext:
        return RunContext(
            run_id,
            plan,
            self.store,
            self.serializer,
            self.settings,
            self.executor,
            takeover,
        )

    def _remember_plan(self, run_id: str, plan: _plan.Plan, takeover: bool) -> None:
        """Cache a run's plan, forgetting the oldest past ``_CACHED_PLANS``."""
        self._plans[run_id] = plan, takeover
        if len(self._plans) > _CACHED_PLANS:
            self._plans.popitem(last=False)

    async def start_flow(
        self,
        flow: Flow,
        inputs: Iterable[IOVal[Any]] = (),
        *,
        all_outputs: bool = False,
    ) -> Run:
        """Start a run of a resolved flow and return its handle.

        Every processor that does not wait starts at once; waiting processors start
        as soon as their own inputs are complete. The handle maps the flow's
        outputs (every stream with ``all_outputs=True``) to read handles.

        Args:
            flow: a resolved flow.
            inputs: the values of the flow's inputs as ``IOVal``s, in order; each
                input stream needs at least one.
            all_outputs: hand back every stream, not just the flow's outputs.

        Raises:
            UnresolvedFlowError: ``flow.resolve()`` was not called.
            MissingInputError: a flow input has no value.
            UnknownInputError: a value names a stream that is not a flow input.
            InputError: an input is not given as an ``IOVal``.
            SerializationError: an input value cannot be encoded (nothing is
                written then).
            ProcessorNotFoundError: the executor cannot run a processor.
        """
        plan = flow.plan
        by_stream = self._group_inputs(plan, inputs)
        self.executor.check(plan)
        run_id = uuid.uuid4().hex  # before encoding: signed entries are bound to it
        encoded = {
            name: self._encode_input(run_id, name, values)
            for name, values in by_stream.items()
        }

        takeover = self.executor.takes_over
        self._remember_plan(run_id, plan, takeover)
        ctx = self._new_context(run_id, plan, takeover)
        # Streaming processors are recorded as dispatched from the start, so a
        # job no worker picks up shows where it waits, and fails in time.
        pending = _plan.JobRecord()
        states = {record_field(p.name): _plan.encode(pending) for p in plan.processors}
        streaming = [job for p in plan.processors if not p.wait for job in jobs_of(p)]
        states.update(
            (ctx.field_of(job), _plan.encode(dispatched_record(ctx, job)))
            for job in streaming
        )
        await self.store.set_fields(
            run_id,
            {
                PLAN_FIELD: _plan.encode(plan),
                CREATED_FIELD: str(time.time()).encode(),
                **({KEEP_ALL_FIELD: b"1"} if all_outputs else {}),
                **({TAKEOVER_FIELD: b"1"} if takeover else {}),
                **states,
            },
        )
        for name, (count, data) in encoded.items():
            await self.store.append(run_id, name, 0, count, data)
            await self.store.end_stream(run_id, name)
        for job in streaming:
            await self.executor.dispatch(run_id, job)
        for proc in plan.processors:
            # A waiting processor with no input is ready now; it is claimed like
            # any waiting one (``Run.cancel`` relies on that claim).
            ready = proc.wait and not proc.inputs
            if ready and await self.store.claim(run_id, dispatch_claim(proc.name, 0)):
                await dispatch(ctx, proc)
        await dispatch_ready(ctx, plan.inputs)
        outputs = plan.streams if all_outputs else plan.outputs
        return Run(ctx, outputs)

    @staticmethod
    def _group_inputs(
        plan: _plan.Plan, inputs: Iterable[IOVal[Any]]
    ) -> dict[str, list[Any]]:
        by_stream: dict[str, list[Any]] = {name: [] for name in plan.inputs}
        given: set[str] = set()
        for item in tuple[object, ...](inputs):
            if not isinstance(item, IOVal):
                msg = (
                    f"flow inputs are given as IOVal(name=..., value=...), got {item!r}"
                )
                raise InputError(msg)
            name: object = item.name  # typed str, but nothing checked it
            if not isinstance(name, str):
                msg = (
                    f"flow inputs are named by str, got IOVal(name={name!r}, ...); "
                    f"the flow's inputs are {list(plan.inputs)}"
                )
                raise UnknownInputError(msg)
            if name not in by_stream:
                near = near_name(name, plan.inputs)
                hint = f"did you mean {near!r}? " if near else ""
                msg = (
                    f"{name!r} is not an input of the flow; {hint}its inputs "
                    f"are {list(plan.inputs)}"
                )
                raise UnknownInputError(msg)
            by_stream[name].append(item.value)
            given.add(name)
        missing = [name for name in plan.inputs if name not in given]
        if missing:
            readers = {
                name: [p.name for p in plan.consumers_of(name)] for name in missing
            }
            detail = "; ".join(
                f"{s!r} (read by {', '.join(r)})" for s, r in readers.items()
            )
            msg = f"the flow needs a value for each of its inputs; missing: {detail}"
            raise MissingInputError(msg)
        return by_stream

    def _encode_input(
        self, run_id: str, name: str, values: list[Any]
    ) -> tuple[int, bytes]:
        context = EntryContext(run_id, name, 0, len(values))
        try:
            return len(values), self.serializer.encode(values, context)
        except SerializationError as exc:
            msg = f"flow input {name!r}: {exc}"
            raise SerializationError(msg, index=exc.index, value=exc.value) from exc

    async def get_run(self, run_id: str) -> Run:
        """Return a handle on an existing run, started by any process.

        Raises:
            RunNotFoundError: the store holds no such run.
            CorruptRunError: the run's plan in the store does not decode.
        """
        ctx = await self._context(run_id)
        await ctx.job_records([])  # still there, although its plan was cached?
        return Run(ctx, ctx.plan.outputs)

    async def list_runs(self) -> list[Run]:
        """Return handles on the runs in the store, oldest first.

        A run whose record cannot be read is listed as a ``CorruptRun`` (status
        ``"corrupt"``), so that it never hides the others and can be deleted.

        Raises:
            StoreConnectionError: the store cannot be reached.
        """
        runs: list[Run] = []
        for run_id in await self.store.list_runs():
            try:
                runs.append(await self.get_run(run_id))
            except RunNotFoundError:
                continue  # expired between the listing and the lookup
            except CorruptRunError as exc:
                runs.append(self._corrupt_run(run_id, exc))
            except StoreConnectionError:
                raise
            except StoreError as exc:  # e.g. its key overwritten with another type
                error = CorruptRunError(run_id, "record", str(exc))
                runs.append(self._corrupt_run(run_id, error))
        return runs

    def _corrupt_run(self, run_id: str, error: CorruptRunError) -> CorruptRun:
        return CorruptRun(self._new_context(run_id, _UNKNOWN_PLAN, False), error)

    async def delete_run(self, run_id: str) -> None:
        """Delete every stream, state and claim of a run from the store.

        Works on corrupt runs too (their record is not decoded).

        Raises:
            RunNotFoundError: the store holds no such run.
        """
        if run_id not in self._plans:
            try:
                found = await self.store.get_fields(run_id, [PLAN_FIELD])
            except StoreConnectionError:
                raise
            except StoreError:
                found = {PLAN_FIELD: b""}  # there, but unreadable: corrupt
            if PLAN_FIELD not in found:
                msg = f"no run {run_id!r} in {self.store!r} (never started, or expired)"
                raise RunNotFoundError(msg)
        await self.store.delete_run(run_id)
        self._plans.pop(run_id, None)

    async def run_processor(self, run_id: str, job: str) -> None:
        """Run a dispatched job of run ``run_id`` here, to the end.

        This is what executors call in the process that picked the job up. ``job``
        is a processor's name, or ``name#i`` for instance ``i`` of a scaled-out
        one. Errors of the processor are recorded in the store (and end its
        streams), not raised.
        """
        ctx = await self._context(run_id)
        if job not in ctx.plan.jobs:
            msg = f"run {run_id} has no job {job!r}; its jobs: {list(ctx.plan.jobs)}"
            raise ProcessorNotFoundError(msg)
        processor, instance = ctx.plan.jobs[job]
        await JobRunner(ctx, processor, self._call_model, instance).run()


def _opened_on_the_loop(func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an async generator function in a coroutine function returning it.

    The wrapper has ``func``'s signature (``functools.wraps``), so its
    dependencies resolve the same.
    """

    @functools.wraps(func)
    async def open_(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return open_
