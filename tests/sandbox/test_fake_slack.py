"""The fake Slack Web API, driven by the real ``slack_sdk.WebClient`` over HTTP."""

from __future__ import annotations

import io
import json
import threading
import urllib.request
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from sandbox.slack import FakeSlack, ManualClock, TranscriptPrinter, render_thread, seed
from sandbox.slack.records import Change

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # slack_sdk honours proxy variables but not NO_PROXY; loopback calls must not leave the machine.
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def fake(clock: ManualClock) -> Iterator[FakeSlack]:
    with FakeSlack(clock=clock) as running:
        yield running


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    return WebClient(token=seed.BOT_TOKEN, base_url=fake.api_url)


def slack_error(call: object) -> SlackApiError:
    """Run a failing WebClient call and return its error (keeps tests one line per expectation)."""
    with pytest.raises(SlackApiError) as caught:
        call()  # type: ignore[operator]
    return caught.value


# ---------------------------------------------------------------------------------------------- basics


def test_server_listens_on_an_os_picked_loopback_port(fake: FakeSlack) -> None:
    assert fake.api_url == f"http://127.0.0.1:{fake.port}/api/"
    assert fake.port > 0


def test_auth_test_returns_the_bot_identity_and_scopes_header(client: WebClient) -> None:
    response = client.auth_test()

    assert response["user_id"] == seed.BOT_USER_ID
    assert response["bot_id"] == seed.BOT_ID
    assert response["team_id"] == seed.TEAM_ID
    assert "chat:write" in response.headers["x-oauth-scopes"].split(",")


def test_post_message_returns_strictly_increasing_ts_and_stores_the_message(client: WebClient, fake: FakeSlack) -> None:
    first = client.chat_postMessage(channel=seed.OPS, text="one")
    second = client.chat_postMessage(channel=seed.OPS, text="two")

    assert first["ts"] < second["ts"]
    assert len(first["ts"]) == len("1700000000.000000")
    assert [m.text for m in fake.messages(seed.OPS)] == ["one", "two"]
    assert first["message"]["bot_id"] == seed.BOT_ID


def test_post_message_accepts_a_channel_name_and_opens_a_dm_for_a_user_id(client: WebClient) -> None:
    by_name = client.chat_postMessage(channel="#incident", text="hello")
    direct = client.chat_postMessage(channel=seed.BOB, text="psst")

    assert by_name["channel"] == seed.INCIDENT
    assert direct["channel"].startswith("D")


def test_thread_reply_counts_on_the_parent_and_thread_lists_parent_first(client: WebClient, fake: FakeSlack) -> None:
    parent = client.chat_postMessage(channel=seed.OPS, text="request")["ts"]
    client.chat_postMessage(channel=seed.OPS, text="step 1", thread_ts=parent)
    client.chat_postMessage(channel=seed.OPS, text="step 2", thread_ts=parent)

    thread = fake.thread(seed.OPS, parent)

    assert [m.text for m in thread] == ["request", "step 1", "step 2"]
    assert thread[0].reply_count == 2
    assert [m.text for m in fake.messages(seed.OPS)] == ["request"]
    assert [m.text for m in fake.messages(seed.OPS, thread_ts=parent)] == ["step 1", "step 2"]


@pytest.mark.parametrize("target", ["reply", "unknown"], ids=["reply-ts", "unknown-ts"])
def test_replying_to_anything_but_a_thread_parent_is_rejected(client: WebClient, target: str) -> None:
    parent = client.chat_postMessage(channel=seed.OPS, text="request")["ts"]
    reply = client.chat_postMessage(channel=seed.OPS, text="step", thread_ts=parent)["ts"]
    thread_ts = reply if target == "reply" else "1111111111.000001"

    error = slack_error(lambda: client.chat_postMessage(channel=seed.OPS, text="x", thread_ts=thread_ts))

    assert error.response["error"] == "cannot_reply_to_message"


