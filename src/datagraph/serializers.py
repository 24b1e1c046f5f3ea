"""How values are encoded into stream entries.

A serializer turns a batch of values into one ``bytes`` entry and back. The default,
``MsgpackSerializer``, is safe: it encodes plain data, dataclasses, msgspec structs,
pydantic models and the like with msgspec, and decoding never runs code. ``IO[T]``
decodes into ``T``, so a dataclass written by one processor is a dataclass again for
its reader. ``PickleSerializer`` takes any picklable object, and because unpickling
can run arbitrary code it signs every entry with a secret and refuses entries whose
signature does not match.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import pickle
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec

from .exceptions import SerializationError, SignatureError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("MsgpackSerializer", "PickleSerializer", "Serializer")


@runtime_checkable
class Serializer(Protocol):
    """Encodes batches of values into bytes and back."""

    def encode(self, values: Sequence[Any]) -> bytes:
        """Encode a batch of values.

        Raises:
            SerializationError: a value cannot be encoded; ``.index`` is its position
                in ``values``.
        """
        ...

    def decode(self, data: bytes, type_: Any = Any) -> list[Any]:
        """Decode a batch, converting each value to ``type_`` where that applies.

        Raises:
            SignatureError: the entry was not written with this serializer's secret.
        """
        ...


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


def _unencodable(
    values: Sequence[Any], encode: Any, exc: Exception
) -> SerializationError:
    """Build the error for the first value of ``values`` that ``encode`` rejects."""
    for index, value in enumerate(values):
        try:
            encode(value)
        except Exception as value_exc:
            text = repr(value)
            if len(text) > 200:
                text = text[:200] + "..."
            msg = f"cannot encode {text}: {value_exc}"
            return SerializationError(msg, index=index, value=value)
    return SerializationError(f"cannot encode the batch: {exc}")


class MsgpackSerializer:
    """Encode values as MessagePack with msgspec (the default, and safe).

    Supports what msgspec supports (None, bool, int, float, str, bytes, lists,
    tuples, dicts, sets, datetimes, UUIDs, decimals, enums, dataclasses, attrs
    classes, msgspec structs...) plus pydantic models.
    """

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)

    def __repr__(self) -> str:
        return "MsgpackSerializer()"

    def encode(self, values: Sequence[Any]) -> bytes:
        """Encode a batch of values as one MessagePack array."""
        try:
            return self._encoder.encode(values)
        except (TypeError, NotImplementedError, OverflowError, ValueError) as exc:
            raise _unencodable(values, self._encoder.encode, exc) from exc

    def decode(self, data: bytes, type_: Any = Any) -> list[Any]:
        """Decode a batch into a list of ``type_``."""
        return _decoder(type_).decode(data)


@functools.lru_cache(maxsize=256)
def _decoder(type_: Any) -> msgspec.msgpack.Decoder[list[Any]]:
    return msgspec.msgpack.Decoder(list[type_], dec_hook=_dec_hook)


class PickleSerializer:
    """Pickle values, signing each entry with HMAC-SHA256 over a shared secret.

    Use it for objects MessagePack cannot carry. Every process of a flow needs the
    same secret; an entry whose signature does not match (tampered, or written with
    another secret) raises ``SignatureError`` instead of being unpickled.

    Args:
        secret: the shared signing key (at least 16 bytes).
    """

    _SIZE = 32  # bytes of an HMAC-SHA256 signature

    def __init__(self, secret: bytes | str) -> None:
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        if len(key) < 16:
            msg = "PickleSerializer needs a secret of at least 16 bytes to sign entries"
            raise ValueError(msg)
        self._key = key

    def __repr__(self) -> str:
        return "PickleSerializer(secret=***)"

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def encode(self, values: Sequence[Any]) -> bytes:
        """Pickle a batch and put its signature in front."""
        try:
            payload = pickle.dumps(list(values), protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise _unencodable(values, pickle.dumps, exc) from exc
        return self._sign(payload) + payload

    def decode(self, data: bytes, type_: Any = Any) -> list[Any]:
        """Check the signature of a batch, then unpickle it."""
        signature, payload = data[: self._SIZE], data[self._SIZE :]
        if not hmac.compare_digest(signature, self._sign(payload)):
            msg = (
                "a stored entry failed its signature check: it was altered, or "
                "written with another secret; it was not unpickled"
            )
            raise SignatureError(msg)
        values: list[Any] = pickle.loads(payload)
        return values
