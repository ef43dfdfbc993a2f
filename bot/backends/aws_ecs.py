"""The ECS backend: ecspresso-style rollback of a service to an earlier task-definition revision, with boto3.

This is the I/O half. It reads services and task definitions, calls `UpdateService`, suspends and resumes
Application Auto Scaling, deregisters the rolled-back-from revision, and polls `DescribeServices` while a
rollout runs. Every decision (which revision, what changed, what an observation means) is taken by
`ecs_interpret`. `ClientError`/`BotoCoreError` are translated into `bot.core.errors` here and nowhere else.

Clients come from boto3's standard configuration (so `AWS_ENDPOINT_URL` points the bot at moto), with the
standard retry mode; a target with `role_arn` is reached through STS AssumeRole, one set of clients per
(region, role), reused until the credentials are about to expire.

What the bot leaves on the service: tags `rollbot:operation`, `rollbot:started-at`, `rollbot:rolled-back-to`
and `rollbot:autoscaling-before`. They make `roll_back` idempotent for one operation (a replica taking over
re-calls it), let `watch_rollout` restore auto scaling exactly as it was, even after a restart, and let failure
detection recognise the deployment a rollback made (`family:revision` it rolled back to), which the automatic
rollback policy never rolls back again.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import structlog
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from bot.backends import ecs_interpret as rules
from bot.core.catalog import EcsTarget, Target
from bot.core.detection.snapshots import ECS_OPERATION_TAG, ECS_ROLLED_BACK_TO_TAG
from bot.core.errors import (
    BackendUnavailable,
    BotError,
    CommandSyntaxError,
    RollbackFailed,
    RollbackRefused,
    TargetNotAllowed,
    UnknownTarget,
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

if TYPE_CHECKING:
    from mypy_boto3_application_autoscaling import ApplicationAutoScalingClient
    from mypy_boto3_ecs import ECSClient

log = structlog.get_logger(__name__)

DEREGISTER = "deregister"
NO_WAIT = "no-wait"
SUSPEND_AUTO_SCALING = "suspend-auto-scaling"
RESUME_AUTO_SCALING = "resume-auto-scaling"

TAG_OPERATION = ECS_OPERATION_TAG
TAG_STARTED_AT = "rollbot:started-at"
TAG_ROLLED_BACK_TO = ECS_ROLLED_BACK_TO_TAG
TAG_AUTOSCALING_BEFORE = "rollbot:autoscaling-before"

# History describes at most this many revisions (one DescribeTaskDefinition each); older ones are listed bare.
HISTORY_DESCRIBED = 20
# Assumed-role credentials are renewed this long before they expire.
CREDENTIALS_MARGIN = timedelta(minutes=5)
# The first polls come quickly because a rollback often settles in seconds; then back off, never beyond 5 s
# (boto3's services_stable waiter sleeps 15 s between polls, which is what made reports late).
POLL_FIRST = timedelta(seconds=1)
POLL_MAX = timedelta(seconds=5)
POLL_BACKOFF = 1.5
# Event timestamps are AWS's clock; the tag is ours. Allow this much skew when the tag is the only baseline.
CLOCK_SKEW = timedelta(seconds=5)

_NOT_FOUND = {"ClusterNotFoundException", "ServiceNotFoundException", "ServiceNotActiveException"}
_DENIED = {"AccessDeniedException", "AccessDenied", "UnauthorizedOperation", "UnrecognizedClientException"}
_RETRYABLE = {"ServerException", "ThrottlingException", "Throttling", "RequestLimitExceeded", "ServiceUnavailable"}
_SUSPEND_KEYS = ("DynamicScalingInSuspended", "DynamicScalingOutSuspended", "ScheduledScalingSuspended")


@contextlib.contextmanager
def translating_errors(what: str) -> Iterator[None]:
    """Turn boto3's exceptions into the bot's, keeping AWS's own message for the thread."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "ClientError"))
        message = f"{what}: {code}: {error.get('Message', '')}".rstrip(": ")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        translated: BotError
        if code in _NOT_FOUND:
            translated = UnknownTarget(message)
        elif code in _DENIED:
            translated = TargetNotAllowed(f"{message} (check the bot's IAM permissions or the target's role_arn)")
        elif code in _RETRYABLE or status >= 500:
            translated = BackendUnavailable(message)
        else:
            translated = RollbackFailed(message)
        raise translated from exc
    except ParamValidationError as exc:
        raise RollbackFailed(f"{what}: {exc}") from exc
    except BotoCoreError as exc:
        raise BackendUnavailable(f"{what}: {exc}") from exc


