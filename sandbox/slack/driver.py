"""SlackDriver: plays Slack's side of the conversation towards the bot's HTTP endpoint.

It sends correctly signed slash commands, Events API callbacks and block actions, measures how fast the bot
acks, and keeps the fake's state consistent with what it claims happened (a ``reaction_added`` event also adds
the reaction, so ``reactions.get`` agrees; a slash command's response_url points at the fake).

Transport: one keep-alive ``http.client`` connection per thread, so 50 concurrent senders do not share (or
serialise on) a socket and nobody pays a TCP handshake per request.
"""

from __future__ import annotations

import json
import string
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPException
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

from sandbox.slack.blockkit import blocks_plain_text
from sandbox.slack.records import Change
from sandbox.slack.seed import ALICE, API_APP_ID, EVE, OPS, TEAM_DOMAIN, TEAM_ID, Clock, WallClock
from sandbox.slack.server import FakeSlack
from sandbox.slack.signing import SLACK_USER_AGENT, compute_signature, signed_headers
from sandbox.slack.socket_mode import EnvelopeType

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
# Slack gives the bot three seconds to answer any request (slack.md §2.2, §3.4).
ACK_DEADLINE_SECONDS = 3.0
# Slack retries a failed event delivery three times (immediately, ~1 min, ~5 min); compressed for tests.
DEFAULT_RETRY_DELAYS = (0.0, 0.05, 0.1)
# The deprecated verification token Slack still puts in payloads; bots must ignore it.
LEGACY_TOKEN = "legacy-verification-token"

RequestKind = Literal["slash_command", "event", "block_actions", "url_verification", "ssl_check", "raw"]
RetryReason = Literal["http_timeout", "http_error", "connection_failed", "unknown_error"]
Transport = Literal["http", "socket"]


@dataclass
class Ack:
    """The bot's HTTP answer to one request, with timing."""

    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes
    latency: float
    kind: RequestKind
    request_body: bytes = b""
    response_url: str | None = None
    trigger_id: str | None = None
    event_id: str | None = None
    retry_num: int | None = None
    transport_error: str | None = None  # e.g. "timeout", "ConnectionRefusedError: …"

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None when it is empty or not JSON."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def is_in_channel(self) -> bool:
        payload = self.json
        return isinstance(payload, dict) and payload.get("response_type") == "in_channel"

    @property
    def ephemeral_text(self) -> str | None:
        """What the invoking user alone would see from this ack (plain-text body or ephemeral JSON)."""
        if not self.ok or not self.body:
            return None
        payload = self.json
        if isinstance(payload, dict):
            if payload.get("response_type") == "in_channel":
                return None
            text = payload.get("text")
            rendered = blocks_plain_text(payload.get("blocks"))
            return "\n".join(part for part in (text, rendered) if isinstance(part, str) and part) or None
        return self.text

    def assert_acked(self, within: float = ACK_DEADLINE_SECONDS) -> Ack:
        """Fail unless the bot answered 2xx within ``within`` seconds; returns self for chaining."""
        if not self.ok:
            raise AssertionError(
                f"{self.kind} not acked: HTTP {self.status} {self.transport_error or ''} body={self.text[:300]!r}"
            )
        if self.latency > within:
            raise AssertionError(f"{self.kind} acked after {self.latency:.3f} s (limit {within} s)")
        return self


@dataclass
class Delivery:
    """The outcome of delivering one event the way Slack does, retries included."""

    event_id: str
    attempts: list[Ack] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        """True when some attempt was answered 2xx within the deadline."""
        return any(a.ok and a.transport_error is None for a in self.attempts)

    @property
    def retries(self) -> int:
        return max(0, len(self.attempts) - 1)


