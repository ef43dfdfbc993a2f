"""SlackChat against the fake Slack Web API over real HTTP: what reaches Slack, and what Slack's errors become."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from slack_sdk import WebClient

from bot.adapters.prometheus_metrics import PrometheusMetrics
from bot.adapters.slack_chat import SlackChat, build_web_client
from bot.adapters.slack_errors import ChatRejected, NotInChannel
from bot.adapters.slack_shrink import MAX_TEXT_CHARS, TRUNCATED_BLOCKS_NOTE, TRUNCATION_MARK
from bot.core.catalog import ChannelId, SlackGroupId, SlackUserId
from bot.core.errors import ChatUnavailable, FencedOut, PermanentError, UserError
from bot.core.messages import ChatMessage
from bot.core.operations import METADATA_EVENT_TYPE, MessageRef
from bot.core.outbound import Priority
from sandbox.slack import ApiOptions, FakeSlack, seed
from tests.fakes.clock import ManualClock

OPS = ChannelId(seed.OPS)
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSlack]:
    with FakeSlack(options=ApiOptions()) as server:
        yield server


@pytest.fixture(autouse=True)
def clean_world(fake: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # slack_sdk honours proxy variables without NO_PROXY (slack.md §7.1): loopback must not go through one.
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    fake.reset()
    fake.options = ApiOptions()
    yield
    fake.reset()


@pytest.fixture
def metrics() -> PrometheusMetrics:
    return PrometheusMetrics(CollectorRegistry())


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def chat(fake: FakeSlack, metrics: PrometheusMetrics, clock: ManualClock) -> SlackChat:
    client = build_web_client(seed.BOT_TOKEN, base_url=fake.api_url, observer=metrics)
    return SlackChat(client, clock=clock, observer=metrics)


def operation_message(
    text: str = "Rollback of workshop to revision 1", phase: str = "awaiting_approval"
) -> ChatMessage:
    return ChatMessage(
        text=text,
        blocks=(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}},
            {
                "type": "actions",
                "block_id": "decision",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "rollback_approve",
                        "text": {"type": "plain_text", "text": "Approve"},
                        "value": "op-1",
                    }
                ],
            },
        ),
        metadata={
            "event_type": METADATA_EVENT_TYPE,
            "event_payload": {
                "operation_id": "op-1",
                "phase": phase,
                "target": "workshop",
                "backend": "helm",
                "from_revision": 3,
                "to_revision": 1,
            },
        },
    )


def delete(fake: FakeSlack, ref: MessageRef) -> None:
    """Someone deletes the bot's message (through Slack, as a workspace admin would)."""
    WebClient(token=seed.BOT_TOKEN, base_url=fake.api_url).chat_delete(channel=ref.channel, ts=ref.ts)


