"""Slim projections of what the watchers see: just the fields the detection rules read.

A watcher keeps one of these per object instead of the object itself (a Deployment with `managedFields` is a few
KB; this is a few hundred bytes), so 10,000 workloads fit in a few MB. Each has a `from_manifest` that reads the
API's JSON as it comes off the wire; that is pure parsing, kept here so the rules and their tests see the real
shapes (zero counts are omitted by the API server, absent fields mean their defaults). The watchers may build
them any other way. These are observations, not decisions: nothing here says whether anything is failing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from bot.core.catalog import WorkloadKind
from bot.core.rollouts import ContainerImage

# The annotation the Deployment controller keeps in step with its newest ReplicaSet.
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
# Set by rollbot on the template it restores, so a revision rollbot made is never auto-rolled back (§6.10).
OPERATION_ANNOTATION = "rollbot.dev/operation"
# The tags the ECS backend leaves on a service it rolls back: the operation, and the `family:revision` it deployed.
ECS_OPERATION_TAG = "rollbot:operation"
ECS_ROLLED_BACK_TO_TAG = "rollbot:rolled-back-to"
# The labels that tie a pod to its template: Deployments via the ReplicaSet, DaemonSets and StatefulSets via
# their ControllerRevision; DaemonSets also keep the deprecated template generation.
POD_TEMPLATE_HASH = "pod-template-hash"
CONTROLLER_REVISION_HASH = "controller-revision-hash"
POD_TEMPLATE_GENERATION = "pod-template-generation"
# progressDeadlineSeconds unset (or MaxInt32) means "no deadline" (kstatus: the Deployment always progresses).
NO_DEADLINE = 2**31 - 1

Manifest = Mapping[str, Any]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UpdateStrategy(StrEnum):
    ROLLING_UPDATE = "RollingUpdate"
    RECREATE = "Recreate"
    ON_DELETE = "OnDelete"


class Condition(_Frozen):
    type: str
    status: str
    reason: str | None = None
    message: str | None = None
    last_transition_time: datetime | None = None

    @property
    def is_true(self) -> bool:
        return self.status == "True"


class WorkloadSnapshot(_Frozen):
    """A Deployment, DaemonSet or StatefulSet, reduced to its rollout state.

    `replicas` is what is wanted (a DaemonSet's `desiredNumberScheduled`), `current` what exists (a DaemonSet's
    `currentNumberScheduled`), `updated` how many run the update revision. `update_hash` is the label value
    the update revision's pods carry; the watcher fills it for Deployments from the newest ReplicaSet.
    """

    kind: WorkloadKind
    namespace: str
    name: str
    generation: int = 0
    observed_generation: int = 0
    replicas: int = 0
    current: int = 0
    updated: int = 0
    ready: int = 0
    available: int = 0
    unavailable: int = 0
    conditions: tuple[Condition, ...] = ()
    is_paused: bool = False
    strategy: UpdateStrategy = UpdateStrategy.ROLLING_UPDATE
    partition: int = 0
    current_revision: str | None = None
    update_revision: str | None = None
    update_hash: str | None = None
    images: tuple[ContainerImage, ...] = ()
    revision: int | None = None
    rollbot_operation: str | None = None
    progress_deadline_seconds: int | None = None

    def condition(self, condition_type: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == condition_type), None)

    @property
    def is_observed(self) -> bool:
        """The controller has seen the latest spec; before that, status says nothing about it."""
        return self.observed_generation >= self.generation

    @property
    def goal(self) -> int:
        """How many pods the update should reach: a StatefulSet partition keeps the ordinals below it."""
        if self.kind is WorkloadKind.STATEFULSET:
            return max(0, self.replicas - self.partition)
        return self.replicas

    @property
    def revision_key(self) -> str:
        """The failed revision's identity for the incident key (§6.1), in the controller's own terms."""
        if self.kind is WorkloadKind.DEPLOYMENT:
            return str(self.revision or 0)
        return self.update_revision or self.update_hash or f"generation-{self.generation}"

    @classmethod
    def from_manifest(cls, obj: Manifest) -> WorkloadSnapshot:
        kind = WorkloadKind(obj["kind"])
        meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
        annotations = meta.get("annotations") or {}
        template = spec.get("template") or {}
        fields: dict[str, Any] = {
            "kind": kind,
            "namespace": meta.get("namespace") or "default",
            "name": meta["name"],
            "generation": int(meta.get("generation") or 0),
            "observed_generation": int(status.get("observedGeneration") or 0),
            "conditions": tuple(_condition(c) for c in status.get("conditions") or ()),
            "images": _images(template),
            "rollbot_operation": (template.get("metadata") or {}).get("annotations", {}).get(OPERATION_ANNOTATION)
            or annotations.get(OPERATION_ANNOTATION),
        }
        if kind is WorkloadKind.DAEMONSET:
            strategy = spec.get("updateStrategy") or {}
            fields |= {
                "replicas": int(status.get("desiredNumberScheduled") or 0),
                "current": int(status.get("currentNumberScheduled") or 0),
                "updated": int(status.get("updatedNumberScheduled") or 0),
                "ready": int(status.get("numberReady") or 0),
                "available": int(status.get("numberAvailable") or 0),
                "unavailable": int(status.get("numberUnavailable") or 0),
                "strategy": UpdateStrategy(strategy.get("type") or "RollingUpdate"),
            }
            return cls(**fields)
        replicas = int(spec["replicas"]) if spec.get("replicas") is not None else 1
        fields |= {
            "replicas": replicas,
            "current": int(status.get("replicas") or 0),
            "updated": int(status.get("updatedReplicas") or 0),
            "ready": int(status.get("readyReplicas") or 0),
            "available": int(status.get("availableReplicas") or 0),
        }
        if kind is WorkloadKind.STATEFULSET:
            strategy = spec.get("updateStrategy") or {}
            rolling = strategy.get("rollingUpdate") or {}
            fields |= {
                "strategy": UpdateStrategy(strategy.get("type") or "RollingUpdate"),
                "partition": int(rolling.get("partition") or 0),
                "current_revision": status.get("currentRevision"),
                "update_revision": status.get("updateRevision"),
                "update_hash": status.get("updateRevision"),
                "unavailable": max(0, replicas - int(status.get("availableReplicas") or 0)),
            }
            return cls(**fields)
        revision = annotations.get(REVISION_ANNOTATION)
        fields |= {
            "unavailable": int(status.get("unavailableReplicas") or 0),
            "is_paused": bool(spec.get("paused")),
            "strategy": UpdateStrategy((spec.get("strategy") or {}).get("type") or "RollingUpdate"),
            "revision": int(revision) if revision and revision.isdigit() else None,
            "progress_deadline_seconds": spec.get("progressDeadlineSeconds", 600),
        }
        return cls(**fields)


class ContainerWait(_Frozen):
    container: str
    reason: str
    message: str | None = None


class PodSnapshot(_Frozen):
    """One pod of a workload mid-rollout: which template it runs, and why it is not up if it is not."""

    name: str
    namespace: str
    template_hash: str | None = None
    template_generation: int | None = None
    phase: str = "Pending"
    is_ready: bool = False
    restarts: int = 0
    has_terminated_before: bool = False
    waiting: tuple[ContainerWait, ...] = ()
    started_at: datetime | None = None
    is_unschedulable: bool = False

    @classmethod
    def from_manifest(cls, obj: Manifest) -> PodSnapshot:
        meta, status = obj.get("metadata") or {}, obj.get("status") or {}
        labels = meta.get("labels") or {}
        statuses = [*(status.get("initContainerStatuses") or ()), *(status.get("containerStatuses") or ())]
        waiting = tuple(
            ContainerWait(container=s.get("name", "?"), reason=w["reason"], message=w.get("message"))
            for s in statuses
            if (w := (s.get("state") or {}).get("waiting")) and w.get("reason")
        )
        conditions = {c.get("type"): c for c in status.get("conditions") or ()}
        scheduled = conditions.get("PodScheduled") or {}
        generation = labels.get(POD_TEMPLATE_GENERATION)
        return cls(
            name=meta["name"],
            namespace=meta.get("namespace") or "default",
            template_hash=labels.get(POD_TEMPLATE_HASH) or labels.get(CONTROLLER_REVISION_HASH),
            template_generation=int(generation) if generation and generation.isdigit() else None,
            phase=status.get("phase") or "Pending",
            is_ready=(conditions.get("Ready") or {}).get("status") == "True",
            restarts=sum(int(s.get("restartCount") or 0) for s in statuses),
            has_terminated_before=any("terminated" in (s.get("lastState") or {}) for s in statuses),
            waiting=waiting,
            started_at=status.get("startTime"),
            is_unschedulable=scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable",
        )


class HelmStatus(StrEnum):
    """helm/helm `pkg/release/status.go`, as the storage Secret's `status` label carries it."""

    UNKNOWN = "unknown"
    DEPLOYED = "deployed"
    UNINSTALLED = "uninstalled"
    SUPERSEDED = "superseded"
    FAILED = "failed"
    UNINSTALLING = "uninstalling"
    PENDING_INSTALL = "pending-install"
    PENDING_UPGRADE = "pending-upgrade"
    PENDING_ROLLBACK = "pending-rollback"
    REQUIRES_UPGRADE = "requires-upgrade"

    @property
    def is_pending(self) -> bool:
        return self in {HelmStatus.PENDING_INSTALL, HelmStatus.PENDING_UPGRADE, HelmStatus.PENDING_ROLLBACK}


