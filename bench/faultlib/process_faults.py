"""Scenarios that hurt the replicas themselves: every event delivered three times, SIGKILL, SIGSTOP.

Each `scenario_<name>(quick, seed)` runs against a fresh `harness.arena` and returns its figures as a dict;
`quick` gives the trimmed, deterministic size the test suite runs. The interleavings that matter are driven
by observed state (a claim or a fence in Redis, a thread line in Slack), never by sleeping and hoping; `seed`
only chooses where an operation is hit and which replica hears what.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from bench.faultlib.harness import Arena, CampaignError, Replica, arena, eventually
from bot.core.operations import Operation
from sandbox.slack.driver import Ack
from sandbox.slack.seed import ALICE, BOB, CAROL, INCIDENT
from tests.fakes.memory_backend import RolloutScript

FINAL_LINE = "rolled back to revision"
# Web API methods that change what people see; a stale replica must call none of them.
SLACK_WRITES = frozenset(
    {"chat.postMessage", "chat.update", "chat.delete", "chat.postEphemeral", "reactions.add", "reactions.remove"}
)


def _figures(started: float, **counts: Any) -> dict[str, Any]:
    return counts | {"wall_seconds": round(time.monotonic() - started, 2)}


# --- 3 replicas, Slack delivering every event 3 times ----------------------------------------------------------


def scenario_triple_delivery(quick: bool, seed: int) -> dict[str, Any]:
    """Every reaction reaches all three replicas at once (same event_id, retry headers): counted once, run once.

    Each operation needs BOB's and CAROL's approval, so a vote counted twice would approve it early and a
    vote lost would leave it waiting. Operations run in waves, one per target at a time; each rollback goes
    one revision further back, so the world's count of applied rollbacks per target must equal the waves.
    """
    started = time.monotonic()
    operations_total, width = (20, 10) if quick else (500, 10)
    waves = operations_total // width
    names = [f"svc-{n:02d}" for n in range(width)]
    rng = random.Random(seed)
    # No fault is injected here: a lease long enough that a loaded machine never makes a replica look dead.
    with arena(dict.fromkeys(names, 2), lease="10s") as place:
        for name in names:
            place.arrange(name, revisions=waves + 1, script=RolloutScript(steps=2))
        replicas = [replica.name for replica in place.spawn_all([f"replica-{n}" for n in range(3)])]
        outcomes: list[dict[str, Any]] = []
        with ThreadPoolExecutor(max_workers=width) as pool:
            for _ in range(waves):
                plans = [(name, rng.sample(replicas, 3)) for name in names]
                outcomes += pool.map(lambda plan: _approve_thrice_delivered(place, *plan), plans)
        operations = [place.operation(o["operation_id"]) for o in outcomes]
        applied = {name: int(place.world_state(name)["rollbacks_applied"]) for name in names}
        calls = [entry for name in names for entry in place.world_state(name).get("call_log", [])]
    per_operation_calls = {o.id: sum(1 for c in calls if c["operation_id"] == o.id) for o in operations}
    approvals_acked = sum(o["approvals_acked"] for o in outcomes)
    counted = [len(op.approvals) for op in operations]
    return _figures(
        started,
        replicas=3,
        deliveries_per_event=3,
        operations=len(operations),
        completed=sum(op.phase.value == "succeeded" for op in operations),
        # A rollback applied twice; `roll_back` called again after a takeover is idempotent and counted apart.
        doubled=sum(max(0, n - waves) for n in applied.values()),
        roll_back_called_again=sum(n > 1 for n in per_operation_calls.values()),
        approvals_acked=approvals_acked,
        approvals_counted=sum(counted),
        lost_approvals=sum(_lost(op, o["acked_by"]) for op, o in zip(operations, outcomes, strict=True)),
        counted_twice=sum(len(op.approvals) - len({a.user for a in op.approvals}) for op in operations),
        deliveries_not_acked=sum(o["not_acked"] for o in outcomes),
    )


def _approve_thrice_delivered(place: Arena, target: str, order: list[str]) -> dict[str, Any]:
    _, operation = place.request(order[0], target)
    assert operation.request_message is not None
    ts = operation.request_message.ts
    acked_by: list[str] = []
    not_acked = 0
    for approver in (BOB, CAROL):
        acks = _deliver_thrice(place, order, approver, ts)
        not_acked += sum(not ack.ok for ack in acks)
        if any(ack.ok for ack in acks):
            acked_by.append(approver)
    place.wait_for_phase(operation, "succeeded", timeout=60)
    return {
        "operation_id": operation.id,
        "acked_by": acked_by,
        "approvals_acked": len(acked_by),
        "not_acked": not_acked,
    }


def _deliver_thrice(place: Arena, order: list[str], approver: str, ts: str) -> list[Ack]:
    """One reaction event, sent at once to three replicas as Slack's first delivery and two retries."""
    event_id = place.drivers[order[0]].new_event_id()

    def deliver(attempt: int) -> Ack:
        return place.drivers[order[attempt]].reaction_added(
            approver,
            "white_check_mark",
            INCIDENT,
            ts,
            event_id=event_id,
            retry_num=attempt or None,
            retry_reason="http_timeout" if attempt else None,
        )

    with ThreadPoolExecutor(max_workers=3) as senders:
        return list(senders.map(deliver, range(3)))