def test_update_keeps_the_ts_and_records_the_previous_versions(client: WebClient, fake: FakeSlack) -> None:
    ts = client.chat_postMessage(channel=seed.OPS, text="rolling back 0/3")["ts"]
    client.chat_update(channel=seed.OPS, ts=ts, text="rolling back 2/3")
    response = client.chat_update(channel=seed.OPS, ts=ts, text="done")

    message = fake.message(seed.OPS, ts)
    assert response["ts"] == ts
    assert message.text == "done"
    assert [edit.text for edit in message.history] == ["rolling back 0/3", "rolling back 2/3"]
    assert message.is_edited


def test_update_errors_for_missing_foreign_and_oversized_messages(client: WebClient, fake: FakeSlack) -> None:
    human = fake.post_as_user(seed.OPS, seed.ALICE, "hi bot")
    own = client.chat_postMessage(channel=seed.OPS, text="status")["ts"]

    missing = slack_error(lambda: client.chat_update(channel=seed.OPS, ts="1111111111.000001", text="x"))
    foreign = slack_error(lambda: client.chat_update(channel=seed.OPS, ts=human, text="x"))
    too_long = slack_error(lambda: client.chat_update(channel=seed.OPS, ts=own, text="x" * 4001))

    assert missing.response["error"] == "message_not_found"
    assert foreign.response["error"] == "cant_update_message"
    assert too_long.response["error"] == "msg_too_long"


def test_edit_window_closes_on_the_fake_clock(client: WebClient, fake: FakeSlack, clock: ManualClock) -> None:
    fake.options.edit_window_seconds = 60
    ts = client.chat_postMessage(channel=seed.OPS, text="status")["ts"]
    clock.advance(61)

    error = slack_error(lambda: client.chat_update(channel=seed.OPS, ts=ts, text="late"))

    assert error.response["error"] == "edit_window_closed"


def test_delete_hides_the_message(client: WebClient, fake: FakeSlack) -> None:
    ts = client.chat_postMessage(channel=seed.OPS, text="oops")["ts"]
    client.chat_delete(channel=seed.OPS, ts=ts)

    assert fake.messages(seed.OPS) == []


# ---------------------------------------------------------------------------------------------- reactions


def test_reactions_are_stored_per_message_and_read_back(client: WebClient, fake: FakeSlack) -> None:
    ts = client.chat_postMessage(channel=seed.OPS, text="approve?")["ts"]
    client.reactions_add(channel=seed.OPS, name="eyes", timestamp=ts)
    fake.apply_reaction(seed.OPS, ts, "white_check_mark", seed.BOB)
    fake.apply_reaction(seed.OPS, ts, "white_check_mark", seed.CAROL)

    reactions = client.reactions_get(channel=seed.OPS, timestamp=ts, full=True)["message"]["reactions"]

    assert {r["name"]: r["users"] for r in reactions} == {
        "eyes": [seed.BOT_USER_ID],
        "white_check_mark": [seed.BOB, seed.CAROL],
    }
    assert fake.message(seed.OPS, ts).reaction_users("white_check_mark") == [seed.BOB, seed.CAROL]


def test_reaction_errors(client: WebClient) -> None:
    ts = client.chat_postMessage(channel=seed.OPS, text="approve?")["ts"]
    client.reactions_add(channel=seed.OPS, name="eyes", timestamp=ts)

    twice = slack_error(lambda: client.reactions_add(channel=seed.OPS, name="eyes", timestamp=ts))
    colons = slack_error(lambda: client.reactions_add(channel=seed.OPS, name=":eyes:", timestamp=ts))
    absent = slack_error(lambda: client.reactions_remove(channel=seed.OPS, name="tada", timestamp=ts))
    gone = slack_error(lambda: client.reactions_get(channel=seed.OPS, timestamp="1111111111.000001"))

    assert twice.response["error"] == "already_reacted"
    assert colons.response["error"] == "invalid_name"
    assert absent.response["error"] == "no_reaction"
    assert gone.response["error"] == "message_not_found"


