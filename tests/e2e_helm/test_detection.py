"""Helm failure detection end to end: the real Helm watcher (release Secrets, `owner=helm`), the real helm, a
real chart against kubesim, and the card's button rolling back through the helm backend."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import RollbotApp, build_app
from bot.settings import Settings
from sandbox.slack.driver import SlackDriver
from sandbox.slack.records import Message
from sandbox.slack.seed import ALICE, BOB, BOT_TOKEN, CAROL, INCIDENT, SIGNING_SECRET
from sandbox.slack.server import FakeSlack
from tests.backends.helm_world import HELM, HelmWorld
from tests.e2e_slack.conftest import request_messages

CATALOG: dict[str, Any] = {
    "defaults": {
        "approvals": {"required": 1, "approvers": [ALICE, BOB, CAROL], "expires_after": "15m"},
        "detect": {"channel": INCIDENT, "failing_for": "3s", "healthy_for": "2s"},
    },
    "targets": {
        "workshop": {"backend": "helm", "release": "workshop", "namespace": "default", "kube_context": "sandbox"},
    },
}


# Short enough for a test, long enough that a healthy `helm upgrade --wait` is never called stuck.
STALL_AFTER = "4s"


@pytest.fixture
def detect() -> dict[str, str]:
    """The catalog's detect defaults; a test overrides this fixture to change them."""
    return dict(CATALOG["defaults"]["detect"])


@pytest.fixture
def bot(
    fake_slack: FakeSlack, redis_url: str, tmp_path: Path, helm_world: HelmWorld, detect: dict[str, str]
) -> Iterator[RollbotApp]:
    catalog_path = tmp_path / "detect-catalog.yaml"
    document = {**CATALOG, "defaults": {**CATALOG["defaults"], "detect": detect}}
    catalog_path.write_text(yaml.safe_dump(document), encoding="utf-8")
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
        rollout_timeout=timedelta(seconds=30),
        sweep_interval=timedelta(milliseconds=200),
        slack_budget_scale=60.0,
    )
    app = build_app(settings).start()
    try:
        yield app
    finally:
        app.stop()


def cards(fake: FakeSlack) -> list[Message]:
    return [m for m in fake.messages(INCIDENT) if (m.metadata or {}).get("event_type") == "rollbot_incident"]


def card_payload(fake: FakeSlack, card: Message) -> dict[str, Any]:
    return (fake.message(card.channel, card.ts).metadata or {})["event_payload"]  # type: ignore[no-any-return]


def test_a_failed_helm_upgrade_opens_a_failed_card_whose_button_rolls_back_with_helm(
    helm_world: HelmWorld, bot: RollbotApp, slack: SlackDriver, fake_slack: FakeSlack
) -> None:
    helm_world.install()
    upgrade = helm_world.run(
        "upgrade",
        "workshop",
        str(helm_world.chart),
        "--set",
        "image.tag=non-existing",
        "--wait",
        "--timeout",
        "5s",
        check=False,
    )
    assert upgrade.returncode != 0, "the upgrade must fail for this test to mean anything"
    (card,) = fake_slack.wait_for(lambda: cards(fake_slack), 15, description="the incident card")
    opened = card_payload(fake_slack, card)
    assert (opened["target"], opened["backend"], opened["reason"], opened["revision"]) == (
        "workshop",
        "helm",
        "failed",
        "2",
    )

    slack.block_action(ALICE, INCIDENT, card.ts, "rollbot_incident_rollback")
    try:
        (request,) = fake_slack.wait_for(lambda: request_messages(fake_slack), 20, description="the request")
    except TimeoutError as exc:
        told = [e.all_text() for e in fake_slack.ephemerals(user=ALICE)]
        shown = fake_slack.message(INCIDENT, card.ts)
        raise AssertionError(f"{exc}; Alice was told {told}; the card: {shown.blocks}") from None
    operation_id = request.metadata["event_payload"]["operation_id"]  # type: ignore[index]
    assert request.metadata["event_payload"]["to_revision"] == 1  # type: ignore[index]
    slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)

    fake_slack.wait_for(
        lambda: card_payload(fake_slack, card)["state"] == "resolved", 60, description="the card resolved"
    )
    resolved = card_payload(fake_slack, card)
    assert (resolved["resolution"], resolved["operation_id"]) == ("rolled_back", operation_id)
    assert helm_world.statuses()[-1][1] == "deployed"
    assert len(cards(fake_slack)) == 1


HELM_REFUSAL = "another operation (install/upgrade/rollback) is in progress"


@pytest.mark.parametrize("detect", [{**CATALOG["defaults"]["detect"], "stall_after": STALL_AFTER}])
def test_a_release_stuck_pending_upgrade_opens_a_stuck_card_that_says_why_helm_refuses_and_the_way_out(
    helm_world: HelmWorld, bot: RollbotApp, slack: SlackDriver, fake_slack: FakeSlack, detect: dict[str, str]
) -> None:
    helm_world.install()
    helm_world.interrupted_upgrade()  # `helm upgrade --wait` killed with SIGKILL: revision 2 stays pending-upgrade
    refused = helm_world.run("upgrade", "workshop", str(helm_world.chart), "--set", "image.tag=1.16.0", check=False)
    assert refused.returncode != 0, "helm itself must refuse for this test to mean anything"
    assert HELM_REFUSAL in refused.stderr

    (card,) = fake_slack.wait_for(lambda: cards(fake_slack), 30, description="the stuck card")
    opened = card_payload(fake_slack, card)
    assert (opened["state"], opened["reason"], opened["revision"]) == ("open", "pending-upgrade", "2")
    text = " ".join(fake_slack.message(card.channel, card.ts).all_text().split())
    assert HELM_REFUSAL in text
    assert "Stuck" in text

    # The way out the card offers: its button rolls back to revision 1, which helm allows while pending.
    slack.block_action(ALICE, INCIDENT, card.ts, "rollbot_incident_rollback")
    try:
        (request,) = fake_slack.wait_for(lambda: request_messages(fake_slack), 20, description="the request")
    except TimeoutError as exc:
        told = [e.all_text() for e in fake_slack.ephemerals(user=ALICE)]
        raise AssertionError(f"{exc}; Alice was told {told}; the card: {text}") from None
    assert request.metadata["event_payload"]["to_revision"] == 1  # type: ignore[index]
    slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
    fake_slack.wait_for(
        lambda: card_payload(fake_slack, card)["state"] == "resolved", 60, description="the card resolved"
    )
    assert helm_world.statuses()[-1][1:] == ("deployed", "Rollback to 1")
    assert len(cards(fake_slack)) == 1
