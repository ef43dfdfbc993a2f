"""What a replica acknowledged is never lost when it stops or dies before handling it: another one adopts it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

from bot.core.operations import Phase
from tests.fakes.memory_inbox import InMemoryInbox
from tests.flows.conftest import APPROVER, CHANNEL, REQUESTER, World

Work = Callable[[], None]


def test_a_stopped_replica_hands_its_unhandled_gestures_to_another(world: World) -> None:
    inbox = InMemoryInbox(world.clock)
    never_ran: list[Work] = []  # the stopping replica's queue: acknowledged, cancelled at shutdown
    stopping = world.make_flow("replica-a", inbox=inbox, submit_request=never_ran.append)
    other = world.make_flow("replica-b", inbox=inbox)

    stopping.accept_command("workshop", REQUESTER, CHANNEL, world.reply)
    assert world.store.in_flight() == []
    stopping.stop()
    stopping.say_goodbye()
    other.sweep()

    (operation,) = world.store.in_flight()
    assert operation.phase is Phase.AWAITING_APPROVAL
    assert world.chat.posts[0].ref == operation.request_message
    # The requester's response_url belonged to the stopped replica: the answer comes as an ephemeral message.
    assert any(operation.id in text for text in world.chat.told(REQUESTER))

    stopping.accept_reaction(operation.request_message, APPROVER, "white_check_mark", added=True, event_id="Ev9")
    stopping.say_goodbye()
    other.sweep()
    assert world.store.get(operation.id).phase is Phase.SUCCEEDED
    other.sweep()  # adopted once: nothing is replayed again
    assert sum("approved by" in line for line in world.chat.thread(operation.request_message)) == 1


def test_work_of_a_replica_that_died_is_adopted_once_its_heartbeat_lapses(world: World) -> None:
    inbox = InMemoryInbox(world.clock)
    dead = world.make_flow("replica-a", inbox=inbox, submit_request=lambda work: None)
    other = world.make_flow("replica-b", inbox=inbox)
    dead.sweep()  # alive: it heartbeats

    operation = other.handle_command("workshop", REQUESTER, CHANNEL, world.reply)
    dead.accept_reaction(operation.request_message, APPROVER, "white_check_mark", added=True)
    other.sweep()
    assert world.store.get(operation.id).phase is Phase.AWAITING_APPROVAL, "adopted while its replica lived"

    world.clock.advance(timedelta(seconds=31))  # SIGKILL: no goodbye, the heartbeat simply runs out
    other.sweep()
    assert world.store.get(operation.id).phase is Phase.SUCCEEDED


class _FrozenPosts:
    """The world's chat, except that posting in the channel (not in threads) never returns: a replica that
    froze or died while its request message waited for Slack."""

    def __init__(self, inner) -> None:
        self._inner = inner
        self.frozen = threading.Event()
        self.thaw = threading.Event()

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def post(self, channel, message, thread=None, **scheduling):
        if thread is None:
            self.frozen.set()
            self.thaw.wait(10)
            raise RuntimeError("the process is gone")
        return self._inner.post(channel, message, thread, **scheduling)


def test_a_command_adopted_midway_continues_its_operation_instead_of_requesting_twice(world: World) -> None:
    inbox = InMemoryInbox(world.clock)
    chat = _FrozenPosts(world.chat)
    dying = world.make_flow(
        "replica-a", inbox=inbox, chat=chat, submit_request=lambda work: threading.Thread(target=work).start()
    )
    other = world.make_flow("replica-b", inbox=inbox)
    dying.sweep()  # alive for now
    dying.accept_command("workshop", REQUESTER, CHANNEL, world.reply)
    assert chat.frozen.wait(5)
    (stored,) = world.store.in_flight()
    assert stored.request_message is None  # created, not shown: the replica froze while posting it

    world.clock.advance(timedelta(seconds=31))
    other.sweep()
    chat.thaw.set()

    (operation,) = world.store.in_flight()
    assert operation.id == stored.id
    assert operation.request_message is not None
    assert [post.ref for post in world.chat.posts if post.thread is None] == [operation.request_message]
    told = world.chat.told(REQUESTER)
    assert any(operation.id in text and "Requested" in text for text in told), told
    assert not any("locked" in text for text in told), told
