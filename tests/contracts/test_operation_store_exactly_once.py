"""The store's side of exactly-once: fencing tokens, the lock's lifetime, lossless dedup and retention.

Same harness as test_operation_store.py (in-memory fake, one Redis, a Redis Cluster). The story behind the
fencing tests: replica A executes an operation with fence 1, is paused past its lease, replica B claims the
execution (a compare-and-set that raises the fence to 2), then A wakes up and tries to write.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.core.errors import ConcurrentUpdate, FencedOut, TargetBusy
from bot.core.operations import MessageRef, Operation, Phase
from bot.ports import OperationStore
from tests.contracts.conftest import PAST_SHORT_TTL, SHORT_TTL, Harness
from tests.fakes.operations import CHANNEL, advanced, make_operation

LOCK_TTL = timedelta(minutes=15)


def claimed(operation: Operation, **changes: object) -> Operation:
    """The next version of `operation` with its fence raised by one (a claim or takeover)."""
    return advanced(operation, fence=operation.fence + 1, **changes)


def executing(store: OperationStore, lock_ttl: timedelta = LOCK_TTL) -> Operation:
    """An operation rolling back under replica A, fence 1, version 3."""
    operation = make_operation()
    store.create(operation, lock_ttl)
    approved = advanced(operation, phase=Phase.APPROVED)
    store.replace(approved, expected_version=1)
    rolling = claimed(approved, phase=Phase.ROLLING_BACK, executor="replica-a")
    store.replace(rolling, expected_version=2)
    return rolling


def taken_over(store: OperationStore, operation: Operation) -> Operation:
    """Replica B claims the execution: version + 1, fence + 1."""
    current = store.get(operation.id)
    assert current is not None
    new = claimed(current, executor="replica-b")
    store.replace(new, expected_version=current.version)
    return new


# --- fencing ----------------------------------------------------------------------------------------------------


def test_write_with_the_current_fence_lands(store: OperationStore) -> None:
    rolling = executing(store)
    done = advanced(rolling, phase=Phase.SUCCEEDED)

    store.replace(done, expected_version=rolling.version, fence=1)

    assert store.get(rolling.id) == done


def test_stale_executor_is_fenced_out_and_writes_nothing(store: OperationStore) -> None:
    rolling = executing(store)
    current = taken_over(store, rolling)
    audit_before = list(store.audit(rolling.id))

    with pytest.raises(FencedOut, match="fenced at 2"):
        store.replace(advanced(rolling, phase=Phase.FAILED), expected_version=rolling.version, fence=1)

    assert store.get(rolling.id) == current
    assert list(store.audit(rolling.id)) == audit_before
    holder = store.lock_holder(rolling.target.lock_key)
    assert holder is not None
    assert holder.operation_id == rolling.id  # a refused terminal write releases nothing


def test_fencing_is_checked_before_the_version(store: OperationStore) -> None:
    rolling = executing(store)
    current = taken_over(store, rolling)
    # The stale writer re-read nothing but guesses the right version: the fence still stops it.
    stale = advanced(current, phase=Phase.FAILED, fence=1)

    with pytest.raises(FencedOut):
        store.replace(stale, expected_version=current.version, fence=1)

    assert store.get(rolling.id) == current


def test_write_that_lowers_the_fence_is_refused_even_without_a_token(store: OperationStore) -> None:
    rolling = executing(store)
    lowered = advanced(rolling, phase=Phase.FAILED, fence=0)

    with pytest.raises(FencedOut):
        store.replace(lowered, expected_version=rolling.version)

    assert store.get(rolling.id) == rolling


def test_write_that_raises_the_fence_by_more_than_one_is_a_bug(store: OperationStore) -> None:
    rolling = executing(store)

    with pytest.raises(ValueError, match="by one at most"):
        store.replace(advanced(rolling, fence=3), expected_version=rolling.version)

    assert store.get(rolling.id) == rolling
    assert [entry.version for entry in store.audit(rolling.id)] == [1, 2, 3]


def test_only_one_of_two_racing_claims_wins(store: OperationStore) -> None:
    rolling = executing(store)
    first = claimed(rolling, executor="replica-b")
    second = claimed(rolling, executor="replica-c")
    store.replace(first, expected_version=rolling.version)

    with pytest.raises(ConcurrentUpdate):
        store.replace(second, expected_version=rolling.version)

    assert store.get(rolling.id) == first


def test_refresh_with_a_stale_fence_is_fenced_out(harness: Harness) -> None:
    store = harness.store
    rolling = executing(store, lock_ttl=SHORT_TTL)
    taken_over(store, rolling)

    with pytest.raises(FencedOut):
        store.refresh_lock(rolling, LOCK_TTL, fence=1)
    harness.pass_time(PAST_SHORT_TTL)

    assert store.lock_holder(rolling.target.lock_key) is None  # the stale refresh did not extend the lock


def test_refresh_with_the_current_fence_extends_the_lock(harness: Harness) -> None:
    store = harness.store
    rolling = executing(store, lock_ttl=SHORT_TTL)

    store.refresh_lock(rolling, LOCK_TTL, fence=1)
    harness.pass_time(PAST_SHORT_TTL)

    holder = store.lock_holder(rolling.target.lock_key)
    assert holder is not None
    assert holder.operation_id == rolling.id


def test_refresh_with_the_current_fence_still_yields_to_another_holder(harness: Harness) -> None:
    store = harness.store
    rolling = executing(store, lock_ttl=SHORT_TTL)
    harness.pass_time(PAST_SHORT_TTL)
    other = make_operation()
    store.create(other, LOCK_TTL)

    with pytest.raises(TargetBusy, match=other.id):
        store.refresh_lock(rolling, LOCK_TTL, fence=1)


# --- the lock's lifetime ----------------------------------------------------------------------------------------


def test_approval_with_a_lock_ttl_extends_the_lock(harness: Harness) -> None:
    store = harness.store
    operation = make_operation()
    store.create(operation, SHORT_TTL)

    store.replace(advanced(operation, phase=Phase.APPROVED), expected_version=1, lock_ttl=LOCK_TTL)
    harness.pass_time(PAST_SHORT_TTL)

    holder = store.lock_holder(operation.target.lock_key)
    assert holder is not None
    assert holder.operation_id == operation.id


def test_write_without_a_lock_ttl_leaves_the_lock_to_expire(harness: Harness) -> None:
    store = harness.store
    operation = make_operation()
    store.create(operation, SHORT_TTL)

    store.replace(advanced(operation, phase=Phase.APPROVED), expected_version=1)
    harness.pass_time(PAST_SHORT_TTL)

    assert store.lock_holder(operation.target.lock_key) is None


@pytest.mark.parametrize("lock_ttl", [None, LOCK_TTL], ids=["store-default", "given"])
def test_in_flight_write_takes_an_expired_lock_back(harness: Harness, lock_ttl: timedelta | None) -> None:
    store = harness.make_store(default_lock_ttl=LOCK_TTL)
    operation = make_operation()
    store.create(operation, SHORT_TTL)
    harness.pass_time(PAST_SHORT_TTL)

    store.replace(advanced(operation, phase=Phase.APPROVED), expected_version=1, lock_ttl=lock_ttl)
    harness.pass_time(PAST_SHORT_TTL)  # the lock taken back outlives the first TTL

    holder = store.lock_holder(operation.target.lock_key)
    assert holder is not None
    assert holder.operation_id == operation.id
    with pytest.raises(TargetBusy):
        store.create(make_operation(), LOCK_TTL)


def test_operation_that_lost_its_target_can_still_be_ended_failed(harness: Harness) -> None:
    store = harness.store
    rolling = executing(store, lock_ttl=SHORT_TTL)
    harness.pass_time(PAST_SHORT_TTL)
    other = make_operation()
    store.create(other, LOCK_TTL)
    failed = advanced(rolling, phase=Phase.FAILED)

    store.replace(failed, expected_version=rolling.version, fence=1)

    assert store.get(rolling.id) == failed
    holder = store.lock_holder(other.target.lock_key)
    assert holder is not None
    assert holder.operation_id == other.id


# --- lossless dedup -----------------------------------------------------------------------------------------------


def test_is_delivered_reads_the_marker_without_setting_it(harness: Harness) -> None:
    store = harness.store
    assert store.is_delivered("event:Ev0CHECK") is False
    assert store.is_delivered("event:Ev0CHECK") is False
    assert store.first_delivery("event:Ev0CHECK", SHORT_TTL) is True
    assert store.is_delivered("event:Ev0CHECK") is True

    harness.pass_time(PAST_SHORT_TTL)

    assert store.is_delivered("event:Ev0CHECK") is False


# --- retention ------------------------------------------------------------------------------------------------------


def test_finished_operation_is_forgotten_after_retention_with_its_trail(harness: Harness) -> None:
    store = harness.make_store(retention=SHORT_TTL)
    finished, preview = make_operation(), make_operation(phase=Phase.PREVIEW)
    request, later = MessageRef(channel=CHANNEL, ts="1.000100"), MessageRef(channel=CHANNEL, ts="1.000200")
    store.create(finished, LOCK_TTL)
    store.link_message(finished.id, request)
    store.replace(advanced(finished, phase=Phase.SUCCEEDED), expected_version=1)
    store.link_message(finished.id, later)  # the final summary, posted after the end
    store.create(preview, LOCK_TTL)
    in_flight = make_operation()
    store.create(in_flight, LOCK_TTL)
    assert store.get(preview.id) == preview

    harness.pass_time(PAST_SHORT_TTL)

    assert store.get(finished.id) is None
    assert store.audit(finished.id) == []
    assert store.find_by_message(request) is None
    assert store.find_by_message(later) is None
    assert store.get(preview.id) is None  # a dry run is finished from the start
    assert store.get(in_flight.id) == in_flight
    assert [op.id for op in store.in_flight()] == [in_flight.id]


def test_operations_in_flight_never_expire(harness: Harness) -> None:
    store = harness.make_store(retention=SHORT_TTL)
    operation = make_operation()
    store.create(operation, LOCK_TTL)
    store.replace(advanced(operation, phase=Phase.APPROVED), expected_version=1)

    harness.pass_time(PAST_SHORT_TTL)

    assert store.get(operation.id) == advanced(operation, phase=Phase.APPROVED)
    assert len(store.audit(operation.id)) == 2
