"""Settings: the process environment, read once at start-up, and the YAML catalog file it points at.

Everything an operator can turn is here, named as the chart and the README name it (`SLACK_BOT_TOKEN`,
`ROLLBOT_CONFIG`, …). Secrets are `SecretStr` so they never end up in a repr or a log line. Loading the
catalog file lives here too (the pure core never reads files); its errors carry the file's line numbers or
the dotted path of every problem, so `rollbot check-config` can print them as they are.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Literal

import yaml
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.core.catalog import Catalog, Duration, describe_validation_errors, parse_catalog
from bot.redis_url import RedisUrlError, parse_redis_url


def _default_replica_id() -> str:
    # Unique per process even when two replicas share a host (tests run several on one machine).
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    """The environment of one bot process. Unknown variables are ignored; secrets are never printed."""

    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, populate_by_name=True)

    slack_bot_token: SecretStr = Field(default=SecretStr(""), validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr = Field(default=SecretStr(""), validation_alias="SLACK_SIGNING_SECRET")
    # Set → Socket Mode (no public endpoint needed); unset → HTTP mode on `port`.
    slack_app_token: SecretStr | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default="https://slack.com/api/", validation_alias="SLACK_API_URL")
    # Alertmanager's bearer token for POST /webhooks/alertmanager (unset: the endpoint answers 404).
    webhook_token: SecretStr | None = Field(default=None, validation_alias="ROLLBOT_WEBHOOK_TOKEN")
    # The HMAC secret pipelines sign POST /webhooks/deploy with (unset: the endpoint answers 404).
    webhook_secret: SecretStr | None = Field(default=None, validation_alias="ROLLBOT_WEBHOOK_SECRET")
    redis_url: str = Field(default="redis://localhost:6379/0", validation_alias="REDIS_URL")
    config_path: Path | None = Field(default=None, validation_alias="ROLLBOT_CONFIG")
    # ROLLBOT_PORT wins; PORT is the platform convention (Heroku, Cloud Run) and is honoured when set.
    port: int = Field(default=3000, ge=0, le=65535, validation_alias=AliasChoices("ROLLBOT_PORT", "PORT"))
    host: str = Field(default="0.0.0.0", validation_alias="ROLLBOT_HOST")  # noqa: S104 - a pod listens on all
    slash_command: str = Field(default="/rollback", validation_alias="ROLLBOT_SLASH_COMMAND")
    # How long a rollout may take before the operation fails as timed out.
    rollout_timeout: Duration = Field(default=timedelta(minutes=10), validation_alias="ROLLBOT_ROLLOUT_TIMEOUT")
    # Concurrent rollbacks and slow command work one replica runs; Bolt's listener threads never do this work.
    executor_workers: int = Field(default=16, ge=1, validation_alias="ROLLBOT_EXECUTOR_WORKERS")
    # Slack's rate limits are per workspace, shared by every replica: each one keeps to 1/replicas of them.
    slack_replicas: int = Field(default=1, ge=1, validation_alias="ROLLBOT_SLACK_REPLICAS")
    # Speeds Slack's budgets up (60 = "per minute" becomes "per second"); only for a fake Slack in tests.
    slack_budget_scale: float = Field(default=1.0, gt=0, validation_alias="ROLLBOT_SLACK_BUDGET_SCALE")
    helm_path: str = Field(default="helm", validation_alias="ROLLBOT_HELM")
    kubeconfig: str | None = Field(default=None, validation_alias="KUBECONFIG")
    replica_id: str = Field(default_factory=_default_replica_id, validation_alias="ROLLBOT_REPLICA_ID")
    # An executing replica renews its claim every lease/3; another replica takes over after the lease lapses.
    lease: Duration = Field(default=timedelta(seconds=30), validation_alias="ROLLBOT_LEASE")
    # How often the sweeper expires due approvals and looks for orphaned operations.
    sweep_interval: Duration = Field(default=timedelta(seconds=5), validation_alias="ROLLBOT_SWEEP_INTERVAL")
    redis_key_prefix: str = Field(default="rollbot:", validation_alias="ROLLBOT_REDIS_PREFIX")
    # How long a finished operation (record, audit trail, message links) stays in Redis; in-flight ones stay.
    retention: Duration = Field(default=timedelta(days=30), validation_alias="ROLLBOT_RETENTION")
    # The global audit stream keeps about this many entries (XADD MAXLEN ~).
    audit_max: int = Field(default=1_000_000, ge=1, validation_alias="ROLLBOT_AUDIT_MAX")
    # `off` keeps this replica from watching for failed rollouts (it still serves cards' buttons and commands).
    detect: bool = Field(default=True, validation_alias="ROLLBOT_DETECT")
    # A context lease not renewed for this long lapses (renewed every third of it): takeover within ~4/3 of it.
    detect_lease: Duration = Field(default=timedelta(seconds=15), validation_alias="ROLLBOT_DETECT_LEASE")
    log_level: str = Field(default="INFO", validation_alias="ROLLBOT_LOG_LEVEL")
    # `debug`: botocore, boto3, urllib3, kubernetes… follow ROLLBOT_LOG_LEVEL (still redacted); else WARNING.
    log_vendor: Literal["quiet", "debug"] = Field(default="quiet", validation_alias="ROLLBOT_LOG_VENDOR")

    @field_validator("log_vendor", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        # An empty variable (a chart value left blank) means the default.
        return (value.strip().lower() or "quiet") if isinstance(value, str) else value

    @field_validator("slash_command")
    @classmethod
    def _leading_slash(cls, value: str) -> str:
        return value if value.startswith("/") else f"/{value}"

    @property
    def is_socket_mode(self) -> bool:
        return self.slack_app_token is not None and bool(self.slack_app_token.get_secret_value())

    def serve_problems(self) -> list[str]:
        """What keeps `rollbot serve` from starting, as lines for the operator (empty when ready)."""
        problems: list[str] = []
        if not self.slack_bot_token.get_secret_value():
            problems.append("SLACK_BOT_TOKEN is empty")
        if not self.is_socket_mode and not self.slack_signing_secret.get_secret_value():
            # Bolt would answer every request 500 with an empty secret; refuse to start instead.
            problems.append(
                "SLACK_SIGNING_SECRET is empty (required in HTTP mode; set SLACK_APP_TOKEN for Socket Mode)"
            )
        app_token = self.slack_app_token.get_secret_value() if self.slack_app_token is not None else ""
        if app_token and not app_token.startswith("xapp-"):
            problems.append("SLACK_APP_TOKEN must be an app-level token (xapp-…) with connections:write")
        if self.config_path is None:
            problems.append("ROLLBOT_CONFIG is not set (path of the YAML catalog)")
        try:
            parse_redis_url(self.redis_url)
        except RedisUrlError as exc:
            problems.append(str(exc))
        if self.retention <= timedelta(0):
            problems.append("ROLLBOT_RETENTION must be positive, e.g. 30d or 12h")
        return problems


class CatalogFileError(Exception):
    """The catalog file is missing, is not YAML, or does not validate; `problems` holds one line each."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(f"{path}: " + "; ".join(problems))
        self.path = path
        self.problems = problems


def load_catalog_file(path: Path) -> Catalog:
    """Read and validate the YAML catalog. Raises CatalogFileError with every problem found."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogFileError(path, [f"cannot read the file: {exc.strerror or exc}"]) from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogFileError(path, [_describe_yaml_error(exc)]) from exc
    if document is not None and not isinstance(document, dict):
        raise CatalogFileError(path, ["the top level must be a mapping with `defaults` and `targets`"])
    try:
        return parse_catalog(document)
    except ValidationError as exc:
        raise CatalogFileError(path, describe_validation_errors(exc)) from exc


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: YAML syntax error: {problem}"
    return f"YAML syntax error: {problem}"
