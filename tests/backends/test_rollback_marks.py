"""How the Kubernetes and Helm backends recognise their own rollback, on plain payloads and on kubesim."""

from __future__ import annotations

from typing import Any

import pytest

from bot.backends import helm_interpret as helm
from bot.backends import kubernetes_interpret as rules
from bot.backends import kubernetes_marks as marks
from bot.backends.kubernetes_api import KubernetesBackend, KubernetesClients
from bot.core.catalog import WorkloadKind
from bot.core.errors import RollbackRefused
from bot.core.operations import OperationId
from bot.core.rollouts import RevisionNumber, RollbackPlan
from sandbox.kubesim.cluster import KubeSim
from tests.backends.kube_world import KubeWorld
from tests.backends.test_kubernetes_contract import kubectl_set_image, workload_target


def template(image: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}}


def deployment(image: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "web", "annotations": annotations or {}}, "spec": {"template": template(image)}}


HISTORY = [
    rules.HistoryEntry(RevisionNumber(1), {"metadata": {"name": "web-1"}}, template("web:v1")),
    rules.HistoryEntry(RevisionNumber(2), {"metadata": {"name": "web-2"}}, template("web:v2")),
    rules.HistoryEntry(RevisionNumber(3), {"metadata": {"name": "web-3"}}, template("web:v3")),
]
PLAN = RollbackPlan(
    from_revision=RevisionNumber(2),
    to_revision=RevisionNumber(1),
    backend_data={marks.FROM_TEMPLATE_KEY: marks.template_fingerprint(template("web:v2"))},
)
OURS = marks.rollback_mark("op-1a2b3c", 1)


@pytest.mark.parametrize(
    ("image", "annotations", "expected"),
    [
        ("web:v2", {}, marks.RollbackDecision.APPLY),
        ("web:v1", OURS, marks.RollbackDecision.APPLIED_BY_THIS_OPERATION),
        ("web:v1", {}, marks.RollbackDecision.ALREADY_THERE),
        ("web:v1", marks.rollback_mark("op-other", 1), marks.RollbackDecision.ALREADY_THERE),
    ],
    ids=["at-the-plan-start", "our-mark-and-target", "someone-undid-it", "another-operations-mark"],
)
def test_the_decision_when_the_workload_did_not_move_under_the_plan(
    image: str, annotations: dict[str, str], expected: marks.RollbackDecision
) -> None:
    decision = marks.decide_rollback(
        deployment(image, annotations), WorkloadKind.DEPLOYMENT, HISTORY, HISTORY[0], PLAN, "op-1a2b3c"
    )
    assert decision is expected


def test_a_deploy_after_our_rollback_is_refused_naming_what_runs_now() -> None:
    with pytest.raises(RollbackRefused) as refused:
        marks.decide_rollback(
            deployment("web:v3", OURS), WorkloadKind.DEPLOYMENT, HISTORY, HISTORY[0], PLAN, "op-1a2b3c"
        )
    assert str(refused.value) == (
        "this operation already rolled deployment.apps/web back to revision 1, but it has changed since: now at "
        "revision 3 (image web:v3). Not rolling back over it; request the rollback again if it is still needed"
    )


def test_a_deploy_between_approval_and_execution_is_refused() -> None:
    with pytest.raises(RollbackRefused, match=r"changed since this rollback was approved: now at revision 3 "):
        marks.decide_rollback(deployment("web:v3"), WorkloadKind.DEPLOYMENT, HISTORY, HISTORY[0], PLAN, "op-1a2b3c")


def test_a_plan_without_a_fingerprint_falls_back_to_the_revision_number() -> None:
    legacy = PLAN.model_copy(update={"backend_data": {}})
    decide = marks.decide_rollback
    assert decide(deployment("web:v2"), WorkloadKind.DEPLOYMENT, HISTORY, HISTORY[0], legacy, "op-1") is (
        marks.RollbackDecision.APPLY
    )
    with pytest.raises(RollbackRefused):
        decide(deployment("web:v3"), WorkloadKind.DEPLOYMENT, HISTORY, HISTORY[0], legacy, "op-1")


