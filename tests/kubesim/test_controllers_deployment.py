"""Deployment and ReplicaSet controller logic, in process against the Store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.kubesim.registry import RegistryConfig
from tests.kubesim.harness import DEPLOYMENTS, PODS, REPLICASETS, Harness, workload

REVISION = "deployment.kubernetes.io/revision"


@pytest.fixture
def sim() -> Iterator[Harness]:
    with Harness(registry=RegistryConfig(missing=["*:broken"])) as h:
        yield h


def revisions(sim: Harness, name: str) -> dict[str, str]:
    """image -> revision annotation of every ReplicaSet the Deployment owns."""
    return {
        rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs["metadata"]["annotations"][REVISION]
        for rs in sim.owned_replicasets(name)
    }


def kubectl_undo(sim: Harness, name: str, target_image: str) -> None:
    """What `kubectl rollout undo --to-revision` sends: the target RS template (minus pod-template-hash)
    and the annotations merged per rollback.go."""
    skip = {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
    target = next(
        rs
        for rs in sim.owned_replicasets(name)
        if rs["spec"]["template"]["spec"]["containers"][0]["image"] == target_image
    )

    def change(d: dict[str, Any]) -> None:
        template = target["spec"]["template"]
        template["metadata"]["labels"].pop("pod-template-hash")
        d["spec"]["template"] = template
        annotations = {k: v for k, v in d["metadata"].get("annotations", {}).items() if k in skip}
        annotations.update({k: v for k, v in target["metadata"]["annotations"].items() if k not in skip})
        d["metadata"]["annotations"] = annotations

    sim.mutate(DEPLOYMENTS, name, change)


def test_new_deployment_gets_one_hashed_replicaset_and_completes(sim: Harness) -> None:
    sim.create(DEPLOYMENTS, workload("Deployment", "web", "nginx:1.25", replicas=3))
    sim.wait(lambda: sim.deployment_done("web"), message="rollout")

    (rs,) = sim.owned_replicasets("web")
    pod_hash = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{pod_hash}"
    assert set(pod_hash) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": pod_hash}
    assert rs["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] == pod_hash
    assert rs["metadata"]["annotations"] == {
        REVISION: "1",
        "deployment.kubernetes.io/desired-replicas": "3",
        "deployment.kubernetes.io/max-replicas": "4",
    }
    owner = rs["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "Deployment"
    assert owner["controller"]
    assert owner["blockOwnerDeletion"]

    d = sim.get(DEPLOYMENTS, "web")
    assert d["metadata"]["annotations"][REVISION] == "1"
    status = d["status"]
    assert status["observedGeneration"] == d["metadata"]["generation"]
    assert (status["replicas"], status["updatedReplicas"], status["readyReplicas"], status["availableReplicas"]) == (
        3,
        3,
        3,
        3,
    )
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conditions["Progressing"]["status"] == "True"
    assert conditions["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert conditions["Progressing"]["message"] == f'ReplicaSet "{rs["metadata"]["name"]}" has successfully progressed.'

    pods = sim.list(PODS, "app=web")
    assert len(pods) == 3
    for pod in pods:
        assert pod["metadata"]["name"].startswith(rs["metadata"]["name"] + "-")
        assert len(pod["metadata"]["name"]) == len(rs["metadata"]["name"]) + 6
        assert pod["metadata"]["labels"]["pod-template-hash"] == pod_hash
        assert pod["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
    rs = sim.get(REPLICASETS, rs["metadata"]["name"])
    assert rs["status"] == {
        "replicas": 3,
        "fullyLabeledReplicas": 3,
        "readyReplicas": 3,
        "availableReplicas": 3,
        "observedGeneration": rs["metadata"]["generation"],
    }


def test_template_changes_bump_revision_and_rollback_renumbers_the_old_replicaset(sim: Harness) -> None:
    sim.create(DEPLOYMENTS, workload("Deployment", "web", "nginx:1.25", replicas=2))
    sim.wait(lambda: sim.deployment_done("web"))
    sim.set_image(DEPLOYMENTS, "web", "nginx:1.26")
    sim.wait(lambda: sim.deployment_done("web"))
    sim.mutate(
        DEPLOYMENTS,
        "web",
        lambda d: d["metadata"].setdefault("annotations", {}).update({"kubernetes.io/change-cause": "bad one"}),
    )
    sim.set_image(DEPLOYMENTS, "web", "nginx:1.27")
    sim.wait(lambda: sim.deployment_done("web"))
    assert revisions(sim, "web") == {"nginx:1.25": "1", "nginx:1.26": "2", "nginx:1.27": "3"}

    kubectl_undo(sim, "web", "nginx:1.26")
    sim.wait(lambda: revisions(sim, "web").get("nginx:1.26") == "4", message="roll-forward to revision 4")
    sim.wait(lambda: sim.deployment_done("web"))

    assert revisions(sim, "web") == {"nginx:1.25": "1", "nginx:1.26": "4", "nginx:1.27": "3"}
    rs26 = next(
        rs
        for rs in sim.owned_replicasets("web")
        if rs["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    )
    assert rs26["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "2"
    assert rs26["spec"]["replicas"] == 2
    # The change-cause belonged to revision 3 only: the rollback annotation merge dropped it.
    assert "kubernetes.io/change-cause" not in rs26["metadata"]["annotations"]
    d = sim.get(DEPLOYMENTS, "web")
    assert d["metadata"]["annotations"][REVISION] == "4"

    # Rolling back again to 1 appends to nothing (rev 1 had no history) and makes it revision 5.
    kubectl_undo(sim, "web", "nginx:1.25")
    sim.wait(lambda: revisions(sim, "web").get("nginx:1.25") == "5")
    sim.wait(lambda: sim.deployment_done("web"))
    kubectl_undo(sim, "web", "nginx:1.26")
    sim.wait(lambda: revisions(sim, "web").get("nginx:1.26") == "6")
    rs26 = next(
        rs
        for rs in sim.owned_replicasets("web")
        if rs["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    )
    assert rs26["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "2,4"


def test_change_cause_travels_from_deployment_to_new_replicaset(sim: Harness) -> None:
    body = workload("Deployment", "web", "nginx:1.25", replicas=1)
    body["metadata"]["annotations"] = {"kubernetes.io/change-cause": "first deploy"}
    sim.create(DEPLOYMENTS, body)
    sim.wait(lambda: sim.deployment_done("web"))
    (rs,) = sim.owned_replicasets("web")
    assert rs["metadata"]["annotations"]["kubernetes.io/change-cause"] == "first deploy"

    # `kubectl annotate` on the Deployment later is copied onto the current RS as well.
    sim.mutate(
        DEPLOYMENTS,
        "web",
        lambda d: d["metadata"]["annotations"].update({"kubernetes.io/change-cause": "annotated"}),
    )
    sim.wait(
        lambda: sim.owned_replicasets("web")[0]["metadata"]["annotations"]["kubernetes.io/change-cause"] == "annotated"
    )


def test_rolling_update_stays_within_max_surge_and_max_unavailable(sim: Harness) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": "10%"}}
    sim.create(DEPLOYMENTS, workload("Deployment", "web", "nginx:1.25", replicas=10, strategy=strategy))
    sim.wait(lambda: sim.deployment_done("web"), timeout=20)

    violations: list[str] = []
    uid = sim.get(DEPLOYMENTS, "web")["metadata"]["uid"]

    def check(etype: str, res: tuple[str, str, str], obj: dict[str, Any]) -> None:
        if res != REPLICASETS:
            return
        total = sum(
            rs["spec"]["replicas"]
            for rs in sim.store.list_refs(REPLICASETS, "default")[0]
            if rs["metadata"]["ownerReferences"][0]["uid"] == uid
        )
        available = sum(
            rs.get("status", {}).get("availableReplicas", 0)
            for rs in sim.store.list_refs(REPLICASETS, "default")[0]
            if rs["metadata"]["ownerReferences"][0]["uid"] == uid
        )
        if total > 12:
            violations.append(f"{total} pods wanted > replicas + maxSurge")
        if available < 9:
            violations.append(f"{available} available < replicas - maxUnavailable")

    sim.store.add_listener(check)
    sim.set_image(DEPLOYMENTS, "web", "nginx:1.26")
    sim.wait(lambda: sim.deployment_done("web"), timeout=20)
    sim.store.remove_listener(check)
    assert violations == []
    assert [
        rs["spec"]["replicas"]
        for rs in sorted(sim.owned_replicasets("web"), key=lambda r: r["metadata"]["annotations"][REVISION])
    ] == [0, 10]


def test_scaling_keeps_the_revision(sim: Harness) -> None:
    sim.create(DEPLOYMENTS, workload("Deployment", "web", "nginx:1.25", replicas=2))
    sim.wait(lambda: sim.deployment_done("web"))
    sim.mutate(DEPLOYMENTS, "web", lambda d: d["spec"].update(replicas=5))
    sim.wait(lambda: sim.deployment_done("web") and sim.get(DEPLOYMENTS, "web")["status"]["availableReplicas"] == 5)
    (rs,) = sim.owned_replicasets("web")
    assert rs["metadata"]["annotations"][REVISION] == "1"
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "5"
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] == "7"
    assert len(sim.list(PODS, "app=web")) == 5


def test_missing_image_stalls_rollout_until_progress_deadline(sim: Harness) -> None:
    sim.create(DEPLOYMENTS, workload("Deployment", "web", "nginx:1.25", replicas=4, progressDeadlineSeconds=1))
    sim.wait(lambda: sim.deployment_done("web"))
    sim.set_image(DEPLOYMENTS, "web", "nginx:broken")

    def progressing() -> dict[str, Any]:
        status = sim.get(DEPLOYMENTS, "web").get("status", {})
        return next(c for c in status["conditions"] if c["type"] == "Progressing")

    # 25% surge (1) plus 25% unavailable (1): two new pods stuck, three old pods kept.
    sim.wait(lambda: sim.get(DEPLOYMENTS, "web")["status"].get("updatedReplicas") == 2)
    sim.controllers.wait_idle()
    status = sim.get(DEPLOYMENTS, "web")["status"]
    assert progressing()["reason"] == "ReplicaSetUpdated"
    assert status["replicas"] == 5
    assert status["availableReplicas"] == 3
    assert not sim.deployment_done("web")
    cond = sim.wait(lambda: progressing()["reason"] == "ProgressDeadlineExceeded" and progressing(), timeout=6)
    new_rs = next(rs for rs in sim.owned_replicasets("web") if rs["metadata"]["annotations"][REVISION] == "2")
    assert cond["status"] == "False"
    assert cond["message"] == f'ReplicaSet "{new_rs["metadata"]["name"]}" has timed out progressing.'
    available = next(c for c in sim.get(DEPLOYMENTS, "web")["status"]["conditions"] if c["type"] == "Available")
    assert available["status"] == "True"

    kubectl_undo(sim, "web", "nginx:1.25")
    sim.wait(lambda: sim.deployment_done("web"))
    assert progressing()["reason"] == "NewReplicaSetAvailable"
    assert {p["spec"]["containers"][0]["image"] for p in sim.list(PODS, "app=web")} == {"nginx:1.25"}


def test_paused_deployment_does_not_roll_out_until_resumed(sim: Harness) -> None:
    sim.create(DEPLOYMENTS, workload("Deployment", "web", "nginx:1.25", replicas=2))
    sim.wait(lambda: sim.deployment_done("web"))
    sim.mutate(DEPLOYMENTS, "web", lambda d: d["spec"].update(paused=True))

    def progressing() -> dict[str, Any]:
        return next(c for c in sim.get(DEPLOYMENTS, "web")["status"]["conditions"] if c["type"] == "Progressing")

    sim.wait(lambda: progressing()["reason"] == "DeploymentPaused")
    assert progressing()["status"] == "Unknown"
    assert progressing()["message"] == "Deployment is paused"
    sim.set_image(DEPLOYMENTS, "web", "nginx:1.26")
    sim.controllers.wait_idle()
    assert len(sim.owned_replicasets("web")) == 1
    sim.mutate(DEPLOYMENTS, "web", lambda d: d["spec"].update(paused=False))
    sim.wait(lambda: len(sim.owned_replicasets("web")) == 2 and sim.deployment_done("web"))
    assert revisions(sim, "web") == {"nginx:1.25": "1", "nginx:1.26": "2"}


def test_revision_history_limit_deletes_oldest_replicasets(sim: Harness) -> None:
    sim.create(DEPLOYMENTS, workload("Deployment", "web", "nginx:1", replicas=1, revisionHistoryLimit=1))
    for tag in ("2", "3", "4"):
        sim.wait(lambda: sim.deployment_done("web"))
        sim.set_image(DEPLOYMENTS, "web", f"nginx:{tag}")
    sim.wait(lambda: sim.deployment_done("web") and len(sim.owned_replicasets("web")) == 2)
    assert revisions(sim, "web") == {"nginx:3": "3", "nginx:4": "4"}


def test_recreate_strategy_scales_old_to_zero_first(sim: Harness) -> None:
    sim.create(DEPLOYMENTS, workload("Deployment", "web", "nginx:1", replicas=3, strategy={"type": "Recreate"}))
    sim.wait(lambda: sim.deployment_done("web"))
    overlap: list[int] = []

    def check(etype: str, res: tuple[str, str, str], obj: dict[str, Any]) -> None:
        if res == PODS:
            images = {p["spec"]["containers"][0]["image"] for p in sim.store.list_refs(PODS, "default")[0]}
            if len(images) > 1:
                overlap.append(len(images))

    sim.store.add_listener(check)
    sim.set_image(DEPLOYMENTS, "web", "nginx:2")
    sim.wait(lambda: sim.deployment_done("web") and sim.get(DEPLOYMENTS, "web")["status"].get("replicas") == 3)
    sim.store.remove_listener(check)
    assert overlap == []


def test_scaling_a_stuck_rollout_distributes_replicas_proportionally(sim: Harness) -> None:
    """The Deployment docs' example: 10 replicas, maxSurge 3, maxUnavailable 2, a bad image, then scale to 15:
    the old ReplicaSet goes 8 -> 11 and the new one 5 -> 7."""
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}}
    sim.create(DEPLOYMENTS, workload("Deployment", "web", "nginx:1.25", replicas=10, strategy=strategy))
    sim.wait(lambda: sim.deployment_done("web"), timeout=20)
    sim.set_image(DEPLOYMENTS, "web", "nginx:broken")

    def sizes() -> dict[str, int]:
        return {
            rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs["spec"]["replicas"]
            for rs in sim.owned_replicasets("web")
        }

    sim.wait(lambda: sizes() == {"nginx:1.25": 8, "nginx:broken": 5}, message="stuck at 8 old / 5 new")
    sim.mutate(DEPLOYMENTS, "web", lambda d: d["spec"].update(replicas=15))
    sim.wait(lambda: sizes() == {"nginx:1.25": 11, "nginx:broken": 7}, message="proportional scale-up")
    sim.controllers.wait_idle()
    assert sizes() == {"nginx:1.25": 11, "nginx:broken": 7}


def test_min_ready_seconds_delays_availability(sim: Harness) -> None:
    import time

    sim.create(DEPLOYMENTS, workload("Deployment", "web", "nginx:1.25", replicas=1, minReadySeconds=2))
    sim.wait(lambda: sim.get(DEPLOYMENTS, "web").get("status", {}).get("readyReplicas") == 1)
    ready_at = time.monotonic()
    assert sim.get(DEPLOYMENTS, "web")["status"].get("availableReplicas", 0) == 0
    sim.wait(lambda: sim.deployment_done("web"), timeout=10)
    # Ready times have one-second resolution, so availability comes 1-3 s after readiness.
    assert 1.0 <= time.monotonic() - ready_at <= 4.0
    (rs,) = sim.owned_replicasets("web")
    assert rs["spec"]["minReadySeconds"] == 2
