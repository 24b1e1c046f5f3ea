"""Failures as data: what a failed processor leaves at the end of its streams."""

from __future__ import annotations

import traceback

import msgspec

from .exceptions import UpstreamError

__all__ = ("Failure", "decode_failure", "encode_failure", "failure_from_exception")


class Failure(msgspec.Struct, frozen=True, kw_only=True):
    """A processor's failure, stored so that readers in any process can raise it."""

    processor: str
    error_type: str
    message: str
    traceback: str = ""

    def to_exception(self, stream: str | None = None) -> UpstreamError:
        """Return the ``UpstreamError`` a reader of ``stream`` raises."""
        return UpstreamError(
            processor=self.processor,
            error_type=self.error_type,
            message=self.message,
            traceback=self.traceback,
            stream=stream,
        )


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Failure)


def failure_from_exception(processor: str, exc: BaseException) -> Failure:
    """Describe ``exc``; an ``UpstreamError`` keeps pointing at its origin."""
    if isinstance(exc, UpstreamError):
        return Failure(
            processor=exc.processor,
            error_type=exc.error_type,
            message=exc.message,
            traceback=exc.traceback,
        )
    return Failure(
        processor=processor,
        error_type=type(exc).__qualname__,
        message=str(exc),
        traceback="".join(traceback.format_exception(exc)),
    )


def encode_failure(failure: Failure) -> bytes:
    """Encode a failure for ``Store.end_stream``."""
    return _encoder.encode(failure)


def decode_failure(data: bytes) -> Failure:
    """Decode what ``encode_failure`` wrote."""
    return _decoder.decode(data)
