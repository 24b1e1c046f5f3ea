"""Processor declarations and the implementations registered in this process.

A ``Processor`` is a plain value: a name and the names of the streams it reads and
writes. Services that only start flows import the declarations; the service that runs
a processor also registers an implementation by calling the declaration as a
decorator.
"""

from __future__ import annotations

import dataclasses
import inspect
import random
import types
import typing
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from typing import Annotated, Any, TypeVar

from fast_depends.dependencies import Dependant

from ._streams import is_internal
from .exceptions import (
    DeclarationError,
    ProcessorNotFoundError,
    RegistrationError,
)
from .io import IO, BlockingIO

__all__ = ("Implementation", "Processor", "implementation_of", "processor")

F = TypeVar("F", bound=Callable[..., Any])


def _names(kind: str, owner: str, names: Iterable[str]) -> tuple[str, ...]:
    if isinstance(names, str):
        msg = (
            f"{kind} of processor {owner!r} must be a list of stream names, "
            f"not the string {names!r}; write [{names!r}]"
        )
        raise DeclarationError(msg)
    # A set has no order of its own (it follows each process's hash seed), so
    # sort it: every process must read the same declaration.
    result = tuple(sorted(names) if isinstance(names, AbstractSet) else names)
    for name in tuple[object, ...](result):  # a run-time check of user input
        if not isinstance(name, str) or not name:
            msg = f"{kind} of processor {owner!r} must be non-empty strings: {name!r}"
            raise DeclarationError(msg)
        if is_internal(name):
            msg = (
                f"stream {name!r} of processor {owner!r}: names starting with '!' "
                "are reserved for Datagraph"
            )
            raise DeclarationError(msg)
    if len(set(result)) != len(result):
        msg = f"{kind} of processor {owner!r} name a stream twice: {list(result)}"
        raise DeclarationError(msg)
    return result


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True, init=False)
class Processor:
    """Declare a processor: its name and the streams it reads and writes.

    The declaration is hashable and serializable, and may live in a module shared by
    services that implement none of it. Calling it as a decorator registers this
    process's implementation::

        double = Processor(name="double", inputs=["numbers"], outputs=["doubled"])

        @double
        async def _double(numbers: IO[int]) -> AsyncIterator[int]:
            async for n in numbers.stream():
                yield n * 2

    Args:
        name: unique within a flow, and the name executors dispatch by.
        inputs: streams it reads; each becomes an ``IO[T]`` parameter. (A set of
            names is taken in sorted order.)
        outputs: streams it writes, by yielding or returning ``IOVal(name, value)``
            (or bare values when there is exactly one output).
        wait: start only once every input stream is complete (staged execution)
            instead of streaming from the start.
        retries: how many times to run it again after it raises.
        retry_delay: seconds to wait before the first retry.
        retry_backoff: factor by which each further retry waits longer.
        retry_max_delay: the longest wait between two attempts.
        retry_jitter: a random fraction of the wait added or taken away, so that
            many processors failing together do not retry in lockstep.
        retry_on: the exception types (or their qualified names) worth a retry;
            empty (the default) retries every exception. An ``UpstreamError`` is
            never retried: running again cannot mend an input.
        instances: how many copies run in parallel, sharing the inputs: each
            input value goes to exactly one instance. Output order across
            instances is not kept, and a re-run instance may write a value twice.
    """

    name: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    wait: bool = False
    retries: int = 0
    retry_delay: float = 1.0
    retry_backoff: float = 2.0
    retry_max_delay: float = 60.0
    retry_jitter: float = 0.1
    #: Qualified names of the exception types worth a retry.
    retry_on: tuple[str, ...] = ()
    instances: int = 1

    def __init__(
        self,
        *,
        name: str,
        inputs: Iterable[str] = (),
        outputs: Iterable[str] = (),
        wait: bool = False,
        retries: int = 0,
        retry_delay: float = 1.0,
        retry_backoff: float = 2.0,
        retry_max_delay: float = 60.0,
        retry_jitter: float = 0.1,
        retry_on: Iterable[type[BaseException] | str] = (),
        instances: int = 1,
    ) -> None:
        given = locals()
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, given[field.name])
        self.__post_init__()

    def __post_init__(self) -> None:
        # Also run when a stored plan is decoded: normalizing twice changes nothing.
        name: object = self.name  # a run-time check of user input
        if not isinstance(name, str) or not name.strip():
            msg = f"a processor needs a non-empty name, got {name!r}"
            raise DeclarationError(msg)
        object.__setattr__(self, "inputs", _names("inputs", self.name, self.inputs))
        object.__setattr__(self, "outputs", _names("outputs", self.name, self.outputs))
        both = set(self.inputs) & set(self.outputs)
        if both:
            msg = f"processor {self.name!r} both reads and writes {sorted(both)}"
            raise DeclarationError(msg)
        if self.retries < 0 or self.retry_delay < 0 or self.retry_max_delay < 0:
            msg = (
                f"retries, retry_delay and retry_max_delay of processor "
                f"{self.name!r} must be >= 0"
            )
            raise DeclarationError(msg)
        if self.retry_backoff < 1 or not 0 <= self.retry_jitter <= 1:
            msg = (
                f"processor {self.name!r} needs retry_backoff >= 1 and retry_jitter "
                f"between 0 and 1, got {self.retry_backoff!r} and {self.retry_jitter!r}"
            )
            raise DeclarationError(msg)
        object.__setattr__(self, "retry_on", _exception_names(self.name, self.retry_on))
        if not self.instances >= 1:
            count = self.instances
            msg = f"processor {self.name!r} needs at least 1 instance, not {count}"
            raise DeclarationError(msg)
        if self.instances > 1 and "#" in self.name:
            msg = f"scaled-out processor {self.name!r}: its name cannot contain '#'"
            raise DeclarationError(msg)

    def retries_on(self, exc: BaseException) -> bool:
        """Tell whether the retry policy covers ``exc``."""
        if not self.retry_on:
            return True
        return any(_qualified(cls) in self.retry_on for cls in type(exc).__mro__)

    def retry_wait(self, retry: int) -> float:
        """Return the seconds to wait before retry number ``retry`` (1, 2, ...)."""
        delay = self.retry_delay * self.retry_backoff ** (retry - 1)
        delay = min(delay, self.retry_max_delay)
        return max(0.0, delay * (1 + self.retry_jitter * random.uniform(-1, 1)))

    def __call__(self, func: F) -> F:
        """Register ``func`` as this process's implementation of the processor."""
        _register(Implementation(self, func))
        return func

    @property
    def implementation(self) -> Implementation | None:
        """The implementation registered in this process, if any."""
        impl = _registry.get(self.name)
        return impl if impl is not None and impl.processor == self else None