def _lost(operation: Operation, acked_by: list[str]) -> int:
    """Approvals Slack got a 200 for that the operation does not show (or that never led to its outcome)."""
    counted = {a.user for a in operation.approvals}
    if operation.phase.value != "succeeded":
        return len(acked_by)
    return sum(user not in counted for user in acked_by)


# --- SIGKILL of the executing replica --------------------------------------------------------------------------

# Where a rollback is hit: right after the claim is stored, after the backend applied it, while it is watched.
KILL_POINTS = ("claimed", "applied", "watching")


def scenario_sigkill(quick: bool, seed: int) -> dict[str, Any]:
    """SIGKILL the replica executing each rollback at a chosen point; a survivor takes over and finishes it."""
    started = time.monotonic()
    rollbacks = 3 if quick else 50
    rng = random.Random(seed)
    points = list(KILL_POINTS) if quick else [rng.choice(KILL_POINTS) for _ in range(rollbacks)]
    if quick:
        rng.shuffle(points)
    names = [f"app-{n}" for n in range(5)]
    results: list[dict[str, Any]] = []
    with arena(dict.fromkeys(names, 1)) as place, ThreadPoolExecutor(max_workers=1) as spawner:
        for name in names:
            place.arrange(name, revisions=rollbacks + 1, script=RolloutScript(steps=3, hold=True))
        # Quick: a fourth replica up front instead of a replacement after each kill (a start costs seconds).
        generation = 4 if quick else 3
        place.spawn_all([f"replica-{n}" for n in range(generation)])
        replacement: Future[Replica] | None = None
        for index, point in enumerate(points):
            if replacement is not None:
                replacement.result()
            target = names[index % len(names)]
            applied_before = int(place.world_state(target)["rollbacks_applied"])
            via = rng.choice([r.name for r in place.live()])
            _, operation = place.request(via, target)
            assert operation.request_message is not None
            place.drivers[via].reaction_added(BOB, "white_check_mark", INCIDENT, operation.request_message.ts)
            claimed = _claim(place, operation)
            _reach(place, claimed, point)
            victim = claimed.executor
            assert victim is not None
            place.replicas[victim].kill()
            place.retire(victim)
            if not quick:  # keep three replicas: the replacement starts while the survivors take over
                replacement = spawner.submit(place.spawn, f"replica-{generation}")
                generation += 1
            place.backend.release(place.target(target))
            place.wait_for_phase(operation, "succeeded", timeout=60)
            place.wait_for_line(operation, FINAL_LINE)
            place.backend.script(place.target(target), RolloutScript(steps=3, hold=True))
            final = place.operation(operation.id)
            thread = place.thread(operation)
            results.append(
                {
                    "point": point,
                    "completed": final.phase.value == "succeeded",
                    "applied": int(place.world_state(target)["rollbacks_applied"]) - applied_before,
                    "taken_over": final.executor != victim,
                    "thread_complete": any(FINAL_LINE in line for line in thread),
                }
            )
    return _figures(
        started,
        rollbacks=rollbacks,
        kill_points={point: points.count(point) for point in KILL_POINTS},
        completed=sum(r["completed"] for r in results),
        doubled=sum(r["applied"] > 1 for r in results),
        not_applied=sum(r["applied"] < 1 for r in results),
        taken_over=sum(r["taken_over"] for r in results),
        threads_complete=sum(r["thread_complete"] for r in results),
    )


def _claim(place: Arena, operation: Operation) -> Operation:
    """The operation once a replica's claim on it is stored."""

    def claimed() -> Operation | None:
        now = place.operation(operation.id)
        return now if now.executor else None

    return eventually(claimed, what=f"the claim of {operation.id}")


def _reach(place: Arena, operation: Operation, point: str) -> None:
    target = operation.target.name
    if point == "applied":
        eventually(
            lambda: operation.id in place.world_state(target).get("receipts", {}),
            what=f"the backend applying {operation.id}",
        )
    elif point == "watching":
        place.wait_for_line(operation, "pods updated")


# --- SIGSTOP past the lease, SIGCONT after the takeover --------------------------------------------------------