def test_reactions_get_truncates_users_unless_full(client: WebClient, fake: FakeSlack) -> None:
    fake.options.reaction_users_limit = 2
    ts = client.chat_postMessage(channel=seed.OPS, text="approve?")["ts"]
    for user in (seed.ALICE, seed.BOB, seed.CAROL):
        fake.apply_reaction(seed.OPS, ts, "+1", user)

    partial = client.reactions_get(channel=seed.OPS, timestamp=ts)["message"]["reactions"][0]
    full = client.reactions_get(channel=seed.OPS, timestamp=ts, full=True)["message"]["reactions"][0]

    assert (partial["count"], len(partial["users"])) == (3, 2)
    assert len(full["users"]) == 3


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("token", "method", "expected"),
    [
        (None, "auth.test", "not_authed"),
        ("xoxb-unknown", "auth.test", "invalid_auth"),
        (seed.APP_TOKEN, "chat.postMessage", "not_allowed_token_type"),
        (seed.APP_TOKEN, "auth.test", "not_allowed_token_type"),
        (seed.BOT_TOKEN, "apps.connections.open", "not_allowed_token_type"),
        (seed.BOT_TOKEN, "chat.fly", "unknown_method"),
    ],
    ids=["no-token", "unknown-token", "app-token-on-chat", "app-token-on-auth", "bot-token-on-apps", "unknown-method"],
)
def test_token_and_method_errors(fake: FakeSlack, token: str | None, method: str, expected: str) -> None:
    client = WebClient(token=token, base_url=fake.api_url)

    error = slack_error(lambda: client.api_call(method, json={"channel": seed.OPS, "text": "x"}))

    assert error.response["error"] == expected


def test_revoked_token_is_refused(fake: FakeSlack, client: WebClient) -> None:
    fake.revoke_token(seed.BOT_TOKEN)

    assert slack_error(client.auth_test).response["error"] == "token_revoked"


def test_missing_scope_names_needed_and_provided(fake: FakeSlack, client: WebClient) -> None:
    fake.set_scopes(seed.BOT_TOKEN, ("chat:write",))

    error = slack_error(lambda: client.usergroups_users_list(usergroup=seed.SRE_GROUP))

    assert error.response["error"] == "missing_scope"
    assert error.response["needed"] == "usergroups:read"
    assert error.response["provided"] == "chat:write"


def test_missing_required_argument_is_invalid_arguments(client: WebClient) -> None:
    error = slack_error(lambda: client.api_call("chat.update", json={"channel": seed.OPS, "text": "x"}))

    assert error.response["error"] == "invalid_arguments"
    assert error.response["response_metadata"]["messages"] == ["[ERROR] missing required field: ts"]


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("C0NOPE", "channel_not_found"),
        (seed.NOBOT_PRIVATE, "channel_not_found"),
        (seed.ARCHIVED, "is_archived"),
    ],
    ids=["unknown", "private-without-bot", "archived"],
)
def test_post_message_channel_errors(client: WebClient, channel: str, expected: str) -> None:
    assert slack_error(lambda: client.chat_postMessage(channel=channel, text="x")).response["error"] == expected


def test_not_in_channel_without_chat_write_public(fake: FakeSlack, client: WebClient) -> None:
    allowed = client.chat_postMessage(channel=seed.RANDOM, text="chat:write.public lets me in")
    fake.set_scopes(seed.BOT_TOKEN, tuple(s for s in seed.BOT_SCOPES if s != "chat:write.public"))

    error = slack_error(lambda: client.chat_postMessage(channel=seed.RANDOM, text="x"))

    assert allowed["ok"]
    assert error.response["error"] == "not_in_channel"


def test_joining_a_public_channel_makes_posting_possible(fake: FakeSlack, client: WebClient) -> None:
    fake.set_scopes(seed.BOT_TOKEN, ("chat:write", "channels:join"))

    before = slack_error(lambda: client.chat_postMessage(channel=seed.RANDOM, text="x"))
    client.conversations_join(channel=seed.RANDOM)
    private = slack_error(lambda: client.conversations_join(channel=seed.SRE_PRIVATE))

    assert before.response["error"] == "not_in_channel"
    assert client.chat_postMessage(channel=seed.RANDOM, text="hello")["ok"]
    assert private.response["error"] == "method_not_supported_for_channel_type"