class EcsClients:
    """boto3 clients per (region, role_arn), created once and reused; assumed roles renewed before expiry."""

    def __init__(
        self,
        session_factory: Callable[[str | None], boto3.session.Session] | None = None,
        config: Config | None = None,
        session_name: str = "rollbot",
    ) -> None:
        self._session_factory = session_factory or (lambda region: boto3.session.Session(region_name=region))
        self._config = (
            Config(retries={"mode": "standard"}).merge(config) if config else Config(retries={"mode": "standard"})
        )
        self._session_name = session_name
        self._lock = threading.Lock()
        self._cache: dict[tuple[str | None, str | None], tuple[datetime | None, dict[str, Any]]] = {}

    def ecs(self, spec: EcsTarget) -> ECSClient:
        client: ECSClient = self._client(spec, "ecs")
        return client

    def autoscaling(self, spec: EcsTarget) -> ApplicationAutoScalingClient:
        client: ApplicationAutoScalingClient = self._client(spec, "application-autoscaling")
        return client

    def _client(self, spec: EcsTarget, name: str) -> Any:
        key = (spec.region, spec.role_arn)
        with self._lock:
            expires, clients = self._cache.get(key, (None, {}))
            if key not in self._cache or (expires is not None and expires - CREDENTIALS_MARGIN <= datetime.now(UTC)):
                expires, session = self._session(spec)
                clients = {"session": session}
                self._cache[key] = (expires, clients)
            if name not in clients:
                clients[name] = clients["session"].client(name, config=self._config)
            return clients[name]

    def _session(self, spec: EcsTarget) -> tuple[datetime | None, boto3.session.Session]:
        base = self._session_factory(spec.region)
        if not spec.role_arn:
            return None, base
        with translating_errors(f"assuming role {spec.role_arn}"):
            sts = base.client("sts", config=self._config)
            credentials = sts.assume_role(RoleArn=spec.role_arn, RoleSessionName=self._session_name)["Credentials"]
        session = boto3.session.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name=spec.region or base.region_name,
        )
        return credentials["Expiration"], session


