"""The Helm backend drives the real helm binary against kubesim."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.backends.helm_cli import HelmCliBackend
from bot.backends.helm_storage import HelmStorage
from bot.backends.kubernetes_api import KubernetesClients
from bot.core.catalog import HelmTarget, Target, WorkloadKind
from bot.core.errors import RevisionNotFound, RollbackRefused, UnknownTarget
from bot.core.operations import OperationId
from bot.core.rollouts import RevisionNumber, RollbackPlan, RolloutPhase
from sandbox.faults import FaultClient
from sandbox.kubesim.cluster import KubeSim
from tests.backends.helm_world import HELM, HELM3, HelmWorld
from tests.backends.kube_world import KubeWorld
from tests.contracts.backend_contract import BackendCase, BackendContract


def helm_target(release: str = "workshop") -> Target:
    return Target.model_validate(
        {
            "name": release,
            "spec": {"backend": "helm", "release": release, "namespace": "default"},
            "policy": {"approvers": ["U0AAA"]},
        }
    )


@pytest.fixture
def helm_world(kubesim: KubeSim, tmp_path: Path, kubeconfig: Path) -> HelmWorld:
    return HelmWorld(kubesim, tmp_path, kubeconfig)


def helm_backend(world: HelmWorld, clients: KubernetesClients) -> HelmCliBackend:
    """The backend driving the world's own helm binary (v4 or v3)."""
    return HelmCliBackend(
        str(world.binary),
        kubeconfig=str(world.kubeconfig),
        clients=clients,
        environment=world.env,
        wait_timeout=timedelta(seconds=20),
    )


@pytest.fixture
def backend(helm_world: HelmWorld, kube_clients: KubernetesClients) -> HelmCliBackend:
    return helm_backend(helm_world, kube_clients)


class TestHelmBackend(BackendContract):
    @pytest.fixture
    def backend_case(self, helm_world: HelmWorld, backend: HelmCliBackend) -> BackendCase:
        helm_world.install()
        helm_world.upgrade()
        return BackendCase(
            backend=backend,
            target=helm_target(),
            good=RevisionNumber(1),
            current=RevisionNumber(2),
            watch_timeout=timedelta(seconds=30),
            deploy=lambda: helm_upgrade(helm_world),
        )


def helm_upgrade(world: HelmWorld) -> RevisionNumber:
    """Someone runs `helm upgrade` with a new, working image."""
    world.upgrade(tag="1.17.0")
    return RevisionNumber(world.statuses()[-1][0])


def test_seed_000_rollback_streams_and_leaves_helm_history_as_helm_would(
    helm_world: HelmWorld, backend: HelmCliBackend
) -> None:
    helm_world.install()
    helm_world.upgrade()
    target = helm_target()
    history = backend.history(target)
    assert [(r.number, r.status, r.is_current) for r in history] == [(1, "superseded", False), (2, "deployed", True)]
    assert history[1].images[0].image == "nginx:non-existing"
    plan = backend.plan_rollback(target, RevisionNumber(1), {})
    assert [(c.field, c.before, c.after) for c in plan.changes] == [("image", "nginx:non-existing", "nginx:1.16.0")]
    receipt = backend.roll_back(target, plan, OperationId("op-seed"))
    statuses = list(backend.watch_rollout(target, plan, timedelta(seconds=30)))
    assert statuses[-1].phase is RolloutPhase.SUCCEEDED
    assert "as revision 3" in statuses[-1].summary
    assert receipt.new_revision == 3
    assert helm_world.statuses() == [
        (1, "superseded", "Install complete"),
        (2, "superseded", "Upgrade complete"),
        (3, "deployed", "Rollback to 1"),
    ]
    status = backend.status(target)
    assert status.revision == 3
    assert status.is_healthy


def test_unknown_release_is_a_clear_message(backend: HelmCliBackend) -> None:
    with pytest.raises(UnknownTarget, match="helm release `nope` not found"):
        backend.check_target(helm_target("nope"))


def test_unknown_revision_lists_the_revisions_that_exist(helm_world: HelmWorld, backend: HelmCliBackend) -> None:
    helm_world.install()
    helm_world.upgrade()
    with pytest.raises(RevisionNotFound, match=r"no revision 7; available: 1, 2"):
        backend.plan_rollback(helm_target(), RevisionNumber(7), {})
    assert [row[0] for row in helm_world.statuses()] == [1, 2]


