"""REDIS_URL against real deployments: a Redis Cluster found from one node, and a Sentinel failover.

The Sentinel test kills the master with SIGKILL while an operation is in flight, then writes: the write waits
for the Sentinels to promote the replica, lands on the new master, and the operation written before the
failover is still there (every acknowledged write was WAITed onto the replica).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from redis.cluster import RedisCluster

from bot.adapters.redis_inbox import RedisInbox
from bot.adapters.redis_store import RedisOperationStore
from bot.core.operations import MessageRef, Phase
from sandbox.redis_server import RedisClusterNodes, RedisServerUnavailable, SentinelDeployment
from tests.fakes.clock import ManualClock
from tests.fakes.operations import APPROVER, CHANNEL, advanced, make_operation

LOCK_TTL = timedelta(minutes=15)
REQUEST = MessageRef(channel=CHANNEL, ts="1700000000.000100")


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterNodes]:
    try:
        nodes = RedisClusterNodes().start()
    except RedisServerUnavailable as exc:
        pytest.skip(f"needs redis-server and redis-cli for a Redis Cluster: {exc}")
    yield nodes
    nodes.stop()


@pytest.fixture
def sentinels() -> Iterator[SentinelDeployment]:
    try:
        deployment = SentinelDeployment().start()
    except RedisServerUnavailable as exc:
        pytest.skip(f"needs redis-server for Sentinel: {exc}")
    yield deployment
    deployment.stop()


def test_a_cluster_node_url_is_detected_and_served_by_a_cluster_client(
    cluster: RedisClusterNodes, manual_clock: ManualClock
) -> None:
    cluster.flush()
    store = RedisOperationStore.from_url(cluster.url, manual_clock)
    operation = make_operation()

    store.create(operation, LOCK_TTL)
    store.link_message(operation.id, REQUEST)
    store.replace(advanced(operation, phase=Phase.APPROVED), expected_version=1, actor=APPROVER)

    assert isinstance(store.client, RedisCluster)
    assert store.find_by_message(REQUEST) == advanced(operation, phase=Phase.APPROVED)
    assert store.is_reachable() is True
    inbox = RedisInbox(store.client, manual_clock)
    inbox.park("event:Ev1", "{}", "replica-a")
    inbox.goodbye("replica-a")
    assert [work.key for work in inbox.adopt("replica-b")] == ["event:Ev1"]
    store.close()


def test_a_plain_server_url_is_not_mistaken_for_a_cluster(redis_url: str, manual_clock: ManualClock) -> None:
    store = RedisOperationStore.from_url(redis_url, manual_clock)

    assert type(store.client) is redis.Redis
    assert store.is_reachable() is True
    store.close()


def test_a_write_during_a_sentinel_failover_lands_on_the_new_master(
    sentinels: SentinelDeployment, manual_clock: ManualClock
) -> None:
    store = RedisOperationStore.from_url(sentinels.url(), manual_clock)
    operation = make_operation()
    store.create(operation, LOCK_TTL)
    store.link_message(operation.id, REQUEST)
    approved = advanced(operation, phase=Phase.APPROVED)
    store.replace(approved, expected_version=1, actor=APPROVER)
    assert store.is_reachable() is True

    old_port = sentinels.kill_master()
    rolling = advanced(approved, phase=Phase.ROLLING_BACK, fence=1)
    store.replace(rolling, expected_version=2)  # retried until the Sentinels promote the replica

    new_host, new_port = sentinels.master_address()
    assert new_port != old_port
    with redis.Redis(host=new_host, port=new_port, decode_responses=True) as new_master:
        assert new_master.info("replication")["role"] == "master"
        assert f"rollbot:{{rollbot}}:op:{operation.id}" in new_master.keys("*")
    assert store.get(operation.id) == rolling
    assert store.find_by_message(REQUEST) == rolling
    assert [entry.phase for entry in store.audit(operation.id)] == ["awaiting_approval", "approved", "rolling_back"]
    assert store.is_reachable() is True
    store.close()
