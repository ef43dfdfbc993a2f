"""GitOps reconcilers: who puts a target back to Git's state, whether that undoes a rollback, and how to pause it.

Pure decisions over plain objects (the dicts the Kubernetes API returns); the backends do the reads and the
patches. The upstream names relied on, with their sources, are in docs/adr/0013-gitops-reconcilers.md and
docs/adr/0020-gitops-pause-with-the-rollback.md:

- Argo CD tracks what it applied with the annotation `argocd.argoproj.io/tracking-id:
  <app instance>:<group>/<kind>:<namespace>/<name>` (the default `annotation` method) or, with the `label`
  method, the label `app.kubernetes.io/instance: <app instance>`. The app instance is the Application's name,
  or `<namespace>_<name>` when it lives outside Argo CD's own namespace (`Application.InstanceName`).
  Automated sync is on when `spec.syncPolicy.automated` is present and its `enabled` is not false.
- Flux's kustomize-controller and helm-controller label what they apply `<group>/name` and `<group>/namespace`
  (`kustomize.toolkit.fluxcd.io/…`, `helm.toolkit.fluxcd.io/…`); `spec.suspend: true` stops reconciliation.
  A HelmRelease's release is `spec.releaseName`, else `[<targetNamespace>-]<name>`, in `spec.targetNamespace`,
  else the HelmRelease's namespace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, JsonValue

from bot.core.catalog_types import ChannelId, format_duration

ARGO_TRACKING_ANNOTATION: Final = "argocd.argoproj.io/tracking-id"
ARGO_INSTANCE_LABEL: Final = "app.kubernetes.io/instance"
# Argo CD's control-plane namespace in a default install: Applications there are tracked by their bare name.
ARGO_DEFAULT_NAMESPACE: Final = "argocd"
KUSTOMIZE_GROUP: Final = "kustomize.toolkit.fluxcd.io"
HELM_GROUP: Final = "helm.toolkit.fluxcd.io"

GitOpsMode = Literal["suspend", "warn", "refuse"]


class ReconcilerKind(StrEnum):
    ARGOCD = "argocd"
    FLUX_KUSTOMIZATION = "flux-kustomization"
    FLUX_HELMRELEASE = "flux-helmrelease"


# (group/version, plural) of each kind's custom resource, as the API serves it.
RESOURCES: Final[Mapping[ReconcilerKind, tuple[str, str, str]]] = {
    ReconcilerKind.ARGOCD: ("argoproj.io", "v1alpha1", "applications"),
    ReconcilerKind.FLUX_KUSTOMIZATION: (KUSTOMIZE_GROUP, "v1", "kustomizations"),
    ReconcilerKind.FLUX_HELMRELEASE: (HELM_GROUP, "v2", "helmreleases"),
}
_TITLES: Final[Mapping[ReconcilerKind, str]] = {
    ReconcilerKind.ARGOCD: "Argo CD application",
    ReconcilerKind.FLUX_KUSTOMIZATION: "Flux Kustomization",
    ReconcilerKind.FLUX_HELMRELEASE: "Flux HelmRelease",
}


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReconcilerRef(_Frozen):
    """Which object reconciles a target: `argocd:argocd/shop`, `flux-kustomization:flux-system/cart`…"""

    kind: ReconcilerKind
    namespace: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.kind.value}:{self.namespace}/{self.name}"

    @property
    def display(self) -> str:
        return f"{_TITLES[self.kind]} {self.namespace}/{self.name}"


class Reconciler(_Frozen):
    """A reconciler as it is now: whether it would put Git's state back after a rollback, and how soon."""

    ref: ReconcilerRef
    # Argo CD: automated sync enabled; Flux: not suspended.
    automated: bool
    self_heal: bool = False
    interval: str | None = None

    @property
    def reverts_rollback(self) -> bool:
        return self.automated


class SyncPause(_Frozen):
    """A reconciler rollbot paused with a rollback: what it was before, and where to remind people."""

    ref: ReconcilerRef
    target: str
    # The exact fields the pause changed, as they were: {"spec.syncPolicy.automated": {...}} or {"spec.suspend": …};
    # None as a value means the field was absent.
    previous: dict[str, JsonValue]
    operation_id: str
    channel: ChannelId
    thread_ts: str | None = None
    paused_at: datetime
    remind_at: datetime


