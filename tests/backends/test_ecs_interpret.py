"""The pure half of the ECS backend on recorded-style DescribeServices / DescribeTaskDefinition payloads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.backends.ecs_interpret import (
    WatchState,
    build_history,
    find_rollback_target,
    interpret_ecs_service,
    observe,
    split_task_definition,
    task_definition_changes,
)
from bot.core.errors import NothingToDo, RevisionNotFound
from bot.core.rollouts import RolloutPhase

ARN = "arn:aws:ecs:us-east-1:123456789012:task-definition/myservice:{}"
T0 = datetime(2026, 11, 22, 5, 0, tzinfo=UTC)


def deployment(
    revision: int, status: str, state: str, running: int, *, desired: int = 2, **extra: Any
) -> dict[str, Any]:
    return {
        "id": f"ecs-svc/{revision}{status}",
        "status": status,
        "taskDefinition": ARN.format(revision),
        "desiredCount": desired,
        "runningCount": running,
        "pendingCount": desired - running,
        "failedTasks": extra.pop("failed", 0),
        "rolloutState": state,
        "rolloutStateReason": extra.pop("reason", f"ECS deployment ecs-svc/{revision} {state.lower()}."),
        "createdAt": extra.pop("created", T0),
        **extra,
    }


def service(*deployments: dict[str, Any], events: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    return {"serviceName": "myservice", "deployments": list(deployments), "events": list(events)}


def event(n: int, message: str, at: datetime = T0) -> dict[str, Any]:
    return {"id": f"e{n}", "createdAt": at, "message": f"(service myservice) {message}"}


@pytest.mark.parametrize(
    ("reference", "expected"),
    [(ARN.format(4), ("myservice", 4)), ("myservice:12", ("myservice", 12)), ("a:b:3", ("a:b", 3))],
    ids=["arn", "name", "colon-in-family"],
)
def test_task_definitions_are_compared_by_family_and_revision(reference: str, expected: tuple[str, int]) -> None:
    assert split_task_definition(reference) == expected


@pytest.mark.parametrize(
    ("current", "active", "expected"),
    [(4, {1, 2, 3, 4}, 3), (5, {1, 3, 5}, 3), (4, {1, 2, 4, 6, 7}, 2)],
    ids=["adjacent", "inactive-skipped", "newer-revisions-ignored"],
)
def test_previous_is_the_newest_active_revision_below_the_running_one(
    current: int, active: set[int], expected: int
) -> None:
    assert find_rollback_target("myservice", current, active) == expected


def test_there_is_no_previous_revision_below_the_oldest_active_one() -> None:
    with pytest.raises(RevisionNotFound, match="nothing older") as caught:
        find_rollback_target("myservice", 3, {3, 4}, {1, 2})
    assert caught.value.available == (3, 4)


def test_inactive_missing_and_current_revisions_are_refused() -> None:
    with pytest.raises(RevisionNotFound, match="INACTIVE"):
        find_rollback_target("myservice", 4, {1, 3, 4}, {2}, requested=2)
    with pytest.raises(RevisionNotFound, match="does not exist; ACTIVE revisions: myservice:1, myservice:3"):
        find_rollback_target("myservice", 4, {1, 3, 4}, {2}, requested=9)
    with pytest.raises(NothingToDo):
        find_rollback_target("myservice", 4, {1, 3, 4}, requested=4)


def test_the_diff_names_added_and_removed_containers() -> None:
    before = {"containerDefinitions": [{"name": "app", "image": "a:2"}, {"name": "sidecar", "image": "s:1"}]}
    after = {"containerDefinitions": [{"name": "app", "image": "a:1"}, {"name": "logs", "image": "l:1"}]}
    assert [(c.scope, c.field, c.before, c.after) for c in task_definition_changes(before, after)] == [
        ("container app", "image", "a:2", "a:1"),
        ("container sidecar", "container", "s:1", None),
        ("container logs", "container", None, "l:1"),
    ]


def test_history_marks_the_primary_and_says_which_deployment_runs_each_revision() -> None:
    payload = service(deployment(3, "PRIMARY", "IN_PROGRESS", 1), deployment(4, "ACTIVE", "COMPLETED", 1))
    history = build_history(payload, {1: "ACTIVE", 2: "INACTIVE", 3: "ACTIVE", 4: "ACTIVE"}, {})
    assert [r.number for r in history] == [1, 2, 3, 4]
    assert [r.number for r in history if r.is_current] == [3]
    assert history[3].description == "ACTIVE deployment, COMPLETED, 1/2 running"


def test_success_needs_the_target_primary_completed_with_every_task_running() -> None:
    progressing = service(deployment(3, "PRIMARY", "IN_PROGRESS", 1), deployment(4, "ACTIVE", "COMPLETED", 1))
    assert interpret_ecs_service(progressing, "myservice:3").phase is RolloutPhase.PROGRESSING
    done = service(deployment(3, "PRIMARY", "COMPLETED", 2))
    status = interpret_ecs_service({"services": [done]}, ARN.format(3))
    assert status.phase is RolloutPhase.SUCCEEDED
    assert (status.ready, status.desired) == (2, 2)


def test_a_stable_service_on_another_revision_is_not_success() -> None:
    # What services_stable accepts after ECS rolled back on its own: one deployment, running == desired.
    stable_elsewhere = service(deployment(4, "PRIMARY", "COMPLETED", 2))
    status = interpret_ecs_service(stable_elsewhere, "myservice:3")
    assert status.phase is RolloutPhase.FAILED
    assert status.reason is not None
    assert "another deployment replaced the rollback" in status.reason


def test_a_circuit_breaker_rollback_is_named_even_after_the_failed_row_is_gone() -> None:
    state = WatchState(target="myservice:3")
    breaking = service(
        deployment(
            4, "PRIMARY", "IN_PROGRESS", 0, reason="ECS deployment circuit breaker: rolling back to deploymentId x."
        ),
        deployment(3, "ACTIVE", "FAILED", 0, failed=3, reason="ECS deployment circuit breaker: task failed to start."),
    )
    state, status = observe(state, breaking)
    assert status.phase is RolloutPhase.FAILED
    assert state.target_failure == "ECS deployment circuit breaker: task failed to start."
    _, later = observe(state, service(deployment(4, "PRIMARY", "COMPLETED", 2)))
    assert later.phase is RolloutPhase.FAILED
    assert later.reason is not None
    assert "circuit breaker stopped the rollback to myservice:3 (ECS deployment circuit breaker: task failed" in (
        later.reason
    )
    assert "rolled the service back to myservice:4 on its own" in later.reason


def test_a_failed_target_deployment_reports_ecs_reason() -> None:
    failed = service(
        deployment(3, "PRIMARY", "FAILED", 0, failed=3, reason="ECS deployment circuit breaker: task failed to start."),
        deployment(4, "ACTIVE", "COMPLETED", 2),
    )
    status = interpret_ecs_service(failed, "myservice:3")
    assert status.phase is RolloutPhase.FAILED
    assert status.reason == (
        "ECS marked the deployment of myservice:3 FAILED: ECS deployment circuit breaker: task failed to start."
    )
    assert status.unhealthy[0].reason == "3 task(s) failed to start"


def test_events_are_new_once_oldest_first_and_deduplicated_by_id_even_with_equal_timestamps() -> None:
    state = WatchState(target="myservice:3", since=T0)
    first = service(
        deployment(3, "PRIMARY", "IN_PROGRESS", 1),
        events=(
            event(2, "has started 1 tasks: (task b).", T0),
            event(1, "has started 1 tasks: (task a).", T0),
            event(0, "was here before the rollback.", T0 - timedelta(minutes=5)),
        ),
    )
    state, status = observe(state, first)
    assert status.events == (
        "(service myservice) has started 1 tasks: (task a).",
        "(service myservice) has started 1 tasks: (task b).",
    )
    second = service(
        deployment(3, "PRIMARY", "IN_PROGRESS", 1),
        events=(event(3, "has started 1 tasks: (task c).", T0), *first["events"]),
    )
    state, status = observe(state, second)
    assert status.events == ("(service myservice) has started 1 tasks: (task c).",)


def test_the_watch_memory_survives_a_resume_token() -> None:
    state = WatchState(
        target="myservice:3", since=T0, seen_events=("e1", "e2"), target_failure="x", target_deployment="d"
    )
    assert WatchState.from_token(state.to_token()) == state


def test_a_breaker_rollback_seen_only_through_its_event_is_still_named() -> None:
    # Between two polls ECS failed the deployment of 3, rolled back to 4 and dropped the FAILED row.
    state = WatchState(target="myservice:3", since=T0, target_deployment="ecs-svc/3PRIMARY")
    later = service(
        deployment(4, "PRIMARY", "COMPLETED", 2),
        events=(event(9, "(deployment ecs-svc/3PRIMARY) deployment failed: tasks failed to start."),),
    )
    _, status = observe(state, later)
    assert status.phase is RolloutPhase.FAILED
    assert status.reason is not None
    assert "circuit breaker stopped the rollback to myservice:3 (deployment failed: tasks failed to start.)" in (
        status.reason
    )


def test_another_deployments_failure_event_is_not_taken_for_ours() -> None:
    state = WatchState(target="myservice:3", since=T0, target_deployment="ecs-svc/3PRIMARY")
    later = service(
        deployment(5, "PRIMARY", "COMPLETED", 2),
        events=(event(9, "(deployment ecs-svc/other) deployment failed: tasks failed to start."),),
    )
    _, status = observe(state, later)
    assert status.reason is not None
    assert "another deployment replaced the rollback" in status.reason


def test_without_a_rollout_state_a_single_settled_deployment_is_success() -> None:
    bare = deployment(3, "PRIMARY", "COMPLETED", 2)
    del bare["rolloutState"]
    assert interpret_ecs_service(service(bare), "myservice:3").phase is RolloutPhase.SUCCEEDED
    still_draining = service(bare, {**deployment(4, "ACTIVE", "COMPLETED", 1), "rolloutState": None})
    assert interpret_ecs_service(still_draining, "myservice:3").phase is RolloutPhase.PROGRESSING
