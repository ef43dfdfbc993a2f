"""The revision an incident's rollback returns to, as the backend's history tells it."""

from __future__ import annotations

from collections.abc import Sequence

from bot.core.detection import Signal
from bot.core.incidents import LastGood
from bot.core.rollouts import Revision


def last_good_in(history: Sequence[Revision], signal: Signal) -> LastGood | None:
    """The revision a rollback would return to: the newest one before the failed one, as history says."""
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
