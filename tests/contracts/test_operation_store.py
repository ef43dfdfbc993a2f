"""The OperationStore contract: one suite, run against the in-memory fake, one Redis and a Redis Cluster.

If the fake passes what Redis passes, flow tests may trust it. Time is a ManualClock for all; for Redis the
lock and first-delivery TTLs are real, so `pass_time` also waits that long (tens of milliseconds, the only
sleeps in the suite). The harness lives in conftest.py; fencing, lock lifetime and retention are in
test_operation_store_exactly_once.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import pytest

from bot.core.catalog import SlackUserId
from bot.core.errors import ConcurrentUpdate, DuplicateOperation, TargetBusy
from bot.core.operations import MessageRef, Operation, OperationId, Phase
from bot.ports import AuditEntry, LockInfo, OperationStore
from tests.contracts.conftest import PAST_SHORT_TTL, SHORT_TTL, Harness
from tests.fakes.operations import APPROVER, CHANNEL, REQUESTER, advanced, make_operation, make_target

LOCK_TTL = timedelta(minutes=15)
TERMINAL = [Phase.SUCCEEDED, Phase.FAILED, Phase.REJECTED, Phase.EXPIRED, Phase.CANCELLED]
T = TypeVar("T")


def request_message(ts: str = "1700000000.000100") -> MessageRef:
    return MessageRef(channel=CHANNEL, ts=ts)


# --- records -------------------------------------------------------------------------------------------------


def test_created_operation_reads_back_equal(store: OperationStore) -> None:
    operation = make_operation(labels={"incident": "INC-42"})
    store.create(operation, LOCK_TTL)
    assert store.get(operation.id) == operation


def test_unknown_operation_reads_as_none(store: OperationStore) -> None:
    assert store.get(OperationId("op-missing")) is None


@pytest.mark.parametrize("phase", [Phase.PREVIEW, Phase.AWAITING_APPROVAL], ids=["dry-run", "in-flight"])
def test_creating_an_existing_id_again_is_refused(store: OperationStore, phase: Phase) -> None:
    operation = make_operation(phase=phase)
    store.create(operation, LOCK_TTL)
    with pytest.raises(DuplicateOperation, match=operation.id):
        store.create(operation.model_copy(update={"reason": "again"}), LOCK_TTL)
    assert store.get(operation.id) == operation


def test_returned_operation_cannot_change_the_stored_one(store: OperationStore) -> None:
    operation = make_operation(labels={"incident": "INC-42"})
    store.create(operation, LOCK_TTL)
    copy = store.get(operation.id)
    assert copy is not None
    copy.labels["incident"] = "tampered"
    assert store.get(operation.id) == operation


# --- the per-target lock ---------------------------------------------------------------------------------------


def test_in_flight_operation_takes_its_targets_lock(store: OperationStore) -> None:
    operation = make_operation()
    store.create(operation, LOCK_TTL)
    assert store.lock_holder(operation.target.lock_key) == LockInfo(
        operation_id=operation.id, requester=REQUESTER, since=operation.created_at
    )


def test_second_rollback_of_a_locked_target_says_who_holds_it_and_since_when(store: OperationStore) -> None:
    first = make_operation(id=OperationId("op-1a2b"))
    second = make_operation(requester=APPROVER)
    store.create(first, LOCK_TTL)

    with pytest.raises(TargetBusy) as busy:
        store.create(second, LOCK_TTL)

    assert str(busy.value) == "workshop is locked by op-1a2b (requested by <@U0AAA> at 14:02 UTC)"
    assert busy.value.holder == LockInfo(operation_id=first.id, requester=REQUESTER, since=first.created_at)
    assert store.get(second.id) is None
    assert store.audit(second.id) == []
    assert [op.id for op in store.in_flight()] == [first.id]


def test_operations_on_different_targets_do_not_block_each_other(store: OperationStore) -> None:
    store.create(make_operation(), LOCK_TTL)
    store.create(make_operation(target=make_target("bootcamp", backend="kubernetes")), LOCK_TTL)
    store.create(make_operation(target=make_target("myservice", backend="ecs")), LOCK_TTL)
    assert len(store.in_flight()) == 3


def test_dry_run_takes_no_lock(store: OperationStore) -> None:
    preview = make_operation(phase=Phase.PREVIEW)
    store.create(preview, LOCK_TTL)

    assert store.lock_holder(preview.target.lock_key) is None
    store.create(make_operation(), LOCK_TTL)  # the real request is not blocked by the preview
    assert preview.id not in {op.id for op in store.in_flight()}


@pytest.mark.parametrize("phase", TERMINAL, ids=[p.value for p in TERMINAL])
def test_terminal_phase_releases_the_lock(store: OperationStore, phase: Phase) -> None:
    operation = make_operation()
    store.create(operation, LOCK_TTL)

    store.replace(advanced(operation, phase=phase), expected_version=1)

    assert store.lock_holder(operation.target.lock_key) is None
    store.create(make_operation(), LOCK_TTL)


@pytest.mark.parametrize("phase", [Phase.APPROVED, Phase.ROLLING_BACK], ids=["approved", "rolling_back"])
def test_non_terminal_phase_keeps_the_lock(store: OperationStore, phase: Phase) -> None:
    operation = make_operation()
    store.create(operation, LOCK_TTL)

    store.replace(advanced(operation, phase=phase), expected_version=1)

    holder = store.lock_holder(operation.target.lock_key)
    assert holder is not None
    assert holder.operation_id == operation.id
    with pytest.raises(TargetBusy):
        store.create(make_operation(), LOCK_TTL)


def test_lock_expires_after_its_ttl(harness: Harness) -> None:
    store = harness.store
    stale = make_operation()
    store.create(stale, SHORT_TTL)

    harness.pass_time(PAST_SHORT_TTL)

    assert store.lock_holder(stale.target.lock_key) is None
    fresh = make_operation()
    store.create(fresh, LOCK_TTL)
    holder = store.lock_holder(fresh.target.lock_key)
    assert holder is not None
    assert holder.operation_id == fresh.id


def test_finishing_does_not_release_a_lock_another_operation_took_after_expiry(harness: Harness) -> None:
    store = harness.store
    stale = make_operation()
    store.create(stale, SHORT_TTL)
    harness.pass_time(PAST_SHORT_TTL)
    fresh = make_operation()
    store.create(fresh, LOCK_TTL)

    store.replace(advanced(stale, phase=Phase.EXPIRED), expected_version=1)

    holder = store.lock_holder(fresh.target.lock_key)
    assert holder is not None
    assert holder.operation_id == fresh.id


def test_operation_whose_lock_was_taken_by_another_cannot_go_on(harness: Harness) -> None:
    store = harness.store
    stale = make_operation()
    store.create(stale, SHORT_TTL)
    harness.pass_time(PAST_SHORT_TTL)
    fresh = make_operation()
    store.create(fresh, LOCK_TTL)

    with pytest.raises(TargetBusy, match=fresh.id):
        store.replace(advanced(stale, phase=Phase.APPROVED), expected_version=1)

    assert store.get(stale.id) == stale


def test_owner_refreshing_its_lock_keeps_it_past_the_first_ttl(harness: Harness) -> None:
    store = harness.store
    operation = make_operation()
    store.create(operation, SHORT_TTL)

    store.refresh_lock(operation, LOCK_TTL)
    harness.pass_time(PAST_SHORT_TTL)

    holder = store.lock_holder(operation.target.lock_key)
    assert holder is not None
    assert holder.operation_id == operation.id


def test_another_operation_cannot_refresh_the_lock(harness: Harness) -> None:
    store = harness.store
    stale = make_operation()
    store.create(stale, SHORT_TTL)
    harness.pass_time(PAST_SHORT_TTL)
    owner = make_operation()
    store.create(owner, LOCK_TTL)

    with pytest.raises(TargetBusy, match=owner.id) as busy:
        store.refresh_lock(stale, LOCK_TTL)

    assert busy.value.holder == store.lock_holder(owner.target.lock_key)
    holder = store.lock_holder(owner.target.lock_key)
    assert holder is not None
    assert holder.operation_id == owner.id


def test_refresh_by_an_operation_the_store_never_saw_changes_nothing(store: OperationStore) -> None:
    owner = make_operation()
    store.create(owner, LOCK_TTL)

    store.refresh_lock(make_operation(), LOCK_TTL)

    holder = store.lock_holder(owner.target.lock_key)
    assert holder is not None
    assert holder.operation_id == owner.id


def test_refresh_takes_an_expired_lock_back_when_nobody_else_did(harness: Harness) -> None:
    store = harness.store
    operation = make_operation()
    store.create(operation, SHORT_TTL)
    harness.pass_time(PAST_SHORT_TTL)

    store.refresh_lock(operation, LOCK_TTL)

    holder = store.lock_holder(operation.target.lock_key)
    assert holder == LockInfo(operation_id=operation.id, requester=REQUESTER, since=operation.created_at)


@pytest.mark.parametrize("phase", [Phase.PREVIEW, Phase.SUCCEEDED], ids=["dry-run", "finished"])
def test_refresh_of_an_operation_no_longer_in_flight_takes_nothing(store: OperationStore, phase: Phase) -> None:
    operation = make_operation()
    store.create(operation, LOCK_TTL)
    done = advanced(operation, phase=phase)
    store.replace(done, expected_version=1)

    store.refresh_lock(done, LOCK_TTL)
    store.refresh_lock(operation, LOCK_TTL)  # a stale copy still in flight changes nothing either

    assert store.lock_holder(operation.target.lock_key) is None


# --- compare-and-set -------------------------------------------------------------------------------------------


def test_replace_with_the_stored_version_writes_the_new_one(store: OperationStore) -> None:
    operation = make_operation()
    store.create(operation, LOCK_TTL)
    approved = advanced(operation, phase=Phase.APPROVED)

    store.replace(approved, expected_version=1, actor=APPROVER)

    assert store.get(operation.id) == approved


def test_replace_with_a_stale_version_is_a_concurrent_update(store: OperationStore) -> None:
    operation = make_operation()
    store.create(operation, LOCK_TTL)
    approved = advanced(operation, phase=Phase.APPROVED)
    store.replace(approved, expected_version=1)
    rejected = advanced(operation, phase=Phase.REJECTED)  # decided on the old copy

    with pytest.raises(ConcurrentUpdate, match="version 2"):
        store.replace(rejected, expected_version=1)

    assert store.get(operation.id) == approved
    assert [entry.version for entry in store.audit(operation.id)] == [1, 2]


@pytest.mark.parametrize("new_version", [1, 3, 7], ids=["same", "skips-one", "far-ahead"])
def test_new_copy_must_be_exactly_one_version_ahead(store: OperationStore, new_version: int) -> None:
    operation = make_operation()
    store.create(operation, LOCK_TTL)

    with pytest.raises(ValueError, match="must carry version 2"):
        store.replace(operation.model_copy(update={"version": new_version}), expected_version=1)

    assert store.get(operation.id) == operation


def test_replacing_an_unknown_operation_is_a_concurrent_update(store: OperationStore) -> None:
    with pytest.raises(ConcurrentUpdate, match="does not exist"):
        store.replace(advanced(make_operation()), expected_version=1)


def test_racing_replicas_on_one_version_have_exactly_one_winner(store: OperationStore) -> None:
    operation = make_operation()
    store.create(operation, LOCK_TTL)
    contenders = [advanced(operation, phase=Phase.APPROVED, decided_by=SlackUserId(f"U0R{n}")) for n in range(8)]

    outcomes = race(lambda candidate: store.replace(candidate, expected_version=1), contenders)

    assert sum(outcome is None for outcome in outcomes) == 1
    assert all(isinstance(o, ConcurrentUpdate) for o in outcomes if o is not None)
    assert store.get(operation.id) in contenders
    assert [entry.version for entry in store.audit(operation.id)] == [1, 2]


def test_racing_requests_for_one_target_have_exactly_one_winner(store: OperationStore) -> None:
    requests = [make_operation() for _ in range(8)]

    outcomes = race(lambda candidate: store.create(candidate, LOCK_TTL), requests)

    assert sum(outcome is None for outcome in outcomes) == 1
    assert all(isinstance(o, TargetBusy) for o in outcomes if o is not None)
    assert len(store.in_flight()) == 1


# --- audit -----------------------------------------------------------------------------------------------------


def test_audit_lists_every_transition_in_order_with_actor_and_time(harness: Harness) -> None:
    store, clock = harness.store, harness.clock
    requested = make_operation(now=clock.now())
    store.create(requested, LOCK_TTL)
    clock.advance(timedelta(minutes=2))
    approved = advanced(requested, phase=Phase.APPROVED)
    store.replace(approved, expected_version=1, actor=APPROVER, note="approved with :white_check_mark:")
    clock.advance(timedelta(seconds=1))
    rolling = advanced(approved, phase=Phase.ROLLING_BACK)
    store.replace(rolling, expected_version=2)
    clock.advance(timedelta(seconds=40))
    store.replace(advanced(rolling, phase=Phase.SUCCEEDED), expected_version=3, note="4/4 pods ready")

    start = requested.created_at
    assert list(store.audit(requested.id)) == [
        AuditEntry(operation_id=requested.id, at=start, phase="awaiting_approval", version=1, actor=REQUESTER),
        AuditEntry(
            operation_id=requested.id,
            at=start + timedelta(minutes=2),
            phase="approved",
            version=2,
            actor=APPROVER,
            note="approved with :white_check_mark:",
        ),
        AuditEntry(
            operation_id=requested.id, at=start + timedelta(minutes=2, seconds=1), phase="rolling_back", version=3
        ),
        AuditEntry(
            operation_id=requested.id,
            at=start + timedelta(minutes=2, seconds=41),
            phase="succeeded",
            version=4,
            note="4/4 pods ready",
        ),
    ]


def test_audit_of_one_operation_leaves_out_the_others(store: OperationStore) -> None:
    mine = make_operation()
    other = make_operation(target=make_target("bootcamp", backend="kubernetes"))
    store.create(mine, LOCK_TTL)
    store.create(other, LOCK_TTL)
    store.replace(advanced(other, phase=Phase.CANCELLED), expected_version=1, actor=REQUESTER)

    assert [(e.operation_id, e.version) for e in store.audit(mine.id)] == [(mine.id, 1)]
    assert store.audit(OperationId("op-missing")) == []


# --- messages, in-flight listing -------------------------------------------------------------------------------


def test_reaction_on_a_linked_message_finds_the_current_operation(store: OperationStore) -> None:
    operation = make_operation()
    store.create(operation, LOCK_TTL)
    store.link_message(operation.id, request_message("1.000100"))
    store.link_message(operation.id, request_message("1.000200"))  # the progress message, too
    approved = advanced(operation, phase=Phase.APPROVED)
    store.replace(approved, expected_version=1)

    assert store.find_by_message(request_message("1.000100")) == approved
    assert store.find_by_message(request_message("1.000200")) == approved


def test_unlinked_message_finds_nothing(store: OperationStore) -> None:
    operation = make_operation()
    store.create(operation, LOCK_TTL)
    store.link_message(operation.id, request_message("1.000100"))

    assert store.find_by_message(request_message("1.000999")) is None
    assert store.find_by_message(MessageRef(channel="C0OTHER", ts="1.000100")) is None


def test_in_flight_lists_unfinished_operations_oldest_first(harness: Harness) -> None:
    store, clock = harness.store, harness.clock
    created: list[Operation] = []
    for name, backend in [("workshop", "helm"), ("bootcamp", "kubernetes"), ("myservice", "ecs")]:
        operation = make_operation(target=make_target(name, backend=backend), now=clock.now())
        store.create(operation, LOCK_TTL)
        created.append(operation)
        clock.advance(timedelta(seconds=5))
    store.create(make_operation(target=make_target("fluentd"), phase=Phase.PREVIEW), LOCK_TTL)
    rolling = advanced(created[0], phase=Phase.ROLLING_BACK)
    store.replace(rolling, expected_version=1)
    store.replace(advanced(created[1], phase=Phase.FAILED), expected_version=1)

    assert list(store.in_flight()) == [rolling, created[2]]


# --- first delivery, reachability ------------------------------------------------------------------------------


def test_event_delivered_three_times_is_first_only_once(store: OperationStore) -> None:
    deliveries = [store.first_delivery("event:Ev0PV52K25", timedelta(hours=1)) for _ in range(3)]
    assert deliveries == [True, False, False]
    assert store.first_delivery("event:Ev0PV52K26", timedelta(hours=1)) is True


def test_concurrent_deliveries_of_one_event_have_one_first(store: OperationStore) -> None:
    outcomes = race(lambda key: store.first_delivery(key, timedelta(hours=1)), ["event:Ev0RACE"] * 8)
    assert sorted(outcomes, key=str) == [False] * 7 + [True]


def test_event_seen_again_after_its_ttl_counts_as_first(harness: Harness) -> None:
    assert harness.store.first_delivery("command:T0:trigger-1", SHORT_TTL) is True
    harness.pass_time(PAST_SHORT_TTL)
    assert harness.store.first_delivery("command:T0:trigger-1", SHORT_TTL) is True


def test_store_is_reachable(store: OperationStore) -> None:
    assert store.is_reachable() is True


def race(action: Callable[[T], object], arguments: list[T]) -> list[object]:
    """Run `action` on every argument at once (one thread each, released together); results or exceptions."""
    barrier = threading.Barrier(len(arguments))
    outcomes: list[object] = [None] * len(arguments)

    def contend(index: int, argument: T) -> None:
        barrier.wait()
        try:
            outcomes[index] = action(argument)
        except Exception as exc:  # the outcome under test
            outcomes[index] = exc

    threads = [threading.Thread(target=contend, args=pair) for pair in enumerate(arguments)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes
