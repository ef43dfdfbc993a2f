"""The fault campaign, trimmed, against the infrastructure: Redis restarted, a Sentinel failover, sick APIs.

Each scenario runs once per module (`bench.fault_scenarios`, `quick=True`): the store Redis killed twice while
second approvals arrive; one Sentinel failover while a rollout is held open and a vote arrives; four kube
rollbacks against kubesim failing PATCHes (500, 409) and holding GETs back; four rollbacks on three replicas
while the fake Slack storms `chat.*` with 429s and 503s. Which request meets which injected fault depends on
thread timing, so the kube and Slack tests assert what must hold for every operation, not how many failed.
The full-size campaign is `python -m bench.fault_scenarios redis_restart sentinel_failover kube_faults
slack_storm`.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests._policy import require_tool
from tests.conformance.conftest import KUBECTL
from tests.e2e_slack.campaign import once_per_module, run_scenario

pytestmark = pytest.mark.slow


redis_restart = once_per_module("redis_restart")
sentinel_failover = once_per_module("sentinel_failover")
slack_storm = once_per_module("slack_storm")


@pytest.fixture(scope="module")
def kube_faults() -> dict[str, Any]:
    # kubesim is in-process; the real kubectl is what the rest of the kube suite needs, so it gates the same way.
    require_tool("kubectl", KUBECTL.exists(), f"the real kubectl at {KUBECTL}")
    return run_scenario("kube_faults")


def test_approvals_acknowledged_while_redis_was_down_are_counted_once_when_it_is_back(
    redis_restart: dict[str, Any],
) -> None:
    figures = redis_restart
    assert figures["redis_restarts"] == 2
    assert figures["operations"] == 4
    assert figures["deliveries_not_acked"] == 0
    assert figures["approvals_acked_while_down"] == 4
    assert figures["approvals_acked"] == 8
    assert figures["approvals_counted"] == 8
    assert figures["lost_approvals"] == 0
    assert figures["counted_twice"] == 0
    assert figures["completed"] == 4
    assert figures["doubled"] == 0
    assert figures["not_applied"] == 0
    assert figures["threads_complete"] == 4


def test_a_sentinel_failover_mid_rollout_finishes_it_once_and_loses_no_vote(
    sentinel_failover: dict[str, Any],
) -> None:
    figures = sentinel_failover
    assert figures["failovers"] == 1
    assert figures["rollouts_completed"] == 1
    assert figures["completed"] == 2, figures["stuck"]
    assert figures["doubled"] == 0
    assert figures["not_applied"] == 0
    assert figures["threads_complete"] == 2
    assert figures["approvals_acked"] == 3
    assert figures["approvals_counted"] == 3
    assert figures["lost_approvals"] == 0
    assert figures["counted_twice"] == 0


def test_kube_api_errors_and_hung_reads_end_every_rollback_truthfully(kube_faults: dict[str, Any]) -> None:
    figures = kube_faults
    assert all(hits > 0 for hits in figures["faults_fired"].values()), figures["faults_fired"]
    assert figures["operations"] == 4
    assert figures["never_created"] == 0
    assert figures["stuck_in_flight"] == 0
    assert figures["succeeded"] + figures["failed"] == 4
    assert figures["succeeded_but_not_running_target"] == 0
    assert figures["failed_without_reason"] == 0
    assert figures["failed_but_running_target"] == 0
    assert figures["threads_with_final_line"] == 4
    assert figures["tracebacks_in_slack"] == []


def test_slack_storms_never_falsify_an_outcome_or_leave_a_request_half_made(slack_storm: dict[str, Any]) -> None:
    figures = slack_storm
    assert all(hits > 0 for hits in figures["storm_hits"].values()), figures["storm_hits"]
    assert figures["operations"] == 4
    assert figures["stuck_in_flight"] == 0
    assert figures["doubled"] == 0
    assert figures["succeeded_but_not_applied"] == 0
    assert figures["tracebacks_in_slack"] == []
    assert figures["succeeded"] + figures["failed"] == figures["operations"] - figures["never_created"]
    # A request whose message Slack kept refusing is not kept half-made, and the requester is told why.
    assert figures["requests_left_half_made"] == 0
    assert figures["requester_told_slack_failed"] >= figures["never_created"]


def test_slack_storms_delay_outcomes_but_every_outcome_reaches_slack(slack_storm: dict[str, Any]) -> None:
    assert slack_storm["outcome_lost_in_slack"] == []
