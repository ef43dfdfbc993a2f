"""The rules for Helm releases and ECS services (detection.md §6.4–6.5).

Helm: the newest revision's status, read from its storage Secret's labels, is enough. `failed` is an incident
at once (helm has given up; nothing retries unless Flux remediation is configured). A `pending-*` status is
normal while helm works, but one that outlives `stall_after` is stuck: helm refuses every new action on the
release ("another operation (install/upgrade/rollback) is in progress") until someone gets it out, so the card
explains how.

ECS: a deployment's `rolloutState=FAILED` (the circuit breaker gave up) is an incident at once. When the breaker
also rolls back, ECS starts a new PRIMARY deployment of the previous task definition by itself: the incident
says so and offers no button of its own. Without a breaker, ECS retries failing tasks forever, so a PRIMARY
deployment whose tasks keep failing to start for `failing_for` is an incident too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from bot.core.catalog import DetectSettings
from bot.core.detection.snapshots import EcsDeployment, EcsServiceSnapshot, HelmReleaseSnapshot, HelmStatus
from bot.core.detection.verdicts import Health, Observations, ReasonCount, Signal, Verdict, distinct_messages, is_held

# ECS's own words for a deployment's rollout.
ECS_FAILED: Final = "FAILED"
ECS_IN_PROGRESS: Final = "IN_PROGRESS"
ECS_COMPLETED: Final = "COMPLETED"
# Our word for tasks that keep failing to start while no circuit breaker watches (ECS has none for it).
TASKS_FAILING_REASON: Final = "TasksFailedToStart"


def judge_helm_release(
    release: HelmReleaseSnapshot, now: datetime, settings: DetectSettings, memory: Observations
) -> Verdict:
    """Judge the newest revision of a release (see `latest_releases`); older revisions are history."""
    summary = f"revision {release.revision} {release.status.value}"
    revision = str(release.revision)
    if release.status is HelmStatus.FAILED:
        fact = f"failed:{revision}"
        since = release.modified_at or memory.since(fact, now)
        signal = Signal(
            reason=release.status.value,
            since=since,
            revision=revision,
            revision_number=release.revision,
            counts=(ReasonCount(reason=release.status.value, count=1),),
        )
        return Verdict(
            health=Health.FAILING, observations=memory.held_since([fact], now), signal=signal, summary=summary
        )
    if release.status.is_pending:
        fact = f"pending:{revision}:{release.status.value}"
        since = release.modified_at or memory.since(fact, now)
        observations = memory.held_since([fact], now)
        if not is_held(since, now, settings.stall_after):
            return Verdict(health=Health.PROGRESSING, observations=observations, summary=summary)
        signal = Signal(
            reason=release.status.value,
            since=since,
            revision=revision,
            revision_number=release.revision,
            counts=(ReasonCount(reason=release.status.value, count=1),),
            is_stuck=True,
        )
        return Verdict(health=Health.FAILING, observations=observations, signal=signal, summary=summary)
    if release.status is HelmStatus.DEPLOYED:
        return _healthy(memory, revision, now, settings, summary)
    # uninstalled, uninstalling, superseded, unknown: nothing a rollback card could help with.
    return Verdict(health=Health.IGNORED, observations=memory.held_since((), now), summary=summary)


def judge_ecs_service(
    service: EcsServiceSnapshot, now: datetime, settings: DetectSettings, memory: Observations
) -> Verdict:
    primary = service.primary
    summary = _ecs_summary(primary)
    failed = sorted(
        (d for d in service.deployments if d.rollout_state == ECS_FAILED),
        key=lambda d: (d.created_at is not None, d.created_at),
    )
    if failed and primary is not None:
        last_failed = failed[-1]
        is_ecs_rolling_back = (
            last_failed.id != primary.id and service.is_circuit_breaker_rollback and primary.rollout_state != ECS_FAILED
        )
        if last_failed.id == primary.id or (is_ecs_rolling_back and primary.rollout_state == ECS_IN_PROGRESS):
            fact = f"failed:{last_failed.id}"
            signal = _ecs_signal(
                service,
                last_failed,
                ECS_FAILED,
                last_failed.updated_at or memory.since(fact, now),
                is_rolling_back_by_itself=is_ecs_rolling_back,
            )
            observations = memory.held_since([fact], now)
            return Verdict(health=Health.FAILING, observations=observations, signal=signal, summary=summary)
    if primary is None:
        return Verdict(health=Health.IGNORED, observations=memory.held_since((), now), summary=summary)
    if primary.rollout_state == ECS_IN_PROGRESS and primary.failed_tasks > 0 and not service.is_circuit_breaker_on:
        fact = f"tasks:{primary.id}"
        since = memory.since(fact, now)
        observations = memory.held_since([fact], now)
        if is_held(since, now, settings.failing_for):
            signal = _ecs_signal(service, primary, TASKS_FAILING_REASON, since, is_rolling_back_by_itself=False)
            return Verdict(health=Health.FAILING, observations=observations, signal=signal, summary=summary)
        return Verdict(health=Health.PROGRESSING, observations=observations, summary=summary)
    is_steady = len(service.deployments) == 1 and primary.running >= primary.desired
    if is_steady and primary.rollout_state in (None, ECS_COMPLETED):
        return _healthy(memory, primary.id, now, settings, summary)
    return Verdict(health=Health.PROGRESSING, observations=memory.held_since((), now), summary=summary)


def _healthy(memory: Observations, revision: str, now: datetime, settings: DetectSettings, summary: str) -> Verdict:
    since = memory.since("healthy", now)
    observations = memory.held_since(["healthy"], now)
    if is_held(since, now, settings.healthy_for):
        settled = observations.model_copy(update={"settled_revision": revision})
        return Verdict(health=Health.HEALTHY, observations=settled, summary=summary)
    return Verdict(health=Health.RECOVERING, observations=observations, summary=summary)


def _ecs_signal(
    service: EcsServiceSnapshot,
    deployment: EcsDeployment,
    reason: str,
    since: datetime,
    *,
    is_rolling_back_by_itself: bool,
) -> Signal:
    counts = [ReasonCount(reason=reason, count=1)]
    if deployment.failed_tasks:
        counts.append(ReasonCount(reason="failed tasks", count=deployment.failed_tasks))
    messages = [deployment.rollout_state_reason, *(event.message for event in service.events)]
    return Signal(
        reason=reason,
        since=since,
        revision=deployment.id,
        revision_number=deployment.task_definition_revision,
        counts=tuple(counts),
        messages=distinct_messages(messages),
        is_rolling_back_by_itself=is_rolling_back_by_itself,
        made_by_operation=service.made_by_rollbot(deployment),
    )


def _ecs_summary(primary: EcsDeployment | None) -> str:
    if primary is None:
        return "no primary deployment"
    state = primary.rollout_state or "steady"
    return f"{primary.running}/{primary.desired} tasks running ({state.lower()})"