class HelmReleaseSnapshot(_Frozen):
    """One revision of a Helm release, from its storage Secret's labels alone (no payload decoding)."""

    name: str
    namespace: str
    revision: int
    status: HelmStatus
    modified_at: datetime | None = None

    @classmethod
    def from_manifest(cls, obj: Manifest) -> HelmReleaseSnapshot:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        try:
            status = HelmStatus(labels.get("status", "unknown"))
        except ValueError:
            status = HelmStatus.UNKNOWN
        modified = labels.get("modifiedAt")
        return cls(
            name=labels["name"],
            namespace=meta.get("namespace") or "default",
            revision=int(labels["version"]),
            status=status,
            # helm writes modifiedAt as Unix seconds; older helm leaves it out and the first sighting counts.
            modified_at=datetime.fromtimestamp(int(modified), tz=UTC) if modified and modified.isdigit() else None,
        )


def latest_releases(revisions: list[HelmReleaseSnapshot]) -> list[HelmReleaseSnapshot]:
    """Only the newest revision of each release decides anything (an old `failed` one is history)."""
    newest: dict[tuple[str, str], HelmReleaseSnapshot] = {}
    for snapshot in revisions:
        key = (snapshot.namespace, snapshot.name)
        if key not in newest or snapshot.revision > newest[key].revision:
            newest[key] = snapshot
    return sorted(newest.values(), key=lambda s: (s.namespace, s.name))