@dataclass(frozen=True)
class _Service:
    """A DescribeServices answer for one target, with the bits every method needs."""

    spec: EcsTarget
    raw: Mapping[str, Any]

    @property
    def current(self) -> str:
        return rules.task_definition_name(rules.current_task_definition(self.raw))

    @property
    def family(self) -> str:
        return rules.split_task_definition(self.current)[0]

    @property
    def revision(self) -> int:
        return rules.split_task_definition(self.current)[1]

    @property
    def tags(self) -> dict[str, str]:
        return {str(t.get("key")): str(t.get("value")) for t in self.raw.get("tags") or ()}

    @property
    def controller(self) -> str:
        return str((self.raw.get("deploymentController") or {}).get("type") or "ECS")

    @property
    def label(self) -> str:
        return f"{self.spec.cluster}/{self.spec.service}"

    @property
    def resource_id(self) -> str:
        return f"service/{self.spec.cluster}/{self.spec.service}"


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
        return (
            BackendOption(
                name=DEREGISTER,
                help="after the rollback is confirmed, deregister the task definition rolled back from",
                conflicts_with=(NO_WAIT,),
            ),
            BackendOption(
                name=NO_WAIT,
                help="report once ECS accepted the change, without following the rollout",
                conflicts_with=(DEREGISTER,),
            ),
            BackendOption(
                name=SUSPEND_AUTO_SCALING,
                help="suspend the service's Application Auto Scaling (in, out and scheduled) before rolling back",
            ),
            BackendOption(
                name=RESUME_AUTO_SCALING,
                help="when the rollout is over, put Application Auto Scaling back as it was",
            ),
        )

    def check_target(self, target: Target) -> None:
        self._refuse_unsupported(self._describe(target))

    def history(self, target: Target) -> Sequence[Revision]:
        service = self._describe(target)
        ecs = self._clients.ecs(service.spec)
        statuses = self._statuses(service)
        newest = sorted(statuses, reverse=True)[:HISTORY_DESCRIBED]
        described = {n: self._task_definition(ecs, f"{service.family}:{n}") for n in newest}
        return rules.build_history(service.raw, statuses, described)

    def current_revision(self, target: Target) -> RevisionNumber:
        return RevisionNumber(self._describe(target).revision)

    def status(self, target: Target) -> TargetStatus:
        service = self._describe(target)
        ecs = self._clients.ecs(service.spec)
        current = self._task_definition(ecs, service.current)
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
        chosen = self._validate_options(options)
        service = self._describe(target)
        self._refuse_unsupported(service)
        ecs = self._clients.ecs(service.spec)
        statuses = self._statuses(service)
        active = {n for n, s in statuses.items() if s == "ACTIVE"}
        inactive = {n for n, s in statuses.items() if s != "ACTIVE"}
        number = rules.find_rollback_target(service.family, service.revision, active, inactive, to_revision)
        current_td = self._task_definition(ecs, service.current)
        target_td = self._task_definition(ecs, f"{service.family}:{number}")
        notes = self._notes(service, number, to_revision, inactive, chosen)
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
        service = self._describe(target)
        self._refuse_unsupported(service)
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
        scalable = self._scalable_target(service) if plan.options.get(SUSPEND_AUTO_SCALING) else None
        if scalable is not None:
            # A retry of this operation may find auto scaling already suspended by the first attempt.
            retried = service.tags.get(TAG_OPERATION) == operation_id and TAG_AUTOSCALING_BEFORE in service.tags
            tags[TAG_AUTOSCALING_BEFORE] = (
                service.tags[TAG_AUTOSCALING_BEFORE] if retried else _encode_suspended(scalable.get("SuspendedState"))
            )
        arn = str(service.raw["serviceArn"])
        with translating_errors(f"tagging {service.label}"):
            if scalable is None and TAG_AUTOSCALING_BEFORE in service.tags:  # left by an earlier operation
                ecs.untag_resource(resourceArn=arn, tagKeys=[TAG_AUTOSCALING_BEFORE])
            ecs.tag_resource(resourceArn=arn, tags=[{"key": k, "value": v} for k, v in tags.items()])
        if scalable is not None:
            self._set_suspended(service, dict.fromkeys(_SUSPEND_KEYS, True))
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
                self._set_suspended(service, _decode_suspended(tags[TAG_AUTOSCALING_BEFORE]))
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
        service = self._describe(target)
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
                service = self._describe(target, tags=False)
                unavailable = None
            except BackendUnavailable as exc:
                # A throttled or unreachable poll is not the rollout's outcome: keep watching until the deadline.
                log.warning("ecs.watch.poll_failed", service=service.label, error=str(exc))
                unavailable = exc

    # --- pieces -------------------------------------------------------------------------------------------

    def _describe(self, target: Target, tags: bool = True) -> _Service:
        spec = _spec(target)
        ecs = self._clients.ecs(spec)
        label = f"{spec.cluster}/{spec.service}"
        with translating_errors(f"describing ECS service {label}"):
            answer = ecs.describe_services(
                cluster=spec.cluster, services=[spec.service], include=["TAGS"] if tags else []
            )
        services = answer.get("services") or []
        if not services:
            raise UnknownTarget(f"ECS service {spec.service} is not found in cluster {spec.cluster}")
        raw = services[0]
        if raw.get("status") == "INACTIVE":
            raise UnknownTarget(f"ECS service {label} is INACTIVE (deleted)")
        return _Service(spec=spec, raw=raw)

    @staticmethod
    def _refuse_unsupported(service: _Service) -> None:
        if service.controller == "CODE_DEPLOY":
            raise RollbackRefused(
                f"ECS service {service.label} is deployed by CodeDeploy (blue/green), and the bot does not roll "
                "those back yet: an UpdateService would be refused by ECS. Stop the deployment in CodeDeploy "
                "(its auto-rollback restores the original task set) or create a CodeDeploy deployment of the "
                "earlier task definition"
            )
        if service.controller != "ECS":
            raise RollbackRefused(
                f"ECS service {service.label} uses the {service.controller} deployment controller; roll it back "
                "with the tool that manages its task sets"
            )

    def _validate_options(self, options: Mapping[str, bool | str]) -> dict[str, bool]:
        known = {option.name: option for option in self.options()}
        chosen: dict[str, bool] = {}
        for name, value in options.items():
            if name not in known:
                raise CommandSyntaxError(
                    f"--{name} is not an ECS rollback option (known: {', '.join('--' + n for n in known)})"
                )
            if value not in (True, "true", "yes", "1", ""):
                continue
            chosen[name] = True
        if chosen.get(DEREGISTER) and chosen.get(NO_WAIT):
            raise RollbackRefused(
                "--deregister does not work together with --no-wait: the bot deregisters the old task definition "
                "only after it saw the rollback complete (ecspresso refuses the same combination)"
            )
        return chosen

    def _statuses(self, service: _Service) -> dict[int, str]:
        """Every revision of the service's family and whether it is ACTIVE or INACTIVE (paging to the end)."""
        ecs = self._clients.ecs(service.spec)
        statuses: dict[int, str] = {}
        with translating_errors(f"listing the task definitions of {service.family}"):
            for status in ("INACTIVE", "ACTIVE"):
                paginator = ecs.get_paginator("list_task_definitions")
                for page in paginator.paginate(familyPrefix=service.family, status=status):
                    for arn in page.get("taskDefinitionArns") or ():
                        family, number = rules.split_task_definition(arn)
                        if family == service.family:  # familyPrefix is a prefix: web-worker is not web
                            statuses[number] = status
        return statuses

    @staticmethod
    def _task_definition(ecs: ECSClient, name: str) -> dict[str, Any]:
        with translating_errors(f"describing task definition {name}"):
            answer = ecs.describe_task_definition(taskDefinition=name)
        return dict(answer["taskDefinition"])

    def _notes(
        self,
        service: _Service,
        number: int,
        requested: int | None,
        inactive: set[int],
        options: Mapping[str, bool],
    ) -> list[str]:
        family = service.family
        notes: list[str] = []
        if not requested:
            skipped = sorted(n for n in inactive if number < n < service.revision)
            notes.append(
                f"no revision given: {family}:{number} is the newest ACTIVE revision older than the running "
                f"{service.current}"
                + (f" (INACTIVE skipped: {', '.join(f'{family}:{n}' for n in skipped)})" if skipped else "")
            )
        elif number > service.revision:
            notes.append(f"{family}:{number} is newer than the running {service.current}: this rolls forward")
        primary = rules.primary_deployment(service.raw) or {}
        if primary.get("rolloutState") == "IN_PROGRESS":
            notes.append(f"a deployment of {service.current} is still IN_PROGRESS; the rollback replaces it")
        breaker = (service.raw.get("deploymentConfiguration") or {}).get("deploymentCircuitBreaker") or {}
        if breaker.get("enable"):
            notes.append(
                "ECS deployment circuit breaker is on"
                + (
                    " with rollback: if the rollback fails, ECS rolls back to the last completed deployment"
                    if breaker.get("rollback")
                    else ""
                )
            )
        if options.get(DEREGISTER):
            notes.append(f"{service.current} will be deregistered once {family}:{number} is confirmed COMPLETED")
        if options.get(NO_WAIT):
            notes.append("--no-wait: the bot reports once ECS accepts the change and does not follow the rollout")
        if options.get(SUSPEND_AUTO_SCALING) or options.get(RESUME_AUTO_SCALING):
            scalable = self._scalable_target(service)
            if scalable is None:
                notes.append(f"no Application Auto Scaling target for {service.resource_id}: nothing to suspend")
            else:
                notes.append(
                    f"auto scaling min {scalable.get('MinCapacity')} max {scalable.get('MaxCapacity')}, "
                    f"now {_describe_suspended(scalable.get('SuspendedState'))}"
                    + (
                        "; suspended (in, out, scheduled) during the rollback"
                        if options.get(SUSPEND_AUTO_SCALING)
                        else ""
                    )
                    + ("; restored afterwards" if options.get(RESUME_AUTO_SCALING) else "")
                )
        return notes

    @staticmethod
    def _already_started(service: _Service, operation_id: OperationId, to_name: str) -> bool:
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
    def _baseline(service: _Service, to_name: str) -> datetime | None:
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

    def _not_waiting(self, service: _Service, plan: RollbackPlan, state: rules.WatchState) -> RolloutStatus:
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

    def _finish(self, service: _Service, plan: RollbackPlan, status: RolloutStatus) -> RolloutStatus:
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

    def _deregister(self, service: _Service, from_name: str, to_name: str) -> str:
        """Deregister the revision rolled back from, unless anything still runs it (ecspresso's in-use check)."""
        try:
            fresh = self._describe_spec(service.spec)
            deployments = fresh.raw.get("deployments") or ()
            in_use = {rules.task_definition_name(str(d.get("taskDefinition"))) for d in deployments}
            if from_name == to_name or from_name in in_use:
                return f"{from_name} was not deregistered: a deployment still uses it"
            with translating_errors(f"deregistering {from_name}"):
                self._clients.ecs(service.spec).deregister_task_definition(taskDefinition=from_name)
        except BotError as exc:
            return f"the rollback succeeded, but deregistering {from_name} failed: {exc}"
        return f"deregistered {from_name} (now INACTIVE)"

    def _describe_spec(self, spec: EcsTarget) -> _Service:
        ecs = self._clients.ecs(spec)
        with translating_errors(f"describing ECS service {spec.cluster}/{spec.service}"):
            answer = ecs.describe_services(cluster=spec.cluster, services=[spec.service], include=["TAGS"])
        services = answer.get("services") or []
        if not services:
            raise UnknownTarget(f"ECS service {spec.service} is not found in cluster {spec.cluster}")
        return _Service(spec=spec, raw=services[0])

    def _scalable_target(self, service: _Service) -> dict[str, Any] | None:
        autoscaling = self._clients.autoscaling(service.spec)
        with translating_errors(f"describing the scalable target {service.resource_id}"):
            answer = autoscaling.describe_scalable_targets(
                ServiceNamespace="ecs", ResourceIds=[service.resource_id], ScalableDimension="ecs:service:DesiredCount"
            )
        found = answer.get("ScalableTargets") or []
        return dict(found[0]) if found else None

    def _set_suspended(self, service: _Service, state: Mapping[str, bool]) -> None:
        autoscaling = self._clients.autoscaling(service.spec)
        with translating_errors(f"updating the scalable target {service.resource_id}"):
            autoscaling.register_scalable_target(
                ServiceNamespace="ecs",
                ResourceId=service.resource_id,
                ScalableDimension="ecs:service:DesiredCount",
                SuspendedState={  # always all three: a partial object replaces the whole state (ecs.md §3.1)
                    "DynamicScalingInSuspended": bool(state.get("DynamicScalingInSuspended")),
                    "DynamicScalingOutSuspended": bool(state.get("DynamicScalingOutSuspended")),
                    "ScheduledScalingSuspended": bool(state.get("ScheduledScalingSuspended")),
                },
            )

    def _resume_auto_scaling(self, service: _Service) -> str:
        try:
            fresh = self._describe_spec(service.spec)
            if self._scalable_target(fresh) is None:
                return f"no Application Auto Scaling target for {fresh.resource_id}: nothing to resume"
            before = fresh.tags.get(TAG_AUTOSCALING_BEFORE)
            state = _decode_suspended(before) if before else dict.fromkeys(_SUSPEND_KEYS, False)
            self._set_suspended(fresh, state)
        except BotError as exc:
            return f"auto scaling could NOT be restored and may still be suspended: {exc}"
        return f"auto scaling restored: {_describe_suspended(state)}"


