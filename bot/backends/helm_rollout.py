"""Following a helm rollback to its end: the helm process this replica runs, or (after a take-over) helm's
record of it, together with the workloads of its manifest.

`helm_cli.HelmCliBackend` starts `helm rollback` and decides whether to run it at all; this module only watches:
`RunningRollback` is the helm subprocess started here, `HelmOutcome` tells whether and how helm finished, and
`workload_observers` follows the manifest's workloads with the Kubernetes backend's watchers.

A replica that takes a rollback over may find helm's record left `pending-rollback` by a helm killed with the
replica before it: then what the workloads did is the outcome, told with the way out of that record (ADR 0021).
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from bot.backends import helm_interpret as helm
from bot.backends import kubernetes_interpret as rules
from bot.backends.kubernetes_clients import KubernetesClients, WorkloadRef
from bot.backends.kubernetes_rollout import RolloutObserver
from bot.core.catalog import HelmTarget
from bot.core.rollouts import RollbackPlan, RolloutStatus

# helm's --timeout is the bot's rollout timeout, but helm starts that clock later (once it has applied the
# manifest) and then still writes the release. When this replica runs helm and would time out no earlier than
# helm, it gives helm this much longer: the thread then reports helm's verdict, the revision helm marked failed
# is already stored, and the target's lock is never released while helm still writes to the release.
HELM_VERDICT_GRACE_SECONDS = 15
# After a take-over the outcome is read from `helm history`; the watch asks on every workload event, twice
# (failed? done?). One helm process per look would be several a second for the whole rollout: read at most this
# often.
HISTORY_READ_INTERVAL_SECONDS = 1.0
# After a take-over, helm's record of the rollback may stay pending-rollback for good: the helm that wrote it was
# killed with its replica. A live helm records its verdict moments after the workloads roll out (v3's `--wait`
# and v4's legacy wait poll every 2 s; v4's watcher is told at once), so a record still pending this long after
# they rolled out was left by a helm that is gone, and the rollout itself is the outcome to report.
ORPHANED_RECORD_SECONDS = 5.0


@dataclass
class RunningRollback:
    """A `helm rollback` subprocess started by this replica, keyed by operation."""

    process: subprocess.Popen[str]
    started: float
    output: list[str] = field(default_factory=list)
    # Set once helm has exited *and* its output is read to the end, so a failure is told with helm's whole text.
    exited: threading.Event = field(default_factory=threading.Event)
    # The revision helm stored for this rollback (pending-rollback), once seen in `helm history`.
    recorded: int | None = None

    def finished(self) -> bool:
        return self.exited.is_set()

    def collect_output(self) -> None:
        assert self.process.stdout is not None
        try:
            for line in self.process.stdout:
                self.output.append(line.rstrip())
            self.process.wait()
        finally:
            self.exited.set()


class HelmOutcome:
    """Whether helm has finished, and how, for a rollback started here or (after a take-over) elsewhere."""

    def __init__(
        self,
        read_history: Callable[[], list[helm.HistoryRow]],
        monotonic: Callable[[], float],
        target_name: str,
        spec: HelmTarget,
        plan: RollbackPlan,
        running: RunningRollback | None,
        *,
        target_manifest: Callable[[], list[helm.ManifestObject]] = list,
        observers: Sequence[RolloutObserver] = (),
    ) -> None:
        self._read_history = read_history
        self._monotonic = monotonic
        self._target_name = target_name  # the catalog's name, for the `/rollback` it may advise
        self._spec = spec
        self._release = spec.release
        self._plan = plan
        self._running = running
        self._recorded: helm.HistoryRow | None = None
        self._read_at: float | None = None
        # When the workloads were first seen rolled out while helm's record of the rollback was still pending.
        self._rolled_out_at: float | None = None
        # After a take-over, whether helm applied the target manifest before it was stopped: its images, per
        # `workload/container`, read once; since when the workloads have been seen asking for other ones.
        self._target_manifest = target_manifest
        self._observers = observers
        self._target_images: dict[str, str] | None = None
        self._unapplied_since: float | None = None

    def _recorded_row(self, *, fresh: bool = False) -> helm.HistoryRow | None:
        now = self._monotonic()
        if not fresh and self._read_at is not None and now - self._read_at < HISTORY_READ_INTERVAL_SECONDS:
            return self._recorded
        before = int(self._plan.backend_data.get("latest_before", "0"))
        self._recorded = helm.rollback_row(self._read_history(), before, self._plan.to_revision)
        self._read_at = now
        return self._recorded

    def is_done(self) -> bool:
        """Whether helm is done with the rollback. `follow_rollouts` asks only once every workload rolled out."""
        if self._running is not None:
            if not self._running.finished():
                return False
            return self._running.process.returncode == 0
        row = self._recorded_row()
        if row is None:
            return False
        if row.status == "deployed":
            return True
        return row.status == "pending-rollback" and not self._unapplied_images() and self._is_orphaned()

    def _is_orphaned(self) -> bool:
        now = self._monotonic()
        if self._rolled_out_at is None:
            self._rolled_out_at = now
        return now - self._rolled_out_at >= ORPHANED_RECORD_SECONDS

    def failure(self) -> str | None:
        if self._running is not None:
            if self._running.finished() and self._running.process.returncode != 0:
                return str(helm.translate_helm_error("\n".join(self._running.output), release=self._release))
            return None
        row = self._recorded_row()
        if row is not None and row.status == "failed":
            return f"helm marked revision {row.revision} failed: {row.description}"
        if row is not None and row.status == "pending-rollback":
            return self._never_applied(row)
        return None

    def _unapplied_images(self) -> list[tuple[str, str, str]]:
        """(workload/container, image it asks for, image of the target revision) where the two differ.

        helm stores the pending-rollback revision before it applies the manifest, so a helm stopped in between
        leaves a record over workloads that still run what the rollback was to replace. Only images tell, and
        only for the workloads already observed; the manifest is read once, on this rare path only."""
        if self._target_images is None:
            self._target_images = {item.container: item.image for item in helm.images_in(self._target_manifest())}
        differing = []
        for observer in self._observers:
            template = rules.workload_template(observer.workload or {})
            spec = template.get("spec") or {}
            for container in [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]:
                key = f"{observer.ref.name}/{container.get('name', '?')}"
                wanted = self._target_images.get(key)
                if wanted is not None and container.get("image") != wanted:
                    differing.append((key, str(container.get("image")), wanted))
        return differing

    def _never_applied(self, row: helm.HistoryRow) -> str | None:
        differing = self._unapplied_images()
        now = self._monotonic()
        if not differing:
            self._unapplied_since = None
            return None
        if self._unapplied_since is None:
            self._unapplied_since = now
        if now - self._unapplied_since < ORPHANED_RECORD_SECONDS:
            return None  # a live helm may be applying it right now
        key, running, wanted = differing[0]
        return helm.unapplied_rollback_note(row, self._plan.to_revision, key, running, wanted, self._target_name)

    def success(self, status: RolloutStatus) -> RolloutStatus:
        row: helm.HistoryRow | None = None
        if self._running is not None and self._running.recorded is not None:
            # helm exited 0, so the revision it stored for this rollback is the deployed one: no extra helm call.
            revision = f"revision {self._running.recorded}"
        else:
            row = self._recorded_row()
            if row is not None and row.status in helm.PENDING_STATUSES:
                row = self._recorded_row(fresh=True)  # a pending record is news only if helm has not just written
            revision = f"revision {row.revision}" if row else "a new revision"
        summary = (
            f"helm rolled {self._release} back to revision {self._plan.to_revision} as {revision}; {status.summary}"
        )
        if row is not None and row.status in helm.PENDING_STATUSES:
            spec = self._spec
            command = helm.rollback_command(spec.release, self._plan.to_revision, spec.namespace, spec.kube_context)
            note = helm.interrupted_rollback_note(row, self._plan.to_revision, command, self._target_name)
            summary += ". " + note
        return status.model_copy(update={"summary": summary, "events": (*status.events, summary)})


def wake_when_helm_exits(running: RunningRollback, observer: RolloutObserver) -> None:
    # helm's exit is news the watches do not carry: without this nudge the verdict waits for the next
    # workload event or the watcher's idle timeout (up to 0.5 s after helm has already finished).
    running.exited.wait()
    observer.changes.put(observer)


def workload_observers(clients: KubernetesClients, workloads: Sequence[WorkloadRef]) -> list[RolloutObserver]:
    if not workloads:
        return []
    first = RolloutObserver(
        clients.api(workloads[0].kube_context), workloads[0], pod_selector=pod_selector(clients, workloads[0])
    )
    observers = [first]
    for workload in workloads[1:]:
        observers.append(
            RolloutObserver(
                clients.api(workload.kube_context),
                workload,
                pod_selector=pod_selector(clients, workload),
                changes=first.changes,
            )
        )
    return observers


def pod_selector(clients: KubernetesClients, workload: WorkloadRef) -> str | None:
    # The workload's own selector, so stuck pods of every revision the rollback creates are seen.
    apps = k8s.AppsV1Api(clients.api(workload.kube_context))
    reader: dict[str, Callable[..., Any]] = {
        "Deployment": apps.read_namespaced_deployment,
        "DaemonSet": apps.read_namespaced_daemon_set,
        "StatefulSet": apps.read_namespaced_stateful_set,
    }
    try:
        response = reader[workload.kind.value](workload.name, workload.namespace, _preload_content=False)
    except (ApiException, urllib3.exceptions.HTTPError, OSError):
        # A workload the rollback itself creates does not exist yet; its pods are not filtered then.
        return None
    obj = json.loads(response.data)
    return rules.selector_string((obj.get("spec") or {}).get("selector")) or None
