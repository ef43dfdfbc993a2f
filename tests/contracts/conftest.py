"""The operation store and inbox harnesses: the same tests against the fakes, one redis-server and a Cluster.

`harness` builds a store with `harness.make_store(retention=…)` when a test needs other settings than the
defaults; `store` is the default one. The Cluster is three real `redis-server --cluster-enabled yes` processes,
started once per session and emptied before each test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from bot.adapters.redis_inbox import RedisInbox
from bot.adapters.redis_store import RedisOperationStore
from bot.ports import Inbox, OperationStore
from sandbox.redis_server import RedisClusterNodes, RedisServerUnavailable
from tests.fakes.clock import ManualClock
from tests.fakes.memory_inbox import InMemoryInbox
from tests.fakes.memory_store import InMemoryOperationStore

# Long enough that Redis never expires it by accident under load, short enough to wait for in a test.
SHORT_TTL = timedelta(milliseconds=60)
PAST_SHORT_TTL = timedelta(milliseconds=120)

BACKENDS = ["memory", "redis", "cluster"]


@dataclass
class Harness:
    make_store: Callable[..., OperationStore]
    make_inbox: Callable[[], Inbox]
    clock: ManualClock
    pass_time: Callable[[timedelta], object]
    _default: OperationStore | None = field(default=None, repr=False)

    @property
    def store(self) -> OperationStore:
        if self._default is None:
            self._default = self.make_store()
        return self._default


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    try:
        cluster = RedisClusterNodes().start()
    except RedisServerUnavailable as exc:
        pytest.skip(f"needs redis-server and redis-cli for a Redis Cluster: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest, manual_clock: ManualClock) -> Iterator[Harness]:
    if request.param == "memory":
        yield Harness(
            make_store=lambda **options: InMemoryOperationStore(manual_clock, **options),
            make_inbox=lambda: InMemoryInbox(manual_clock),
            clock=manual_clock,
            pass_time=manual_clock.advance,
        )
        return

    def advance_and_wait(delta: timedelta) -> None:
        manual_clock.advance(delta)
        time.sleep(delta.total_seconds())  # Redis TTLs run on the server's real clock

    client: Any
    if request.param == "cluster":
        nodes: RedisClusterNodes = request.getfixturevalue("redis_cluster")
        nodes.flush()
        client = RedisCluster.from_url(nodes.url)
    else:
        client = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    stores: list[RedisOperationStore] = []

    def make_store(**options: Any) -> RedisOperationStore:
        store = RedisOperationStore(client, manual_clock, **options)
        stores.append(store)
        return store

    yield Harness(
        make_store=make_store,
        make_inbox=lambda: RedisInbox(client, manual_clock),
        clock=manual_clock,
        pass_time=advance_and_wait,
    )
    for store in stores:
        store.close()
    client.close()


@pytest.fixture
def store(harness: Harness) -> OperationStore:
    return harness.store