def test_release_stuck_in_pending_upgrade_is_explained_before_anything_runs(
    helm_world: HelmWorld, backend: HelmCliBackend
) -> None:
    helm_world.install()
    helm_world.interrupted_upgrade()
    before = helm_world.statuses()
    assert before[-1][1] == "pending-upgrade"
    with pytest.raises(RollbackRefused, match=r"stuck in pending-upgrade at revision 2.*`/rollback workshop 1`"):
        backend.plan_rollback(helm_target(), None, {})
    assert helm_world.statuses() == before
    # The last deployed revision is accepted explicitly: the way out of a stuck release.
    plan = backend.plan_rollback(helm_target(), RevisionNumber(1), {})
    assert plan.to_revision == 1


def test_rollback_to_a_revision_whose_image_is_also_missing_fails_with_the_pods_reason(
    helm_world: HelmWorld, backend: HelmCliBackend
) -> None:
    helm_world.install(tag="non-existing-one", wait=False)
    helm_world.upgrade(tag="non-existing-two")
    target = helm_target()
    plan = backend.plan_rollback(target, RevisionNumber(1), {})
    backend.roll_back(target, plan, OperationId("op-bad-target"))
    statuses = list(backend.watch_rollout(target, plan, timedelta(seconds=4)))
    final = statuses[-1]
    assert final.phase is RolloutPhase.FAILED
    assert "timed out after 4s" in (final.reason or "")
    assert "ImagePullBackOff" in (final.reason or "") or "ErrImagePull" in (final.reason or "")
    assert any(unit.reason in ("ImagePullBackOff", "ErrImagePull") for unit in final.unhealthy)


# Pods take this long to become Ready, so helm is still waiting for revision 1's new pod when it is killed.
SLOW_PODS = 3.0


def interrupted_rollback_to_1(world: HelmWorld, backend: HelmCliBackend) -> RollbackPlan:
    """Revision 3 is broken and revision 1's pods are gone; the approved rollback to 1 ran on a replica that was
    killed with its helm while helm waited for the new pods. Returns the plan that replica had."""
    world.install(tag="1.16.0")
    world.run("upgrade", "workshop", str(world.chart), "--set", "image.tag=1.17.0", "--wait")
    world.upgrade()
    plan = backend.plan_rollback(helm_target(), RevisionNumber(1), {})
    world.interrupted_rollback(1, once=lambda: world.deployment_image() == "nginx:1.16.0")  # waiting for the pods
    assert world.statuses()[-1] == (4, "pending-rollback", "Rollback to 1")
    return plan


@pytest.mark.parametrize("binary", [HELM, HELM3], ids=["helm4", "helm3"])
@pytest.mark.parametrize("kubesim", [SLOW_PODS], indirect=True)
def test_a_takeover_after_helm_was_killed_reports_the_rollout_and_the_way_out_of_the_pending_record(
    binary: Path, kubesim: KubeSim, tmp_path: Path, kubeconfig: Path, kube_clients: KubernetesClients
) -> None:
    helm_world = HelmWorld(kubesim, tmp_path, kubeconfig, binary=binary)
    backend = helm_backend(helm_world, kube_clients)
    plan = interrupted_rollback_to_1(helm_world, backend)
    before = helm_world.statuses()
    # The replica taking over has no helm process of its own: only helm's record and the workloads.
    receipt = backend.roll_back(helm_target(), plan, OperationId("op-killed"))
    assert receipt.new_revision == 4
    final = list(backend.watch_rollout(helm_target(), plan, timedelta(seconds=30)))[-1]
    assert final.phase is RolloutPhase.SUCCEEDED
    assert final.summary.startswith(
        'helm rolled workshop back to revision 1 as revision 4; deployment "workshop" successfully rolled out. '
        "helm's record of it, revision 4, still reads pending-rollback"
    )
    assert "`/rollback workshop 1` or `helm rollback workshop 1 --namespace default` records it" in final.summary
    assert helm_world.statuses() == before  # nothing rolled back twice

    # The bot's own way out: never the last deployed revision (the broken one the rollback left), but the
    # interrupted rollback's own revision.
    with pytest.raises(RollbackRefused, match=r"stuck in pending-rollback at revision 4.*`/rollback workshop 1`\.$"):
        backend.plan_rollback(helm_target(), None, {})
    again = backend.plan_rollback(helm_target(), RevisionNumber(1), {})
    assert (again.from_revision, again.to_revision, again.changes) == (4, 1, ())
    backend.roll_back(helm_target(), again, OperationId("op-way-out"))
    assert list(backend.watch_rollout(helm_target(), again, timedelta(seconds=30)))[-1].phase is RolloutPhase.SUCCEEDED
    assert helm_world.statuses()[-2:] == [(4, "pending-rollback", "Rollback to 1"), (5, "deployed", "Rollback to 1")]


