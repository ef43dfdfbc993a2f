"""Deployment rollouts driven by the REAL kubectl against kubesim's controllers (seeds 003 and 004)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sandbox.kubesim.cluster import KubeSim
from sandbox.kubesim.registry import RegistryConfig
from tests.conformance.conftest import POD_READY_SECONDS, CliRunner, needs_controllers

pytestmark = [needs_controllers, pytest.mark.needs_kubectl]

APP = "kubernetes-bootcamp"


@pytest.fixture
def kubesim() -> Iterator[KubeSim]:
    # The tutorial's v10 tag does not exist in the registry (seed 004).
    registry = RegistryConfig(missing=["*:v10", "*non-existing*"], crashloop=["*:crash"], unready=["*:unready"])
    with KubeSim(pod_ready_seconds=POD_READY_SECONDS, registry=registry) as sim:
        yield sim


def pod_table(kubectl: CliRunner, *args: str) -> list[list[str]]:
    rows = kubectl("get", "pods", *args).stdout.splitlines()
    return [row.split() for row in rows[1:]]


def test_bootcamp_update_bad_image_and_undo(kubectl: CliRunner, wait_for: Callable[..., Any]) -> None:
    """Seed 004: kubernetes-bootcamp v1 -> v2 -> v10 (missing image) -> rollout undo back to v2."""
    out = kubectl("create", "deployment", APP, "--image=jocatalin/kubernetes-bootcamp:v1", "--replicas=4")
    assert out.stdout == f"deployment.apps/{APP} created\n"
    status = kubectl("rollout", "status", f"deployment/{APP}", "--timeout=30s")
    assert status.stdout.splitlines()[-1] == f'deployment "{APP}" successfully rolled out'

    table = kubectl("get", "deployments").stdout.splitlines()
    assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert table[1].split()[:4] == [APP, "4/4", "4", "4"]
    assert [row[2] for row in pod_table(kubectl)] == ["Running"] * 4

    out = kubectl("set", "image", f"deployments/{APP}", f"{APP}=jocatalin/kubernetes-bootcamp:v2")
    assert out.stdout == f"deployment.apps/{APP} image updated\n"
    status = kubectl("rollout", "status", f"deployments/{APP}", "--timeout=30s")
    assert status.stdout.splitlines()[-1] == f'deployment "{APP}" successfully rolled out'
    images = kubectl("get", "pods", "-o", "jsonpath={.items[*].spec.containers[0].image}").stdout.split()
    assert images == ["jocatalin/kubernetes-bootcamp:v2"] * 4

    kubectl("set", "image", f"deployments/{APP}", f"{APP}=jocatalin/kubernetes-bootcamp:v10")
    stuck = kubectl("rollout", "status", f"deployments/{APP}", "--timeout=2s", check=False)
    assert stuck.returncode == 1
    assert stuck.stderr.strip().endswith("error: timed out waiting for the condition")
    assert (
        f'Waiting for deployment "{APP}" rollout to finish: 2 out of 4 new replicas have been updated...'
        in stuck.stdout.splitlines()
    )

    def backoff_rows() -> list[list[str]]:
        rows = [row for row in pod_table(kubectl) if row[2] == "ImagePullBackOff"]
        return rows if len(rows) == 2 else []

    bad = wait_for(backoff_rows, message="two pods in ImagePullBackOff")
    assert all(row[1] == "0/1" for row in bad)
    assert sum(1 for row in pod_table(kubectl) if row[2] == "Running") == 3
    deploy = kubectl("get", "deployments").stdout.splitlines()[1].split()
    assert deploy[:4] == [APP, "3/4", "2", "3"]
    described = kubectl("describe", "pod", bad[0][0]).stdout
    assert 'Back-off pulling image "jocatalin/kubernetes-bootcamp:v10"' in described
    assert 'Failed to pull image "jocatalin/kubernetes-bootcamp:v10"' in described

    undo = kubectl("rollout", "undo", f"deployments/{APP}")
    assert undo.stdout == f"deployment.apps/{APP} rolled back\n"
    status = kubectl("rollout", "status", f"deployments/{APP}", "--timeout=30s")
    assert status.stdout.splitlines()[-1] == f'deployment "{APP}" successfully rolled out'
    wait_for(lambda: len(pod_table(kubectl)) == 4, message="the v10 pods to go away")
    assert [row[2] for row in pod_table(kubectl)] == ["Running"] * 4
    images = kubectl("get", "pods", "-o", "jsonpath={.items[*].spec.containers[0].image}").stdout.split()
    assert images == ["jocatalin/kubernetes-bootcamp:v2"] * 4

    # Revision 2 (v2) was reused and renumbered to 4.
    history = kubectl("rollout", "history", f"deployments/{APP}")
    assert history.stdout == (
        f"deployment.apps/{APP} \nREVISION  CHANGE-CAUSE\n1         <none>\n3         <none>\n4         <none>\n\n"
    )
    skipped = kubectl("rollout", "undo", f"deployments/{APP}", "--to-revision=4")
    assert skipped.stdout == f"deployment.apps/{APP} skipped rollback (current template already matches revision 4)\n"


def test_change_cause_history_and_undo_to_revision(kubectl: CliRunner, wait_for: Callable[..., Any]) -> None:
    """Seed 003: change-cause via annotate and --record, history --revision, undo --to-revision."""
    name, ns = "ml-pipeline-newvis", "kubeflow"
    kubectl("create", "namespace", ns)
    kubectl("create", "deployment", name, "-n", ns, "--image=jwher/new-vis:v1.2", "--port=5000")
    kubectl("rollout", "status", f"deploy/{name}", "-n", ns, "--timeout=30s")
    history = kubectl("rollout", "history", f"deploy/{name}", "-n", ns)
    assert history.stdout == f"deployment.apps/{name} \nREVISION  CHANGE-CAUSE\n1         <none>\n\n"

    out = kubectl("annotate", f"deploy/{name}", "-n", ns, "kubernetes.io/change-cause=first deploy")
    assert out.stdout == f"deployment.apps/{name} annotated\n"

    def history_text() -> str:
        return kubectl("rollout", "history", f"deploy/{name}", "-n", ns).stdout

    wait_for(lambda: "1         first deploy\n" in history_text(), message="change-cause copied to the RS")

    kubectl("set", "image", f"deploy/{name}", "-n", ns, "new-vis=jwher/new-vis:v1.3", "--record")
    kubectl("rollout", "status", f"deploy/{name}", "-n", ns, "--timeout=30s")
    lines = history_text().splitlines()
    assert lines[1:3] == ["REVISION  CHANGE-CAUSE", "1         first deploy"]
    assert lines[3].startswith(f"2         kubectl set image deploy/{name} new-vis=jwher/new-vis:v1.3")
    assert "--record=true" in lines[3]

    rev1 = kubectl("rollout", "history", f"deploy/{name}", "-n", ns, "--revision=1").stdout
    assert rev1.startswith(f"deployment.apps/{name} with revision #1\nPod Template:\n  Labels:\tapp={name}\n")
    assert "\tpod-template-hash=" in rev1
    assert "  Annotations:\tkubernetes.io/change-cause: first deploy\n" in rev1
    assert "    Image:\tjwher/new-vis:v1.2\n" in rev1
    assert "    Port:\t5000/TCP\n" in rev1

    undo = kubectl("rollout", "undo", f"deploy/{name}", "-n", ns, "--to-revision=1")
    assert undo.stdout == f"deployment.apps/{name} rolled back\n"
    kubectl("rollout", "status", f"deploy/{name}", "-n", ns, "--timeout=30s")
    lines = history_text().splitlines()
    assert lines[2].startswith("2         kubectl set image")
    assert lines[3] == "3         first deploy"
    ready = kubectl("get", f"deploy/{name}", "-n", ns).stdout.splitlines()[1].split()
    assert ready[:4] == [name, "1/1", "1", "1"]
    missing = kubectl("rollout", "undo", f"deploy/{name}", "-n", ns, "--to-revision=1", check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: unable to find specified revision 1 in history"


PROGRESS_DEADLINE = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  progressDeadlineSeconds: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
"""