class GitOpsState(_Frozen):
    """An operation's reconciler: found at request time; with `suspend`, paused right before the rollback.

    `previous` is written before the pause patch is sent, so an executor that takes over after a crash pauses
    again from the recorded settings instead of recording the paused ones as "previous".
    """

    reconciler: Reconciler
    suspend: bool = False
    previous: dict[str, JsonValue] | None = None
    paused: bool = False


# --- who reconciles an object -----------------------------------------------------------------------------------


def owner_of(obj: Mapping[str, Any], api_version: str, kind: str) -> ReconcilerRef | None:
    """The reconciler an applied object names in its metadata, if any (annotation before labels)."""
    meta = obj.get("metadata") or {}
    labels: Mapping[str, str] = meta.get("labels") or {}
    annotations: Mapping[str, str] = meta.get("annotations") or {}
    tracked = _argo_from_tracking_id(annotations.get(ARGO_TRACKING_ANNOTATION), api_version, kind, meta)
    if tracked is not None:
        return tracked
    for group, reconciler_kind in (
        (KUSTOMIZE_GROUP, ReconcilerKind.FLUX_KUSTOMIZATION),
        (HELM_GROUP, ReconcilerKind.FLUX_HELMRELEASE),
    ):
        name, namespace = labels.get(f"{group}/name"), labels.get(f"{group}/namespace")
        if name and namespace:
            return ReconcilerRef(kind=reconciler_kind, namespace=namespace, name=name)
    instance = labels.get(ARGO_INSTANCE_LABEL)
    if instance and ARGO_TRACKING_ANNOTATION not in annotations:
        # The `label` tracking method. Helm charts set this label too: the caller confirms the Application exists.
        return _argo_instance(instance)
    return None


def _argo_from_tracking_id(
    value: str | None, api_version: str, kind: str, meta: Mapping[str, Any]
) -> ReconcilerRef | None:
    # `<app instance>:<group>/<kind>:<namespace>/<name>` (argo-cd util/argo/resource_tracking.go). A copied
    # annotation naming another object does not make this one tracked (Argo CD compares them too).
    if not value:
        return None
    parts = value.split(":", 2)
    if len(parts) != 3:
        return None
    instance, group_kind, namespaced = parts
    group = api_version.rpartition("/")[0]
    if group_kind != f"{group}/{kind}" or namespaced != f"{meta.get('namespace', '')}/{meta.get('name', '')}":
        return None
    return _argo_instance(instance)


def _argo_instance(instance: str) -> ReconcilerRef | None:
    # `<namespace>_<name>` outside Argo CD's namespace; `_` is never part of a Kubernetes name.
    namespace, _, name = instance.rpartition("_")
    if not name:
        return None
    return ReconcilerRef(kind=ReconcilerKind.ARGOCD, namespace=namespace or ARGO_DEFAULT_NAMESPACE, name=name)


def helm_release_name(helm_release: Mapping[str, Any]) -> tuple[str, str]:
    """(release name, release namespace) of a Flux HelmRelease (helm-controller `GetReleaseName`)."""
    meta = helm_release.get("metadata") or {}
    spec = helm_release.get("spec") or {}
    target_namespace = spec.get("targetNamespace") or ""
    name = spec.get("releaseName") or (f"{target_namespace}-{meta.get('name')}" if target_namespace else meta["name"])
    return name, target_namespace or meta.get("namespace", "")


def helm_release_owner(
    helm_releases: Sequence[Mapping[str, Any]], release: str, namespace: str
) -> Mapping[str, Any] | None:
    """The HelmRelease that manages helm release `namespace/release`, if any."""
    for candidate in helm_releases:
        if helm_release_name(candidate) == (release, namespace):
            return candidate
    return None


def reconciler_of(ref: ReconcilerRef, obj: Mapping[str, Any]) -> Reconciler:
    """Read the sync settings of the reconciler's own object."""
    spec = obj.get("spec") or {}
    if ref.kind is ReconcilerKind.ARGOCD:
        automated = (spec.get("syncPolicy") or {}).get("automated")
        on = isinstance(automated, dict) and automated.get("enabled") is not False
        return Reconciler(ref=ref, automated=on, self_heal=on and bool((automated or {}).get("selfHeal")))
    return Reconciler(ref=ref, automated=spec.get("suspend") is not True, interval=spec.get("interval"))


