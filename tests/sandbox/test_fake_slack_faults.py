"""Storms on the fake Slack Web API (`inject_fault`, `/_sim/faults`), seen through the real `slack_sdk.WebClient`."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler

from sandbox.faults import FaultClient, InvalidFault
from sandbox.slack import FakeSlack, seed

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # slack_sdk honours proxy variables but not NO_PROXY; loopback calls must not leave the machine.
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as running:
        yield running


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    return WebClient(token=seed.BOT_TOKEN, base_url=fake.api_url)


def post(client: WebClient, text: str = "rolling back") -> int:
    """The HTTP status of one chat.postMessage (200 when it went through)."""
    try:
        client.chat_postMessage(channel=seed.OPS, text=text)
    except SlackApiError as failure:
        return failure.response.status_code
    return 200


def test_a_429_storm_answers_ratelimited_with_retry_after(fake: FakeSlack, client: WebClient) -> None:
    fake.inject_fault("chat.*", status=429, retry_after=7, count=1)
    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(channel=seed.OPS, text="hello")
    response = caught.value.response
    assert (response.status_code, response["error"], response.headers["Retry-After"]) == (429, "ratelimited", "7")
    assert fake.messages(seed.OPS) == []
    fake.assert_no_errors()  # injected answers are not the bot's mistakes


def test_the_sdk_rate_limit_handler_rides_out_a_short_storm(fake: FakeSlack) -> None:
    fake.inject_fault("chat.postMessage", status=429, retry_after=0, count=2)
    client = WebClient(
        token=seed.BOT_TOKEN, base_url=fake.api_url, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)]
    )
    assert client.chat_postMessage(channel=seed.OPS, text="eventually")["ok"]
    assert [call.status for call in fake.calls("chat.postMessage")] == [429, 429, 200]
    assert [message.text for message in fake.messages(seed.OPS)] == ["eventually"]


def test_5xx_storms_surface_as_slack_api_errors_that_the_server_error_handler_retries(fake: FakeSlack) -> None:
    fake.inject_fault("chat.update", status=503, count=1)
    fake.inject_fault("chat.*", status=500, count=1)
    plain = WebClient(token=seed.BOT_TOKEN, base_url=fake.api_url)
    with pytest.raises(SlackApiError) as caught:
        plain.chat_postMessage(channel=seed.OPS, text="v1")
    assert (caught.value.response.status_code, caught.value.response["error"]) == (500, "internal_error")
    ts = plain.chat_postMessage(channel=seed.OPS, text="v1")["ts"]  # the 500 rule is spent (count=1)
    patient = WebClient(
        token=seed.BOT_TOKEN, base_url=fake.api_url, retry_handlers=[ServerErrorRetryHandler(max_retry_count=1)]
    )
    assert patient.chat_update(channel=seed.OPS, ts=ts, text="v2")["ok"]
    assert [call.status for call in fake.calls("chat.update")] == [503, 200]
    assert fake.message(seed.OPS, ts).text == "v2"


def test_a_seeded_storm_hits_the_same_calls_on_every_run_and_only_matching_methods() -> None:
    def storm_pattern() -> list[int]:
        with FakeSlack() as fake:
            fake.inject_fault("chat.*", status=503, probability=0.4, seed=2024)
            client = WebClient(token=seed.BOT_TOKEN, base_url=fake.api_url)
            ts = fake.post_as_user(seed.OPS, seed.ALICE, "deploy 42 is bad")
            for _ in range(5):
                client.reactions_add(channel=seed.OPS, timestamp=ts, name="eyes")
                client.reactions_remove(channel=seed.OPS, timestamp=ts, name="eyes")
            return [post(client, f"update {i}") for i in range(25)]

    first = storm_pattern()
    assert first == storm_pattern()
    assert set(first) == {200, 503}


def test_a_delay_storm_slows_calls_down_without_failing_them(fake: FakeSlack, client: WebClient) -> None:
    fake.inject_fault("auth.*", delay=0.3, count=1)
    started = time.monotonic()
    assert client.auth_test()["ok"]
    assert time.monotonic() - started >= 0.3


def test_an_armed_fail_next_wins_and_leaves_the_storm_untouched(fake: FakeSlack, client: WebClient) -> None:
    fake.inject_fault("chat.postMessage", status=503, count=1)
    fake.fail_next("chat.postMessage", "not_in_channel")
    with pytest.raises(SlackApiError, match="not_in_channel"):
        client.chat_postMessage(channel=seed.OPS, text="first")
    assert post(client) == 503
    assert post(client) == 200
    rule = fake.fault_rules()[0]
    assert (rule["seen"], rule["hits"]) == (1, 1)  # the call fail_next answered never reached the storm


def test_storms_are_driven_over_http_as_well(fake: FakeSlack, client: WebClient) -> None:
    control = FaultClient(fake.url)
    added = control.add(method="chat.*", status=429, count=1)
    assert (added["id"], added["method"], added["hits"]) == (1, "chat.*", 0)
    assert post(client) == 429
    assert [(rule["seen"], rule["hits"]) for rule in control.list()] == [(1, 1)]
    control.clear()
    assert control.list() == []
    assert fake.fault_rules() == []


@pytest.mark.parametrize(
    ("rule", "complaint"),
    [
        ({"method": "chat.*", "status": 404}, "status: Value error, must be 429 (rate limited) or a 5xx"),
        ({"method": "chat.*"}, "give a status to answer with, a delay to hang for, or both"),
        ({"method": "chat.*", "status": 500, "retry_after": 3}, "retry_after only goes with status 429"),
        ({"method": "chat.*", "status": 429, "probability": -0.1}, "probability: Input should be greater than"),
    ],
    ids=["not-a-slack-failure", "does-nothing", "retry-after-without-429", "negative-probability"],
)
def test_a_bad_storm_rule_is_refused_with_what_to_fix(fake: FakeSlack, rule: dict, complaint: str) -> None:
    with pytest.raises(InvalidFault, match=re.escape(complaint)):
        FaultClient(fake.url).add(**rule)
    with pytest.raises(InvalidFault, match="invalid fault rule"):
        fake.inject_fault(**rule)
    assert fake.fault_rules() == []
