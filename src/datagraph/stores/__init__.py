"""Stores: where the streams and state of runs live.

``MemoryStore`` is built in; ``RedisStore`` (Redis/Valkey, needs the ``redis``
extra) is imported on first use, so ``import datagraph`` never loads a Redis client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..exceptions import StoreConfigError
from ._base import Batch as Batch
from ._base import Chunk as Chunk
from ._base import Share as Share
from ._base import Store as Store
from ._base import StreamState as StreamState
from ._redis_url import URL_FORMS
from .memory import MemoryStore as MemoryStore

if TYPE_CHECKING:
    from .redis import RedisStore as RedisStore

__all__ = (
    "Batch",
    "Chunk",
    "MemoryStore",
    "RedisStore",
    "Share",
    "Store",
    "StreamState",
    "open_store",
)


_REDIS_SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster")


def __getattr__(name: str) -> Any:
    if name == "RedisStore":
        return _redis_store_class()
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def _redis_store_class() -> type[RedisStore]:
    try:
        from .redis import RedisStore
    except ImportError as exc:
        msg = (
            f"the Redis store needs valkey-glide ({exc}); install it with "
            "pip install 'datagraph[redis]'"
        )
        raise ImportError(msg) from exc
    return RedisStore


def open_store(url: str | None = None, **options: Any) -> Store:
    """Open the store a URL names: ``memory://``, ``redis://`` or ``rediss://``.

    A Redis Cluster is ``redis+cluster://host:port[,host:port...]`` (or
    ``rediss+cluster://``), naming any of its nodes.

    ``None`` gives a new ``MemoryStore``. ``options`` go to the store's constructor.

    Raises:
        StoreConfigError: the URL names no store (``localhost:6379`` has no
            scheme, say); the message lists the accepted forms. Also a
            ``ValueError``.
    """
    if url is None or url == "memory://":
        return MemoryStore(**options)
    scheme, sep, _ = url.partition("://")
    if sep and scheme.lower() in _REDIS_SCHEMES:
        return _redis_store_class()(url, **options)
    forms = "; ".join(("memory://", *URL_FORMS))
    what = f"URL scheme {scheme.lower()!r} in {url!r}" if sep else f"URL {url!r}"
    hint = f" (no scheme: did you mean 'redis://{url}'?)" if not sep else ""
    msg = f"no store for {what}{hint}; the accepted forms are {forms}"
    raise StoreConfigError(msg)
