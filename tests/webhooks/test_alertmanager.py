"""A real Alertmanager (Debian's prometheus-alertmanager) notifying the bot: one card per failure, redeliveries
change nothing, the alert's end is noted, and a receiver with the wrong token gets 401 and posts nothing."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from bot.app import RollbotApp
from sandbox.slack.server import FakeSlack
from tests.webhooks.conftest import (
    TOKEN,
    Alertmanager,
    card_payload,
    http_post,
    incident_cards,
    metric,
    wait_until,
)

DELIVERED = "rollbot_webhook_requests_total"


def _alert(**labels: str) -> dict[str, object]:
    return {
        "labels": {"alertname": "KubeDeploymentRolloutStuck", **labels},
        "annotations": {"summary": "Deployment rollout is not progressing"},
        "generatorURL": "http://prometheus.example/graph?g0.expr=up",
    }


def _resolved(alert: dict[str, object]) -> dict[str, object]:
    return {**alert, "endsAt": datetime.now(UTC).isoformat()}


def test_a_firing_alert_becomes_one_card_and_redeliveries_change_nothing(
    bot: RollbotApp, fake_slack: FakeSlack, alertmanager: Alertmanager
):
    alert = _alert(service="bootcamp")
    posted_at = time.monotonic()
    alertmanager.post_alerts(alert)
    cards = wait_until(lambda: incident_cards(fake_slack), "the incident card", timeout=3.0)  # group_wait + 2 s
    assert time.monotonic() - posted_at <= 3.0
    payload = card_payload(cards[0])
    assert (payload["target"], payload["source"], payload["reason"]) == (
        "bootcamp",
        "alertmanager",
        "KubeDeploymentRolloutStuck",
    )
    assert payload["revision"] == "2"  # the workload's current revision, from its history

    # Alertmanager repeats the group every second (repeat_interval 1s); the same alert is posted again too.
    for _ in range(3):
        alertmanager.post_alerts(alert)
    wait_until(
        lambda: metric(bot, DELIVERED, endpoint="alertmanager", status="200") >= 10,
        "10 deliveries of the same alert",
        timeout=20.0,
    )
    cards = incident_cards(fake_slack)
    assert len(cards) == 1
    assert len(fake_slack.messages(cards[0].channel, cards[0].ts)) == 0  # no thread line for a redelivery

    alertmanager.post_alerts(_resolved(alert))
    noted = wait_until(
        lambda: [m for m in fake_slack.messages(cards[0].channel, cards[0].ts) if "resolved" in m.text],
        "the alert's end in the card's thread",
    )
    assert "ends when the workload is healthy" in noted[0].text  # bootcamp is watched: its health rule decides
    assert card_payload(fake_slack.messages(cards[0].channel)[0])["state"] == "open"
    assert len(incident_cards(fake_slack)) == 1


def test_an_unwatched_workload_resolves_with_its_alert(
    bot: RollbotApp, fake_slack: FakeSlack, alertmanager: Alertmanager
):
    alert = _alert(namespace="shop", deployment="shop-1", service="shop")
    alertmanager.post_alerts(alert)
    card = wait_until(lambda: incident_cards(fake_slack), "the incident card")[0]
    assert card_payload(card)["target"] == "shop-1"
    alertmanager.post_alerts(_resolved(alert))
    # Card edits are at most one per 10 s; the thread says it at once, and the store knows.
    wait_until(
        lambda: [m for m in fake_slack.messages(card.channel, card.ts) if "resolved: alert" in m.text],
        "the resolution in the thread",
    )
    assert bot.incidents is not None
    assert bot.incidents.listing().text == "No open incidents."  # what `/rollback incidents` answers


def test_a_receiver_with_the_wrong_token_is_refused_and_posts_nothing(
    bot: RollbotApp, fake_slack: FakeSlack, alertmanager: Alertmanager
):
    alertmanager.post_alerts(_alert(service="bootcamp", team="impostor"))
    wait_until(lambda: metric(bot, DELIVERED, endpoint="alertmanager", status="401") >= 1, "a refused delivery")
    assert incident_cards(fake_slack) == []


def test_unmatched_alerts_are_counted_never_posted(bot: RollbotApp, fake_slack: FakeSlack):
    payload = {
        "version": "4",
        "groupKey": "{}:{}",
        "status": "firing",
        "receiver": "rollbot",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "Watchdog"},
                "annotations": {},
                "startsAt": "2026-03-01T12:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": "f00",
            }
        ],
    }
    status, answer = http_post(
        f"{bot.url}/webhooks/alertmanager", json.dumps(payload).encode(), {"Authorization": f"Bearer {TOKEN}"}
    )
    assert (status, answer["unmatched"]) == (200, 1)
    assert metric(bot, "rollbot_alerts_unmatched_total", reason="no_target") == 1
    assert incident_cards(fake_slack) == []


def test_bad_requests_get_a_short_reason_and_no_retry_worthy_status(bot: RollbotApp):
    url = f"{bot.url}/webhooks/alertmanager"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert http_post(url, b"{}", {})[0] == 401
    assert http_post(url, b"{}", {"Authorization": "Bearer wrong"})[0] == 401
    status, answer = http_post(url, b"{not json", auth)
    assert (status, answer["error"]) == (400, "body is not JSON: JSONDecodeError")
    status, answer = http_post(url, json.dumps({"version": "3", "alerts": []}).encode(), auth)
    assert status == 400
    assert answer["error"].startswith("version:")
