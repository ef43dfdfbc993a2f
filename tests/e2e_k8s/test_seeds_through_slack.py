"""Seeds 001, 003 and 004 through Slack, history and status for every kind, and refusals that change nothing."""

from __future__ import annotations

import json

import pytest

from bot.app import RollbotApp
from bot.core.catalog import WorkloadKind
from sandbox.slack.driver import SlackDriver
from sandbox.slack.seed import ALICE, BOB, DAVE, INCIDENT
from sandbox.slack.server import FakeSlack
from tests.e2e_k8s.conftest import KubeCluster
from tests.e2e_k8s.scenarios import WORKLOADS, break_workload, manifest
from tests.e2e_slack.conftest import (
    WAIT,
    eventually,
    request_messages,
    request_rollback,
    thread_texts,
    wait_for_phase,
    wait_for_thread_line,
)


def reply_to(fake: FakeSlack, user: str, containing: str, ack=None) -> str:
    """The newest answer `user` got containing `containing`: the ack, a response_url post or an ephemeral."""

    def found() -> list[str]:
        texts = [r.text + str((r.body or {}).get("blocks", "")) for r in fake.responses("commands", user=user)]
        texts += [e.all_text() for e in fake.ephemerals(user=user)]
        if ack is not None and ack.ephemeral_text:
            texts.append(ack.ephemeral_text + str((ack.json or {}).get("blocks", "")))
        return [text for text in texts if containing in text]

    return fake.wait_for(found, WAIT, description=f"a reply to {user} containing {containing!r}")[-1]


def approve_and_finish(slack: SlackDriver, fake: FakeSlack, bot: RollbotApp, text: str) -> list[str]:
    request = request_rollback(slack, fake, bot, text=text, user=ALICE, channel=INCIDENT)
    slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
    try:
        wait_for_phase(fake, request, "succeeded", timeout=60)
    except TimeoutError as exc:
        operation = bot.store.get(request.operation.id)
        raise AssertionError(
            f"{exc}\nthread: {thread_texts(fake, request)}\noperation: {operation!r}\n"
            f"audit: {bot.store.audit(request.operation.id)}"
        ) from exc
    return thread_texts(fake, request)


def test_seed_004_bootcamp_v10_is_rolled_back_to_v2_with_four_pods_running(
    cluster: KubeCluster, bot: RollbotApp, slack: SlackDriver, fake_slack: FakeSlack
) -> None:
    kubectl = cluster.kubectl
    kubectl("create", "deployment", "kubernetes-bootcamp", "--image=jocatalin/kubernetes-bootcamp:v1", "--replicas=4")
    kubectl("rollout", "status", "deployment/kubernetes-bootcamp", "--timeout=60s")
    kubectl("set", "image", "deployments/kubernetes-bootcamp", "kubernetes-bootcamp=jocatalin/kubernetes-bootcamp:v2")
    kubectl("rollout", "status", "deployment/kubernetes-bootcamp", "--timeout=60s")
    kubectl("set", "image", "deployments/kubernetes-bootcamp", "kubernetes-bootcamp=jocatalin/kubernetes-bootcamp:v10")
    eventually(
        lambda: any(reason in kubectl("get", "pods").stdout for reason in ("ImagePullBackOff", "ErrImagePull")),
        timeout=30,
        description="the v10 pods showing an image pull error",
    )

    request = request_rollback(slack, fake_slack, bot, text="bootcamp", user=ALICE, channel=INCIDENT)
    preview = request.message.all_text()
    assert "jocatalin/kubernetes-bootcamp:v10" in preview
    assert "jocatalin/kubernetes-bootcamp:v2" in preview
    assert request.message.metadata["event_payload"]["from_revision"] == 3
    assert request.message.metadata["event_payload"]["to_revision"] == 2
    slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
    final = wait_for_phase(fake_slack, request, "succeeded", timeout=60)
    assert final.metadata["event_payload"]["phase"] == "succeeded"
    wait_for_thread_line(fake_slack, request, "successfully rolled out")

    kubectl("rollout", "status", "deployment/kubernetes-bootcamp", "--timeout=30s")
    pods = kubectl("get", "pods", "-l", "app=kubernetes-bootcamp", "-o", "json").json()["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert (
        sorted((p["status"]["phase"], p["spec"]["containers"][0]["image"]) for p in live)
        == [("Running", "jocatalin/kubernetes-bootcamp:v2")] * 4
    )
    history = kubectl("rollout", "history", "deployment/kubernetes-bootcamp").stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["1", "3", "4"]


