"""The Kubernetes backend meets the backend contract on kubesim, for each workload kind."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.backends import kubernetes_interpret as rules
from bot.backends.kubernetes_api import KubernetesBackend, KubernetesClients
from bot.core.catalog import Target, WorkloadKind
from bot.core.operations import OperationId
from bot.core.rollouts import RevisionNumber, RolloutPhase
from sandbox.kubesim.cluster import KubeSim
from tests.backends.kube_world import KubeWorld
from tests.contracts.backend_contract import BackendCase, BackendContract


def workload_target(kind: WorkloadKind, name: str, namespace: str = "default") -> Target:
    return Target.model_validate(
        {
            "name": name,
            "spec": {"backend": "kubernetes", "kind": kind.value, "name": name, "namespace": namespace},
            "policy": {"approvers": ["U0AAA"]},
        }
    )


@pytest.fixture(params=list(WorkloadKind), ids=[kind.value for kind in WorkloadKind])
def workload_kind(request: pytest.FixtureRequest) -> WorkloadKind:
    return WorkloadKind(request.param)


class TestKubernetesBackend(BackendContract):
    @pytest.fixture
    def backend_case(
        self, kubesim: KubeSim, kube_clients: KubernetesClients, workload_kind: WorkloadKind
    ) -> BackendCase:
        world = KubeWorld(kubesim)
        world.create(workload_kind, "web", "web:v1")
        world.wait_until(lambda: world.rolled_out(workload_kind, "web"), what="v1 rolled out")
        world.set_image(workload_kind, "web", "web:v2")
        world.wait_until(
            lambda: world.observed(workload_kind, "web") and world.history_numbers(workload_kind, "web") == [1, 2],
            what="revision 2 recorded",
        )
        return BackendCase(
            backend=KubernetesBackend(kube_clients),
            target=workload_target(workload_kind, "web"),
            good=RevisionNumber(1),
            current=RevisionNumber(2),
            watch_timeout=timedelta(seconds=30),
            deploy=lambda: kubectl_set_image(world, workload_kind, "web", "web:v3"),
        )


def kubectl_set_image(world: KubeWorld, kind: WorkloadKind, name: str, image: str) -> RevisionNumber:
    """What `kubectl set image` does to the workload, waited for until the controller recorded the revision."""
    world.set_image(kind, name, image)

    def recorded() -> int | None:
        obj = world.get(kind, name)
        if not world.observed(kind, name):
            return None
        newest = max(world.history_numbers(kind, name), default=0)
        current = rules.workload_template(obj)["spec"]["containers"][0]["image"]
        return newest if current == image and newest else None

    return RevisionNumber(world.wait_until(recorded, what=f"{image} recorded as a new revision"))


def test_a_statefulset_stuck_on_a_broken_pod_fails_naming_the_pod_and_the_way_out(
    kubesim: KubeSim, kube_clients: KubernetesClients
) -> None:
    world = KubeWorld(kubesim)
    world.create(WorkloadKind.STATEFULSET, "db", "db:v1", replicas=3)
    world.wait_until(lambda: world.rolled_out(WorkloadKind.STATEFULSET, "db"), what="v1 rolled out")
    world.set_image(WorkloadKind.STATEFULSET, "db", "db:non-existing")
    world.wait_until(lambda: world.history_numbers(WorkloadKind.STATEFULSET, "db") == [1, 2], what="revision 2")
    backend = KubernetesBackend(kube_clients)
    target = workload_target(WorkloadKind.STATEFULSET, "db")
    plan = backend.plan_rollback(target, None, {})
    backend.roll_back(target, plan, OperationId("op-sts"))

    final = list(backend.watch_rollout(target, plan, timedelta(seconds=3)))[-1]

    assert final.phase is RolloutPhase.FAILED
    assert "pod db-2 ImagePullBackOff" in (final.reason or "") or "pod db-2 ErrImagePull" in (final.reason or "")
    assert "kubectl delete pod db-2 -n default" in (final.reason or "")
