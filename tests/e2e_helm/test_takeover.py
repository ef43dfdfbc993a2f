"""Two bot replicas; the one running a rollback stops while helm is still waiting, the other takes the watch over.

helm's rollback runs as a subprocess of the first replica and finishes on its own; the second replica has no
handle on it and learns the outcome from `helm history` alone, without running helm several times a second.
Nothing may roll back twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest

from bot.app import RollbotApp
from sandbox.slack.driver import SlackDriver
from sandbox.slack.seed import SIGNING_SECRET
from sandbox.slack.server import FakeSlack
from tests.backends.helm_world import HELM, HelmWorld
from tests.e2e_helm.conftest import ALICE, BOB, INCIDENT, ROLLOUT_WAIT, verdict
from tests.e2e_slack.conftest import request_rollback, wait_for_phase, wait_for_thread_line

pytestmark = [pytest.mark.needs_helm]

# Pods take this long to become Ready, so helm is still waiting for revision 1's new pod when the replica stops.
SLOW_PODS = 2.5


@pytest.mark.parametrize("kubesim", [SLOW_PODS], indirect=True)
def test_a_replica_stopping_mid_rollback_hands_over_and_helm_rolls_back_once(
    helm_world: HelmWorld, fake_slack: FakeSlack, make_bot: Callable[..., RollbotApp]
) -> None:
    helm_world.install(tag="1.16.0")
    helm_world.run("upgrade", "workshop", str(helm_world.chart), "--set", "image.tag=1.17.0", "--wait")
    helm_world.upgrade(tag="non-existing")
    lease = {"lease": timedelta(seconds=1), "sweep_interval": timedelta(milliseconds=200)}
    first = make_bot(replica_id="replica-a", **lease)
    # A second replica, whose helm logs each call it makes and then runs the real helm.
    calls = helm_world.workdir / "helm-calls.log"
    wrapper = helm_world.workdir / "helm-logging"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {HELM} "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    make_bot(replica_id="replica-b", helm_path=str(wrapper), **lease)
    with SlackDriver(first.events_url, SIGNING_SECRET, fake_slack) as slack:
        request = request_rollback(slack, fake_slack, first, text="workshop 1", user=ALICE, channel=INCIDENT)
        slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
        # The watch streams while helm waits for revision 1's new pod (Ready only after SLOW_PODS).
        streamed = wait_for_thread_line(fake_slack, request, "Rollout of workshop to revision 1", timeout=ROLLOUT_WAIT)
        assert helm_world.statuses()[-1][1:] == ("pending-rollback", "Rollback to 1")
        progress = next(line for line in streamed if "Rollout of workshop to revision 1" in line)
        assert progress.startswith(
            ':arrows_counterclockwise: Rollout of workshop to revision 1: Waiting for deployment "workshop"'
        )
    started = time.monotonic()
    first.stop()
    wait_for_phase(fake_slack, request, "succeeded", timeout=ROLLOUT_WAIT)
    watched = time.monotonic() - started
    lines = wait_for_thread_line(fake_slack, request, "rolled back to revision 1")
    assert any("another one takes over" in line for line in lines), lines
    assert any("another one took over" in line for line in lines), lines
    assert "as revision 4" in verdict(lines, "✅ rolled back to revision 1")
    # It learnt the outcome from helm's history without running helm several times a second.
    history_reads = [line for line in calls.read_text(encoding="utf-8").splitlines() if line.startswith("history")]
    assert len(history_reads) <= watched + 3
    assert helm_world.statuses() == [
        (1, "superseded", "Install complete"),
        (2, "superseded", "Upgrade complete"),
        (3, "superseded", "Upgrade complete"),
        (4, "deployed", "Rollback to 1"),
    ]