def processor(
    *,
    inputs: Iterable[str] = (),
    outputs: Iterable[str] = (),
    name: str | None = None,
    **options: Any,
) -> Callable[[Callable[..., Any]], Processor]:
    """Declare and implement a processor in one step, named after the function.

    ``options`` are the other arguments of ``Processor`` (``wait``, ``retries``...).

    Returns:
        A decorator that registers the function and returns the ``Processor``.
    """

    def decorate(func: Callable[..., Any]) -> Processor:
        declaration = Processor(
            name=name or func.__name__, inputs=inputs, outputs=outputs, **options
        )
        declaration(func)
        return declaration

    return decorate


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _exception_names(owner: str, types_: Iterable[object]) -> tuple[str, ...]:
    """Name the exception types of a retry policy, so the declaration serializes."""
    if isinstance(types_, str | type):
        types_ = (types_,)
    names = []
    for item in types_:
        if isinstance(item, type) and issubclass(item, BaseException):
            names.append(_qualified(item))
        elif isinstance(item, str) and item:
            names.append(item if "." in item else f"builtins.{item}")
        else:
            msg = (
                f"retry_on of processor {owner!r} takes exception types or their "
                f"qualified names, got {item!r}"
            )
            raise DeclarationError(msg)
    return tuple(sorted(set(names)))


class Implementation:
    """A function registered for a processor, with its signature checked."""

    __slots__ = ("func", "input_types", "kind", "processor")

    def __init__(self, processor: Processor, func: Callable[..., Any]) -> None:
        target: object = func  # a run-time check of user input
        if not callable(target):
            msg = f"the implementation of processor {processor.name!r} must be callable"
            raise RegistrationError(msg)
        self.processor = processor
        self.func = func
        self.kind = _kind(func)
        #: The ``T`` of each input's ``IO[T]``, which values are decoded into.
        self.input_types = _check_signature(processor, func)

    def __repr__(self) -> str:
        return f"<Implementation of {self.processor.name!r}: {_qualname(self.func)}>"


_registry: dict[str, Implementation] = {}


