"""Rollbacks that stick under Argo CD and Flux, through Slack, with the real kubectl and helm against kubesim.

For each reconciler (an Argo CD Application with self-heal, a Flux Kustomization, a Flux HelmRelease): a plain
rollback is undone by the simulated controller; rollbot's default (`gitops: refuse`) refuses and says why;
`--suspend-sync` pauses the controller with the approved rollback, which then stays; `resume-sync` (approved
like a rollback) puts back exactly the settings the pause recorded, and the controller takes over again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import RollbotApp, build_app
from bot.settings import Settings
from sandbox.faults import FaultClient
from sandbox.gitops.client import resource_path
from sandbox.gitops.reconcilers import APPLICATIONS, HELMRELEASES, KUSTOMIZATIONS
from sandbox.gitops.world import (
    GitOps,
    argo_managed_deployment,
    deployment_manifest,
    flux_helm_release,
    flux_managed_deployment,
    push_commit,
)
from sandbox.kubesim.cluster import KubeSim
from sandbox.slack.driver import SlackDriver
from sandbox.slack.seed import ALICE, BOB, BOT_TOKEN, CAROL, INCIDENT, SIGNING_SECRET
from sandbox.slack.server import FakeSlack
from tests.backends.helm_world import HELM, HelmWorld
from tests.conformance.conftest import CliRunner
from tests.e2e_slack.conftest import (
    WAIT,
    Request,
    eventually,
    request_rollback,
    thread_texts,
    wait_for_phase,
    wait_for_thread_line,
)

pytestmark = pytest.mark.needs_kubectl

GOOD, BAD = "nginx:1.27", "nginx:1.28"
# Longer than the simulated self-heal delay (1 s) and the Flux interval (1 s) plus a helm upgrade.
STAYS_SECONDS = 4.0
DEPLOYMENTS = ("apps", "v1", "deployments")

CATALOG: dict[str, Any] = {
    "defaults": {"approvals": {"required": 1, "approvers": [ALICE, BOB, CAROL], "expires_after": "15m"}},
    "targets": {
        "shop": {"backend": "kubernetes", "kind": "Deployment", "name": "shop", "kube_context": "sandbox"},
        "cart": {"backend": "kubernetes", "kind": "Deployment", "name": "cart", "kube_context": "sandbox"},
        "pay": {"backend": "helm", "release": "pay", "namespace": "default", "kube_context": "sandbox"},
        "web": {"backend": "kubernetes", "kind": "Deployment", "name": "web", "kube_context": "sandbox"},
    },
}


@dataclass
class Managed:
    """One GitOps-managed target: its name, the reconciler object, and how to undo it by hand."""

    target: str
    resource: tuple[str, str]
    namespace: str
    key: str
    line: str


ARGO = Managed(
    "shop",
    APPLICATIONS,
    "argocd",
    "argocd:argocd/shop",
    "reconciled by Argo CD application argocd/shop (automated, self-heal): it will revert this rollback within seconds",
)
KUSTOMIZATION = Managed(
    "cart",
    KUSTOMIZATIONS,
    "flux-system",
    "flux-kustomization:flux-system/cart",
    "reconciled by Flux Kustomization flux-system/cart (reconciles every 1s): it will revert this rollback at its "
    "next reconciliation",
)
HELMRELEASE = Managed(
    "pay",
    HELMRELEASES,
    "flux-system",
    "flux-helmrelease:flux-system/pay",
    "reconciled by Flux HelmRelease flux-system/pay (reconciles every 1s): it will revert this rollback at its next "
    "reconciliation",
)


@pytest.fixture
def gitops(kubesim: KubeSim, helm_world: HelmWorld) -> Iterator[GitOps]:
    with GitOps(
        kubesim.url, kubeconfig=helm_world.kubeconfig, helm=str(HELM), self_heal_delay=timedelta(seconds=1)
    ) as running:
        yield running


@pytest.fixture
def catalog_document(request: pytest.FixtureRequest) -> dict[str, Any]:
    """CATALOG, or what `@pytest.mark.parametrize("catalog_document", [...], indirect=True)` gives."""
    return dict(getattr(request, "param", CATALOG))


@pytest.fixture
def gitops_bot(
    fake_slack: FakeSlack,
    redis_url: str,
    tmp_path: Path,
    helm_world: HelmWorld,
    gitops: GitOps,
    catalog_document: dict[str, Any],
) -> Iterator[RollbotApp]:
    catalog_path = tmp_path / "catalog.yaml"
    catalog_path.write_text(yaml.safe_dump(catalog_document), encoding="utf-8")
    settings = Settings(
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_api_url=fake_slack.api_url,
        redis_url=redis_url,
        config_path=catalog_path,
        kubeconfig=str(helm_world.kubeconfig),
        helm_path=str(HELM),
        host="127.0.0.1",
        port=0,
        rollout_timeout=timedelta(seconds=45),
        sweep_interval=timedelta(milliseconds=200),
    )
    bot = build_app(settings).start()
    try:
        yield bot
    finally:
        bot.stop()


@pytest.fixture
def driver(gitops_bot: RollbotApp, fake_slack: FakeSlack) -> Iterator[SlackDriver]:
    with SlackDriver(gitops_bot.events_url, SIGNING_SECRET, fake_slack) as slack:
        yield slack


def image_of(kubesim: KubeSim, name: str) -> str:
    deployment = kubesim.store.try_get(DEPLOYMENTS, "default", name) or {}
    containers = ((deployment.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or [{}]
    return str(containers[0].get("image", ""))


def stays(kubesim: KubeSim, name: str, image: str) -> bool:
    deadline = time.monotonic() + STAYS_SECONDS
    while time.monotonic() < deadline:
        if image_of(kubesim, name) != image:
            return False
        time.sleep(0.2)
    return True


def reconciler_spec(gitops: GitOps, managed: Managed) -> dict[str, Any]:
    found = gitops.client.get(resource_path(*managed.resource, managed.namespace, managed.target))
    assert found is not None
    return dict(found["spec"])


def replies(fake: FakeSlack, user: str) -> list[str]:
    texts = [r.text + json.dumps((r.body or {}).get("blocks", "")) for r in fake.responses("commands", user=user)]
    return texts + [e.all_text() for e in fake.ephemerals(user=user)]


def reply_to(fake: FakeSlack, user: str, containing: str) -> str:
    def found() -> list[str]:
        return [text for text in replies(fake, user) if containing in text]

    return str(fake.wait_for(found, WAIT, description=f"a reply to {user} containing {containing!r}")[-1])


def approve_and_finish(driver: SlackDriver, fake: FakeSlack, request: Request) -> None:
    driver.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
    try:
        wait_for_phase(fake, request, "succeeded", timeout=60)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\nthread: {thread_texts(fake, request)}") from exc


def deploy_bad_argo(gitops: GitOps, kubesim: KubeSim) -> None:
    argo_managed_deployment(gitops.client, "shop", image=GOOD)
    eventually(lambda: image_of(kubesim, "shop") == GOOD, description="shop at the good image")
    push_commit(gitops.client, "argocd", "shop", "rev-2", [deployment_manifest("shop", BAD)])


def deploy_bad_kustomization(gitops: GitOps, kubesim: KubeSim) -> None:
    flux_managed_deployment(gitops.client, "cart", image=GOOD, interval="1s")
    eventually(lambda: image_of(kubesim, "cart") == GOOD, description="cart at the good image")
    push_commit(gitops.client, "flux-system", "cart", "main@sha1:2", [deployment_manifest("cart", BAD)])


def deploy_bad_helmrelease(gitops: GitOps, kubesim: KubeSim) -> None:
    flux_helm_release(gitops.client, "pay", image=GOOD, interval="1s")
    eventually(lambda: image_of(kubesim, "pay") == GOOD, timeout=30, description="helm-controller installing pay")
    flux_helm_release(gitops.client, "pay", image=BAD, interval="1s")  # a new commit with a bad image


def undo_by_hand(managed: Managed, kubectl: CliRunner, helm_world: HelmWorld) -> None:
    if managed is HELMRELEASE:
        helm_world.run("rollback", "pay", "1", "-n", "default")
    else:
        kubectl("rollout", "undo", f"deployment/{managed.target}")


@pytest.mark.parametrize(
    ("managed", "deploy_bad"),
    [(ARGO, deploy_bad_argo), (KUSTOMIZATION, deploy_bad_kustomization), (HELMRELEASE, deploy_bad_helmrelease)],
    ids=["argocd-self-heal", "flux-kustomization", "flux-helmrelease"],
)
def test_a_rollback_sticks_only_when_rollbot_pauses_the_reconciler_and_resume_restores_it(
    managed: Managed,
    deploy_bad: Callable[[GitOps, KubeSim], None],
    gitops: GitOps,
    kubesim: KubeSim,
    kubectl: CliRunner,
    helm_world: HelmWorld,
    gitops_bot: RollbotApp,
    driver: SlackDriver,
    fake_slack: FakeSlack,
) -> None:
    deploy_bad(gitops, kubesim)
    eventually(lambda: image_of(kubesim, managed.target) == BAD, timeout=30, description="the bad image deployed")
    before = reconciler_spec(gitops, managed)

    # A plain rollback does not last: the reconciler puts Git's bad image back.
    undo_by_hand(managed, kubectl, helm_world)
    eventually(lambda: image_of(kubesim, managed.target) == GOOD, timeout=30, description="the manual rollback")
    eventually(lambda: image_of(kubesim, managed.target) == BAD, timeout=30, description="the reconciler reverting")

    # The default refuses, and says who would revert it.
    driver.slash_command(managed.target, user=ALICE, channel=INCIDENT)
    refusal = reply_to(fake_slack, ALICE, "Not requested")
    assert managed.line in refusal
    assert "--suspend-sync" in refusal

    # --suspend-sync: paused after approval, before the rollback; the rollback stays.
    request = request_rollback(driver, fake_slack, gitops_bot, text=f"{managed.target} --suspend-sync")
    assert managed.line in request.message.all_text()
    assert request.message.metadata["event_payload"]["reconciler"] == managed.key  # type: ignore[index]
    assert request.message.metadata["event_payload"]["sync_paused"] is False  # type: ignore[index]
    approve_and_finish(driver, fake_slack, request)
    wait_for_thread_line(fake_slack, request, "Git still deploys the bad version")
    final = fake_slack.message(request.channel, request.ts)
    assert final.metadata["event_payload"]["sync_paused"] is True  # type: ignore[index]
    assert image_of(kubesim, managed.target) == GOOD
    assert stays(kubesim, managed.target, GOOD)
    paused = reconciler_spec(gitops, managed)
    if managed is ARGO:
        assert paused["syncPolicy"]["automated"]["enabled"] is False
    else:
        assert paused["suspend"] is True

    # Status lists the pause.
    driver.slash_command(f"status {managed.target}", user=ALICE, channel=INCIDENT)
    assert f"resume-sync {managed.target}" in reply_to(fake_slack, ALICE, "paused by rollbot")

    # resume-sync, approved like a rollback, restores exactly what was recorded.
    resume = request_rollback(driver, fake_slack, gitops_bot, text=f"resume-sync {managed.target}", user=CAROL)
    assert "resume sync of" in resume.message.all_text()
    approve_and_finish(driver, fake_slack, resume)
    assert reconciler_spec(gitops, managed) == before
    eventually(lambda: image_of(kubesim, managed.target) == BAD, timeout=30, description="the reconciler back at work")
    driver.slash_command(f"status {managed.target}", user=ALICE, channel=INCIDENT)
    fake_slack.wait_for(
        lambda: any(
            managed.line[1:] in text and "paused by rollbot" not in text for text in replies(fake_slack, ALICE)
        ),
        WAIT,
        description="a status that names the reconciler and no pause",
    )


PAUSING_CATALOG: dict[str, Any] = {
    "defaults": {**CATALOG["defaults"], "gitops_reminder": "1s"},
    "targets": {
        "shop": {**CATALOG["targets"]["shop"], "gitops": "suspend"},
        "cart": {**CATALOG["targets"]["cart"], "gitops": "warn"},
    },
}


@pytest.mark.parametrize("catalog_document", [PAUSING_CATALOG], indirect=True)
def test_gitops_suspend_pauses_without_the_flag_and_reminds_the_thread_until_resumed(
    gitops: GitOps,
    kubesim: KubeSim,
    gitops_bot: RollbotApp,
    driver: SlackDriver,
    fake_slack: FakeSlack,
) -> None:
    deploy_bad_argo(gitops, kubesim)
    eventually(lambda: image_of(kubesim, "shop") == BAD, timeout=30, description="the bad image deployed")
    request = request_rollback(driver, fake_slack, gitops_bot, text="shop")
    assert "Its sync will be paused before the rollback" in request.message.all_text()
    approve_and_finish(driver, fake_slack, request)
    assert stays(kubesim, "shop", GOOD)
    # Every `gitops_reminder` (1 s here) while the pause lasts: the thread hears that Git still owes the fix.
    reminders = wait_for_thread_line(fake_slack, request, "has been paused for")
    assert "resume-sync shop" in next(line for line in reminders if "has been paused for" in line)

    resume = request_rollback(driver, fake_slack, gitops_bot, text="resume-sync shop", user=CAROL)
    approve_and_finish(driver, fake_slack, resume)
    told = len([line for line in thread_texts(fake_slack, request) if "has been paused for" in line])
    time.sleep(2.5)  # two reminder periods: none may come once the sync is resumed
    assert len([line for line in thread_texts(fake_slack, request) if "has been paused for" in line]) == told


@pytest.mark.parametrize("catalog_document", [PAUSING_CATALOG], indirect=True)
def test_gitops_warn_rolls_back_and_says_the_reconciler_will_revert_it(
    gitops: GitOps,
    kubesim: KubeSim,
    gitops_bot: RollbotApp,
    driver: SlackDriver,
    fake_slack: FakeSlack,
) -> None:
    deploy_bad_kustomization(gitops, kubesim)
    eventually(lambda: image_of(kubesim, "cart") == BAD, timeout=30, description="the bad image deployed")
    request = request_rollback(driver, fake_slack, gitops_bot, text="cart")
    assert KUSTOMIZATION.line in request.message.all_text()
    assert request.message.metadata["event_payload"]["sync_paused"] is False  # type: ignore[index]
    approve_and_finish(driver, fake_slack, request)
    eventually(lambda: image_of(kubesim, "cart") == BAD, timeout=30, description="Flux reverting the rollback")
    assert reconciler_spec(gitops, KUSTOMIZATION)["suspend"] is False


def test_a_batch_with_a_reconciled_member_is_refused_naming_it(
    gitops: GitOps,
    kubesim: KubeSim,
    gitops_bot: RollbotApp,
    driver: SlackDriver,
    fake_slack: FakeSlack,
) -> None:
    deploy_bad_argo(gitops, kubesim)
    deploy_bad_kustomization(gitops, kubesim)
    for name in ("shop", "cart"):
        eventually(lambda name=name: image_of(kubesim, name) == BAD, timeout=30, description=f"{name} at BAD")
    driver.slash_command("shop cart --suspend-sync", user=ALICE, channel=INCIDENT)
    refusal = reply_to(fake_slack, ALICE, "A batch pauses no reconciler")
    assert ARGO.line in refusal
    assert "/rollback shop --suspend-sync" in refusal
    assert stays(kubesim, "shop", BAD)


def test_a_pause_the_api_forbids_fails_the_request_before_anything_is_rolled_back(
    gitops: GitOps,
    kubesim: KubeSim,
    gitops_bot: RollbotApp,
    driver: SlackDriver,
    fake_slack: FakeSlack,
) -> None:
    deploy_bad_argo(gitops, kubesim)
    eventually(lambda: image_of(kubesim, "shop") == BAD, timeout=30, description="the bad image deployed")
    before = reconciler_spec(gitops, ARGO)
    # The chart grants `patch` only on rbac.gitops.pausable when the catalog pauses: here it does not.
    FaultClient(kubesim.url).add(method="PATCH", path="/apis/argoproj.io/*", status=403)
    request = request_rollback(driver, fake_slack, gitops_bot, text="shop --suspend-sync")
    driver.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
    wait_for_phase(fake_slack, request, "failed", timeout=60)
    lines = wait_for_thread_line(fake_slack, request, "could not pause the GitOps sync, so nothing was rolled back")
    assert any("not allowed" in line for line in lines)
    assert image_of(kubesim, "shop") == BAD
    assert reconciler_spec(gitops, ARGO) == before


def test_a_target_no_reconciler_manages_rolls_back_as_before_and_suspend_sync_says_there_is_nothing_to_pause(
    kubectl: CliRunner,
    gitops: GitOps,
    gitops_bot: RollbotApp,
    driver: SlackDriver,
    fake_slack: FakeSlack,
) -> None:
    kubectl("create", "deployment", "web", f"--image={GOOD}")
    kubectl("rollout", "status", "deployment/web", "--timeout=60s")
    kubectl("set", "image", "deployment/web", f"nginx={BAD}")
    kubectl("rollout", "status", "deployment/web", "--timeout=60s")
    request = request_rollback(driver, fake_slack, gitops_bot, text="web --suspend-sync")
    assert "`--suspend-sync` has nothing to pause" in request.message.all_text()
    payload = request.message.metadata["event_payload"]  # type: ignore[index]
    assert "reconciler" not in payload
    assert "sync_paused" not in payload
    approve_and_finish(driver, fake_slack, request)


def test_a_second_rollback_while_paused_keeps_the_first_record_so_resume_restores_the_original(
    gitops: GitOps,
    kubesim: KubeSim,
    gitops_bot: RollbotApp,
    driver: SlackDriver,
    fake_slack: FakeSlack,
) -> None:
    deploy_bad_argo(gitops, kubesim)
    eventually(lambda: image_of(kubesim, "shop") == BAD, timeout=30, description="the bad image deployed")
    original = reconciler_spec(gitops, ARGO)
    approve_and_finish(driver, fake_slack, request_rollback(driver, fake_slack, gitops_bot, "shop --suspend-sync"))
    # Already paused: no flag needed, and the pause it records is still the first one's.
    second = request_rollback(driver, fake_slack, gitops_bot, text="shop")
    assert "(automated sync off): it will not revert this rollback" in second.message.all_text()
    approve_and_finish(driver, fake_slack, second)
    assert second.message.metadata["event_payload"]["reconciler"] == ARGO.key  # type: ignore[index]
    assert fake_slack.message(second.channel, second.ts).metadata["event_payload"]["sync_paused"] is True  # type: ignore[index]
    resume = request_rollback(driver, fake_slack, gitops_bot, text="resume-sync shop", user=CAROL)
    approve_and_finish(driver, fake_slack, resume)
    assert reconciler_spec(gitops, ARGO) == original
