"""The incident group store on Redis (one server and a Cluster): one group per channel crossing, CAS, expiry."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from bot.adapters.redis_incident_groups import RedisIncidentGroupStore
from bot.core.errors import ConcurrentUpdate
from bot.core.incident_groups import GroupCardPosted, GroupId, GroupState, IncidentGroup, advance, form_group
from bot.core.incidents import IncidentId
from bot.core.operations import MessageRef
from tests.core.factories import T0
from tests.core.incident_factories import CARD_CHANNEL, incident

CARD = MessageRef(channel=CARD_CHANNEL, ts="1700000000.000900")


def group(group_id: str = "grp-1") -> IncidentGroup:
    members = [incident().model_copy(update={"id": IncidentId(f"inc-{n}")}) for n in range(6)]
    return form_group(GroupId(group_id), members, T0).group


def resolved(current: IncidentGroup) -> IncidentGroup:
    return current.model_copy(
        update={"version": current.version + 1, "state": GroupState.RESOLVED, "resolved_at": T0, "is_card_stale": False}
    )


@pytest.fixture(params=["redis", "cluster"])
def client(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "cluster":
        nodes = request.getfixturevalue("redis_cluster")
        nodes.flush()
        connection: Any = RedisCluster.from_url(nodes.url)
    else:
        connection = redis.Redis.from_url(request.getfixturevalue("redis_url"))
    yield connection
    connection.close()


def test_a_new_group_becomes_its_channels_latest_and_is_live(client: Any) -> None:
    store = RedisIncidentGroupStore(client)
    store.create(group(), replaces=None)
    assert store.get(GroupId("grp-1")) == group()
    assert store.latest_in(CARD_CHANNEL) == group()
    assert [g.id for g in store.live()] == ["grp-1"]


def test_of_two_replicas_crossing_the_threshold_at_once_one_makes_the_group(client: Any) -> None:
    store = RedisIncidentGroupStore(client)
    store.create(group("grp-a"), replaces=None)
    with pytest.raises(ConcurrentUpdate):
        store.create(group("grp-b"), replaces=None)  # it saw no group: it must look again
    store.create(group("grp-c"), replaces=GroupId("grp-a"))  # the old group stopped accepting: a new one
    assert store.latest_in(CARD_CHANNEL).id == "grp-c"  # type: ignore[union-attr]
    assert store.get(GroupId("grp-b")) is None


def test_a_replace_is_compare_and_set_on_the_version(client: Any) -> None:
    store = RedisIncidentGroupStore(client)
    store.create(group(), replaces=None)
    posted = advance(group(), GroupCardPosted(CARD), T0).group
    store.replace(posted, group().version)
    with pytest.raises(ConcurrentUpdate):
        store.replace(posted, group().version)
    assert store.get(GroupId("grp-1")) == posted


def test_a_resolved_group_leaves_the_live_set_and_expires_after_the_retention(client: Any) -> None:
    store = RedisIncidentGroupStore(client, retention=timedelta(milliseconds=200))
    store.create(group(), replaces=None)
    store.replace(resolved(group()), group().version)
    assert store.live() == []
    assert store.get(GroupId("grp-1")) is not None
    time.sleep(0.4)
    assert store.get(GroupId("grp-1")) is None
    assert store.latest_in(CARD_CHANNEL) is None


def test_one_replica_at_a_time_may_post_a_summary_card_and_the_claim_lapses(client: Any) -> None:
    store = RedisIncidentGroupStore(client)
    assert store.claim_card(GroupId("grp-1"), "replica-a", timedelta(milliseconds=200))
    assert not store.claim_card(GroupId("grp-1"), "replica-b", timedelta(milliseconds=200))
    time.sleep(0.4)
    assert store.claim_card(GroupId("grp-1"), "replica-b", timedelta(milliseconds=200))
