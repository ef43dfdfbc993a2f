"""The revision a rollback of a failed one would return to, as the backend's history tells it."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.core.catalog import Target
from bot.core.detection import Signal
from bot.core.errors import BotError
from bot.core.incidents import LastGood
from bot.core.last_good import last_good_in
from bot.ports import Backend

log = logging.getLogger("rollbot.flows.incidents")


def last_good_revision(backend_of: Callable[[Target], Backend], target: Target, signal: Signal) -> LastGood | None:
    """The newest revision before the failed one; None when the history has none (or cannot be read)."""
    try:
        history = backend_of(target).history(target)
    except BotError:
        log.warning("no history for the incident card", exc_info=True)
        return None
    return last_good_in(history, signal)