def test_rollout_status_fails_once_the_progress_deadline_passes(kubectl: CliRunner) -> None:
    kubectl("apply", "-f", "-", stdin=PROGRESS_DEADLINE)
    kubectl("rollout", "status", "deploy/web", "--timeout=30s")
    kubectl("set", "image", "deploy/web", "web=nginx:non-existing")
    status = kubectl("rollout", "status", "deploy/web", "--timeout=30s", check=False)
    assert status.returncode == 1
    assert status.stderr.strip() == 'error: deployment "web" exceeded its progress deadline'
    reason = kubectl(
        "get", "deploy", "web", "-o", 'jsonpath={.status.conditions[?(@.type=="Progressing")].reason}'
    ).stdout
    assert reason == "ProgressDeadlineExceeded"
    kubectl("rollout", "undo", "deploy/web")
    status = kubectl("rollout", "status", "deploy/web", "--timeout=30s")
    assert status.stdout.splitlines()[-1] == 'deployment "web" successfully rolled out'


def test_pause_resume_restart_and_scale(kubectl: CliRunner, wait_for: Callable[..., Any]) -> None:
    kubectl("create", "deployment", "web", "--image=nginx:1.25", "--replicas=2")
    kubectl("rollout", "status", "deploy/web", "--timeout=30s")

    assert kubectl("rollout", "pause", "deploy/web").stdout == "deployment.apps/web paused\n"
    kubectl("set", "image", "deploy/web", "nginx=nginx:1.26")
    # With a single revision there is nothing to undo to, whatever the pause state.
    undo = kubectl("rollout", "undo", "deploy/web", check=False)
    assert undo.stderr == 'error: no rollout history found for deployment "web"\n'
    undo = kubectl("rollout", "undo", "deploy/web", "--to-revision=1", check=False)
    assert undo.returncode == 1
    assert undo.stderr.startswith("error: you cannot rollback a paused deployment; resume it first")
    reason = wait_for(
        lambda: (
            kubectl(
                "get", "deploy", "web", "-o", 'jsonpath={.status.conditions[?(@.type=="Progressing")].reason}'
            ).stdout
            == "DeploymentPaused"
        ),
        message="Progressing=DeploymentPaused",
    )
    assert reason
    history = kubectl("rollout", "history", "deploy/web").stdout
    assert history == "deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         <none>\n\n"

    assert kubectl("rollout", "resume", "deploy/web").stdout == "deployment.apps/web resumed\n"
    kubectl("rollout", "status", "deploy/web", "--timeout=30s")
    assert [
        line.split()[0] for line in kubectl("rollout", "history", "deploy/web").stdout.splitlines()[2:] if line
    ] == [
        "1",
        "2",
    ]

    assert kubectl("rollout", "restart", "deploy/web").stdout == "deployment.apps/web restarted\n"
    kubectl("rollout", "status", "deploy/web", "--timeout=30s")
    restarted = kubectl(
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.template.metadata.annotations.kubectl\\.kubernetes\\.io/restartedAt}",
    ).stdout
    assert restarted
    assert (
        kubectl(
            "get", "deploy", "web", "-o", "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
        ).stdout
        == "3"
    )

    assert kubectl("scale", "deploy/web", "--replicas=5").stdout == "deployment.apps/web scaled\n"
    kubectl("rollout", "status", "deploy/web", "--timeout=30s")
    ready = kubectl("get", "deploy", "web").stdout.splitlines()[1].split()
    assert ready[:4] == ["web", "5/5", "5", "5"]
    # Scaling is not a new revision.
    assert (
        kubectl(
            "get", "deploy", "web", "-o", "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
        ).stdout
        == "3"
    )