def test_the_deployment_patch_carries_the_mark_and_a_resource_version_precondition() -> None:
    current = deployment("web:v2") | {"metadata": {"name": "web", "resourceVersion": "41"}}
    patch = rules.deployment_rollback_patch(current, HISTORY[0], OURS)
    assert {"op": "replace", "path": "/metadata/resourceVersion", "value": "41"} in patch
    annotations = next(op["value"] for op in patch if op["path"] == "/metadata/annotations")
    assert annotations[marks.OPERATION_ANNOTATION] == "op-1a2b3c"
    template_op = next(op["value"] for op in patch if op["path"] == "/spec/template")
    assert marks.OPERATION_ANNOTATION not in (template_op.get("metadata") or {}).get("annotations", {})


def row(revision: int, status: str, description: str) -> helm.HistoryRow:
    return helm.HistoryRow(revision, status, "workshop-0.1.0", "1.16.0", description, None)


def test_helm_finds_its_rollback_only_right_after_the_plans_latest_revision() -> None:
    rows = [row(1, "superseded", "Install complete"), row(2, "superseded", "Upgrade complete")]
    ten = [*rows, row(3, "deployed", "Rollback to 10")]
    assert helm.rollback_row(ten, 2, 1) is None
    ours = [*rows, row(3, "deployed", "Rollback to 1")]
    assert helm.decide_rollback("workshop", ours, 2, 1) == ours[-1]
    assert helm.decide_rollback("workshop", rows, 2, 1) is None


def test_helm_refuses_once_the_release_moved_after_its_rollback() -> None:
    rows = [
        row(1, "superseded", "Install complete"),
        row(2, "superseded", "Upgrade complete"),
        row(3, "superseded", "Rollback to 1"),
        row(4, "deployed", "Upgrade complete"),
    ]
    with pytest.raises(RollbackRefused) as refused:
        helm.decide_rollback("workshop", rows, 2, 1)
    assert str(refused.value) == (
        "this operation already rolled helm release `workshop` back to revision 1 (recorded as revision 3), but "
        'it has changed since: now at revision 4 (deployed, "Upgrade complete", chart workshop-0.1.0 (app 1.16.0)). '
        "Not rolling back over it; request the rollback again if it is still needed"
    )


@pytest.mark.parametrize("kind", list(WorkloadKind), ids=[kind.value for kind in WorkloadKind])
def test_the_mark_sits_on_the_workload_and_makes_no_new_revision(
    kubesim: KubeSim, kube_clients: KubernetesClients, kind: WorkloadKind
) -> None:
    world = KubeWorld(kubesim)
    world.create(kind, "web", "web:v1")
    world.wait_until(lambda: world.rolled_out(kind, "web"), what="v1 rolled out")
    kubectl_set_image(world, kind, "web", "web:v2")
    backend = KubernetesBackend(kube_clients)
    target = workload_target(kind, "web")
    plan = backend.plan_rollback(target, None, {})

    first = backend.roll_back(target, plan, OperationId("op-1a2b3c"))
    world.wait_until(lambda: world.observed(kind, "web") and len(world.history_numbers(kind, "web")) == 2)
    again = backend.roll_back(target, plan, OperationId("op-1a2b3c"))

    obj = world.get(kind, "web")
    assert rules.annotations_of(obj)[marks.OPERATION_ANNOTATION] == "op-1a2b3c"
    assert rules.annotations_of(obj)[marks.ROLLED_BACK_TO_ANNOTATION] == "1"
    assert marks.OPERATION_ANNOTATION not in (rules.workload_template(obj).get("metadata") or {}).get("annotations", {})
    assert sorted(world.history_numbers(kind, "web")) == [2, 3]
    assert again.new_revision == first.new_revision == 3
    assert "already rolled back to revision 1 by this operation" in again.message
