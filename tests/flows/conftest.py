"""Flow tests: the real `RollbackFlow` on the in-memory store, a recording chat, the scripted backend and a
manual clock. Work handed to the executor runs inline, so every test reads top to bottom."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot.core.catalog import BackendKind, Catalog, ChannelId, SlackGroupId, SlackUserId, parse_catalog
from bot.core.errors import ChatUnavailable
from bot.core.messages import ChatMessage
from bot.core.operations import MessageRef, OperationId
from bot.flows import RollbackFlow
from tests.fakes.clock import ManualClock
from tests.fakes.memory_backend import MemoryBackend, RolloutScript
from tests.fakes.memory_store import InMemoryOperationStore

REQUESTER = SlackUserId("U0ALICE")
APPROVER = SlackUserId("U0BOB")
OTHER_APPROVER = SlackUserId("U0CAROL")
OUTSIDER = SlackUserId("U0DAVE")
GROUP_MEMBER = SlackUserId("U0ERIN")
CHANNEL = ChannelId("C0INCIDENT")

CATALOG = {
    "defaults": {
        "approvals": {"required": 1, "approvers": [REQUESTER, APPROVER, OTHER_APPROVER], "approver_groups": ["S0SRE"]}
    },
    "targets": {
        "workshop": {"backend": "helm", "release": "workshop", "kube_context": "sandbox"},
        "fluentd": {
            "backend": "kubernetes",
            "kind": "DaemonSet",
            "name": "fluentd",
            "namespace": "kube-system",
            "approvals": {"required": 2},
        },
    },
}


@dataclass
class Posted:
    ref: MessageRef
    message: ChatMessage
    thread: MessageRef | None


@dataclass
class RecordingChat:
    """`ports.Chat` that remembers everything, like a tiny Slack; message `ts` values are increasing."""

    posts: list[Posted] = field(default_factory=list)
    updates: list[tuple[MessageRef, ChatMessage]] = field(default_factory=list)
    ephemerals: list[tuple[ChannelId, SlackUserId, ChatMessage]] = field(default_factory=list)
    added_reactions: list[tuple[MessageRef, str]] = field(default_factory=list)
    # What people put on messages (emoji → users), as reactions.get would return it.
    reactions_by_message: dict[MessageRef, dict[str, list[SlackUserId]]] = field(default_factory=dict)
    groups: dict[str, frozenset[SlackUserId]] = field(default_factory=lambda: {"S0SRE": frozenset({GROUP_MEMBER})})
    bots: set[str] = field(default_factory=lambda: {"UBOT"})
    unavailable_posts: int = 0  # the next N posts fail as if Slack were briefly down
    queued_seconds: float = 0.0  # how long Slack's budget makes posts wait (told to `on_queued`)
    _ts: Any = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def post(
        self, channel: ChannelId, message: ChatMessage, thread: MessageRef | None = None, **scheduling: Any
    ) -> MessageRef:
        with self._lock:
            if self.unavailable_posts > 0:
                self.unavailable_posts -= 1
                raise ChatUnavailable("Slack is unreachable (chat.postMessage)")
            on_queued = scheduling.get("on_queued")
            if self.queued_seconds and on_queued is not None:
                on_queued(self.queued_seconds)
            ref = MessageRef(channel=channel, ts=f"1700000000.{next(self._ts):06d}")
            self.posts.append(Posted(ref, message, thread))
            return ref

    def update(self, ref: MessageRef, message: ChatMessage, **scheduling: Any) -> MessageRef | None:
        with self._lock:
            self.updates.append((ref, message))
            return ref

    def post_ephemeral(self, channel: ChannelId, user: SlackUserId, message: ChatMessage) -> None:
        with self._lock:
            self.ephemerals.append((channel, user, message))

    def add_reaction(self, ref: MessageRef, name: str) -> None:
        self.added_reactions.append((ref, name))

    def reactions(self, ref: MessageRef) -> dict[str, tuple[SlackUserId, ...]]:
        with self._lock:
            return {emoji: tuple(users) for emoji, users in self.reactions_by_message.get(ref, {}).items()}

    def react(self, ref: MessageRef, user: SlackUserId, emoji: str) -> None:
        """A person reacts, but (unlike with the driver) no event reaches the bot: the lost-event case."""
        with self._lock:
            self.reactions_by_message.setdefault(ref, {}).setdefault(emoji, []).append(user)

    def group_members(self, group: SlackGroupId) -> frozenset[SlackUserId]:
        return self.groups.get(group, frozenset())

    def is_bot(self, user: SlackUserId) -> bool:
        return user in self.bots

    # --- views for assertions

    def thread(self, parent: MessageRef) -> list[str]:
        return [p.message.text for p in self.posts if p.thread == parent]

    def current(self, ref: MessageRef) -> ChatMessage:
        updated = [message for target, message in self.updates if target == ref]
        if updated:
            return updated[-1]
        return next(p.message for p in self.posts if p.ref == ref)

    def told(self, user: SlackUserId) -> list[str]:
        return [message.text for _, who, message in self.ephemerals if who == user]


class RecordingMetrics:
    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []

    def command_received(self, verb: str) -> None:
        self.events.append(("command", verb))

    def approval_recorded(self, outcome: str) -> None:
        self.events.append(("approval", outcome))

    def phase_entered(self, backend: str, phase: str) -> None:
        self.events.append(("phase", backend, phase))

    def rollout_finished(self, backend: str, phase: str, duration_seconds: float) -> None:
        self.events.append(("finished", backend, phase))


@dataclass
class World:
    flow: RollbackFlow
    chat: RecordingChat
    store: InMemoryOperationStore
    backend: MemoryBackend
    clock: ManualClock
    catalog: Catalog
    metrics: RecordingMetrics
    replies: list[ChatMessage]
    make_flow: Callable[..., RollbackFlow]

    def reply(self, message: ChatMessage) -> None:
        self.replies.append(message)


@pytest.fixture
def world() -> World:
    clock = ManualClock()
    catalog = parse_catalog(CATALOG)
    backend = MemoryBackend(now=clock.now)
    for name in catalog.names:
        backend.arrange(catalog.get(name), revisions=2, script=RolloutScript(steps=3))
    chat = RecordingChat()
    store = InMemoryOperationStore(clock)
    metrics = RecordingMetrics()
    ids = (OperationId(f"op-{n:04x}") for n in itertools.count(0xA000))

    def make_flow(replica_id: str = "replica-a", **overrides: Any) -> RollbackFlow:
        fields: dict[str, Any] = {
            "backends": dict.fromkeys(BackendKind, backend),
            "chat": chat,
            "store": store,
            "clock": clock,
            "metrics": metrics,
            "catalog": catalog,
            "submit": lambda work: work(),
            "new_operation_id": lambda: next(ids),
            "replica_id": replica_id,
            "sleep": lambda seconds: None,
        }
        return RollbackFlow(**(fields | overrides))

    return World(make_flow(), chat, store, backend, clock, catalog, metrics, [], make_flow)
