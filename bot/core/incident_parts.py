"""The parts an incident is made of: what failed (`WorkloadRef`) and its key, who reported it, how it ended, the
revision a rollback would return to, and its timeline entries. `bot.core.incidents` re-exports every name."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Final

from pydantic import BaseModel, ConfigDict

from bot.core.catalog import BackendKind, WorkloadKind
from bot.core.rollouts import ContainerImage, RevisionNumber

# Short kind prefixes as kubectl spells them, for targets found by a `watch` scope (`deploy/web -n shop`).
_KIND_PREFIXES: Final = {
    WorkloadKind.DEPLOYMENT.value: "deploy",
    WorkloadKind.DAEMONSET.value: "ds",
    WorkloadKind.STATEFULSET.value: "sts",
}
HELM_RELEASE_KIND: Final = "HelmRelease"
ECS_SERVICE_KIND: Final = "EcsService"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IncidentState(StrEnum):
    OPEN = "open"
    ROLLING_BACK = "rolling_back"
    RESOLVED = "resolved"


class IncidentSource(StrEnum):
    """Who reported the failure (the card's metadata `source`; an automatic-rollback policy may select on it)."""

    WATCH = "watch"
    ALERTMANAGER = "alertmanager"
    PIPELINE = "pipeline"


class Resolution(StrEnum):
    ROLLED_BACK = "rolled_back"
    ROLLED_BACK_BY_ECS = "rolled_back_by_ecs"
    SUPERSEDED = "superseded"
    RECOVERED = "recovered"
    DELETED = "deleted"


class WorkloadRef(_Frozen):
    """What failed and where: a Kubernetes workload, a Helm release or an ECS service (cluster as namespace)."""

    backend: BackendKind
    location: str | None  # the kube context, or the AWS region
    kind: str  # Deployment | DaemonSet | StatefulSet | HelmRelease | EcsService
    namespace: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.backend.value}:{self.location or ''}:{self.kind}:{self.namespace}/{self.name}"

    @property
    def display(self) -> str:
        """How people would type it: `deploy/web -n shop` (the ad-hoc target syntax), `helm/web -n shop`…"""
        if self.kind in _KIND_PREFIXES:
            return f"{_KIND_PREFIXES[self.kind]}/{self.name} -n {self.namespace}"
        if self.backend is BackendKind.HELM:
            return f"helm/{self.name} -n {self.namespace}"
        return f"ecs/{self.namespace}/{self.name}"


def incident_key(workload: WorkloadRef, revision: str) -> str:
    return f"{workload.key}@{revision}"


class TimelineEntry(_Frozen):
    at: datetime
    text: str


class LastGood(_Frozen):
    """The revision a rollback would return to, as the backend's history tells it."""

    revision: RevisionNumber
    images: tuple[ContainerImage, ...] = ()
