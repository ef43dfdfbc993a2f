"""Garbage collection, the fake kubelet's pod lifecycles and the registry configuration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sandbox.kubesim.registry import RegistryConfig, normalize_image
from tests.kubesim.harness import (
    CONTROLLERREVISIONS,
    DAEMONSETS,
    DEPLOYMENTS,
    EVENTS,
    NS,
    PODS,
    REPLICASETS,
    STATEFULSETS,
    Harness,
    workload,
)


def pod(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }


def events_for(sim: Harness, name: str) -> list[tuple[str, str, str]]:
    return [
        (e["type"], e["reason"], e["message"])
        for e in sorted(sim.list(EVENTS), key=lambda e: e["metadata"]["name"])
        if e["involvedObject"]["name"] == name
    ]


def state_of(sim: Harness, name: str) -> dict[str, Any]:
    return sim.get(PODS, name)["status"].get("containerStatuses", [{}])[0]


# ---------------------------------------------------------------------- garbage collection


def test_deleting_a_deployment_deletes_its_replicasets_and_pods() -> None:
    with Harness() as sim:
        sim.create(DEPLOYMENTS, workload("Deployment", "web", "nginx:1", replicas=2))
        sim.wait(lambda: sim.deployment_done("web"))
        sim.store.delete(DEPLOYMENTS, NS, "web")
        sim.wait(lambda: not sim.list(REPLICASETS) and not sim.list(PODS), message="cascade")


def test_orphan_propagation_keeps_dependents_without_owner_refs() -> None:
    with Harness() as sim:
        sim.create(DEPLOYMENTS, workload("Deployment", "web", "nginx:1", replicas=1))
        sim.wait(lambda: sim.deployment_done("web"))
        sim.store.delete(DEPLOYMENTS, NS, "web", propagation="Orphan")
        sim.wait(lambda: "ownerReferences" not in sim.list(REPLICASETS)[0]["metadata"])
        sim.controllers.wait_idle()
        assert len(sim.list(PODS)) == 1


def test_deleting_daemonset_and_statefulset_removes_pods_and_revisions() -> None:
    with Harness() as sim:
        sim.create(DAEMONSETS, workload("DaemonSet", "agent", "busybox:1"))
        sim.create(STATEFULSETS, workload("StatefulSet", "db", "redis:7", replicas=2))
        sim.wait(lambda: len(sim.list(PODS)) == 5 and len(sim.list(CONTROLLERREVISIONS)) == 2)
        sim.store.delete(DAEMONSETS, NS, "agent")
        sim.store.delete(STATEFULSETS, NS, "db")
        sim.wait(lambda: not sim.list(PODS) and not sim.list(CONTROLLERREVISIONS), message="cascade")


# ---------------------------------------------------------------------- kubelet


def test_pod_becomes_running_and_ready_with_the_kubelet_events() -> None:
    with Harness(pod_ready_seconds=0.1) as sim:
        sim.create(PODS, pod("solo", "nginx:1.25"))
        sim.wait(lambda: sim.get(PODS, "solo")["status"]["phase"] == "Running")
        p = sim.get(PODS, "solo")
        status = p["status"]
        assert p["spec"]["nodeName"] in {"node-1", "node-2", "node-3"}
        assert {c["type"]: c["status"] for c in status["conditions"]} == {
            "PodReadyToStartContainers": "True",
            "Initialized": "True",
            "Ready": "True",
            "ContainersReady": "True",
            "PodScheduled": "True",
        }
        assert status["podIP"].startswith("10.244.")
        assert status["hostIP"].startswith("172.18.0.")
        assert status["startTime"]
        cs = status["containerStatuses"][0]
        assert cs["ready"]
        assert cs["started"]
        assert cs["restartCount"] == 0
        assert cs["image"] == "docker.io/library/nginx:1.25"
        assert cs["imageID"].startswith("docker.io/library/nginx@sha256:")
        assert "running" in cs["state"]
        sim.wait(lambda: len(events_for(sim, "solo")) == 4)
        assert events_for(sim, "solo") == [
            ("Normal", "Scheduled", f"Successfully assigned default/solo to {p['spec']['nodeName']}"),
            ("Normal", "Pulled", 'Container image "nginx:1.25" already present on machine'),
            ("Normal", "Created", "Created container: app"),
            ("Normal", "Started", "Started container app"),
        ]


def test_missing_image_alternates_err_image_pull_and_back_off() -> None:
    registry = RegistryConfig(missing=["*:v10"])
    with Harness(pod_ready_seconds=0.05, registry=registry) as sim:
        sim.controllers.kubelet.backoff_base = 0.3
        sim.create(PODS, pod("bad", "jocatalin/kubernetes-bootcamp:v10"))
        seen: list[str] = []

        def saw_cycle() -> bool:
            reason = state_of(sim, "bad").get("state", {}).get("waiting", {}).get("reason")
            if reason and (not seen or seen[-1] != reason):
                seen.append(reason)
            return seen[-3:] == ["ErrImagePull", "ImagePullBackOff", "ErrImagePull"]

        sim.wait(saw_cycle, timeout=10, message="ErrImagePull -> ImagePullBackOff -> ErrImagePull")
        p = sim.get(PODS, "bad")
        assert p["status"]["phase"] == "Pending"
        ready = next(c for c in p["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "False"
        assert ready["reason"] == "ContainersNotReady"
        ref = "docker.io/jocatalin/kubernetes-bootcamp:v10"
        pull_error = (
            f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}": '
            f'failed to resolve reference "{ref}": {ref}: not found'
        )
        sim.wait(
            lambda: (
                ("Normal", "BackOff", 'Back-off pulling image "jocatalin/kubernetes-bootcamp:v10"')
                in events_for(sim, "bad")
            )
        )
        reasons = events_for(sim, "bad")
        assert (
            "Warning",
            "Failed",
            f'Failed to pull image "jocatalin/kubernetes-bootcamp:v10": {pull_error}',
        ) in reasons
        assert ("Warning", "Failed", "Error: ErrImagePull") in reasons
        assert ("Warning", "Failed", "Error: ImagePullBackOff") in reasons
        # Repeated failures aggregate into one Event with a growing count, as client-go does.
        failed = [e for e in sim.list(EVENTS) if e["message"] == "Error: ErrImagePull"]
        assert len(failed) == 1
        assert failed[0]["count"] >= 2


def test_crash_looping_image_restarts_with_growing_count() -> None:
    registry = RegistryConfig(crashloop=["*/crasher:*"])
    with Harness(pod_ready_seconds=0.05, registry=registry) as sim:
        sim.controllers.kubelet.backoff_base = 0.1
        sim.create(PODS, pod("crash", "example.com/crasher:1"))
        sim.wait(lambda: state_of(sim, "crash").get("restartCount", 0) >= 3, message="restarts")
        cs = state_of(sim, "crash")
        assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        assert cs["state"]["waiting"]["message"].startswith("back-off ")
        assert cs["lastState"]["terminated"]["exitCode"] == 1
        assert cs["lastState"]["terminated"]["reason"] == "Error"
        assert not cs["ready"]
        assert sim.get(PODS, "crash")["status"]["phase"] == "Running"
        uid = sim.get(PODS, "crash")["metadata"]["uid"]
        assert (
            "Warning",
            "BackOff",
            f"Back-off restarting failed container app in pod crash_default({uid})",
        ) in events_for(sim, "crash")


# ---------------------------------------------------------------------- registry


def test_registry_defaults_and_globs() -> None:
    default = RegistryConfig()
    assert default.image_exists("nginx:1.25")
    assert not default.image_exists("example.com/non-existing:1")
    custom = RegistryConfig(missing=["docker.io/library/nginx:1.2*"], exists=[], crashloop=["*:crash"])
    assert not custom.image_exists("nginx:1.25")
    assert custom.image_exists("nginx:1.30")
    assert custom.crashes("busybox:crash")
    assert normalize_image("nginx") == "docker.io/library/nginx:latest"
    assert normalize_image("quay.io/org/app:1") == "quay.io/org/app:1"
    assert normalize_image("localhost:5000/app") == "localhost:5000/app:latest"


@pytest.mark.parametrize("suffix", ["yaml", "json"])
def test_registry_loads_from_file(tmp_path: Path, suffix: str) -> None:
    data = {"missing": ["*:v10"], "exists": ["jocatalin/*"], "crashloop": ["*:boom"], "unready": ["*:sick"]}
    path = tmp_path / f"registry.{suffix}"
    path.write_text(json.dumps(data))
    config = RegistryConfig.load(path)
    assert config.image_exists("jocatalin/kubernetes-bootcamp:v2")
    assert not config.image_exists("jocatalin/kubernetes-bootcamp:v10")
    assert not config.image_exists("nginx:1")
    assert config.crashes("jocatalin/x:boom")
    assert config.never_ready("jocatalin/x:sick")
    with pytest.raises(ValueError, match="unknown keys"):
        RegistryConfig.from_dict({"mising": []})


# ---------------------------------------------------------------------- jobs (helm hooks)

JOBS = ("batch", "v1", "jobs")


def job(name: str, image: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "hook", "image": image}]}},
    }
    body.update(spec)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": NS}, "spec": body}


def test_job_pods_run_to_completion_and_the_job_completes() -> None:
    with Harness(pod_ready_seconds=0.05) as sim:
        sim.create(JOBS, job("migrate", "busybox:1", completions=2, parallelism=1))
        status = sim.wait(
            lambda: (
                any(c["type"] == "Complete" for c in sim.get(JOBS, "migrate").get("status", {}).get("conditions", []))
                and sim.get(JOBS, "migrate")["status"]
            ),
            message="Job Complete",
        )
        assert status["succeeded"] == 2
        assert "active" not in status
        assert status["completionTime"]
        assert [c["type"] for c in status["conditions"]] == ["SuccessCriteriaMet", "Complete"]
        pods = sim.list(PODS, "job-name=migrate")
        assert [p["status"]["phase"] for p in pods] == ["Succeeded", "Succeeded"]
        terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
        assert terminated["exitCode"] == 0
        assert terminated["reason"] == "Completed"
        ready = next(c for c in pods[0]["status"]["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "PodCompleted"


def test_failing_job_stops_at_the_backoff_limit() -> None:
    with Harness(pod_ready_seconds=0.05, registry=RegistryConfig(crashloop=["*:boom"])) as sim:
        sim.create(JOBS, job("hook", "busybox:boom", backoffLimit=1))
        status = sim.wait(
            lambda: (
                any(c["type"] == "Failed" for c in sim.get(JOBS, "hook").get("status", {}).get("conditions", []))
                and sim.get(JOBS, "hook")["status"]
            ),
            message="Job Failed",
        )
        assert status["failed"] == 2
        failed = next(c for c in status["conditions"] if c["type"] == "Failed")
        assert failed["reason"] == "BackoffLimitExceeded"
        assert {p["status"]["phase"] for p in sim.list(PODS, "job-name=hook")} == {"Failed"}


def test_changing_a_pod_image_restarts_the_container() -> None:
    with Harness(pod_ready_seconds=0.05) as sim:
        sim.create(PODS, pod("solo", "nginx:1.25"))
        sim.wait(lambda: state_of(sim, "solo").get("ready"))
        sim.mutate(PODS, "solo", lambda p: p["spec"]["containers"][0].update(image="nginx:1.26"))
        sim.wait(
            lambda: (
                state_of(sim, "solo").get("image") == "docker.io/library/nginx:1.26" and state_of(sim, "solo")["ready"]
            )
        )
        cs = state_of(sim, "solo")
        assert cs["restartCount"] == 1
        assert cs["lastState"]["terminated"]["reason"] == "Completed"
        assert ("Normal", "Killing", "Container app definition changed, will be restarted") in events_for(sim, "solo")


def test_unschedulable_pod_stays_pending_with_a_failed_scheduling_event() -> None:
    with Harness() as sim:
        body = pod("nowhere", "nginx:1")
        body["spec"]["nodeSelector"] = {"disktype": "ssd"}
        sim.create(PODS, body)
        sim.wait(lambda: events_for(sim, "nowhere"))
        (event,) = events_for(sim, "nowhere")
        assert event[:2] == ("Warning", "FailedScheduling")
        assert event[2].startswith("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.")
        assert "nodeName" not in sim.get(PODS, "nowhere")["spec"]
        sim.wait(lambda: sim.get(PODS, "nowhere")["status"].get("conditions"))
        (cond,) = sim.get(PODS, "nowhere")["status"]["conditions"]
        assert (cond["type"], cond["status"], cond["reason"]) == ("PodScheduled", "False", "Unschedulable")


def test_recreated_deployment_adopts_the_orphaned_replicaset_and_pods() -> None:
    with Harness() as sim:
        sim.create(DEPLOYMENTS, workload("Deployment", "web", "nginx:1", replicas=2))
        sim.wait(lambda: sim.deployment_done("web"))
        (rs,) = sim.list(REPLICASETS)
        pods = sorted(p["metadata"]["name"] for p in sim.list(PODS))
        sim.store.delete(DEPLOYMENTS, NS, "web", propagation="Orphan")
        sim.wait(lambda: "ownerReferences" not in sim.list(REPLICASETS)[0]["metadata"])
        sim.create(DEPLOYMENTS, workload("Deployment", "web", "nginx:1", replicas=2))
        sim.wait(lambda: sim.owned_replicasets("web") and sim.deployment_done("web"))
        (adopted,) = sim.owned_replicasets("web")
        assert adopted["metadata"]["uid"] == rs["metadata"]["uid"]
        assert sorted(p["metadata"]["name"] for p in sim.list(PODS)) == pods


def test_init_containers_run_to_completion_before_the_app_starts() -> None:
    with Harness(pod_ready_seconds=0.1) as sim:
        body = pod("with-init", "nginx:1.25")
        body["spec"]["initContainers"] = [{"name": "migrate", "image": "busybox:1"}]
        sim.create(PODS, body)

        def conditions() -> dict[str, str]:
            return {c["type"]: c["status"] for c in sim.get(PODS, "with-init")["status"].get("conditions", [])}

        sim.wait(lambda: conditions().get("Initialized") == "False")
        status = sim.get(PODS, "with-init")["status"]
        assert status["phase"] == "Pending"
        assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
        init_cond = next(c for c in status["conditions"] if c["type"] == "Initialized")
        assert init_cond["reason"] == "ContainersNotInitialized"
        assert init_cond["message"] == "containers with incomplete status: [migrate]"
        sim.wait(lambda: conditions().get("Ready") == "True")
        status = sim.get(PODS, "with-init")["status"]
        assert status["phase"] == "Running"
        (init,) = status["initContainerStatuses"]
        assert init["state"]["terminated"]["reason"] == "Completed"
        assert init["ready"]
        reasons = [e[2] for e in events_for(sim, "with-init")]
        assert reasons.index("Started container migrate") < reasons.index("Started container app")


def test_unready_image_runs_but_fails_its_readiness_probe() -> None:
    registry = RegistryConfig(unready=["*:broken-health"])
    with Harness(pod_ready_seconds=0.05, registry=registry) as sim:
        sim.create(DEPLOYMENTS, workload("Deployment", "web", "nginx:1", replicas=2, progressDeadlineSeconds=1))
        sim.wait(lambda: sim.deployment_done("web"))
        sim.set_image(DEPLOYMENTS, "web", "nginx:broken-health")
        sim.wait(
            lambda: any(
                c["reason"] == "ProgressDeadlineExceeded"
                for c in sim.get(DEPLOYMENTS, "web")["status"]["conditions"]
                if c["type"] == "Progressing"
            ),
            timeout=6,
        )
        bad = [p for p in sim.list(PODS) if p["spec"]["containers"][0]["image"] == "nginx:broken-health"]
        assert bad
        for p in bad:
            assert p["status"]["phase"] == "Running"
            cs = p["status"]["containerStatuses"][0]
            assert cs["started"]
            assert not cs["ready"]
            assert "running" in cs["state"]
        assert ("Warning", "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503") in (
            events_for(sim, bad[0]["metadata"]["name"])
        )


def test_finished_job_with_ttl_is_deleted_with_its_pods() -> None:
    with Harness(pod_ready_seconds=0.05) as sim:
        sim.create(JOBS, job("once", "busybox:1", ttlSecondsAfterFinished=0))
        sim.wait(lambda: sim.store.try_get(JOBS, NS, "once") is None and not sim.list(PODS), message="TTL cleanup")
