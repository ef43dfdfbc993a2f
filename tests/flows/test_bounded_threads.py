"""A big rollback in trouble writes a bounded number of Slack messages, whatever its size (issue [load], item 3).

The scripted backend makes 50 pods unhealthy and emits service events at every step of a 3-minute rollout
(simulated on the manual clock); the flow must stay within 15 chat writes from the request to the final line.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from bot.core.operations import Phase
from tests.fakes.memory_backend import MemoryBackend, RolloutScript
from tests.flows.conftest import APPROVER, CHANNEL, REQUESTER, World

# The goal of the issue: posts + updates + reactions for one 3-minute rollback, from request to final line.
MAX_WRITES_PER_ROLLBACK = 15


def writes(world: World) -> int:
    chat = world.chat
    return len(chat.posts) + len(chat.updates) + len(chat.added_reactions) + len(chat.ephemerals)


def run_big_rollback(world: World, script: RolloutScript) -> tuple[Phase, list[str]]:
    backend = MemoryBackend(now=world.clock.now, pass_time=world.clock.advance)
    target = world.catalog.get("workshop")
    backend.arrange(target, revisions=2, script=script)
    flow = world.make_flow(backends=dict.fromkeys(world.flow._backends, backend))
    operation = flow.handle_command("workshop", REQUESTER, CHANNEL, world.reply)
    assert operation is not None
    world.chat.react(operation.request_message, APPROVER, "white_check_mark")
    flow.handle_reaction(operation.request_message, APPROVER, "white_check_mark", added=True)
    stored = world.store.get(operation.id)
    assert stored is not None
    return stored.phase, world.chat.thread(operation.request_message)


@pytest.mark.parametrize(
    ("outcome", "phase"), [("succeed", Phase.SUCCEEDED), ("fail", Phase.FAILED)], ids=["succeeds", "fails"]
)
def test_a_three_minute_rollout_of_fifty_broken_pods_stays_within_fifteen_writes(
    world: World, outcome: str, phase: Phase
) -> None:
    script = RolloutScript(
        steps=180,
        outcome=outcome,  # type: ignore[arg-type]
        trouble_at_step=5,
        unhealthy_pods=50,
        events_per_step=6,
        simulated_step_seconds=1.0,
    )
    started = world.clock.now()
    final_phase, thread = run_big_rollback(world, script)
    assert final_phase is phase
    assert world.clock.now() - started >= timedelta(seconds=179)  # three minutes passed on the bot's clock
    assert writes(world) <= MAX_WRITES_PER_ROLLBACK, [p.message.text[:80] for p in world.chat.posts]
    # The problems were told, counted per reason, not pod by pod…
    digests = [line for line in thread if "pods ImagePullBackOff" in line]
    assert digests, thread
    # (pods are replaced every 10 steps, so a line counts every generation it saw: 40 + 10 per generation)
    pulling = re.search(r"(\d+) pods ImagePullBackOff: Back-off pulling image", digests[0])
    crashing = re.search(r"(\d+) pods CrashLoopBackOff: exit code 1", digests[0])
    assert pulling, digests[0]
    assert crashing, digests[0]
    assert int(pulling[1]) % 40 == 0
    assert int(crashing[1]) * 4 == int(pulling[1])
    assert not any("web-0-1`" in line for line in thread)
    # …and the service events summarised.
    assert any("started" in line and "tasks, stopped" in line for line in thread)
    # The last thread line is still the outcome.
    assert ("rolled back to revision 1" in thread[-1]) is (phase is Phase.SUCCEEDED)


def test_the_progress_message_counts_unhealthy_pods_per_reason(world: World) -> None:
    script = RolloutScript(steps=30, trouble_at_step=1, unhealthy_pods=50, simulated_step_seconds=1.0)
    run_big_rollback(world, script)
    progress = [p for p in world.chat.posts if p.thread and "Rollout" in p.message.text]
    assert len(progress) == 1
    shown = [str(progress[0].message.blocks)] + [
        str(m.blocks) for ref, m in world.chat.updates if ref == progress[0].ref
    ]
    troubled = [blocks for blocks in shown if "ImagePullBackOff" in blocks]
    assert troubled
    assert all("40 pods ImagePullBackOff" in blocks and "10 pods CrashLoopBackOff" in blocks for blocks in troubled)
    assert not any("web-0-1`" in blocks for blocks in shown)  # no pod listed one by one