@pytest.mark.parametrize("kubesim", [SLOW_PODS], indirect=True)
def test_a_timeout_after_the_workloads_rolled_out_says_it_waited_for_helm(
    helm_world: HelmWorld, backend: HelmCliBackend, kubesim: KubeSim
) -> None:
    plan = interrupted_rollback_to_1(helm_world, backend)
    cluster = KubeWorld(kubesim)
    cluster.wait_until(lambda: cluster.rolled_out(WorkloadKind.DEPLOYMENT, "workshop"), what="revision 1's pods")
    backend.roll_back(helm_target(), plan, OperationId("op-killed"))
    # Shorter than the wait for a helm that may still record its verdict: the watch times out on helm, not pods.
    final = list(backend.watch_rollout(helm_target(), plan, timedelta(seconds=2)))[-1]
    assert final.phase is RolloutPhase.FAILED
    assert final.reason == (
        "timed out after 2s waiting for helm to record the rollback; the workloads rolled out: "
        'deployment "workshop" successfully rolled out'
    )


@pytest.mark.parametrize("kubesim", [SLOW_PODS], indirect=True)
def test_a_takeover_after_helm_was_killed_before_applying_anything_says_nothing_was_rolled_back(
    helm_world: HelmWorld, backend: HelmCliBackend, kubesim: KubeSim
) -> None:
    helm_world.install(tag="1.16.0")
    helm_world.run("upgrade", "workshop", str(helm_world.chart), "--set", "image.tag=1.17.0", "--wait")
    helm_world.upgrade()
    plan = backend.plan_rollback(helm_target(), RevisionNumber(1), {})
    # The API server holds helm's write of the Deployment: helm has stored its revision and applied nothing.
    faults = FaultClient(kubesim.url)
    faults.add(method="PATCH", path="/apis/apps/v1/namespaces/default/deployments/workshop", delay=60)
    helm_world.interrupted_rollback(1, once=lambda: faults.list()[0]["seen"] >= 1)
    assert helm_world.statuses()[-1] == (4, "pending-rollback", "Rollback to 1")
    assert helm_world.deployment_image() == "nginx:non-existing"

    backend.roll_back(helm_target(), plan, OperationId("op-killed"))
    final = list(backend.watch_rollout(helm_target(), plan, timedelta(seconds=30)))[-1]

    assert final.phase is RolloutPhase.FAILED
    assert final.summary == (
        "helm's record of it, revision 4, reads pending-rollback, but workshop/workshop still runs "
        "nginx:non-existing, not revision 1's nginx:1.16.0: the helm that ran it stopped with its replica before "
        "applying it. Nothing was rolled back; `/rollback workshop 1` runs it again"
    )


class TestHelmV3Backend(BackendContract):
    """The same contract with helm v3, whose rollback waits with a boolean --wait."""

    @pytest.fixture
    def backend_case(
        self, kubesim: KubeSim, tmp_path: Path, kubeconfig: Path, kube_clients: KubernetesClients
    ) -> BackendCase:
        world = HelmWorld(kubesim, tmp_path, kubeconfig, binary=HELM3)
        world.install()
        world.upgrade()
        backend = helm_backend(world, kube_clients)
        assert backend.major_version == 3
        return BackendCase(
            backend=backend,
            target=helm_target(),
            good=RevisionNumber(1),
            current=RevisionNumber(2),
            watch_timeout=timedelta(seconds=30),
            deploy=lambda: helm_upgrade(world),
        )


@pytest.mark.parametrize("driver", ["", "configmap"])
def test_the_release_storage_tells_the_latest_revision_helm_recorded(
    helm_world: HelmWorld, kube_clients: KubernetesClients, driver: str
) -> None:
    helm_world.env["HELM_DRIVER"] = driver
    storage = HelmStorage(kube_clients, helm_world.env)
    spec = helm_target().spec
    assert isinstance(spec, HelmTarget)
    assert storage.latest_revision(spec) is None  # no release yet: helm says what is wrong
    helm_world.install()
    helm_world.upgrade()
    assert storage.latest_revision(spec) == 2
    helm_upgrade(helm_world)
    assert storage.latest_revision(spec) == 3


def test_a_storage_only_helm_can_read_is_left_to_helm(helm_world: HelmWorld, kube_clients: KubernetesClients) -> None:
    helm_world.install()
    spec = helm_target().spec
    assert isinstance(spec, HelmTarget)
    assert HelmStorage(kube_clients, {**helm_world.env, "HELM_DRIVER": "sql"}).latest_revision(spec) is None
