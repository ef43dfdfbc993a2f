"""The last resort: anything a listener let escape is logged here; Slack never sees a traceback."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App

log = logging.getLogger("rollbot.handlers")


def register_error_handler(app: App) -> None:
    @app.error
    def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error(
            "unhandled error in a listener",
            exc_info=(type(error), error, error.__traceback__),
            extra={"request_type": body.get("type") or ("command" if "command" in body else "unknown")},
        )
