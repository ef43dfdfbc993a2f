"""The Helm and ECS rules (detection.md §6.4–6.5), and the verification of a finished rollback."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from bot.core.detection import (
    EcsServiceSnapshot,
    Health,
    HelmReleaseSnapshot,
    HelmStatus,
    Observations,
    Verdict,
    VerificationState,
    judge_ecs_service,
    judge_helm_release,
    judge_workload,
    latest_releases,
    verify_rollback,
)
from bot.core.detection.snapshots import WorkloadSnapshot
from tests.core.detection_objects import (
    SETTINGS,
    condition,
    deployment,
    ecs_deployment,
    ecs_service,
    helm_secret,
)
from tests.core.factories import T0

# --- Helm -----------------------------------------------------------------------------------------------------


def release(version: int, status: str, modified_at: datetime | None = None) -> HelmReleaseSnapshot:
    return HelmReleaseSnapshot.from_manifest(helm_secret("workshop", version, status, modified_at))


def test_a_release_secret_is_read_from_its_labels_alone() -> None:
    snapshot = release(7, "pending-upgrade", modified_at=T0)
    assert (snapshot.name, snapshot.namespace, snapshot.revision) == ("workshop", "shop", 7)
    assert snapshot.status is HelmStatus.PENDING_UPGRADE
    assert snapshot.modified_at == T0


def test_an_unknown_status_label_is_unknown_not_an_error() -> None:
    assert release(1, "somethingnew").status is HelmStatus.UNKNOWN


def test_only_the_newest_revision_of_each_release_is_judged() -> None:
    other = HelmReleaseSnapshot.from_manifest(helm_secret("other", 1, "deployed"))
    newest = latest_releases([release(3, "failed"), release(5, "deployed"), other, release(4, "superseded")])
    assert [(r.name, r.revision) for r in newest] == [("other", 1), ("workshop", 5)]


def test_a_failed_latest_revision_is_an_incident_at_once() -> None:
    verdict = judge_helm_release(release(6, "failed", modified_at=T0), T0, SETTINGS, Observations())
    assert verdict.signal is not None
    assert verdict.signal.reason == "failed"
    assert verdict.signal.revision == "6"
    assert verdict.signal.revision_number == 6
    assert verdict.signal.since == T0
    assert not verdict.signal.is_stuck


@pytest.mark.parametrize("status", ["pending-install", "pending-upgrade", "pending-rollback"])
def test_a_pending_release_is_stuck_after_stall_after(status: str) -> None:
    pending = release(6, status)
    early = judge_helm_release(pending, T0, SETTINGS, Observations())
    assert early.health is Health.PROGRESSING
    late = judge_helm_release(pending, T0 + timedelta(minutes=10), SETTINGS, early.observations)
    assert late.signal is not None
    assert late.signal.reason == status
    assert late.signal.is_stuck
    assert late.signal.since == T0


def test_helms_own_modified_time_counts_so_a_restart_does_not_reset_the_stuck_clock() -> None:
    pending = release(6, "pending-upgrade", modified_at=T0)
    verdict = judge_helm_release(pending, T0 + timedelta(minutes=11), SETTINGS, Observations())
    assert verdict.signal is not None
    assert verdict.signal.is_stuck


def test_a_deployed_release_recovers_then_is_healthy() -> None:
    memory = judge_helm_release(release(7, "deployed"), T0, SETTINGS, Observations()).observations
    verdict = judge_helm_release(release(7, "deployed"), T0 + timedelta(minutes=2), SETTINGS, memory)
    assert verdict.health is Health.HEALTHY
    assert verdict.observations.settled_revision == "7"


@pytest.mark.parametrize("status", ["uninstalled", "uninstalling", "superseded", "unknown"])
def test_releases_going_away_are_ignored(status: str) -> None:
    assert judge_helm_release(release(7, status), T0, SETTINGS, Observations()).health is Health.IGNORED


# --- ECS ------------------------------------------------------------------------------------------------------


def service(obj: dict[str, object]) -> EcsServiceSnapshot:
    return EcsServiceSnapshot.from_manifest("default", obj)


BREAKER_REASON = "ECS deployment circuit breaker: tasks failed to start."


def test_a_failed_rollout_without_breaker_rollback_is_an_incident_with_a_button() -> None:
    failed = ecs_deployment("ecs-svc/222", "PRIMARY", 8, "FAILED", reason=BREAKER_REASON, running=0, failed=3)
    snapshot = service(ecs_service([failed], rollback=False, events=("(service web) failed to launch a task",)))
    verdict = judge_ecs_service(snapshot, T0, SETTINGS, Observations())
    assert verdict.signal is not None
    assert verdict.signal.reason == "FAILED"
    assert verdict.signal.revision == "ecs-svc/222"
    assert verdict.signal.revision_number == 8
    assert not verdict.signal.is_rolling_back_by_itself
    assert verdict.signal.messages == (BREAKER_REASON, "(service web) failed to launch a task")
    assert [(c.reason, c.count) for c in verdict.signal.counts] == [("FAILED", 1), ("failed tasks", 3)]


@pytest.mark.parametrize(("running", "made_by"), [(7, "op-1"), (9, None)])
def test_a_failing_deployment_of_the_revision_rollbot_rolled_back_to_is_marked_as_its_own(
    running: int, made_by: str | None
) -> None:
    failed = ecs_deployment("ecs-svc/333", "PRIMARY", running, "FAILED", reason=BREAKER_REASON, running=0, failed=3)
    tags = [{"key": "rollbot:operation", "value": "op-1"}, {"key": "rollbot:rolled-back-to", "value": "web:7"}]
    snapshot = service({**ecs_service([failed], rollback=False), "tags": tags})
    verdict = judge_ecs_service(snapshot, T0, SETTINGS, Observations())
    assert verdict.signal is not None
    assert verdict.signal.made_by_operation == made_by


def test_a_circuit_breaker_rolling_back_by_itself_is_said_and_offers_no_button() -> None:
    failed = ecs_deployment("ecs-svc/222", "ACTIVE", 8, "FAILED", reason=BREAKER_REASON, failed=3)
    rollback = ecs_deployment("ecs-svc/333", "PRIMARY", 7, "IN_PROGRESS", running=2, at=T0 + timedelta(seconds=5))
    verdict = judge_ecs_service(service(ecs_service([rollback, failed])), T0, SETTINGS, Observations())
    assert verdict.signal is not None
    assert verdict.signal.is_rolling_back_by_itself
    assert verdict.signal.revision == "ecs-svc/222"


def test_once_ecs_has_rolled_back_the_service_recovers() -> None:
    back = ecs_deployment("ecs-svc/333", "PRIMARY", 7, "COMPLETED")
    snapshot = service(ecs_service([back]))
    first = judge_ecs_service(snapshot, T0, SETTINGS, Observations())
    assert first.health is Health.RECOVERING
    assert judge_ecs_service(snapshot, T0 + timedelta(minutes=2), SETTINGS, first.observations).health is Health.HEALTHY


def test_tasks_failing_to_start_without_a_breaker_open_after_failing_for() -> None:
    trying = ecs_deployment("ecs-svc/444", "PRIMARY", 9, "IN_PROGRESS", running=0, failed=5)
    old = ecs_deployment("ecs-svc/333", "ACTIVE", 8, "COMPLETED")
    snapshot = service(ecs_service([trying, old], breaker=False, rollback=False))
    early = judge_ecs_service(snapshot, T0, SETTINGS, Observations())
    assert early.health is Health.PROGRESSING
    late = judge_ecs_service(snapshot, T0 + timedelta(minutes=2), SETTINGS, early.observations)
    assert late.signal is not None
    assert late.signal.reason == "TasksFailedToStart"
    assert late.signal.revision_number == 9


def test_an_ecs_rollout_in_progress_is_progressing() -> None:
    trying = ecs_deployment("ecs-svc/444", "PRIMARY", 9, "IN_PROGRESS", running=1)
    old = ecs_deployment("ecs-svc/333", "ACTIVE", 8, "COMPLETED")
    assert judge_ecs_service(service(ecs_service([trying, old])), T0, SETTINGS, Observations()).health is (
        Health.PROGRESSING
    )


def test_a_service_without_deployments_is_ignored() -> None:
    assert judge_ecs_service(service(ecs_service([])), T0, SETTINGS, Observations()).health is Health.IGNORED


# --- verification ---------------------------------------------------------------------------------------------


def rolled_back(minutes: float, memory: Observations, *, failing: bool = False) -> Verdict:
    conditions = [condition("Progressing", "False", "ProgressDeadlineExceeded", "timed out")] if failing else None
    snapshot = WorkloadSnapshot.from_manifest(deployment(revision=5, generation=5, conditions=conditions))
    return judge_workload(snapshot, [], T0 + timedelta(minutes=minutes), SETTINGS, memory)


def test_a_rollback_is_verified_healthy_after_healthy_for() -> None:
    first = rolled_back(0, Observations())
    pending = verify_rollback(first, T0, T0, SETTINGS)
    assert pending.state is VerificationState.PENDING
    assert not pending.is_finished
    healthy = verify_rollback(rolled_back(2, first.observations), T0, T0 + timedelta(minutes=2), SETTINGS)
    assert healthy.state is VerificationState.HEALTHY
    assert healthy.elapsed == timedelta(minutes=2)


def test_a_rollback_failing_again_carries_the_signal() -> None:
    failing = verify_rollback(rolled_back(1, Observations(), failing=True), T0, T0 + timedelta(minutes=1), SETTINGS)
    assert failing.state is VerificationState.FAILING
    assert failing.signal is not None
    assert failing.signal.reason == "ProgressDeadlineExceeded"


def test_a_rollback_that_never_settles_is_reported_failing_not_pending_forever() -> None:
    progressing = WorkloadSnapshot.from_manifest(deployment(updated=1, current=4, revision=5, generation=5))
    verdict = judge_workload(progressing, [], T0 + timedelta(minutes=12), SETTINGS, Observations())
    assert verify_rollback(verdict, T0, T0 + timedelta(minutes=11), SETTINGS).state is VerificationState.PENDING
    timed_out = verify_rollback(verdict, T0, T0 + timedelta(minutes=12), SETTINGS)
    assert timed_out.state is VerificationState.FAILING
    assert timed_out.signal is None
