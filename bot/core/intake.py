"""Failure reports from outside the cluster: Alertmanager's webhook and deploy pipelines, in catalog terms.

Two doors lead to the same incident cards as rollbot's own watch (`bot.core.incidents`):

- **Alertmanager** posts its webhook payload (version 4, detection.md §4): every alert is matched to a workload
  by label `rollbot_target` (a catalog name), else a target's `detect.alert_match` labels (all equal), else
  `namespace` + `deployment`/`statefulset`/`daemonset` naming a catalog target or a workload a `watch` scope
  covers. A delivery is identified by (groupKey, fingerprint, status): Alertmanager resends a whole group on
  every `group_interval`/`repeat_interval`, and a redelivery must change nothing.
- **Pipelines** post a signed `{target, status, revision?, url?, summary?}`: signed like Slack's requests,
  `v0=hex(HMAC-SHA256(secret, "v0:{timestamp}:{body}"))`, at most 5 minutes old.

What this is not: the HTTP handling (bot/adapters/webhooks.py) or the incident lifecycle. Everything here is pure:
parsing, matching, signatures (the caller passes `now`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.core.catalog import BackendKind, Catalog, DetectSettings, TargetName, WorkloadKind
from bot.core.detected_targets import FoundWorkload, detect_settings_for, find_target
from bot.core.detection import Signal
from bot.core.incidents import WorkloadRef
from bot.core.watch_plan import target_workload

# A signed pipeline report older (or further in the future) than this is refused: a captured request cannot be
# replayed later. Slack uses the same window for its own signatures.
SIGNATURE_MAX_AGE: Final = timedelta(minutes=5)
# Signatures are remembered this long to refuse a replay inside the window (twice the window: clocks drift).
SIGNATURE_MEMORY: Final = timedelta(minutes=10)
# A delivery key is remembered this long: longer than any sane `repeat_interval`, after which a still-firing
# alert is a (harmless) update again.
DELIVERY_MEMORY: Final = timedelta(hours=24)
SIGNATURE_VERSION: Final = "v0"
# The label that names a catalog target outright.
TARGET_LABEL: Final = "rollbot_target"
# Workload labels as kube-state-metrics and kubernetes-mixin's alerts carry them.
_WORKLOAD_LABELS: Final = {
    "deployment": WorkloadKind.DEPLOYMENT,
    "statefulset": WorkloadKind.STATEFULSET,
    "daemonset": WorkloadKind.DAEMONSET,
}
# The reason word of an alert without an alertname, and of a failed pipeline (the card's metadata `reason`).
ALERT_REASON: Final = "alert"
PIPELINE_REASON: Final = "pipeline"
# The revision of an incident reported without one (an alert never says which revision is failing).
UNKNOWN_REVISION: Final = "unknown"
# A link is shown as `<url|text>` on the card: these characters would break out of it.
_SAFE_URL: Final = re.compile(r"https?://[^\s<>|]+")


class _Payload(BaseModel):
    # Alertmanager adds fields across versions (notification_reason, routeLabels): ignore what we do not use.
    model_config = ConfigDict(extra="ignore", frozen=True)


class AlertmanagerAlert(_Payload):
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime  # noqa: N815 (Alertmanager's field names)
    generatorURL: str = ""  # noqa: N815
    fingerprint: str = ""

    @property
    def alertname(self) -> str:
        return self.labels.get("alertname") or ALERT_REASON

    @property
    def link(self) -> str | None:
        return self.generatorURL if _SAFE_URL.fullmatch(self.generatorURL) else None


class AlertmanagerPayload(_Payload):
    version: Literal["4"]
    groupKey: str  # noqa: N815
    status: Literal["firing", "resolved"]
    receiver: str = ""
    alerts: tuple[AlertmanagerAlert, ...]
    truncatedAlerts: int = 0  # noqa: N815


class DeployReport(BaseModel):
    """What a pipeline says about one deploy of one catalog target."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    target: str = Field(min_length=1, max_length=200)
    status: Literal["failed", "succeeded"]
    revision: str | None = Field(default=None, min_length=1, max_length=200)
    url: str | None = None
    summary: str | None = Field(default=None, max_length=2000)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not _SAFE_URL.fullmatch(value):
            raise ValueError("must be an http(s) URL without spaces, <, > or |")
        return value


@dataclass(frozen=True)
class MatchedWorkload:
    """Where an alert or a report lands: the workload, its catalog target (if any) and its detect settings."""

    workload: WorkloadRef
    target: TargetName | None
    settings: DetectSettings

    @property
    def is_watched(self) -> bool:
        """rollbot watches it itself: its health rule, not the alert, ends the incident. A target with
        `detect: {enabled: false, channel: …}` takes reports only: the alert's end ends its incident."""
        return self.settings.is_active


