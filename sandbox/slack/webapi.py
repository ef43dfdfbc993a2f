"""Web API method semantics: the method table (scopes, required args, tier) and one handler per method.

Handlers run under the state lock with the generic checks already done (token, scopes, required args, rate
limit; see ``FakeSlack._answer_api``). They return the success body (``ok`` is added by the caller) or raise
:class:`SlackApiError` with the method-specific error code Slack documents (slack.md §5.3).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.slack.blockkit import MAX_VIEW_BLOCKS, validate_blocks
from sandbox.slack.records import Message
from sandbox.slack.seed import Channel, Token
from sandbox.slack.state import TRIGGER_TTL_SECONDS, SlackState

# chat.update and chat.postEphemeral reject text over 4,000 characters (msg_too_long);
# chat.postMessage silently truncates at 40,000 (changelog 2018-04-truncating-really-long-messages).
MAX_UPDATE_TEXT = 4_000
MAX_POST_TEXT = 40_000
# Message metadata event_type must be snake-case-ish (docs.slack.dev metadata: "^[a-z0-9_]+$").
METADATA_EVENT_TYPE = re.compile(r"^[a-z0-9_]+$")
# Reaction names: lowercase short names, optional skin tone; colons around the name are a caller bug.
EMOJI_NAME = re.compile(r"^[a-z0-9_+\-']+(::skin-tone-[2-6])?$")
CONVERSATIONS_MAX_LIMIT = 1000
# Fields that arrive as JSON strings in form bodies and are decoded before validation.
JSON_FIELDS = ("blocks", "attachments", "metadata", "view")


class SlackApiError(Exception):
    """An ``{"ok": false, "error": code, …extra}`` answer; HTTP status stays 200 as on real Slack."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


class Undecodable:
    """Stands in for a JSON-string field that did not parse, so the handler can pick the right error code."""

    def __init__(self, raw: str) -> None:
        self.raw = raw

    def __repr__(self) -> str:
        return f"Undecodable({self.raw[:40]!r})"


@dataclass
class Context:
    """Everything a handler may look at for one request."""

    state: SlackState
    token: Token
    args: dict[str, Any]
    options: ApiOptions

    def flag(self, name: str) -> bool:
        return self.args.get(name) in (True, 1, "1", "true", "True")

    def text_arg(self, name: str) -> str | None:
        value = self.args.get(name)
        return None if value is None else str(value)


@dataclass
class ApiOptions:
    """Behaviour switches the test can flip on ``FakeSlack.options``."""

    # chat.update after this many seconds → edit_window_closed (None = unlimited, Slack's default).
    edit_window_seconds: float | None = None
    # reactions.get without full=true truncates each users list to this many entries.
    reaction_users_limit: int = 50
    # Allowed emoji names for reactions.add (None = any well-formed name).
    emoji: frozenset[str] | None = None
    max_blocks_json_chars: int | None = 13_200


Handler = Callable[[Context], dict[str, Any]]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    handler: Handler
    scopes: tuple[str, ...] = ()  # any one of these suffices; empty = no scope needed
    required: tuple[str, ...] = ()
    tier: str | None = None  # None = "special" (per-channel for postMessage) or unlimited here
    token_kinds: frozenset[str] = field(default_factory=lambda: frozenset({"bot", "user"}))


# ---------------------------------------------------------------------------------------------- helpers


def _visible_channel(ctx: Context, name: str = "channel") -> Channel:
    """Resolve an id, ``#name`` or user id (→ DM); private channels the caller is not in do not exist."""
    ref = ctx.text_arg(name) or ""
    state = ctx.state
    channel = state.channel(ref) or state.channel_by_name(ref)
    if channel is None and ref in state.workspace.users and ref[:1] in ("U", "W"):
        channel = state.dm_channel(ref)
    if channel is None or (channel.is_private and ctx.token.user_id not in channel.members):
        raise SlackApiError("channel_not_found")
    return channel


def _require_post_access(ctx: Context, channel: Channel) -> None:
    if channel.is_archived:
        raise SlackApiError("is_archived")
    is_member = ctx.token.user_id in channel.members
    may_post_public = not channel.is_private and "chat:write.public" in ctx.token.scopes
    if not (is_member or channel.is_im or may_post_public):
        raise SlackApiError("not_in_channel")


def _message(ctx: Context, channel: Channel, ts_arg: str) -> Message:
    ts = ctx.text_arg(ts_arg) or ""
    message = ctx.state.find_message(channel.id, ts)
    if message is None:
        raise SlackApiError("message_not_found")
    return message


