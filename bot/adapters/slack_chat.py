"""Slack, behind `ports.Chat`: the Web API calls the flow needs, with Slack's failures translated at the seam.

What the flow sees instead of a `SlackApiError` (slack.md §5.3):

    ratelimited (HTTP 429)      writes: the outbox (`slack_outbox`) pauses the method for Retry-After and sends
                                again, never failing; reads: ChatUnavailable(delay=Retry-After), so a cached
                                answer can be used
    not_in_channel,             NotInChannel (a UserError that says how to `/invite @rollbot`)
    channel_not_found
    is_archived                 UserError
    msg_too_long,               the text is truncated / detail blocks dropped, and the call is retried once
    msg_blocks_too_long
    message_not_found,          on update: a new message is posted instead (see `SlackChat.update`)
    edit_window_closed
    cannot_reply_to_message     on a thread reply: posted in the channel instead
    already_reacted             success
    5xx, transport errors,      ChatUnavailable (retryable)
    internal_error…
    anything else               ChatRejected (a PermanentError naming the method and Slack's error code)

The translation itself is `slack_errors.translate_error`; shrinking a message that is too long is `slack_shrink`.

Every call goes through one `SlackOutbox` (the workspace's budget): it paces posts per channel and each method
by its tier, sends URGENT before NORMAL before PROGRESS, and lets a newer PROGRESS update of a message replace
one still waiting (then `update` returns None). The flow still decides how often progress is worth showing
(`rollouts.should_publish`); the outbox decides when Slack can take it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.error import URLError

import structlog
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web import SlackResponse

from bot.adapters.slack_client import (
    DEFAULT_MAX_RETRY_WAIT,
    RATE_LIMITED,
    RateLimitRetryHandler,
    SlackApiObserver,
    build_web_client,
    error_code,
    rate_limit_wait,
    retry_after_seconds,
    without_rate_limit_retries,
)
from bot.adapters.slack_errors import translate_error
from bot.adapters.slack_outbox import DEFAULT_PROGRESS_PATIENCE, Budget, SlackOutbox
from bot.adapters.slack_shrink import shrink_message
from bot.core.catalog import ChannelId, SlackGroupId, SlackUserId
from bot.core.errors import ChatUnavailable, FencedOut
from bot.core.messages import ChatMessage
from bot.core.operations import MessageRef
from bot.core.outbound import Priority
from bot.ports import Clock

log = structlog.get_logger(__name__)

# Re-exported: tests and the composition root build clients from here.
__all__ = [
    "DEFAULT_MAX_RETRY_WAIT",
    "RateLimitRetryHandler",
    "SlackApiObserver",
    "SlackChat",
    "build_web_client",
    "retry_after_seconds",
]

# usergroups.users.list is tier 2 (20/min): membership changes rarely, so five minutes of staleness is fine.
DEFAULT_CACHE_TTL = timedelta(minutes=5)
# Remembered message threads and replacements (for update fallbacks); old entries are forgotten first.
REMEMBERED_MESSAGES = 10_000

TOO_LONG = frozenset({"msg_too_long", "msg_blocks_too_long"})
GONE = frozenset({"message_not_found", "edit_window_closed"})
# chat.postMessage with a thread_ts whose parent no longer exists.
NO_THREAD = frozenset({"cannot_reply_to_message", "thread_not_found"})
SLACKBOT = "USLACKBOT"


class _SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


K = TypeVar("K")
V = TypeVar("V")


class _Bounded(OrderedDict[K, V]):
    def remember(self, key: K, value: V) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > REMEMBERED_MESSAGES:
            self.popitem(last=False)


class _Superseded(Exception):
    """A PROGRESS update the outbox did not send: a newer one replaced it, or Slack's budget was spent."""


