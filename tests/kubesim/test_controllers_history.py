"""DaemonSet and StatefulSet controllers: ControllerRevision format, roll-forward, pods and status."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.kubesim.harness import CONTROLLERREVISIONS, DAEMONSETS, PODS, STATEFULSETS, Harness, workload

# The ControllerRevision data a 1.35 cluster stores for this DaemonSet (spec §2.1, observed).
AGENT_V1_DATA = (
    '{"spec":{"template":{"$patch":"replace","metadata":{"labels":{"app":"agent"}},"spec":{"containers":'
    '[{"command":["sleep","3600"],"image":"busybox:1.36","imagePullPolicy":"IfNotPresent","name":"agent",'
    '"resources":{},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File"}],'
    '"dnsPolicy":"ClusterFirst","restartPolicy":"Always","schedulerName":"default-scheduler",'
    '"securityContext":{},"terminationGracePeriodSeconds":30}}}}'
)


@pytest.fixture
def sim() -> Iterator[Harness]:
    with Harness(nodes=3) as h:
        yield h


def agent() -> dict[str, Any]:
    body = workload("DaemonSet", "agent", "busybox:1.36")
    body["spec"]["template"]["spec"]["containers"][0]["command"] = ["sleep", "3600"]
    return body


def ds_done(sim: Harness, name: str) -> bool:
    ds = sim.get(DAEMONSETS, name)
    st = ds.get("status") or {}
    return (
        ds["metadata"]["generation"] <= st.get("observedGeneration", 0)
        and st.get("updatedNumberScheduled", 0) >= st.get("desiredNumberScheduled", 0)
        and st.get("numberAvailable", 0) >= st.get("desiredNumberScheduled", 0)
    )


def sts_done(sim: Harness, name: str) -> bool:
    sts = sim.get(STATEFULSETS, name)
    st = sts.get("status") or {}
    partition = sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"]
    return (
        st.get("observedGeneration", 0) >= sts["metadata"]["generation"]
        and st.get("readyReplicas", 0) >= sts["spec"]["replicas"]
        and st.get("updatedReplicas", 0) >= sts["spec"]["replicas"] - partition
    )


def history(sim: Harness, selector: str) -> dict[int, dict[str, Any]]:
    return {cr["revision"]: cr for cr in sim.list(CONTROLLERREVISIONS, selector)}


def test_daemonset_revision_data_matches_the_real_controller_bytes(sim: Harness) -> None:
    sim.create(DAEMONSETS, agent())
    sim.wait(lambda: ds_done(sim, "agent"), message="daemonset rollout")
    (cr,) = sim.list(CONTROLLERREVISIONS, "app=agent")
    pod_hash = cr["metadata"]["labels"]["controller-revision-hash"]
    assert cr["metadata"]["name"] == f"agent-{pod_hash}"
    assert cr["revision"] == 1
    assert json.dumps(cr["data"], separators=(",", ":")) == AGENT_V1_DATA
    assert cr["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"

    pods = sim.list(PODS, "app=agent")
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["node-1", "node-2", "node-3"]
    assert {p["metadata"]["labels"]["controller-revision-hash"] for p in pods} == {pod_hash}
    status = sim.get(DAEMONSETS, "agent")["status"]
    assert status == {
        "currentNumberScheduled": 3,
        "numberMisscheduled": 0,
        "desiredNumberScheduled": 3,
        "numberReady": 3,
        "observedGeneration": 1,
        "updatedNumberScheduled": 3,
        "numberAvailable": 3,
    }


def test_daemonset_undo_rolls_revision_one_forward_to_three(sim: Harness) -> None:
    """Seed 001: with revisions 1 and 2, rolling back to 1 turns revision 1 into 3."""
    body = agent()
    body["metadata"]["annotations"] = {"kubernetes.io/change-cause": "v1"}
    sim.create(DAEMONSETS, body)
    sim.wait(lambda: ds_done(sim, "agent"))
    v1 = history(sim, "app=agent")[1]
    sim.set_image(DAEMONSETS, "agent", "busybox:1.37")
    sim.wait(lambda: ds_done(sim, "agent") and len(history(sim, "app=agent")) == 2)
    assert set(history(sim, "app=agent")) == {1, 2}

    # `kubectl rollout undo --to-revision=1` patches the CR data verbatim (a $patch: replace template).
    sim.mutate(DAEMONSETS, "agent", lambda ds: ds["spec"].update(template=_template_of(v1)))
    sim.wait(lambda: set(history(sim, "app=agent")) == {2, 3}, message="roll-forward")
    sim.wait(lambda: ds_done(sim, "agent"))
    crs = history(sim, "app=agent")
    assert crs[3]["metadata"]["name"] == v1["metadata"]["name"]
    assert crs[3]["metadata"]["uid"] == v1["metadata"]["uid"]
    assert crs[3]["metadata"]["annotations"]["kubernetes.io/change-cause"] == "v1"
    assert {p["spec"]["containers"][0]["image"] for p in sim.list(PODS, "app=agent")} == {"busybox:1.36"}
    assert {p["metadata"]["labels"]["controller-revision-hash"] for p in sim.list(PODS, "app=agent")} == {
        v1["metadata"]["labels"]["controller-revision-hash"]
    }


def test_daemonset_rolling_update_replaces_one_node_at_a_time(sim: Harness) -> None:
    sim.create(DAEMONSETS, agent())
    sim.wait(lambda: ds_done(sim, "agent"))
    worst: list[int] = []

    def check(etype: str, res: tuple[str, str, str], obj: dict[str, Any]) -> None:
        if res == PODS:
            ready_nodes = {
                p["spec"].get("nodeName")
                for p in sim.store.list_refs(PODS, "default")[0]
                if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
            }
            worst.append(len(ready_nodes))

    sim.store.add_listener(check)
    sim.set_image(DAEMONSETS, "agent", "busybox:1.37")
    sim.wait(lambda: ds_done(sim, "agent"))
    sim.store.remove_listener(check)
    assert min(worst) >= 2  # maxUnavailable 1 of 3 nodes


def test_statefulset_ordered_creation_and_reverse_ordinal_update(sim: Harness) -> None:
    created: list[str] = []
    deleted: list[str] = []

    def record(etype: str, res: tuple[str, str, str], obj: dict[str, Any]) -> None:
        if res == PODS and etype == "ADDED":
            created.append(obj["metadata"]["name"])
        if res == PODS and etype == "DELETED":
            deleted.append(obj["metadata"]["name"])

    sim.store.add_listener(record)
    sim.create(STATEFULSETS, workload("StatefulSet", "web", "nginx:1.25", replicas=3, serviceName="web"))
    sim.wait(lambda: sts_done(sim, "web"))
    assert created == ["web-0", "web-1", "web-2"]
    pod = sim.get(PODS, "web-1")
    assert pod["spec"]["hostname"] == "web-1"
    assert pod["spec"]["subdomain"] == "web"
    assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "web-1"
    assert pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "1"
    (rev1,) = sim.list(CONTROLLERREVISIONS, "app=web")
    assert pod["metadata"]["labels"]["controller-revision-hash"] == rev1["metadata"]["name"]
    assert rev1["metadata"]["labels"]["controller.kubernetes.io/hash"] == rev1["metadata"]["name"][len("web-") :]

    sim.set_image(STATEFULSETS, "web", "nginx:1.26")
    sim.wait(lambda: sts_done(sim, "web") and sim.get(STATEFULSETS, "web")["status"]["currentReplicas"] == 3)
    assert deleted == ["web-2", "web-1", "web-0"]
    status = sim.get(STATEFULSETS, "web")["status"]
    rev2 = history(sim, "app=web")[2]
    assert status["currentRevision"] == status["updateRevision"] == rev2["metadata"]["name"]
    assert (status["replicas"], status["readyReplicas"], status["updatedReplicas"], status["availableReplicas"]) == (
        3,
        3,
        3,
        3,
    )

    # Undo to revision 1: roll-forward makes it revision 3, pods move back to it.
    sim.mutate(STATEFULSETS, "web", lambda s: s["spec"].update(template=_template_of(rev1)))
    sim.wait(lambda: set(history(sim, "app=web")) == {2, 3})
    sim.wait(lambda: sts_done(sim, "web") and sim.get(STATEFULSETS, "web")["status"]["currentReplicas"] == 3)
    assert history(sim, "app=web")[3]["metadata"]["name"] == rev1["metadata"]["name"]
    assert {p["spec"]["containers"][0]["image"] for p in sim.list(PODS, "app=web")} == {"nginx:1.25"}


def test_statefulset_partition_limits_the_update(sim: Harness) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}
    sim.create(STATEFULSETS, workload("StatefulSet", "db", "redis:7", replicas=3, updateStrategy=strategy))
    sim.wait(lambda: sts_done(sim, "db"))
    sim.set_image(STATEFULSETS, "db", "redis:8")
    sim.wait(lambda: sts_done(sim, "db") and sim.get(STATEFULSETS, "db")["status"].get("updatedReplicas") == 1)
    sim.controllers.wait_idle()
    images = {p["metadata"]["name"]: p["spec"]["containers"][0]["image"] for p in sim.list(PODS, "app=db")}
    assert images == {"db-0": "redis:7", "db-1": "redis:7", "db-2": "redis:8"}
    status = sim.get(STATEFULSETS, "db")["status"]
    assert status["currentRevision"] != status["updateRevision"]
    assert status["currentReplicas"] == 2


def test_statefulset_scale_down_removes_highest_ordinal_first(sim: Harness) -> None:
    sim.create(STATEFULSETS, workload("StatefulSet", "web", "nginx:1.25", replicas=3))
    sim.wait(lambda: sts_done(sim, "web"))
    sim.mutate(STATEFULSETS, "web", lambda s: s["spec"].update(replicas=1))
    sim.wait(lambda: [p["metadata"]["name"] for p in sim.list(PODS, "app=web")] == ["web-0"])
    sim.wait(lambda: sim.get(STATEFULSETS, "web")["status"]["replicas"] == 1)


def _template_of(cr: dict[str, Any]) -> dict[str, Any]:
    template = json.loads(json.dumps(cr["data"]["spec"]["template"]))
    template.pop("$patch")
    return template


def test_daemonset_node_selector_limits_the_nodes(sim: Harness) -> None:
    body = agent()
    body["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "node-2"}
    sim.create(DAEMONSETS, body)
    sim.wait(lambda: ds_done(sim, "agent") and sim.get(DAEMONSETS, "agent")["status"]["numberReady"] == 1)
    status = sim.get(DAEMONSETS, "agent")["status"]
    assert status["desiredNumberScheduled"] == 1
    assert [p["spec"]["nodeName"] for p in sim.list(PODS, "app=agent")] == ["node-2"]


def test_daemonset_surge_update_keeps_every_node_available(sim: Harness) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    body = agent()
    body["spec"]["updateStrategy"] = strategy
    sim.create(DAEMONSETS, body)
    sim.wait(lambda: ds_done(sim, "agent"))
    dips: list[int] = []

    def check(etype: str, res: tuple[str, str, str], obj: dict[str, Any]) -> None:
        if res == PODS:
            ready_nodes = {
                p["spec"].get("nodeName")
                for p in sim.store.list_refs(PODS, "default")[0]
                if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
            }
            if len(ready_nodes) < 3:
                dips.append(len(ready_nodes))

    sim.store.add_listener(check)
    sim.set_image(DAEMONSETS, "agent", "busybox:1.37")
    sim.wait(lambda: ds_done(sim, "agent") and len(sim.list(PODS, "app=agent")) == 3)
    sim.store.remove_listener(check)
    assert dips == []
    assert {p["spec"]["containers"][0]["image"] for p in sim.list(PODS, "app=agent")} == {"busybox:1.37"}
