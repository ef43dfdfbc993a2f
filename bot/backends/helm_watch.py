"""The Helm failure watcher: the latest revision of every Helm release of one context, as `Sighting`s.

Implements `bot.ports.FailureWatcher` for `HelmWatch` scopes. Helm keeps each revision of a release in a Secret
labelled `owner=helm`, `name`, `version`, `status` and `modifiedAt`; the labels say all the rules need, so the
release payload (gzip'd, often hundreds of KB) is never decoded, and lists ask for metadata only
(`PartialObjectMetadataList`). One list+watch of those Secrets (cluster-wide, or one per listed namespace) runs
through `kubernetes_stream.CollectionStream`.

Only the newest revision of a release decides anything (an old `failed` revision is history), so this module
keeps the revisions' labels per release and reports the latest one whenever it changes: after a (re)list,
every release once (`resync`); then each new revision or status change of the latest. A release whose last
Secret is gone (uninstalled without `--keep-history`) is reported `deleted`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from kubernetes import client as k8s

from bot.backends.kubernetes_api import KubernetesClients, translating_errors
from bot.backends.kubernetes_stream import (
    DEFAULT_BACKOFF,
    PAGE_SIZE,
    WATCH_WINDOW_SECONDS,
    Backoff,
    Changed,
    CollectionStream,
    Listed,
    StreamEvent,
    StreamFailed,
)
from bot.core.catalog_detect import HelmWatch, WatchScope
from bot.core.detection import HelmReleaseSnapshot, Sighting
from bot.core.errors import UnknownTarget

log = structlog.get_logger(__name__)

HELM_SECRETS = "owner=helm"
# Metadata only: the labels are all the rules read, and the payload would multiply the memory of a list.
METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"}
METADATA_ONLY_WATCH = {"Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"}

ReleaseKey = tuple[str, str]  # namespace, release name


@dataclass(frozen=True)
class _Revision:
    snapshot: HelmReleaseSnapshot

    @property
    def release(self) -> ReleaseKey:
        return (self.snapshot.namespace, self.snapshot.name)


@dataclass
class _Releases:
    """Every known revision per release (a few small snapshots each; helm keeps at most `--history-max`)."""

    location: str
    revisions: dict[ReleaseKey, dict[int, HelmReleaseSnapshot]] = field(default_factory=dict)
    reported: dict[ReleaseKey, HelmReleaseSnapshot] = field(default_factory=dict)

    def latest(self, release: ReleaseKey) -> HelmReleaseSnapshot | None:
        revisions = self.revisions.get(release)
        return revisions[max(revisions)] if revisions else None


def project_release(obj: dict[str, Any]) -> _Revision | None:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if labels.get("owner") != "helm" or "name" not in labels or not str(labels.get("version", "")).isdigit():
        return None  # someone else's Secret that happens to carry owner=helm
    return _Revision(HelmReleaseSnapshot.from_manifest(obj))


class HelmFailureWatcher:
    """`bot.ports.FailureWatcher` for `backend: helm` watch scopes, over the contexts of `clients`."""

    def __init__(
        self,
        clients: KubernetesClients,
        *,
        page_size: int = PAGE_SIZE,
        window_seconds: int = WATCH_WINDOW_SECONDS,
        backoff: Backoff = DEFAULT_BACKOFF,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._clients = clients
        self._page_size = page_size
        self._window = window_seconds
        self._backoff = backoff
        self._now = now

    def watch(self, scope: WatchScope, report: Callable[[Sighting], None], stop: threading.Event) -> None:
        if not isinstance(scope, HelmWatch):
            raise UnknownTarget(f"the Helm watcher cannot watch a `{scope.backend}` scope")
        with translating_errors(f"connecting to kube context `{scope.kube_context or 'default'}`"):
            api = self._clients.api(scope.kube_context)
        events: queue.Queue[StreamEvent[_Revision]] = queue.Queue()
        streams = list(self._streams(k8s.CoreV1Api(api), scope, events))
        threads = [stream.start() for stream in streams]
        releases = _Releases(location=scope.kube_context or "default")
        try:
            while not stop.is_set():
                try:
                    event = events.get(timeout=0.5)
                except queue.Empty:
                    continue
                if isinstance(event, StreamFailed):
                    raise event.error
                if isinstance(event, Listed):
                    self._relisted(releases, event, report)
                else:
                    self._changed(releases, event, report)
        finally:
            for stream in streams:
                stream.close()
            for thread in threads:
                thread.join(timeout=5)

    def _streams(
        self, core: k8s.CoreV1Api, scope: HelmWatch, events: queue.Queue[StreamEvent[_Revision]]
    ) -> Iterator[CollectionStream[_Revision]]:
        options: dict[str, Any] = {
            "label_selector": HELM_SECRETS,
            "headers": METADATA_ONLY,
            "watch_headers": METADATA_ONLY_WATCH,
            "page_size": self._page_size,
            "window_seconds": self._window,
            "backoff": self._backoff,
        }
        if scope.namespaces == ("*",):
            yield CollectionStream(
                "Helm releases in all namespaces",
                core.list_secret_for_all_namespaces,
                project_release,
                events,
                **options,
            )
            return
        for namespace in scope.namespaces:
            yield CollectionStream(
                f"Helm releases in namespace `{namespace}`",
                core.list_namespaced_secret,
                project_release,
                events,
                args=(namespace,),
                **options,
            )

    def _relisted(self, releases: _Releases, listed: Listed[_Revision], report: Callable[[Sighting], None]) -> None:
        namespaces = {revision.release[0] for revision in listed.items}
        fresh: dict[ReleaseKey, dict[int, HelmReleaseSnapshot]] = {}
        for revision in listed.items:
            fresh.setdefault(revision.release, {})[revision.snapshot.revision] = revision.snapshot
        # A per-namespace stream only speaks for its namespace; the cluster-wide one for all.
        prefix = "Helm releases in namespace `"
        only = listed.stream[len(prefix) : -1] if listed.stream.startswith(prefix) else None
        gone = [key for key in releases.revisions if key not in fresh and (only is None or key[0] == only)]
        log.info("helm releases listed", stream=listed.stream, releases=len(fresh), namespaces=len(namespaces))
        for key in gone:
            last = releases.latest(key)
            releases.revisions.pop(key, None)
            releases.reported.pop(key, None)
            if last is not None:
                report(self._sighting(releases, last, deleted=True, resync=True))
        for key, revisions in fresh.items():
            releases.revisions[key] = revisions
            latest = revisions[max(revisions)]
            releases.reported[key] = latest
            report(self._sighting(releases, latest, resync=True))

    def _changed(self, releases: _Releases, changed: Changed[_Revision], report: Callable[[Sighting], None]) -> None:
        key, snapshot = changed.item.release, changed.item.snapshot
        revisions = releases.revisions.setdefault(key, {})
        if changed.is_deleted:
            revisions.pop(snapshot.revision, None)
        else:
            revisions[snapshot.revision] = snapshot
        latest = releases.latest(key)
        if latest is None:
            releases.revisions.pop(key, None)
            releases.reported.pop(key, None)
            report(self._sighting(releases, snapshot, deleted=True))
            return
        if releases.reported.get(key) != latest:
            # Only the newest revision's changes are news; helm pruning old revisions is not.
            releases.reported[key] = latest
            report(self._sighting(releases, latest))

    def _sighting(
        self, releases: _Releases, snapshot: HelmReleaseSnapshot, *, deleted: bool = False, resync: bool = False
    ) -> Sighting:
        return Sighting(
            location=releases.location, seen_at=self._now(), release=snapshot, deleted=deleted, resync=resync
        )
