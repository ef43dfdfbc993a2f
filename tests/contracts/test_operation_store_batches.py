"""The OperationStore contract for batches: all of a batch's locks are taken together or none, released
together, refreshed together — against the in-memory fake, one Redis and a Redis Cluster."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.core.errors import TargetBusy
from bot.core.operations import OperationId, Phase
from bot.ports import LockInfo, OperationStore
from tests.contracts.conftest import PAST_SHORT_TTL, SHORT_TTL, Harness
from tests.fakes.operations import APPROVER, REQUESTER, advanced, make_batch, make_operation, make_target

LOCK_TTL = timedelta(minutes=15)


def holders(store: OperationStore, lock_keys: tuple[str, ...]) -> list[OperationId | None]:
    return [holder.operation_id if (holder := store.lock_holder(key)) else None for key in lock_keys]


def test_a_batch_takes_the_lock_of_every_member(store: OperationStore) -> None:
    batch = make_batch()
    store.create(batch, LOCK_TTL)

    assert holders(store, batch.lock_keys) == [batch.id] * 3
    assert store.get(batch.id) == batch
    assert [op.id for op in store.in_flight()] == [batch.id]


def test_one_busy_member_takes_no_lock_and_names_its_holder(store: OperationStore) -> None:
    api = make_operation(id=OperationId("op-api1"), target=make_target("api", backend="ecs"), requester=APPROVER)
    store.create(api, LOCK_TTL)
    batch = make_batch()

    with pytest.raises(TargetBusy) as busy:
        store.create(batch, LOCK_TTL)

    assert str(busy.value) == "api is locked by op-api1 (requested by <@U0BBB> at 14:02 UTC)"
    assert busy.value.holders == {"api": LockInfo(operation_id=api.id, requester=APPROVER, since=api.created_at)}
    assert holders(store, batch.lock_keys) == [None, None, api.id]
    assert store.get(batch.id) is None


def test_every_busy_member_is_named(store: OperationStore) -> None:
    bootcamp = make_operation(id=OperationId("op-boot"), target=make_target("bootcamp", backend="kubernetes"))
    api = make_operation(id=OperationId("op-api2"), target=make_target("api", backend="ecs"))
    store.create(bootcamp, LOCK_TTL)
    store.create(api, LOCK_TTL)

    with pytest.raises(TargetBusy) as busy:
        store.create(make_batch(), LOCK_TTL)

    assert sorted(busy.value.holders) == ["api", "bootcamp"]
    assert "bootcamp is locked by op-boot" in str(busy.value)
    assert "api is locked by op-api2" in str(busy.value)


def test_a_target_in_a_batch_is_busy_for_a_single_rollback(store: OperationStore) -> None:
    batch = make_batch()
    store.create(batch, LOCK_TTL)

    with pytest.raises(TargetBusy, match=f"workshop is locked by {batch.id}"):
        store.create(make_operation(), LOCK_TTL)


@pytest.mark.parametrize("phase", [Phase.SUCCEEDED, Phase.FAILED, Phase.EXPIRED], ids=["ok", "failed", "expired"])
def test_a_finished_batch_releases_every_lock(store: OperationStore, phase: Phase) -> None:
    batch = make_batch()
    store.create(batch, LOCK_TTL)

    store.replace(advanced(batch, phase=phase), expected_version=1)

    assert holders(store, batch.lock_keys) == [None, None, None]
    store.create(make_operation(), LOCK_TTL)  # workshop is free again


def test_refreshing_a_batch_keeps_every_lock(harness: Harness) -> None:
    store = harness.store
    batch = make_batch()
    store.create(batch, SHORT_TTL)

    store.refresh_lock(batch, LOCK_TTL)
    harness.pass_time(PAST_SHORT_TTL)

    assert holders(store, batch.lock_keys) == [batch.id] * 3


def test_a_batch_whose_member_was_taken_meanwhile_cannot_go_on(harness: Harness) -> None:
    store = harness.store
    batch = make_batch()
    store.create(batch, SHORT_TTL)
    harness.pass_time(PAST_SHORT_TTL)
    workshop = make_operation(requester=REQUESTER)
    store.create(workshop, LOCK_TTL)

    with pytest.raises(TargetBusy, match=f"workshop is locked by {workshop.id}"):
        store.refresh_lock(batch, LOCK_TTL)
    with pytest.raises(TargetBusy, match=f"workshop is locked by {workshop.id}"):
        store.replace(advanced(batch, phase=Phase.APPROVED), expected_version=1)

    assert store.get(batch.id) == batch
    assert holders(store, batch.lock_keys) == [None, workshop.id, None]
