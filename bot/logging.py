"""Structured logs: one JSON object per line on stdout, carrying the operation id, never a secret.

Both structlog loggers and the standard library's (slack_bolt, slack_sdk, waitress, redis…) end in the same
processor chain, so every line has the same shape and passes through the same redaction. Redaction works twice:
on the event dict (strings, nested dicts, lists, exception text) and once more on the rendered line, so a
token hidden in an object's repr cannot slip through either.

Bolt logs the raw request body at INFO when a signature is wrong (slack.md §1.3), and slack_sdk logs request
arguments at DEBUG; both loggers are held at WARNING whatever the bot's own level is.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

# Slack tokens: bot/user/app-config/refresh tokens (xoxb-, xoxp-, xoxa-, xoxr-, xoxe-) and app-level tokens (xapp-).
TOKEN_PATTERN = re.compile(r"xox[abprse]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+")
REDACTED = "[REDACTED]"
# Environment variables whose values are secrets wherever they show up, even without a token-like shape.
SECRET_ENVIRONMENT = ("SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN")
# Vendor loggers that print request bodies or arguments below WARNING (Bolt, slack_sdk), or chatter at WARNING
# about normal load (waitress logs every queued request as "Task queue depth").
QUIET_LOGGERS = {
    "slack_bolt": logging.WARNING,
    "slack_sdk": logging.WARNING,
    "slack": logging.WARNING,
    "urllib3": logging.WARNING,
    "waitress.queue": logging.ERROR,
}
# Shorter values would redact ordinary words; a signing secret is 32 hex characters.
MIN_SECRET_LENGTH = 8


class Redactor:
    """Replaces Slack tokens and the configured secrets by ``[REDACTED]``, in strings and nested containers."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        literal = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        alternatives = [re.escape(s) for s in literal] + [TOKEN_PATTERN.pattern]
        self._pattern = re.compile("|".join(alternatives))

    def text(self, value: str) -> str:
        return self._pattern.sub(REDACTED, value)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes):
            return self.text(value.decode("utf-8", "replace"))
        if isinstance(value, Mapping):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(v) for v in value]
        if isinstance(value, int | float | bool) or value is None:
            return value
        # Anything else is rendered now, so its repr is redacted too.
        return self.text(repr(value))

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        return {key: self.value(val) for key, val in event_dict.items()}


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

    def filter(self, record: logging.LogRecord) -> bool:
        for prefix, floor in QUIET_LOGGERS.items():
            if record.name == prefix or record.name.startswith(prefix + "."):
                return record.levelno >= floor
        return True


def _message_from_record(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Stdlib records arrive with the formatted message; name the source logger like structlog lines do."""
    record = event_dict.get("_record")
    if record is not None:
        event_dict.setdefault("logger", record.name)
    return event_dict


def _secrets_from_environment() -> list[str]:
    return [os.environ[name] for name in SECRET_ENVIRONMENT if os.environ.get(name)]


def configure_logging(
    level: str | int = "INFO",
    *,
    secrets: Iterable[str] | None = None,
    stream: TextIO | None = None,
) -> Redactor:
    """Route structlog and stdlib logging to JSON lines on `stream` (stdout), redacting secrets.

    `secrets` are literal values to hide (the signing secret, tokens); by default the values of
    SLACK_SIGNING_SECRET, SLACK_BOT_TOKEN and SLACK_APP_TOKEN. Token-shaped strings are hidden regardless.
    Safe to call again (tests do): it replaces the previous configuration.
    """
    redactor = Redactor(_secrets_from_environment() if secrets is None else secrets)
    numeric_level = logging.getLevelName(level.upper()) if isinstance(level, str) else level
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
    handler.addFilter(_VendorFloor())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name, floor in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(floor, numeric_level))
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
