"""What the fake Slack stores and reports: messages, recorded calls, ephemerals, response_url posts, changes.

Query methods on :class:`~sandbox.slack.server.FakeSlack` hand out *copies* of these records, so a test can
keep a snapshot while the bot goes on editing the live message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from sandbox.slack.blockkit import blocks_plain_text

MessageSource = Literal["chat.postMessage", "response_url", "slash_ack", "user"]
EphemeralSource = Literal["chat.postEphemeral", "response_url", "slash_ack", "operation_timeout"]
ResponseEffect = Literal["ephemeral", "in_channel", "replace_original", "delete_original", "rejected"]
Encoding = Literal["json", "form", "query", "none"]
ChangeKind = Literal[
    "message_posted",
    "message_edited",
    "message_deleted",
    "reaction_added",
    "reaction_removed",
    "ephemeral",
    "response_url",
    "view_opened",
]


@dataclass
class Edit:
    """One earlier version of a message, kept so tests can assert on the sequence of status updates."""

    text: str
    blocks: list[Any] | None
    replaced_at_ts: str


@dataclass
class Message:
    channel: str
    ts: str
    user: str | None
    text: str
    bot_id: str | None = None
    app_id: str | None = None
    blocks: list[Any] | None = None
    attachments: list[Any] | None = None
    thread_ts: str | None = None
    parent_user_id: str | None = None
    reply_broadcast: bool = False
    metadata: dict[str, Any] | None = None
    # Emoji name → users in the order they reacted (Slack lists them that way).
    reactions: dict[str, list[str]] = field(default_factory=dict)
    reply_count: int = 0
    reply_users: list[str] = field(default_factory=list)
    latest_reply: str | None = None
    edited_ts: str | None = None
    edited_by: str | None = None
    history: list[Edit] = field(default_factory=list)
    deleted: bool = False
    source: MessageSource = "chat.postMessage"

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    @property
    def is_edited(self) -> bool:
        return self.edited_ts is not None

    @property
    def edit_count(self) -> int:
        return len(self.history)

    def all_text(self) -> str:
        """Top-level text plus the visible text of the blocks: what a person would read."""
        rendered = blocks_plain_text(self.blocks)
        return f"{self.text}\n{rendered}" if rendered else self.text

    def display_text(self) -> str:
        """What the channel shows: the blocks when there are any (``text`` is then only the fallback)."""
        return blocks_plain_text(self.blocks) or self.text

    def reaction_users(self, name: str) -> list[str]:
        return list(self.reactions.get(name, []))

    def to_api(self, team_id: str, *, include_metadata: bool = True, users_limit: int | None = None) -> dict[str, Any]:
        """The message object as Web API responses (postMessage, history, reactions.get) carry it."""
        message: dict[str, Any] = {"type": "message", "text": self.text, "ts": self.ts, "team": team_id}
        if self.user is not None:
            message["user"] = self.user
        if self.bot_id is not None:
            message["bot_id"] = self.bot_id
            message["app_id"] = self.app_id
        if self.blocks is not None:
            message["blocks"] = self.blocks
        if self.attachments is not None:
            message["attachments"] = self.attachments
        if self.thread_ts is not None:
            message["thread_ts"] = self.thread_ts
            if self.is_reply:
                message["parent_user_id"] = self.parent_user_id
            if self.reply_broadcast:
                message["subtype"] = "thread_broadcast"
        if self.reply_count:
            message["reply_count"] = self.reply_count
            message["reply_users"] = list(self.reply_users)
            message["reply_users_count"] = len(self.reply_users)
            message["latest_reply"] = self.latest_reply
        if self.edited_ts is not None:
            message["edited"] = {"user": self.edited_by, "ts": self.edited_ts}
        if self.metadata is not None and include_metadata:
            message["metadata"] = self.metadata
        if self.reactions:
            message["reactions"] = [
                {
                    "name": name,
                    "users": users if users_limit is None else users[:users_limit],
                    "count": len(users),
                }
                for name, users in self.reactions.items()
            ]
        return message


@dataclass(frozen=True)
class Call:
    """One HTTP request to ``/api/<method>``, recorded after it was answered."""

    seq: int
    t: float  # fake-clock time the request arrived
    monotonic: float
    http_method: str
    path: str
    method: str
    content_type: str
    encoding: Encoding
    headers: dict[str, str]  # Authorization is redacted to the token prefix
    raw_body: bytes
    args: dict[str, Any]  # query ∪ body, with blocks/metadata/attachments/view JSON-decoded
    token: str | None
    status: int
    response: dict[str, Any]
    response_headers: dict[str, str]
    latency: float
    injected: bool  # answered by fail_next rather than by the simulated Slack

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))

    @property
    def error(self) -> str | None:
        error = self.response.get("error")
        return error if isinstance(error, str) else None

    def describe(self) -> str:
        outcome = "ok" if self.ok else f"{self.status} {self.error}"
        return f"#{self.seq} {self.method} {json.dumps(self.args, default=str)[:200]} → {outcome}"


@dataclass(frozen=True)
class Ephemeral:
    """A message only ``user`` sees; never stored in the channel, never editable by chat.update."""

    channel: str
    user: str
    text: str
    blocks: list[Any] | None
    thread_ts: str | None
    message_ts: str
    t: float
    source: EphemeralSource

    def all_text(self) -> str:
        rendered = blocks_plain_text(self.blocks)
        return f"{self.text}\n{rendered}" if rendered else self.text

    def display_text(self) -> str:
        return blocks_plain_text(self.blocks) or self.text


@dataclass(frozen=True)
class ResponseUrlPost:
    """One POST to a response_url the driver handed out, with what it did to the workspace."""

    url: str
    kind: Literal["commands", "actions"]
    channel: str
    user: str
    use: int  # 1-based count of accepted uses including this one; 0 when rejected
    status: int
    body: dict[str, Any] | None
    raw_body: bytes
    t: float
    effect: ResponseEffect
    reason: str | None = None  # why it was rejected: used_url, expired_url, invalid_payload, no_text…

    @property
    def text(self) -> str:
        if self.body is None:
            return ""
        text = self.body.get("text")
        return text if isinstance(text, str) else ""


@dataclass(frozen=True)
class Change:
    """A state change observers (the demo transcript) are told about."""

    kind: ChangeKind
    t: float
    channel: str | None = None
    user: str | None = None
    ts: str | None = None
    thread_ts: str | None = None
    text: str = ""
    reaction: str | None = None
    message: Message | None = None
    detail: dict[str, Any] = field(default_factory=dict)
