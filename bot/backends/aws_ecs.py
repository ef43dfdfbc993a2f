"""The ECS backend: ecspresso-style rollback of a service to an earlier task-definition revision, with boto3.

This is the I/O half. It reads services and task definitions (`ecs_service`), calls `UpdateService`, suspends
and resumes Application Auto Scaling (`ecs_auto_scaling`), deregisters the rolled-back-from revision, and polls
`DescribeServices` while a rollout runs. Every decision (which revision, what changed, what an observation
means) is taken by `ecs_interpret`. Clients, and the translation of boto3's errors into `bot.core.errors`, are
`ecs_clients`.

What the bot leaves on the service: tags `rollbot:operation`, `rollbot:started-at`, `rollbot:rolled-back-to`
and `rollbot:autoscaling-before`. They make `roll_back` idempotent for one operation (a replica taking over
re-calls it), let `watch_rollout` restore auto scaling exactly as it was, even after a restart, and let failure
detection recognise the deployment a rollback made (`family:revision` it rolled back to), which the automatic
rollback policy never rolls back again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import structlog

from bot.backends import ecs_interpret as rules
from bot.backends.ecs_auto_scaling import (
    SUSPEND_KEYS,
    decode_suspended,
    describe_suspended,
    encode_suspended,
    scalable_target,
    set_suspended,
)
from bot.backends.ecs_clients import EcsClients, translating_errors
from bot.backends.ecs_options import (
    DEREGISTER,
    NO_WAIT,
    RESUME_AUTO_SCALING,
    ROLLBACK_OPTIONS,
    SUSPEND_AUTO_SCALING,
    plan_notes,
    validate_options,
)
from bot.backends.ecs_service import (
    EcsService,
    describe_service,
    describe_target,
    refuse_unsupported,
    revision_statuses,
    task_definition,
)
from bot.core.catalog import Target
from bot.core.detection.snapshots import ECS_OPERATION_TAG, ECS_ROLLED_BACK_TO_TAG
from bot.core.errors import (
    BackendUnavailable,
    BotError,
    RollbackFailed,
)
from bot.core.operations import OperationId
from bot.core.rollouts import (
    BackendOption,
    Revision,
    RevisionNumber,
    RollbackPlan,
    RollbackReceipt,
    RolloutPhase,
    RolloutStatus,
    TargetStatus,
    UnhealthyUnit,
)

log = structlog.get_logger(__name__)

TAG_OPERATION = ECS_OPERATION_TAG
TAG_STARTED_AT = "rollbot:started-at"
TAG_ROLLED_BACK_TO = ECS_ROLLED_BACK_TO_TAG
TAG_AUTOSCALING_BEFORE = "rollbot:autoscaling-before"

# History describes at most this many revisions (one DescribeTaskDefinition each); older ones are listed bare.
HISTORY_DESCRIBED = 20
# The first polls come quickly because a rollback often settles in seconds; then back off, never beyond 5 s
# (boto3's services_stable waiter sleeps 15 s between polls, which is what made reports late).
POLL_FIRST = timedelta(seconds=1)
POLL_MAX = timedelta(seconds=5)
POLL_BACKOFF = 1.5
# Event timestamps are AWS's clock; the tag is ours. Allow this much skew when the tag is the only baseline.
CLOCK_SKEW = timedelta(seconds=5)


class EcsBackend:
    """`ports.Backend` for ECS services using the rolling (ECS) deployment controller."""

    def __init__(
        self,
        clients: EcsClients | None = None,
        *,
        poll_first: timedelta = POLL_FIRST,
        poll_max: timedelta = POLL_MAX,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clients = clients or EcsClients()
        self._poll_first = poll_first
        self._poll_max = min(poll_max, POLL_MAX)
        self._monotonic = monotonic
        self._sleep = sleep

    # --- the port -----------------------------------------------------------------------------------------

    def options(self) -> Sequence[BackendOption]:
        return ROLLBACK_OPTIONS

    def check_target(self, target: Target) -> None:
        refuse_unsupported(describe_target(self._clients, target))

    def history(self, target: Target) -> Sequence[Revision]:
        service = describe_target(self._clients, target)
        ecs = self._clients.ecs(service.spec)
        statuses = revision_statuses(self._clients, service)
        newest = sorted(statuses, reverse=True)[:HISTORY_DESCRIBED]
        described = {n: task_definition(ecs, f"{service.family}:{n}") for n in newest}
        return rules.build_history(service.raw, statuses, described)

    def current_revision(self, target: Target) -> RevisionNumber:
        return RevisionNumber(describe_target(self._clients, target).revision)

    def status(self, target: Target) -> TargetStatus:
        service = describe_target(self._clients, target)
        ecs = self._clients.ecs(service.spec)
        current = task_definition(ecs, service.current)
        primary = rules.primary_deployment(service.raw) or {}
        deployments = list(service.raw.get("deployments") or ())
        running, desired = int(primary.get("runningCount") or 0), int(primary.get("desiredCount") or 0)
        healthy = primary.get("rolloutState") in (None, "COMPLETED") and running == desired and len(deployments) == 1
        failed = int(primary.get("failedTasks") or 0)
        events = [str(e.get("message")) for e in list(service.raw.get("events") or ())[:3]]
        return TargetStatus(
            revision=RevisionNumber(service.revision),
            summary=f"{service.current}: {running}/{desired} tasks running"
            + (f", {primary.get('rolloutState')}" if primary.get("rolloutState") else ""),
            images=rules.container_images(current),
            details=tuple([rules.deployment_line(d) for d in deployments] + events),
            unhealthy=(
                (UnhealthyUnit(name=f"deployment {primary.get('id')}", reason=f"{failed} task(s) failed to start"),)
                if failed
                else ()
            ),
            is_healthy=healthy,
        )

    def plan_rollback(
        self, target: Target, to_revision: RevisionNumber | None, options: Mapping[str, bool | str]
    ) -> RollbackPlan:
        chosen = validate_options(options)
        service = describe_target(self._clients, target)
        refuse_unsupported(service)
        ecs = self._clients.ecs(service.spec)
        statuses = revision_statuses(self._clients, service)
        active = {n for n, s in statuses.items() if s == "ACTIVE"}
        inactive = {n for n, s in statuses.items() if s != "ACTIVE"}
        number = rules.find_rollback_target(service.family, service.revision, active, inactive, to_revision)
        current_td = task_definition(ecs, service.current)
        target_td = task_definition(ecs, f"{service.family}:{number}")
        notes = plan_notes(self._clients, service, number, to_revision, inactive, chosen)
        return RollbackPlan(
            from_revision=RevisionNumber(service.revision),
            to_revision=number,
            changes=rules.task_definition_changes(current_td, target_td),
            notes=tuple(notes),
            options=dict(chosen),
            backend_data={
                "family": service.family,
                "from_task_definition": str(current_td.get("taskDefinitionArn") or service.current),
                "to_task_definition": str(target_td.get("taskDefinitionArn") or f"{service.family}:{number}"),
            },
        )

    def roll_back(self, target: Target, plan: RollbackPlan, operation_id: OperationId) -> RollbackReceipt:
        service = describe_target(self._clients, target)
        refuse_unsupported(service)
        family = plan.backend_data.get("family") or service.family
        to_name, from_name = f"{family}:{plan.to_revision}", f"{family}:{plan.from_revision}"
        to_arn = plan.backend_data.get("to_task_definition") or to_name
        ecs = self._clients.ecs(service.spec)

        if self._already_started(service, operation_id, to_name):
            log.info("ecs.roll_back.already_started", service=service.label, operation=operation_id)
            return RollbackReceipt(
                new_revision=plan.to_revision,
                message=f"this rollback already asked ECS to deploy {to_name}; no second deployment started",
            )
        if service.current == to_name:
            return RollbackReceipt(
                new_revision=plan.to_revision, message=f"{service.label} already runs {to_name}; nothing deployed"
            )
        if service.current != from_name:
            raise RollbackFailed(
                f"{service.label} moved from {from_name} to {service.current} since the preview; nothing was "
                "changed. Ask for the rollback again to see the new plan"
            )

        tags = {
            TAG_OPERATION: operation_id,
            TAG_STARTED_AT: datetime.now(UTC).isoformat(timespec="milliseconds"),
            TAG_ROLLED_BACK_TO: to_name,
        }
        scalable = scalable_target(self._clients, service) if plan.options.get(SUSPEND_AUTO_SCALING) else None
        if scalable is not None:
            # A retry of this operation may find auto scaling already suspended by the first attempt.
            retried = service.tags.get(TAG_OPERATION) == operation_id and TAG_AUTOSCALING_BEFORE in service.tags
            tags[TAG_AUTOSCALING_BEFORE] = (
                service.tags[TAG_AUTOSCALING_BEFORE] if retried else encode_suspended(scalable.get("SuspendedState"))
            )
        arn = str(service.raw["serviceArn"])
        with translating_errors(f"tagging {service.label}"):
            if scalable is None and TAG_AUTOSCALING_BEFORE in service.tags:  # left by an earlier operation
                ecs.untag_resource(resourceArn=arn, tagKeys=[TAG_AUTOSCALING_BEFORE])
            ecs.tag_resource(resourceArn=arn, tags=[{"key": k, "value": v} for k, v in tags.items()])
        if scalable is not None:
            set_suspended(self._clients, service, dict.fromkeys(SUSPEND_KEYS, True))
        try:
            with translating_errors(f"updating {service.label} to {to_name}"):
                answer = ecs.update_service(
                    cluster=service.spec.cluster,
                    service=service.spec.service,
                    taskDefinition=to_arn,
                    forceNewDeployment=False,
                )
        except BotError:
            if scalable is not None:  # nothing was rolled back: do not leave auto scaling suspended
                set_suspended(self._clients, service, decode_suspended(tags[TAG_AUTOSCALING_BEFORE]))
            raise
        primary = rules.primary_deployment(answer.get("service") or {}) or {}
        log.info("ecs.roll_back.updated", service=service.label, to=to_name, deployment=primary.get("id"))
        return RollbackReceipt(
            new_revision=plan.to_revision,
            message=f"ECS accepted the update of {service.label} to {to_name}"
            + (f" (deployment {primary.get('id')})" if primary.get("id") else ""),
        )

    def watch_rollout(
        self, target: Target, plan: RollbackPlan, timeout: timedelta, resume_token: str | None = None
    ) -> Iterator[RolloutStatus]:
        service = describe_target(self._clients, target)
        family = plan.backend_data.get("family") or service.family
        to_name = f"{family}:{plan.to_revision}"
        state = (
            rules.WatchState.from_token(resume_token)
            if resume_token
            else rules.WatchState(target=to_name, since=self._baseline(service, to_name))
        )
        if plan.options.get(NO_WAIT):
            yield self._not_waiting(service, plan, state)
            return
        deadline = self._monotonic() + timeout.total_seconds()
        interval = self._poll_first.total_seconds()
        last_summary: str | None = None
        unavailable: BackendUnavailable | None = None
        status = RolloutStatus(phase=RolloutPhase.PROGRESSING, summary="not observed yet")
        while True:
            changed = False
            if unavailable is None:
                state, status = rules.observe(state, service.raw)
                if status.is_finished:
                    yield self._finish(service, plan, status)
                    return
                changed = status.summary != last_summary or bool(status.events)
                if changed:
                    yield status
                    last_summary = status.summary
                    interval = self._poll_first.total_seconds()
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                reason = (
                    f"timed out after {_human(timeout)} waiting for {to_name} to complete; last seen: {status.summary}"
                )
                if unavailable is not None:
                    reason += f" (the last poll failed: {unavailable})"
                timed_out = RolloutStatus(
                    phase=RolloutPhase.FAILED,
                    summary=status.summary,
                    ready=status.ready,
                    desired=status.desired,
                    updated=status.updated,
                    unhealthy=status.unhealthy,
                    reason=reason,
                )
                yield self._finish(service, plan, timed_out)
                return
            self._sleep(min(interval, remaining))
            if not changed:
                interval = min(interval * POLL_BACKOFF, self._poll_max.total_seconds())
            try:
                service = describe_target(self._clients, target, tags=False)
                unavailable = None
            except BackendUnavailable as exc:
                # A throttled or unreachable poll is not the rollout's outcome: keep watching until the deadline.
                log.warning("ecs.watch.poll_failed", service=service.label, error=str(exc))
                unavailable = exc

    # --- pieces -------------------------------------------------------------------------------------------

    @staticmethod
    def _already_started(service: EcsService, operation_id: OperationId, to_name: str) -> bool:
        tags = service.tags
        if tags.get(TAG_OPERATION) != operation_id:
            return False
        if service.current == to_name:
            return True
        # ECS may already have rolled our deployment back (circuit breaker): it still counts as started.
        started = rules.as_datetime(tags.get(TAG_STARTED_AT))
        for deployment in service.raw.get("deployments") or ():
            created = rules.as_datetime(deployment.get("createdAt"))
            if rules.task_definition_name(str(deployment.get("taskDefinition"))) == to_name and (
                started is None or created is None or created >= started - CLOCK_SKEW
            ):
                return True
        return False

    @staticmethod
    def _baseline(service: EcsService, to_name: str) -> datetime | None:
        """Events from before the rollback are history: keep those created since the target's deployment."""
        created = [
            rules.as_datetime(d.get("createdAt"))
            for d in service.raw.get("deployments") or ()
            if rules.task_definition_name(str(d.get("taskDefinition"))) == to_name
        ]
        known = [c for c in created if c is not None]
        if known:
            return max(known)
        started = rules.as_datetime(service.tags.get(TAG_STARTED_AT))
        return started - CLOCK_SKEW if started else None

    def _not_waiting(self, service: EcsService, plan: RollbackPlan, state: rules.WatchState) -> RolloutStatus:
        _, status = rules.observe(state, service.raw)
        if status.phase is RolloutPhase.FAILED:
            return self._finish(service, plan, status)
        primary = rules.primary_deployment(service.raw) or {}
        accepted = RolloutStatus(
            phase=RolloutPhase.SUCCEEDED,
            summary=f"ECS accepted the rollback to {state.target} (deployment {primary.get('id')}, "
            f"{primary.get('rolloutState') or 'started'}); not waiting for the rollout (--no-wait)",
            ready=status.ready,
            desired=status.desired,
            updated=status.updated,
            events=status.events,
        )
        return self._finish(service, plan, accepted)

    def _finish(self, service: EcsService, plan: RollbackPlan, status: RolloutStatus) -> RolloutStatus:
        """The last status of a watch, after deregistering (success only) and restoring auto scaling."""
        family = plan.backend_data.get("family") or service.family
        from_name, to_name = f"{family}:{plan.from_revision}", f"{family}:{plan.to_revision}"
        extra: list[str] = []
        summary = status.summary
        waited = not plan.options.get(NO_WAIT)
        if plan.options.get(DEREGISTER):
            if status.phase is RolloutPhase.SUCCEEDED and waited:
                note = self._deregister(service, from_name, to_name)
                extra.append(note)
                summary = f"{summary}; {note}"
            else:
                extra.append(f"{from_name} was not deregistered: the rollback did not complete")
        if plan.options.get(RESUME_AUTO_SCALING):
            note = self._resume_auto_scaling(service)
            extra.append(note)
        return status.model_copy(update={"summary": summary, "events": (*status.events, *extra), "resume_token": None})

    def _deregister(self, service: EcsService, from_name: str, to_name: str) -> str:
        """Deregister the revision rolled back from, unless anything still runs it (ecspresso's in-use check)."""
        try:
            fresh = describe_service(self._clients, service.spec)
            deployments = fresh.raw.get("deployments") or ()
            in_use = {rules.task_definition_name(str(d.get("taskDefinition"))) for d in deployments}
            if from_name == to_name or from_name in in_use:
                return f"{from_name} was not deregistered: a deployment still uses it"
            with translating_errors(f"deregistering {from_name}"):
                self._clients.ecs(service.spec).deregister_task_definition(taskDefinition=from_name)
        except BotError as exc:
            return f"the rollback succeeded, but deregistering {from_name} failed: {exc}"
        return f"deregistered {from_name} (now INACTIVE)"

    def _resume_auto_scaling(self, service: EcsService) -> str:
        try:
            fresh = describe_service(self._clients, service.spec)
            if scalable_target(self._clients, fresh) is None:
                return f"no Application Auto Scaling target for {fresh.resource_id}: nothing to resume"
            before = fresh.tags.get(TAG_AUTOSCALING_BEFORE)
            state = decode_suspended(before) if before else dict.fromkeys(SUSPEND_KEYS, False)
            set_suspended(self._clients, fresh, state)
        except BotError as exc:
            return f"auto scaling could NOT be restored and may still be suspended: {exc}"
        return f"auto scaling restored: {describe_suspended(state)}"


def _human(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"