@dataclass(frozen=True)
class Unmatched:
    """Why an alert names nothing rollbot can put a card for (counted and logged, never posted)."""

    reason: Literal["no_target", "unknown_target", "no_channel"]


def match_alert(labels: dict[str, str], catalog: Catalog) -> MatchedWorkload | Unmatched:
    """The workload an alert is about, by the three rules in order; the first rule that applies decides."""
    if TARGET_LABEL in labels:
        return _catalog_target(TargetName(labels[TARGET_LABEL]), catalog)
    for name in catalog.names:
        matchers = catalog.detect_settings(name).alert_match
        if matchers and all(labels.get(label) == value for label, value in matchers.items()):
            return _catalog_target(name, catalog)
    namespace = labels.get("namespace")
    for label, kind in _WORKLOAD_LABELS.items():
        if namespace and labels.get(label):
            return _found_workload(kind, namespace, labels[label], catalog)
    return Unmatched("no_target")


def match_report(report: DeployReport, catalog: Catalog) -> MatchedWorkload | Unmatched:
    return _catalog_target(TargetName(report.target), catalog)


def alert_delivery_key(group_key: str, alert: AlertmanagerAlert) -> str:
    """One alert's state in one group: what Alertmanager resends unchanged on every repeat."""
    identity = f"{group_key}\x00{alert.fingerprint or sorted(alert.labels.items())}\x00{alert.status}"
    return hashlib.sha256(identity.encode()).hexdigest()


def alert_signal(alert: AlertmanagerAlert, revision: str | None) -> Signal:
    """The incident's signal for a firing alert: its alertname is the reason word, its summary the message."""
    message = alert.annotations.get("summary") or alert.annotations.get("description")
    return Signal(
        reason=alert.alertname,
        since=alert.startsAt,
        revision=revision or UNKNOWN_REVISION,
        revision_number=int(revision) if revision and revision.isdecimal() else None,
        messages=(message,) if message else (),
    )


def report_signal(report: DeployReport, now: datetime) -> Signal:
    revision = report.revision or UNKNOWN_REVISION
    return Signal(
        reason=PIPELINE_REASON,
        since=now,
        revision=revision,
        revision_number=int(revision) if revision.isdecimal() else None,
        messages=(report.summary,) if report.summary else (),
    )


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Rollbot-Signature` of a body sent at `timestamp` (Unix seconds, as text)."""
    base = f"{SIGNATURE_VERSION}:{timestamp}:".encode() + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def signature_problem(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, now: datetime
) -> str | None:
    """Why a signed report is refused (a short reason for the 401), or None when it is genuine and fresh."""
    if not timestamp or not signature:
        return "missing X-Rollbot-Timestamp or X-Rollbot-Signature"
    if not re.fullmatch(r"[0-9]{1,12}", timestamp.strip()):
        return "X-Rollbot-Timestamp must be Unix seconds"
    if abs(now.timestamp() - int(timestamp)) > SIGNATURE_MAX_AGE.total_seconds():
        return "stale request: X-Rollbot-Timestamp is more than 5 minutes away from the bot's clock"
    if not hmac.compare_digest(sign(secret, timestamp.strip(), body).encode(), signature.strip().encode()):
        return "bad signature"
    return None


def _catalog_target(name: TargetName, catalog: Catalog) -> MatchedWorkload | Unmatched:
    target = catalog.get(name)
    workload = target_workload(target, catalog) if target is not None else None
    if workload is None:
        return Unmatched("unknown_target")
    settings = catalog.detect_settings(name)
    if settings.channel is None:
        return Unmatched("no_channel")
    return MatchedWorkload(workload, name, settings)


def _found_workload(kind: WorkloadKind, namespace: str, name: str, catalog: Catalog) -> MatchedWorkload | Unmatched:
    context = catalog.defaults.kubernetes.kube_context
    found = FoundWorkload(
        backend=BackendKind.KUBERNETES,
        location=context,
        kind=kind.value,
        namespace=namespace,
        name=name,
        default_location=context,
    )
    target = find_target(catalog, found)
    if target is not None:
        return _catalog_target(target, catalog)
    settings = detect_settings_for(catalog, found)
    if settings is None:
        return Unmatched("no_target")
    if settings.channel is None:
        return Unmatched("no_channel")
    workload = WorkloadRef(backend=found.backend, location=context, kind=found.kind, namespace=namespace, name=name)
    return MatchedWorkload(workload, None, settings)


__all__ = [
    "DELIVERY_MEMORY",
    "SIGNATURE_MAX_AGE",
    "SIGNATURE_MEMORY",
    "AlertmanagerAlert",
    "AlertmanagerPayload",
    "DeployReport",
    "MatchedWorkload",
    "Unmatched",
    "alert_delivery_key",
    "alert_signal",
    "match_alert",
    "match_report",
    "report_signal",
    "sign",
    "signature_problem",
]