def _blocks(
    ctx: Context, *, required_text: bool, max_text: int | None, truncate: bool = False
) -> tuple[str | None, list[Any] | None, list[Any] | None]:
    """Validate text/blocks/attachments the way chat.* does; returns (text, blocks, attachments)."""
    blocks = ctx.args.get("blocks")
    attachments = ctx.args.get("attachments")
    text = ctx.text_arg("text")
    if isinstance(blocks, Undecodable) or (blocks is not None and not isinstance(blocks, list)):
        raise SlackApiError("invalid_blocks_format")
    if isinstance(attachments, Undecodable) or (attachments is not None and not isinstance(attachments, list)):
        raise SlackApiError("invalid_attachments")
    if blocks is not None:
        outcome = validate_blocks(blocks, max_json_chars=ctx.options.max_blocks_json_chars)
        if outcome.errors:
            raise SlackApiError(
                "invalid_blocks",
                errors=outcome.errors,
                response_metadata={"messages": [f"[ERROR] {e}" for e in outcome.errors]},
            )
        if outcome.too_long:
            raise SlackApiError("msg_blocks_too_long")
    if required_text and not text and not blocks and not attachments:
        raise SlackApiError("no_text")
    if text is not None and max_text is not None and len(text) > max_text:
        if not truncate:
            raise SlackApiError("msg_too_long")
        ctx.state.add_lint(f"text of {len(text)} chars truncated to {max_text}")
        text = text[:max_text]
    if blocks and not text:
        ctx.state.add_lint(
            f"{ctx.args.get('channel')}: blocks without top-level text (no notification/screen-reader fallback)"
        )
    return text, blocks, attachments


def _metadata(ctx: Context) -> dict[str, Any] | None:
    metadata = ctx.args.get("metadata")
    if metadata is None:
        return None
    if isinstance(metadata, Undecodable) or not isinstance(metadata, dict):
        raise SlackApiError("invalid_metadata_format")
    event_type = metadata.get("event_type")
    payload = metadata.get("event_payload")
    if not isinstance(event_type, str) or not METADATA_EVENT_TYPE.match(event_type) or not isinstance(payload, dict):
        raise SlackApiError(
            "invalid_metadata_schema",
            response_metadata={
                "messages": ["[ERROR] metadata needs event_type matching ^[a-z0-9_]+$ and an object event_payload"]
            },
        )
    return metadata


def _permalink(ctx: Context, message: Message) -> str:
    base = f"https://{ctx.state.workspace.domain}.slack.com/archives/{message.channel}/p{message.ts.replace('.', '')}"
    if message.is_reply:
        return f"{base}?thread_ts={message.thread_ts}&cid={message.channel}"
    return base


def _api_message(ctx: Context, message: Message, **options: Any) -> dict[str, Any]:
    return message.to_api(ctx.state.workspace.team_id, **options)


def _limit(ctx: Context, default: int) -> int:
    raw = ctx.args.get("limit", default)
    try:
        limit = int(raw)
    except (TypeError, ValueError):
        raise SlackApiError("invalid_limit") from None
    if limit < 1 or limit > CONVERSATIONS_MAX_LIMIT:
        raise SlackApiError("invalid_limit")
    return limit


def _offset_from_cursor(ctx: Context) -> int:
    cursor = ctx.text_arg("cursor") or ""
    if not cursor:
        return 0
    prefix, _, number = cursor.partition(":")
    if prefix != "offset" or not number.isdigit():
        raise SlackApiError("invalid_cursor")
    return int(number)


# ---------------------------------------------------------------------------------------------- handlers


def auth_test(ctx: Context) -> dict[str, Any]:
    workspace = ctx.state.workspace
    body: dict[str, Any] = {
        "url": f"https://{workspace.domain}.slack.com/",
        "team": workspace.name,
        "user": ctx.state.user_name(ctx.token.user_id),
        "team_id": workspace.team_id,
        "user_id": ctx.token.user_id,
        "is_enterprise_install": False,
    }
    if ctx.token.bot_id:
        body["bot_id"] = ctx.token.bot_id
    return body