def test_seed_003_change_cause_shows_in_history_and_to_revision_is_honoured(
    cluster: KubeCluster, bot: RollbotApp, slack: SlackDriver, fake_slack: FakeSlack
) -> None:
    break_workload(cluster, WorkloadKind.DEPLOYMENT)
    slack.slash_command("history web", user=DAVE, channel=INCIDENT)
    history = reply_to(fake_slack, DAVE, "History of web")
    assert "upgrade web to v2" in history
    assert "registry.example/web:v10" in history

    approve_and_finish(slack, fake_slack, bot, "web --to-revision=1")
    image = cluster.kubectl("get", "deployment/web", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert image.stdout == "registry.example/web:v1"


def test_seed_001_daemonset_undo_to_revision_1_rolls_revision_1_forward_to_3(
    cluster: KubeCluster, bot: RollbotApp, slack: SlackDriver, fake_slack: FakeSlack
) -> None:
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        stdin=manifest(WorkloadKind.DAEMONSET, "fluentd", "fluentd:v1").replace("default", "kube-system"),
    )
    cluster.kubectl("rollout", "status", "ds/fluentd", "-n", "kube-system", "--timeout=60s")
    cluster.kubectl("set", "image", "ds/fluentd", "fluentd=fluentd:v2", "-n", "kube-system")
    cluster.kubectl("rollout", "status", "ds/fluentd", "-n", "kube-system", "--timeout=60s")

    approve_and_finish(slack, fake_slack, bot, "fluentd 1")

    cluster.kubectl("rollout", "status", "ds/fluentd", "-n", "kube-system", "--timeout=60s")
    history = cluster.kubectl("rollout", "history", "ds/fluentd", "-n", "kube-system").stdout
    assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == ["2", "3"]
    revisions = cluster.kubectl(
        "get", "controllerrevision", "-n", "kube-system", "-l", "app=fluentd", "-o", "json"
    ).json()
    by_number = {cr["revision"]: json.dumps(cr["data"]) for cr in revisions["items"]}
    assert "fluentd:v1" in by_number[3]
    assert "fluentd:v2" in by_number[2]


@pytest.mark.parametrize("kind", list(WorkloadKind), ids=[kind.value for kind in WorkloadKind])
def test_history_and_status_answer_for_every_kind(
    kind: WorkloadKind, cluster: KubeCluster, bot: RollbotApp, slack: SlackDriver, fake_slack: FakeSlack
) -> None:
    target, _ = WORKLOADS[kind]
    break_workload(cluster, kind)
    slack.slash_command(f"history {target}", user=DAVE, channel=INCIDENT)
    history = reply_to(fake_slack, DAVE, f"History of {target}")
    assert f"registry.example/{target}:v1" in history
    slack.slash_command(f"status {target}", user=DAVE, channel=INCIDENT)
    status = reply_to(fake_slack, DAVE, "revision")
    assert target in status


def test_a_missing_revision_lists_the_ones_that_exist_and_changes_nothing(
    cluster: KubeCluster, bot: RollbotApp, slack: SlackDriver, fake_slack: FakeSlack
) -> None:
    break_workload(cluster, WorkloadKind.DEPLOYMENT)
    before = cluster.kubectl("get", "deployment/web", "-o", "json").json()
    slack.slash_command("web 9", user=ALICE, channel=INCIDENT)
    reply = reply_to(fake_slack, ALICE, "Revisions that exist")
    assert "1, 2, 3" in reply
    assert request_messages(fake_slack) == []
    after = cluster.kubectl("get", "deployment/web", "-o", "json").json()
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_a_paused_deployment_is_refused_with_the_resume_hint(
    cluster: KubeCluster, bot: RollbotApp, slack: SlackDriver, fake_slack: FakeSlack
) -> None:
    break_workload(cluster, WorkloadKind.DEPLOYMENT)
    cluster.kubectl("rollout", "pause", "deployment/web")
    before = cluster.kubectl("get", "deployment/web", "-o", "json").json()
    slack.slash_command("web", user=ALICE, channel=INCIDENT)
    reply = reply_to(fake_slack, ALICE, "paused")
    assert "kubectl rollout resume deployment/web" in reply
    assert request_messages(fake_slack) == []
    after = cluster.kubectl("get", "deployment/web", "-o", "json").json()
    assert after["spec"]["template"] == before["spec"]["template"]


def test_an_ad_hoc_target_outside_the_allowed_namespaces_is_refused(
    cluster: KubeCluster, bot: RollbotApp, slack: SlackDriver, fake_slack: FakeSlack
) -> None:
    cluster.kubectl("create", "namespace", "payments")
    cluster.kubectl("create", "deployment", "api", "--image=api:v1", "-n", "payments")
    slack.slash_command("deploy/api -n payments", user=ALICE, channel=INCIDENT)
    reply = reply_to(fake_slack, ALICE, "not open to ad-hoc rollbacks")
    assert "`payments`" in reply
    assert "allowed_namespaces" in reply
    assert request_messages(fake_slack) == []


def test_an_ad_hoc_target_in_an_allowed_namespace_is_rolled_back(
    cluster: KubeCluster, bot: RollbotApp, slack: SlackDriver, fake_slack: FakeSlack
) -> None:
    break_workload(cluster, WorkloadKind.DEPLOYMENT)
    approve_and_finish(slack, fake_slack, bot, "deploy/web -n default")
    image = cluster.kubectl("get", "deployment/web", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert image.stdout == "registry.example/web:v2"


def test_an_unknown_kube_context_is_a_clear_message(
    cluster: KubeCluster, bot: RollbotApp, slack: SlackDriver, fake_slack: FakeSlack
) -> None:
    slack.slash_command("elsewhere", user=ALICE, channel=INCIDENT)
    reply = reply_to(fake_slack, ALICE, "unknown kube context")
    assert "production" in reply
    assert "sandbox" in reply
    assert request_messages(fake_slack) == []