def sample(metrics: PrometheusMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


# ------------------------------------------------------------------ the happy paths


def test_post_sends_text_blocks_and_metadata_and_returns_the_message_ref(chat: SlackChat, fake: FakeSlack) -> None:
    message = operation_message()

    ref = chat.post(OPS, message)

    stored = fake.message(seed.OPS, ref.ts)
    assert ref == MessageRef(channel=OPS, ts=stored.ts)
    assert stored.text == message.text
    assert stored.blocks == [dict(b) for b in message.blocks]
    assert stored.metadata == message.metadata
    assert stored.bot_id == seed.BOT_ID


def test_post_into_a_thread_replies_to_the_parent(chat: SlackChat, fake: FakeSlack) -> None:
    parent = chat.post(OPS, operation_message())

    reply = chat.post(OPS, ChatMessage(text="helm rollback workshop 1: started"), thread=parent)

    assert [m.ts for m in fake.thread(seed.OPS, parent.ts) if m.is_reply] == [reply.ts]
    assert fake.message(seed.OPS, parent.ts).reply_count == 1


def test_update_edits_in_place_and_replaces_blocks_and_metadata(chat: SlackChat, fake: FakeSlack) -> None:
    ref = chat.post(OPS, operation_message())
    finished = ChatMessage(
        text="Rolled back workshop to revision 1",
        metadata=operation_message(phase="succeeded").metadata,
    )

    returned = chat.update(ref, finished)

    stored = fake.message(seed.OPS, ref.ts)
    assert returned == ref
    assert stored.text == finished.text
    assert not stored.blocks  # the Approve button is gone, not kept from the previous version
    assert stored.metadata is not None
    assert stored.metadata["event_payload"]["phase"] == "succeeded"
    assert stored.edit_count == 1


def test_post_ephemeral_reaches_only_that_user(chat: SlackChat, fake: FakeSlack) -> None:
    chat.post_ephemeral(OPS, SlackUserId(seed.BOB), ChatMessage(text="You can't approve your own rollback."))

    [ephemeral] = fake.ephemerals(seed.OPS, user=seed.BOB)
    assert ephemeral.text == "You can't approve your own rollback."
    assert fake.messages(seed.OPS) == []


def test_add_reaction_twice_is_not_an_error(chat: SlackChat, fake: FakeSlack) -> None:
    ref = chat.post(OPS, operation_message())

    chat.add_reaction(ref, "eyes")
    chat.add_reaction(ref, ":eyes:")

    assert fake.message(seed.OPS, ref.ts).reaction_users("eyes") == [seed.BOT_USER_ID]
    assert [c.response.get("error") for c in fake.calls("reactions.add")] == [None, "already_reacted"]


def test_reactions_reads_every_user_of_every_reaction(chat: SlackChat, fake: FakeSlack) -> None:
    ref = chat.post(OPS, operation_message())
    fake.options.reaction_users_limit = 1  # Slack truncates users unless asked for the full list
    fake.apply_reaction(seed.OPS, ref.ts, "white_check_mark", seed.ALICE)
    fake.apply_reaction(seed.OPS, ref.ts, "white_check_mark", seed.BOB)
    fake.apply_reaction(seed.OPS, ref.ts, "x", seed.CAROL)

    assert chat.reactions(ref) == {"white_check_mark": (seed.ALICE, seed.BOB), "x": (seed.CAROL,)}


def test_group_members_are_cached_for_five_minutes(chat: SlackChat, fake: FakeSlack, clock: ManualClock) -> None:
    first = chat.group_members(SlackGroupId(seed.SRE_GROUP))
    clock.advance(timedelta(minutes=4, seconds=59))
    second = chat.group_members(SlackGroupId(seed.SRE_GROUP))
    calls_while_fresh = len(fake.calls("usergroups.users.list"))
    clock.advance(timedelta(seconds=2))
    chat.group_members(SlackGroupId(seed.SRE_GROUP))

    assert first == second == frozenset({seed.ALICE, seed.BOB, seed.CAROL})
    assert calls_while_fresh == 1
    assert len(fake.calls("usergroups.users.list")) == 2


def test_an_unknown_group_has_no_members(chat: SlackChat) -> None:
    assert chat.group_members(SlackGroupId("S0NOSUCH")) == frozenset()


def test_stale_group_members_are_used_while_slack_rate_limits(
    fake: FakeSlack, clock: ManualClock, metrics: PrometheusMetrics
) -> None:
    client = build_web_client(seed.BOT_TOKEN, base_url=fake.api_url, max_rate_limit_retries=0)
    chat = SlackChat(client, clock=clock, observer=metrics)
    known = chat.group_members(SlackGroupId(seed.SRE_GROUP))
    clock.advance(timedelta(minutes=6))
    fake.fail_next("usergroups.users.list", status=429, retry_after=20)

    assert chat.group_members(SlackGroupId(seed.SRE_GROUP)) == known


@pytest.mark.parametrize(
    ("user", "expected"),
    [(seed.BOT_USER_ID, True), (seed.ALICE, False), ("USLACKBOT", True), ("U0NOBODY", True)],
    ids=["the bot", "a person", "slackbot", "an unknown user"],
)
def test_is_bot(chat: SlackChat, user: str, expected: bool) -> None:
    assert chat.is_bot(SlackUserId(user)) is expected


def test_is_bot_asks_slack_once_per_user(chat: SlackChat, fake: FakeSlack) -> None:
    chat.is_bot(SlackUserId(seed.ALICE))
    chat.is_bot(SlackUserId(seed.ALICE))

    assert len(fake.calls("users.info")) == 1


# ------------------------------------------------------------------ rate limits


def test_a_429_is_retried_after_retry_after(chat: SlackChat, fake: FakeSlack, metrics: PrometheusMetrics) -> None:
    fake.fail_next("chat.postMessage", status=429, retry_after=1)
    started = time.monotonic()

    ref = chat.post(OPS, operation_message())

    elapsed = time.monotonic() - started
    calls = fake.calls("chat.postMessage")
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].monotonic - calls[0].monotonic >= 1.0
    assert elapsed >= 1.0
    assert fake.message(seed.OPS, ref.ts).text == operation_message().text
    assert sample(metrics, "rollbot_slack_ratelimited_total") == 1


def test_a_rate_limited_write_waits_retry_after_and_is_sent_never_failed(
    chat: SlackChat, fake: FakeSlack, metrics: PrometheusMetrics
) -> None:
    ref = chat.post(OPS, operation_message())
    fake.fail_next("chat.update", status=429, retry_after=2)

    shown = chat.update(ref, operation_message("Rolling back…", phase="rolling_back"), priority=Priority.URGENT)

    calls = fake.calls("chat.update")
    assert [c.status for c in calls] == [429, 200]
    assert calls[1].monotonic - calls[0].monotonic >= 2.0
    assert shown == ref
    assert fake.message(seed.OPS, ref.ts).text == "Rolling back…"
    assert sample(metrics, "rollbot_slack_ratelimited_calls_total", method="chat.update") == 1


