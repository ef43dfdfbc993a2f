"""The incident store and context leases contract: the in-memory fakes and Redis (one server, a Cluster)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster

from bot.adapters.redis_incidents import RedisContextLeases, RedisIncidentStore
from bot.core.errors import ConcurrentUpdate, FencedOut
from bot.core.incidents import CardPosted, IncidentId, RollbackClicked, WorkloadDeleted, advance
from bot.core.operations import MessageRef
from bot.ports import ContextLeases, IncidentStore
from tests.core.incident_factories import CARD_CHANNEL, incident, signal
from tests.fakes.clock import ManualClock
from tests.fakes.memory_incidents import InMemoryContextLeases, InMemoryIncidentStore

LEASE = "kubernetes:sandbox"
TTL = timedelta(milliseconds=300)


@dataclass
class World:
    store: IncidentStore
    leases: ContextLeases
    clock: ManualClock
    make_store: Callable[..., IncidentStore]
    pass_time: Callable[[timedelta], object]


@pytest.fixture(params=["memory", "redis", "cluster"])
def world(request: pytest.FixtureRequest, manual_clock: ManualClock) -> Iterator[World]:
    if request.param == "memory":
        leases = InMemoryContextLeases(manual_clock)
        default = InMemoryIncidentStore(manual_clock, leases)

        def make_memory(**options: Any) -> IncidentStore:
            # Without options: the same store, as a second Redis client would see the same server.
            return InMemoryIncidentStore(manual_clock, leases, **options) if options else default

        yield World(default, leases, manual_clock, make_memory, manual_clock.advance)
        return
    client: Any
    if request.param == "cluster":
        nodes = request.getfixturevalue("redis_cluster")
        nodes.flush()
        client = RedisCluster.from_url(nodes.url)
    else:
        client = redis.Redis.from_url(request.getfixturevalue("redis_url"))

    def make_redis(**options: Any) -> IncidentStore:
        return RedisIncidentStore(client, **options)

    def advance_and_wait(delta: timedelta) -> None:
        manual_clock.advance(delta)
        time.sleep(delta.total_seconds())  # Redis TTLs run on the server's clock

    yield World(make_redis(), RedisContextLeases(client), manual_clock, make_redis, advance_and_wait)
    client.close()


def test_a_created_incident_is_found_by_id_key_and_workload(world: World) -> None:
    opened = incident()
    world.store.create(opened)
    assert world.store.get(opened.id) == opened
    assert world.store.find_by_key(opened.key) == opened
    assert world.store.find_by_workload(opened.workload.key) == opened
    assert [i.id for i in world.store.live()] == [opened.id]


def test_a_second_incident_for_an_open_key_is_refused(world: World) -> None:
    world.store.create(incident())
    with pytest.raises(ConcurrentUpdate):
        world.store.create(incident().model_copy(update={"id": IncidentId("inc-2")}))


def test_a_resolved_key_may_get_a_new_incident(world: World) -> None:
    first = incident()
    world.store.create(first)
    resolved = advance(first, WorkloadDeleted(), first.opened_at).incident
    world.store.replace(resolved, expected_version=first.version)
    second = incident().model_copy(update={"id": IncidentId("inc-2")})
    world.store.create(second)
    assert world.store.find_by_key(second.key) == second


def test_replace_is_compare_and_set_on_version(world: World) -> None:
    opened = incident()
    world.store.create(opened)
    clicked = advance(opened, RollbackClicked(user="U0ALICE"), opened.opened_at).incident  # type: ignore[arg-type]
    world.store.replace(clicked, expected_version=opened.version)
    with pytest.raises(ConcurrentUpdate):
        world.store.replace(clicked, expected_version=opened.version)
    assert world.store.get(opened.id) == clicked


def test_the_card_reference_survives_in_the_store(world: World) -> None:
    opened = incident()
    world.store.create(opened)
    card = MessageRef(channel=CARD_CHANNEL, ts="1700000000.000001")
    posted = advance(opened, CardPosted(card), opened.opened_at).incident
    world.store.replace(posted, expected_version=opened.version)
    again = world.make_store().get(opened.id)
    assert again is not None
    assert again.card == card


def test_resolved_incidents_leave_the_live_list_once_their_card_is_current(world: World) -> None:
    opened = incident()
    world.store.create(opened)
    resolved = advance(opened, WorkloadDeleted(), opened.opened_at).incident
    world.store.replace(resolved, expected_version=opened.version)
    assert [i.id for i in world.store.live()] == [opened.id]  # its card still says "failing"
    refreshed = resolved.model_copy(update={"version": resolved.version + 1, "is_card_stale": False})
    world.store.replace(refreshed, expected_version=resolved.version)
    assert world.store.live() == []


def test_resolved_incidents_expire_after_the_retention(world: World) -> None:
    store = world.make_store(retention=timedelta(milliseconds=200))
    opened = incident()
    store.create(opened)
    resolved = advance(opened, WorkloadDeleted(), opened.opened_at).incident
    store.replace(resolved, expected_version=opened.version)
    world.pass_time(timedelta(milliseconds=400))
    assert store.get(opened.id) is None


def test_one_holder_per_context_lease_with_rising_tokens(world: World) -> None:
    first = world.leases.acquire(LEASE, "replica-a", TTL)
    assert first is not None
    assert world.leases.acquire(LEASE, "replica-b", TTL) is None
    assert world.leases.renew(first, "replica-a", TTL)
    world.pass_time(TTL * 2)
    second = world.leases.acquire(LEASE, "replica-b", TTL)
    assert second is not None
    assert second.token > first.token
    assert not world.leases.renew(first, "replica-a", TTL)


def test_a_stale_holder_cannot_write_incidents(world: World) -> None:
    stale = world.leases.acquire(LEASE, "replica-a", TTL)
    assert stale is not None
    opened = incident()
    world.store.create(opened, fence=stale)
    world.pass_time(TTL * 2)
    fresh = world.leases.acquire(LEASE, "replica-b", TTL)
    assert fresh is not None
    assert not world.store.holds(stale)
    changed = advance(opened, signal_detected(opened), opened.opened_at).incident
    with pytest.raises(FencedOut):
        world.store.replace(changed, expected_version=opened.version, fence=stale)
    world.store.replace(changed, expected_version=opened.version, fence=fresh)


def test_a_released_lease_is_free_at_once(world: World) -> None:
    held = world.leases.acquire(LEASE, "replica-a", timedelta(minutes=5))
    assert held is not None
    world.leases.release(held, "replica-a")
    assert world.leases.acquire(LEASE, "replica-b", TTL) is not None


def signal_detected(opened: Any) -> Any:
    from bot.core.incidents import Detected

    return Detected(signal(reason="CrashLoopBackOff", since=opened.opened_at))
