"""Prometheus metrics through the Metrics port, and JSON logs that never show a token or the signing secret."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient

from bot.adapters.prometheus_metrics import PrometheusMetrics
from bot.logging import REDACTED, configure_logging, get_logger, operation_context
from bot.ports import Metrics
from sandbox.slack import FakeSlack, seed

SECRETS = (seed.SIGNING_SECRET, seed.BOT_TOKEN, seed.APP_TOKEN, seed.USER_TOKEN)

# ------------------------------------------------------------------ metrics


def test_prometheus_metrics_satisfy_the_port() -> None:
    metrics: Metrics = PrometheusMetrics(CollectorRegistry())

    assert metrics is not None


def test_the_flow_counts_land_in_their_series() -> None:
    metrics = PrometheusMetrics(CollectorRegistry())

    metrics.command_received("rollback")
    metrics.command_received("rollback")
    metrics.command_received("history")
    metrics.approval_recorded("counted")
    metrics.approval_recorded("refused")
    metrics.phase_entered("kubernetes", "rolling_back")
    metrics.rollout_finished("kubernetes", "succeeded", 12.5)
    metrics.slack_api_error("chat.update", "message_not_found")
    metrics.slack_ratelimited("chat.update", 3.0)

    value = metrics.registry.get_sample_value
    assert value("rollbot_commands_total", {"verb": "rollback"}) == 2
    assert value("rollbot_commands_total", {"verb": "history"}) == 1
    assert value("rollbot_approvals_total", {"outcome": "counted"}) == 1
    assert value("rollbot_approvals_total", {"outcome": "refused"}) == 1
    assert value("rollbot_operations_total", {"backend": "kubernetes", "phase": "rolling_back"}) == 1
    assert value("rollbot_rollout_duration_seconds_sum", {"backend": "kubernetes", "phase": "succeeded"}) == 12.5
    assert (
        value("rollbot_rollout_duration_seconds_bucket", {"backend": "kubernetes", "phase": "succeeded", "le": "15.0"})
        == 1
    )
    assert value("rollbot_slack_api_errors_total", {"method": "chat.update", "error": "message_not_found"}) == 1
    assert value("rollbot_slack_ratelimited_total") == 1
    assert value("rollbot_slack_retry_after_seconds_total") == 3.0


def test_two_metrics_objects_on_their_own_registries_do_not_collide() -> None:
    first, second = PrometheusMetrics(CollectorRegistry()), PrometheusMetrics(CollectorRegistry())

    first.command_received("help")

    assert first.registry.get_sample_value("rollbot_commands_total", {"verb": "help"}) == 1
    assert second.registry.get_sample_value("rollbot_commands_total", {"verb": "help"}) is None


# ------------------------------------------------------------------ logging


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_levels = {name: logging.getLogger(name).level for name in ("slack_bolt", "slack_sdk", "waitress.queue")}
    stream = io.StringIO()
    configure_logging("DEBUG", secrets=[seed.SIGNING_SECRET], stream=stream)
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)
    for name, level in saved_levels.items():
        logging.getLogger(name).setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def assert_no_secret(stream: io.StringIO) -> None:
    output = stream.getvalue()
    for secret in SECRETS:
        assert secret not in output
    assert "xoxb-" not in output
    assert "xapp-" not in output


class Leaky:
    def __repr__(self) -> str:
        return f"Leaky(token={seed.BOT_TOKEN})"


def test_structlog_lines_are_json_with_the_operation_id(log_output: io.StringIO) -> None:
    log = get_logger("rollbot.flow")

    with operation_context("op-7f3a"):
        log.info("phase entered", phase="rolling_back")
    log.info("outside")

    inside, outside = lines(log_output)
    assert inside["event"] == "phase entered"
    assert inside["operation_id"] == "op-7f3a"
    assert inside["level"] == "info"
    assert inside["logger"] == "rollbot.flow"
    assert "timestamp" in inside
    assert "operation_id" not in outside


def test_stdlib_lines_carry_the_operation_id_too(log_output: io.StringIO) -> None:
    with operation_context("op-1"):
        logging.getLogger("redis.connection").warning("reconnecting to %s", "redis://127.0.0.1")

    [line] = lines(log_output)
    assert line["event"] == "reconnecting to redis://127.0.0.1"
    assert line["operation_id"] == "op-1"
    assert line["logger"] == "redis.connection"


def test_stdlib_extra_fields_become_keys(log_output: io.StringIO) -> None:
    logging.getLogger("rollbot.flows").info("rollback requested", extra={"operation_id": "op-9", "target": "workshop"})

    [line] = lines(log_output)
    assert line["operation_id"] == "op-9"
    assert line["target"] == "workshop"


def test_the_operation_id_stays_in_its_thread(log_output: io.StringIO) -> None:
    log = get_logger("rollbot.executor")
    other_thread_logged = threading.Event()

    def elsewhere() -> None:
        log.info("other thread")
        other_thread_logged.set()

    with operation_context("op-2"):
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
    assert other_thread_logged.is_set()

    [line] = lines(log_output)
    assert "operation_id" not in line


def test_secrets_never_reach_the_output_on_any_path(log_output: io.StringIO) -> None:
    log = get_logger("rollbot.test")
    stdlib = logging.getLogger("rollbot.stdlib")

    log.info(f"starting with {seed.BOT_TOKEN}")
    log.info("settings", bot_token=seed.BOT_TOKEN, app_token=seed.APP_TOKEN, signing_secret=seed.SIGNING_SECRET)
    log.info(
        "nested", headers={"Authorization": f"Bearer {seed.USER_TOKEN}"}, tokens=[seed.BOT_TOKEN, (seed.APP_TOKEN,)]
    )
    log.info("bytes", body=f"token={seed.BOT_TOKEN}".encode())
    log.info("object", value=Leaky())
    stdlib.info("stdlib %s and %s", seed.BOT_TOKEN, seed.SIGNING_SECRET)
    stdlib.info("stdlib dict %s", {"token": seed.APP_TOKEN})
    stdlib.info("stdlib extra", extra={"token": seed.BOT_TOKEN, "secret": seed.SIGNING_SECRET})
    try:
        raise RuntimeError(f"auth failed for {seed.BOT_TOKEN} signed with {seed.SIGNING_SECRET}")
    except RuntimeError:
        log.exception("structlog exception")
        stdlib.exception("stdlib exception")
    with operation_context("op-3", token=seed.BOT_TOKEN):
        log.warning("bound")

    assert_no_secret(log_output)
    output = log_output.getvalue()
    assert output.count(REDACTED) >= 15
    assert len(lines(log_output)) == 11


def test_bolt_and_slack_sdk_are_held_at_warning(log_output: io.StringIO) -> None:
    with FakeSlack() as fake:
        app = App(client=WebClient(token=seed.BOT_TOKEN, base_url=fake.api_url), signing_secret=seed.SIGNING_SECRET)
        body = f"token={seed.BOT_TOKEN}&command=%2Frollback&text=workshop"
        # A bad signature: Bolt logs the raw body at INFO (slack.md §1.3); here nothing of it may appear.
        response = app.dispatch(
            BoltRequest(
                body=body,
                headers={"x-slack-request-timestamp": "1", "x-slack-signature": "v0=00"},
            )
        )
        app.client.chat_postMessage(channel=seed.OPS, text=f"debug me {seed.BOT_TOKEN}")

    assert response.status == 401
    assert "workshop" not in log_output.getvalue()
    assert "debug me" not in log_output.getvalue()
    assert_no_secret(log_output)


def test_secrets_come_from_the_environment_by_default(monkeypatch: pytest.MonkeyPatch, log_output: io.StringIO) -> None:
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "an-env-only-signing-secret")
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)

    get_logger("x").info("leak", value="an-env-only-signing-secret")

    assert "an-env-only-signing-secret" not in stream.getvalue()
    assert REDACTED in stream.getvalue()


def test_the_default_stream_is_stdout(capsys: pytest.CaptureFixture[str], log_output: io.StringIO) -> None:
    configure_logging("INFO", secrets=[])

    get_logger("x").info("to stdout", token=seed.BOT_TOKEN)

    captured = capsys.readouterr().out
    assert json.loads(captured.strip().splitlines()[-1])["event"] == "to stdout"
    assert seed.BOT_TOKEN not in captured


def test_an_incident_shown_by_its_card_and_by_a_summary_is_counted_opened_once() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    assert metrics.incident_opened("kubernetes", "ImagePullBackOff", "inc-1") is True
    assert metrics.incident_opened("kubernetes", "ImagePullBackOff", "inc-1") is False
    assert metrics.incident_opened("kubernetes", "ImagePullBackOff", "inc-2") is True
    labels = {"backend": "kubernetes", "reason": "ImagePullBackOff"}
    assert registry.get_sample_value("rollbot_incidents_opened_total", labels) == 2
