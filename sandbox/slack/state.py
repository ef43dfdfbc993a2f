"""The fake workspace's mutable state and the query API tests use to inspect it.

One re-entrant lock guards everything; a condition variable on that lock wakes ``wait_for`` whenever a call is
recorded or the state changes, so tests never sleep-poll. Observers registered with ``subscribe`` are called
under the lock, in the order changes happened (good enough for a transcript printer; keep callbacks quick).
"""

from __future__ import annotations

import copy
import logging
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from sandbox.slack.records import (
    Call,
    Change,
    ChangeKind,
    Edit,
    Ephemeral,
    EphemeralSource,
    Message,
    MessageSource,
    ResponseUrlPost,
)
from sandbox.slack.seed import Channel, Clock, Workspace

logger = logging.getLogger(__name__)

T = TypeVar("T")

# response_url limits (slack.md §2.3): five uses within thirty minutes of the invocation.
RESPONSE_URL_MAX_USES = 5
RESPONSE_URL_TTL_SECONDS = 30 * 60
# trigger_id lifetime for views.open (slack.md §2.1: "short-lived (~3 s)").
TRIGGER_TTL_SECONDS = 3.0


@dataclass
class ResponseUrl:
    url: str
    kind: Literal["commands", "actions"]
    channel: str
    user: str
    created_at: float
    original_ts: str | None = None
    is_ephemeral_original: bool = False
    uses: int = 0


@dataclass
class Trigger:
    trigger_id: str
    user: str
    issued_at: float
    used: bool = False


