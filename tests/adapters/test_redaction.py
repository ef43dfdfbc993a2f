"""No secret reaches the logs: AWS credentials, URL passwords and bearer tokens, whatever logs them.

The redactor is checked shape by shape, then a real process is run the way `rollbot serve` configures its logs,
at ROLLBOT_LOG_LEVEL=DEBUG with AWS credentials and a Redis password in its environment, while botocore signs
real ECS and STS requests against moto.
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from bot.logging import REDACTED, VENDOR_LOGGERS, Redactor, configure_logging, get_logger
from sandbox.aws import AwsWorld

REPO = Path(__file__).resolve().parents[2]

# Fake, but shaped like the real thing.
ACCESS_KEY_ID = "ASIAQ7EXAMPLEROLLBOT"
SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLEsession/token+for+rollbot//tests=="
REDIS_PASSWORD = "s3cr3t-redis-pw"
REDIS_URL = f"redis://:{REDIS_PASSWORD}@127.0.0.1:9/0"

# ------------------------------------------------------------------ shapes


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("REDIS_URL=redis://:hunter2@host:6379/0", "REDIS_URL=redis://:[REDACTED]@host:6379/0"),
        ("rediss://rollbot:p%40ss@redis.internal:6380/0", "rediss://rollbot:[REDACTED]@redis.internal:6380/0"),
        ("redis+sentinel://:pw@h1:26379,h2:26379/mymaster", "redis+sentinel://:[REDACTED]@h1:26379,h2:26379/mymaster"),
        ("key AKIAIOSFODNN7EXAMPLE used", "key [REDACTED] used"),
        ("key ASIAQ7EXAMPLEROLLBOT used", "key [REDACTED] used"),
        ("aws_secret_access_key = abc/def+ghi", "aws_secret_access_key = [REDACTED]"),
        ("AWS_SESSION_TOKEN=FQoGZXIvYXdzE//abc== next", "AWS_SESSION_TOKEN=[REDACTED] next"),
        ("X-Amz-Security-Token: FQoGZXIvYXdzE/abc==", "X-Amz-Security-Token: [REDACTED]"),
        (
            "x-amz-security-token:FQoG/abc==\nx-amz-target:AmazonEC2",
            "x-amz-security-token:[REDACTED]\nx-amz-target:AmazonEC2",
        ),
        ("{'X-Amz-Security-Token': b'FQoG/abc=='}", "{'X-Amz-Security-Token': b'[REDACTED]'}"),
        ('{"SessionToken": "FQoG/abc==", "Expiration": 1}', '{"SessionToken": "[REDACTED]", "Expiration": 1}'),
        ('{"SecretAccessKey": "k/ey+"}', '{"SecretAccessKey": "[REDACTED]"}'),
        ("<SessionToken>FQoG/abc==</SessionToken>", "<SessionToken>[REDACTED]</SessionToken>"),
        (
            "Authorization: AWS4-HMAC-SHA256 Credential=ASIAQ7EXAMPLEROLLBOT/20250101/us-east-1/ecs/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "Authorization: AWS4-HMAC-SHA256 Credential=[REDACTED], SignedHeaders=host;x-amz-date, "
            "Signature=[REDACTED]",
        ),
        (
            "https://bucket.s3.amazonaws.com/k?X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20250101&X-Amz-Signature=ab12",
            "https://bucket.s3.amazonaws.com/k?X-Amz-Credential=[REDACTED]&X-Amz-Signature=[REDACTED]",
        ),
        ("Authorization: Bearer am-webhook-token.v1", "Authorization: Bearer [REDACTED]"),
        ("Authorization: Basic cm9sbGJvdDpodW50ZXIy", "Authorization: Basic [REDACTED]"),
        ("token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyb2xsYm90In0.c2lnbmF0dXJl end", "token [REDACTED] end"),
    ],
)
def test_secret_shapes_are_redacted_and_their_context_kept(line: str, shown: str) -> None:
    redactor = Redactor()

    assert redactor.text(line) == shown
    assert redactor.text(shown) == shown  # the rendered line passes through again


@pytest.mark.parametrize(
    "line",
    [
        "https://ecs.us-east-1.amazonaws.com:443/path@v2",
        "Calculating signature using v4 auth.",
        "Found credentials in environment variables.",
        "signature_version=v4",
        "rolled workshop back to revision 3 (deployed)",
    ],
)
def test_ordinary_text_is_left_alone(line: str) -> None:
    assert Redactor().text(line) == line


def test_configured_values_are_redacted_wherever_they_appear() -> None:
    redactor = Redactor([SECRET_ACCESS_KEY, SESSION_TOKEN])

    shown = redactor.text(f"secret {SECRET_ACCESS_KEY} and token={SESSION_TOKEN[:4]} {SESSION_TOKEN}")

    assert shown == f"secret {REDACTED} and token={SESSION_TOKEN[:4]} {REDACTED}"


# ------------------------------------------------------------------ through the logging pipeline


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    names = ("slack_bolt", "slack_sdk", "slack", "waitress.queue", *VENDOR_LOGGERS)
    saved_levels = {name: logging.getLogger(name).level for name in names}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)
    for name, level in saved_levels.items():
        logging.getLogger(name).setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def test_aws_and_redis_secrets_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    monkeypatch.setenv("REDIS_URL", "redis://:p%40ssw0rd-1@127.0.0.1:6379/0")
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)

    # Bare values, without any shape that would give them away: only the configured literals catch them.
    get_logger("x").info("leak", values=[SECRET_ACCESS_KEY, SESSION_TOKEN, "p@ssw0rd-1", "p%40ssw0rd-1"])

    output = stream.getvalue()
    for secret in (SECRET_ACCESS_KEY, SESSION_TOKEN, "p@ssw0rd-1", "p%40ssw0rd-1"):
        assert secret not in output
    assert json.loads(output)["values"] == [REDACTED] * 4


def test_fields_named_like_secrets_are_redacted_and_the_line_stays_json(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", secrets=[], stream=stream)

    get_logger("x").info("assumed", session_token="FQoG", password=12345678, credentials={"SecretAccessKey": "k"})
    logging.getLogger("y").info("extra", extra={"aws_secret_access_key": "abc", "signature_version": "v4"})

    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["session_token"] == first["password"] == REDACTED
    assert first["credentials"] == {"SecretAccessKey": REDACTED}
    assert second["aws_secret_access_key"] == REDACTED
    assert second["signature_version"] == "v4"


def test_an_unknown_log_level_is_refused_with_the_levels_to_use(restore_logging: None) -> None:
    with pytest.raises(ValueError, match="use DEBUG, INFO, WARNING or ERROR"):
        configure_logging("verbose", stream=io.StringIO())


# ------------------------------------------------------------------ a real process, botocore at DEBUG

# The bot's logging set up as `rollbot serve` does (bot.cli.start_logging), then the AWS calls the ECS backend
# makes: ECS, and STS for a target with a role (its answer carries fresh credentials, logged as the response body).
PROBE = """
import json, logging, sys
import boto3
from bot.cli import start_logging
from bot.settings import Settings

