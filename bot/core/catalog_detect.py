"""The catalog's detection settings: where incident cards go and how long signals are held (`detect`), and the
`watch` scopes that extend detection beyond the catalog's own targets."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    field_validator,
)

from bot.core.catalog_types import (
    BackendKind,
    PositiveDuration,
    SlackChannel,
    _kubernetes_namespace,
    _Strict,
)


class DetectSettings(_Strict):
    """How rollbot watches for failed rollouts of one workload: where the incident card goes, and the clocks.

    Detection is on for a workload when it is `enabled` and a `channel` is known; no channel anywhere means
    detection is off, which is the default, so upgrading rollbot never starts posting cards unasked.
    """

    channel: SlackChannel | None = None
    enabled: bool = True
    # A pod reason must hold this long before it is an incident: one ErrImagePull during a registry hiccup is not.
    failing_for: PositiveDuration = timedelta(minutes=2)
    # An incident resolves, and a rollback is verified, only after this long of health (hysteresis).
    healthy_for: PositiveDuration = timedelta(minutes=2)
    # A DaemonSet/StatefulSet update, or a helm pending-* release, that has not moved for this long is stuck.
    stall_after: PositiveDuration = timedelta(minutes=10)
    alert_match: AlertMatch | None = None

    @property
    def is_active(self) -> bool:
        return self.enabled and self.channel is not None

    def merged(self, overrides: DetectOverrides | None) -> DetectSettings:
        if overrides is None:
            return self
        return self.model_copy(update=overrides.model_dump(exclude_unset=True))


class DetectOverrides(_Strict):
    """Per-target (or per-scope) detection settings; any field left out falls back to `defaults.detect`."""

    channel: SlackChannel | None = None
    enabled: bool | None = None
    failing_for: PositiveDuration | None = None
    healthy_for: PositiveDuration | None = None
    stall_after: PositiveDuration | None = None
    # Per target only: the Alertmanager labels that name this target (a `watch` scope names no single target).
    alert_match: AlertMatch | None = None


# Prometheus label names (the data model's own rule); a typo'd name would silently never match.
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _label_matchers(value: dict[str, str]) -> dict[str, str]:
    if not value:
        raise ValueError("list at least one label: an empty alert_match would match every alert")
    for name in value:
        if not _LABEL_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a Prometheus label name (letters, digits and _, not first a digit)")
    return value


# Alertmanager labels that all must be equal for an alert to be about this target (`detect.alert_match`).
AlertMatch = Annotated[dict[str, str], AfterValidator(_label_matchers)]


def _namespace_list(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise ValueError('list at least one namespace, or ["*"] for all of them')
    if "*" in value and len(value) > 1:
        raise ValueError('"*" already means every namespace; list it alone')
    for namespace in value:
        if namespace != "*":
            _kubernetes_namespace(namespace)
    return value


NamespaceList = Annotated[tuple[str, ...], AfterValidator(_namespace_list)]


class _WatchScopeBase(_Strict):
    detect: DetectOverrides | None = None


class KubernetesWatch(_WatchScopeBase):
    """Every Deployment, DaemonSet and StatefulSet of these namespaces, catalog target or not."""

    backend: Literal[BackendKind.KUBERNETES] = BackendKind.KUBERNETES
    kube_context: str | None = None
    namespaces: NamespaceList = ("*",)

    def covers(self, namespace: str) -> bool:
        return self.namespaces == ("*",) or namespace in self.namespaces


class HelmWatch(_WatchScopeBase):
    """Every Helm release (its storage Secrets, `owner=helm`) of these namespaces."""

    backend: Literal[BackendKind.HELM] = BackendKind.HELM
    kube_context: str | None = None
    namespaces: NamespaceList = ("*",)

    def covers(self, namespace: str) -> bool:
        return self.namespaces == ("*",) or namespace in self.namespaces


class EcsWatch(_WatchScopeBase):
    """Every service of these ECS clusters in one region."""

    backend: Literal[BackendKind.ECS] = BackendKind.ECS
    region: str | None = None
    clusters: tuple[str, ...] = ("default",)

    @field_validator("clusters")
    @classmethod
    def _some_cluster(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("list at least one ECS cluster")
        return value

    def covers(self, cluster: str) -> bool:
        return cluster in self.clusters


WatchScope = Annotated[KubernetesWatch | HelmWatch | EcsWatch, Field(discriminator="backend")]