# --- pausing and resuming --------------------------------------------------------------------------------------

_ARGO_FIELD: Final = "spec.syncPolicy.automated"
_FLUX_FIELD: Final = "spec.suspend"


def previous_settings(ref: ReconcilerRef, obj: Mapping[str, Any]) -> dict[str, JsonValue]:
    """The fields a pause changes, exactly as they are now (None: absent)."""
    spec = obj.get("spec") or {}
    if ref.kind is ReconcilerKind.ARGOCD:
        automated = (spec.get("syncPolicy") or {}).get("automated")
        return {_ARGO_FIELD: dict(automated) if isinstance(automated, dict) else None}
    return {_FLUX_FIELD: spec.get("suspend")}


def pause_patch(ref: ReconcilerRef) -> dict[str, Any]:
    """The JSON merge patch that pauses the reconciler (custom resources take no strategic merge patch)."""
    if ref.kind is ReconcilerKind.ARGOCD:
        return {"spec": {"syncPolicy": {"automated": {"enabled": False}}}}
    return {"spec": {"suspend": True}}


def restore_patch(ref: ReconcilerRef, previous: Mapping[str, JsonValue]) -> dict[str, Any]:
    """The JSON merge patch that puts back exactly what `previous_settings` recorded (null deletes a field)."""
    if ref.kind is ReconcilerKind.ARGOCD:
        recorded = previous.get(_ARGO_FIELD)
        if not isinstance(recorded, dict):
            return {"spec": {"syncPolicy": {"automated": None}}}
        return {"spec": {"syncPolicy": {"automated": {"enabled": None, **recorded}}}}
    return {"spec": {"suspend": previous.get(_FLUX_FIELD)}}


# --- what to do about it ---------------------------------------------------------------------------------------


class GitOpsDecision(_Frozen):
    """What a rollback request does about its target's reconciler."""

    action: Literal["proceed", "warn", "suspend", "refuse"]
    line: str | None = None


def decide(reconciler: Reconciler | None, mode: GitOpsMode, suspend_requested: bool) -> GitOpsDecision:
    """`--suspend-sync` or `gitops: suspend` pause it; `warn` goes ahead and says so; `refuse` explains."""
    if reconciler is None:
        nothing = "no Argo CD or Flux reconciler manages it: `--suspend-sync` has nothing to pause"
        return GitOpsDecision(action="proceed", line=nothing if suspend_requested else None)
    line = describe(reconciler)
    if not reconciler.reverts_rollback:
        return GitOpsDecision(action="proceed", line=line)
    if suspend_requested or mode == "suspend":
        return GitOpsDecision(action="suspend", line=f"{line}. Its sync will be paused before the rollback.")
    if mode == "warn":
        return GitOpsDecision(action="warn", line=line)
    return GitOpsDecision(action="refuse", line=line)


def describe(reconciler: Reconciler) -> str:
    """`reconciled by Argo CD application argocd/shop (automated, self-heal): it will revert this rollback …`"""
    head = f"reconciled by {reconciler.ref.display}"
    if reconciler.ref.kind is ReconcilerKind.ARGOCD:
        if not reconciler.automated:
            return f"{head} (automated sync off): it will not revert this rollback"
        if reconciler.self_heal:
            return f"{head} (automated, self-heal): it will revert this rollback within seconds"
        return f"{head} (automated): it will revert this rollback at the next commit"
    if not reconciler.automated:
        return f"{head} (suspended): it will not revert this rollback"
    every = f" every {reconciler.interval}" if reconciler.interval else ""
    return f"{head} (reconciles{every}): it will revert this rollback at its next reconciliation"


def next_reminder(paused_at: datetime, every: timedelta, now: datetime) -> datetime:
    """The first reminder time after `now` on the `paused_at + k·every` schedule."""
    due = paused_at + every
    while due <= now:
        due += every
    return due


def pause_age(pause: SyncPause, now: datetime) -> str:
    return format_duration(max(now - pause.paused_at, timedelta(0)))
