"""Seed 000 end to end: a helm release upgraded to an image that does not exist, rolled back from Slack.

Everything is real but the world: the chart is `helm create workshop`, the release is installed and broken
with the real helm, the bot is `build_app` with its real Helm backend (the same helm binary), and the
conversation goes through the bot's signed HTTP endpoint. Afterwards the real helm and kubectl are asked
what happened, as the person on call would.
"""

from __future__ import annotations

import re

import pytest

from bot.app import RollbotApp
from sandbox.slack.driver import SlackDriver
from sandbox.slack.server import FakeSlack
from tests.backends.helm_world import HelmWorld
from tests.conformance.conftest import CliRunner
from tests.e2e_helm.conftest import ALICE, BOB, INCIDENT, ROLLOUT_WAIT, ephemeral_reply, verdict
from tests.e2e_slack.conftest import request_rollback, thread_texts, wait_for_phase, wait_for_thread_line

pytestmark = [pytest.mark.needs_helm, pytest.mark.needs_kubectl]


def history_row(history: str, revision: int) -> str:
    """The line of the ephemeral history table for `revision` (`▶` marks the current one)."""
    rows = [line for line in history.splitlines() if re.match(rf"^[▶ ]\s+{revision}\s", line)]
    assert len(rows) == 1, history
    return rows[0]


def test_seed_000_history_then_rollback_to_1_ends_deployed_as_revision_3(
    helm_world: HelmWorld, kubectl: CliRunner, slack: SlackDriver, fake_slack: FakeSlack, bot: RollbotApp
) -> None:
    helm_world.install()
    helm_world.upgrade()  # --set image.tag=non-existing: the new pod never pulls its image

    slack.slash_command("history workshop", user=ALICE, channel=INCIDENT)
    history = ephemeral_reply(fake_slack, ALICE, "History of workshop")
    assert re.search(r"^▶\s+2\s.*\bdeployed\s+nginx:non-existing\s+Upgrade complete", history_row(history, 2))
    assert re.search(r"^ \s+1\s.*\bsuperseded\s+nginx:1\.16\.0\s+Install complete", history_row(history, 1))

    slack.slash_command("status workshop", user=ALICE, channel=INCIDENT)
    broken = ephemeral_reply(fake_slack, ALICE, "at revision 2")
    assert "nginx:non-existing" in broken
    assert "ImagePullBackOff" in broken or "ErrImagePull" in broken

    request = request_rollback(slack, fake_slack, bot, text="workshop 1", user=ALICE, channel=INCIDENT)
    assert "`nginx:non-existing` → `nginx:1.16.0`" in request.message.all_text()
    assert "helm will record the rollback as revision 3" in request.message.all_text()
    slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)

    final = wait_for_phase(fake_slack, request, "succeeded", timeout=ROLLOUT_WAIT)
    assert final.metadata is not None
    assert final.metadata["event_payload"] | {"operation_id": "-"} == {
        "operation_id": "-",
        "phase": "succeeded",
        "target": "workshop",
        "backend": "helm",
        "from_revision": 2,
        "to_revision": 1,
        "source": "user",
    }
    lines = wait_for_thread_line(fake_slack, request, "rolled back to revision 1")
    assert lines[0].startswith("✅ approved by <@U0BOB>")
    assert any(line.startswith("⏪ rolling back: revision 2 → 1") for line in lines)
    # helm's new revision is named by the verdict, not repeated in a line of its own (one Slack write fewer).
    assert not any(line.startswith(":information_source: helm rolled workshop back") for line in lines)
    final_line = verdict(lines, "✅ rolled back to revision 1")
    assert final_line.startswith("✅ rolled back to revision 1 — helm rolled workshop back to revision 1 as revision 3")
    # The rollout message shows the release's Deployment; it ends green. (Seed 000 rolls back in about a second:
    # revision 1's pod never stopped, so there is little to stream; test_takeover streams a slower one.)
    rollout = wait_for_thread_line(fake_slack, request, ":large_green_circle: Rollout of workshop to revision 1")
    assert any('deployment "workshop" successfully rolled out · ready 1/1 · updated 1/1' in line for line in rollout)

    assert helm_world.statuses() == [
        (1, "superseded", "Install complete"),
        (2, "superseded", "Upgrade complete"),
        (3, "deployed", "Rollback to 1"),
    ]
    kubectl("rollout", "status", "deployment/workshop", "--timeout=30s")
    image = kubectl("get", "deployment", "workshop", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert image.stdout == "nginx:1.16.0"

    slack.slash_command("status workshop", user=ALICE, channel=INCIDENT)
    healthy = ephemeral_reply(fake_slack, ALICE, "at revision 3")
    assert healthy.startswith(":large_green_circle:")
    assert "latest revision 3: deployed — Rollback to 1" in healthy
    assert "nginx:1.16.0" in healthy
    assert all("❌" not in line for line in thread_texts(fake_slack, request))


def test_seed_000_after_a_failed_upgrade_wait_rolls_back_from_what_the_upgrade_applied(
    helm_world: HelmWorld, slack: SlackDriver, fake_slack: FakeSlack, bot: RollbotApp
) -> None:
    helm_world.install()
    # The same broken upgrade with `--wait`: helm gives up and marks revision 2 failed, but its image is live.
    upgrade = helm_world.run(
        "upgrade",
        "workshop",
        str(helm_world.chart),
        "--set",
        "image.tag=non-existing",
        "--wait",
        "--timeout",
        "1s",
        check=False,
    )
    assert upgrade.returncode == 1
    assert [status for _, status, _ in helm_world.statuses()] == ["deployed", "failed"]

    # No revision given: the one before the latest, as helm does.
    request = request_rollback(slack, fake_slack, bot, text="workshop", user=ALICE, channel=INCIDENT)
    text = request.message.all_text()
    assert "revision 2 → 1" in text
    assert "`nginx:non-existing` → `nginx:1.16.0`" in text
    assert "revision 2 failed, but the cluster runs what helm applied of it" in text
    slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
    wait_for_phase(fake_slack, request, "succeeded", timeout=ROLLOUT_WAIT)
    lines = wait_for_thread_line(fake_slack, request, "rolled back to revision 1")
    assert "as revision 3" in verdict(lines, "✅ rolled back to revision 1")
    assert [(revision, status) for revision, status, _ in helm_world.statuses()] == [
        (1, "superseded"),
        (2, "failed"),
        (3, "deployed"),
    ]