def _qualname(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", "?")
    return f"{module}.{getattr(func, '__qualname__', repr(func))}"


def _register(impl: Implementation) -> None:
    name = impl.processor.name
    previous = _registry.get(name)
    # Re-running a module (a reload, a notebook cell) registers the "same" function
    # again: let it replace the old one. Two different functions are a mistake.
    if previous is not None and _qualname(previous.func) != _qualname(impl.func):
        msg = (
            f"processor {name!r} already has an implementation in this process: "
            f"{_qualname(previous.func)}; cannot also register {_qualname(impl.func)}"
        )
        raise RegistrationError(msg)
    _registry[name] = impl


def implementation_of(declaration: Processor) -> Implementation:
    """Return this process's implementation of a processor.

    Raises:
        ProcessorNotFoundError: none is registered, or it was registered for a
            different declaration of the same name.
    """
    impl = _registry.get(declaration.name)
    if impl is None:
        msg = (
            f"no implementation of processor {declaration.name!r} is registered in "
            "this process; import the module that decorates it with "
            f"@{declaration.name} (or its Processor object)"
        )
        raise ProcessorNotFoundError(msg)
    if impl.processor != declaration:
        msg = (
            f"the implementation of processor {declaration.name!r} in this process "
            f"was registered for {impl.processor!r}, but the flow declares "
            f"{declaration!r}"
        )
        raise ProcessorNotFoundError(msg)
    return impl


def _kind(func: Callable[..., Any]) -> str:
    target = inspect.unwrap(func)
    if inspect.isasyncgenfunction(target):
        return "async_gen"
    if inspect.iscoroutinefunction(target):
        return "async"
    if inspect.isgeneratorfunction(target):
        return "sync_gen"
    return "sync"


def _is_dependency(param: inspect.Parameter, hint: Any) -> bool:
    if isinstance(param.default, Dependant):
        return True
    if typing.get_origin(hint) is Annotated:
        return any(isinstance(m, Dependant) for m in hint.__metadata__)
    return False


def _check_signature(processor: Processor, func: Callable[..., Any]) -> dict[str, Any]:
    where = f"implementation {_qualname(func)} of processor {processor.name!r}"
    hints = _parameter_hints(func, where)
    input_types: dict[str, Any] = {}
    for param in inspect.signature(func).parameters.values():
        hint = hints.get(param.name, Any)
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            msg = f"{where} takes *{param.name}; declare each parameter by name"
            raise RegistrationError(msg)
        if param.name in processor.inputs:
            if param.kind is param.POSITIONAL_ONLY:
                msg = f"input {param.name!r} of {where} cannot be positional-only"
                raise RegistrationError(msg)
            input_types[param.name] = _io_type(hint, param.name, where)
        elif not _is_dependency(param, hint):
            declared = ", ".join(processor.inputs) or "none"
            msg = (
                f"parameter {param.name!r} of {where} is neither a declared input "
                f"(declared: {declared}) nor injectable (a Depends(...) default or "
                "Annotated[..., Depends(...)])"
            )
            raise RegistrationError(msg)
    missing = [name for name in processor.inputs if name not in input_types]
    if missing:
        msg = f"{where} has no parameter for the declared input(s) {missing}"
        raise RegistrationError(msg)
    return input_types


def _parameter_hints(func: Callable[..., Any], where: str) -> dict[str, Any]:
    """Evaluate the parameters' annotations, leaving the return annotation alone.

    The return annotation often names types imported only for type checkers
    (``if TYPE_CHECKING:``), which do not exist at run time.
    """
    target = inspect.unwrap(func)
    params = {
        name: hint
        for name, hint in inspect.get_annotations(target).items()
        if name != "return"
    }
    holder = types.SimpleNamespace(__annotations__=params)
    try:
        return typing.get_type_hints(
            holder, globalns=getattr(target, "__globals__", {}), include_extras=True
        )
    except Exception as exc:
        msg = f"cannot evaluate the parameter annotations of {where}: {exc}"
        raise RegistrationError(msg) from exc


def _io_type(hint: Any, name: str, where: str) -> Any:
    if hint is Any or hint is IO or hint is BlockingIO:
        return Any
    if typing.get_origin(hint) in (IO, BlockingIO):
        (value_type,) = typing.get_args(hint)
        return value_type
    msg = (
        f"input {name!r} of {where} must be annotated IO[T] or BlockingIO[T]: {hint!r}"
    )
    raise RegistrationError(msg)
