"""The webhook intake: Alertmanager's alerts and pipelines' deploy reports become incident events.

The HTTP adapter (bot/adapters/webhooks.py) authenticates and parses; this flow decides, with the pure rules of
`bot.core.intake`, which workload each report is about, and hands the incident work to `IncidentFlow` (one card
per incident, whoever reported it first: the watch, an alert or a pipeline).

Exactly-once: each alert delivery is claimed in the `DeliveryLedger` under (groupKey, fingerprint, status) before
it is handled and released when handling fails, so Alertmanager's retry of a failed delivery is handled again,
while its routine redeliveries (every `group_interval`/`repeat_interval`) change nothing. A store that does not
answer raises `StoreUnavailable`: the adapter answers 503 and the sender retries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from bot.core.catalog import Catalog, Target, WorkloadKind
from bot.core.commands import TargetRef
from bot.core.detection import Signal
from bot.core.errors import BotError, UserError
from bot.core.incidents import (
    AlertFiring,
    AlertResolved,
    Detected,
    Incident,
    IncidentSource,
    IncidentState,
    NewerRevision,
    can_reopen,
    incident_key,
)
from bot.core.intake import (
    DELIVERY_MEMORY,
    AlertmanagerAlert,
    AlertmanagerPayload,
    DeployReport,
    MatchedWorkload,
    Unmatched,
    alert_delivery_key,
    alert_signal,
    match_alert,
    match_report,
    report_signal,
)
from bot.core.targets import resolve_target
from bot.flows.incidents import IncidentFlow
from bot.ports import Backend, Clock, DeliveryLedger, IncidentStore, IntakeMetrics

log = logging.getLogger("rollbot.flows.intake")


@dataclass(frozen=True)
class AlertsReceipt:
    """What one Alertmanager delivery did, for the response body and the log."""

    handled: int = 0
    duplicates: int = 0
    unmatched: int = 0


class UnknownReportTarget(UserError):
    """A pipeline named a target the catalog does not have, or one without an incident channel."""


class WebhookIntake:
    def __init__(
        self,
        *,
        incidents: IncidentFlow,
        store: IncidentStore,
        ledger: DeliveryLedger,
        catalog: Catalog,
        clock: Clock,
        metrics: IntakeMetrics,
        backend_of: Callable[[Target], Backend],
    ) -> None:
        self._incidents = incidents
        self._backend_of = backend_of
        self._store = store
        self._ledger = ledger
        self._catalog = catalog
        self._clock = clock
        self._metrics = metrics

    # --- Alertmanager ----------------------------------------------------------------------------------------

    def on_alerts(self, payload: AlertmanagerPayload) -> AlertsReceipt:
        handled = duplicates = unmatched = 0
        for alert in payload.alerts:
            match = match_alert(alert.labels, self._catalog)
            if isinstance(match, Unmatched):
                unmatched += 1
                self._metrics.alert_unmatched(match.reason)
                log.info(
                    "alert names no target rollbot knows",
                    extra={"alertname": alert.alertname, "why": match.reason, "labels": alert.labels},
                )
                continue
            key = alert_delivery_key(payload.groupKey, alert)
            if not self._ledger.claim(key, DELIVERY_MEMORY):
                duplicates += 1
                continue
            try:
                self._on_alert(alert, match)
            except BaseException:
                self._ledger.release(key)  # not handled: Alertmanager's retry must be handled, not skipped
                raise
            handled += 1
        return AlertsReceipt(handled, duplicates, unmatched)

    def _on_alert(self, alert: AlertmanagerAlert, match: MatchedWorkload) -> None:
        live = self._live(match)
        if alert.status == "resolved":
            if live is not None:
                self._incidents.apply_event(live.id, AlertResolved(alert.alertname, not match.is_watched))
            return
        if live is not None:
            self._incidents.apply_event(live.id, AlertFiring(alert.alertname))
            return
        revision = self._current_revision(match)
        self._open_or_reopen(
            match, alert_signal(alert, revision), IncidentSource.ALERTMANAGER, alert.link, alert.alertname
        )

    # --- pipelines -------------------------------------------------------------------------------------------

    def on_deploy(self, report: DeployReport) -> str:
        """Handle a pipeline's report; returns what happened, in a few words for the pipeline's log."""
        match = match_report(report, self._catalog)
        if isinstance(match, Unmatched):
            if match.reason == "no_channel":
                raise UnknownReportTarget(
                    f"target {report.target!r} has no incident channel: set targets.{report.target}.detect.channel "
                    "or defaults.detect.channel"
                )
            raise UnknownReportTarget(f"unknown target {report.target!r}: it is not in the catalog")
        live = self._live(match)
        if report.status == "succeeded":
            if live is None or report.revision is None or report.revision == live.revision:
                return "noted: no open incident for another revision"
            self._incidents.apply_event(live.id, NewerRevision(report.revision))
            return f"incident {live.id} resolved: superseded by revision {report.revision}"
        signal = report_signal(report, self._clock.now())
        if live is not None and live.revision == signal.revision:
            return f"incident {live.id} is already open"
        if live is not None:
            self._incidents.apply_event(live.id, NewerRevision(signal.revision))
        incident = self._open_or_reopen(match, signal, IncidentSource.PIPELINE, report.url, None)
        return f"incident {incident.id} opened" if incident is not None else "incident opened"

    # --- shared ----------------------------------------------------------------------------------------------

    def _current_revision(self, match: MatchedWorkload) -> str | None:
        """The workload's current revision as its backend's history says (an alert never names one)."""
        workload = match.workload
        try:
            target = self._catalog.get(match.target) if match.target is not None else None
            if target is None:
                ref = TargetRef.workload(WorkloadKind(workload.kind), workload.name, workload.namespace)
                target = resolve_target(ref, self._catalog)
            history = self._backend_of(target).history(target)
        except BotError:
            log.warning("no history for an alert's incident", exc_info=True)
            return None
        current = [revision for revision in history if revision.is_current]
        return str(current[0].number) if current else None

    def _live(self, match: MatchedWorkload) -> Incident | None:
        latest = self._store.find_by_workload(match.workload.key)
        return latest if latest is not None and latest.state is not IncidentState.RESOLVED else None

    def _open_or_reopen(
        self,
        match: MatchedWorkload,
        signal: Signal,
        source: IncidentSource,
        link: str | None,
        alertname: str | None,
    ) -> Incident | None:
        existing = self._store.find_by_key(incident_key(match.workload, signal.revision))
        if existing is not None and can_reopen(existing, self._clock.now()):
            incident = self._incidents.apply_event(existing.id, Detected(signal))
        else:
            assert match.settings.channel is not None  # matching refuses targets without a channel
            incident = self._incidents.open_reported(
                match.workload,
                match.target,
                signal,
                match.settings.channel,
                source=source,
                link=link,
                alerts_firing=(alertname,) if alertname else (),
            )
            if incident is None or incident.source is source:
                return incident
        if incident is not None and alertname is not None:
            incident = self._incidents.apply_event(incident.id, AlertFiring(alertname))
        return incident


__all__ = ["AlertsReceipt", "UnknownReportTarget", "WebhookIntake"]