def _spec(target: Target) -> EcsTarget:
    if not isinstance(target.spec, EcsTarget):
        raise RollbackRefused(f"{target.name} is not an ECS target")
    return target.spec


def _encode_suspended(state: Mapping[str, Any] | None) -> str:
    # Tag values allow letters, digits, spaces and _.:/=+-@, so "in=false out=false scheduled=false".
    state = state or {}
    return " ".join(
        f"{short}={str(bool(state.get(key))).lower()}" for short, key in zip(_SHORT, _SUSPEND_KEYS, strict=True)
    )


def _decode_suspended(text: str) -> dict[str, bool]:
    pairs = dict(part.split("=", 1) for part in text.split() if "=" in part)
    return {key: pairs.get(short) == "true" for short, key in zip(_SHORT, _SUSPEND_KEYS, strict=True)}


_SHORT = ("in", "out", "scheduled")


def _describe_suspended(state: Mapping[str, Any] | None) -> str:
    # moto omits SuspendedState when it was never set; AWS answers all-false. Both mean "nothing suspended".
    state = state or {}
    suspended = [short for short, key in zip(_SHORT, _SUSPEND_KEYS, strict=True) if state.get(key)]
    return f"suspended: {', '.join(suspended)}" if suspended else "nothing suspended"


def _human(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"
