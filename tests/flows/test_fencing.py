"""Exactly once under pauses: a replica paused past its lease is fenced out; an approval never runs late."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from bot.core.errors import StoreUnavailable
from bot.core.operations import MessageRef, Phase
from bot.flows.journal import LOCK_MARGIN
from tests.fakes.memory_store import InMemoryOperationStore
from tests.flows.conftest import APPROVER, CHANNEL, OTHER_APPROVER, REQUESTER, World

LEASE = timedelta(seconds=30)


class PausingBackend:
    """The world's backend, but its first rollout watch freezes after one observation until `resume` is set.

    This is a replica paused by a GC, CPU throttling or a frozen node: it holds the execution in memory while its
    lease runs out in the store.
    """

    def __init__(self, inner) -> None:
        self._inner = inner
        self.paused = threading.Event()
        self.resume = threading.Event()

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def watch_rollout(self, target, plan, timeout, resume_token=None):
        for status in self._inner.watch_rollout(target, plan, timeout, resume_token):
            yield status
            if not self.paused.is_set():
                self.paused.set()
                self.resume.wait(10)


def test_a_replica_paused_past_its_lease_writes_and_posts_nothing_after_the_takeover(world: World) -> None:
    pausing = PausingBackend(world.backend)
    threads: list[threading.Thread] = []

    def in_a_thread(work) -> None:
        thread = threading.Thread(target=work)
        threads.append(thread)
        thread.start()

    paused_replica = world.make_flow(
        "replica-a", backends=dict.fromkeys(world.flow._backends, pausing), submit=in_a_thread, lease=LEASE
    )
    operation = paused_replica.handle_command("workshop", REQUESTER, CHANNEL, world.reply)
    paused_replica.handle_reaction(operation.request_message, APPROVER, "white_check_mark", added=True)
    assert pausing.paused.wait(5)

    world.clock.advance(LEASE + timedelta(seconds=1))
    taker = world.make_flow("replica-b", lease=LEASE)
    assert taker.sweep() == 1
    done = world.store.get(operation.id)
    assert done.phase is Phase.SUCCEEDED
    assert done.executor == "replica-b"
    posts, updates, audit = len(world.chat.posts), len(world.chat.updates), len(world.store.audit(operation.id))

    pausing.resume.set()  # the paused replica wakes up, still believing it executes
    for thread in threads:
        thread.join(10)

    after = world.store.get(operation.id)
    assert after == done, "the stale replica changed the record"
    assert len(world.store.audit(operation.id)) == audit
    assert (len(world.chat.posts), len(world.chat.updates)) == (posts, updates), "the stale replica wrote to Slack"
    assert world.backend.rollbacks_applied(world.catalog.get("workshop")) == 1
    finals = [line for line in world.chat.thread(operation.request_message) if "rolled back to revision" in line]
    assert len(finals) == 1


def test_an_approval_whose_target_was_taken_meanwhile_ends_saying_who_holds_it(world: World) -> None:
    stalled = world.make_flow(submit=lambda work: None)  # approved, but the replica died before claiming
    operation = stalled.handle_command("workshop", REQUESTER, CHANNEL, world.reply)
    stalled.handle_reaction(operation.request_message, APPROVER, "white_check_mark", added=True)
    assert world.store.get(operation.id).phase is Phase.APPROVED

    target = world.catalog.get("workshop")
    world.clock.advance(target.policy.expires_after + LOCK_MARGIN + timedelta(seconds=1))
    newer = world.flow.handle_command("workshop", OTHER_APPROVER, CHANNEL, world.reply)
    assert newer is not None
    assert newer.phase is Phase.AWAITING_APPROVAL

    world.flow.sweep()
    ended = world.store.get(operation.id)
    assert ended.phase is Phase.FAILED
    assert newer.id in ended.outcome
    assert world.backend.rollbacks_applied(target) == 0
    assert any("not run" in line and newer.id in line for line in world.chat.thread(operation.request_message))
    world.flow.sweep()  # and it is not queued again by later sweeps
    assert world.store.get(operation.id).version == ended.version


class _FlakyStore(InMemoryOperationStore):
    """Fails the next `failures` writes as if Redis dropped the connection mid-command."""

    failures = 0

    def replace(self, operation, expected_version, actor=None, note=None, **fencing) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailable("operation store: ConnectionError: connection reset")
        super().replace(operation, expected_version, actor, note, **fencing)


def test_a_vote_whose_write_failed_is_counted_by_the_next_sweep_and_only_once(world: World) -> None:
    store = _FlakyStore(world.clock)
    flow = world.make_flow(store=store)
    operation = flow.handle_command("workshop", REQUESTER, CHANNEL, world.reply)
    store.failures = 1
    # Slack got its 200 at once and will not send the event again: the vote must not be lost with the write.
    flow.accept_reaction(operation.request_message, APPROVER, "white_check_mark", added=True, event_id="Ev1")
    assert store.get(operation.id).approvals == ()
    flow.sweep()
    assert store.get(operation.id).phase is Phase.SUCCEEDED
    flow.accept_reaction(operation.request_message, APPROVER, "white_check_mark", added=True, event_id="Ev1")
    flow.sweep()
    assert sum("approved by" in line for line in world.chat.thread(operation.request_message)) == 1


class _PausingChat:
    """The world's chat, but the first update showing the claim ("Rolling back") made from a thread named
    `paused-*` freezes until `resume` is set: a replica paused right after storing its claim, before reporting
    it. (The approval's own lines, queued before the claim, went out already.)"""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.paused = threading.Event()
        self.resume = threading.Event()

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def update(self, ref, message, **scheduling):
        shows_claim = "Rolling back" in repr(message)
        if threading.current_thread().name.startswith("paused-") and shows_claim and not self.paused.is_set():
            self.paused.set()
            self.resume.wait(10)
        return self._inner.update(ref, message, **scheduling)


def test_a_replica_paused_between_its_claim_and_its_report_posts_no_stale_line(world: World) -> None:
    chat = _PausingChat(world.chat)
    threads: list[threading.Thread] = []

    def in_a_paused_thread(work) -> None:
        thread = threading.Thread(target=work, name=f"paused-{len(threads)}")
        threads.append(thread)
        thread.start()

    paused = world.make_flow(
        "replica-a", chat=chat, submit=in_a_paused_thread, submit_report=in_a_paused_thread, lease=LEASE
    )
    operation = paused.handle_command("workshop", REQUESTER, CHANNEL, world.reply)
    paused.handle_reaction(operation.request_message, APPROVER, "white_check_mark", added=True)
    assert chat.paused.wait(5)  # the claim is stored; its "rolling back" line is not posted yet

    world.clock.advance(LEASE + timedelta(seconds=1))
    world.make_flow("replica-b", lease=LEASE).sweep()
    assert world.store.get(operation.id).phase is Phase.SUCCEEDED
    chat.resume.set()
    for thread in threads:
        thread.join(10)

    thread_lines = world.chat.thread(operation.request_message)
    assert thread_lines[-1].startswith("✅ rolled back to revision 1"), thread_lines
    assert not any("rolling back" in line for line in thread_lines), "the paused replica reported its stale claim"
    assert world.backend.rollbacks_applied(world.catalog.get("workshop")) == 1


class _VoteOnLinkStore(InMemoryOperationStore):
    """An approver as quick as can be: the ✅ is handled right after the request message's link is stored, before
    the operation records the message's ref."""

    vote: Callable[[MessageRef], None] | None = None

    def link_message(self, operation_id, ref) -> None:
        super().link_message(operation_id, ref)
        if self.vote is not None:
            vote, self.vote = self.vote, None
            vote(ref)


def test_a_vote_stored_before_the_request_messages_ref_still_gets_its_lines(world: World) -> None:
    store = _VoteOnLinkStore(world.clock)
    reporting = ThreadPoolExecutor(2)
    flow = world.make_flow(store=store, submit_report=reporting.submit, sleep=time.sleep)
    store.vote = lambda ref: flow.handle_reaction(ref, APPROVER, "white_check_mark", added=True)

    operation = flow.handle_command("workshop", REQUESTER, CHANNEL, world.reply)
    reporting.shutdown(wait=True)

    assert store.get(operation.id).phase is Phase.SUCCEEDED
    thread_lines = world.chat.thread(operation.request_message)
    assert thread_lines, "the approval's lines were dropped"
    assert thread_lines[0].startswith("✅ approved by <@U0BOB>"), thread_lines
    assert thread_lines[-1].startswith("✅ rolled back to revision 1"), thread_lines