def scenario_sigstop(quick: bool, seed: int) -> dict[str, Any]:
    """Pause the executor past its lease; once another replica took over, wake it: it must stay silent.

    The stale replica is paused right after its claim is stored (even rounds: it may not have called the
    backend yet) or while it watches (odd rounds). While it is paused and its lease has lapsed, and again
    once the takeover is stored, a second `/rollback` of the target must be refused as busy.
    """
    started = time.monotonic()
    rounds = 2 if quick else 20
    rng = random.Random(seed)
    names = [f"api-{n}" for n in range(rounds)]
    results: list[dict[str, Any]] = []
    with arena(dict.fromkeys(names, 1)) as place:
        for name in names:
            place.arrange(name, revisions=3, script=RolloutScript(steps=3, hold=True))
        place.spawn_all(["replica-0", "replica-1"])
        for index, target in enumerate(names):
            results.append(_pause_past_lease(place, target, watching=index % 2 == 1, rng=rng))
    return _figures(
        started,
        rounds=rounds,
        completed=sum(r["completed"] for r in results),
        doubled=sum(r["applied"] > 1 for r in results),
        taken_over=sum(r["taken_over"] for r in results),
        stale_store_writes=sum(r["stale_store_writes"] for r in results),
        stale_slack_writes=sum(len(r["stale_slack_writes"]) for r in results),
        stale_slack_writes_by_method=dict(Counter(m for r in results for m in r["stale_slack_writes"])),
        stale_slack_writes_by_pause_point=dict(Counter(r["paused"] for r in results for _ in r["stale_slack_writes"])),
        stale_slack_reads=sum(r["stale_slack_reads"] for r in results),
        stale_backend_calls=sum(r["stale_backend_calls"] for r in results),
        stale_replica_said_lost_lease=sum(r["lost_lease_logged"] for r in results),
        busy_refusals=sum(r["busy_refusals"] for r in results),
        second_requests_accepted=sum(r["second_requests_accepted"] for r in results),
    )


def _pause_past_lease(place: Arena, target: str, *, watching: bool, rng: random.Random) -> dict[str, Any]:
    via = rng.choice(list(place.replicas))
    _, operation = place.request(via, target)
    assert operation.request_message is not None
    place.drivers[via].reaction_added(BOB, "white_check_mark", INCIDENT, operation.request_message.ts)
    claimed = _claim(place, operation)
    if watching:
        place.wait_for_line(operation, "pods updated")
    stale = place.replicas[str(claimed.executor)]
    stale.signal(signal.SIGSTOP)
    heir = next(r for r in place.replicas.values() if r is not stale)
    busy = 0
    # The lease has lapsed and nobody took over yet (or just did): the target must still be busy.
    eventually(
        lambda: (
            (o := place.operation(operation.id)).lease_until is not None and o.lease_until.timestamp() < time.time()
        ),
        what="the paused executor's lease to lapse",
    )
    busy += _second_request_refused(place, heir.name, target)

    def taken_over() -> Operation | None:
        now = place.operation(operation.id)
        return now if now.fence > claimed.fence and now.executor == heir.name else None

    taken = eventually(taken_over, what=f"{heir.name} taking {operation.id} over")
    busy += _second_request_refused(place, heir.name, target)
    requests_before = len(place.request_messages())
    calls_mark = place.last_call_seq()
    log_mark = stale.log_size()
    stale.signal(signal.SIGCONT)
    lost_logged = _wait_quietly(lambda: "lost the lease" in stale.log_since(log_mark))
    place.backend.release(place.target(target))
    place.wait_for_phase(operation, "succeeded", timeout=60)
    place.wait_for_line(operation, FINAL_LINE)
    writes = [w for w in place.accepted_writes() if w["operation_id"] == operation.id]
    takeover_version = min(w["version"] for w in writes if w["fence"] == taken.fence)
    call_log = place.world_state(target).get("call_log", [])
    stale_calls = place.slack_calls_by(stale, after_seq=calls_mark)
    heir_first_call = next((i for i, c in enumerate(call_log) if c["by"] == heir.name), len(call_log))
    return {
        "paused": "watching" if watching else "claimed",
        "completed": place.operation(operation.id).phase.value == "succeeded",
        "applied": int(place.world_state(target)["rollbacks_applied"]),
        "taken_over": place.operation(operation.id).executor == heir.name,
        "stale_store_writes": sum(w["replica"] == stale.name and w["version"] >= takeover_version for w in writes),
        "stale_slack_writes": [m for m in stale_calls if m in SLACK_WRITES],
        "stale_slack_reads": sum(m not in SLACK_WRITES for m in stale_calls),
        "stale_backend_calls": sum(c["by"] == stale.name for c in call_log[heir_first_call:]),
        "lost_lease_logged": lost_logged,
        "busy_refusals": busy,
        "second_requests_accepted": max(0, len(place.request_messages()) - requests_before),
    }


def _second_request_refused(place: Arena, via: str, target: str) -> int:
    """ALICE asks for the same target again (to revision 1, which exists); 1 when told it is locked, else 0."""
    before = len(place.replies_to(ALICE, "is locked by"))
    ack = place.drivers[via].slash_command(f"{target} 1", user=ALICE, channel=INCIDENT)
    if not ack.ok:
        raise CampaignError(f"/rollback {target} during the takeover was not acked: {ack.status}")
    return int(_wait_quietly(lambda: len(place.replies_to(ALICE, "is locked by")) > before))


def _wait_quietly(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    try:
        eventually(predicate, timeout)
    except CampaignError:
        return False
    return True
