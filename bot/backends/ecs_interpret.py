"""The pure half of the ECS backend: what DescribeServices and DescribeTaskDefinition payloads mean.

Nothing here calls AWS. `aws_ecs.py` fetches the payloads and hands them over; these functions decide:

* which revision a rollback goes to (`find_rollback_target`: ecspresso's rule, the newest ACTIVE revision older
  than the running one, computed client-side because moto ignores `sort` and AWS pages);
* what would change (`task_definition_changes`: images, env, cpu/memory, command);
* what one observation of a rollout means (`observe` / `interpret_ecs_service`). "Stable" is not "rolled back":
  success needs the PRIMARY deployment to run the target with rolloutState COMPLETED and running == desired;
  a PRIMARY that moved to another task definition after the target failed is ECS's circuit breaker rolling the
  service back on its own, and is reported as such.

Task definitions are compared by `family:revision` parsed from the ARN (ecspresso's `arnToName`), because moto
may hand back `family:4` where AWS returns a full ARN.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from bot.core.errors import NothingToDo, RevisionNotFound
from bot.core.rollouts import (
    Change,
    ContainerImage,
    Revision,
    RevisionNumber,
    RolloutPhase,
    RolloutStatus,
    UnhealthyUnit,
)

# ECS prefixes every reason the circuit breaker writes with this (ecs.md §2.2); match prefixes, not full text.
CIRCUIT_BREAKER_PREFIX = "ECS deployment circuit breaker"
# How many event ids a watch remembers for deduplication; ECS itself keeps about the last 100 events.
SEEN_EVENTS_KEPT = 200


def task_definition_name(reference: str) -> str:
    """`arn:aws:ecs:…:task-definition/web:4` or `web:4` → `web:4`."""
    return reference.rsplit("/", 1)[-1]


def split_task_definition(reference: str) -> tuple[str, int]:
    """The family and revision number of a task-definition ARN or `family:revision`."""
    family, _, revision = task_definition_name(reference).rpartition(":")
    if not family or not revision.isdigit():
        raise ValueError(f"not a task definition revision: {reference!r}")
    return family, int(revision)


def _listing(family: str, numbers: Iterable[int]) -> str:
    ordered = sorted(numbers)
    return ", ".join(f"{family}:{n}" for n in ordered) if ordered else "none"


def find_rollback_target(
    family: str,
    current: int,
    active: Iterable[int],
    inactive: Iterable[int] = (),
    requested: int | None = None,
) -> RevisionNumber:
    """Resolve the revision to roll back to; `requested` None or 0 means ecspresso's "previous".

    Previous = the newest ACTIVE revision older than the running one, so deregistered (INACTIVE) bad builds
    are skipped and repeated rollbacks walk backwards. An INACTIVE or unknown revision is refused with the
    ACTIVE ones listed; the running revision is `NothingToDo`.
    """
    active_set = set(active)
    if not requested:
        older = [n for n in active_set if n < current]
        if not older:
            raise RevisionNotFound(
                f"{family}:{current} is the oldest ACTIVE revision: there is nothing older to roll back to "
                f"(ACTIVE revisions: {_listing(family, active_set)})",
                available=sorted(active_set),
            )
        return RevisionNumber(max(older))
    if requested == current:
        raise NothingToDo(f"{family}:{current} is already the task definition the service runs")
    if requested in active_set:
        return RevisionNumber(requested)
    if requested in set(inactive):
        raise RevisionNotFound(
            f"{family}:{requested} is INACTIVE (deregistered), so ECS will not deploy it; "
            f"ACTIVE revisions: {_listing(family, active_set)}",
            available=sorted(active_set),
        )
    raise RevisionNotFound(
        f"{family}:{requested} does not exist; ACTIVE revisions: {_listing(family, active_set)}",
        available=sorted(active_set),
    )


# --- preview -----------------------------------------------------------------------------------------------


def _containers(task_definition: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("name")): c for c in task_definition.get("containerDefinitions") or ()}


def _env(container: Mapping[str, Any]) -> dict[str, str]:
    return {str(e.get("name")): str(e.get("value", "")) for e in container.get("environment") or ()}


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return shlex.join(str(part) for part in value)
    return str(value)


def task_definition_changes(current: Mapping[str, Any], target: Mapping[str, Any]) -> tuple[Change, ...]:
    """What rolling from `current` to `target` changes, as people read it: images, env, cpu/memory, command."""
    changes: list[Change] = []
    for field in ("cpu", "memory"):
        before, after = _text(current.get(field)), _text(target.get(field))
        if before != after:
            changes.append(Change(scope="task definition", field=field, before=before, after=after))
    now, then = _containers(current), _containers(target)
    for name in [*now, *(n for n in then if n not in now)]:
        scope = f"container {name}"
        if name not in then:
            changes.append(Change(scope=scope, field="container", before=_text(now[name].get("image")), after=None))
            continue
        if name not in now:
            changes.append(Change(scope=scope, field="container", before=None, after=_text(then[name].get("image"))))
            continue
        before_c, after_c = now[name], then[name]
        for field in ("image", "cpu", "memory", "command"):
            before, after = _text(before_c.get(field)), _text(after_c.get(field))
            if before != after:
                changes.append(Change(scope=scope, field=field, before=before, after=after))
        env_before, env_after = _env(before_c), _env(after_c)
        for key in sorted(env_before.keys() | env_after.keys()):
            if env_before.get(key) != env_after.get(key):
                changes.append(
                    Change(scope=scope, field=f"env {key}", before=env_before.get(key), after=env_after.get(key))
                )
    return tuple(changes)


def container_images(task_definition: Mapping[str, Any]) -> tuple[ContainerImage, ...]:
    return tuple(
        ContainerImage(container=str(c.get("name")), image=str(c.get("image")))
        for c in task_definition.get("containerDefinitions") or ()
    )


# --- history -----------------------------------------------------------------------------------------------


def deployment_line(deployment: Mapping[str, Any]) -> str:
    """One deployment as ecspresso's formatDeployment prints it, in words: `PRIMARY web:3 running 1/2 …`."""
    line = (
        f"{deployment.get('status')} {task_definition_name(str(deployment.get('taskDefinition')))} "
        f"running {deployment.get('runningCount', 0)}/{deployment.get('desiredCount', 0)}, "
        f"pending {deployment.get('pendingCount', 0)}, failed {deployment.get('failedTasks', 0)}"
    )
    state = deployment.get("rolloutState")
    return f"{line} ({state})" if state else line


