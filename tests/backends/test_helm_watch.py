"""The Helm failure watcher against kubesim, with the real helm installing, breaking and removing releases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.backends.helm_watch import HelmFailureWatcher
from bot.backends.kubernetes_api import KubernetesClients
from bot.backends.kubernetes_stream import Backoff
from bot.core.catalog_detect import HelmWatch
from bot.core.detection import HelmStatus, Sighting
from sandbox.kubesim.cluster import KubeSim
from tests.backends.helm_world import HelmWorld
from tests.backends.watch_recorder import watching

CONTEXT = "sandbox"


@pytest.fixture
def helm_world(kubesim: KubeSim, tmp_path: Path, kubeconfig: Path) -> HelmWorld:
    return HelmWorld(kubesim, tmp_path, kubeconfig)


@pytest.fixture
def watcher(kube_clients: KubernetesClients) -> HelmFailureWatcher:
    return HelmFailureWatcher(kube_clients, page_size=1, backoff=Backoff(initial=0.05, maximum=0.2, attempts=3))


def release(name: str, revision: int | None = None, status: HelmStatus | None = None) -> Callable[[Sighting], bool]:
    def matches(sighting: Sighting) -> bool:
        snapshot = sighting.release
        return (
            snapshot is not None
            and snapshot.name == name
            and (revision is None or snapshot.revision == revision)
            and (status is None or snapshot.status is status)
        )

    return matches


def test_a_failed_upgrade_is_reported_as_the_latest_revision(
    helm_world: HelmWorld, watcher: HelmFailureWatcher
) -> None:
    helm_world.install("workshop")
    helm_world.install("other")
    with watching(watcher, HelmWatch(kube_context=CONTEXT)) as recorder:
        listed = recorder.wait_for(release("workshop"), what="workshop listed")
        assert listed.resync
        assert listed.release is not None
        assert (listed.release.revision, listed.release.status) == (1, HelmStatus.DEPLOYED)
        assert listed.release.modified_at is not None
        recorder.wait_for(release("other"), what="other listed")
        before = len(recorder.snapshot())

        result = helm_world.run(
            "upgrade",
            "workshop",
            str(helm_world.chart),
            "--set",
            "image.tag=non-existing",
            "--wait",
            "--timeout",
            "5s",
            check=False,
        )
        assert result.returncode != 0

        failed = recorder.wait_for(release("workshop", 2, HelmStatus.FAILED), after=before, what="revision 2 failed")
        assert not failed.resync
        later = recorder.snapshot()[before:]
        assert any(release("workshop", 2, HelmStatus.PENDING_UPGRADE)(s) for s in later), "the upgrade was seen"
        # Revision 1 turning `superseded` is history, not news: only the latest revision is reported.
        assert not any(release("workshop", 1)(s) for s in later)
        assert not any(release("other")(s) for s in later)


def test_an_uninstalled_release_is_reported_deleted(helm_world: HelmWorld, watcher: HelmFailureWatcher) -> None:
    helm_world.install("workshop")
    with watching(watcher, HelmWatch(kube_context=CONTEXT, namespaces=("default",))) as recorder:
        recorder.wait_for(release("workshop"), what="workshop listed")
        helm_world.run("uninstall", "workshop")
        gone = recorder.wait_for(lambda s: release("workshop")(s) and s.deleted, what="workshop deleted")
        assert not gone.resync
