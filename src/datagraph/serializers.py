"""How values are encoded into stream entries.

A serializer turns a batch of values into one ``bytes`` entry and back. The default,
``MsgpackSerializer``, is safe: it encodes plain data, dataclasses, msgspec structs,
pydantic models and the like with msgspec, and decoding never runs code. ``IO[T]``
decodes into ``T``, so a dataclass written by one processor is a dataclass again for
its reader. ``PickleSerializer`` takes any picklable object, and because unpickling
can run arbitrary code it signs every entry with a secret, binds the signature to
where the entry belongs (run, stream, position, count), and refuses entries whose
signature does not match.

Both fail with Datagraph errors, never foreign ones: a value that cannot be encoded
(too deep, self-referencing, of an unsupported type) is a ``SerializationError``
naming it, and bytes that do not decode are a ``SerializationError`` too.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import pickle
import reprlib
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec

from .exceptions import (
    ConfigurationError,
    SerializationError,
    SignatureError,
    UndecodableEntryError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ("EntryContext", "MsgpackSerializer", "PickleSerializer", "Serializer")


@dataclasses.dataclass(frozen=True, slots=True)
class EntryContext:
    """Where a stored entry belongs: what a signing serializer binds it to.

    Datagraph passes one to every ``encode`` and ``decode`` of a stream entry.
    A serializer that does not sign (``MsgpackSerializer``) ignores it.
    """

    #: The run the entry belongs to.
    run_id: str
    #: The stream it is part of.
    stream: str
    #: The position of its first value; None for a stream that several instances
    #: of a scaled-out processor append to, where a batch's position is only
    #: known once the store has appended it.
    start: int | None
    #: How many values it holds.
    count: int

    def describe(self) -> str:
        """Say where the entry is, for error messages."""
        where = f"stream {self.stream!r} of run {self.run_id}"
        if self.start is None:
            return where
        return f"{where} (positions {self.start}..{self.start + self.count - 1})"


@runtime_checkable
class Serializer(Protocol):
    """Encodes batches of values into bytes and back."""

    def encode(
        self, values: Sequence[Any], context: EntryContext | None = None
    ) -> bytes:
        """Encode a batch of values.

        Args:
            values: the batch.
            context: where the entry will be stored (a signing serializer binds
                its signature to it); None outside a run.

        Raises:
            SerializationError: a value cannot be encoded; ``.index`` is its position
                in ``values``.
        """
        ...

    def decode(
        self, data: bytes, type_: Any = Any, context: EntryContext | None = None
    ) -> list[Any]:
        """Decode a batch, converting each value to ``type_`` where that applies.

        Args:
            data: what ``encode`` returned.
            type_: the type each value is converted to.
            context: where the entry was read from; it must be where it was
                written for a signing serializer to accept it.

        Raises:
            SignatureError: the entry was not written with this serializer's secret
                for this place.
            UndecodableEntryError: ``data`` is not an entry of this serializer.
            SerializationError: a value does not fit ``type_``.
        """
        ...


#: Bounded ``repr`` for error messages: safe on deep and self-referencing values.
_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxstring, _repr.maxother = 4, 80, 80


def _describe(value: Any) -> str:
    try:
        return _repr.repr(value)
    except Exception:  # a user __repr__ that raises
        return f"<{type(value).__qualname__} object>"


def _is_pydantic_model(cls: Any) -> bool:
    return isinstance(cls, type) and hasattr(cls, "model_validate")


def _enc_hook(value: Any) -> Any:
    if hasattr(value, "model_dump") and hasattr(type(value), "model_validate"):
        return value.model_dump(mode="python")  # a pydantic model
    msg = f"objects of type {type(value).__qualname__} are not supported"
    raise NotImplementedError(msg)


def _dec_hook(type_: Any, obj: Any) -> Any:
    if _is_pydantic_model(type_):
        return type_.model_validate(obj)
    msg = f"cannot decode into {type_!r}"
    raise NotImplementedError(msg)


def _reason(exc: BaseException) -> str:
    """Say why a value could not be encoded, in words a user acts on."""
    if isinstance(exc, RecursionError):
        return (
            "it is nested too deeply or refers to itself (a recursive structure); "
            "flatten it, or break the cycle"
        )
    return str(exc) or type(exc).__name__


def _unencodable(
    values: Sequence[Any], encode: Callable[[Any], object], exc: BaseException
) -> SerializationError:
    """Build the error for the first value of ``values`` that ``encode`` rejects."""
    for index, value in enumerate(values):
        try:
            encode(value)
        except Exception as value_exc:  # RecursionError included
            msg = f"cannot encode {_describe(value)}: {_reason(value_exc)}"
            return SerializationError(msg, index=index, value=value)
    return SerializationError(f"cannot encode the batch: {_reason(exc)}")


def _undecodable(what: str, exc: BaseException) -> UndecodableEntryError:
    if isinstance(exc, RecursionError):
        why = "its values are nested too deeply to decode"
    else:  # the decoder's own words, and what it called the problem
        why = f"{type(exc).__name__}: {exc}"
    return UndecodableEntryError(f"{what} ({why})")


class MsgpackSerializer:
    """Encode values as MessagePack with msgspec (the default, and safe).

    Supports what msgspec supports (None, bool, int, float, str, bytes, lists,
    tuples, dicts, sets, datetimes, UUIDs, decimals, enums, dataclasses, attrs
    classes, msgspec structs...) plus pydantic models. Entries are not signed,
    so the ``context`` of ``encode`` and ``decode`` is ignored.
    """

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)

    def __repr__(self) -> str:
        return "MsgpackSerializer()"

    def encode(
        self, values: Sequence[Any], context: EntryContext | None = None
    ) -> bytes:
        """Encode a batch of values as one MessagePack array."""
        try:
            return self._encoder.encode(values)
        except (
            TypeError,
            NotImplementedError,
            OverflowError,
            ValueError,
            RecursionError,
        ) as exc:
            raise _unencodable(values, self._encoder.encode, exc) from exc

    def decode(
        self, data: bytes, type_: Any = Any, context: EntryContext | None = None
    ) -> list[Any]:
        """Decode a batch into a list of ``type_``."""
        what = "the entry is not a MessagePack batch"
        try:
            return _decoder(type_).decode(data)
        except msgspec.ValidationError as exc:
            try:  # only on this error path: is it a batch at all?
                _decoder(Any).decode(data)
            except (msgspec.DecodeError, RecursionError) as not_a_batch:
                raise _undecodable(what, not_a_batch) from exc
            msg = f"a value does not fit the type {_type_name(type_)}: {exc}"
            raise SerializationError(msg) from exc
        except (msgspec.DecodeError, RecursionError) as exc:
            raise _undecodable(what, exc) from exc


def _type_name(type_: Any) -> str:
    return getattr(type_, "__qualname__", None) or repr(type_)


@functools.lru_cache(maxsize=256)
def _decoder(type_: Any) -> msgspec.msgpack.Decoder[list[Any]]:
    return msgspec.msgpack.Decoder(list[type_], dec_hook=_dec_hook)


# Signed together with each pickled payload: where the entry belongs. MessagePack
# keeps the fields apart however they are spelled (no separator to forge).
_context_encoder = msgspec.msgpack.Encoder()
_UNBOUND = b"datagraph-entry-v1"


def _bound_to(context: EntryContext | None) -> bytes:
    if context is None:
        return _context_encoder.encode((_UNBOUND,))
    return _context_encoder.encode(
        (_UNBOUND, context.run_id, context.stream, context.start, context.count)
    )


class PickleSerializer:
    """Pickle values, signing each entry with HMAC-SHA256 over a shared secret.

    Use it for objects MessagePack cannot carry. Every process of a flow needs the
    same secret. The signature covers the entry's place too (run, stream, position
    and count of values, see ``EntryContext``), so an entry that was altered,
    written with another secret, or copied from another run, stream or position
    raises ``SignatureError`` instead of being unpickled.

    Args:
        secret: the shared signing key (at least 16 bytes).
    """

    _SIZE = 32  # bytes of an HMAC-SHA256 signature

    def __init__(self, secret: bytes | str) -> None:
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        if len(key) < 16:
            msg = "PickleSerializer needs a secret of at least 16 bytes to sign entries"
            raise ConfigurationError(msg)
        self._key = key

    def __repr__(self) -> str:
        return "PickleSerializer(secret=***)"

    def _sign(self, payload: bytes, context: EntryContext | None) -> bytes:
        mac = hmac.new(self._key, _bound_to(context), hashlib.sha256)
        mac.update(payload)
        return mac.digest()

    def encode(
        self, values: Sequence[Any], context: EntryContext | None = None
    ) -> bytes:
        """Pickle a batch and put its signature, bound to ``context``, in front."""
        try:
            payload = pickle.dumps(list(values), protocol=pickle.HIGHEST_PROTOCOL)
        except (
            pickle.PicklingError,
            TypeError,
            AttributeError,
            ValueError,
            RecursionError,
        ) as exc:
            raise _unencodable(values, pickle.dumps, exc) from exc
        return self._sign(payload, context) + payload

    def decode(
        self, data: bytes, type_: Any = Any, context: EntryContext | None = None
    ) -> list[Any]:
        """Check the signature of a batch for ``context``, then unpickle it."""
        signature, payload = data[: self._SIZE], data[self._SIZE :]
        if not hmac.compare_digest(signature, self._sign(payload, context)):
            msg = (
                "an entry failed its signature check: it was altered, copied from "
                "another run, stream or position, or written with another secret; "
                "it was not unpickled"
            )
            raise SignatureError(msg)
        try:
            values = pickle.loads(payload)
        except Exception as exc:  # signed by us, yet unloadable (a class gone...)
            what = "a signed entry does not unpickle"
            raise _undecodable(what, exc) from exc
        if not isinstance(values, list):
            msg = f"a signed entry holds {type(values).__qualname__}, not a batch"
            raise UndecodableEntryError(msg)
        return values