def test_post_message_without_text_or_blocks_is_no_text(client: WebClient) -> None:
    # api_call, because chat_postMessage itself warns about the missing text before sending.
    error = slack_error(lambda: client.api_call("chat.postMessage", json={"channel": seed.OPS, "text": ""}))

    assert error.response["error"] == "no_text"


def test_lookup_errors(client: WebClient) -> None:
    assert slack_error(lambda: client.users_info(user="U0NOBODY")).response["error"] == "user_not_found"
    assert slack_error(lambda: client.usergroups_users_list(usergroup="S0NOPE")).response["error"] == (
        "no_such_subteam"
    )


def test_ephemeral_is_logged_for_the_user_but_never_stored_in_the_channel(client: WebClient, fake: FakeSlack) -> None:
    response = client.chat_postEphemeral(channel=seed.OPS, user=seed.DAVE, text="you may not approve")
    outsider = slack_error(lambda: client.chat_postEphemeral(channel=seed.OPS, user=seed.EVE, text="x"))

    assert response["message_ts"]
    assert [e.text for e in fake.ephemerals(seed.OPS, user=seed.DAVE)] == ["you may not approve"]
    assert fake.messages(seed.OPS) == []
    assert outsider.response["error"] == "user_not_in_channel"


# ---------------------------------------------------------------------------------------------- reads


def test_lookups_return_seeded_workspace_data(client: WebClient) -> None:
    info = client.conversations_info(channel=seed.SRE_PRIVATE)["channel"]
    user = client.users_info(user=seed.BOB)["user"]
    group = client.usergroups_users_list(usergroup=seed.SRE_GROUP)["users"]

    assert (info["is_private"], info["is_member"], info["name"]) == (True, True, "sre-private")
    assert (user["name"], user["is_bot"], user["tz"]) == ("bob", False, "America/New_York")
    assert "email" not in user["profile"]  # needs users:read.email
    assert group == [seed.ALICE, seed.BOB, seed.CAROL]


def test_conversations_members_paginates_with_cursors(client: WebClient) -> None:
    pages = []
    cursor = ""
    while True:
        page = client.conversations_members(channel=seed.OPS, limit=2, cursor=cursor)
        pages.append(page["members"])
        cursor = page["response_metadata"]["next_cursor"]
        if not cursor:
            break

    assert pages == [[seed.BOT_USER_ID, seed.ALICE], [seed.BOB, seed.CAROL], [seed.DAVE]]
    bad = slack_error(lambda: client.conversations_members(channel=seed.OPS, limit=0))
    assert bad.response["error"] == "invalid_limit"


def test_permalink_of_a_reply_names_its_thread(client: WebClient) -> None:
    parent = client.chat_postMessage(channel=seed.OPS, text="request")["ts"]
    reply = client.chat_postMessage(channel=seed.OPS, text="step", thread_ts=parent)["ts"]

    link = client.chat_getPermalink(channel=seed.OPS, message_ts=reply)["permalink"]

    assert link == (
        f"https://acme.slack.com/archives/{seed.OPS}/p{reply.replace('.', '')}?thread_ts={parent}&cid={seed.OPS}"
    )


