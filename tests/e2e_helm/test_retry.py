"""A rollback that helm refused before recording anything can be requested again, and then helm runs again.

The target revision's release Secret is removed between the request and the approval (as `helm history
--max` pruning or a hand-made cleanup would), so helm fails before it stores a new revision; once the Secret is
back, the same request must start helm anew rather than replay the earlier failure.
"""

from __future__ import annotations

import json

import pytest

from bot.app import RollbotApp
from sandbox.slack.driver import SlackDriver
from sandbox.slack.server import FakeSlack
from tests.backends.helm_world import HelmWorld
from tests.conformance.conftest import CliRunner
from tests.e2e_helm.conftest import ALICE, BOB, INCIDENT, ROLLOUT_WAIT, verdict
from tests.e2e_slack.conftest import request_rollback, wait_for_phase, wait_for_thread_line

pytestmark = [pytest.mark.needs_helm, pytest.mark.needs_kubectl]

REVISION_1 = "secret/sh.helm.release.v1.workshop.v1"


def test_a_rollback_helm_refused_before_recording_runs_helm_again_when_requested_again(
    helm_world: HelmWorld, kubectl: CliRunner, slack: SlackDriver, fake_slack: FakeSlack, bot: RollbotApp
) -> None:
    helm_world.install()
    helm_world.upgrade()
    first = request_rollback(slack, fake_slack, bot, text="workshop 1", user=ALICE, channel=INCIDENT)
    saved = kubectl("get", REVISION_1, "-o", "json").json()
    kubectl("delete", REVISION_1)
    slack.reaction_added(BOB, "white_check_mark", INCIDENT, first.ts)
    wait_for_phase(fake_slack, first, "failed", timeout=ROLLOUT_WAIT)
    failed = verdict(wait_for_thread_line(fake_slack, first, "rollback failed"), "❌ rollback failed")
    assert "helm release `workshop` has no revision 1" in failed
    assert [revision for revision, _, _ in helm_world.statuses()] == [2]

    for field in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        saved["metadata"].pop(field, None)
    kubectl("create", "-f", "-", stdin=json.dumps(saved))
    second = request_rollback(slack, fake_slack, bot, text="workshop 1", user=ALICE, channel=INCIDENT)
    slack.reaction_added(BOB, "white_check_mark", INCIDENT, second.ts)
    wait_for_phase(fake_slack, second, "succeeded", timeout=ROLLOUT_WAIT)
    lines = wait_for_thread_line(fake_slack, second, "rolled back to revision 1")
    assert "as revision 3" in verdict(lines, "✅ rolled back to revision 1")
    assert helm_world.statuses() == [
        (1, "superseded", "Install complete"),
        (2, "superseded", "Upgrade complete"),
        (3, "deployed", "Rollback to 1"),
    ]