class EcsDeployment(_Frozen):
    """One entry of `DescribeServices` `deployments[]`."""

    id: str
    status: str  # PRIMARY | ACTIVE | INACTIVE
    task_definition: str
    rollout_state: str | None = None  # IN_PROGRESS | COMPLETED | FAILED
    rollout_state_reason: str | None = None
    desired: int = 0
    running: int = 0
    pending: int = 0
    failed_tasks: int = 0
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def task_definition_revision(self) -> int | None:
        match = re.search(r":(\d+)$", self.task_definition)
        return int(match.group(1)) if match else None


class EcsEvent(_Frozen):
    id: str
    created_at: datetime
    message: str


class EcsServiceSnapshot(_Frozen):
    cluster: str
    service: str
    deployments: tuple[EcsDeployment, ...] = ()
    is_circuit_breaker_on: bool = False
    is_circuit_breaker_rollback: bool = False
    events: tuple[EcsEvent, ...] = ()
    # rollbot's last rollback of the service (its tags): the operation, and the `family:revision` it deployed.
    rollbot_operation: str | None = None
    rolled_back_to: str | None = None

    def made_by_rollbot(self, deployment: EcsDeployment) -> str | None:
        """The rollbot operation whose rollback started `deployment` (it runs the task definition rolled back to)."""
        if (
            self.rollbot_operation
            and self.rolled_back_to
            and deployment.task_definition.endswith(f"/{self.rolled_back_to}")
        ):
            return self.rollbot_operation
        return None

    @property
    def primary(self) -> EcsDeployment | None:
        return next((d for d in self.deployments if d.status == "PRIMARY"), None)

    @classmethod
    def from_manifest(cls, cluster: str, obj: Manifest) -> EcsServiceSnapshot:
        """From one service of a `DescribeServices` answer (boto3's dict, datetimes already parsed)."""
        breaker = (obj.get("deploymentConfiguration") or {}).get("deploymentCircuitBreaker") or {}
        deployments = tuple(
            EcsDeployment(
                id=d["id"],
                status=d.get("status", "ACTIVE"),
                task_definition=d.get("taskDefinition", ""),
                rollout_state=d.get("rolloutState"),
                rollout_state_reason=d.get("rolloutStateReason"),
                desired=int(d.get("desiredCount") or 0),
                running=int(d.get("runningCount") or 0),
                pending=int(d.get("pendingCount") or 0),
                failed_tasks=int(d.get("failedTasks") or 0),
                created_at=d.get("createdAt"),
                updated_at=d.get("updatedAt"),
            )
            for d in obj.get("deployments") or ()
        )
        # ECS returns the newest events first; ten are plenty to explain a failure.
        events = tuple(
            EcsEvent(id=e["id"], created_at=e["createdAt"], message=e.get("message", ""))
            for e in (obj.get("events") or ())[:10]
        )
        tags = {str(t.get("key")): str(t.get("value")) for t in obj.get("tags") or ()}
        return cls(
            cluster=cluster,
            service=obj["serviceName"],
            deployments=deployments,
            is_circuit_breaker_on=bool(breaker.get("enable")),
            is_circuit_breaker_rollback=bool(breaker.get("rollback")),
            events=events,
            rollbot_operation=tags.get(ECS_OPERATION_TAG),
            rolled_back_to=tags.get(ECS_ROLLED_BACK_TO_TAG),
        )


def _condition(raw: Manifest) -> Condition:
    return Condition(
        type=raw["type"],
        status=raw.get("status", "Unknown"),
        reason=raw.get("reason"),
        message=raw.get("message"),
        last_transition_time=raw.get("lastTransitionTime"),
    )


def _images(template: Manifest) -> tuple[ContainerImage, ...]:
    containers = (template.get("spec") or {}).get("containers") or ()
    return tuple(ContainerImage(container=c.get("name", "?"), image=c.get("image", "")) for c in containers)
