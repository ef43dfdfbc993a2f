"""The revision a rollback of a failed one would return to, as the backend's history tells it."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.core.catalog import Target
from bot.core.detection import Signal
from bot.core.errors import BotError
from bot.core.incidents import LastGood
from bot.ports import Backend

log = logging.getLogger("rollbot.flows.incidents")


def last_good_revision(backend_of: Callable[[Target], Backend], target: Target, signal: Signal) -> LastGood | None:
    """The newest revision before the failed one; None when the history has none (or cannot be read)."""
    try:
        history = backend_of(target).history(target)
    except BotError:
        log.warning("no history for the incident card", exc_info=True)
        return None
    earlier = [r for r in history if str(r.number) != signal.revision]
    if signal.revision_number is not None:
        # Older than the failed one, current or not: after a failed `helm upgrade` the revision helm still
        # calls deployed (current) is exactly the last good one.
        earlier = [r for r in earlier if r.number < signal.revision_number]
    else:
        earlier = [r for r in earlier if not r.is_current]
    if not earlier:
        return None
    best = max(earlier, key=lambda r: r.number)
    return LastGood(revision=best.number, images=best.images)
