"""Kubernetes, Helm and ECS objects in the shapes the API servers return (zero counts omitted, as they are)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from bot.core.catalog import DetectSettings
from tests.core.factories import T0

SETTINGS = DetectSettings(
    channel="C0INCIDENT",  # type: ignore[arg-type]
    failing_for=timedelta(minutes=2),
    healthy_for=timedelta(minutes=2),
    stall_after=timedelta(minutes=10),
)
NEW_HASH = "7d9f8c6b5"
OLD_HASH = "5c4b3a291"


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(ctype: str, status: str, reason: str, message: str = "", at: datetime = T0) -> dict[str, Any]:
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastUpdateTime": stamp(at),
        "lastTransitionTime": stamp(at),
    }


def _nonzero(status: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in status.items() if value not in (0, None)}


def deployment(
    *,
    replicas: int = 3,
    updated: int = 3,
    ready: int | None = None,
    available: int | None = None,
    current: int | None = None,
    revision: int = 2,
    generation: int = 2,
    observed: int | None = None,
    conditions: list[dict[str, Any]] | None = None,
    paused: bool = False,
    image: str = "registry.example/web:2.0",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    ready = updated if ready is None else ready
    available = ready if available is None else available
    current = updated if current is None else current
    if conditions is None:
        conditions = [
            condition("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."),
            condition("Progressing", "True", "NewReplicaSetAvailable", 'ReplicaSet "web-7d9f8c6b5" has progressed.'),
        ]
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "web"}},
        "progressDeadlineSeconds": 600,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": image}]},
        },
    }
    if paused:
        spec["paused"] = True
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "generation": generation,
            "annotations": {"deployment.kubernetes.io/revision": str(revision), **(annotations or {})},
        },
        "spec": spec,
        "status": _nonzero(
            {
                "observedGeneration": generation if observed is None else observed,
                "replicas": current,
                "updatedReplicas": updated,
                "readyReplicas": ready,
                "availableReplicas": available,
                "unavailableReplicas": max(0, replicas - available),
            }
        )
        | {"conditions": conditions},
    }


def daemonset(
    *, desired: int = 4, updated: int = 4, available: int | None = None, strategy: str = "RollingUpdate"
) -> dict[str, Any]:
    available = updated if available is None else available
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "fluentd", "namespace": "kube-system", "generation": 3},
        "spec": {
            "updateStrategy": {"type": strategy},
            "template": {"spec": {"containers": [{"name": "fluentd", "image": "fluentd:1.17"}]}},
        },
        "status": _nonzero(
            {
                "currentNumberScheduled": desired,
                "desiredNumberScheduled": desired,
                "numberReady": available,
                "observedGeneration": 3,
                "updatedNumberScheduled": updated,
                "numberAvailable": available,
                "numberUnavailable": desired - available,
            }
        ),
    }


def statefulset(
    *,
    replicas: int = 5,
    updated: int = 5,
    available: int | None = None,
    partition: int = 0,
    strategy: str = "RollingUpdate",
) -> dict[str, Any]:
    available = replicas if available is None else available
    update_strategy: dict[str, Any] = {"type": strategy}
    if strategy == "RollingUpdate":
        update_strategy["rollingUpdate"] = {"partition": partition}
    is_done = updated == replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "shop", "generation": 4},
        "spec": {
            "replicas": replicas,
            "updateStrategy": update_strategy,
            "template": {"spec": {"containers": [{"name": "db", "image": "postgres:17"}]}},
        },
        "status": _nonzero(
            {
                "observedGeneration": 4,
                "replicas": replicas,
                "readyReplicas": available,
                "availableReplicas": available,
                "updatedReplicas": updated,
                "currentReplicas": replicas if is_done else replicas - updated,
            }
        )
        | {"currentRevision": "db-6b8f" if not is_done else "db-9a7c", "updateRevision": "db-9a7c"},
    }


def pod(
    name: str,
    *,
    template_hash: str = NEW_HASH,
    waiting: str | None = None,
    message: str | None = None,
    phase: str = "Pending",
    ready: bool = False,
    restarts: int = 0,
    terminated_before: bool = False,
) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {"startedAt": stamp(T0)}}
    if waiting is not None:
        state = {"waiting": {"reason": waiting, **({"message": message} if message else {})}}
    container: dict[str, Any] = {
        "name": "web",
        "image": "registry.example/web:2.0",
        "ready": ready,
        "restartCount": restarts,
        "state": state,
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}} if terminated_before else {},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "labels": {"app": "web", "pod-template-hash": template_hash}},
        "status": {
            "phase": phase,
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True" if ready else "False"},
            ],
            "containerStatuses": [container],
            "startTime": stamp(T0),
        },
    }


def helm_secret(name: str, version: int, status: str, modified_at: datetime | None = None) -> dict[str, Any]:
    labels = {"name": name, "owner": "helm", "status": status, "version": str(version)}
    if modified_at is not None:
        labels["modifiedAt"] = str(int(modified_at.timestamp()))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "helm.sh/release.v1",
        "metadata": {"name": f"sh.helm.release.v1.{name}.v{version}", "namespace": "shop", "labels": labels},
    }


def ecs_deployment(
    deployment_id: str,
    status: str,
    revision: int,
    rollout: str,
    *,
    reason: str | None = None,
    desired: int = 4,
    running: int = 4,
    failed: int = 0,
    at: datetime = T0,
) -> dict[str, Any]:
    return {
        "id": deployment_id,
        "status": status,
        "taskDefinition": f"arn:aws:ecs:us-east-1:123456789012:task-definition/web:{revision}",
        "desiredCount": desired,
        "pendingCount": 0,
        "runningCount": running,
        "failedTasks": failed,
        "createdAt": at,
        "updatedAt": at,
        "rolloutState": rollout,
        **({"rolloutStateReason": reason} if reason else {}),
    }


def ecs_service(
    deployments: list[dict[str, Any]], *, breaker: bool = True, rollback: bool = True, events: tuple[str, ...] = ()
) -> dict[str, Any]:
    return {
        "serviceName": "web",
        "deploymentConfiguration": {
            "deploymentCircuitBreaker": {"enable": breaker, "rollback": rollback},
            "maximumPercent": 200,
            "minimumHealthyPercent": 100,
        },
        "deployments": deployments,
        "events": [
            {"id": f"e{index}", "createdAt": T0 - timedelta(seconds=index), "message": text}
            for index, text in enumerate(events)
        ],
    }
