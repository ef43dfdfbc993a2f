"""The flow's choreography, one behaviour per test, on in-memory ports and a manual clock."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from bot.core.errors import ConcurrentUpdate
from bot.core.operations import Approval, MessageRef, Operation, Phase
from bot.core.rollouts import RolloutPhase, RolloutStatus
from tests.fakes.memory_backend import MemoryBackend, RolloutScript
from tests.fakes.memory_store import InMemoryOperationStore
from tests.flows.conftest import APPROVER, CHANNEL, GROUP_MEMBER, OTHER_APPROVER, OUTSIDER, REQUESTER, World


def request(world: World, text: str = "workshop", user=REQUESTER) -> Operation:
    operation = world.flow.handle_command(text, user, CHANNEL, world.reply)
    assert operation is not None, [m.text for m in world.replies]
    stored = world.store.get(operation.id)
    assert stored is not None
    return stored


def approve(world: World, operation: Operation, user=APPROVER, *, event_id: str | None = None) -> Operation:
    assert operation.request_message is not None
    # As in Slack, the reaction is on the message before its event reaches the bot.
    world.chat.react(operation.request_message, user, "white_check_mark")
    world.flow.handle_reaction(operation.request_message, user, "white_check_mark", added=True, event_id=event_id)
    stored = world.store.get(operation.id)
    assert stored is not None
    return stored


def test_a_request_posts_one_message_with_metadata_and_links_it(world: World) -> None:
    operation = request(world)
    assert operation.phase is Phase.AWAITING_APPROVAL
    assert operation.request_message is not None
    assert world.store.find_by_message(operation.request_message).id == operation.id
    posted = world.chat.current(operation.request_message)
    assert posted.metadata == {"event_type": "rollbot_operation", "event_payload": operation.metadata_payload()}
    assert "Approve" in str(posted.blocks)
    assert ("command", "rollback") in world.metrics.events


def test_an_approval_runs_the_rollback_to_success_and_updates_everything(world: World) -> None:
    operation = approve(world, request(world))
    assert operation.phase is Phase.SUCCEEDED
    assert operation.executor == "replica-a"
    target = world.catalog.get("workshop")
    assert world.backend.rollbacks_applied(target) == 1
    final = world.chat.current(operation.request_message)
    assert final.metadata["event_payload"]["phase"] == "succeeded"
    assert "Approve" not in str(final.blocks)
    thread = world.chat.thread(operation.request_message)
    assert any("rolled back to revision 1" in line for line in thread)
    assert world.store.lock_holder(target.lock_key) is None
    assert ("finished", "helm", "succeeded") in world.metrics.events


def test_a_group_member_may_approve(world: World) -> None:
    assert approve(world, request(world), GROUP_MEMBER).phase is Phase.SUCCEEDED


def test_an_outsider_is_told_and_nothing_changes(world: World) -> None:
    operation = approve(world, request(world), OUTSIDER)
    assert operation.phase is Phase.AWAITING_APPROVAL
    assert any("not an approver" in text for text in world.chat.told(OUTSIDER))


def test_a_redelivered_event_counts_once(world: World) -> None:
    operation = request(world, "fluentd")
    approve(world, operation, APPROVER, event_id="Ev1")
    approve(world, operation, APPROVER, event_id="Ev1")
    operation = approve(world, operation, OTHER_APPROVER, event_id="Ev1")  # same id: a redelivery, dropped
    assert operation.approvers == (APPROVER,)
    assert operation.phase is Phase.AWAITING_APPROVAL


def test_reactions_on_unknown_messages_and_other_emoji_are_ignored(world: World) -> None:
    operation = request(world)
    world.flow.handle_reaction(MessageRef(channel=CHANNEL, ts="1.000001"), APPROVER, "white_check_mark", added=True)
    world.flow.handle_reaction(operation.request_message, APPROVER, "tada", added=True)
    assert world.store.get(operation.id).phase is Phase.AWAITING_APPROVAL
    assert world.chat.ephemerals == []


def test_the_buttons_vote_like_the_reactions(world: World) -> None:
    operation = request(world)
    world.flow.handle_button(operation.request_message, OUTSIDER, "rollbot_approve")
    assert any("not an approver" in text for text in world.chat.told(OUTSIDER))
    world.flow.handle_button(operation.request_message, APPROVER, "rollbot_reject")
    assert world.store.get(operation.id).phase is Phase.REJECTED


def test_a_target_with_an_open_request_is_locked_for_others(world: World) -> None:
    first = request(world)
    assert world.flow.handle_command("workshop 1", APPROVER, CHANNEL, world.reply) is None
    assert f"locked by `{first.id}` requested by <@{REQUESTER}>" in world.replies[-1].text


def test_dry_run_replies_with_the_preview_and_takes_no_lock(world: World) -> None:
    operation = world.flow.handle_command("workshop --dry-run", REQUESTER, CHANNEL, world.reply)
    assert operation is not None
    assert operation.phase is Phase.PREVIEW
    assert "Dry run" in world.replies[-1].text
    assert world.chat.posts == []
    assert world.store.lock_holder(operation.target.lock_key) is None


def test_usage_errors_are_answered_without_io(world: World) -> None:
    answer = world.flow.answer_now("workshop --to-revision=x")
    assert answer is not None
    assert "revision must be a whole number" in answer.text
    assert world.flow.answer_now("workshop 1") is None
    assert "workshop" in str(world.flow.answer_now("help").blocks)


def test_an_unexpected_error_fails_the_operation_with_a_reference_not_a_traceback(world: World) -> None:
    world.backend.script(world.catalog.get("workshop"), RolloutScript(explode_in="roll_back"))
    operation = approve(world, request(world))
    assert operation.phase is Phase.FAILED
    assert f"Internal error, reference {operation.id}" in (operation.outcome or "")
    everything = " ".join(world.chat.thread(operation.request_message))
    everything += " ".join(m.text for _, m in world.chat.updates)
    assert "Internal error" in everything
    assert "boom" not in everything
    assert "Traceback" not in everything
    assert world.store.lock_holder(operation.target.lock_key) is None


def test_an_error_while_watching_fails_the_operation_too(world: World) -> None:
    world.backend.script(world.catalog.get("workshop"), RolloutScript(explode_in="watch"))
    operation = approve(world, request(world))
    assert operation.phase is Phase.FAILED
    assert "Internal error" in (operation.outcome or "")


def test_a_failed_rollout_reports_the_reason(world: World) -> None:
    world.backend.script(world.catalog.get("workshop"), RolloutScript(outcome="fail", reason="ImagePullBackOff"))
    operation = approve(world, request(world))
    assert operation.phase is Phase.FAILED
    assert "ImagePullBackOff" in " ".join(world.chat.thread(operation.request_message))


def test_a_briefly_unavailable_backend_is_retried(world: World) -> None:
    world.backend.script(world.catalog.get("workshop"), RolloutScript(unavailable_calls=2))
    assert approve(world, request(world)).phase is Phase.SUCCEEDED


def test_a_backend_that_stays_unavailable_fails_the_operation(world: World) -> None:
    world.backend.script(world.catalog.get("workshop"), RolloutScript(unavailable_calls=5))
    operation = approve(world, request(world))
    assert operation.phase is Phase.FAILED
    assert "unavailable" in (operation.outcome or "")


def test_a_pod_in_trouble_for_a_while_is_told_once_with_its_reason(world: World) -> None:
    backend = MemoryBackend(now=world.clock.now, pass_time=world.clock.advance)
    backend.arrange(
        world.catalog.get("workshop"), script=RolloutScript(steps=40, trouble_at_step=2, simulated_step_seconds=1.0)
    )
    flow = world.make_flow(backends=dict.fromkeys(world.flow._backends, backend))
    operation = flow.handle_command("workshop", REQUESTER, CHANNEL, world.reply)
    flow.handle_reaction(operation.request_message, APPROVER, "white_check_mark", added=True)
    thread = world.chat.thread(operation.request_message)
    assert sum("`web-2` CrashLoopBackOff: exit code 1" in line for line in thread) == 1
    # "pod web-2 restarted" names the pod already counted: it adds no line of its own.
    assert not any("pod web-2 restarted" in line for line in thread)


class _ClockedBackend(MemoryBackend):
    """Every observation takes `step` of manual-clock time, so coalescing can be counted exactly."""

    def __init__(self, world: World, step: timedelta, statuses: int) -> None:
        super().__init__(now=world.clock.now)
        self._clock, self._step, self._statuses = world.clock, step, statuses

    def watch_rollout(self, target, plan, timeout, resume_token=None):
        for n in range(1, self._statuses + 1):
            self._clock.advance(self._step)
            yield RolloutStatus(phase=RolloutPhase.PROGRESSING, summary=f"{n}/{self._statuses} pods updated")
        yield RolloutStatus(phase=RolloutPhase.SUCCEEDED, summary="all pods ready")


def test_progress_is_one_thread_message_refreshed_less_and_less_often(world: World) -> None:
    backend = _ClockedBackend(world, timedelta(seconds=1), statuses=400)  # one observation a second for 400 s
    backend.arrange(world.catalog.get("workshop"))
    flow = world.make_flow(backends=dict.fromkeys(world.flow._backends, backend))
    operation = flow.handle_command("workshop", REQUESTER, CHANNEL, world.reply)
    flow.handle_reaction(operation.request_message, APPROVER, "white_check_mark", added=True)
    operation = world.store.get(operation.id)
    assert operation.phase is Phase.SUCCEEDED
    progress = [p for p in world.chat.posts if p.thread and "Rollout" in p.message.text]
    assert len(progress) == 1  # one message, posted at the first observation…
    assert "1/400 pods updated" in progress[0].message.text
    updates = [m.text for ref, m in world.chat.updates if ref == progress[0].ref]
    # …refreshed 15 s and 60 s after, then every 3 minutes (240 s), plus the final state.
    assert [text.split("revision 1: ")[1].split(" ·")[0] for text in updates] == [
        "16/400 pods updated",
        "61/400 pods updated",
        "241/400 pods updated",
        "all pods ready",
    ]
    # The channel message carries the latest summary too, but only once a rollout has run for 5 minutes.
    channel_updates = [m for ref, m in world.chat.updates if ref == operation.request_message]
    rolling = [m for m in channel_updates if m.metadata["event_payload"]["phase"] == "rolling_back"]
    assert [m for m in rolling if "pods updated" in str(m.blocks)] == []


def test_start_up_expires_overdue_requests(world: World) -> None:
    operation = request(world)
    world.clock.advance(timedelta(minutes=16))
    world.make_flow(replica_id="replica-b").resume_in_flight()
    stored = world.store.get(operation.id)
    assert stored.phase is Phase.EXPIRED
    assert world.store.lock_holder(stored.target.lock_key) is None


def test_start_up_executes_an_approval_nobody_claimed(world: World) -> None:
    operation = request(world)
    approved = operation.model_copy(
        update={
            "phase": Phase.APPROVED,
            "version": operation.version + 1,
            "approvals": (Approval(user=APPROVER, at=world.clock.now()),),
        }
    )
    world.store.replace(approved, expected_version=operation.version)
    world.make_flow(replica_id="replica-b").resume_in_flight()
    stored = world.store.get(operation.id)
    assert stored.phase is Phase.SUCCEEDED
    assert stored.executor == "replica-b"


def _rolling_back_elsewhere(world: World, *, receipt: bool) -> Operation:
    """An operation that replica-dead started and then went silent on."""
    world.backend.script(world.catalog.get("workshop"), RolloutScript(steps=3))
    operation = request(world)
    target = world.catalog.get("workshop")
    plan = operation.plan
    done = world.backend.roll_back(target, plan, operation.id) if receipt else None

    stolen = operation.model_copy(
        update={
            "phase": Phase.ROLLING_BACK,
            "version": operation.version + 1,
            "approvals": (Approval(user=APPROVER, at=world.clock.now()),),
            "executor": "replica-dead",
            "lease_until": world.clock.now() + timedelta(seconds=30),
            "started_at": world.clock.now(),
            "receipt": done,
        }
    )
    world.store.replace(stolen, expected_version=operation.version)
    return stolen


def test_a_live_lease_of_another_replica_is_left_alone(world: World) -> None:
    operation = _rolling_back_elsewhere(world, receipt=True)
    assert world.make_flow(replica_id="replica-b").sweep() == 0
    assert world.store.get(operation.id).executor == "replica-dead"


def test_an_expired_lease_is_taken_over_without_rolling_back_twice(world: World) -> None:
    operation = _rolling_back_elsewhere(world, receipt=True)
    world.clock.advance(timedelta(seconds=31))
    assert world.make_flow(replica_id="replica-b").sweep() == 1
    stored = world.store.get(operation.id)
    assert stored.phase is Phase.SUCCEEDED
    assert stored.executor == "replica-b"
    target = world.catalog.get("workshop")
    assert world.backend.roll_back_calls(target) == 1
    assert world.backend.rollbacks_applied(target) == 1
    assert any("took over" in line for line in world.chat.thread(operation.request_message))


def test_a_takeover_before_the_receipt_calls_the_idempotent_roll_back_again(world: World) -> None:
    operation = _rolling_back_elsewhere(world, receipt=True)
    world.store.replace(
        world.store.get(operation.id).model_copy(update={"receipt": None, "version": operation.version + 1}),
        expected_version=operation.version,
    )
    world.clock.advance(timedelta(seconds=31))
    world.make_flow(replica_id="replica-b").sweep()
    target = world.catalog.get("workshop")
    assert world.store.get(operation.id).phase is Phase.SUCCEEDED
    assert world.backend.roll_back_calls(target) == 2
    assert world.backend.rollbacks_applied(target) == 1


class _ContendedStore(InMemoryOperationStore):
    """Loses the next `conflicts` compare-and-sets, as if another replica kept writing first."""

    def __init__(self, clock, conflicts: int) -> None:
        super().__init__(clock)
        self.conflicts = conflicts

    def replace(self, operation, expected_version, actor=None, note=None, **fencing) -> None:
        if self.conflicts > 0:
            self.conflicts -= 1
            raise ConcurrentUpdate("someone else wrote first")
        super().replace(operation, expected_version, actor, note, **fencing)


def test_a_lost_compare_and_set_is_decided_again(world: World) -> None:
    store = _ContendedStore(world.clock, conflicts=0)
    flow = world.make_flow(store=store)
    operation = flow.handle_command("fluentd", REQUESTER, CHANNEL, world.reply)
    store.conflicts = 3
    flow.handle_reaction(operation.request_message, APPROVER, "white_check_mark", added=True)
    assert store.get(operation.id).approvers == (APPROVER,)


def test_a_vote_that_beats_the_link_of_its_request_message_still_counts(world: World) -> None:
    operation = request(world)
    early = MessageRef(channel=CHANNEL, ts="1700000099.000001")  # posted, not linked yet
    flow = world.make_flow(sleep=lambda seconds: world.store.link_message(operation.id, early))
    flow.handle_reaction(early, APPROVER, "white_check_mark", added=True, author="UBOT")
    assert world.store.get(operation.id).phase is Phase.SUCCEEDED


def test_a_vote_on_someone_elses_message_is_not_waited_for(world: World) -> None:
    naps: list[float] = []
    flow = world.make_flow(sleep=naps.append)
    flow.handle_reaction(
        MessageRef(channel=CHANNEL, ts="1.1"), APPROVER, "white_check_mark", added=True, author=OUTSIDER
    )
    assert naps == []
    flow.handle_reaction(MessageRef(channel=CHANNEL, ts="1.2"), APPROVER, "white_check_mark", added=True, author="UBOT")
    assert len(naps) == 4


@pytest.mark.parametrize("seed", range(12), ids=lambda seed: f"seed-{seed}")
def test_concurrent_votes_on_two_replicas_execute_at_most_once_and_only_with_approval(world: World, seed: int) -> None:
    """Approvals, withdrawals and rejections racing on two replicas sharing one store."""
    rng = random.Random(seed)
    replicas = [world.flow, world.make_flow(replica_id="replica-b")]
    operation = request(world, "fluentd")  # 2 approvals
    voters = [APPROVER, OTHER_APPROVER, GROUP_MEMBER, REQUESTER, OUTSIDER]
    gestures = [
        (
            rng.choice(replicas),
            rng.choice(voters),
            rng.choice(["white_check_mark", "white_check_mark", "x"]),
            rng.random() < 0.8,
        )
        for _ in range(40)
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for flow, user, emoji, added in gestures:
            pool.submit(flow.handle_reaction, operation.request_message, user, emoji, added=added)
    for flow in replicas:
        flow.sweep()
    final = world.store.get(operation.id)
    target = world.catalog.get("fluentd")
    applied = world.backend.rollbacks_applied(target)
    assert applied <= 1
    assert world.backend.roll_back_calls(target) == applied
    if applied:
        assert final.phase is Phase.SUCCEEDED
        assert REQUESTER not in final.approvers
        assert len(final.approvers) >= 2
    else:
        assert final.phase in {Phase.AWAITING_APPROVAL, Phase.REJECTED, Phase.CANCELLED}
    versions = [entry.version for entry in world.store.audit(operation.id)]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)


def test_thread_lines_survive_slack_being_briefly_unavailable(world: World) -> None:
    operation = request(world)
    world.chat.unavailable_posts = 2
    operation = approve(world, operation)
    thread = world.chat.thread(operation.request_message)
    assert any("approved by" in line for line in thread)
    assert operation.phase is Phase.SUCCEEDED


def test_an_execution_waiting_for_a_worker_is_not_queued_twice(world: World) -> None:
    waiting: list = []
    flow = world.make_flow(submit=waiting.append)
    operation = flow.handle_command("workshop", REQUESTER, CHANNEL, world.reply)
    flow.handle_reaction(operation.request_message, APPROVER, "white_check_mark", added=True)
    world.clock.advance(timedelta(minutes=1))  # long past the grace for unclaimed approvals
    flow.sweep()
    flow.sweep()
    assert len(waiting) == 1
    waiting[0]()
    assert world.store.get(operation.id).phase is Phase.SUCCEEDED


def test_cancel_by_someone_else_is_refused_and_a_finished_operation_has_nothing_to_cancel(world: World) -> None:
    operation = request(world)
    refused = world.flow.handle_cancel(operation.id, OUTSIDER)
    assert "Only <@U0ALICE> or an approver can cancel" in refused.text
    assert world.store.get(operation.id).phase is Phase.AWAITING_APPROVAL
    assert "Cancelled" in world.flow.handle_cancel(operation.id, APPROVER).text
    assert "This request was cancelled" in world.flow.handle_cancel(operation.id, REQUESTER).text
    assert "No operation `op-nope`" in world.flow.handle_cancel("op-nope", REQUESTER).text


class _BrokenHistoryBackend(MemoryBackend):
    def history(self, target):
        raise RuntimeError("boom: secret internals")


def test_a_bug_while_answering_a_command_replies_with_a_reference_only(world: World) -> None:
    backend = _BrokenHistoryBackend(now=world.clock.now)
    backend.arrange(world.catalog.get("workshop"))
    flow = world.make_flow(backends=dict.fromkeys(world.flow._backends, backend))
    flow.accept_command("history workshop", REQUESTER, CHANNEL, world.reply)
    assert len(world.replies) == 1
    assert world.replies[0].text.startswith("Internal error, reference err-")
    assert "boom" not in world.replies[0].text


def test_user_errors_from_commands_are_answered_as_written(world: World) -> None:
    world.flow.handle_command("worksop 1", REQUESTER, CHANNEL, world.reply)
    world.flow.handle_command("status nosuch", REQUESTER, CHANNEL, world.reply)
    world.flow.handle_command("deploy/web -n shop", REQUESTER, CHANNEL, world.reply)
    texts = [reply.text for reply in world.replies]
    assert "did you mean `workshop`" in texts[0]
    assert "unknown target `nosuch`" in texts[1]
    assert "ad-hoc targets" in texts[2]


def test_an_unreachable_backend_at_request_time_says_to_try_again(world: World) -> None:
    world.backend.set_unavailable(world.catalog.get("workshop"))
    assert world.flow.handle_command("workshop", REQUESTER, CHANNEL, world.reply) is None
    assert "cannot be reached" in world.replies[-1].text
    assert "try again" in world.replies[-1].text
    assert world.store.lock_holder(world.catalog.get("workshop").lock_key) is None


def test_a_watch_cut_by_a_temporary_error_is_resumed(world: World) -> None:
    world.backend.script(world.catalog.get("workshop"), RolloutScript(steps=3, watch_interruptions=2))
    operation = approve(world, request(world))
    assert operation.phase is Phase.SUCCEEDED
    assert world.backend.rollbacks_applied(world.catalog.get("workshop")) == 1


def test_a_watch_that_keeps_failing_fails_the_operation_with_the_reason(world: World) -> None:
    world.backend.script(world.catalog.get("workshop"), RolloutScript(steps=3, watch_interruptions=50))
    operation = approve(world, request(world))
    assert operation.phase is Phase.FAILED
    assert "lost track of the rollout" in (operation.outcome or "")
    assert "Internal error" not in (operation.outcome or "")


def test_a_request_held_back_by_slacks_budget_is_announced_as_queued_then_posted(world: World) -> None:
    world.chat.queued_seconds = 6.4
    operation = request(world)
    queued, posted = (message.text for message in world.replies)
    assert "Queued" in queued
    assert operation.id in queued
    assert "about 6 s" in queued
    assert "Requested" in posted


def test_a_short_wait_for_slacks_budget_is_not_announced(world: World) -> None:
    world.chat.queued_seconds = 0.5
    request(world)
    assert [message.text for message in world.replies if "Queued" in message.text] == []


def test_lines_slack_kept_refusing_are_owed_and_posted_once_by_the_next_sweep(world: World) -> None:
    operation = request(world)
    world.chat.unavailable_posts = 1000  # a Slack outage that outlasts every retry
    operation = approve(world, operation)
    assert operation.phase is Phase.SUCCEEDED
    assert world.chat.thread(operation.request_message) == []

    world.flow.sweep()  # Slack is still down: the debt is kept
    world.chat.unavailable_posts = 0
    world.flow.sweep()
    world.flow.sweep()

    thread = world.chat.thread(operation.request_message)
    assert sum("approved by" in line for line in thread) == 1, thread
    assert sum("rolled back to revision 1" in line for line in thread) == 1, thread
    assert world.chat.current(operation.request_message).metadata["event_payload"]["phase"] == "succeeded"
