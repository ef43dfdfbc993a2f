"""Create, read, label, annotate and delete through the real kubectl, with the real server's messages."""

from __future__ import annotations

import pytest

from tests.conformance.conftest import CliRunner

pytestmark = pytest.mark.needs_kubectl

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
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
"""


def test_get_missing_deployment_prints_the_real_not_found_error(kubectl: CliRunner) -> None:
    result = kubectl("get", "deployment", "nope", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == 'Error from server (NotFound): deployments.apps "nope" not found'


def test_missing_core_object_error_has_no_group_suffix(kubectl: CliRunner) -> None:
    result = kubectl("get", "secret", "nope", check=False)
    assert result.stderr.strip() == 'Error from server (NotFound): secrets "nope" not found'


def test_create_in_a_missing_namespace_is_rejected(kubectl: CliRunner) -> None:
    result = kubectl("create", "configmap", "c", "--from-literal=a=b", "-n", "ghost", check=False)
    assert result.returncode == 1
    assert 'namespaces "ghost" not found' in result.stderr


def test_create_twice_reports_already_exists(kubectl: CliRunner) -> None:
    kubectl("create", "-f", "-", stdin=DEPLOYMENT)
    result = kubectl("create", "-f", "-", stdin=DEPLOYMENT, check=False)
    assert result.returncode == 1
    assert 'Error from server (AlreadyExists): error when creating "STDIN": deployments.apps "web" already exists' in (
        result.stderr
    )


def test_created_object_carries_server_metadata_and_defaults(kubectl: CliRunner) -> None:
    kubectl("create", "-f", "-", stdin=DEPLOYMENT)
    obj = kubectl("get", "deployment", "web", "-o", "json").json()
    meta = obj["metadata"]
    assert meta["generation"] == 1
    assert int(meta["resourceVersion"]) > 0
    assert len(meta["uid"]) == 36
    assert meta["creationTimestamp"].endswith("Z")
    assert obj["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    assert obj["spec"]["revisionHistoryLimit"] == 10
    assert obj["spec"]["progressDeadlineSeconds"] == 600
    container = obj["spec"]["template"]["spec"]["containers"][0]
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert obj["spec"]["template"]["spec"]["restartPolicy"] == "Always"


def test_label_and_annotate_change_metadata_without_bumping_generation(kubectl: CliRunner) -> None:
    kubectl("create", "-f", "-", stdin=DEPLOYMENT)
    assert kubectl("label", "deployment", "web", "tier=front").stdout.strip() == "deployment.apps/web labeled"
    annotated = kubectl("annotate", "deployment", "web", "kubernetes.io/change-cause=manual")
    assert annotated.stdout.strip() == "deployment.apps/web annotated"
    obj = kubectl("get", "deployment", "web", "-o", "json").json()
    assert obj["metadata"]["labels"]["tier"] == "front"
    assert obj["metadata"]["annotations"]["kubernetes.io/change-cause"] == "manual"
    assert obj["metadata"]["generation"] == 1
    selected = kubectl("get", "deployments", "-l", "tier=front", "-o", "name")
    assert selected.stdout.strip() == "deployment.apps/web"
    assert kubectl("get", "deployments", "-l", "tier!=front", "-o", "name").stdout.strip() == ""


def test_spec_change_bumps_generation_and_resource_version(kubectl: CliRunner) -> None:
    kubectl("create", "-f", "-", stdin=DEPLOYMENT)
    before = kubectl("get", "deployment", "web", "-o", "json").json()["metadata"]
    kubectl("scale", "deployment", "web", "--replicas=5")
    after = kubectl("get", "deployment", "web", "-o", "json").json()
    assert after["spec"]["replicas"] == 5
    assert after["metadata"]["generation"] == 2
    assert int(after["metadata"]["resourceVersion"]) > int(before["resourceVersion"])


def test_delete_removes_the_object(kubectl: CliRunner) -> None:
    kubectl("create", "-f", "-", stdin=DEPLOYMENT)
    result = kubectl("delete", "deployment", "web")
    assert 'deployment.apps "web" deleted' in result.stdout
    missing = kubectl("get", "deployment", "web", check=False)
    assert "NotFound" in missing.stderr


def test_field_selector_on_name(kubectl: CliRunner) -> None:
    kubectl("create", "configmap", "one", "--from-literal=a=b")
    kubectl("create", "configmap", "two", "--from-literal=a=b")
    result = kubectl("get", "configmaps", "--field-selector", "metadata.name=two", "-o", "name")
    assert result.stdout.split() == ["configmap/two"]


def test_chunked_list_follows_continue_tokens(kubectl: CliRunner) -> None:
    for index in range(7):
        kubectl("create", "configmap", f"cm-{index}", "--from-literal=a=b")
    result = kubectl("get", "configmaps", "--chunk-size=2", "-o", "name")
    names = [line for line in result.stdout.split() if line.startswith("configmap/cm-")]
    assert names == [f"configmap/cm-{i}" for i in range(7)]


def test_server_side_dry_run_does_not_persist(kubectl: CliRunner) -> None:
    result = kubectl("create", "-f", "-", "--dry-run=server", stdin=DEPLOYMENT)
    assert "deployment.apps/web created (server dry run)" in result.stdout
    assert "NotFound" in kubectl("get", "deployment", "web", check=False).stderr


def test_invalid_selector_mismatch_is_rejected_with_422(kubectl: CliRunner) -> None:
    broken = DEPLOYMENT.replace("labels: {app: web}\n    spec:", "labels: {app: other}\n    spec:")
    result = kubectl("create", "-f", "-", stdin=broken, check=False)
    assert result.returncode == 1
    assert 'The Deployment "web" is invalid: spec.template.metadata.labels: Invalid value:' in result.stderr
    assert "`selector` does not match template `labels`" in result.stderr


def test_namespaces_are_created_listed_and_deleted(kubectl: CliRunner) -> None:
    kubectl("create", "namespace", "team-a")
    kubectl("create", "configmap", "c", "--from-literal=a=b", "-n", "team-a")
    table = kubectl("get", "namespaces").stdout
    assert any(line.split()[:2] == ["team-a", "Active"] for line in table.splitlines())
    kubectl("delete", "namespace", "team-a")
    assert "NotFound" in kubectl("get", "configmap", "c", "-n", "team-a", check=False).stderr


def test_strict_field_validation_rejects_unknown_fields(kubectl: CliRunner) -> None:
    typo = DEPLOYMENT.replace("replicas: 2", "replica: 2")
    created = kubectl("create", "-f", "-", stdin=typo, check=False)
    assert created.returncode == 1
    assert (
        'Error from server (BadRequest): error when creating "STDIN": Deployment in version "v1" cannot be handled '
        'as a Deployment: strict decoding error: unknown field "spec.replica"'
    ) in created.stderr
    applied = kubectl("apply", "--server-side", "-f", "-", stdin=typo, check=False)
    assert ".spec.replica: field not declared in schema" in applied.stderr


def test_warn_field_validation_drops_unknown_fields_with_a_warning(kubectl: CliRunner) -> None:
    typo = DEPLOYMENT.replace("replicas: 2", "replica: 2")
    result = kubectl("create", "--validate=warn", "-f", "-", stdin=typo)
    assert 'Warning: unknown field "spec.replica"' in result.stderr
    spec = kubectl("get", "deployment", "web", "-o", "json").json()["spec"]
    assert "replica" not in spec
    assert spec["replicas"] == 1


def test_replace_with_a_stale_resource_version_conflicts(kubectl: CliRunner) -> None:
    kubectl("create", "configmap", "settings", "--from-literal=mode=blue")
    stale = kubectl("get", "configmap", "settings", "-o", "yaml").stdout
    kubectl("patch", "configmap", "settings", "--type=merge", "-p", '{"data":{"mode":"green"}}')
    result = kubectl("replace", "-f", "-", stdin=stale, check=False)
    assert result.returncode == 1
    assert (
        'Error from server (Conflict): error when replacing "STDIN": Operation cannot be fulfilled on configmaps '
        '"settings": the object has been modified; please apply your changes to the latest version and try again'
    ) in result.stderr
