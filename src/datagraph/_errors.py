"""Failures as data: what a failed processor leaves at the end of its streams."""

from __future__ import annotations

import re
import sysconfig
import traceback
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

import msgspec

from .exceptions import UpstreamError

__all__ = (
    "Failure",
    "decode_failure",
    "encode_failure",
    "failure_from_exception",
    "user_location",
)


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
            location=user_location(self.traceback),
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


# ------------------------------------------------------------- where it was raised

# A frame line of a formatted traceback; exception groups indent theirs behind "|".
_FRAME = re.compile(
    r'^[\s|+-]*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>.+)$'
)
_TRACEBACK_START = re.compile(r"^[\s|+-]*Traceback \(most recent call last\):$")
# The standard library of any Python on any machine (the traceback may come
# from a worker elsewhere): .../lib/python3.12/... or ...\Lib\... on Windows.
_STDLIB = re.compile(r"/lib/python\d+(?:\.\d+)?t?/|\\Lib\\")
_PACKAGES = frozenset({"site-packages", "dist-packages"})
_DATAGRAPH = Path(__file__).resolve().parent
_STDLIB_ROOTS = tuple(
    {Path(sysconfig.get_path(name)).resolve() for name in ("stdlib", "platstdlib")}
)
_PACKAGE_ROOTS = tuple(
    {Path(sysconfig.get_path(name)).resolve() for name in ("purelib", "platlib")}
)

# How much a frame tells a user about where their code failed: their own code
# most, then an installed package (their own may be one), then Datagraph or the
# standard library, which are never where the mistake is.
_USER, _PACKAGE, _LIBRARY = range(3)


def _is_datagraph(parts: tuple[str, ...], local: Path) -> bool:
    if local.is_absolute() and local.is_relative_to(_DATAGRAPH):
        return True
    # A copy of Datagraph elsewhere (on a worker, in another virtualenv): the
    # rest of its path names one of this package's own files.
    return any(
        part == "datagraph" and _DATAGRAPH.joinpath(*parts[i + 1 :]).is_file()
        for i, part in enumerate(parts[:-1])
    )


def _frame_kind(file: str) -> int:
    """Say whose code a traceback's file is: the user's, a package's, or ours.

    Paths are judged as text too: the traceback may come from another machine,
    where Datagraph and Python are installed elsewhere than here.
    """
    if file.startswith("<"):  # <frozen importlib._bootstrap>, <string>...
        return _LIBRARY
    pure: PurePath = PureWindowsPath(file) if "\\" in file else PurePosixPath(file)
    local = Path(file)
    if _is_datagraph(pure.parts, local):
        return _LIBRARY
    absolute = local.is_absolute()
    if _PACKAGES & set(pure.parts) or (
        absolute and any(local.is_relative_to(r) for r in _PACKAGE_ROOTS)
    ):
        return _PACKAGE
    if _STDLIB.search(file) or (
        absolute and any(local.is_relative_to(r) for r in _STDLIB_ROOTS)
    ):
        return _LIBRARY
    return _USER


def user_location(traceback: str | None) -> str | None:
    """Return where user code raised a failure: ``path/to/file.py:12 in func``.

    That is the innermost frame of the user's own code in the exception's
    traceback (not Datagraph's, the standard library's or an installed
    package's): "at .../pathlib.py:931 in iterdir" tells less than the line of
    the processor that listed the folder. Without such a frame, the innermost
    frame of an installed package other than Datagraph (the user's code may be
    installed as one), else the innermost frame of all.

    Args:
        traceback: a formatted traceback, as ``Failure.traceback`` keeps it.

    Returns:
        The location, or None when the text holds no frame.
    """
    blocks: list[list[tuple[str, str, str]]] = [[]]
    for line in (traceback or "").splitlines():
        if _TRACEBACK_START.match(line):
            blocks.append([])
        elif (match := _FRAME.match(line)) is not None:
            blocks[-1].append((match["file"], match["line"], match["func"].strip()))
    # The last exception is raised last; its causes and contexts come before it.
    frames = [frame for block in blocks for frame in block]
    ordered = [frame for block in reversed(blocks) for frame in reversed(block)]
    for wanted in (_USER, _PACKAGE):
        for file, line, func in ordered:
            if _frame_kind(file) == wanted:
                return f"{file}:{line} in {func}"
    if frames:
        file, line, func = frames[-1]
        return f"{file}:{line} in {func}"
    return None
