"""Verification of successful rollbacks: healthy for `healthy_for` afterwards, or failing again.

When any single-target rollback succeeds, `start` records `verification: pending` on the operation and a pending
verification in the store; the replica that watches the target's context (`seen` knows its last sighting) judges
it with fresh rule memory until it is healthy for `healthy_for` or failing again, and says so in the operation's
thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from bot.core.catalog import Catalog, DetectSettings
from bot.core.detected_targets import FoundWorkload, detect_settings_for
from bot.core.detection import Observations, Sighting, verify_rollback
from bot.core.errors import BotError
from bot.core.messages import plain
from bot.core.messages.incidents import verification_line
from bot.core.operations import Operation, OperationId
from bot.core.watch_plan import judge_sighting, target_workload
from bot.ports import Chat, Clock, IncidentStore, OperationStore, PendingVerification

log = logging.getLogger("rollbot.flows.incidents")


class VerificationRecords(Protocol):
    def record_verification(self, operation_id: OperationId, state: str) -> None: ...


class Verifications:
    def __init__(
        self,
        *,
        store: IncidentStore,
        operations: OperationStore,
        chat: Chat,
        clock: Clock,
        catalog: Catalog,
        seen: Callable[[str], tuple[Sighting, DetectSettings] | None],
        rollbacks: Callable[[], VerificationRecords | None],
    ) -> None:
        self._store = store
        self._operations = operations
        self._chat = chat
        self._clock = clock
        self._catalog = catalog
        self._seen = seen
        self._rollbacks = rollbacks
        self._mutex = threading.Lock()
        # Fresh rule memory per verified operation, from the moment its verification started here.
        self._verifying: dict[OperationId, Observations] = {}

    def start(self, operation: Operation) -> None:
        workload = target_workload(operation.target, self._catalog)
        if workload is None:
            return
        found = FoundWorkload(
            backend=workload.backend,
            location=workload.location,
            kind=workload.kind,
            namespace=workload.namespace,
            name=workload.name,
        )
        settings = detect_settings_for(self._catalog, found)
        if settings is None or not settings.is_active:
            return  # nobody watches it: nothing could verify it
        rollbacks = self._rollbacks()
        if rollbacks is not None:
            rollbacks.record_verification(operation.id, "pending")
        self._store.add_verification(
            PendingVerification(operation_id=operation.id, workload_key=workload.key, started_at=self._clock.now())
        )

    def run_pending(self) -> None:
        pending = self._store.pending_verifications()
        if not pending:
            return
        now = self._clock.now()
        for item in pending:
            seen = self._seen(item.workload_key)
            if seen is None:
                continue  # another replica watches that context (or nobody has seen it yet)
            sighting, settings = seen
            with self._mutex:
                memory = self._verifying.get(item.operation_id, Observations())
                verdict = judge_sighting(sighting, now, settings, memory)
                self._verifying[item.operation_id] = verdict.observations
            verification = verify_rollback(verdict, item.started_at, now, settings)
            if not verification.is_finished:
                continue
            operation = self._operations.get(item.operation_id)
            self._store.finish_verification(item)
            with self._mutex:
                self._verifying.pop(item.operation_id, None)
            if operation is None:
                continue
            rollbacks = self._rollbacks()
            if rollbacks is not None:
                rollbacks.record_verification(operation.id, verification.state.value)
            # The request message is the thread's parent; the progress message is a reply in it, and Slack
            # refuses a reply to a reply (the line would land in the channel instead).
            thread = operation.request_message or operation.progress_message
            if thread is not None:
                try:
                    self._chat.post(operation.channel, plain(verification_line(verification)), thread)
                except BotError:
                    log.warning("a Slack call about an incident failed", exc_info=True)
