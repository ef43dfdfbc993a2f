"""The seed scenarios, arranged with the real kubectl, and the observations the parity tests compare."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import yaml

from bot.app import RollbotApp
from bot.core.catalog import WorkloadKind
from sandbox.slack.driver import SlackDriver
from sandbox.slack.seed import ALICE, BOB, INCIDENT
from sandbox.slack.server import FakeSlack
from tests.e2e_k8s.conftest import KubeCluster
from tests.e2e_slack.conftest import Request, request_rollback, wait_for_phase

# (catalog target, kubectl resource) per kind, as in the e2e catalog.
WORKLOADS = {
    WorkloadKind.DEPLOYMENT: ("web", "deployment/web"),
    WorkloadKind.DAEMONSET: ("agent", "daemonset/agent"),
    WorkloadKind.STATEFULSET: ("db", "statefulset/db"),
}
ROLLOUT_TIMEOUT = "60s"


def manifest(kind: WorkloadKind, name: str, image: str) -> str:
    labels = {"app": name}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": name, "image": image}]}},
    }
    if kind is not WorkloadKind.DAEMONSET:
        spec["replicas"] = 3
    if kind is WorkloadKind.STATEFULSET:
        spec["serviceName"] = name
    body = {
        "apiVersion": "apps/v1",
        "kind": kind.value,
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }
    return yaml.safe_dump(body)


def break_workload(cluster: KubeCluster, kind: WorkloadKind) -> None:
    """v1 → v2 (with a change-cause, seed 003) → a bad v3.

    For Deployments and DaemonSets the bad image does not exist (seeds 001/004). A StatefulSet with OrderedReady
    pods never replaces a pod that is not Ready, even after its template is reverted (the upstream "forced
    rollback" caveat, which kubesim reproduces), so there the bad build is one that pulls and runs.
    """
    name, resource = WORKLOADS[kind]
    bad = "v10" if kind is not WorkloadKind.STATEFULSET else "v3"
    cluster.kubectl("apply", "-f", "-", stdin=manifest(kind, name, f"registry.example/{name}:v1"))
    cluster.kubectl("rollout", "status", resource, f"--timeout={ROLLOUT_TIMEOUT}")
    cluster.kubectl("set", "image", resource, f"{name}=registry.example/{name}:v2")
    cluster.kubectl("annotate", resource, f"kubernetes.io/change-cause=upgrade {name} to v2", "--overwrite")
    cluster.kubectl("rollout", "status", resource, f"--timeout={ROLLOUT_TIMEOUT}")
    cluster.kubectl("set", "image", resource, f"{name}=registry.example/{name}:{bad}")
    # The bad revision is recorded (and, with a missing image, never becomes ready).
    cluster.kubectl("rollout", "status", resource, "--timeout=2s", check=False)


def undo_with_kubectl(cluster: KubeCluster, kind: WorkloadKind, to_revision: int | None) -> None:
    _, resource = WORKLOADS[kind]
    extra = [f"--to-revision={to_revision}"] if to_revision else []
    cluster.kubectl("rollout", "undo", resource, *extra)
    cluster.kubectl("rollout", "status", resource, f"--timeout={ROLLOUT_TIMEOUT}")


def undo_with_rollbot(
    slack: SlackDriver, fake: FakeSlack, bot: RollbotApp, kind: WorkloadKind, to_revision: int | None
) -> Request:
    target, _ = WORKLOADS[kind]
    text = f"{target} {to_revision}" if to_revision else target
    request = request_rollback(slack, fake, bot, text=text, user=ALICE, channel=INCIDENT)
    slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
    wait_for_phase(fake, request, "succeeded", timeout=60)
    return request


@dataclass(frozen=True)
class Observation:
    template: dict[str, Any]
    revisions: list[int]
    history: str
    images: list[str]


def observe(cluster: KubeCluster, kind: WorkloadKind) -> Observation:
    name, resource = WORKLOADS[kind]
    obj = cluster.kubectl("get", resource, "-o", "json").json()
    if kind is WorkloadKind.DEPLOYMENT:
        items = cluster.kubectl("get", "replicasets", "-l", f"app={name}", "-o", "json").json()["items"]
        revisions = sorted(int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) for rs in items)
    else:
        items = cluster.kubectl("get", "controllerrevisions", "-l", f"app={name}", "-o", "json").json()["items"]
        revisions = sorted(int(cr["revision"]) for cr in items)
    pods = cluster.kubectl("get", "pods", "-l", f"app={name}", "-o", "json").json()["items"]
    images = sorted(
        pod["spec"]["containers"][0]["image"] for pod in pods if not pod["metadata"].get("deletionTimestamp")
    )
    return Observation(
        template=json.loads(json.dumps(obj["spec"]["template"])),
        revisions=revisions,
        history=cluster.kubectl("rollout", "history", resource).stdout,
        images=images,
    )
