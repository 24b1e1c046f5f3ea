"""The valkey-glide client's names that the Redis store uses, imported in one place.

glide is an optional dependency (the ``redis`` extra): importing any part of the
Redis store without it fails here, with the one line that says what to install.
"""

from __future__ import annotations

try:
    from glide import (
        AdvancedGlideClientConfiguration,
        AdvancedGlideClusterClientConfiguration,
        BackoffStrategy,
        Batch,
        ClosingError,
        ClusterBatch,
        GlideClient,
        GlideClientConfiguration,
        GlideClusterClient,
        GlideClusterClientConfiguration,
        GlideError,
        LogLevel,
        NodeAddress,
        Script,
        ServerCredentials,
        StreamReadOptions,
        TlsAdvancedConfiguration,
    )
    from glide import ConnectionError as GlideConnectionError
    from glide import Logger as GlideLogger
    from glide import TimeoutError as GlideTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    msg = "RedisStore needs the valkey-glide client: pip install 'datagraph[redis]'"
    raise ImportError(msg) from exc

__all__ = (
    "AdvancedGlideClientConfiguration",
    "AdvancedGlideClusterClientConfiguration",
    "BackoffStrategy",
    "Batch",
    "ClosingError",
    "ClusterBatch",
    "GlideClient",
    "GlideClientConfiguration",
    "GlideClusterClient",
    "GlideClusterClientConfiguration",
    "GlideConnectionError",
    "GlideError",
    "GlideLogger",
    "GlideTimeoutError",
    "LogLevel",
    "NodeAddress",
    "Script",
    "ServerCredentials",
    "StreamReadOptions",
    "TlsAdvancedConfiguration",
)
