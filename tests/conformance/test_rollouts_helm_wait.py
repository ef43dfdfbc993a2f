"""helm v4's `--wait` (kstatus watcher) must consider kubesim's DaemonSets, StatefulSets and hook Jobs done
exactly when they are, and ControllerRevision history must follow helm upgrades and rollbacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conformance.conftest import CliRunner, needs_controllers

pytestmark = [pytest.mark.needs_helm, pytest.mark.needs_kubectl, needs_controllers]

TEMPLATES = """\
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{ .Release.Name }}-agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      containers:
      - name: agent
        image: "busybox:{{ .Values.tag }}"
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ .Release.Name }}-db
spec:
  serviceName: db
  replicas: 2
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
      - name: db
        image: "redis:{{ .Values.tag }}"
---
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-migrate
  annotations:
    "helm.sh/hook": post-install,post-upgrade,post-rollback
    "helm.sh/hook-delete-policy": before-hook-creation
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: migrate
        image: "busybox:{{ .Values.tag }}"
"""


@pytest.fixture
def chart(tmp_path: Path) -> str:
    root = tmp_path / "workloads"
    (root / "templates").mkdir(parents=True)
    (root / "Chart.yaml").write_text("apiVersion: v2\nname: workloads\nversion: 0.1.0\n")
    (root / "values.yaml").write_text('tag: "7.2"\n')
    (root / "templates" / "workloads.yaml").write_text(TEMPLATES)
    return str(root)


def images(kubectl: CliRunner, selector: str) -> list[str]:
    out = kubectl("get", "pods", "-l", selector, "-o", "jsonpath={.items[*].spec.containers[0].image}")
    return out.stdout.split()


def test_helm_wait_upgrade_and_rollback_of_daemonset_statefulset_and_hook(
    helm: CliRunner, kubectl: CliRunner, chart: str
) -> None:
    install = helm("install", "wl", chart, "--wait", "--timeout", "30s")
    assert "STATUS: deployed" in install.stdout
    # --wait returned, so everything must already be rolled out: no polling here.
    assert images(kubectl, "app=agent") == ["busybox:7.2"] * 3
    assert images(kubectl, "app=db") == ["redis:7.2"] * 2
    job = kubectl("get", "job", "wl-migrate", "-o", 'jsonpath={.status.conditions[?(@.type=="Complete")].status}')
    assert job.stdout == "True"

    helm("upgrade", "wl", chart, "--set", "tag=7.4", "--wait", "--timeout", "30s")
    assert images(kubectl, "app=agent") == ["busybox:7.4"] * 3
    assert images(kubectl, "app=db") == ["redis:7.4"] * 2
    ds = kubectl("rollout", "status", "ds/wl-agent", "--watch=false").stdout
    assert ds == 'daemon set "wl-agent" successfully rolled out\n'

    rollback = helm("rollback", "wl", "1", "--wait", "--timeout", "30s")
    assert "Rollback was a success" in rollback.stdout
    assert images(kubectl, "app=agent") == ["busybox:7.2"] * 3
    assert images(kubectl, "app=db") == ["redis:7.2"] * 2
    history = kubectl("rollout", "history", "ds/wl-agent").stdout
    assert history == "daemonset.apps/wl-agent \nREVISION  CHANGE-CAUSE\n2         <none>\n3         <none>\n\n"
    sts = kubectl("rollout", "history", "sts/wl-db").stdout
    assert [line.split()[0] for line in sts.splitlines()[2:] if line] == ["2", "3"]
    pods = kubectl("get", "pods", "-l", "job-name=wl-migrate").stdout.splitlines()[1:]
    assert [row.split()[2] for row in pods] == ["Completed"]
