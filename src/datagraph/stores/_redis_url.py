"""Where the Redis store's server is and how to log in: its URL, parsed.

The accepted forms are in ``URL_FORMS``; a URL of any other form (``localhost:6379``
without a scheme, say) is a ``StoreConfigError`` that lists them.
"""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qs, unquote, urlsplit

from ..exceptions import StoreConfigError

__all__ = (
    "URL_FORMS",
    "RedisAddress",
    "ca_file_from_query",
    "not_a_redis_url",
    "parse_cluster_url",
    "parse_url",
)

#: What a Redis URL may look like, for messages that show the accepted forms.
URL_FORMS = (
    "redis://[[user]:password@]host[:port][/db]",
    "rediss://[[user]:password@]host[:port][/db][?ssl_ca_certs=<CA file>] (TLS)",
    "redis+cluster://[[user]:password@]host[:port][,host[:port]...] (Redis Cluster)",
    "rediss+cluster://... (Redis Cluster over TLS)",
)


_QUERY_KEYS = ("ssl_ca_certs",)


def not_a_redis_url(url: str) -> str:
    """Return the message for a URL that has none of the Redis schemes."""
    forms = "; ".join(URL_FORMS)
    hint = ""
    if "://" not in url:
        hint = f" (no scheme: did you mean 'redis://{url}'?)"
    return f"not a Redis URL: {url!r}{hint}; the accepted forms are {forms}"


@dataclasses.dataclass(frozen=True, slots=True)
class RedisAddress:
    """Where the server is and how to log in, parsed from a URL."""

    host: str
    port: int
    db: int
    tls: bool
    username: str | None
    password: str | None = dataclasses.field(repr=False)
    #: A Redis Cluster, reached first through ``seeds`` (host, port), any node.
    cluster: bool = False
    seeds: tuple[tuple[str, int], ...] = ()
    ca_file: str | None = None  # TLS: the CA that signed the server's certificate

    @property
    def safe_url(self) -> str:
        """The URL without the password, fit for messages and logs."""
        scheme = "rediss" if self.tls else "redis"
        user = f"{self.username}@" if self.username else ""
        query = f"?ssl_ca_certs={self.ca_file}" if self.ca_file else ""
        if self.cluster:
            nodes = ",".join(_host_port(host, port) for host, port in self.seeds)
            return f"{scheme}+cluster://{user}{nodes}{query}"
        node = _host_port(self.host, self.port)
        return f"{scheme}://{user}{node}/{self.db}{query}"


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_url(url: str) -> RedisAddress:
    """Parse ``redis://[[user]:password@]host[:port][/db]`` (``rediss://`` for TLS).

    A Redis Cluster is ``redis+cluster://[[user]:password@]host[:port][,host[:port]
    ...]`` (``rediss+cluster://`` for TLS): any of its nodes, to find the others.
    A ``rediss://`` URL may end in ``?ssl_ca_certs=<path>``, the CA file to trust.

    Raises:
        StoreConfigError: the URL has another scheme (or none), a malformed port
            or db number, or a query other than a lone ``ssl_ca_certs`` of a TLS
            URL. Also a ``ValueError``.
    """
    scheme, sep, _ = url.partition("://")
    if scheme in ("redis+cluster", "rediss+cluster"):
        return parse_cluster_url(url)
    parts = urlsplit(url)
    if not sep or parts.scheme not in ("redis", "rediss"):
        raise StoreConfigError(not_a_redis_url(url))
    try:
        port = parts.port or 6379
    except ValueError:
        msg = f"invalid port in Redis URL {url!r}"
        raise StoreConfigError(msg) from None
    path = parts.path.strip("/")
    if path and not path.isdigit():
        msg = f"the path of a Redis URL is a database number, got {path!r} in {url!r}"
        raise StoreConfigError(msg)
    return RedisAddress(
        host=parts.hostname or "localhost",
        port=port,
        db=int(path or 0),
        tls=parts.scheme == "rediss",
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        ca_file=ca_file_from_query(parts.query, tls=parts.scheme == "rediss"),
    )


def parse_cluster_url(url: str) -> RedisAddress:
    """Parse a ``redis+cluster://`` URL: one or more nodes, database 0 only.

    Raises:
        StoreConfigError: a node is malformed, or holds a login after the first.
    """
    seeds: list[tuple[str, int]] = []
    first = None
    for node in url.partition("://")[2].split(","):
        # Each node as a URL of its own: user and password come with the first.
        parts = urlsplit(f"redis://{node}")
        if first is None:
            first = parts
        elif parts.username or parts.password:
            msg = f"only the first node of a cluster URL may hold a login: {url!r}"
            raise StoreConfigError(msg)
        try:
            port = parts.port or 6379
        except ValueError:
            msg = f"invalid port in Redis Cluster URL {url!r}"
            raise StoreConfigError(msg) from None
        if parts.path.strip("/") not in ("", "0"):
            msg = f"a Redis Cluster has only database 0, got {url!r}"
            raise StoreConfigError(msg)
        if not parts.hostname:
            msg = f"a Redis Cluster URL names host:port of each node, got {url!r}"
            raise StoreConfigError(msg)
        seeds.append((parts.hostname, port))
    assert first is not None
    return RedisAddress(
        host=seeds[0][0],
        port=seeds[0][1],
        db=0,
        tls=url.startswith("rediss+"),
        username=unquote(first.username) if first.username else None,
        password=unquote(first.password) if first.password is not None else None,
        cluster=True,
        seeds=tuple(seeds),
    )


def ca_file_from_query(query: str, *, tls: bool) -> str | None:
    """Return the CA file named by a Redis URL's query (``?ssl_ca_certs=...``).

    Raises:
        StoreConfigError: the query holds another key, or names a CA file for a
            ``redis://`` URL (without TLS it would be silently ignored).
    """
    if not query:
        return None
    fields = parse_qs(query, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(fields) - set(_QUERY_KEYS))
    if unknown:
        msg = (
            f"unknown option {unknown[0]!r} in the Redis URL; the only one is "
            "ssl_ca_certs=<path of the CA file> (for rediss:// URLs)"
        )
        raise StoreConfigError(msg)
    values = fields.get("ssl_ca_certs", [])
    if len(values) != 1 or not values[0]:
        msg = "ssl_ca_certs in the Redis URL must name one CA file"
        raise StoreConfigError(msg)
    if not tls:
        msg = "ssl_ca_certs is for TLS: the Redis URL must start with rediss://"
        raise StoreConfigError(msg)
    return values[0]