settings = Settings()
start_logging(settings)
logging.getLogger("rollbot.probe").info("operation store at %s", settings.redis_url)
boto3.client("ecs").list_clusters()
answer = boto3.client("sts").assume_role(RoleArn="arn:aws:iam::123456789012:role/rollbot", RoleSessionName="probe")
credentials = answer["Credentials"]
with open(sys.argv[1], "w") as issued:
    json.dump([credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"]], issued)
"""


@pytest.fixture(scope="module")
def aws() -> Iterator[AwsWorld]:
    with AwsWorld() as world:
        yield world


def run_probe(aws: AwsWorld, tmp_path: Path, **env: str) -> tuple[str, list[str]]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "ROLLBOT_", "REDIS_", "AWS_"))}
    environment = clean | {
        "ROLLBOT_LOG_LEVEL": "DEBUG",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_SESSION_TOKEN": SESSION_TOKEN,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": aws.url,
        "AWS_MAX_ATTEMPTS": "1",
        "REDIS_URL": REDIS_URL,
        **env,
    }
    issued_file = tmp_path / "issued.json"
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(issued_file)],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    issued: list[str] = json.loads(issued_file.read_text())
    return result.stdout + result.stderr, issued


def log_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def assert_no_secret(output: str, issued: list[str]) -> None:
    for secret in (ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN, REDIS_PASSWORD, *issued):
        assert secret not in output


def test_at_debug_the_vendor_loggers_stay_quiet_and_nothing_secret_is_logged(aws: AwsWorld, tmp_path: Path) -> None:
    output, issued = run_probe(aws, tmp_path)

    lines = log_lines(output)
    assert_no_secret(output, issued)
    assert {"operation store at redis://:[REDACTED]@127.0.0.1:9/0"} <= {line["event"] for line in lines}
    vendors = [line for line in lines if line.get("logger", "").split(".")[0] in VENDOR_LOGGERS]
    assert vendors == []


def test_rollbot_log_vendor_debug_shows_botocore_lines_still_redacted(aws: AwsWorld, tmp_path: Path) -> None:
    output, issued = run_probe(aws, tmp_path, ROLLBOT_LOG_VENDOR="debug")

    lines = log_lines(output)
    assert_no_secret(output, issued)
    botocore = [line for line in lines if line.get("logger", "").startswith("botocore")]
    assert len(botocore) > 20
    signing = "\n".join(line["event"] for line in botocore if line["logger"] == "botocore.auth")
    assert "x-amz-security-token:[REDACTED]" in signing
    # The session token STS issued, in the response body botocore logs.
    assert any("<SessionToken>[REDACTED]</SessionToken>" in line["event"] for line in botocore)
    assert len(output.splitlines()) == len(lines)  # every line is still one JSON object
