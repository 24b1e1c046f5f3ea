"""Who the Redis store is to the server: TLS trust and ACL rights.

A ``rediss://`` URL may name the CA file that signed the server's certificate as
``?ssl_ca_certs=<path>`` (the name redis-py uses, parsed in ``_redis_url``);
without it the system's trust store decides. The file is read once, when the
store is made, so a wrong path fails there and not at the first command.

An ACL user needs the key pattern ``~<prefix>:*`` and the commands in
``ACL_COMMANDS``; a command the server refuses for want of rights becomes one
``StorePermissionError`` naming the user, the command (when the server names it)
and that key pattern.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..exceptions import StoreConfigError, StorePermissionError
from ._glide import TlsAdvancedConfiguration

__all__ = (
    "ACL_COMMANDS",
    "denied",
    "is_denied",
    "tls_config",
)

#: The commands a Datagraph user needs beyond ``+@connection`` (glide's HELLO,
#: AUTH, CLIENT SETNAME, SELECT, PING) and ``INFO`` (glide asks it on connecting).
#: Scripts go by EVALSHA, after a SCRIPT LOAD when the server lacks them (glide
#: never sends EVAL); the commands inside them are checked against the same rights.
ACL_COMMANDS = (
    "info", "evalsha", "script|load", "multi", "exec",
    "get", "set", "del", "exists", "pexpire", "time",
    "hget", "hset", "hsetnx", "hdel", "hgetall", "hmget", "hlen", "hvals",
    "sadd", "smembers",
    "zadd", "zrange", "zrangebyscore", "zremrangebyscore", "zscore", "zrem",
    "xadd", "xdel", "xinfo|stream", "xrange", "xrevrange", "xtrim", "xread",
)  # fmt: skip

#: How glide reports the server's NOPERM (it replaces the code with its own word).
_DENIED = re.compile(r"PermissionDenied|NOPERM|can't access at least one of the keys")
_COMMAND = re.compile(r"permissions to run the '([^']+)' command")


def tls_config(ca_file: str | None) -> TlsAdvancedConfiguration | None:
    """Return glide's TLS settings trusting ``ca_file`` (None: the system's CAs).

    Raises:
        StoreConfigError: the file cannot be read or holds no PEM certificate.
    """
    if ca_file is None:
        return None
    try:
        pem = Path(ca_file).read_bytes()
    except OSError as exc:
        msg = f"cannot read the CA file {ca_file!r} (ssl_ca_certs): {exc.strerror}"
        raise StoreConfigError(msg) from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        msg = f"the CA file {ca_file!r} (ssl_ca_certs) holds no PEM certificate"
        raise StoreConfigError(msg)
    return TlsAdvancedConfiguration(root_pem_cacerts=pem)


def is_denied(detail: str) -> bool:
    """Tell whether a server error says the user lacks a right (NOPERM)."""
    return bool(_DENIED.search(detail))


def denied(
    detail: str, *, user: str | None, prefix: str, url: str, operation: str
) -> StorePermissionError:
    """Return the error for a command the server's ACL refused."""
    name = user or "default"
    pattern = f"~{prefix}:*"
    found = _COMMAND.search(detail)
    command = found.group(1) if found else None
    if command is not None:
        what = f"may not run the {command.upper()!r} command"
    elif "script" in detail:
        command = "EVALSHA"
        what = "may not touch the keys of a Datagraph script"
    else:
        what = "may not access the keys of a command"
    msg = (
        f"Redis at {url} refused to {operation}: ACL user {name!r} {what}. "
        f"Datagraph's user needs the keys {pattern} and the commands "
        f"+@connection +{' +'.join(ACL_COMMANDS)} (server said: {detail})"
    )
    return StorePermissionError(msg, user=name, command=command, key_pattern=pattern)