class SlackState:
    """Workspace data, messages and recordings, with thread-safe mutation and query helpers."""

    def __init__(self, workspace: Workspace, clock: Clock) -> None:
        self.clock = clock
        self._initial_workspace = workspace.copy()
        self.workspace = workspace.copy()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._messages: dict[str, dict[str, Message]] = {}
        self._calls: list[Call] = []
        self._ephemerals: list[Ephemeral] = []
        self._responses: list[ResponseUrlPost] = []
        self._response_urls: dict[str, ResponseUrl] = {}
        self._triggers: dict[str, Trigger] = {}
        self._views: list[dict[str, Any]] = []
        self._lint: list[str] = []
        self._subscribers: list[Callable[[Change], None]] = []
        self._last_ts_micros = 0
        self._counter = 0
        self.base_url = ""  # set by the server once it knows its port

    # ------------------------------------------------------------------ ids and time

    def next_ts(self) -> str:
        """A new message ts: the fake clock in microseconds, forced strictly increasing."""
        with self._lock:
            micros = int(self.clock.now() * 1_000_000)
            micros = max(micros, self._last_ts_micros + 1)
            self._last_ts_micros = micros
            seconds, fraction = divmod(micros, 1_000_000)
            return f"{seconds:010d}.{fraction:06d}"

    def next_number(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    # ------------------------------------------------------------------ observers

    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call ``callback`` on every state change; returns a function that unsubscribes it."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def _emit(self, kind: ChangeKind, **fields: Any) -> None:
        change = Change(kind=kind, t=self.clock.now(), **fields)
        for callback in list(self._subscribers):
            try:
                callback(change)
            except Exception:
                # An observer bug must not turn into a Slack error the bot would react to.
                logger.exception("fake Slack subscriber failed on %s", kind)
        self._changed.notify_all()

    # ------------------------------------------------------------------ workspace lookups

    def channel(self, channel_id: str) -> Channel | None:
        return self.workspace.channels.get(channel_id)

    def channel_by_name(self, name: str) -> Channel | None:
        wanted = name.lstrip("#")
        return next((c for c in self.workspace.channels.values() if c.name == wanted), None)

    def dm_channel(self, user_id: str) -> Channel:
        """The bot's IM with ``user_id``, created on first use as Slack does for ``channel=<user id>``."""
        with self._lock:
            channel_id = "D" + user_id.lstrip("UW")
            channel = self.workspace.channels.get(channel_id)
            if channel is None:
                channel = Channel(channel_id, channel_id, [self.workspace.bot_user_id, user_id], is_im=True)
                channel.is_private = True
                self.workspace.add_channel(channel)
            return channel

    def user_name(self, user_id: str | None) -> str:
        if user_id is None:
            return "?"
        user = self.workspace.users.get(user_id)
        return user.name if user else user_id

    def channel_name(self, channel_id: str | None) -> str:
        if channel_id is None:
            return "?"
        channel = self.workspace.channels.get(channel_id)
        if channel is None:
            return channel_id
        return f"@{self.user_name(channel.members[-1])}" if channel.is_im else f"#{channel.name}"

    # ------------------------------------------------------------------ messages

    def store_message(
        self,
        channel: str,
        *,
        user: str | None,
        text: str,
        bot_id: str | None = None,
        blocks: list[Any] | None = None,
        attachments: list[Any] | None = None,
        thread_ts: str | None = None,
        reply_broadcast: bool = False,
        metadata: dict[str, Any] | None = None,
        source: MessageSource = "chat.postMessage",
    ) -> Message:
        """Append a message (callers have validated it) and keep the parent's reply bookkeeping."""
        with self._lock:
            ts = self.next_ts()
            parent = self._messages.get(channel, {}).get(thread_ts) if thread_ts else None
            message = Message(
                channel=channel,
                ts=ts,
                user=user,
                text=text,
                bot_id=bot_id,
                app_id=self.workspace.api_app_id if bot_id else None,
                blocks=blocks,
                attachments=attachments,
                thread_ts=thread_ts,
                parent_user_id=parent.user if parent else None,
                reply_broadcast=reply_broadcast,
                metadata=metadata,
                source=source,
            )
            self._messages.setdefault(channel, {})[ts] = message
            if parent is not None:
                parent.thread_ts = parent.ts
                parent.reply_count += 1
                parent.latest_reply = ts
                if user is not None and user not in parent.reply_users:
                    parent.reply_users.append(user)
            self._emit(
                "message_posted",
                channel=channel,
                user=user,
                ts=ts,
                thread_ts=thread_ts,
                text=message.display_text(),
                message=copy.deepcopy(message),
            )
            return message

    def post_as_user(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        thread_ts: str | None = None,
        blocks: list[Any] | None = None,
    ) -> str:
        """A human writes into the channel (no event is sent; the driver does that). Returns the ts."""
        return self.store_message(channel, user=user, text=text, blocks=blocks, thread_ts=thread_ts, source="user").ts

    def find_message(self, channel: str, ts: str) -> Message | None:
        """The live message (callers must hold the lock to mutate it); deleted messages count as absent."""
        message = self._messages.get(channel, {}).get(ts)
        return None if message is None or message.deleted else message

    def edit_message(
        self,
        message: Message,
        *,
        editor: str | None,
        text: str | None,
        blocks: list[Any] | None,
        attachments: list[Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Apply an edit in place; ``None`` keeps a field (chat.update semantics: omitted blocks are kept)."""
        with self._lock:
            message.history.append(Edit(message.text, copy.deepcopy(message.blocks), self.next_ts()))
            if text is not None:
                message.text = text
            if blocks is not None:
                message.blocks = blocks or None
            if attachments is not None:
                message.attachments = attachments or None
            if metadata is not None:
                message.metadata = metadata
            message.edited_ts = message.history[-1].replaced_at_ts
            message.edited_by = editor
            self._emit(
                "message_edited",
                channel=message.channel,
                user=editor,
                ts=message.ts,
                thread_ts=message.thread_ts if message.is_reply else None,
                text=message.display_text(),
                message=copy.deepcopy(message),
            )

    def delete_message(self, message: Message, *, by: str | None) -> None:
        with self._lock:
            message.deleted = True
            if message.is_reply and message.thread_ts:
                parent = self.find_message(message.channel, message.thread_ts)
                if parent is not None:
                    parent.reply_count = max(0, parent.reply_count - 1)
            self._emit(
                "message_deleted",
                channel=message.channel,
                user=by,
                ts=message.ts,
                thread_ts=message.thread_ts if message.is_reply else None,
                message=copy.deepcopy(message),
            )

    def apply_reaction(self, channel: str, ts: str, name: str, user: str, *, added: bool = True) -> bool:
        """Add or remove ``user``'s reaction; returns False when nothing changed (or the message is gone)."""
        with self._lock:
            message = self.find_message(channel, ts)
            if message is None:
                return False
            users = message.reactions.get(name, [])
            if added == (user in users):
                return False
            if added:
                message.reactions[name] = [*users, user]
            else:
                remaining = [u for u in users if u != user]
                if remaining:
                    message.reactions[name] = remaining
                else:
                    del message.reactions[name]
            self._emit(
                "reaction_added" if added else "reaction_removed",
                channel=channel,
                user=user,
                ts=ts,
                thread_ts=message.thread_ts if message.is_reply else None,
                reaction=name,
                message=copy.deepcopy(message),
            )
            return True

    def record_ephemeral(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        blocks: list[Any] | None = None,
        thread_ts: str | None = None,
        source: EphemeralSource = "chat.postEphemeral",
    ) -> Ephemeral:
        with self._lock:
            ephemeral = Ephemeral(
                channel=channel,
                user=user,
                text=text,
                blocks=blocks,
                thread_ts=thread_ts,
                message_ts=self.next_ts(),
                t=self.clock.now(),
                source=source,
            )
            self._ephemerals.append(ephemeral)
            self._emit(
                "ephemeral",
                channel=channel,
                user=user,
                ts=ephemeral.message_ts,
                thread_ts=thread_ts,
                text=ephemeral.display_text(),
                detail={"source": source},
            )
            return ephemeral

    def add_lint(self, finding: str) -> None:
        """Things real Slack accepts but a careful bot should not do (e.g. blocks without fallback text)."""
        with self._lock:
            self._lint.append(finding)

    # ------------------------------------------------------------------ response_url and trigger_id

    def issue_response_url(
        self,
        kind: Literal["commands", "actions"],
        channel: str,
        user: str,
        *,
        original_ts: str | None = None,
        is_ephemeral_original: bool = False,
    ) -> str:
        """Mint a response_url served by this fake (``/hooks/<kind>/<team>/<n>/<secret>``)."""
        with self._lock:
            number = self.next_number()
            url = f"{self.base_url}/hooks/{kind}/{self.workspace.team_id}/{number}/{secrets.token_hex(12)}"
            self._response_urls[url.removeprefix(self.base_url)] = ResponseUrl(
                url=url,
                kind=kind,
                channel=channel,
                user=user,
                created_at=self.clock.now(),
                original_ts=original_ts,
                is_ephemeral_original=is_ephemeral_original,
            )
            return url

    def issue_trigger_id(self, user: str) -> str:
        with self._lock:
            number = self.next_number()
            trigger_id = f"{number}.{int(self.clock.now())}.{secrets.token_hex(16)}"
            self._triggers[trigger_id] = Trigger(trigger_id, user, self.clock.now())
            return trigger_id

    def trigger(self, trigger_id: str) -> Trigger | None:
        return self._triggers.get(trigger_id)

    def record_view(self, view: dict[str, Any], user: str) -> None:
        with self._lock:
            self._views.append(copy.deepcopy(view))
            title = view.get("title")
            self._emit("view_opened", user=user, text=title.get("text", "") if isinstance(title, dict) else "")

    # ------------------------------------------------------------------ recording

    def _record_call(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)
            self._changed.notify_all()

    def _record_response(self, post: ResponseUrlPost) -> None:
        with self._lock:
            self._responses.append(post)
            self._emit(
                "response_url",
                channel=post.channel,
                user=post.user,
                text=post.text,
                detail={"effect": post.effect, "status": post.status, "reason": post.reason, "use": post.use},
            )

    # ------------------------------------------------------------------ queries for tests

    def calls(self, method: str | None = None, **filters: Any) -> list[Call]:
        """Recorded Web API calls, oldest first.

        ``filters`` match request args (``channel="C0OPS"``); the keys ``ok``, ``error`` and ``status`` match
        the outcome instead. A filter value may be a predicate (``text=lambda t: "done" in t``).
        """
        with self._lock:
            return [call for call in self._calls if _call_matches(call, method, filters)]

    def last(self, method: str, **filters: Any) -> Call:
        """The most recent matching call; AssertionError (with what *was* called) when there is none."""
        matching = self.calls(method, **filters)
        if not matching:
            seen = ", ".join(sorted({call.method for call in self.calls()})) or "nothing"
            raise AssertionError(f"no {method} call matching {filters}; calls seen: {seen}")
        return matching[-1]

    def notify(self) -> None:
        """Wake ``wait_for`` callers, for predicates that also look at state outside the fake."""
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0, *, description: str = "") -> T:
        """Block until ``predicate()`` is truthy; return its value.

        The predicate is re-checked whenever the fake records a call or changes state (or ``notify()`` is
        called), never on a timer: a predicate over other state needs one of those to happen.
        """
        with self._changed:
            result = self._changed.wait_for(predicate, timeout=timeout)
        if not result:
            label = description or getattr(predicate, "__name__", "predicate")
            raise TimeoutError(f"fake Slack: {label} not satisfied within {timeout} s")
        return result

    def wait_for_call(self, method: str, timeout: float = 5.0, *, count: int = 1, **filters: Any) -> Call:
        """Wait until at least ``count`` matching calls were recorded; return the ``count``-th one."""

        def enough() -> list[Call]:
            found = self.calls(method, **filters)
            return found if len(found) >= count else []

        return self.wait_for(enough, timeout, description=f"{count}× {method} {filters}")[count - 1]

    def messages(self, channel: str, thread_ts: str | None = None) -> list[Message]:
        """Current messages, oldest first: top level (incl. broadcast replies), or a thread's replies."""
        with self._lock:
            stored = [m for m in self._messages.get(channel, {}).values() if not m.deleted]
            if thread_ts is None:
                selected = [m for m in stored if not m.is_reply or m.reply_broadcast]
            else:
                selected = [m for m in stored if m.is_reply and m.thread_ts == thread_ts]
            return copy.deepcopy(selected)

    def message_or_none(self, channel: str, ts: str) -> Message | None:
        """A copy of the message, or None when it does not exist (or was deleted)."""
        with self._lock:
            message = self.find_message(channel, ts)
            return None if message is None else copy.deepcopy(message)

    def message(self, channel: str, ts: str) -> Message:
        with self._lock:
            message = self.find_message(channel, ts)
            if message is None:
                raise AssertionError(f"no message {ts} in {channel}")
            return copy.deepcopy(message)

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The parent followed by its replies, oldest first."""
        with self._lock:
            return [self.message(channel, ts), *self.messages(channel, thread_ts=ts)]

    def ephemerals(self, channel: str | None = None, user: str | None = None) -> list[Ephemeral]:
        with self._lock:
            return [
                e
                for e in self._ephemerals
                if (channel is None or e.channel == channel) and (user is None or e.user == user)
            ]

    def responses(
        self, kind: str | None = None, *, channel: str | None = None, user: str | None = None
    ) -> list[ResponseUrlPost]:
        """POSTs received on response_urls (accepted and rejected), oldest first."""
        with self._lock:
            return [
                r
                for r in self._responses
                if (kind is None or r.kind == kind)
                and (channel is None or r.channel == channel)
                and (user is None or r.user == user)
            ]

    def views(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._views)

    def lint_findings(self) -> list[str]:
        with self._lock:
            return list(self._lint)

    def assert_no_errors(self, *, allow: Iterable[str] = (), include_injected: bool = False) -> None:
        """Fail if any Web API call or response_url post went wrong.

        Faults armed with ``fail_next`` are the test's own doing and are skipped unless ``include_injected``;
        ``allow`` lists error codes the test expects (e.g. ``"ratelimited"``).
        """
        allowed = set(allow)
        with self._lock:
            failed_calls = [
                call.describe()
                for call in self._calls
                if not call.ok and call.error not in allowed and (include_injected or not call.injected)
            ]
            failed_posts = [
                f"response_url {r.url} → {r.status} {r.reason}"
                for r in self._responses
                if r.effect == "rejected" and r.reason not in allowed
            ]
        problems = failed_calls + failed_posts
        if problems:
            raise AssertionError("fake Slack saw errors:\n  " + "\n  ".join(problems))

    def _reset_state(self) -> None:
        with self._lock:
            self.workspace = self._initial_workspace.copy()
            self._messages.clear()
            self._calls.clear()
            self._ephemerals.clear()
            self._responses.clear()
            self._response_urls.clear()
            self._triggers.clear()
            self._views.clear()
            self._lint.clear()
            self._changed.notify_all()


def _call_matches(call: Call, method: str | None, filters: dict[str, Any]) -> bool:
    if method is not None and call.method != method:
        return False
    outcome = {"ok": call.ok, "error": call.error, "status": call.status}
    for key, expected in filters.items():
        actual = outcome[key] if key in outcome else call.args.get(key)
        if callable(expected):
            if not expected(actual):
                return False
        elif actual != expected:
            return False
    return True