def chat_post_message(ctx: Context) -> dict[str, Any]:
    channel = _visible_channel(ctx)
    _require_post_access(ctx, channel)
    text, blocks, attachments = _blocks(ctx, required_text=True, max_text=MAX_POST_TEXT, truncate=True)
    metadata = _metadata(ctx)
    thread_ts = ctx.text_arg("thread_ts") or None
    if thread_ts is not None:
        parent = ctx.state.find_message(channel.id, thread_ts)
        if parent is None or parent.is_reply:
            # Replies must name the thread's parent; a reply's ts or an unknown ts is a bot bug.
            what = "is a reply, not a thread parent" if parent else "does not exist"
            raise SlackApiError(
                "cannot_reply_to_message",
                response_metadata={"messages": [f"[ERROR] thread_ts {thread_ts} {what} in {channel.id}"]},
            )
    message = ctx.state.store_message(
        channel.id,
        user=ctx.token.user_id,
        bot_id=ctx.token.bot_id,
        text=text or "",
        blocks=blocks,
        attachments=attachments,
        thread_ts=thread_ts,
        reply_broadcast=ctx.flag("reply_broadcast") and thread_ts is not None,
        metadata=metadata,
    )
    return {"channel": channel.id, "ts": message.ts, "message": _api_message(ctx, message)}


def chat_update(ctx: Context) -> dict[str, Any]:
    channel = _visible_channel(ctx)
    message = _message(ctx, channel, "ts")
    if message.user != ctx.token.user_id:
        raise SlackApiError("cant_update_message")
    window = ctx.options.edit_window_seconds
    if window is not None and ctx.state.clock.now() - float(message.ts) > window:
        raise SlackApiError("edit_window_closed")
    text, blocks, attachments = _blocks(ctx, required_text=False, max_text=MAX_UPDATE_TEXT)
    if text is None and blocks is None and attachments is None:
        raise SlackApiError("no_text")
    metadata = _metadata(ctx)
    ctx.state.edit_message(
        message, editor=ctx.token.user_id, text=text, blocks=blocks, attachments=attachments, metadata=metadata
    )
    return {"channel": channel.id, "ts": message.ts, "text": message.text, "message": _api_message(ctx, message)}


def chat_post_ephemeral(ctx: Context) -> dict[str, Any]:
    channel = _visible_channel(ctx)
    _require_post_access(ctx, channel)
    user = ctx.text_arg("user") or ""
    if user not in ctx.state.workspace.users:
        raise SlackApiError("user_not_found")
    if user not in channel.members:
        raise SlackApiError("user_not_in_channel")
    text, blocks, _ = _blocks(ctx, required_text=True, max_text=MAX_UPDATE_TEXT)
    ephemeral = ctx.state.record_ephemeral(
        channel.id, user, text or "", blocks=blocks, thread_ts=ctx.text_arg("thread_ts") or None
    )
    return {"message_ts": ephemeral.message_ts}


def chat_get_permalink(ctx: Context) -> dict[str, Any]:
    channel = _visible_channel(ctx)
    message = _message(ctx, channel, "message_ts")
    return {"channel": channel.id, "permalink": _permalink(ctx, message)}


def chat_delete(ctx: Context) -> dict[str, Any]:
    channel = _visible_channel(ctx)
    message = _message(ctx, channel, "ts")
    if message.user != ctx.token.user_id:
        raise SlackApiError("cant_delete_message")
    ctx.state.delete_message(message, by=ctx.token.user_id)
    return {"channel": channel.id, "ts": message.ts}


def _reaction_target(ctx: Context) -> tuple[Channel, Message, str]:
    name = ctx.text_arg("name") or ""
    if not EMOJI_NAME.match(name) or (ctx.options.emoji is not None and name not in ctx.options.emoji):
        raise SlackApiError("invalid_name")
    channel = _visible_channel(ctx)
    ts = ctx.text_arg("timestamp") or ""
    if not re.fullmatch(r"\d{10}\.\d{6}", ts):
        raise SlackApiError("bad_timestamp")
    return channel, _message(ctx, channel, "timestamp"), name


def reactions_add(ctx: Context) -> dict[str, Any]:
    channel, message, name = _reaction_target(ctx)
    if channel.is_archived:
        raise SlackApiError("is_archived")
    if not ctx.state.apply_reaction(channel.id, message.ts, name, ctx.token.user_id, added=True):
        raise SlackApiError("already_reacted")
    return {}


def reactions_remove(ctx: Context) -> dict[str, Any]:
    channel, message, name = _reaction_target(ctx)
    if not ctx.state.apply_reaction(channel.id, message.ts, name, ctx.token.user_id, added=False):
        raise SlackApiError("no_reaction")
    return {}


def reactions_get(ctx: Context) -> dict[str, Any]:
    channel = _visible_channel(ctx)
    message = _message(ctx, channel, "timestamp")
    limit = None if ctx.flag("full") else ctx.options.reaction_users_limit
    body = _api_message(ctx, message, users_limit=limit)
    body["permalink"] = _permalink(ctx, message)
    return {"type": "message", "channel": channel.id, "message": body}