def test_get_with_query_string_works_like_async_web_client(fake: FakeSlack) -> None:
    request = urllib.request.Request(  # noqa: S310 (plain http to the loopback fake)
        f"{fake.api_url}conversations.info?channel={seed.OPS}",
        headers={"Authorization": f"Bearer {seed.BOT_TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        body = json.loads(response.read())

    assert body["channel"]["id"] == seed.OPS
    assert fake.last("conversations.info").encoding == "query"


# ---------------------------------------------------------------------------------------------- metadata


def test_metadata_is_stored_and_returned_by_history_on_request(client: WebClient, fake: FakeSlack) -> None:
    metadata = {"event_type": "rollbot_operation", "event_payload": {"operation_id": "op-1", "version": 3}}
    ts = client.chat_postMessage(channel=seed.OPS, text="request", metadata=metadata)["ts"]

    with_metadata = client.conversations_history(channel=seed.OPS, include_all_metadata=True)["messages"][0]
    without = client.conversations_history(channel=seed.OPS)["messages"][0]

    assert fake.message(seed.OPS, ts).metadata == metadata
    assert with_metadata["metadata"] == metadata
    assert "metadata" not in without


def test_form_encoded_metadata_and_blocks_are_decoded(client: WebClient, fake: FakeSlack) -> None:
    metadata = {"event_type": "rollbot_operation", "event_payload": {"operation_id": "op-2"}}
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    client.api_call(
        "chat.postMessage",
        data={"channel": seed.OPS, "text": "hi", "metadata": json.dumps(metadata), "blocks": json.dumps(blocks)},
    )

    message = fake.messages(seed.OPS)[0]
    assert (message.metadata, message.blocks) == (metadata, blocks)
    assert fake.last("chat.postMessage").encoding == "form"


def test_update_replaces_metadata(client: WebClient, fake: FakeSlack) -> None:
    ts = client.chat_postMessage(
        channel=seed.OPS, text="x", metadata={"event_type": "rollbot_operation", "event_payload": {"version": 1}}
    )["ts"]
    client.chat_update(
        channel=seed.OPS, ts=ts, text="y", metadata={"event_type": "rollbot_operation", "event_payload": {"version": 2}}
    )

    assert fake.message(seed.OPS, ts).metadata == {"event_type": "rollbot_operation", "event_payload": {"version": 2}}


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ("not json", "invalid_metadata_format"),
        ('["a list"]', "invalid_metadata_format"),
        ({"event_type": "Rollback-Op", "event_payload": {}}, "invalid_metadata_schema"),
        ({"event_type": "rollbot_operation", "event_payload": "op-1"}, "invalid_metadata_schema"),
        ({"event_payload": {}}, "invalid_metadata_schema"),
    ],
    ids=["not-json", "not-object", "bad-event-type", "payload-not-object", "no-event-type"],
)
def test_malformed_metadata_is_rejected(client: WebClient, metadata: object, expected: str) -> None:
    arguments = {"channel": seed.OPS, "text": "x", "metadata": metadata}

    error = slack_error(lambda: client.api_call("chat.postMessage", json=arguments))

    assert error.response["error"] == expected


# ---------------------------------------------------------------------------------------------- Block Kit


def section(text: str, **extra: object) -> dict[str, object]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def button(text: str, action_id: str, **extra: object) -> dict[str, object]:
    return {"type": "button", "text": {"type": "plain_text", "text": text}, "action_id": action_id, **extra}


@pytest.mark.parametrize(
    ("blocks", "pointer"),
    [
        ([section("x")] * 51, "/blocks"),
        ([section("x" * 3001)], "/blocks/0/text/text"),
        ([{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}], "/blocks/0/text/text"),
        ([{"type": "header", "text": {"type": "mrkdwn", "text": "*h*"}}], "/blocks/0/text/type"),
        ([{"type": "actions", "elements": [button("b", f"a{i}") for i in range(26)]}], "/blocks/0/elements"),
        ([{"type": "actions", "elements": [button("b" * 76, "a")]}], "/blocks/0/elements/0/text/text"),
        ([{"type": "actions", "elements": [button("b", "a", value="v" * 2001)]}], "/blocks/0/elements/0/value"),
        ([{"type": "actions", "elements": [button("b", "a", style="secondary")]}], "/blocks/0/elements/0/style"),
        ([{"type": "actions", "elements": [button("b", "a"), button("c", "a")]}], "/blocks/0/elements/1/action_id"),
        ([section("a", block_id="same"), section("b", block_id="same")], "/blocks/1/block_id"),
        (
            [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}],
            "/blocks/0/elements",
        ),
        ([section("")], "/blocks/0/text/text"),
        ([{"type": "sectoin", "text": {"type": "mrkdwn", "text": "typo"}}], "/blocks/0/type"),
    ],
    ids=[
        "51-blocks",
        "section-3001",
        "header-151",
        "header-mrkdwn",
        "26-actions",
        "button-text-76",
        "button-value-2001",
        "button-style",
        "duplicate-action-id",
        "duplicate-block-id",
        "context-11",
        "empty-text",
        "unknown-type",
    ],
)
def test_block_kit_violations_are_invalid_blocks_with_a_pointer(
    client: WebClient, blocks: list[object], pointer: str
) -> None:
    error = slack_error(lambda: client.chat_postMessage(channel=seed.OPS, text="fallback", blocks=blocks))

    assert error.response["error"] == "invalid_blocks"
    assert any(f"[json-pointer:{pointer}]" in message for message in error.response["errors"])