def test_a_rate_limited_read_is_handed_back_with_the_delay(chat: SlackChat, fake: FakeSlack) -> None:
    ref = chat.post(OPS, operation_message())
    fake.fail_next("reactions.get", status=429, retry_after=2)

    with pytest.raises(ChatUnavailable) as raised:
        chat.reactions(ref)

    assert raised.value.delay == timedelta(seconds=2)
    assert len(fake.calls("reactions.get")) == 1


def test_strict_rate_limits_are_absorbed_by_retries(fake: FakeSlack, metrics: PrometheusMetrics) -> None:
    # Tier 2 (usergroups.users.list) is 20/min; at scale 60 that is one call every 50 ms with a burst of 20.
    fake.set_rate_limits("strict", scale=60.0)
    client = build_web_client(seed.BOT_TOKEN, base_url=fake.api_url, observer=metrics, max_rate_limit_retries=5)
    chat = SlackChat(client, observer=metrics, cache_ttl=timedelta(0))

    answers = {chat.group_members(SlackGroupId(seed.SRE_GROUP)) for _ in range(25)}

    assert answers == {frozenset({seed.ALICE, seed.BOB, seed.CAROL})}
    statuses = [c.status for c in fake.calls("usergroups.users.list")]
    assert statuses.count(200) == 25
    assert sample(metrics, "rollbot_slack_ratelimited_total") == statuses.count(429)


# ------------------------------------------------------------------ Slack's errors at the seam


def test_update_of_a_deleted_message_posts_a_new_one_and_follows_it(chat: SlackChat, fake: FakeSlack) -> None:
    ref = chat.post(OPS, operation_message())
    delete(fake, ref)

    replacement = chat.update(ref, operation_message("Approved by Bob", phase="approved"))
    chat.update(ref, operation_message("Rolling back…", phase="rolling_back"))

    assert replacement.channel == OPS
    assert replacement.ts != ref.ts
    current = fake.message(seed.OPS, replacement.ts)
    assert current.text == "Rolling back…"
    assert current.metadata is not None
    assert current.metadata["event_payload"]["phase"] == "rolling_back"
    assert chat.current(ref) == replacement


def test_a_deleted_thread_reply_is_replaced_in_the_same_thread(chat: SlackChat, fake: FakeSlack) -> None:
    parent = chat.post(OPS, operation_message())
    progress = chat.post(OPS, ChatMessage(text="1/3 pods updated"), thread=parent)
    delete(fake, progress)

    replacement = chat.update(progress, ChatMessage(text="2/3 pods updated"))

    assert fake.message(seed.OPS, replacement.ts).thread_ts == parent.ts


def test_a_reply_to_a_deleted_parent_goes_to_the_channel(chat: SlackChat, fake: FakeSlack) -> None:
    parent = chat.post(OPS, operation_message())
    delete(fake, parent)

    reply = chat.post(OPS, ChatMessage(text="Rolled back workshop to revision 1"), thread=parent)

    stored = fake.message(seed.OPS, reply.ts)
    assert stored.text == "Rolled back workshop to revision 1"
    assert stored.thread_ts is None


def test_update_after_the_edit_window_posts_a_new_message(chat: SlackChat, fake: FakeSlack) -> None:
    ref = chat.post(OPS, operation_message())
    fake.options.edit_window_seconds = -1.0  # every message is past its edit window

    replacement = chat.update(ref, operation_message("Expired", phase="expired"))

    assert replacement != ref
    assert fake.last("chat.update").response["error"] == "edit_window_closed"
    assert fake.message(seed.OPS, replacement.ts).text == "Expired"


def test_not_in_channel_tells_how_to_invite_the_bot(fake: FakeSlack) -> None:
    without_public_posting = tuple(s for s in seed.BOT_SCOPES if s != "chat:write.public")
    fake.set_scopes(seed.BOT_TOKEN, without_public_posting)
    chat = SlackChat(build_web_client(seed.BOT_TOKEN, base_url=fake.api_url))

    with pytest.raises(NotInChannel) as raised:
        chat.post(ChannelId(seed.RANDOM), operation_message())

    assert isinstance(raised.value, UserError)
    assert "/invite @rollbot" in str(raised.value)
    assert seed.RANDOM in str(raised.value)


