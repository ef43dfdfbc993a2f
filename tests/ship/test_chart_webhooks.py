"""The chart carries the webhook credentials in its Secret, hands them to the bot, and in Socket Mode exposes the
webhooks through the Service only when asked."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from tests.ship.conftest import env_of, find, of_kind, socket_values

Render = Callable[..., list[dict[str, Any]]]
WEBHOOKS = {"token": "am-token", "secret": "pipeline-secret"}


def _secret_data(objects: list[dict[str, Any]]) -> dict[str, str]:
    secret = of_kind(objects, "Secret")[0]
    data = dict(secret.get("stringData") or {})
    data |= {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}
    return data


def _bot_env(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = find(objects, "Deployment")
    return env_of(deployment["spec"]["template"]["spec"]["containers"][0])


def test_the_secret_carries_the_webhook_token_and_secret_and_the_bot_reads_them(render: Render):
    objects = render(socket_values(webhooks=WEBHOOKS))
    data = _secret_data(objects)
    assert (data["ROLLBOT_WEBHOOK_TOKEN"], data["ROLLBOT_WEBHOOK_SECRET"]) == ("am-token", "pipeline-secret")
    env = _bot_env(objects)
    assert env["ROLLBOT_WEBHOOK_TOKEN"]["secretKeyRef"]["key"] == "ROLLBOT_WEBHOOK_TOKEN"
    assert env["ROLLBOT_WEBHOOK_SECRET"]["secretKeyRef"]["key"] == "ROLLBOT_WEBHOOK_SECRET"


def test_without_credentials_nothing_about_webhooks_is_rendered(render: Render):
    objects = render(socket_values())
    assert "ROLLBOT_WEBHOOK_TOKEN" not in _secret_data(objects)
    assert "ROLLBOT_WEBHOOK_TOKEN" not in _bot_env(objects)
    assert of_kind(objects, "Service") == []  # Socket Mode: no Service unless something needs one


def test_socket_mode_exposes_the_webhooks_through_the_service_when_enabled(render: Render):
    objects = render(socket_values(webhooks={**WEBHOOKS, "enabled": True}))
    service = find(objects, "Service")
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]


def test_an_existing_secret_is_referenced_not_rendered(render: Render):
    objects = render(socket_values(webhooks={"existingSecret": "ci-hooks"}))
    assert "ROLLBOT_WEBHOOK_SECRET" not in _secret_data(objects)
    assert _bot_env(objects)["ROLLBOT_WEBHOOK_SECRET"]["secretKeyRef"]["name"] == "ci-hooks"