def _channel_object(ctx: Context, channel: Channel) -> dict[str, Any]:
    return {
        "id": channel.id,
        "name": channel.name,
        "is_channel": not channel.is_private and not channel.is_im,
        "is_group": channel.is_private and not channel.is_im,
        "is_im": channel.is_im,
        "is_private": channel.is_private,
        "is_archived": channel.is_archived,
        "is_general": False,
        "is_member": ctx.token.user_id in channel.members,
        "created": channel.created,
        "creator": channel.creator,
        "num_members": len(channel.members),
        "topic": {"value": "", "creator": "", "last_set": 0},
        "purpose": {"value": "", "creator": "", "last_set": 0},
    }


def conversations_join(ctx: Context) -> dict[str, Any]:
    channel = _visible_channel(ctx)
    if channel.is_archived:
        raise SlackApiError("is_archived")
    if channel.is_private or channel.is_im:
        raise SlackApiError("method_not_supported_for_channel_type")
    if ctx.token.user_id not in channel.members:
        channel.members.append(ctx.token.user_id)
    return {"channel": _channel_object(ctx, channel)}


def conversations_info(ctx: Context) -> dict[str, Any]:
    return {"channel": _channel_object(ctx, _visible_channel(ctx))}


def conversations_members(ctx: Context) -> dict[str, Any]:
    channel = _visible_channel(ctx)
    limit = _limit(ctx, 100)
    offset = _offset_from_cursor(ctx)
    page = channel.members[offset : offset + limit]
    has_more = offset + limit < len(channel.members)
    return {
        "members": page,
        "response_metadata": {"next_cursor": f"offset:{offset + limit}" if has_more else ""},
    }


def _history_window(ctx: Context, messages: list[Message]) -> list[Message]:
    inclusive = ctx.flag("inclusive")
    oldest = ctx.text_arg("oldest")
    latest = ctx.text_arg("latest")

    def inside(message: Message) -> bool:
        ts = float(message.ts)
        if oldest and (ts < float(oldest) or (ts == float(oldest) and not inclusive)):
            return False
        return not (latest and (ts > float(latest) or (ts == float(latest) and not inclusive)))

    return [m for m in messages if inside(m)]


def conversations_history(ctx: Context) -> dict[str, Any]:
    channel = _visible_channel(ctx)
    limit = _limit(ctx, 100)
    top_level = _history_window(ctx, ctx.state.messages(channel.id))
    newest_first = list(reversed(top_level))
    page = newest_first[:limit]
    include_metadata = ctx.flag("include_all_metadata")
    return {
        "messages": [_api_message(ctx, m, include_metadata=include_metadata) for m in page],
        "has_more": len(newest_first) > limit,
        "response_metadata": {"next_cursor": ""},
    }


def conversations_replies(ctx: Context) -> dict[str, Any]:
    channel = _visible_channel(ctx)
    ts = ctx.text_arg("ts") or ""
    parent = ctx.state.find_message(channel.id, ts)
    if parent is None:
        raise SlackApiError("thread_not_found")
    limit = _limit(ctx, 1000)
    root = ctx.state.find_message(channel.id, parent.thread_ts) if parent.is_reply and parent.thread_ts else parent
    thread = [root or parent, *ctx.state.messages(channel.id, thread_ts=(root or parent).ts)]
    include_metadata = ctx.flag("include_all_metadata")
    return {
        "messages": [_api_message(ctx, m, include_metadata=include_metadata) for m in thread[:limit]],
        "has_more": len(thread) > limit,
        "response_metadata": {"next_cursor": ""},
    }


def users_info(ctx: Context) -> dict[str, Any]:
    user = ctx.state.workspace.users.get(ctx.text_arg("user") or "")
    if user is None:
        raise SlackApiError("user_not_found")
    profile: dict[str, Any] = {"display_name": user.name, "real_name": user.real_name}
    if user.email and "users:read.email" in ctx.token.scopes:
        profile["email"] = user.email
    if user.bot_id:
        profile["bot_id"] = user.bot_id
    return {
        "user": {
            "id": user.id,
            "team_id": ctx.state.workspace.team_id,
            "name": user.name,
            "real_name": user.real_name,
            "deleted": user.deleted,
            "is_bot": user.is_bot,
            "is_app_user": False,
            "tz": user.tz,
            "profile": profile,
        }
    }