class SlackChat:
    """Implements `ports.Chat` with a slack_sdk WebClient (build it with `build_web_client`).

    The client's own 429 retries are left out of this adapter's copy: its outbox waits Retry-After instead,
    pausing the whole method so the other callers wait too.
    """

    def __init__(
        self,
        web_client: WebClient,
        *,
        clock: Clock | None = None,
        observer: SlackApiObserver | None = None,
        cache_ttl: timedelta = DEFAULT_CACHE_TTL,
        budget: Budget | None = None,
        progress_patience: timedelta = timedelta(seconds=DEFAULT_PROGRESS_PATIENCE),
    ) -> None:
        self._client = without_rate_limit_retries(web_client)
        self._outbox = SlackOutbox(
            budget,
            rate_limited=rate_limit_wait,
            observer=observer,
            progress_patience=progress_patience.total_seconds(),
        )
        self._clock = clock if clock is not None else _SystemClock()
        self._observer = observer
        self._cache_ttl = cache_ttl
        self._lock = threading.Lock()
        self._groups: dict[SlackGroupId, tuple[frozenset[SlackUserId], datetime]] = {}
        self._bots: dict[SlackUserId, tuple[bool, datetime]] = {}
        # Which thread each message we posted lives in, and which message replaced one that vanished.
        self._threads: _Bounded[MessageRef, MessageRef] = _Bounded()
        self._replacements: _Bounded[MessageRef, MessageRef] = _Bounded()

    # ports.Chat

    def post(
        self,
        channel: ChannelId,
        message: ChatMessage,
        thread: MessageRef | None = None,
        *,
        priority: Priority = Priority.NORMAL,
        on_queued: Callable[[float], None] | None = None,
        still_current: Callable[[], bool] | None = None,
    ) -> MessageRef:
        """Post in `channel` (in `thread`'s thread if given); returns the new message's ref.

        If the thread's parent is gone (deleted), the message goes to the channel instead of being lost.
        """
        parent = self.current(thread) if thread is not None else None

        def send(msg: ChatMessage) -> SlackResponse:
            _still_current_or_fenced(still_current)
            return self._client.chat_postMessage(
                channel=channel,
                thread_ts=parent.ts if parent is not None else None,
                **_message_args(msg),
            )

        try:
            response = self._send(
                "chat.postMessage",
                send,
                message,
                channel=channel,
                passthrough=NO_THREAD,
                priority=priority,
                on_queued=on_queued,
            )
        except SlackApiError as exc:
            log.warning("thread parent gone, posting in the channel", channel=channel, error=error_code(exc))
            parent = None
            response = self._send("chat.postMessage", send, message, channel=channel, priority=priority)
        ref = MessageRef(channel=ChannelId(str(response.get("channel") or channel)), ts=str(response["ts"]))
        if parent is not None:
            with self._lock:
                self._threads.remember(ref, parent)
        return ref

    def update(
        self,
        ref: MessageRef,
        message: ChatMessage,
        *,
        priority: Priority = Priority.NORMAL,
        still_current: Callable[[], bool] | None = None,
    ) -> MessageRef | None:
        """Show `message` in place of `ref`'s content; returns the ref that now shows it.

        None when, at `Priority.PROGRESS`, the update was not sent: a newer update of the same message replaced
        it while it waited for Slack's budget, or the budget stayed spent (progress slows down, never fails).

        That is `ref` itself, unless the message was deleted or can no longer be edited (`message_not_found`,
        `edit_window_closed`): then a new message is posted in the same channel (and the same thread, if this
        SlackChat posted the original as a reply) and its ref is returned. The caller should remember the new
        ref (e.g. `store.link_message`) so reactions on it are found; this SlackChat also redirects later
        `update`/`post(thread=…)`/`add_reaction` calls for the old ref to the new one.
        """
        target = self.current(ref)

        def send(msg: ChatMessage) -> SlackResponse:
            _still_current_or_fenced(still_current)
            return self._client.chat_update(
                channel=target.channel, ts=target.ts, **_message_args(msg, replace_blocks=True)
            )

        try:
            self._send(
                "chat.update",
                send,
                message,
                channel=target.channel,
                passthrough=GONE,
                priority=priority,
                coalesce_key=("chat.update", target.channel, target.ts),
            )
        except _Superseded:
            return None
        except SlackApiError as exc:
            log.info("message gone, posting a new one", channel=target.channel, ts=target.ts, error=error_code(exc))
            with self._lock:
                thread = self._threads.get(target)
            replacement = self.post(target.channel, message, thread=thread)
            with self._lock:
                self._replacements.remember(ref, replacement)
                if target != ref:
                    self._replacements.remember(target, replacement)
            return replacement
        return target

    def post_ephemeral(self, channel: ChannelId, user: SlackUserId, message: ChatMessage) -> None:
        def send(msg: ChatMessage) -> SlackResponse:
            args = _message_args(msg)
            args.pop("metadata", None)  # ephemeral messages carry no metadata
            return self._client.chat_postEphemeral(channel=channel, user=user, **args)

        self._send("chat.postEphemeral", send, message, channel=channel, priority=Priority.NORMAL)

    def add_reaction(self, ref: MessageRef, name: str) -> None:
        """Idempotent: a reaction that is already there counts as added."""
        target = self.current(ref)
        try:
            self._call(
                "reactions.add",
                lambda: self._client.reactions_add(channel=target.channel, timestamp=target.ts, name=name.strip(":")),
            )
        except SlackApiError as exc:
            if error_code(exc) == "already_reacted":
                return
            raise translate_error("reactions.add", exc, target.channel) from exc

    def reactions(self, ref: MessageRef) -> Mapping[str, Sequence[SlackUserId]]:
        """reactions.get with `full`, so no user list is truncated."""
        target = self.current(ref)
        try:
            response = self._call(
                "reactions.get",
                lambda: self._client.reactions_get(channel=target.channel, timestamp=target.ts, full=True),
                is_read=True,
            )
        except SlackApiError as exc:
            raise translate_error("reactions.get", exc, target.channel) from exc
        message = response.get("message") or {}
        return {
            str(reaction["name"]): tuple(SlackUserId(user) for user in reaction.get("users") or ())
            for reaction in message.get("reactions") or ()
        }

    def group_members(self, group: SlackGroupId) -> frozenset[SlackUserId]:
        """Members of a user group, cached for `cache_ttl`; an unknown group has no members (fail closed).

        When Slack is rate limiting or down and an older answer is cached, the older answer is used.
        """
        now = self._clock.now()
        with self._lock:
            cached = self._groups.get(group)
        if cached is not None and now - cached[1] < self._cache_ttl:
            return cached[0]
        try:
            response = self._call(
                "usergroups.users.list", lambda: self._client.usergroups_users_list(usergroup=group), is_read=True
            )
            members = frozenset(SlackUserId(str(u)) for u in response.get("users") or ())
        except SlackApiError as exc:
            code = error_code(exc)
            if code in {"no_such_subteam", "subteam_not_found"}:
                log.error("unknown approver group, nobody in it can approve", group=group)
                members = frozenset()
            else:
                error = translate_error("usergroups.users.list", exc, None)
                if cached is not None and isinstance(error, ChatUnavailable):
                    log.warning("using a stale group membership", group=group, error=code)
                    return cached[0]
                raise error from exc
        except ChatUnavailable:
            if cached is not None:
                return cached[0]
            raise
        with self._lock:
            self._groups[group] = (members, now)
        return members

    def is_bot(self, user: SlackUserId) -> bool:
        """True for bots, Slackbot and users Slack does not know (none of them may approve); cached."""
        if user == SLACKBOT:
            return True
        now = self._clock.now()
        with self._lock:
            cached = self._bots.get(user)
        if cached is not None and now - cached[1] < self._cache_ttl:
            return cached[0]
        try:
            response = self._call("users.info", lambda: self._client.users_info(user=user), is_read=True)
            profile = response.get("user") or {}
            answer = bool(profile.get("is_bot") or profile.get("is_app_user"))
        except SlackApiError as exc:
            if error_code(exc) != "user_not_found":
                raise translate_error("users.info", exc, None) from exc
            answer = True
        with self._lock:
            self._bots[user] = (answer, now)
        return answer

    # Beyond the port

    def current(self, ref: MessageRef) -> MessageRef:
        """The message that stands for `ref` now (itself, unless `update` had to replace it)."""
        with self._lock:
            seen = {ref}
            while ref in self._replacements:
                ref = self._replacements[ref]
                if ref in seen:  # pragma: no cover (a cycle cannot be built through update)
                    break
                seen.add(ref)
        return ref

    def check_auth(self) -> dict[str, Any]:
        """`auth.test`: the bot's identity; raises ChatRejected on a bad token (for readiness and startup)."""
        response = self._call("auth.test", self._client.auth_test)
        return dict(response.data) if isinstance(response.data, dict) else {}

    # Internals

    def _send(
        self,
        method: str,
        send: Callable[[ChatMessage], SlackResponse],
        message: ChatMessage,
        *,
        channel: ChannelId,
        passthrough: frozenset[str] = frozenset(),
        priority: Priority,
        coalesce_key: tuple[str, ...] | None = None,
        on_queued: Callable[[float], None] | None = None,
    ) -> SlackResponse:
        """Send a message; when Slack finds it too long, shrink it and try exactly once more."""

        def paced(msg: ChatMessage) -> SlackResponse:
            return self._call(
                method,
                lambda: send(msg),
                priority=priority,
                channel=channel,
                coalesce_key=coalesce_key,
                on_queued=on_queued,
            )

        try:
            return paced(message)
        except SlackApiError as exc:
            code = error_code(exc)
            if code in passthrough:
                raise
            if code not in TOO_LONG:
                raise translate_error(method, exc, channel) from exc
            log.warning("message too long for slack, shrinking it", method=method, error=code)
        shrunk = shrink_message(message)
        try:
            return paced(shrunk)
        except SlackApiError as exc:
            if error_code(exc) in passthrough:
                raise
            raise translate_error(method, exc, channel) from exc

    def _call(
        self,
        method: str,
        invoke: Callable[[], SlackResponse],
        *,
        priority: Priority = Priority.NORMAL,
        channel: ChannelId | None = None,
        coalesce_key: tuple[str, ...] | None = None,
        is_read: bool = False,
        on_queued: Callable[[float], None] | None = None,
    ) -> SlackResponse:
        """Run one Web API call when the budget allows; Slack's answers stay SlackApiError (counted),
        transport failures → ChatUnavailable. A write bounced with 429 waits and goes again; a read raises."""

        def observed() -> SlackResponse:
            try:
                return invoke()
            except SlackApiError as exc:
                code = error_code(exc)
                if self._observer is not None:
                    self._observer.slack_api_error(method, code)
                    if code in RATE_LIMITED:
                        self._observer.slack_ratelimited(method, retry_after_seconds(exc.response.headers) or 1.0)
                raise

        try:
            response = self._outbox.call(
                method,
                observed,
                priority=priority,
                channel=channel,
                coalesce_key=coalesce_key,
                on_queued=on_queued,
                retry_rate_limits=not is_read,
            )
        except SlackApiError:
            raise
        except (SlackClientError, URLError, OSError, ValueError) as exc:
            # URLError, timeouts, connection resets after ConnectionErrorRetryHandler gave up; non-JSON bodies.
            if self._observer is not None:
                self._observer.slack_api_error(method, "transport")
            raise ChatUnavailable(f"Slack is unreachable ({method}): {type(exc).__name__}") from exc
        if response is None:
            raise _Superseded(method)
        return response


def _message_args(message: ChatMessage, *, replace_blocks: bool = False) -> dict[str, Any]:
    """chat.* arguments; `replace_blocks` sends an empty list too (chat.update keeps omitted blocks)."""
    args: dict[str, Any] = {"text": message.text}
    if message.blocks or replace_blocks:
        args["blocks"] = [dict(block) for block in message.blocks]
    if message.metadata is not None:
        args["metadata"] = message.metadata
    return args


def _still_current_or_fenced(still_current: Callable[[], bool] | None) -> None:
    """Asked at the last moment, after any wait for Slack's budget: a write for an execution another replica took
    over is not sent (Slack has no fencing; this leaves only the request's own flight time)."""
    if still_current is not None and not still_current():
        raise FencedOut("the execution belongs to another replica now; not sending")
