"""kubectl's rollout rules, checked on recorded-style objects (no server)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bot.backends import kubernetes_interpret as rules
from bot.backends.kubernetes_changes import template_changes
from bot.core.catalog import WorkloadKind
from bot.core.errors import RevisionNotFound, RollbackRefused

DEPLOY_UID = "d-uid"


def deployment(image: str, *, revision: str = "3", generation: int = 3, observed: int = 3, **status: Any) -> dict:
    return {
        "metadata": {
            "name": "web",
            "uid": DEPLOY_UID,
            "generation": generation,
            "annotations": {"deployment.kubernetes.io/revision": revision, "team": "payments"},
        },
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": template(image),
        },
        "status": {"observedGeneration": observed, **status},
    }


def template(image: str, **env: str) -> dict:
    container: dict[str, Any] = {"name": "web", "image": image, "resources": {}}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container]}}


def replica_set(name: str, image: str, revision: int, *, cause: str | None = None, owner: str = DEPLOY_UID) -> dict:
    tmpl = template(image)
    tmpl["metadata"]["labels"]["pod-template-hash"] = name.rsplit("-", 1)[-1]
    annotations = {"deployment.kubernetes.io/revision": str(revision)}
    if cause:
        annotations["kubernetes.io/change-cause"] = cause
    return {
        "metadata": {
            "name": name,
            "annotations": annotations,
            "labels": {"app": "web", "pod-template-hash": name.rsplit("-", 1)[-1]},
            "ownerReferences": [{"controller": True, "uid": owner, "kind": "Deployment", "name": "web"}],
            "creationTimestamp": "2026-11-22T04:00:00Z",
        },
        "spec": {"template": tmpl},
    }


HISTORY = [
    replica_set("web-aaa", "web:v1", 1),
    replica_set("web-bbb", "web:v2", 2, cause="kubectl set image deployment/web web=web:v2"),
    replica_set("web-ccc", "web:v10", 3),
    replica_set("other-ddd", "other:v1", 7, owner="someone-else"),
]


def test_history_lists_only_owned_replica_sets_in_ascending_order() -> None:
    entries = rules.deployment_history(deployment("web:v10"), reversed(HISTORY))
    assert [entry.revision for entry in entries] == [1, 2, 3]


def test_history_marks_the_revision_whose_template_runs_now() -> None:
    obj = deployment("web:v10")
    revisions = rules.revisions_from_history(obj, rules.deployment_history(obj, HISTORY))
    assert [(r.number, r.is_current) for r in revisions] == [(1, False), (2, False), (3, True)]
    assert revisions[1].change_cause == "kubectl set image deployment/web web=web:v2"
    assert revisions[0].change_cause is None
    assert revisions[2].images[0].image == "web:v10"


def test_no_revision_means_the_second_highest_like_kubectl_undo() -> None:
    obj = deployment("web:v10")
    entries = rules.deployment_history(obj, HISTORY)
    assert rules.choose_rollback_target(obj, entries, None, kind=WorkloadKind.DEPLOYMENT).revision == 2


def test_missing_revision_lists_the_ones_that_exist() -> None:
    obj = deployment("web:v10")
    entries = rules.deployment_history(obj, HISTORY)
    with pytest.raises(RevisionNotFound, match=r"revision 9 .* does not exist; available: 1, 2, 3") as caught:
        rules.choose_rollback_target(obj, entries, 9, kind=WorkloadKind.DEPLOYMENT)
    assert caught.value.available == (1, 2, 3)


def test_deployment_without_history_has_nothing_to_roll_back_to() -> None:
    with pytest.raises(RevisionNotFound, match='no rollout history found for deployment "web"'):
        rules.choose_rollback_target(deployment("web:v1"), [], None, kind=WorkloadKind.DEPLOYMENT)


def test_paused_deployment_is_refused_with_the_kubectl_hint() -> None:
    obj = deployment("web:v10")
    obj["spec"]["paused"] = True
    with pytest.raises(RollbackRefused, match="kubectl rollout resume deployment/web"):
        rules.check_rollback_allowed(obj, WorkloadKind.DEPLOYMENT)


def test_rollback_patch_is_kubectls_json_patch() -> None:
    obj = deployment("web:v10")
    target = rules.deployment_history(obj, HISTORY)[1]
    patch = rules.deployment_rollback_patch(obj, target)
    assert patch[0] == {"op": "replace", "path": "/spec/template", "value": template("web:v2")}
    # Revision bookkeeping comes from the Deployment, everything else from the target ReplicaSet.
    assert patch[1] == {
        "op": "replace",
        "path": "/metadata/annotations",
        "value": {
            "deployment.kubernetes.io/revision": "3",
            "kubernetes.io/change-cause": "kubectl set image deployment/web web=web:v2",
        },
    }


def test_templates_compare_semantically_and_ignore_the_hash() -> None:
    with_hash = copy.deepcopy(HISTORY[1]["spec"]["template"])
    plain = template("web:v2")
    plain["spec"]["containers"][0]["env"] = []
    assert rules.templates_equal(with_hash, plain)
    assert not rules.templates_equal(with_hash, template("web:v1"))


def test_preview_names_image_and_env_changes_per_container() -> None:
    changes = template_changes(template("web:v10", MODE="fast"), template("web:v2", MODE="safe"))
    assert [(c.scope, c.field, c.before, c.after) for c in changes] == [
        ("container web", "image", "web:v10", "web:v2"),
        ("container web", "env MODE", "fast", "safe"),
    ]


@pytest.mark.parametrize(
    ("status", "generation", "expected", "done"),
    [
        ({}, 4, "Waiting for deployment spec update to be observed...", False),
        (
            {"updatedReplicas": 1, "replicas": 4},
            3,
            'Waiting for deployment "web" rollout to finish: 1 out of 4 new replicas have been updated...',
            False,
        ),
        (
            {"updatedReplicas": 4, "replicas": 5},
            3,
            'Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...',
            False,
        ),
        (
            {"updatedReplicas": 4, "replicas": 4, "availableReplicas": 2},
            3,
            'Waiting for deployment "web" rollout to finish: 2 of 4 updated replicas are available...',
            False,
        ),
        (
            {"updatedReplicas": 4, "replicas": 4, "availableReplicas": 4},
            3,
            'deployment "web" successfully rolled out',
            True,
        ),
    ],
    ids=["spec-not-observed", "updating", "old-pending", "becoming-available", "done"],
)
def test_deployment_rollout_messages_match_kubectl(status: dict, generation: int, expected: str, done: bool) -> None:
    verdict = rules.rollout_verdict(deployment("web:v2", generation=generation, **status), WorkloadKind.DEPLOYMENT)
    assert (verdict.message, verdict.is_done) == (expected, done)


def test_progress_deadline_exceeded_is_a_failure() -> None:
    obj = deployment(
        "web:v10",
        conditions=[{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}],
    )
    verdict = rules.rollout_verdict(obj, WorkloadKind.DEPLOYMENT)
    assert verdict.failure == 'deployment "web" exceeded its progress deadline'


def test_daemonset_and_statefulset_messages_match_kubectl() -> None:
    ds = {
        "metadata": {"name": "fluentd", "generation": 2},
        "status": {
            "observedGeneration": 2,
            "desiredNumberScheduled": 3,
            "updatedNumberScheduled": 3,
            "numberAvailable": 1,
        },
    }
    assert rules.rollout_verdict(ds, WorkloadKind.DAEMONSET).message == (
        'Waiting for daemon set "fluentd" rollout to finish: 1 of 3 updated pods are available...'
    )
    sts = {
        "metadata": {"name": "db", "generation": 2},
        "spec": {"replicas": 3, "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}},
        "status": {"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 3},
    }
    verdict = rules.rollout_verdict(sts, WorkloadKind.STATEFULSET)
    assert (verdict.is_done, verdict.message) == (
        True,
        "partitioned roll out complete: 3 new pods have been updated...",
    )


def test_controller_revision_history_and_patch_use_the_revision_data() -> None:
    ds = {"metadata": {"name": "fluentd", "uid": "ds-uid"}, "spec": {"template": template("fluentd:v2")}}
    data = {"spec": {"template": {**template("fluentd:v1"), "$patch": "replace"}}}
    revisions = [
        {
            "metadata": {"name": "fluentd-1", "ownerReferences": [{"controller": True, "uid": "ds-uid"}]},
            "revision": 1,
            "data": data,
        },
        {
            "metadata": {"name": "fluentd-2", "ownerReferences": [{"controller": True, "uid": "ds-uid"}]},
            "revision": 2,
            "data": {"spec": {"template": {**template("fluentd:v2"), "$patch": "replace"}}},
        },
    ]
    history = rules.controller_revision_history(ds, revisions)
    assert rules.current_entry(ds, history).revision == 2
    target = rules.choose_rollback_target(ds, history, None, kind=WorkloadKind.DAEMONSET)
    assert rules.controller_revision_patch(target) == data


def test_stuck_pods_are_named_with_the_kubelet_reason() -> None:
    pods = [
        {
            "metadata": {"name": "web-ccc-1"},
            "status": {
                "containerStatuses": [
                    {
                        "state": {
                            "waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "web:v10"'}
                        }
                    }
                ]
            },
        },
        {"metadata": {"name": "web-bbb-1"}, "status": {"containerStatuses": [{"state": {"running": {}}}]}},
        {
            "metadata": {"name": "web-ccc-2"},
            "status": {"containerStatuses": [{"state": {"waiting": {"reason": "ContainerCreating"}}}]},
        },
    ]
    assert [(u.name, u.reason) for u in rules.unhealthy_pods(pods)] == [("web-ccc-1", "ImagePullBackOff")]


def test_selector_rendering_is_sorted_like_kubectl() -> None:
    selector = {
        "matchLabels": {"tier": "web", "app": "shop"},
        "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "canary"]}],
    }
    assert rules.selector_string(selector) == "app=shop,tier=web,env in (canary,prod)"