def build_history(
    service: Mapping[str, Any],
    statuses: Mapping[int, str],
    task_definitions: Mapping[int, Mapping[str, Any]],
) -> list[Revision]:
    """The family's revisions, oldest first: status (ACTIVE/INACTIVE), which deployment runs each, images."""
    by_revision: dict[int, list[Mapping[str, Any]]] = {}
    for deployment in service.get("deployments") or ():
        _, number = split_task_definition(str(deployment.get("taskDefinition")))
        by_revision.setdefault(number, []).append(deployment)
    current = current_task_definition(service)
    _, current_number = split_task_definition(current)
    history: list[Revision] = []
    for number in sorted(statuses.keys() | task_definitions.keys() | by_revision.keys()):
        described = task_definitions.get(number, {})
        registered = described.get("registeredAt")
        deployments = by_revision.get(number, [])
        history.append(
            Revision(
                number=RevisionNumber(number),
                status=statuses.get(number) or described.get("status"),
                images=container_images(described),
                deployed_at=registered if isinstance(registered, datetime) else None,
                is_current=number == current_number,
                description="; ".join(_in_use(d) for d in deployments) or None,
            )
        )
    return history


def _in_use(deployment: Mapping[str, Any]) -> str:
    """ecspresso's "In Use" column, with the rollout: `PRIMARY deployment, COMPLETED, 2/2 running`."""
    parts = [f"{deployment.get('status')} deployment"]
    if deployment.get("rolloutState"):
        parts.append(str(deployment["rolloutState"]))
    parts.append(f"{deployment.get('runningCount', 0)}/{deployment.get('desiredCount', 0)} running")
    return ", ".join(parts)


def current_task_definition(service: Mapping[str, Any]) -> str:
    """What the service runs: the PRIMARY deployment's task definition (the service's own field otherwise)."""
    primary = primary_deployment(service)
    if primary is not None and primary.get("taskDefinition"):
        return str(primary["taskDefinition"])
    return str(service.get("taskDefinition"))


