"""Settings of a process, from arguments or ``DATAGRAPH_*`` environment variables."""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any

from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ("CLIENT_LOG_LEVELS", "Settings")

_ENV_PREFIX = "DATAGRAPH_"
#: The values of ``Settings.client_log_level``, quietest first.
CLIENT_LOG_LEVELS = ("off", "error", "warn", "info", "debug")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """How this process stores, batches and watches run data.

    Every field can be set from the environment as ``DATAGRAPH_<FIELD>``, e.g.
    ``DATAGRAPH_REDIS_URL=rediss://user:secret@host:6380/0`` or
    ``DATAGRAPH_RETENTION=3600``.
    """

    #: Redis/Valkey URL (``redis://`` or ``rediss://``; ``redis+cluster://h:p,h:p``
    #: for a Redis Cluster); None for the memory store.
    redis_url: str | None = None
    #: Prefix of every Redis key Datagraph writes.
    prefix: str = "dg"
    #: Seconds a run's data is kept after its last write.
    retention: float = 7 * 24 * 3600.0
    #: Most values packed into one stream entry.
    batch_size: int = 1024
    #: Longest a written value waits in a buffer before it is flushed (seconds),
    #: when the producer keeps the event loop busy. An idle producer flushes at once.
    flush_interval: float = 0.05
    #: How far (in values) a producer may run ahead of its slowest reading
    #: processor before it is held back; 0 turns backpressure off.
    window: int = 16384
    #: Most values one instance of a scaled-out processor takes at a time.
    share_size: int = 4
    #: Seconds a blocked reader waits before checking that its producer is alive.
    read_timeout: float = 1.0
    #: Seconds without a heartbeat after which a running processor counts as lost.
    lease: float = 30.0
    #: Seconds a dispatched processor may wait for a worker to start it before
    #: the run fails (no running service implements it, or none serves its queue).
    dispatch_timeout: float = 300.0
    #: Most times one processor of a run is taken over after its worker was lost
    #: before the run fails instead (a job that kills every worker it runs on).
    takeovers: int = 25
    #: Secret that signs pickled entries; setting it selects the pickle serializer.
    pickle_secret: str | None = None
    #: Seconds the Redis store keeps retrying a command through a stalled,
    #: restarting or unreachable server before it raises ``StoreConnectionError``
    #: (at most one ``command_timeout`` later, when the last attempt times out).
    store_timeout: float = 60.0
    #: Seconds one attempt of a small Redis command may take before it is retried;
    #: commands carrying large values get more (see ``docs/reliability.md``).
    command_timeout: float = 5.0
    #: Largest encoded value (or batch of values) stored in one entry, in bytes.
    #: Batches above it are split; a single value above it is refused with
    #: ``ValueTooLargeError``. Redis refuses arguments above 512 MB.
    max_value_size: int = 128 * 1024 * 1024
    #: Level of the Redis client's (valkey-glide's) own log lines on stderr:
    #: ``off`` (the default; Datagraph's errors say what went wrong), ``error``,
    #: ``warn``, ``info``, ``debug``. Left alone when the application has set up
    #: glide's ``Logger`` itself.
    client_log_level: str = "off"

    def __post_init__(self) -> None:
        for name in (
            "retention",
            "flush_interval",
            "read_timeout",
            "lease",
            "dispatch_timeout",
            "store_timeout",
            "command_timeout",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value > 0):
                msg = f"setting {name} must be a positive number, got {value!r}"
                raise ConfigurationError(msg)
        for name in (
            "batch_size",
            "share_size",
            "window",
            "takeovers",
            "max_value_size",
        ):
            size: object = getattr(self, name)  # checked: it may come from env
            least = 0 if name in ("window", "takeovers") else 1
            if not (isinstance(size, int) and size >= least):
                msg = f"setting {name} must be an integer >= {least}, got {size!r}"
                raise ConfigurationError(msg)
        if self.client_log_level not in CLIENT_LOG_LEVELS:
            known = ", ".join(CLIENT_LOG_LEVELS)
            msg = (
                f"setting client_log_level must be one of {known}, "
                f"got {self.client_log_level!r}"
            )
            raise ConfigurationError(msg)

    def store_options(self) -> dict[str, Any]:
        """Return the keyword arguments of ``RedisStore`` that these settings set."""
        return {
            "prefix": self.prefix,
            "retention": self.retention,
            "store_timeout": self.store_timeout,
            "command_timeout": self.command_timeout,
            "max_value_size": self.max_value_size,
            "client_log_level": self.client_log_level,
        }

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> Settings:
        """Read ``DATAGRAPH_*`` variables; ``overrides`` (not None) take precedence.

        Raises:
            ConfigurationError: an override names no setting, or a variable or an
                override holds a value of the wrong kind.
        """
        environ = os.environ if environ is None else environ
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            msg = f"unknown setting(s) {unknown}; known: {sorted(fields)}"
            raise ConfigurationError(msg)
        values: dict[str, Any] = {}
        for name in fields:
            raw = environ.get(_ENV_PREFIX + name.upper())
            if raw is None or raw == "":
                continue
            default = getattr(cls(), name)
            try:
                values[name] = type(default)(raw) if default is not None else raw
            except ValueError:
                msg = f"{_ENV_PREFIX}{name.upper()}={raw!r} is not a valid {name}"
                raise ConfigurationError(msg) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
