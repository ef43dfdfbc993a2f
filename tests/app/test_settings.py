"""Settings from the environment, as the chart and the README name them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.settings import Settings

_ALL = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "SLACK_API_URL",
    "REDIS_URL",
    "ROLLBOT_CONFIG",
    "ROLLBOT_PORT",
    "PORT",
    "ROLLBOT_SLASH_COMMAND",
    "ROLLBOT_ROLLOUT_TIMEOUT",
    "ROLLBOT_EXECUTOR_WORKERS",
    "ROLLBOT_HELM",
    "ROLLBOT_REPLICA_ID",
    "ROLLBOT_LEASE",
)


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ALL:
        monkeypatch.delenv(name, raising=False)


def test_defaults_match_the_documented_contract() -> None:
    settings = Settings()
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.port == 3000
    assert settings.slash_command == "/rollback"
    assert settings.rollout_timeout == timedelta(minutes=10)
    assert not settings.is_socket_mode
    assert settings.replica_id


def test_the_environment_configures_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "SLACK_BOT_TOKEN": "xoxb-123",
        "SLACK_SIGNING_SECRET": "abc",
        "SLACK_API_URL": "http://127.0.0.1:9/api/",
        "REDIS_URL": "redis://redis:6379/1",
        "ROLLBOT_CONFIG": "/etc/rollbot/catalog.yaml",
        "ROLLBOT_PORT": "8080",
        "ROLLBOT_SLASH_COMMAND": "rb",
        "ROLLBOT_ROLLOUT_TIMEOUT": "90s",
        "ROLLBOT_EXECUTOR_WORKERS": "4",
        "ROLLBOT_HELM": "/usr/local/bin/helm",
        "ROLLBOT_REPLICA_ID": "rollbot-0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.slack_bot_token.get_secret_value() == "xoxb-123"
    assert settings.config_path == Path("/etc/rollbot/catalog.yaml")
    assert settings.port == 8080
    assert settings.slash_command == "/rb"
    assert settings.rollout_timeout == timedelta(seconds=90)
    assert settings.executor_workers == 4
    assert settings.helm_path == "/usr/local/bin/helm"
    assert settings.replica_id == "rollbot-0"
    assert "xoxb-123" not in repr(settings)


def test_port_is_honoured_and_rollbot_port_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "5000")
    assert Settings().port == 5000
    monkeypatch.setenv("ROLLBOT_PORT", "6000")
    assert Settings().port == 6000


def test_an_app_token_selects_socket_mode_and_needs_no_signing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("ROLLBOT_CONFIG", "catalog.yaml")
    assert Settings().serve_problems() == [
        "SLACK_SIGNING_SECRET is empty (required in HTTP mode; set SLACK_APP_TOKEN for Socket Mode)"
    ]
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1")
    settings = Settings()
    assert settings.is_socket_mode
    assert settings.serve_problems() == []
