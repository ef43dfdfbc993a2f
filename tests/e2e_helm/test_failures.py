"""What the bot says when helm cannot or should not roll back, and that it leaves the release as helm left it.

Each case is arranged with the real helm on a fresh kubesim and asked through the bot's signed HTTP endpoint:
a catalog target whose release was never installed, a revision that does not exist, a release stuck in
`pending-upgrade` (an upgrade with `--wait` killed with SIGKILL), and a rollback whose target image is also
missing (it times out; the thread says which pods are stuck and why).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from bot.app import RollbotApp
from sandbox.slack.driver import SlackDriver
from sandbox.slack.seed import SIGNING_SECRET
from sandbox.slack.server import FakeSlack
from tests.backends.helm_world import HelmWorld
from tests.e2e_helm.conftest import (
    ALICE,
    BOB,
    INCIDENT,
    ROLLOUT_WAIT,
    ephemeral_reply,
    no_request_was_posted,
    verdict,
)
from tests.e2e_slack.conftest import request_rollback, wait_for_phase, wait_for_thread_line

pytestmark = [pytest.mark.needs_helm]

# Where helm looked, because a release "not found" most often means the catalog names the wrong namespace.
GHOST_NOT_FOUND = ":warning: helm release `ghost` not found in namespace `default`, context `sandbox`"


def test_a_release_that_was_never_installed_is_named_and_nothing_is_requested(
    helm_world: HelmWorld, slack: SlackDriver, fake_slack: FakeSlack
) -> None:
    slack.slash_command("ghost 1", user=ALICE, channel=INCIDENT)
    assert ephemeral_reply(fake_slack, ALICE, "not found") == GHOST_NOT_FOUND
    slack.slash_command("history ghost", user=ALICE, channel=INCIDENT)
    slack.slash_command("status ghost", user=ALICE, channel=INCIDENT)
    answers = [GHOST_NOT_FOUND] * 3
    fake_slack.wait_for(
        lambda: [e.text for e in fake_slack.ephemerals(user=ALICE) if "not found" in e.text] == answers,
        10,
        description="an answer naming the missing release to each of the three commands",
    )
    assert no_request_was_posted(fake_slack)
    # Nothing was written in the cluster's release storage.
    missing = helm_world.run("history", "ghost", check=False)
    assert missing.returncode == 1
    assert "Error: release: not found" in missing.stderr
    every_status = ("--deployed", "--failed", "--pending", "--superseded", "--uninstalled", "--uninstalling")
    assert helm_world.run("list", "--all-namespaces", "--short", *every_status).stdout.strip() == ""


def test_an_unknown_revision_lists_the_revisions_that_exist(
    helm_world: HelmWorld, slack: SlackDriver, fake_slack: FakeSlack
) -> None:
    helm_world.install()
    helm_world.upgrade()
    before = helm_world.statuses()
    slack.slash_command("workshop 9", user=ALICE, channel=INCIDENT)
    reply = ephemeral_reply(fake_slack, ALICE, "no revision 9")
    assert reply.startswith(":warning: workshop has no revision 9")
    assert reply.endswith("Revisions that exist: 1, 2.")
    assert no_request_was_posted(fake_slack)
    assert helm_world.statuses() == before


def test_a_release_stuck_in_pending_upgrade_is_refused_up_front_with_the_way_out(
    helm_world: HelmWorld, slack: SlackDriver, fake_slack: FakeSlack, bot: RollbotApp
) -> None:
    helm_world.install()
    helm_world.interrupted_upgrade()  # image.tag=non-existing-too, `--wait` killed with SIGKILL
    stuck = [(1, "deployed", "Install complete"), (2, "pending-upgrade", "Preparing upgrade")]
    assert helm_world.statuses() == stuck

    slack.slash_command("workshop", user=ALICE, channel=INCIDENT)
    reply = ephemeral_reply(fake_slack, ALICE, "stuck")
    assert reply == (
        ':warning: helm release `workshop` is stuck in pending-upgrade at revision 2 ("Preparing upgrade"). '
        "Roll back to the last deployed revision with `/rollback workshop 1`."
    )
    assert no_request_was_posted(fake_slack)
    assert helm_world.statuses() == stuck

    # The way out it offers: from what the interrupted upgrade applied back to revision 1.
    request = request_rollback(slack, fake_slack, bot, text="workshop 1", user=ALICE, channel=INCIDENT)
    text = request.message.all_text()
    assert "revision 2 → 1" in text
    assert "`nginx:non-existing-too` → `nginx:1.16.0`" in text
    assert "revision 2 is stuck in pending-upgrade" in text
    slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
    wait_for_phase(fake_slack, request, "succeeded", timeout=ROLLOUT_WAIT)
    lines = wait_for_thread_line(fake_slack, request, "rolled back to revision 1")
    assert "as revision 3" in verdict(lines, "✅ rolled back to revision 1")
    # helm leaves the interrupted revision pending; only the rollback is deployed.
    assert helm_world.statuses() == [
        (1, "superseded", "Install complete"),
        (2, "pending-upgrade", "Preparing upgrade"),
        (3, "deployed", "Rollback to 1"),
    ]


def test_a_rollback_whose_target_image_is_also_missing_fails_with_the_pods_reason(
    helm_world: HelmWorld, fake_slack: FakeSlack, make_bot: Callable[..., RollbotApp]
) -> None:
    helm_world.install(tag="non-existing-one", wait=False)
    helm_world.upgrade(tag="non-existing-two")
    bot = make_bot(rollout_timeout=timedelta(seconds=4))
    with SlackDriver(bot.events_url, SIGNING_SECRET, fake_slack) as slack:
        request = request_rollback(slack, fake_slack, bot, text="workshop 1", user=ALICE, channel=INCIDENT)
        slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
        wait_for_phase(fake_slack, request, "failed", timeout=ROLLOUT_WAIT)
        # By the time the thread says FAILED, helm has given up too (its --timeout is the rollout timeout) and
        # stored its verdict: the release is exactly as helm left it, and the lock is not released before.
        statuses = helm_world.statuses()
        assert [(revision, status) for revision, status, _ in statuses] == [
            (1, "superseded"),
            (2, "deployed"),
            (3, "failed"),
        ]
        assert statuses[2][2].startswith('Release "workshop" failed: resource Deployment/default/workshop not ready')
        lines = wait_for_thread_line(fake_slack, request, "rollback failed")
        failed = verdict(lines, "❌ rollback failed")
        assert "helm gave up waiting for `workshop` (its --timeout)" in failed
        assert "context deadline exceeded" in failed
        assert "ImagePullBackOff" in failed or "ErrImagePull" in failed
        # The stuck pod of the target revision was shown in the thread with the registry's answer.
        assert any("nginx:non-existing-one: not found" in line for line in lines)

        slack.slash_command("status workshop", user=ALICE, channel=INCIDENT)
        status = ephemeral_reply(fake_slack, ALICE, "latest revision 3")
        assert status.startswith(":red_circle:")
        assert "latest revision 3: failed" in status
