"""`REDIS_URL` as operators write it: one server, a Cluster node, or a set of Sentinels.

    redis://[[user]:password@]host[:port][/db]        one server, or any node of a Redis Cluster (detected)
    rediss://…                                        the same over TLS
    unix:///path/to/redis.sock[?db=N]                 a local socket
    redis+sentinel://[[user]:password@]host:26379[,host2:26379…]/mymaster[/db]
    rediss+sentinel://…                               the same, TLS to the master and replicas

Parsing is pure (no connection, no redis import; it sits beside `bot.settings`, outside the adapters, so that
settings may use it), and `Settings` validates the URL at start-up so
`rollbot serve` refuses a malformed one with a message naming the expected form instead of a traceback.
The password never appears in an error message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

SENTINEL_SCHEMES: Final = {"redis+sentinel": False, "rediss+sentinel": True}  # scheme → TLS
PLAIN_SCHEMES: Final = frozenset({"redis", "rediss", "unix"})
DEFAULT_SENTINEL_PORT: Final = 26379
EXPECTED_FORMS: Final = (
    "expected redis://[:password@]host:6379/0, rediss://…, unix:///path/redis.sock "
    "or redis+sentinel://[:password@]host:26379,host2:26379/mymaster[/db]"
)


class RedisUrlError(ValueError):
    """REDIS_URL cannot be understood; the message names the form expected (never the password)."""


@dataclass(frozen=True)
class ServerUrl:
    """A single server or a Cluster node: redis-py reads the URL itself."""

    url: str


@dataclass(frozen=True)
class SentinelUrl:
    """Sentinels to ask where the master of `service` is, and how to talk to that master."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False


RedisUrl = ServerUrl | SentinelUrl


def parse_redis_url(url: str) -> RedisUrl:
    """Understand REDIS_URL, or raise RedisUrlError saying what is wrong and what form is expected."""
    text = url.strip()
    scheme, separator, rest = text.partition("://")
    if not separator:
        raise RedisUrlError(f"REDIS_URL has no scheme; {EXPECTED_FORMS}")
    scheme = scheme.lower()
    if scheme in PLAIN_SCHEMES:
        parts = urlsplit(text)
        if scheme != "unix" and not parts.hostname:
            raise RedisUrlError(f"REDIS_URL names no host; {EXPECTED_FORMS}")
        try:
            parts.port  # noqa: B018 - urlsplit checks the port only when asked
        except ValueError:
            raise RedisUrlError(f"REDIS_URL has an invalid port; {EXPECTED_FORMS}") from None
        return ServerUrl(text)
    if scheme not in SENTINEL_SCHEMES:
        raise RedisUrlError(f"REDIS_URL scheme {scheme}:// is not supported; {EXPECTED_FORMS}")
    return _parse_sentinel(rest, tls=SENTINEL_SCHEMES[scheme])


def _parse_sentinel(rest: str, *, tls: bool) -> SentinelUrl:
    location, _, query = rest.partition("?")
    netloc, _, path = location.partition("/")
    credentials, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host_and_port(part) for part in hosts.split(",") if part.strip())
    if not sentinels:
        raise RedisUrlError(f"REDIS_URL names no Sentinel host; {EXPECTED_FORMS}")
    segments = [segment for segment in path.split("/") if segment]
    if not segments:
        raise RedisUrlError(
            f"REDIS_URL names no Sentinel service (the master's name, e.g. /mymaster); {EXPECTED_FORMS}"
        )
    if len(segments) > 2:
        raise RedisUrlError(f"REDIS_URL has too many path parts after the service name; {EXPECTED_FORMS}")
    db_text = segments[1] if len(segments) == 2 else parse_qs(query).get("db", ["0"])[0]
    if not db_text.isdigit() or not db_text.isascii():
        raise RedisUrlError(f"REDIS_URL database must be a number, not {db_text!r}; {EXPECTED_FORMS}")
    return SentinelUrl(
        sentinels=sentinels,
        service=unquote(segments[0]),
        db=int(db_text),
        username=username,
        password=password,
        tls=tls,
    )


def _host_and_port(part: str) -> tuple[str, int]:
    text = part.strip()
    if text.startswith("["):  # [::1]:26379
        host, _, port_text = text[1:].partition("]")
        port_text = port_text.removeprefix(":")
    else:
        host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise RedisUrlError(f"REDIS_URL has an empty Sentinel host in {text!r}; {EXPECTED_FORMS}")
    if not port_text:
        return host, DEFAULT_SENTINEL_PORT
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise RedisUrlError(f"REDIS_URL has an invalid Sentinel port in {text!r}; {EXPECTED_FORMS}")
    return host, int(port_text)
