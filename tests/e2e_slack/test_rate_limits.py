"""Thirty services break at once: thirty `/rollback`s in one channel within a second, against a fake Slack that
enforces Slack's own limits (≈ 1 post per second per channel with a burst of three, Tier 3 for chat.update).

Slack's minute runs `SCALE` times faster in the fake, and the bot's budget is scaled the same way (a setting,
ROLLBOT_SLACK_BUDGET_SCALE), so the test takes seconds instead of minutes while keeping every ratio.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.core.catalog import Catalog, parse_catalog
from sandbox.slack.driver import SlackDriver
from sandbox.slack.seed import BOB, INCIDENT, SIGNING_SECRET
from sandbox.slack.server import FakeSlack
from tests.e2e_slack.conftest import CATALOG, WAIT, request_messages

# Slack's minute in 1/SCALE of a minute: 1 post/s/channel becomes 10/s, Tier 3 50/min becomes 500/min.
SCALE = 10.0
TARGETS = [f"svc-{n:02d}" for n in range(1, 31)]
# Thirty on-call engineers (none of them Bob, who approves).
REQUESTERS = [f"U0ONCALL{n:02d}" for n in range(1, 31)]
MANY: dict[str, Any] = {
    **{key: value for key, value in CATALOG.items() if key != "groups"},  # the shared groups name other targets
    "targets": {
        name: {"backend": "kubernetes", "kind": "Deployment", "name": name, "namespace": "shop"} for name in TARGETS
    },
}


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack(rate_limits="strict", rate_limit_scale=SCALE) as fake:
        yield fake


@pytest.fixture
def catalog() -> Catalog:
    return parse_catalog(MANY)


@pytest.fixture
def catalog_path(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(MANY), encoding="utf-8")
    return path


def test_thirty_concurrent_rollbacks_in_one_channel_are_all_posted_approved_and_finished(
    make_bot, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    bot = make_bot(slack_budget_scale=SCALE)
    with SlackDriver(bot.events_url, SIGNING_SECRET, fake_slack) as slack, ThreadPoolExecutor(30) as typing:
        started = time.monotonic()
        acks = list(
            typing.map(
                lambda pair: slack.slash_command(pair[0], user=pair[1], channel=INCIDENT),
                zip(TARGETS, REQUESTERS, strict=True),
            )
        )
        assert all(ack.status == 200 for ack in acks)

        requests = fake_slack.wait_for(
            lambda: len(found := request_messages(fake_slack)) == len(TARGETS) and found,
            WAIT * 3,
            description="all thirty request messages",
        )
        last_request_posted = time.monotonic() - started
        for message in requests:
            slack.reaction_added(BOB, "white_check_mark", INCIDENT, message.ts)

        def finished() -> bool:
            return all(phase_of_message(fake_slack, m.ts) == "succeeded" for m in requests)

        fake_slack.wait_for(finished, 45, description="thirty succeeded request messages")

        def final_lines() -> bool:
            return all(
                any("rolled back to revision 1" in line for line in thread_texts_of(fake_slack, m.ts)) for m in requests
            )

        fake_slack.wait_for(final_lines, WAIT * 2, description="thirty final lines")
        all_done = time.monotonic() - started

    writes = [c for c in fake_slack.calls() if c.method in {"chat.postMessage", "chat.update", "reactions.add"}]
    bounced = [c for c in fake_slack.calls() if c.status == 429]
    for message in requests:
        lines = thread_texts_of(fake_slack, message.ts)
        assert any("approved by" in line for line in lines), lines
    # Nobody was told to try again; every requester heard their request was posted.
    answers = " ".join(str(r) for r in fake_slack.responses()) + " ".join(e.text for e in fake_slack.ephemerals())
    assert "try again" not in answers.lower()
    # A 429 Slack sent was waited out and the call sent again: the bot logged no failed side effect, no traceback.
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]
    theoretical = (len(TARGETS) - 3) / SCALE  # a burst of three, then one post per (scaled) second
    print(
        f"\nslack writes={len(writes)} calls={len(fake_slack.calls())} 429s={len(bounced)} "
        f"last request posted after {last_request_posted:.2f} s (minimum {theoretical:.2f} s) "
        f"all final lines after {all_done:.2f} s"
    )


def phase_of_message(fake: FakeSlack, ts: str) -> str:
    message = fake.message(INCIDENT, ts)
    return str((message.metadata or {}).get("event_payload", {}).get("phase"))


def thread_texts_of(fake: FakeSlack, ts: str) -> list[str]:
    return [m.all_text() for m in fake.messages(INCIDENT, thread_ts=ts)]