def test_blocks_at_the_limits_are_accepted(client: WebClient, fake: FakeSlack) -> None:
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 150}},
        section("s" * 3000, block_id="summary"),
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 10},
        {
            "type": "actions",
            "block_id": "decision",
            "elements": [
                button("Approve", "approve", style="primary", value="v" * 2000),
                button("Reject", "reject", style="danger"),
            ],
        },
    ]

    client.chat_postMessage(channel=seed.OPS, text="fallback", blocks=blocks)

    assert fake.messages(seed.OPS)[0].blocks == blocks


def test_oversized_block_payload_is_msg_blocks_too_long(client: WebClient) -> None:
    blocks = [section("x" * 2900) for _ in range(5)]

    error = slack_error(lambda: client.chat_postMessage(channel=seed.OPS, text="big", blocks=blocks))

    assert error.response["error"] == "msg_blocks_too_long"


def test_blocks_without_fallback_text_are_accepted_but_linted(client: WebClient, fake: FakeSlack) -> None:
    client.api_call("chat.postMessage", json={"channel": seed.OPS, "blocks": [section("only blocks")]})

    assert fake.lint_findings()
    assert fake.messages(seed.OPS)[0].all_text() == "\nonly blocks"


# ---------------------------------------------------------------------------------------------- rate limits


def test_post_message_allows_a_burst_of_three_per_channel_then_429(fake: FakeSlack, clock: ManualClock) -> None:
    fake.set_rate_limits("strict")
    client = WebClient(token=seed.BOT_TOKEN, base_url=fake.api_url)
    for n in range(3):
        client.chat_postMessage(channel=seed.OPS, text=f"burst {n}")

    limited = slack_error(lambda: client.chat_postMessage(channel=seed.OPS, text="one too many"))
    other_channel = client.chat_postMessage(channel=seed.INCIDENT, text="separate bucket")
    clock.advance(1.0)
    refilled = client.chat_postMessage(channel=seed.OPS, text="after a second")

    assert limited.response.status_code == 429
    assert limited.response["error"] == "ratelimited"
    assert limited.response.headers["Retry-After"] == "1"
    assert other_channel["ok"]
    assert refilled["ok"]


def test_tier_budgets_are_per_minute_and_scalable(fake: FakeSlack, clock: ManualClock) -> None:
    fake.set_rate_limits("strict", scale=60)  # tier 2 = 20/min becomes 20/s
    client = WebClient(token=seed.BOT_TOKEN, base_url=fake.api_url)
    for _ in range(20):
        client.usergroups_users_list(usergroup=seed.SRE_GROUP)

    limited = slack_error(lambda: client.usergroups_users_list(usergroup=seed.SRE_GROUP))
    clock.advance(0.1)  # two tokens back at 20/s

    assert limited.response.status_code == 429
    assert int(limited.response.headers["Retry-After"]) >= 1
    assert client.usergroups_users_list(usergroup=seed.SRE_GROUP)["ok"]


def test_rate_limits_are_off_by_default(client: WebClient) -> None:
    for n in range(10):
        client.chat_postMessage(channel=seed.OPS, text=f"fast {n}")


# ---------------------------------------------------------------------------------------------- steering


