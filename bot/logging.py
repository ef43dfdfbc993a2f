"""Structured logs: one JSON object per line on stdout, carrying the operation id, never a secret.

Both structlog loggers and the standard library's (slack_bolt, slack_sdk, waitress, redis…) end in the same
processor chain, so every line has the same shape and passes through the same redaction. Redaction works twice:
on the event dict (strings, nested dicts, lists, exception text) and once more on the rendered line, so a
token hidden in an object's repr cannot slip through either.

What counts as a secret is described on `Redactor`: configured values (Slack tokens and signing secret, AWS
secret key and session token, the Redis password) and secret-shaped text (tokens, AWS key ids and signatures,
URL passwords, bearer tokens). The `rollbot` command prints its errors through the same `Redactor`.

Bolt logs the raw request body at INFO when a signature is wrong (slack.md §1.3), and slack_sdk logs request
arguments at DEBUG; both loggers are held at WARNING whatever the bot's own level is. botocore, boto3,
s3transfer, urllib3 and kubernetes print signed requests and response bodies at DEBUG; they are held at WARNING
too unless the operator asks for them (ROLLBOT_LOG_VENDOR=debug), and even then every line is redacted.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[REDACTED]"
# Environment variables whose values are secrets wherever they show up, even without a token-like shape.
SECRET_ENVIRONMENT = (
    "SLACK_SIGNING_SECRET",
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "ROLLBOT_WEBHOOK_TOKEN",
    "ROLLBOT_WEBHOOK_SECRET",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",  # the older name of AWS_SESSION_TOKEN, still read by botocore
)
# Environment variables holding URLs whose password is a secret (`redis://:PASSWORD@host`).
SECRET_URL_ENVIRONMENT = ("REDIS_URL",)
# Shorter values would redact ordinary words; a signing secret is 32 hex characters. Shorter passwords are
# still hidden wherever they appear inside a URL (see URL_PASSWORD).
MIN_SECRET_LENGTH = 8

# Held below WARNING whatever the bot's level: Bolt logs the raw request body at INFO when a signature is wrong,
# slack_sdk logs request arguments at DEBUG, and waitress logs every queued request as "Task queue depth".
QUIET_LOGGERS = {
    "slack_bolt": logging.WARNING,
    "slack_sdk": logging.WARNING,
    "slack": logging.WARNING,
    "waitress.queue": logging.ERROR,
}
# Held at WARNING unless ROLLBOT_LOG_VENDOR=debug: at DEBUG botocore prints every signed request (session token,
# credential, signature) and response body, kubernetes.client.rest every response body, urllib3 every URL.
VENDOR_LOGGERS = {name: logging.WARNING for name in ("botocore", "boto3", "s3transfer", "urllib3", "kubernetes")}

# Slack tokens: bot/user/app-config/refresh tokens (xoxb-, xoxp-, xoxa-, xoxr-, xoxe-) and app-level tokens (xapp-).
TOKEN_PATTERN = re.compile(r"xox[abprse]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+")
# AWS access key ids: long-term (AKIA) and temporary (ASIA).
AWS_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
# JSON Web Tokens (Kubernetes service-account tokens, OIDC web-identity tokens): header.payload.signature.
JWT_PATTERN = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
# `scheme://user:PASSWORD@host`, including `redis://:PASSWORD@host` and `redis+sentinel://:PASSWORD@h1,h2/…`.
# A password in a working URL cannot hold an unescaped `@ / ? #` (they end the authority), so neither may the match.
URL_PASSWORD = re.compile(r"(?P<keep>\b[a-z][a-z0-9+.-]*://[^\s:/?#@]*:)[^\s@/?#]+(?=@)", re.IGNORECASE)
# Names whose value is a secret, in every notation a log line uses: `name=value`, `name: value`, `'name': 'value'`,
# `"name": "value"` (also JSON-escaped inside a rendered line), `b'value'`, and canonical headers (`name:value`).
# `Credential=` and `Signature=` are the secret parts of an `Authorization: AWS4-HMAC-SHA256 …` header and of a
# presigned URL (`X-Amz-Credential`, `X-Amz-Signature`).
SECRET_NAMES = "|".join(
    (
        "aws_secret_access_key",
        "secret_?access_?key",
        "aws_session_token",
        "session_?token",
        "aws_security_token",
        "x-amz-security-token",
        "security_?token",
        "web_?identity_?token",
        "x-amz-credential",
        "x-amz-signature",
        "credential",
        "signature",
        "password",
        "passwd",
    )
)
SECRET_KEY_VALUE = re.compile(
    rf"(?P<keep>(?<![A-Za-z0-9])(?:{SECRET_NAMES})"
    r"(?:\\?['\"])?\s*[:=]\s*(?:b?\\?['\"])?)"
    r"[^\s'\",;&<>\\]+",
    re.IGNORECASE,
)
# A structured field (`log.info(…, session_token=…)`, `extra={"password": …}`, a nested dict) named like a secret:
# its whole value goes, whatever its type, so the rendered JSON stays valid.
SECRET_FIELD = re.compile(rf"(?:{SECRET_NAMES})", re.IGNORECASE)
# The same secrets in XML, as STS answers them (`<SessionToken>…</SessionToken>`) and botocore logs the body.
SECRET_XML_ELEMENT = re.compile(
    r"(?P<keep><(?P<tag>SecretAccessKey|SessionToken|SecurityToken|WebIdentityToken|Password)>)[^<]*(?=</(?P=tag)>)",
    re.IGNORECASE,
)
# `Authorization: Bearer …` (webhook and Kubernetes tokens) and `Authorization: Basic …`.
AUTHORIZATION_TOKEN = re.compile(
    r"(?P<keep>\bBearer\s+|\bauthorization(?:\\?['\"])?\s*[:=]\s*(?:b?\\?['\"])?Basic\s+)[A-Za-z0-9._~+/=-]+",
    re.IGNORECASE,
)
# Secret-shaped text that is redacted whole, and shapes where only the secret part is (`keep` stays).
SECRET_SHAPES = (TOKEN_PATTERN, AWS_ACCESS_KEY_ID, JWT_PATTERN)
SECRET_CONTEXTS = (URL_PASSWORD, SECRET_KEY_VALUE, SECRET_XML_ELEMENT, AUTHORIZATION_TOKEN)


def _keep_context(match: re.Match[str]) -> str:
    return match.group("keep") + REDACTED


class Redactor:
    """Replaces secrets by ``[REDACTED]``, in strings and nested containers.

    Three kinds: the configured literal values (tokens, the signing secret, AWS keys, the Redis password); text
    shaped like a secret (Slack tokens, AWS access key ids, JWTs); and the secret part of a known context (a URL's
    password, `aws_secret_access_key=…`, `X-Amz-Security-Token: …`, `"SessionToken": "…"`, an AWS4 signature's
    credential and signature, `Bearer …`), which keeps the context so the line still says what was hidden.
    Redacting twice gives the same text, so the event dict and the rendered line can both pass through.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        literal = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        alternatives = [re.escape(s) for s in literal] + [shape.pattern for shape in SECRET_SHAPES]
        self._whole = re.compile("|".join(alternatives))

    def text(self, value: str) -> str:
        value = self._whole.sub(REDACTED, value)
        for context in SECRET_CONTEXTS:
            value = context.sub(_keep_context, value)
        return value

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes):
            return self.text(value.decode("utf-8", "replace"))
        if isinstance(value, Mapping):
            return {self.value(k): self._field(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(v) for v in value]
        if isinstance(value, int | float | bool) or value is None:
            return value
        # Anything else is rendered now, so its repr is redacted too.
        return self.text(repr(value))

    def _field(self, key: object, value: Any) -> Any:
        if isinstance(key, str) and SECRET_FIELD.fullmatch(key) and value is not None:
            return REDACTED
        return self.value(value)

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        return {key: self._field(key, val) for key, val in event_dict.items()}


class RedactingRenderer:
    """The JSON renderer, with a last redaction pass over the finished line."""

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._render = structlog.processors.JSONRenderer()

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> str:
        rendered = self._render(logger, method_name, event_dict)
        return self._redactor.text(rendered if isinstance(rendered, str) else rendered.decode())


class _VendorFloor(logging.Filter):
    """Drops vendor records below their floor.

    A handler filter, because Bolt copies the root logger's level onto each logger it creates
    (`slack_bolt.logger._configure_from_root`), so the level set on `slack_bolt` alone does not hold.
    """

    def __init__(self, floors: Mapping[str, int]) -> None:
        super().__init__()
        self._floors = dict(floors)

    def filter(self, record: logging.LogRecord) -> bool:
        for prefix, floor in self._floors.items():
            if record.name == prefix or record.name.startswith(prefix + "."):
                return record.levelno >= floor
        return True


def _message_from_record(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Stdlib records arrive with the formatted message; name the source logger like structlog lines do."""
    record = event_dict.get("_record")
    if record is not None:
        event_dict.setdefault("logger", record.name)
    return event_dict


def url_passwords(url: str) -> list[str]:
    """The password of `url` as written and percent-decoded (clients log either); none if it has none."""
    try:
        password = urlsplit(url).password
    except ValueError:  # not a URL at all; the URL_PASSWORD shape still covers it
        return []
    return [password, unquote(password)] if password else []


def secrets_from_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """The secret values configured in the environment: SECRET_ENVIRONMENT, and the password of REDIS_URL."""
    environ = os.environ if environ is None else environ
    secrets = [environ[name] for name in SECRET_ENVIRONMENT if environ.get(name)]
    for name in SECRET_URL_ENVIRONMENT:
        secrets += url_passwords(environ.get(name, ""))
    return secrets


def configure_logging(
    level: str | int = "INFO",
    *,
    secrets: Iterable[str] | None = None,
    stream: TextIO | None = None,
    vendor_debug: bool = False,
) -> Redactor:
    """Route structlog and stdlib logging to JSON lines on `stream` (stdout), redacting secrets.

    `secrets` are literal values to hide (the signing secret, tokens); by default those configured in the
    environment (`secrets_from_environment`). Secret-shaped text is hidden regardless. The vendor loggers
    (VENDOR_LOGGERS) stay at WARNING unless `vendor_debug` (ROLLBOT_LOG_VENDOR=debug), when they follow `level`;
    their lines are redacted like every other. Safe to call again (tests do): it replaces the previous one.
    """
    redactor = Redactor(secrets_from_environment() if secrets is None else secrets)
    numeric_level = logging.getLevelName(level.strip().upper()) if isinstance(level, str) else level
    if not isinstance(numeric_level, int):
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.add_logger_name,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        # ExtraAdder: stdlib callers (the flow, handlers) pass fields as `extra={...}`; they become keys too.
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _message_from_record],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redactor,
            RedactingRenderer(redactor),
        ],
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(formatter)
    floors = QUIET_LOGGERS if vendor_debug else QUIET_LOGGERS | VENDOR_LOGGERS
    handler.addFilter(_VendorFloor(floors))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name, floor in floors.items():
        logging.getLogger(name).setLevel(max(floor, numeric_level))
    if vendor_debug:
        for name in VENDOR_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)  # follow the root, i.e. the bot's level
    return redactor


@contextmanager
def operation_context(operation_id: str, **extra: Any) -> Iterator[None]:
    """Every log line inside the block carries `operation_id` (contextvars: follows the thread, not the logger)."""
    with structlog.contextvars.bound_contextvars(operation_id=operation_id, **extra):
        yield


def bind_operation(operation_id: str) -> None:
    """Bind `operation_id` for the rest of the current context (e.g. an executor job); see `operation_context`."""
    structlog.contextvars.bind_contextvars(operation_id=operation_id)


def unbind_operation() -> None:
    structlog.contextvars.unbind_contextvars("operation_id")


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
