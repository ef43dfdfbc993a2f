"""The sweeper: what no event triggers. Run every few seconds by every replica.

It expires requests nobody approved in time, recounts votes whose events were lost, hands approved or
rolling-back operations whose replica died to this replica's executor, and replays gestures a gone replica
acknowledged but never handled.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from bot.core.lifecycle import ExpiryDue
from bot.core.operations import Operation, OperationId, Phase
from bot.flows.execution import Executor
from bot.flows.journal import Journal
from bot.flows.votes import Votes
from bot.ports import Clock, OperationStore

log = logging.getLogger("rollbot.flows")

# An APPROVED operation nobody claimed for this long was left behind by a replica that died before claiming.
UNCLAIMED_GRACE: Final = timedelta(seconds=10)
# How often the sweeper recounts the votes on a request message from Slack itself (reactions.get is tier 3), so a
# reaction event that Slack never delivered (or delivered out of order) still counts.
RECONCILE_INTERVAL: Final = timedelta(seconds=30)


class Sweeper:
    def __init__(
        self,
        *,
        journal: Journal,
        votes: Votes,
        executor: Executor,
        store: OperationStore,
        clock: Clock,
        replica_id: str,
        adopt_gestures: Callable[[], int],
    ) -> None:
        self._journal = journal
        self._votes = votes
        self._executor = executor
        self._store = store
        self._clock = clock
        self._replica_id = replica_id
        self._adopt_gestures = adopt_gestures
        self._mutex = threading.Lock()
        self._reconciled: dict[OperationId, datetime] = {}  # when each request's votes were last recounted

    def sweep(self, *, at_startup: bool = False) -> int:
        """Expire due approvals; hand orphaned operations to the executor. Returns how many were handed on."""
        handed = 0
        try:
            self._adopt_gestures()
        except Exception:
            log.exception("adopting parked gestures failed")
        now = self._clock.now()
        in_flight = self._store.in_flight()
        with self._mutex:
            # Forget recount times of operations that have finished, so the map stays as small as the journal.
            still_open = {operation.id for operation in in_flight}
            self._reconciled = {key: at for key, at in self._reconciled.items() if key in still_open}
        for operation in in_flight:
            try:
                if operation.phase is Phase.AWAITING_APPROVAL and now >= operation.expires_at:
                    self._journal.decide(operation.id, ExpiryDue())
                elif self._reconcile_due(operation, now):
                    self._votes.reconcile(operation.id)
                elif self._is_orphaned(operation, now, at_startup):
                    handed += 1
                    self._executor.hand_over(operation.id)
            except Exception:
                log.exception("sweeping an operation failed", extra={"operation_id": operation.id})
        return handed

    def _reconcile_due(self, operation: Operation, now: datetime) -> bool:
        # Only while votes are still being collected: an APPROVED operation is claimed within seconds.
        if operation.phase is not Phase.AWAITING_APPROVAL or operation.request_message is None:
            return False
        with self._mutex:
            last = self._reconciled.get(operation.id)
            if last is not None and now - last < RECONCILE_INTERVAL:
                return False
            self._reconciled[operation.id] = now
            return True

    def _is_orphaned(self, operation: Operation, now: datetime, at_startup: bool) -> bool:
        if self._executor.is_busy_with(operation.id):
            return False
        if operation.phase is Phase.APPROVED:
            return at_startup or now - operation.updated_at >= UNCLAIMED_GRACE
        if operation.phase is Phase.ROLLING_BACK:
            if at_startup and operation.executor == self._replica_id:
                return True  # our own previous life: nobody else is running it
            return operation.lease_until is None or operation.lease_until <= now
        return False