def test_fail_next_injects_errors_then_recovers(fake: FakeSlack, client: WebClient) -> None:
    fake.fail_next("chat.update", "message_not_found", times=2)
    ts = client.chat_postMessage(channel=seed.OPS, text="status")["ts"]

    first = slack_error(lambda: client.chat_update(channel=seed.OPS, ts=ts, text="a"))
    second = slack_error(lambda: client.chat_update(channel=seed.OPS, ts=ts, text="b"))
    third = client.chat_update(channel=seed.OPS, ts=ts, text="c")

    assert first.response["error"] == second.response["error"] == "message_not_found"
    assert third["ok"]
    assert [c.injected for c in fake.calls("chat.update")] == [True, True, False]


def test_fail_next_with_429_sends_retry_after(fake: FakeSlack, client: WebClient) -> None:
    fake.fail_next("chat.postMessage", status=429, retry_after=7)

    error = slack_error(lambda: client.chat_postMessage(channel=seed.OPS, text="x"))

    assert (error.response.status_code, error.response.headers["Retry-After"]) == (429, "7")
    assert error.response["error"] == "ratelimited"


def test_fail_next_can_target_matching_arguments(fake: FakeSlack, client: WebClient) -> None:
    fake.fail_next("chat.postMessage", "not_in_channel", when=lambda args: args.get("channel") == seed.INCIDENT)

    assert client.chat_postMessage(channel=seed.OPS, text="fine")["ok"]
    assert slack_error(lambda: client.chat_postMessage(channel=seed.INCIDENT, text="x")).response["error"] == (
        "not_in_channel"
    )


def test_dropped_connection_is_retried_once_by_the_sdk(fake: FakeSlack, client: WebClient) -> None:
    fake.drop_connection("auth.test")

    assert client.auth_test()["ok"]  # slack_sdk's default ConnectionErrorRetryHandler retries once
    assert [c.status for c in fake.calls("auth.test")] == [0, 200]


def test_delay_slows_answers_down(fake: FakeSlack, client: WebClient) -> None:
    fake.delay("auth.test", 0.1, times=1)

    client.auth_test()
    client.auth_test()

    slow, fast = fake.calls("auth.test")
    assert slow.latency >= 0.1
    assert fast.latency < slow.latency


def test_fail_next_wildcard_hits_whatever_comes_next(fake: FakeSlack, client: WebClient) -> None:
    fake.fail_next("*", "service_unavailable", status=503)

    error = slack_error(client.auth_test)

    assert (error.response.status_code, error.response["error"]) == (503, "service_unavailable")
    assert client.auth_test()["ok"]


def test_server_error_status_surfaces_as_slack_api_error(fake: FakeSlack, client: WebClient) -> None:
    fake.fail_next("auth.test", status=500)

    error = slack_error(client.auth_test)

    assert error.response.status_code == 500


def test_assert_no_errors_reports_real_failures_but_not_injected_ones(fake: FakeSlack, client: WebClient) -> None:
    fake.fail_next("auth.test", "internal_error")
    slack_error(client.auth_test)
    fake.assert_no_errors()

    slack_error(lambda: client.chat_postMessage(channel="C0NOPE", text="x"))

    with pytest.raises(AssertionError, match="channel_not_found"):
        fake.assert_no_errors()
    fake.assert_no_errors(allow={"channel_not_found"})


def test_calls_filter_by_args_and_outcome(fake: FakeSlack, client: WebClient) -> None:
    client.chat_postMessage(channel=seed.OPS, text="a")
    client.chat_postMessage(channel=seed.INCIDENT, text="b")
    slack_error(lambda: client.chat_postMessage(channel="C0NOPE", text="c"))

    assert [c.args["text"] for c in fake.calls("chat.postMessage", channel=seed.OPS)] == ["a"]
    assert [c.args["text"] for c in fake.calls("chat.postMessage", ok=False)] == ["c"]
    assert fake.last("chat.postMessage", text=lambda t: t in "ab").args["text"] == "b"
    with pytest.raises(AssertionError, match=r"no chat\.update call"):
        fake.last("chat.update")


def test_wait_for_wakes_on_state_change_without_polling(fake: FakeSlack, client: WebClient) -> None:
    poster = threading.Timer(0.05, lambda: client.chat_postMessage(channel=seed.OPS, text="later"))
    poster.start()

    messages = fake.wait_for(lambda: fake.messages(seed.OPS), timeout=5)
    call = fake.wait_for_call("chat.postMessage", timeout=5, channel=seed.OPS)

    assert messages[0].text == "later"
    assert call.ok
    with pytest.raises(TimeoutError):
        fake.wait_for(lambda: fake.messages(seed.INCIDENT), timeout=0.05)