class SlackDriver:
    """Sends Slack's requests to the bot.

    ``transport="http"`` (default) POSTs signed requests to ``bot_url`` (Bolt serves everything on
    ``/slack/events``). ``transport="socket"`` pushes the same payloads as Socket Mode envelopes over the
    fake's ``/link`` WebSocket instead (``bot_url`` unused; signatures do not exist there, so the negative
    signing helpers just deliver their payload).
    """

    def __init__(
        self,
        bot_url: str | None,
        signing_secret: str,
        fake: FakeSlack | None = None,
        *,
        team_id: str = TEAM_ID,
        team_domain: str = TEAM_DOMAIN,
        api_app_id: str = API_APP_ID,
        clock: Clock | None = None,
        timeout: float = 10.0,
        reflect_acks: bool = True,
        transport: Transport = "http",
        ack_deadline: float = ACK_DEADLINE_SECONDS,
    ) -> None:
        self.bot_url = bot_url
        self.signing_secret = signing_secret
        self.fake = fake
        self.team_id = team_id
        self.team_domain = team_domain
        self.api_app_id = api_app_id
        self.clock = clock or WallClock()
        self.timeout = timeout
        # Mirror what Slack shows for an ack (ephemeral text, in_channel message, operation_timeout) into the fake.
        self.reflect_acks = reflect_acks
        # When Slack gives up on a slash command ack (3 s); lower it to test the timeout path quickly.
        self.ack_deadline = ack_deadline
        self.transport: Transport = transport
        if transport == "socket" and fake is None:
            raise ValueError("the socket transport delivers through the fake; pass fake=")
        self._host, self._port, self._path = "", 0, "/"
        if transport == "http":
            parts = urlsplit(bot_url or "")
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError(f"bot_url must be http://host:port/path, got {bot_url!r}")
            self._host = parts.hostname
            self._port = parts.port or 80
            self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._event_counter = 0
        self._background = ThreadPoolExecutor(max_workers=8, thread_name_prefix="slack-driver")
        self.forwarded: list[Future[Ack]] = []
        self._connections: list[HTTPConnection] = []  # every thread's keep-alive connection, for close()

    def close(self) -> None:
        self._background.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    def __enter__(self) -> SlackDriver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ slash commands

    def slash_command(
        self,
        text: str,
        user: str,
        channel: str,
        command: str = "/rollback",
        *,
        response_url: str | None = None,
        trigger_id: str | None = None,
    ) -> Ack:
        """``/rollback <text>`` typed by ``user`` in ``channel`` (form-encoded, slack.md §2.1)."""
        response_url, trigger_id, body = self._slash_body(text, user, channel, command, response_url, trigger_id)
        ack = self.send(body, FORM, kind="slash_command")
        ack.response_url, ack.trigger_id = response_url, trigger_id
        if self.reflect_acks and self.fake is not None:
            self._reflect_slash_ack(ack, command, user, channel)
        return ack

    def _slash_body(
        self,
        text: str,
        user: str,
        channel: str,
        command: str,
        response_url: str | None,
        trigger_id: str | None,
    ) -> tuple[str, str, bytes]:
        if response_url is None:
            response_url = (
                self.fake.issue_response_url("commands", channel, user)
                if self.fake is not None
                else f"https://hooks.slack.com/commands/{self.team_id}/{self._next_number()}/{uuid.uuid4().hex}"
            )
        if trigger_id is None:
            trigger_id = (
                self.fake.issue_trigger_id(user)
                if self.fake is not None
                else f"{self._next_number()}.{int(self.clock.now())}.{uuid.uuid4().hex}"
            )
        fields = {
            "token": LEGACY_TOKEN,
            "team_id": self.team_id,
            "team_domain": self.team_domain,
            "channel_id": channel,
            "channel_name": self._channel_name(channel),
            "user_id": user,
            "user_name": self._user_name(user),
            "command": command,
            "text": text,
            "api_app_id": self.api_app_id,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id,
        }
        return response_url, trigger_id, urlencode(fields).encode()

    def _reflect_slash_ack(self, ack: Ack, command: str, user: str, channel: str) -> None:
        """Record what the user would see: the ack's text, or Slack's error when the ack failed or was late."""
        assert self.fake is not None
        if not ack.ok or ack.latency > self.ack_deadline:
            error = "operation_timeout" if ack.ok or ack.transport_error == "timeout" else "dispatch_failed"
            self.fake.record_ephemeral(
                channel, user, f'{command} failed with the error "{error}"', source="operation_timeout"
            )
            return
        payload: Any = ack.json
        if ack.is_in_channel and isinstance(payload, dict):
            self.fake.store_message(
                channel,
                user=self.fake.workspace.bot_user_id,
                bot_id=self.fake.workspace.bot_id,
                text=str(payload.get("text") or ""),
                blocks=payload.get("blocks"),
                source="slash_ack",
            )
        elif ack.ephemeral_text:
            blocks = payload.get("blocks") if isinstance(payload, dict) else None
            text = payload.get("text") if isinstance(payload, dict) else ack.text
            self.fake.record_ephemeral(channel, user, str(text or ""), blocks=blocks, source="slash_ack")

    # ------------------------------------------------------------------ Events API

    def event(
        self,
        inner: Mapping[str, Any],
        event_id: str | None = None,
        retry_num: int | None = None,
        retry_reason: str | None = None,
        *,
        event_time: int | None = None,
    ) -> Ack:
        """Wrap ``inner`` in an ``event_callback`` envelope and send it (with retry headers if given)."""
        event_id = event_id or self.new_event_id()
        body = self.event_envelope(inner, event_id, event_time=event_time)
        extra = _retry_headers(retry_num, retry_reason)
        ack = self.send(body, JSON, kind="event", extra_headers=extra)
        ack.event_id, ack.retry_num = event_id, retry_num
        return ack

    def event_envelope(self, inner: Mapping[str, Any], event_id: str, *, event_time: int | None = None) -> bytes:
        event = dict(inner)
        event.setdefault("event_ts", self._event_ts())
        envelope = {
            "token": LEGACY_TOKEN,
            "team_id": self.team_id,
            "api_app_id": self.api_app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": event_time if event_time is not None else int(self.clock.now()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self._bot_user_id(),
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": f"4-{uuid.uuid4().hex}",
        }
        return json.dumps(envelope).encode()

    def new_event_id(self) -> str:
        """``Ev`` + base-36 counter + a random tail, unique across drivers sharing one bot."""
        return f"Ev{_base36(self._next_number()):0>6}{uuid.uuid4().hex[:4].upper()}"

    def reaction_added(
        self,
        user: str,
        reaction: str,
        channel: str,
        ts: str,
        event_id: str | None = None,
        *,
        retry_num: int | None = None,
        retry_reason: str | None = None,
    ) -> Ack:
        """``user`` reacts with ``:reaction:`` to message ``ts``; the fake's reactions change first."""
        return self._reaction_event("reaction_added", user, reaction, channel, ts, event_id, retry_num, retry_reason)

    def reaction_removed(
        self,
        user: str,
        reaction: str,
        channel: str,
        ts: str,
        event_id: str | None = None,
        *,
        retry_num: int | None = None,
        retry_reason: str | None = None,
    ) -> Ack:
        return self._reaction_event("reaction_removed", user, reaction, channel, ts, event_id, retry_num, retry_reason)

    def reaction_event(self, kind: str, user: str, reaction: str, channel: str, ts: str) -> dict[str, Any]:
        """The inner ``reaction_added``/``reaction_removed`` event (no state change, nothing sent)."""
        inner: dict[str, Any] = {
            "type": kind,
            "user": user,
            "reaction": reaction,
            "item": {"type": "message", "channel": channel, "ts": ts},
            "event_ts": self._event_ts(),
        }
        author = self._message_author(channel, ts)
        if author is not None:  # Slack omits item_user for messages not authored by a user
            inner["item_user"] = author
        return inner

    def _reaction_event(
        self,
        kind: str,
        user: str,
        reaction: str,
        channel: str,
        ts: str,
        event_id: str | None,
        retry_num: int | None,
        retry_reason: str | None,
    ) -> Ack:
        # A retry re-delivers an event whose state change already happened.
        if self.fake is not None and retry_num is None:
            self.fake.apply_reaction(channel, ts, reaction, user, added=kind == "reaction_added")
        inner = self.reaction_event(kind, user, reaction, channel, ts)
        return self.event(inner, event_id, retry_num, retry_reason)

    def message(self, user: str, channel: str, text: str, *, thread_ts: str | None = None) -> Ack:
        """A person writes ``text`` (top level or into a thread): stored in the fake, then a ``message`` event."""
        ts = self.fake.post_as_user(channel, user, text, thread_ts=thread_ts) if self.fake else self._event_ts()
        inner: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "channel_type": self._channel_type(channel),
        }
        if thread_ts is not None:
            inner["thread_ts"] = thread_ts
            parent_author = self._message_author(channel, thread_ts)
            if parent_author is not None:
                inner["parent_user_id"] = parent_author
        return self.event(inner)

    def thread_message(self, user: str, channel: str, thread_ts: str, text: str) -> Ack:
        return self.message(user, channel, text, thread_ts=thread_ts)

    def deliver_with_retries(
        self,
        inner: Mapping[str, Any],
        *,
        event_id: str | None = None,
        deadline: float = ACK_DEADLINE_SECONDS,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    ) -> Delivery:
        """Deliver an event with Slack's retry policy (slack.md §3.4).

        A non-2xx answer (reason ``http_error``), no answer within ``deadline`` (``http_timeout``; the late request
        keeps running, as on Slack) or a connection failure (``connection_failed``) triggers up to
        ``len(retry_delays)`` retries carrying ``X-Slack-Retry-Num``/``X-Slack-Retry-Reason``, unless the bot
        answered with ``X-Slack-No-Retry: 1``.
        """
        event_id = event_id or self.new_event_id()
        delivery = Delivery(event_id)
        retry_num: int | None = None
        reason: str | None = None
        for attempt in range(len(retry_delays) + 1):
            if attempt:
                time.sleep(retry_delays[attempt - 1])  # Slack's back-off, compressed
                retry_num = attempt
            ack = self._event_with_deadline(inner, event_id, retry_num, reason, deadline)
            delivery.attempts.append(ack)
            if ack.ok and ack.transport_error is None:
                break
            if ack.headers.get("x-slack-no-retry") == "1":
                break
            reason = _retry_reason(ack)
        return delivery

    def _event_with_deadline(
        self, inner: Mapping[str, Any], event_id: str, retry_num: int | None, reason: str | None, deadline: float
    ) -> Ack:
        started = time.perf_counter()
        future = self._background.submit(self.event, inner, event_id, retry_num, reason)
        try:
            return future.result(timeout=deadline)
        except FutureTimeout:
            return Ack(
                status=0,
                headers={},
                body=b"",
                latency=time.perf_counter() - started,
                kind="event",
                event_id=event_id,
                retry_num=retry_num,
                transport_error="timeout",
            )

    def forward_bot_activity(self, *, messages: bool = True, reactions: bool = True) -> Callable[[], None]:
        """Echo the bot's own messages and reactions back to it as events, as Slack does.

        A correct bot drops them (Bolt's IgnoringSelfEvents); this lets a test prove it. Deliveries run on a
        background pool (never inside the fake's lock, where a bot calling back into the fake would deadlock);
        their acks collect in ``self.forwarded``. Returns a function that stops forwarding.
        """
        if self.fake is None:
            raise ValueError("forwarding needs the fake")
        fake = self.fake
        bot_user = fake.workspace.bot_user_id

        def on_change(change: Change) -> None:
            if change.user != bot_user or change.channel is None or change.ts is None:
                return
            inner: dict[str, Any] | None = None
            if reactions and change.kind in ("reaction_added", "reaction_removed") and change.reaction:
                inner = self.reaction_event(change.kind, bot_user, change.reaction, change.channel, change.ts)
            elif messages and change.kind == "message_posted" and change.message is not None:
                inner = {
                    "type": "message",
                    "channel": change.channel,
                    "user": bot_user,
                    "bot_id": change.message.bot_id,
                    "text": change.message.text,
                    "ts": change.ts,
                    "event_ts": change.ts,
                    "channel_type": self._channel_type(change.channel),
                }
                if change.message.is_reply:
                    inner["thread_ts"] = change.message.thread_ts
            if inner is not None:
                self.forwarded.append(self._background.submit(self.event, inner))

        return fake.subscribe(on_change)

    # ------------------------------------------------------------------ interactivity

    def block_action(
        self,
        user: str,
        channel: str,
        message_ts: str,
        action_id: str,
        value: str | None = None,
        block_id: str | None = None,
        *,
        is_ephemeral: bool = False,
    ) -> Ack:
        """``user`` clicks the element ``action_id`` on message ``message_ts`` (form ``payload=<json>``)."""
        message, element, found_block_id = self._find_element(channel, message_ts, action_id)
        action: dict[str, Any] = {
            "action_id": action_id,
            "block_id": block_id or found_block_id or "block",
            "type": (element or {}).get("type", "button"),
            "action_ts": self._event_ts(),
        }
        chosen_value = value if value is not None else (element or {}).get("value")
        if chosen_value is not None:
            action["value"] = chosen_value
        for key in ("text", "style"):
            if element and key in element:
                action[key] = element[key]
        response_url = (
            self.fake.issue_response_url(
                "actions", channel, user, original_ts=message_ts, is_ephemeral_original=is_ephemeral
            )
            if self.fake is not None
            else f"https://hooks.slack.com/actions/{self.team_id}/{self._next_number()}/{uuid.uuid4().hex}"
        )
        trigger_id = self.fake.issue_trigger_id(user) if self.fake is not None else f"{self._next_number()}.1.x"
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {
                "id": user,
                "username": self._user_name(user),
                "name": self._user_name(user),
                "team_id": self.team_id,
            },
            "api_app_id": self.api_app_id,
            "token": LEGACY_TOKEN,
            "trigger_id": trigger_id,
            "team": {"id": self.team_id, "domain": self.team_domain},
            "enterprise": None,
            "is_enterprise_install": False,
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": is_ephemeral,
            },
            "channel": {"id": channel, "name": self._channel_name(channel)},
            "message": message,
            "state": {"values": {}},
            "response_url": response_url,
            "actions": [action],
        }
        ack = self.send(urlencode({"payload": json.dumps(payload)}).encode(), FORM, kind="block_actions")
        ack.response_url, ack.trigger_id = response_url, trigger_id
        return ack

    def _find_element(
        self, channel: str, message_ts: str, action_id: str
    ) -> tuple[dict[str, Any], dict[str, Any] | None, str | None]:
        if self.fake is None:
            return {"type": "message", "ts": message_ts, "text": ""}, None, None
        stored = self.fake.message_or_none(channel, message_ts)
        if stored is None:
            return {"type": "message", "ts": message_ts, "text": ""}, None, None
        message = stored.to_api(self.team_id)
        for block in stored.blocks or []:
            elements = list(block.get("elements") or [])
            if "accessory" in block:
                elements.append(block["accessory"])
            for element in elements:
                if isinstance(element, dict) and element.get("action_id") == action_id:
                    return message, element, block.get("block_id")
        return message, None, None

    # ------------------------------------------------------------------ handshakes

    def url_verification(self, challenge: str) -> Ack:
        body = json.dumps({"token": LEGACY_TOKEN, "challenge": challenge, "type": "url_verification"}).encode()
        return self.send(body, JSON, kind="url_verification")

    def app_rate_limited(self, minute_rate_limited: int | None = None) -> Ack:
        """Slack's notice that it dropped events for exceeding 30,000 per hour (slack.md §3.1)."""
        minute = int(self.clock.now()) // 60 * 60 if minute_rate_limited is None else minute_rate_limited
        body = {
            "token": LEGACY_TOKEN,
            "type": "app_rate_limited",
            "team_id": self.team_id,
            "minute_rate_limited": minute,
            "api_app_id": self.api_app_id,
        }
        return self.send(json.dumps(body).encode(), JSON, kind="event")

    def ssl_check(self) -> Ack:
        return self.send(urlencode({"ssl_check": "1", "token": LEGACY_TOKEN}).encode(), FORM, kind="ssl_check")

    # ------------------------------------------------------------------ negative cases (all send a slash command)

    def bad_signature(self, text: str = "help", user: str = EVE, channel: str = OPS) -> Ack:
        """Signed with the wrong secret."""
        _, _, body = self._slash_body(text, user, channel, "/rollback", None, None)
        timestamp = int(self.clock.now())
        headers = signed_headers("not-the-" + self.signing_secret, timestamp, body, FORM)
        return self._post(body, headers, kind="slash_command")

    def stale(self, seconds: int = 301, text: str = "help", user: str = ALICE, channel: str = OPS) -> Ack:
        """Correctly signed, but with a timestamp ``seconds`` in the past (replay window is 300 s)."""
        return self._with_timestamp(int(self.clock.now()) - seconds, text, user, channel)

    def future(self, seconds: int = 301, text: str = "help", user: str = ALICE, channel: str = OPS) -> Ack:
        """Correctly signed, but with a timestamp ``seconds`` in the future."""
        return self._with_timestamp(int(self.clock.now()) + seconds, text, user, channel)

    def missing_headers(self, text: str = "help", user: str = ALICE, channel: str = OPS) -> Ack:
        """No timestamp and no signature headers at all."""
        _, _, body = self._slash_body(text, user, channel, "/rollback", None, None)
        return self._post(body, {"Content-Type": FORM, "User-Agent": SLACK_USER_AGENT}, kind="slash_command")

    def non_integer_timestamp(self, text: str = "help", user: str = ALICE, channel: str = OPS) -> Ack:
        """Timestamp ``abc`` (signed over it): Bolt answers 500 here, so tests should assert only 'not 2xx'."""
        _, _, body = self._slash_body(text, user, channel, "/rollback", None, None)
        return self._post(body, signed_headers(self.signing_secret, "abc", body, FORM), kind="slash_command")

    def _with_timestamp(self, timestamp: int, text: str, user: str, channel: str) -> Ack:
        _, _, body = self._slash_body(text, user, channel, "/rollback", None, None)
        return self._post(body, signed_headers(self.signing_secret, timestamp, body, FORM), kind="slash_command")

    # ------------------------------------------------------------------ transport

    def send(
        self,
        body: bytes,
        content_type: str,
        *,
        kind: RequestKind = "raw",
        extra_headers: Mapping[str, str] | None = None,
        timestamp: int | None = None,
    ) -> Ack:
        """Sign ``body`` exactly as it will be sent and POST it to the bot."""
        timestamp = int(self.clock.now()) if timestamp is None else timestamp
        headers = signed_headers(self.signing_secret, timestamp, body, content_type)
        headers.update(extra_headers or {})
        return self._post(body, headers, kind=kind)

    def signature(self, timestamp: int | str, body: bytes) -> str:
        return compute_signature(self.signing_secret, timestamp, body)

    def _post(self, body: bytes, headers: Mapping[str, str], *, kind: RequestKind) -> Ack:
        if self.transport == "socket":
            return self._push(body, headers, kind=kind)
        started = time.perf_counter()
        last_error: Exception | None = None
        # One retry only for a pooled connection the server closed while idle; a fresh one failing is real.
        for attempt in range(2):
            connection, reused = self._connection()
            try:
                connection.request("POST", self._path, body=body, headers=dict(headers))
                response = connection.getresponse()
                payload = response.read()
            except TimeoutError:
                self._drop_connection()
                return Ack(0, {}, b"", time.perf_counter() - started, kind, body, transport_error="timeout")
            except (HTTPException, OSError) as error:
                self._drop_connection()
                last_error = error
                if reused and attempt == 0:
                    continue
                break
            if response.will_close:
                self._drop_connection()
            response_headers = {name.lower(): value for name, value in response.getheaders()}
            return Ack(response.status, response_headers, payload, time.perf_counter() - started, kind, body)
        return Ack(
            0,
            {},
            b"",
            time.perf_counter() - started,
            kind,
            body,
            transport_error=f"{type(last_error).__name__}: {last_error}",
        )

    def _push(self, body: bytes, headers: Mapping[str, str], *, kind: RequestKind) -> Ack:
        """Socket Mode: the same payload as an envelope; the ack's ``payload`` becomes the Ack body."""
        assert self.fake is not None
        envelope_type: EnvelopeType
        if headers.get("Content-Type", "").startswith(JSON):
            envelope_type, payload = "events_api", json.loads(body)
        else:
            fields = dict(parse_qsl(body.decode(), keep_blank_values=True))
            if "payload" in fields:
                envelope_type, payload = "interactive", json.loads(fields["payload"])
            else:
                envelope_type, payload = "slash_commands", fields
        result = self.fake.push_envelope(
            envelope_type,
            payload,
            retry_attempt=int(headers.get("X-Slack-Retry-Num", "0")),
            retry_reason=headers.get("X-Slack-Retry-Reason", ""),
            timeout=self.timeout,
        )
        if not result.acked:
            return Ack(0, {}, b"", result.latency, kind, body, transport_error="timeout")
        if result.payload:
            encoded = json.dumps(result.payload).encode()
            return Ack(200, {"content-type": JSON}, encoded, result.latency, kind, body)
        return Ack(200, {}, b"", result.latency, kind, body)

    def _connection(self) -> tuple[HTTPConnection, bool]:
        connection: HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection, True
        connection = HTTPConnection(self._host, self._port, timeout=self.timeout)
        self._local.connection = connection
        with self._lock:
            self._connections.append(connection)
        return connection, False

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            with self._lock:
                if connection in self._connections:
                    self._connections.remove(connection)
        self._local.connection = None

    # ------------------------------------------------------------------ lookups

    def _next_number(self) -> int:
        with self._lock:
            self._event_counter += 1
            return self._event_counter

    def _event_ts(self) -> str:
        if self.fake is not None:
            return self.fake.next_ts()
        now = self.clock.now()
        return f"{int(now):010d}.{int(now * 1_000_000) % 1_000_000:06d}"

    def _bot_user_id(self) -> str:
        return self.fake.workspace.bot_user_id if self.fake is not None else "UBOT"

    def _user_name(self, user: str) -> str:
        return self.fake.user_name(user) if self.fake is not None else user.lower()

    def _channel_name(self, channel: str) -> str:
        if self.fake is None:
            return channel.lower()
        known = self.fake.channel(channel)
        if known is None:
            return channel.lower()
        return "directmessage" if known.is_im else known.name

    def _channel_type(self, channel: str) -> str:
        known = self.fake.channel(channel) if self.fake is not None else None
        if known is None:
            return "channel"
        if known.is_im:
            return "im"
        return "group" if known.is_private else "channel"

    def _message_author(self, channel: str, ts: str) -> str | None:
        if self.fake is None:
            return None
        message = self.fake.message_or_none(channel, ts)
        return message.user if message is not None else None


def _retry_headers(retry_num: int | None, retry_reason: str | None) -> dict[str, str]:
    if retry_num is None:
        return {}
    return {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": retry_reason or "http_error"}


def _retry_reason(ack: Ack) -> RetryReason:
    if ack.transport_error == "timeout":
        return "http_timeout"
    if ack.transport_error is not None:
        return "connection_failed"
    return "http_error"


def _base36(number: int) -> str:
    digits = string.digits + string.ascii_uppercase
    encoded = ""
    while True:
        number, remainder = divmod(number, 36)
        encoded = digits[remainder] + encoded
        if number == 0:
            return encoded