def usergroups_users_list(ctx: Context) -> dict[str, Any]:
    group = ctx.state.workspace.usergroups.get(ctx.text_arg("usergroup") or "")
    if group is None:
        raise SlackApiError("no_such_subteam")
    _, members = group
    return {"users": list(members)}


def apps_connections_open(ctx: Context) -> dict[str, Any]:
    ws_base = ctx.state.base_url.replace("http://", "ws://", 1)
    ticket = ctx.state.next_number()
    return {"url": f"{ws_base}/link/?ticket={ticket}&app_id={ctx.state.workspace.api_app_id}"}


def views_open(ctx: Context) -> dict[str, Any]:
    trigger_id = ctx.text_arg("trigger_id") or ""
    trigger = ctx.state.trigger(trigger_id)
    if trigger is None:
        raise SlackApiError("invalid_trigger_id")
    if trigger.used:
        raise SlackApiError("exchanged_trigger_id")
    if ctx.state.clock.now() - trigger.issued_at > TRIGGER_TTL_SECONDS:
        raise SlackApiError("expired_trigger_id")
    view = ctx.args.get("view")
    if isinstance(view, Undecodable) or not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
        raise SlackApiError("invalid_arguments", response_metadata={"messages": ["[ERROR] invalid view"]})
    outcome = validate_blocks(view.get("blocks", []), max_blocks=MAX_VIEW_BLOCKS, max_json_chars=None)
    if outcome.errors:
        raise SlackApiError("invalid_arguments", response_metadata={"messages": outcome.errors})
    trigger.used = True
    number = ctx.state.next_number()
    opened = {
        **view,
        "id": f"V{number:08d}",
        "hash": f"{number}.{trigger_id[-8:]}",
        "team_id": ctx.state.workspace.team_id,
        "app_id": ctx.state.workspace.api_app_id,
        "bot_id": ctx.token.bot_id,
        "state": {"values": {}},
    }
    ctx.state.record_view(opened, trigger.user)
    return {"view": opened}


_CHANNEL_READ = ("channels:read", "groups:read", "im:read", "mpim:read")
_CHANNEL_HISTORY = ("channels:history", "groups:history", "im:history", "mpim:history")

METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("auth.test", auth_test),
        MethodSpec("chat.postMessage", chat_post_message, ("chat:write",), ("channel",), None),
        MethodSpec("chat.update", chat_update, ("chat:write",), ("channel", "ts"), "tier3"),
        MethodSpec("chat.postEphemeral", chat_post_ephemeral, ("chat:write",), ("channel", "user"), "tier4"),
        MethodSpec("chat.getPermalink", chat_get_permalink, (), ("channel", "message_ts"), None),
        MethodSpec("chat.delete", chat_delete, ("chat:write",), ("channel", "ts"), "tier3"),
        MethodSpec("reactions.add", reactions_add, ("reactions:write",), ("channel", "name", "timestamp"), "tier3"),
        MethodSpec(
            "reactions.remove", reactions_remove, ("reactions:write",), ("channel", "name", "timestamp"), "tier2"
        ),
        MethodSpec("reactions.get", reactions_get, ("reactions:read",), ("channel", "timestamp"), "tier3"),
        MethodSpec("conversations.info", conversations_info, _CHANNEL_READ, ("channel",), "tier3"),
        MethodSpec("conversations.members", conversations_members, _CHANNEL_READ, ("channel",), "tier4"),
        MethodSpec("conversations.join", conversations_join, ("channels:join",), ("channel",), "tier3"),
        MethodSpec("conversations.history", conversations_history, _CHANNEL_HISTORY, ("channel",), "tier3"),
        MethodSpec("conversations.replies", conversations_replies, _CHANNEL_HISTORY, ("channel", "ts"), "tier3"),
        MethodSpec("users.info", users_info, ("users:read",), ("user",), "tier4"),
        MethodSpec("usergroups.users.list", usergroups_users_list, ("usergroups:read",), ("usergroup",), "tier2"),
        MethodSpec("views.open", views_open, (), ("trigger_id", "view"), "tier4"),
        MethodSpec(
            "apps.connections.open",
            apps_connections_open,
            ("connections:write",),
            tier="tier1",
            token_kinds=frozenset({"app"}),
        ),
    )
}


def decode_json_fields(args: dict[str, Any]) -> None:
    """Form bodies carry blocks/metadata/… as JSON strings; decode them so both encodings record alike."""
    for name in JSON_FIELDS:
        value = args.get(name)
        if isinstance(value, str):
            try:
                args[name] = json.loads(value)
            except ValueError:
                args[name] = Undecodable(value)
