"""The Kubernetes failure watcher against kubesim over HTTP: workloads made and broken through the real API.

kubesim's registry cannot pull `*non-existing*` images, so a Deployment set to one has pods waiting in
ErrImagePull/ImagePullBackOff, exactly what the pod rule reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from bot.backends.kubernetes_api import KubernetesClients
from bot.backends.kubernetes_stream import Backoff
from bot.backends.kubernetes_watch import KubernetesFailureWatcher
from bot.core.catalog import WorkloadKind
from bot.core.catalog_detect import KubernetesWatch
from bot.core.detection import HARD_WAITING_REASONS, Sighting, needs_pods
from bot.core.errors import TargetNotAllowed, UnknownTarget
from sandbox.faults import FaultClient
from sandbox.kubesim.cluster import KubeSim
from tests.backends.watch_recorder import SightingRecorder, watching

CONTEXT = "sandbox"
GOOD = "nginx:1.25"
MISSING = "nginx:non-existing"
POD_INTERVAL = 0.3


@pytest.fixture
def apps(kube_clients: KubernetesClients) -> k8s.AppsV1Api:
    return k8s.AppsV1Api(kube_clients.api(CONTEXT))


@pytest.fixture
def watcher(kube_clients: KubernetesClients) -> KubernetesFailureWatcher:
    return KubernetesFailureWatcher(
        kube_clients, pod_interval=POD_INTERVAL, page_size=2, backoff=Backoff(initial=0.05, maximum=0.2, attempts=3)
    )


@pytest.fixture
def faults(kubesim: KubeSim) -> Iterator[FaultClient]:
    client = FaultClient(kubesim.url)
    yield client
    client.clear()


def workload(kind: WorkloadKind, name: str, image: str = GOOD, replicas: int = 2) -> dict[str, Any]:
    labels = {"app": name}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "main", "image": image}]}},
    }
    if kind is not WorkloadKind.DAEMONSET:
        spec["replicas"] = replicas
    if kind is WorkloadKind.STATEFULSET:
        spec["serviceName"] = name
    return {"metadata": {"name": name}, "spec": spec}


def create(apps: k8s.AppsV1Api, kind: WorkloadKind, name: str, namespace: str = "default", **kwargs: Any) -> None:
    creators = {
        WorkloadKind.DEPLOYMENT: apps.create_namespaced_deployment,
        WorkloadKind.DAEMONSET: apps.create_namespaced_daemon_set,
        WorkloadKind.STATEFULSET: apps.create_namespaced_stateful_set,
    }
    creators[kind](namespace, workload(kind, name, **kwargs))


def set_image(apps: k8s.AppsV1Api, name: str, image: str) -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}}
    apps.patch_namespaced_deployment(name, "default", patch)


def of(name: str, kind: WorkloadKind = WorkloadKind.DEPLOYMENT) -> Any:
    def matches(sighting: Sighting) -> bool:
        return sighting.workload is not None and sighting.workload.name == name and sighting.workload.kind is kind

    return matches


def settled(sighting: Sighting) -> bool:
    snapshot = sighting.workload
    return snapshot is not None and snapshot.is_observed and snapshot.available == snapshot.replicas > 0


def a_healthy_world(apps: k8s.AppsV1Api) -> None:
    create(apps, WorkloadKind.DEPLOYMENT, "web")
    create(apps, WorkloadKind.DEPLOYMENT, "api")
    create(apps, WorkloadKind.DAEMONSET, "agent")
    create(apps, WorkloadKind.STATEFULSET, "db")


def wait_settled(recorder: SightingRecorder, name: str, kind: WorkloadKind = WorkloadKind.DEPLOYMENT) -> Sighting:
    return recorder.wait_for(lambda s: of(name, kind)(s) and settled(s), what=f"{kind.value} {name} settled")


def test_resync_first_then_changes_with_pods_only_for_the_broken_deployment(
    apps: k8s.AppsV1Api, watcher: KubernetesFailureWatcher
) -> None:
    a_healthy_world(apps)
    scope = KubernetesWatch(kube_context=CONTEXT)
    with watching(watcher, scope) as recorder:
        for name, kind in [("web", WorkloadKind.DEPLOYMENT), ("api", WorkloadKind.DEPLOYMENT)]:
            first = recorder.wait_for(of(name, kind), what=f"{name} listed")
            assert first.resync, "the first sighting of an object comes from the list"
            assert first.location == CONTEXT
        recorder.wait_for(of("agent", WorkloadKind.DAEMONSET), what="the DaemonSet listed")
        recorder.wait_for(of("db", WorkloadKind.STATEFULSET), what="the StatefulSet listed")
        for name in ("web", "api"):
            wait_settled(recorder, name)
        # Everyone settled first: a workload still rolling out legitimately comes with its pods.
        wait_settled(recorder, "agent", WorkloadKind.DAEMONSET)
        wait_settled(recorder, "db", WorkloadKind.STATEFULSET)
        before = len(recorder.snapshot())

        set_image(apps, "web", MISSING)
        broken = recorder.wait_for(
            lambda s: of("web")(s) and any(w.reason in HARD_WAITING_REASONS for p in s.pods for w in p.waiting),
            after=before,
            what="web's new pods failing to pull",
        )

        assert not broken.resync
        assert broken.workload is not None
        assert broken.workload.update_hash is not None
        assert broken.workload.images[0].image == MISSING
        # Only the new revision's pods, never the old ones still serving.
        assert {pod.template_hash for pod in broken.pods} == {broken.workload.update_hash}
        # While it stays broken, its pods are listed again and reported, though the Deployment does not change.
        index = recorder.snapshot().index(broken)
        recorder.wait_for(lambda s: of("web")(s) and bool(s.pods), after=index + 1, what="web's pods again")
        later = recorder.snapshot()
        healthy_names = {"api", "agent", "db"}
        assert all(not s.pods for s in later[before:] if s.workload is not None and s.workload.name in healthy_names), (
            "pods are listed only for the workload in trouble"
        )


def test_pods_are_dropped_once_the_workload_is_healthy_again(
    apps: k8s.AppsV1Api, watcher: KubernetesFailureWatcher
) -> None:
    create(apps, WorkloadKind.DEPLOYMENT, "web")
    with watching(watcher, KubernetesWatch(kube_context=CONTEXT)) as recorder:
        wait_settled(recorder, "web")
        set_image(apps, "web", MISSING)
        recorder.wait_for(lambda s: of("web")(s) and bool(s.pods), what="web's failing pods")
        set_image(apps, "web", "nginx:1.26")
        recovered = recorder.wait_for(
            lambda s: (
                of("web")(s)
                and s.workload is not None
                and s.workload.images[0].image == "nginx:1.26"
                and not needs_pods(s.workload)
            ),
            what="web rolled out on the fixed image",
        )
        assert recovered.pods == ()
        index = recorder.snapshot().index(recovered)
        # Its pods are no longer listed: nothing about web arrives while it stays healthy.
        time.sleep(POD_INTERVAL * 4)
        later = [s for s in recorder.snapshot()[index + 1 :] if of("web")(s)]
        assert later == []


def test_deletion_is_reported(apps: k8s.AppsV1Api, watcher: KubernetesFailureWatcher) -> None:
    create(apps, WorkloadKind.STATEFULSET, "db")
    with watching(watcher, KubernetesWatch(kube_context=CONTEXT)) as recorder:
        recorder.wait_for(of("db", WorkloadKind.STATEFULSET), what="db listed")
        apps.delete_namespaced_stateful_set("db", "default")
        gone = recorder.wait_for(lambda s: of("db", WorkloadKind.STATEFULSET)(s) and s.deleted, what="db deleted")
        assert not gone.resync


def test_a_410_relists_and_reports_what_the_gap_hid(
    apps: k8s.AppsV1Api, watcher: KubernetesFailureWatcher, kubesim: KubeSim, faults: FaultClient
) -> None:
    create(apps, WorkloadKind.DEPLOYMENT, "web")
    create(apps, WorkloadKind.DEPLOYMENT, "old")
    with watching(watcher, KubernetesWatch(kube_context=CONTEXT)) as recorder:
        recorder.wait_for(of("old"), what="old listed")
        wait_settled(recorder, "web")
        # The next watch of Deployments hangs a moment, then answers 410 Gone: its resourceVersion is too old.
        faults.add(method="GET", path="/apis/apps/v1/deployments", watch=True, status=410, delay=1.0, count=1)
        kubesim.store.stop_all_watches()
        # While the watch is down, `old` disappears and `new` arrives; only a relist can tell.
        kubesim.store.delete(("apps", "v1", "deployments"), "default", "old")
        apps.create_namespaced_deployment("default", workload(WorkloadKind.DEPLOYMENT, "new"))
        before = len(recorder.snapshot())

        relisted = recorder.wait_for(lambda s: of("web")(s) and s.resync, after=before, what="web listed again")
        assert relisted.workload is not None
        gone = recorder.wait_for(lambda s: of("old")(s) and s.deleted, after=before, what="old reported deleted")
        assert gone.resync
        recorder.wait_for(of("new"), after=before, what="new reported")
        assert [f["hits"] for f in faults.list()] == [1]


def test_a_namespace_scope_sees_only_its_namespaces(
    apps: k8s.AppsV1Api, watcher: KubernetesFailureWatcher, kube_clients: KubernetesClients
) -> None:
    core = k8s.CoreV1Api(kube_clients.api(CONTEXT))
    core.create_namespace({"metadata": {"name": "team-a"}})
    create(apps, WorkloadKind.DEPLOYMENT, "mine", namespace="team-a")
    create(apps, WorkloadKind.DEPLOYMENT, "theirs")
    with watching(watcher, KubernetesWatch(kube_context=CONTEXT, namespaces=("team-a",))) as recorder:
        recorder.wait_for(of("mine"), what="team-a's deployment")
        create(apps, WorkloadKind.DAEMONSET, "agent", namespace="team-a")
        recorder.wait_for(of("agent", WorkloadKind.DAEMONSET), what="team-a's new DaemonSet")
        assert all(s.workload is not None and s.workload.namespace == "team-a" for s in recorder.snapshot())


def test_an_unknown_context_is_a_clear_error(watcher: KubernetesFailureWatcher) -> None:
    with watching(watcher, KubernetesWatch(kube_context="production")) as recorder:
        error = recorder.wait_failed()
    assert isinstance(error, UnknownTarget)
    assert "unknown kube context `production` — rollbot knows: `sandbox`" in str(error)
    assert recorder.sightings == []


def test_a_refused_list_is_raised_as_the_bots_error(watcher: KubernetesFailureWatcher, faults: FaultClient) -> None:
    faults.add(method="GET", path="/apis/apps/v1/statefulsets", watch=False, status=403)
    with watching(watcher, KubernetesWatch(kube_context=CONTEXT)) as recorder:
        error = recorder.wait_failed()
    assert isinstance(error, TargetNotAllowed)
    assert "rollbot is not allowed to do this (listing StatefulSets in all namespaces)" in str(error)


def test_a_broken_statefulset_update_comes_with_its_update_revisions_pods(
    apps: k8s.AppsV1Api, watcher: KubernetesFailureWatcher
) -> None:
    create(apps, WorkloadKind.STATEFULSET, "db", replicas=3)
    with watching(watcher, KubernetesWatch(kube_context=CONTEXT)) as recorder:
        wait_settled(recorder, "db", WorkloadKind.STATEFULSET)
        before = len(recorder.snapshot())
        patch = {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": MISSING}]}}}}
        apps.patch_namespaced_stateful_set("db", "default", patch)
        broken = recorder.wait_for(
            lambda s: (
                of("db", WorkloadKind.STATEFULSET)(s)
                and any(w.reason in HARD_WAITING_REASONS for p in s.pods for w in p.waiting)
            ),
            after=before,
            what="db's updated pod failing to pull",
        )
    assert broken.workload is not None
    assert broken.workload.update_revision is not None
    assert broken.workload.update_revision != broken.workload.current_revision
    assert {pod.template_hash for pod in broken.pods} == {broken.workload.update_revision}


def test_changes_that_arrive_while_the_flow_is_busy_are_reported_once_with_the_newest_state(
    apps: k8s.AppsV1Api, watcher: KubernetesFailureWatcher
) -> None:
    create(apps, WorkloadKind.DEPLOYMENT, "web")
    busy, free = threading.Event(), threading.Event()
    recorder = SightingRecorder()

    def slow_report(sighting: Sighting) -> None:
        recorder.report(sighting)
        if busy.is_set():
            free.wait(timeout=20)  # the flow is stuck on something (Slack's budget, a slow Redis)

    stop = threading.Event()
    thread = threading.Thread(target=watcher.watch, args=(KubernetesWatch(kube_context=CONTEXT), slow_report, stop))
    thread.start()
    try:
        wait_settled(recorder, "web")
        busy.set()
        before = len(recorder.snapshot())
        for replicas in [3, 4, 5, 4, 3, 2, 3, 4, 5, 6] * 2:
            apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": replicas}})
        final = apps.read_namespaced_deployment("web", "default").metadata.generation
        busy.clear()
        free.set()
        newest = recorder.wait_for(
            lambda s: of("web")(s) and s.workload is not None and s.workload.generation == final,
            after=before,
            what="web at its newest generation",
        )
        assert newest.workload is not None
        assert newest.workload.replicas == 6
        seen = [s for s in recorder.snapshot()[before:] if of("web")(s)]
        assert len(seen) < 10, f"20 changes made {len(seen)} sightings while the flow was busy"
    finally:
        stop.set()
        thread.join(timeout=10)