def test_a_private_channel_the_bot_cannot_see_is_also_an_invite_problem(chat: SlackChat) -> None:
    with pytest.raises(NotInChannel):
        chat.post(ChannelId(seed.NOBOT_PRIVATE), operation_message())


def test_too_long_text_is_truncated_and_sent_once_more(chat: SlackChat, fake: FakeSlack) -> None:
    ref = chat.post(OPS, operation_message())
    long_text = "pod workshop-7d9f status: CrashLoopBackOff\n" * 200  # ~8,600 characters

    chat.update(ref, ChatMessage(text=long_text))

    assert [c.response.get("error") for c in fake.calls("chat.update")] == ["msg_too_long", None]
    stored = fake.message(seed.OPS, ref.ts).text
    assert len(stored) == MAX_TEXT_CHARS
    assert stored.endswith(TRUNCATION_MARK)


def test_too_many_block_characters_drop_detail_blocks_but_keep_the_buttons(chat: SlackChat, fake: FakeSlack) -> None:
    details = tuple(
        {"type": "section", "text": {"type": "mrkdwn", "text": f"`image-{i}`: " + "x" * 2_500}} for i in range(8)
    )
    message = operation_message()
    too_long = message.model_copy(update={"blocks": (message.blocks[0], *details, message.blocks[1])})

    ref = chat.post(OPS, too_long)

    assert [c.response.get("error") for c in fake.calls("chat.postMessage")] == ["msg_blocks_too_long", None]
    blocks: list[dict[str, Any]] = fake.message(seed.OPS, ref.ts).blocks or []
    assert blocks[0] == message.blocks[0]
    assert any(b["type"] == "actions" for b in blocks)
    assert TRUNCATED_BLOCKS_NOTE in str(blocks[-1])
    assert len(blocks) < len(too_long.blocks)
    assert fake.message(seed.OPS, ref.ts).metadata == message.metadata


@pytest.mark.parametrize(
    ("status", "error"),
    [(200, "internal_error"), (500, "internal_error"), (503, "service_unavailable")],
    ids=["ok-false internal_error", "HTTP 500", "HTTP 503"],
)
def test_slack_failures_are_retryable(chat: SlackChat, fake: FakeSlack, status: int, error: str) -> None:
    fake.fail_next("chat.postMessage", error=error, status=status)

    with pytest.raises(ChatUnavailable):
        chat.post(OPS, operation_message())


def test_a_dropped_connection_is_retried_by_the_client(chat: SlackChat, fake: FakeSlack) -> None:
    fake.drop_connection("chat.postMessage")

    ref = chat.post(OPS, operation_message())

    assert fake.message(seed.OPS, ref.ts).text == operation_message().text


def test_slack_unreachable_is_retryable() -> None:
    client = build_web_client(seed.BOT_TOKEN, base_url="http://127.0.0.1:9/api/", max_connection_retries=0)
    chat = SlackChat(client)

    with pytest.raises(ChatUnavailable):
        chat.post(OPS, operation_message())


def test_a_revoked_token_is_a_permanent_error_that_names_the_cause(
    chat: SlackChat, fake: FakeSlack, metrics: PrometheusMetrics
) -> None:
    fake.revoke_token(seed.BOT_TOKEN)

    with pytest.raises(ChatRejected) as raised:
        chat.post(OPS, operation_message())

    assert isinstance(raised.value, PermanentError)
    assert "token_revoked" in str(raised.value)
    assert sample(metrics, "rollbot_slack_api_errors_total", method="chat.postMessage", error="token_revoked") == 1


def test_an_archived_channel_is_explained(chat: SlackChat) -> None:
    with pytest.raises(UserError, match="archived"):
        chat.post(ChannelId(seed.ARCHIVED), operation_message())


def test_check_auth_returns_the_bot_identity(chat: SlackChat) -> None:
    assert chat.check_auth()["user_id"] == seed.BOT_USER_ID


def test_a_write_whose_lease_was_lost_while_it_waited_is_never_sent(chat: SlackChat, fake: FakeSlack) -> None:
    parent = chat.post(OPS, operation_message())
    asked: list[str] = []

    def lost() -> bool:
        asked.append("asked")
        return False

    with pytest.raises(FencedOut):
        chat.post(OPS, ChatMessage(text="⏪ rolling back"), thread=parent, still_current=lost)
    with pytest.raises(FencedOut):
        chat.update(parent, ChatMessage(text="stale"), priority=Priority.URGENT, still_current=lost)

    assert asked == ["asked", "asked"]
    assert [m for m in fake.thread(seed.OPS, parent.ts) if m.is_reply] == []
    assert fake.message(seed.OPS, parent.ts).edit_count == 0
    assert chat.post(OPS, ChatMessage(text="still mine"), thread=parent, still_current=lambda: True) is not None
