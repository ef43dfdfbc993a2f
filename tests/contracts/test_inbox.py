"""The Inbox contract: parked work survives its replica, and is adopted by exactly one other replica.

Same harness as the store contract (in-memory fake, one Redis, a Redis Cluster). Replicas are just names
here: "replica-a" parks, its heartbeat lapses or it says goodbye, "replica-b" and others adopt.
"""

from __future__ import annotations

from datetime import timedelta

from bot.ports import Inbox, ParkedWork
from tests.contracts.conftest import PAST_SHORT_TTL, SHORT_TTL, Harness
from tests.contracts.test_operation_store import race

HEARTBEAT = timedelta(minutes=1)
PAYLOAD = '{"kind": "reaction", "user": "U0BBB", "name": "white_check_mark"}'


def test_work_of_a_live_replica_is_never_adopted(harness: Harness) -> None:
    inbox = harness.make_inbox()
    inbox.heartbeat("replica-a", HEARTBEAT)
    inbox.park("event:Ev1", PAYLOAD, "replica-a")

    assert inbox.adopt("replica-b") == []


def test_work_of_a_replica_whose_heartbeat_lapsed_is_adopted_intact(harness: Harness) -> None:
    inbox = harness.make_inbox()
    inbox.heartbeat("replica-a", SHORT_TTL)
    inbox.park("event:Ev1", PAYLOAD, "replica-a")
    parked_at = harness.clock.now()

    harness.pass_time(PAST_SHORT_TTL)
    inbox.heartbeat("replica-b", HEARTBEAT)

    assert list(inbox.adopt("replica-b")) == [
        ParkedWork(key="event:Ev1", payload=PAYLOAD, replica="replica-b", parked_at=parked_at)
    ]
    assert inbox.adopt("replica-c") == []  # adopted once only


def test_work_of_a_replica_that_said_goodbye_is_adoptable_at_once(harness: Harness) -> None:
    inbox = harness.make_inbox()
    inbox.heartbeat("replica-a", HEARTBEAT)
    inbox.park("event:Ev1", PAYLOAD, "replica-a")

    inbox.goodbye("replica-a")

    assert [work.key for work in inbox.adopt("replica-b")] == ["event:Ev1"]


def test_unparked_work_is_never_adopted(harness: Harness) -> None:
    inbox = harness.make_inbox()
    inbox.park("event:Ev1", PAYLOAD, "replica-a")
    inbox.park("event:Ev2", PAYLOAD, "replica-a")

    inbox.unpark("event:Ev1")
    inbox.goodbye("replica-a")

    assert [work.key for work in inbox.adopt("replica-b")] == ["event:Ev2"]


def test_a_replica_does_not_adopt_its_own_work(harness: Harness) -> None:
    inbox = harness.make_inbox()
    inbox.park("event:Ev1", PAYLOAD, "replica-a")

    assert inbox.adopt("replica-a") == []


def test_parking_a_key_again_keeps_the_latest_payload(harness: Harness) -> None:
    inbox = harness.make_inbox()
    inbox.park("event:Ev1", "old", "replica-a")
    inbox.park("event:Ev1", PAYLOAD, "replica-a")
    inbox.goodbye("replica-a")

    assert [(work.key, work.payload) for work in inbox.adopt("replica-b")] == [("event:Ev1", PAYLOAD)]


def test_adoption_takes_at_most_the_limit_and_leaves_the_rest_for_later(harness: Harness) -> None:
    inbox = harness.make_inbox()
    for n in range(5):
        inbox.park(f"event:Ev{n}", PAYLOAD, "replica-a")
    inbox.heartbeat("replica-b", HEARTBEAT)

    first = inbox.adopt("replica-b", limit=3)
    rest = inbox.adopt("replica-c", limit=3)

    assert len(first) == 3
    assert len(rest) == 2
    assert {work.key for work in [*first, *rest]} == {f"event:Ev{n}" for n in range(5)}


def test_adopted_work_is_protected_by_the_adopters_heartbeat(harness: Harness) -> None:
    inbox = harness.make_inbox()
    inbox.park("event:Ev1", PAYLOAD, "replica-a")
    inbox.heartbeat("replica-b", HEARTBEAT)
    inbox.adopt("replica-b")

    assert inbox.adopt("replica-c") == []

    inbox.goodbye("replica-b")
    assert [work.replica for work in inbox.adopt("replica-c")] == ["replica-c"]


def test_racing_adopters_never_get_the_same_item(harness: Harness) -> None:
    inbox = harness.make_inbox()
    keys = {f"event:Ev{n}" for n in range(40)}
    for key in sorted(keys):
        inbox.park(key, PAYLOAD, "replica-gone")
    adopters = [f"replica-{n}" for n in range(8)]
    for adopter in adopters:
        inbox.heartbeat(adopter, HEARTBEAT)

    outcomes = race(lambda adopter: adopter_takes(inbox, adopter), adopters)

    assert all(isinstance(outcome, list) for outcome in outcomes)  # no adopter failed
    taken = [key for outcome in outcomes if isinstance(outcome, list) for key in outcome]
    assert sorted(taken) == sorted(keys)  # every item once: none lost, none twice


def adopter_takes(inbox: Inbox, adopter: str) -> list[str]:
    return [work.key for work in inbox.adopt(adopter, limit=10)] + [work.key for work in inbox.adopt(adopter, limit=10)]
