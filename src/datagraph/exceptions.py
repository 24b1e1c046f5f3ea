"""Datagraph's exception hierarchy.

```
DatagraphError
├── FlowError                   the flow is not valid (also ValueError)
│   ├── CycleError              .cycle: the processors of the loop, in order
│   ├── DuplicateProducerError  .stream, .producers
│   ├── DuplicateProcessorError .name
│   ├── DeclarationError        a processor or flow is declared with values
│   │                           that cannot work (also TypeError)
│   ├── UnknownStreamError      a processor reads a stream no processor writes,
│   │                           and one written has a near name; .processor,
│   │                           .stream, .suggestion
│   └── UnresolvedFlowError     the flow was started before resolve()
├── RegistrationError           an implementation does not fit its declaration
│                               (also TypeError)
├── InputError                  start_flow() inputs do not fit the flow (also
│   │                           ValueError and TypeError)
│   ├── MissingInputError       a flow input is not given
│   └── UnknownInputError       a value names a stream that is not an input
├── ConfigurationError          a setting is unknown or its value unusable (also
│                               ValueError and TypeError)
├── NotAttachedError            Supervisor.instance before Supervisor.attach()
│                               (also RuntimeError)
├── StreamNotFoundError         run[name] of a stream the run does not hand
│                               back (also KeyError); .stream
├── OutputError                 a processor yielded to an undeclared output
├── SerializationError          a value cannot be encoded, or an entry decoded
│   │                           (also TypeError)
│   └── UndecodableEntryError   stored bytes are not an entry of the serializer
├── SignatureError              a stored entry failed its signature check
├── UpstreamError               a stream ended because its producer failed
├── EmptyStreamError            first() on a stream that ended empty (also LookupError)
├── RunFailedError              wait() on a run where processors failed
│   └── RunCancelledError       wait() on a run that was cancelled
├── RunNotFoundError            no run with this id in the store (also KeyError)
├── StoreError
│   ├── StoreConnectionError    the store cannot be reached (within store_timeout)
│   ├── StorePermissionError    the server's ACL denies the store's user a command
│   │                           or key; .user, .command, .key_pattern
│   ├── StoreConfigError        the store's settings are unusable, e.g. an
│   │                           unreadable CA file (also ValueError)
│   ├── StreamClosedError       write to a stream that has already ended
│   ├── CorruptRunError         a run's record does not decode; .run_id
│   ├── CorruptDataError        a stored entry is malformed or foreign; .run_id,
│   │                           .stream
│   └── ValueTooLargeError      a value (batch) exceeds max_value_size (also
│                               ValueError); .run_id, .stream, .size, .limit
└── ExecutorError
    └── ProcessorNotFoundError  no implementation registered for a processor
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence


class DatagraphError(Exception):
    """Base class of every error raised by Datagraph."""


class FlowError(DatagraphError, ValueError):
    """The processors of a flow do not form a valid graph."""


class CycleError(FlowError):
    """The processors of a flow feed each other in a loop."""

    def __init__(self, cycle: Sequence[tuple[str, str]]) -> None:
        #: ``(processor, stream)`` pairs: each processor writes the stream that the
        #: next one reads; the last one feeds the first.
        self.cycle = tuple(cycle)
        path = " -> ".join(f"{proc} --[{stream}]" for proc, stream in self.cycle)
        super().__init__(f"the flow has a cycle: {path} -> {self.cycle[0][0]}")


class DuplicateProducerError(FlowError):
    """Two processors of a flow write the same stream."""

    def __init__(self, stream: str, producers: Sequence[str]) -> None:
        self.stream = stream
        self.producers = tuple(producers)
        names = ", ".join(repr(p) for p in self.producers)
        super().__init__(
            f"stream {stream!r} is written by more than one processor: {names}; "
            "every stream has exactly one producer"
        )


class DuplicateProcessorError(FlowError):
    """Two different processors of a flow share a name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"two different processors are named {name!r}; names identify "
            "processors across services, so they must be unique in a flow"
        )