def primary_deployment(service: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((d for d in service.get("deployments") or () if d.get("status") == "PRIMARY"), None)


# --- watching ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WatchState:
    """What a watch remembers between two DescribeServices calls; survives a restart as a resume token."""

    target: str  # family:revision the rollback deploys
    since: datetime | None = None  # events older than the rollback are history, not news
    seen_events: tuple[str, ...] = ()
    target_failure: str | None = None  # ECS's reason, once a deployment of the target was seen FAILED
    target_deployment: str | None = None  # the id of the deployment that runs the target

    def to_token(self) -> str:
        data = {
            "target": self.target,
            "since": self.since.isoformat() if self.since else None,
            "seen": list(self.seen_events),
            "failure": self.target_failure,
            "deployment": self.target_deployment,
        }
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode()

    @classmethod
    def from_token(cls, token: str) -> WatchState:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return cls(
            target=str(data["target"]),
            since=datetime.fromisoformat(data["since"]) if data.get("since") else None,
            seen_events=tuple(data.get("seen") or ()),
            target_failure=data.get("failure"),
            target_deployment=data.get("deployment"),
        )


def as_datetime(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


def new_events(state: WatchState, service: Mapping[str, Any]) -> tuple[WatchState, tuple[str, ...]]:
    """Service events not yet shown, oldest first, deduplicated by id (timestamps collide at ms precision)."""
    seen = set(state.seen_events)
    fresh: list[Mapping[str, Any]] = []
    for event in service.get("events") or ():  # ECS returns them newest first
        event_id = str(event.get("id"))
        if event_id in seen:
            continue
        created = as_datetime(event.get("createdAt"))
        if state.since is not None and created is not None and created < state.since:
            continue
        fresh.append(event)
    if not fresh:
        return state, ()
    ids = [*state.seen_events, *(str(e.get("id")) for e in reversed(fresh))][-SEEN_EVENTS_KEPT:]
    messages = tuple(str(e.get("message")) for e in reversed(fresh))
    return replace(state, seen_events=tuple(ids)), messages


_DEPLOYMENT_FAILED = re.compile(r"\(deployment (?P<id>[^)]+)\) deployment failed: (?P<why>.+)")


def _deployment_failure(message: str) -> tuple[str, str] | None:
    """`(service s) (deployment ecs-svc/1) deployment failed: tasks failed to start.` → (id, "deployment failed: …")."""
    found = _DEPLOYMENT_FAILED.search(message)
    return (found["id"], f"deployment failed: {found['why']}") if found else None


def _summary(service: Mapping[str, Any]) -> str:
    lines = [deployment_line(d) for d in service.get("deployments") or ()]
    return " · ".join(lines) if lines else "no deployments"


def observe(state: WatchState, service: Mapping[str, Any]) -> tuple[WatchState, RolloutStatus]:
    """Interpret one DescribeServices `services[0]` against what the watch expects; returns the new memory too."""
    deployments = list(service.get("deployments") or ())
    for deployment in deployments:
        if task_definition_name(str(deployment.get("taskDefinition"))) != state.target:
            continue
        if state.target_deployment is None and deployment.get("status") == "PRIMARY":
            state = replace(state, target_deployment=str(deployment.get("id")))
        if deployment.get("rolloutState") == "FAILED" and state.target_failure is None:
            state = replace(state, target_failure=str(deployment.get("rolloutStateReason") or "rollout FAILED"))
    state, events = new_events(state, service)
    if state.target_failure is None:
        # Between two polls ECS can fail the deployment, roll back and drop the FAILED row: its event remains.
        ours = [f for f in map(_deployment_failure, events) if f is not None]
        failure = next((f for f in ours if state.target_deployment in (None, f[0])), None)
        if failure is not None:
            state = replace(state, target_failure=failure[1])
    primary = primary_deployment(service)
    summary = _summary(service)
    if primary is None:
        return state, RolloutStatus(phase=RolloutPhase.PROGRESSING, summary=summary, events=events)

    running = int(primary.get("runningCount") or 0)
    desired = int(primary.get("desiredCount") or 0)
    failed = int(primary.get("failedTasks") or 0)
    unhealthy = (
        (
            UnhealthyUnit(
                name=f"deployment {primary.get('id')}",
                reason=f"{failed} task(s) failed to start",
                message=primary.get("rolloutStateReason"),
            ),
        )
        if failed
        else ()
    )
    counts: dict[str, Any] = {"ready": running, "desired": desired, "updated": running, "unhealthy": unhealthy}
    primary_name = task_definition_name(str(primary.get("taskDefinition")))
    primary_reason = str(primary.get("rolloutStateReason") or "")

    if primary_name != state.target:
        by_breaker = state.target_failure is not None or primary_reason.startswith(CIRCUIT_BREAKER_PREFIX)
        if by_breaker:
            why = state.target_failure or "the deployment failed"
            reason = (
                f"ECS's deployment circuit breaker stopped the rollback to {state.target} ({why}) and rolled the "
                f"service back to {primary_name} on its own: the service does not run {state.target}"
            )
        else:
            reason = (
                f"the PRIMARY deployment is now {primary_name}, not {state.target}: another deployment replaced "
                "the rollback"
            )
        return state, RolloutStatus(
            phase=RolloutPhase.FAILED, summary=summary, reason=reason, events=events, resume_token=None, **counts
        )
    if primary.get("rolloutState") == "FAILED":
        reason = f"ECS marked the deployment of {state.target} FAILED: {primary_reason or 'no reason given'}"
        return state, RolloutStatus(phase=RolloutPhase.FAILED, summary=summary, reason=reason, events=events, **counts)
    # rolloutState is only reported for the rolling (ECS) controller; without it, fall back to the waiter's rule.
    settled = primary.get("rolloutState") == "COMPLETED" or (
        primary.get("rolloutState") is None and len(deployments) == 1
    )
    if settled and running == desired:
        return state, RolloutStatus(
            phase=RolloutPhase.SUCCEEDED,
            summary=f"{primary_name} is the PRIMARY deployment, COMPLETED with {running}/{desired} tasks running",
            events=events,
            **counts,
        )
    return state, RolloutStatus(
        phase=RolloutPhase.PROGRESSING, summary=summary, events=events, resume_token=state.to_token(), **counts
    )


def interpret_ecs_service(payload: Mapping[str, Any], target: str | None = None) -> RolloutStatus:
    """One DescribeServices service (or the whole response) read on its own, without a watch's memory.

    `target` (ARN or `family:revision`) defaults to the service's own task definition.
    """
    services: Sequence[Mapping[str, Any]] | None = payload.get("services")
    service = services[0] if services else payload
    expected = task_definition_name(target or current_task_definition(service))
    return observe(WatchState(target=expected), service)[1]
