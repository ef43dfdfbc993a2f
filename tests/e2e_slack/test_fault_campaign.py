"""The fault campaign, trimmed: real replicas are sent every event three times, SIGKILLed and SIGSTOPped.

Each scenario runs once per module (`bench.fault_scenarios`, `quick=True`: 3 replicas × 20 operations, 3
kills, 2 pauses) and the tests read its figures. The interleavings are driven by what the scenario observes in
Redis and Slack (a claim, a lapsed lease, a raised fence), so the outcome does not depend on the machine's speed.
The full-size campaign is `python -m bench.fault_scenarios`.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e_slack.campaign import once_per_module

pytestmark = pytest.mark.slow


triple_delivery = once_per_module("triple_delivery")
sigkill = once_per_module("sigkill")
sigstop = once_per_module("sigstop")


def test_three_replicas_each_sent_every_reaction_count_it_once_and_run_each_rollback_once(
    triple_delivery: dict[str, Any],
) -> None:
    figures = triple_delivery
    assert figures["operations"] == 20
    assert figures["completed"] == 20
    assert figures["doubled"] == 0
    assert figures["deliveries_not_acked"] == 0
    assert figures["approvals_acked"] == 40  # BOB and CAROL on each, every reaction delivered 3 times
    assert figures["approvals_counted"] == 40
    assert figures["lost_approvals"] == 0
    assert figures["counted_twice"] == 0


def test_an_executor_killed_at_any_point_is_taken_over_and_every_thread_finishes(sigkill: dict[str, Any]) -> None:
    figures = sigkill
    assert figures["kill_points"] == {"claimed": 1, "applied": 1, "watching": 1}
    assert figures["completed"] == 3
    assert figures["taken_over"] == 3
    assert figures["doubled"] == 0
    assert figures["not_applied"] == 0
    assert figures["threads_complete"] == 3


def test_a_paused_executor_woken_after_the_takeover_writes_nothing_and_the_target_stays_busy(
    sigstop: dict[str, Any],
) -> None:
    figures = sigstop
    assert figures["completed"] == 2
    assert figures["taken_over"] == 2
    assert figures["doubled"] == 0
    assert figures["stale_replica_said_lost_lease"] == 2
    assert figures["stale_store_writes"] == 0
    # An executor confirms its lease right before it calls the backend; a pause landing between that check and the
    # call (an approval now hands the execution over at once, so the claim is milliseconds from the call) lets at
    # most that one call through after the takeover. The backends' own fencing (rollbot's mark on the workload,
    # helm's recorded revision, the ECS deployment already made) absorbs it: `doubled` above stays 0.
    assert figures["stale_backend_calls"] <= figures["rounds"]
    # Asked twice per round (lease lapsed, then taken over): locked both times, never a second request.
    assert figures["busy_refusals"] == 4
    assert figures["second_requests_accepted"] == 0


def test_a_paused_executor_woken_after_the_takeover_sends_slack_at_most_the_request_it_was_sending(
    sigstop: dict[str, Any],
) -> None:
    # Nothing is sent once the replica could know its lease is gone: the token is asked right before every request.
    # What Slack cannot fence is the one request already allowed when the SIGSTOP landed (the scenario pauses the
    # replica right after its claim, while it reports it): at most that one per round, never a second.
    assert sigstop["stale_slack_writes"] <= sigstop["rounds"], sigstop["stale_slack_writes_by_method"]
    assert sigstop["stale_store_writes"] == 0