class UnresolvedFlowError(FlowError):
    """A flow was started before ``Flow.resolve()`` validated it."""


class RegistrationError(DatagraphError, TypeError):
    """An implementation's signature does not fit its processor's declaration."""


class DeclarationError(FlowError, TypeError):
    """A processor or a flow is declared with values that cannot work.

    For example an empty name, a stream read and written by one processor, or a
    string where a list of stream names belongs. It is a ``ValueError`` and a
    ``TypeError``: the two builtins raised for these mistakes before.
    """


class UnknownStreamError(FlowError):
    """A processor reads a stream that no processor writes, probably misspelled.

    A stream no processor writes is a flow input, given when a run starts; one
    whose name is close to a stream a processor does write is most likely a typo.
    Declare it as an input (``Flow(..., inputs=[name])``) when it is one.
    """

    def __init__(self, *, processor: str, stream: str, suggestion: str) -> None:
        #: The processor reading the stream.
        self.processor = processor
        #: The stream no processor writes.
        self.stream = stream
        #: The stream written by a processor whose name is close.
        self.suggestion = suggestion
        super().__init__(
            f"processor {processor!r} reads {stream!r}, which no processor writes: "
            f"did you mean {suggestion!r}? (if {stream!r} is an input of the flow, "
            f"declare it: Flow(..., inputs=[{stream!r}]))"
        )


class InputError(DatagraphError, ValueError, TypeError):
    """The values given to ``start_flow()`` do not fit the flow's inputs."""


class MissingInputError(InputError):
    """``start_flow()`` was not given a value stream for every flow input."""


class UnknownInputError(InputError):
    """``start_flow()`` was given a value for a stream that is not a flow input."""


class ConfigurationError(DatagraphError, ValueError, TypeError):
    """A setting is unknown, or its value cannot work.

    A ``ValueError`` and a ``TypeError``, the builtins raised for these before.
    """


class NotAttachedError(DatagraphError, RuntimeError):
    """``Supervisor.instance`` was used before ``Supervisor.attach()``."""


class StreamNotFoundError(DatagraphError, KeyError):
    """A run was asked for a stream it does not hand back."""

    def __init__(self, message: str, *, stream: str) -> None:
        super().__init__(message)
        #: The stream asked for.
        self.stream = stream

    def __str__(self) -> str:  # a KeyError would show its message quoted
        return str(self.args[0])


class OutputError(DatagraphError):
    """A processor yielded a value that names no declared output."""


class SerializationError(DatagraphError, TypeError):
    """A value cannot be encoded by the configured serializer, or an entry decoded.

    Values nested too deeply or referring to themselves are among those that
    cannot be encoded.
    """

    def __init__(self, message: str, *, index: int = 0, value: object = None) -> None:
        super().__init__(message)
        #: Position of the offending value in the batch being encoded.
        self.index = index
        #: The value that could not be encoded.
        self.value = value


class UndecodableEntryError(SerializationError):
    """Stored bytes are not an entry the serializer wrote: malformed or foreign.

    (A value that decodes but does not fit the reader's type is a plain
    ``SerializationError``.)
    """


class SignatureError(DatagraphError):
    """A stored entry failed its signature check: it was altered or forged."""


class UpstreamError(DatagraphError):
    """A stream ended with a failure because the processor producing it failed.

    Raised to every reader of the stream, in any process.
    """

    def __init__(
        self,
        *,
        processor: str,
        error_type: str,
        message: str,
        traceback: str = "",
        stream: str | None = None,
        location: str | None = None,
    ) -> None:
        self.processor = processor
        self.error_type = error_type
        self.message = message
        #: The formatted traceback of the original exception, from the process
        #: where it was raised.
        self.traceback = traceback
        self.stream = stream
        #: Where the user's code raised it, ``path/to/file.py:12 in func``: the
        #: innermost frame of the traceback outside Datagraph, the standard
        #: library and installed packages; None when the traceback has no frame.
        self.location = location
        where = f" (reading stream {stream!r})" if stream else ""
        at = f" (at {location})" if location else ""
        super().__init__(
            f"processor {processor!r} failed{where}: {error_type}: {message}{at}"
        )


