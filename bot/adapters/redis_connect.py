"""From `REDIS_URL` to redis-py clients: one server, a Redis Cluster, or a master found through Sentinel.

`connect()` returns a `RedisConnection`: the client the store writes with (short socket timeouts, retries on
dropped connections: the store's write ids make a resent script safe), a probe for `/readyz` (shorter timeout,
no retries) and what kind of deployment it found.

- `redis://host:port` is asked `INFO cluster`; a node with `cluster_enabled:1` gets a `RedisCluster` client,
  which follows slot moves and failovers itself. If the node cannot be reached at start-up the bot assumes a
  single server (and says so in the log): Redis being down must not keep the bot from starting.
- `redis+sentinel://…/mymaster` gets `Sentinel(...).master_for("mymaster")`: every new connection asks the
  Sentinels where the master is. A failover surfaces as a refused connection or a READONLY reply from the
  demoted master, which redis-py turns into a ConnectionError; the retry policy waits long enough for the
  Sentinels to promote a replica (`failover_wait`), then the write is resent to the new master.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from bot.redis_url import SentinelUrl, ServerUrl, parse_redis_url

log = logging.getLogger(__name__)

RedisClient = redis.Redis | RedisCluster
DeploymentKind = Literal["server", "cluster", "sentinel"]

# Backoff between resends: short at first (a dropped connection), capped at one second (a failover).
_BACKOFF_BASE_SECONDS = 0.05
_BACKOFF_CAP_SECONDS = 1.0


@dataclass(frozen=True)
class RedisConnection:
    client: RedisClient
    probe: RedisClient
    kind: DeploymentKind

    def close(self) -> None:
        if self.probe is not self.client:
            self.probe.close()
        self.client.close()


def connect(
    url: str,
    *,
    timeout: timedelta = timedelta(seconds=2),
    probe_timeout: timedelta = timedelta(milliseconds=500),
    failover_wait: timedelta = timedelta(seconds=10),
) -> RedisConnection:
    """Clients for REDIS_URL; raises RedisUrlError (a ValueError) for a URL it cannot understand."""
    parsed = parse_redis_url(url)
    if isinstance(parsed, SentinelUrl):
        return _sentinel(parsed, timeout=timeout, probe_timeout=probe_timeout, failover_wait=failover_wait)
    return _server_or_cluster(parsed, timeout=timeout, probe_timeout=probe_timeout, failover_wait=failover_wait)


def resend_policy(*, patience: timedelta) -> Retry:
    """Resend after a connection error for about `patience` in total (at least twice)."""
    waited, failures = 0.0, 0
    while waited < patience.total_seconds() or failures < 2:
        waited += min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2**failures)
        failures += 1
    return Retry(ExponentialBackoff(cap=_BACKOFF_CAP_SECONDS, base=_BACKOFF_BASE_SECONDS), retries=failures)


def probe_for(client: redis.Redis, timeout: timedelta) -> redis.Redis:
    """A client on the same server as `client`, with a short timeout and no retries, for health checks."""
    pool = client.connection_pool
    seconds = timeout.total_seconds()
    kwargs: dict[str, Any] = dict(pool.connection_kwargs)
    kwargs.update(socket_timeout=seconds, socket_connect_timeout=seconds, retry=Retry(NoBackoff(), retries=0))
    probe_pool = redis.ConnectionPool(connection_class=pool.connection_class, max_connections=2, **kwargs)
    return redis.Redis(connection_pool=probe_pool)


def _server_or_cluster(
    parsed: ServerUrl, *, timeout: timedelta, probe_timeout: timedelta, failover_wait: timedelta
) -> RedisConnection:
    seconds = timeout.total_seconds()
    options: dict[str, Any] = {"socket_timeout": seconds, "socket_connect_timeout": seconds}
    if not parsed.url.lower().startswith("unix:") and _is_cluster_node(parsed.url, probe_timeout):
        cluster = RedisCluster.from_url(parsed.url, retry=resend_policy(patience=failover_wait), **options)
        return RedisConnection(client=cluster, probe=cluster, kind="cluster")
    client = redis.Redis.from_url(
        parsed.url, retry=resend_policy(patience=timedelta(0)), health_check_interval=30, **options
    )
    return RedisConnection(client=client, probe=probe_for(client, probe_timeout), kind="server")


def _is_cluster_node(url: str, timeout: timedelta) -> bool:
    seconds = timeout.total_seconds()
    try:
        with redis.Redis.from_url(
            url, socket_timeout=seconds, socket_connect_timeout=seconds, retry=Retry(NoBackoff(), retries=0)
        ) as client:
            info: dict[str, Any] = client.info("cluster")
    except (redis.RedisError, OSError) as exc:
        log.warning("cannot ask Redis whether it is a cluster (%s); assuming a single server", exc)
        return False
    return bool(int(info.get("cluster_enabled", 0)))


def _sentinel(
    parsed: SentinelUrl, *, timeout: timedelta, probe_timeout: timedelta, failover_wait: timedelta
) -> RedisConnection:
    seconds = timeout.total_seconds()
    master_options: dict[str, Any] = {
        "socket_timeout": seconds,
        "socket_connect_timeout": seconds,
        "db": parsed.db,
        "username": parsed.username,
        "password": parsed.password,
        "ssl": parsed.tls,
    }
    # The URL's credentials are the master's; Sentinels are asked without (they rarely have a password).
    sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis.sentinel is not annotated upstream
        list(parsed.sentinels),
        sentinel_kwargs={"socket_timeout": seconds, "socket_connect_timeout": seconds},
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        parsed.service, retry=resend_policy(patience=failover_wait), health_check_interval=30, **master_options
    )
    probe_seconds = probe_timeout.total_seconds()
    probe: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        parsed.service,
        retry=Retry(NoBackoff(), retries=0),
        **(master_options | {"socket_timeout": probe_seconds, "socket_connect_timeout": probe_seconds}),
    )
    return RedisConnection(client=client, probe=probe, kind="sentinel")