def test_reset_forgets_everything_but_the_seed(fake: FakeSlack, client: WebClient) -> None:
    client.chat_postMessage(channel=seed.OPS, text="x")
    fake.revoke_token(seed.BOT_TOKEN)

    fake.reset()

    assert fake.messages(seed.OPS) == []
    assert fake.calls() == []
    assert client.auth_test()["ok"]


# ---------------------------------------------------------------------------------------------- observers


def test_subscribers_and_transcript_see_every_change(fake: FakeSlack, client: WebClient) -> None:
    changes: list[Change] = []
    fake.subscribe(changes.append)
    output = io.StringIO()
    fake.subscribe(TranscriptPrinter(fake, output, color=False))

    parent = client.chat_postMessage(channel=seed.INCIDENT, text="Rollback requested")["ts"]
    client.chat_postMessage(channel=seed.INCIDENT, text="Rolling back", thread_ts=parent)
    client.chat_update(channel=seed.INCIDENT, ts=parent, text="Rolled back")
    fake.apply_reaction(seed.INCIDENT, parent, "white_check_mark", seed.BOB)
    client.chat_postEphemeral(channel=seed.INCIDENT, user=seed.DAVE, text="not allowed")

    assert [c.kind for c in changes] == [
        "message_posted",
        "message_posted",
        "message_edited",
        "reaction_added",
        "ephemeral",
    ]
    lines = output.getvalue().splitlines()
    assert "#incident" in lines[0]
    assert "@rollbot: Rollback requested" in lines[0]
    assert "↳ thread @rollbot: Rolling back" in lines[1]
    assert "✎ edited" in lines[2]
    assert "Rolled back" in lines[2]
    assert "+ :white_check_mark: by @bob" in lines[3]
    assert "(only @dave sees) not allowed" in lines[4]


def test_render_thread_gives_a_snapshot_friendly_text(client: WebClient, fake: FakeSlack) -> None:
    parent = client.chat_postMessage(channel=seed.OPS, text="Rollback workshop to 1?")["ts"]
    client.chat_postMessage(channel=seed.OPS, text="Rolling back", thread_ts=parent)
    client.chat_update(channel=seed.OPS, ts=parent, text="Rolled back workshop to 1")
    fake.apply_reaction(seed.OPS, parent, "white_check_mark", seed.BOB)

    assert render_thread(fake, seed.OPS, parent) == (
        "@rollbot: Rolled back workshop to 1 (edited)\n  :white_check_mark: @bob\n  ↳ @rollbot: Rolling back"
    )


# ---------------------------------------------------------------------------------------------- modals, sockets


def test_views_open_accepts_a_fresh_trigger_once(fake: FakeSlack, client: WebClient, clock: ManualClock) -> None:
    view = {"type": "modal", "title": {"type": "plain_text", "text": "Confirm"}, "blocks": [section("sure?")]}
    fresh = fake.issue_trigger_id(seed.ALICE)
    stale = fake.issue_trigger_id(seed.ALICE)

    opened = client.views_open(trigger_id=fresh, view=view)
    reused = slack_error(lambda: client.views_open(trigger_id=fresh, view=view))
    clock.advance(3.5)
    expired = slack_error(lambda: client.views_open(trigger_id=stale, view=view))

    assert opened["view"]["id"].startswith("V")
    assert reused.response["error"] == "exchanged_trigger_id"
    assert expired.response["error"] == "expired_trigger_id"


def test_apps_connections_open_needs_the_app_token(fake: FakeSlack) -> None:
    app_client = WebClient(token=seed.APP_TOKEN, base_url=fake.api_url)

    url = app_client.apps_connections_open(app_token=seed.APP_TOKEN)["url"]

    assert url.startswith(f"ws://127.0.0.1:{fake.port}/link/?ticket=")