class RunFailedError(DatagraphError):
    """A run finished with failed processors."""

    def __init__(self, run_id: str, errors: dict[str, UpstreamError]) -> None:
        self.run_id = run_id
        #: The failure of each failed processor, by processor name.
        self.errors = dict(errors)
        lines = "\n".join(
            f"  - {name}: {err.error_type}: {err.message}"
            for name, err in sorted(self.errors.items())
        )
        super().__init__(
            f"run {run_id} failed; {len(self.errors)} processor(s) failed:\n{lines}"
        )


class RunNotFoundError(DatagraphError, KeyError):
    """No run with this id exists in the store (never started, or expired)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class StoreError(DatagraphError):
    """The store failed to carry out an operation."""


class StoreConnectionError(StoreError):
    """The store cannot be reached."""


class CorruptRunError(StoreError):
    """A run's record in the store (its plan or a processor's state) does not decode.

    The run cannot be shown or continued; it can still be listed (with the status
    ``"corrupt"``) and deleted.
    """

    def __init__(self, run_id: str, what: str, reason: str) -> None:
        #: The run whose record is corrupt.
        self.run_id = run_id
        #: Which part of the record: ``"plan"``, a processor's state...
        self.what = what
        #: Why it does not decode.
        self.reason = reason
        super().__init__(
            f"run {run_id} is corrupt: its {what} does not decode ({reason}); "
            f"delete it with Supervisor.delete_run or datagraph runs purge {run_id}"
        )


class StreamClosedError(StoreError):
    """A value was written to a stream that has already ended."""


class CorruptDataError(StoreError):
    """A stored entry does not hold what Datagraph wrote: malformed or foreign.

    Raised instead of a decoder's own error, and instead of silently returning
    fewer values than the entry claims to hold.
    """

    def __init__(self, message: str, *, run_id: str, stream: str | None) -> None:
        super().__init__(message)
        self.run_id = run_id
        #: The stream holding the entry; None for a run's metadata.
        self.stream = stream


class ValueTooLargeError(StoreError, ValueError):
    """An encoded value is larger than the ``max_value_size`` setting allows.

    Raised before anything is sent to the server, which would refuse it (Redis
    takes at most 512 MB in one argument) or stall every other command meanwhile.
    """

    def __init__(
        self,
        message: str,
        *,
        run_id: str,
        stream: str,
        size: int,
        limit: int,
        processor: str | None = None,
    ) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.stream = stream
        #: Encoded size in bytes, and the limit it exceeds.
        self.size = size
        self.limit = limit
        #: The processor that wrote it, when known.
        self.processor = processor


class ExecutorError(DatagraphError):
    """The executor could not dispatch a processor."""


class ProcessorNotFoundError(ExecutorError, LookupError):
    """No implementation of a processor is registered in this process."""


class EmptyStreamError(DatagraphError, LookupError):
    """``IO.first()`` found the stream ended without a single value."""


class RunCancelledError(RunFailedError):
    """``wait()`` on a run that was cancelled."""


class StorePermissionError(StoreError):
    """The server's ACL denies the store's user a command or a key it needs."""

    def __init__(
        self, message: str, *, user: str, command: str | None, key_pattern: str
    ) -> None:
        super().__init__(message)
        #: The ACL user the store logs in as (``"default"`` without a user name).
        self.user = user
        #: The command refused, when the server named it.
        self.command = command
        #: The key pattern the user needs (``~<prefix>:*``).
        self.key_pattern = key_pattern


class StoreConfigError(StoreError, ValueError):
    """The store's settings cannot work, e.g. its TLS CA file cannot be read."""
