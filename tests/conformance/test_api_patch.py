"""Every patch type kubectl sends: JSON patch, merge patch, strategic merge (with directives), apply."""

from __future__ import annotations

import json

import pytest

from tests.conformance.conftest import CliRunner

pytestmark = pytest.mark.needs_kubectl

MANIFEST = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        env:
        - {name: A, value: "1"}
        - {name: B, value: "2"}
"""


def _deployment(kubectl: CliRunner) -> dict:
    return kubectl("get", "deployment", "web", "-o", "json").json()


@pytest.fixture
def web(kubectl: CliRunner) -> CliRunner:
    kubectl("create", "-f", "-", stdin=MANIFEST)
    return kubectl


def test_json_patch_replaces_a_field(web: CliRunner) -> None:
    ops = [
        {"op": "replace", "path": "/spec/replicas", "value": 4},
        {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}},
    ]
    result = web("patch", "deployment", "web", "--type=json", "-p", json.dumps(ops))
    assert result.stdout.strip() == "deployment.apps/web patched"
    obj = _deployment(web)
    assert obj["spec"]["replicas"] == 4
    assert obj["metadata"]["labels"] == {"x": "y"}


def test_json_patch_on_a_missing_path_is_invalid(web: CliRunner) -> None:
    ops = [{"op": "replace", "path": "/metadata/annotations/nope", "value": "1"}]
    result = web("patch", "deployment", "web", "--type=json", "-p", json.dumps(ops), check=False)
    assert result.returncode == 1
    assert "/metadata/annotations/nope" in result.stderr


def test_failed_json_patch_test_operation_changes_nothing(web: CliRunner) -> None:
    ops = [
        {"op": "test", "path": "/spec/replicas", "value": 9},
        {"op": "replace", "path": "/spec/replicas", "value": 1},
    ]
    result = web("patch", "deployment", "web", "--type=json", "-p", json.dumps(ops), check=False)
    assert result.returncode == 1
    assert _deployment(web)["spec"]["replicas"] == 2


def test_merge_patch_replaces_lists_and_null_deletes(web: CliRunner) -> None:
    web("annotate", "deployment", "web", "keep=1", "drop=1")
    patch = {"metadata": {"annotations": {"drop": None}}, "spec": {"selector": {"matchLabels": {"app": "web"}}}}
    web("patch", "deployment", "web", "--type=merge", "-p", json.dumps(patch))
    annotations = _deployment(web)["metadata"]["annotations"]
    assert annotations["keep"] == "1"
    assert "drop" not in annotations
    containers = {"spec": {"template": {"spec": {"containers": [{"name": "other", "image": "busybox"}]}}}}
    web("patch", "deployment", "web", "--type=merge", "-p", json.dumps(containers))
    names = [c["name"] for c in _deployment(web)["spec"]["template"]["spec"]["containers"]]
    assert names == ["other"]


def test_strategic_merge_merges_containers_and_env_by_name(web: CliRunner) -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "web", "env": [{"name": "B", "value": "22"}, {"name": "C", "value": "3"}]},
                        {"name": "side", "image": "busybox:1.36"},
                    ]
                }
            }
        }
    }
    web("patch", "deployment", "web", "-p", json.dumps(patch))
    containers = _deployment(web)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["web", "side"]
    assert containers[0]["image"] == "nginx:1.25"
    assert containers[0]["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "22"},
        {"name": "C", "value": "3"},
    ]
    assert containers[1]["imagePullPolicy"] == "IfNotPresent"


def test_strategic_merge_delete_directive_removes_a_keyed_element(web: CliRunner) -> None:
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "web", "env": [{"name": "A", "$patch": "delete"}]}]}}}
    }
    web("patch", "deployment", "web", "-p", json.dumps(patch))
    env = _deployment(web)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "B", "value": "2"}]


def test_strategic_merge_replace_directive_replaces_the_template(web: CliRunner) -> None:
    # What `kubectl rollout undo` sends for DaemonSets/StatefulSets (ControllerRevision data).
    template = {
        "$patch": "replace",
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.20", "resources": {}}]},
    }
    web("patch", "deployment", "web", "-p", json.dumps({"spec": {"template": template}}))
    container = _deployment(web)["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nginx:1.20"
    assert "env" not in container


def test_strategic_merge_retain_keys_and_primitive_list_directives(web: CliRunner) -> None:
    web(
        "patch",
        "deployment",
        "web",
        "-p",
        json.dumps({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
    )
    assert _deployment(web)["spec"]["strategy"] == {"type": "Recreate"}
    web("patch", "deployment", "web", "-p", json.dumps({"metadata": {"finalizers": ["a.example/x", "b.example/y"]}}))
    web(
        "patch",
        "deployment",
        "web",
        "-p",
        json.dumps({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example/x"]}}),
    )
    assert _deployment(web)["metadata"]["finalizers"] == ["b.example/y"]


def test_set_image_sends_set_element_order_and_keeps_other_containers(web: CliRunner) -> None:
    web(
        "patch",
        "deployment",
        "web",
        "-p",
        json.dumps({"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "busybox"}]}}}}),
    )
    assert web("set", "image", "deployment/web", "web=nginx:1.27").stdout.strip() == "deployment.apps/web image updated"
    obj = _deployment(web)
    # An element new to a merged list goes in front of the live ones (apimachinery normalizeElementOrder);
    # set image's $setElementOrder then keeps that order.
    assert [(c["name"], c["image"]) for c in obj["spec"]["template"]["spec"]["containers"]] == [
        ("side", "busybox"),
        ("web", "nginx:1.27"),
    ]
    assert obj["metadata"]["generation"] == 3


def test_client_side_apply_creates_then_configures(kubectl: CliRunner) -> None:
    assert kubectl("apply", "-f", "-", stdin=MANIFEST).stdout.strip() == "deployment.apps/web created"
    assert kubectl("apply", "-f", "-", stdin=MANIFEST).stdout.strip() == "deployment.apps/web unchanged"
    changed = MANIFEST.replace("nginx:1.25", "nginx:1.26").replace('- {name: B, value: "2"}\n', "")
    assert kubectl("apply", "-f", "-", stdin=changed).stdout.strip() == "deployment.apps/web configured"
    container = _deployment(kubectl)["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "nginx:1.26"
    assert container["env"] == [{"name": "A", "value": "1"}]
    annotations = _deployment(kubectl)["metadata"]["annotations"]
    assert "kubectl.kubernetes.io/last-applied-configuration" in annotations


def test_server_side_apply_removes_fields_the_manager_dropped(kubectl: CliRunner) -> None:
    assert (
        kubectl("apply", "--server-side", "-f", "-", stdin=MANIFEST).stdout.strip()
        == "deployment.apps/web serverside-applied"
    )
    kubectl("apply", "--server-side", "-f", "-", stdin=MANIFEST.replace('        - {name: B, value: "2"}\n', ""))
    env = _deployment(kubectl)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "A", "value": "1"}]


def test_server_side_apply_conflicts_with_another_manager_unless_forced(kubectl: CliRunner) -> None:
    kubectl("apply", "--server-side", "-f", "-", stdin=MANIFEST)
    kubectl("set", "image", "deployment/web", "web=nginx:1.99")
    conflict = kubectl("apply", "--server-side", "-f", "-", stdin=MANIFEST, check=False)
    assert conflict.returncode == 1
    assert (
        'Apply failed with 1 conflict: conflict with "kubectl-set" using apps/v1: '
        '.spec.template.spec.containers[name="web"].image'
    ) in conflict.stderr
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=MANIFEST)
    assert _deployment(kubectl)["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.25"


def test_diff_uses_a_server_side_dry_run(kubectl: CliRunner) -> None:
    config = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: blue}\n"
    kubectl("apply", "--server-side", "-f", "-", stdin=config)
    diff = kubectl("diff", "-f", "-", stdin=config.replace("blue", "green"), check=False)
    assert diff.returncode == 1
    assert "-  mode: blue" in diff.stdout
    assert "+  mode: green" in diff.stdout
    live = kubectl("get", "configmap", "settings", "-o", "json").json()
    assert live["data"] == {"mode": "blue"}


def test_status_subresource_patch_changes_only_status(kubectl: CliRunner) -> None:
    kubectl("create", "service", "loadbalancer", "edge", "--tcp=80:8080")
    patch = {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}, "spec": {"type": "ClusterIP"}}
    kubectl("patch", "service", "edge", "--subresource=status", "--type=merge", "-p", json.dumps(patch))
    obj = kubectl("get", "service", "edge", "-o", "json").json()
    assert obj["status"]["loadBalancer"]["ingress"] == [{"ip": "192.0.2.10"}]
    assert obj["spec"]["type"] == "LoadBalancer"
    row = kubectl("get", "service", "edge", "--no-headers").stdout.split()
    assert row[:4] == ["edge", "LoadBalancer", row[2], "192.0.2.10"]


def test_scale_subresource(web: CliRunner) -> None:
    assert web("scale", "deployment", "web", "--replicas=0").stdout.strip() == "deployment.apps/web scaled"
    assert _deployment(web)["spec"]["replicas"] == 0
    scale = web("get", "--raw", "/apis/apps/v1/namespaces/default/deployments/web/scale").json()
    assert scale["kind"] == "Scale"
    assert scale["spec"] == {"replicas": 0}
    assert scale["status"]["selector"] == "app=web"


def test_switching_from_client_side_to_server_side_apply_takes_over_ownership(kubectl: CliRunner) -> None:
    kubectl("apply", "-f", "-", stdin=MANIFEST)
    changed = MANIFEST.replace("nginx:1.25", "nginx:1.26")
    result = kubectl("apply", "--server-side", "-f", "-", stdin=changed)
    assert result.stdout.strip() == "deployment.apps/web serverside-applied"
    assert _deployment(kubectl)["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
