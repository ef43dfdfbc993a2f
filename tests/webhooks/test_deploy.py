"""Pipelines report deploys: a signed `failed` opens a card linking the run, a newer `succeeded` supersedes it;
a wrong, stale or replayed signature is refused; `rollbot report-deploy` does it from a pipeline step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bot.app import RollbotApp
from bot.core.intake import sign
from sandbox.slack.server import FakeSlack
from tests.webhooks.conftest import SECRET, card_payload, http_post, incident_cards, wait_until

RUN = "https://ci.example.com/acme/bootcamp/actions/runs/42"
ROOT = Path(__file__).resolve().parents[2]


def _send(bot: RollbotApp, report: dict[str, object], *, secret: str = SECRET, age: int = 0, headers=None):
    body = json.dumps(report).encode()
    timestamp = str(int(time.time()) - age)
    signed = {"X-Rollbot-Timestamp": timestamp, "X-Rollbot-Signature": sign(secret, timestamp, body)}
    return http_post(f"{bot.url}/webhooks/deploy", body, signed if headers is None else headers)


def test_a_failed_deploy_opens_a_card_that_links_the_run_and_a_newer_success_supersedes_it(
    bot: RollbotApp, fake_slack: FakeSlack
):
    failed = {"target": "bootcamp", "status": "failed", "revision": "2", "url": RUN, "summary": "smoke test failed"}
    status, answer = _send(bot, failed)
    assert status == 200, answer
    card = wait_until(lambda: incident_cards(fake_slack), "the incident card")[0]
    payload = card_payload(card)
    assert (payload["source"], payload["reason"], payload["revision"]) == ("pipeline", "pipeline", "2")
    assert f"<{RUN}|pipeline run>" in json.dumps(card.blocks)
    assert "smoke test failed" in json.dumps(card.blocks)

    status, answer = _send(bot, {"target": "bootcamp", "status": "succeeded", "revision": "3"})
    assert (status, answer["outcome"]) == (200, f"incident {payload['incident_id']} resolved: superseded by revision 3")
    wait_until(
        lambda: [m for m in fake_slack.messages(card.channel, card.ts) if "superseded by revision 3" in m.text],
        "the resolution in the card's thread",
    )


def test_wrong_stale_replayed_or_missing_signatures_are_refused(bot: RollbotApp, fake_slack: FakeSlack):
    report = {"target": "bootcamp", "status": "failed", "revision": "2"}
    assert _send(bot, report, secret="not-the-secret") == (401, {"error": "bad signature"})
    status, answer = _send(bot, report, age=6 * 60)
    assert (status, answer["error"].split(":")[0]) == (401, "stale request")
    assert _send(bot, report, headers={})[0] == 401

    body = json.dumps(report).encode()
    timestamp = str(int(time.time()))
    signed = {"X-Rollbot-Timestamp": timestamp, "X-Rollbot-Signature": sign(SECRET, timestamp, body)}
    assert http_post(f"{bot.url}/webhooks/deploy", body, signed)[0] == 200
    replayed = http_post(f"{bot.url}/webhooks/deploy", body, signed)
    assert replayed == (401, {"error": "replayed request: this signature was already used"})
    wait_until(lambda: incident_cards(fake_slack), "the one genuine report's card")
    assert len(incident_cards(fake_slack)) == 1


def test_a_report_for_an_unknown_target_is_refused_with_the_reason(bot: RollbotApp, fake_slack: FakeSlack):
    status, answer = _send(bot, {"target": "nope", "status": "failed"})
    assert (status, answer) == (400, {"error": "unknown target 'nope': it is not in the catalog"})
    status, answer = _send(bot, {"target": "bootcamp", "status": "broken"})
    assert status == 400
    assert answer["error"].startswith("status:")
    assert incident_cards(fake_slack) == []


def _report_deploy(*args: str, url: str, secret: str = SECRET) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env |= {"ROLLBOT_URL": url, "ROLLBOT_WEBHOOK_SECRET": secret, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "report-deploy", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_rollbot_report_deploy_opens_a_card_and_fails_clearly_when_refused_or_unreachable(
    bot: RollbotApp, fake_slack: FakeSlack
):
    done = _report_deploy("--target", "shop-1", "--status", "failed", "--revision", "5", "--url", RUN, url=bot.url)
    assert done.returncode == 0, done.stderr
    assert "opened" in done.stdout
    card = wait_until(lambda: incident_cards(fake_slack), "the incident card")[0]
    assert card_payload(card)["target"] == "shop-1"

    refused = _report_deploy("--target", "shop-1", "--status", "failed", url=bot.url, secret="wrong-secret")
    assert refused.returncode == 2
    assert "the bot refused the report (401): bad signature" in refused.stderr
    assert "wrong-secret" not in refused.stderr + refused.stdout

    unreachable = _report_deploy("--target", "shop-1", "--status", "failed", url="http://127.0.0.1:9")
    assert unreachable.returncode == 1
    assert "cannot reach the bot at http://127.0.0.1:9" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