def test_crash_looping_and_unready_images_as_kubectl_shows_them(
    kubectl: CliRunner, wait_for: Callable[..., Any]
) -> None:
    kubectl("create", "deployment", "crasher", "--image=example.com/app:crash")
    kubectl("create", "deployment", "sick", "--image=example.com/app:unready")

    def row(prefix: str) -> list[str]:
        rows = [r for r in pod_table(kubectl) if r[0].startswith(prefix)]
        return rows[0] if rows else []

    crashing = wait_for(lambda: (r := row("crasher-")) and r[2] == "CrashLoopBackOff" and int(r[3]) >= 1 and r)
    assert crashing[1] == "0/1"
    described = kubectl("describe", "pod", crashing[0]).stdout
    assert "Back-off restarting failed container app in pod" in described
    assert "Last State:     Terminated" in described
    assert "Exit Code:    1" in described

    sick = wait_for(lambda: (r := row("sick-")) and r[2] == "Running" and r)
    assert sick[1] == "0/1"
    assert (
        "Readiness probe failed: HTTP probe failed with statuscode: 503" in kubectl("describe", "pod", sick[0]).stdout
    )
    stuck = kubectl("rollout", "status", "deploy/sick", "--timeout=1s", check=False)
    assert stuck.returncode == 1
    assert 'Waiting for deployment "sick" rollout to finish: 0 of 1 updated replicas are available...' in stuck.stdout
