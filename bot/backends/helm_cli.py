"""The Helm backend: the real `helm` binary does the rollback; the bot watches its workloads roll out.

Helm keeps release history in the cluster and rolls back with a three-way merge (v3) or server-side apply (v4),
running hooks; only helm does that right, so this backend never re-implements it. It runs
`helm history|get manifest|rollback|status`, parses their JSON, and follows the workloads of the target manifest
with the Kubernetes backend's watchers, so the thread shows per-workload progress and stuck pods while helm waits.
How a rollback is followed to its end (the helm process, or helm's record after a take-over) is `helm_rollout`.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from functools import cached_property

import structlog
from kubernetes import client as k8s

from bot.backends import helm_interpret as helm
from bot.backends.helm_env import helm_environment
from bot.backends.helm_rollout import (
    HELM_VERDICT_GRACE_SECONDS,
    HelmOutcome,
    RunningRollback,
    wake_when_helm_exits,
    workload_observers,
)
from bot.backends.helm_storage import HelmStorage
from bot.backends.kubernetes_api import KubernetesBackend
from bot.backends.kubernetes_clients import KubernetesClients, WorkloadRef
from bot.backends.kubernetes_rollout import follow_rollouts
from bot.core.catalog import HelmTarget, Target, WorkloadKind
from bot.core.errors import BackendUnavailable, BotError, NothingToDo, UnknownTarget
from bot.core.operations import OperationId
from bot.core.rollouts import (
    BackendOption,
    ContainerImage,
    Revision,
    RevisionNumber,
    RollbackPlan,
    RollbackReceipt,
    RolloutPhase,
    RolloutStatus,
    TargetStatus,
    UnhealthyUnit,
)

log = structlog.get_logger(__name__)

# How many revisions helm keeps after our rollback. Set deliberately (helm's default is 10 too) so that a
# rollback never silently prunes the revision someone may want to return to next.
HISTORY_MAX = 10
# Reading one revision's manifest costs one helm call; history shows images for at most this many revisions.
HISTORY_IMAGES_LIMIT = 10
# helm commands that only read (history, get, status) are quick; a stuck one means the cluster is unreachable.
READ_TIMEOUT_SECONDS = 60
# helm writes the pending-rollback revision within a second or two of starting; look for it this often. A fast
# rollback (seed 000: ~0.2-0.4 s on a busy machine) ends before the first look, which then costs no helm call.
RECORD_POLL_SECONDS = 0.5
# The kubernetes client imports each API class lazily, about a second apiece on first use. Load the ones the
# rollout watch uses (AppsV1Api here and in RolloutObserver, CoreV1Api for the pods) when the bot starts, not
# while the first rollback after a restart streams: measured, that delayed its first thread line by ~2 s.
_WATCH_APIS = (k8s.AppsV1Api, k8s.CoreV1Api)


class HelmCliBackend:
    """Implements `bot.ports.Backend` for `backend: helm` targets by driving the helm CLI."""

    def __init__(
        self,
        helm_path: str = "helm",
        *,
        kubeconfig: str | None = None,
        clients: KubernetesClients | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        environment: Mapping[str, str] | None = None,
        wait_timeout: timedelta = timedelta(minutes=10),
    ) -> None:
        self._helm = helm_path
        self._kubeconfig = kubeconfig
        self._clients = clients or KubernetesClients(kubeconfig)
        self._monotonic = monotonic
        # Never the bot's whole environment: it holds the Slack, AWS and Redis secrets (see helm_env).
        self._environment = helm_environment(environment if environment is not None else os.environ, kubeconfig)
        # helm's own --timeout for the rollback's wait; the bot's rollout timeout, so both give up together.
        self._wait_timeout = wait_timeout
        self._storage = HelmStorage(self._clients, self._environment)
        self._running: dict[str, RunningRollback] = {}
        self._lock = threading.Lock()

    # -- helm invocation -----------------------------------------------------------------------------------

    @cached_property
    def major_version(self) -> int:
        return helm.helm_major_version(self._run(["version", "--short"], release="helm").stdout)

    def _args(self, spec: HelmTarget, *args: str) -> list[str]:
        command = [self._helm, *args, "--namespace", spec.namespace]
        if spec.kube_context:
            command += ["--kube-context", spec.kube_context]
        if self._kubeconfig:
            command += ["--kubeconfig", self._kubeconfig]
        return command

    def _run(self, args: list[str], *, release: str, revision: int | None = None) -> subprocess.CompletedProcess[str]:
        command = args if args and args[0] == self._helm else [self._helm, *args]
        try:
            result = subprocess.run(  # a fixed binary with arguments, never a shell
                command,
                capture_output=True,
                text=True,
                timeout=READ_TIMEOUT_SECONDS,
                env=self._environment,
                check=False,
            )
        except FileNotFoundError as exc:
            raise BackendUnavailable(f"the helm binary `{self._helm}` was not found (set ROLLBOT_HELM)") from exc
        except subprocess.TimeoutExpired as exc:
            raise BackendUnavailable(f"helm did not answer within {READ_TIMEOUT_SECONDS}s ({args[1:2]})") from exc
        if result.returncode != 0:
            raise helm.translate_helm_error(result.stderr, release=release, revision=revision)
        return result

    def _history_rows(self, spec: HelmTarget) -> list[helm.HistoryRow]:
        try:
            result = self._run(
                self._args(spec, "history", spec.release, "--max", "256", "-o", "json"), release=spec.release
            )
        except UnknownTarget as exc:
            # Most often the catalog names the wrong namespace or context: say where helm looked.
            where = f"namespace `{spec.namespace}`" + (f", context `{spec.kube_context}`" if spec.kube_context else "")
            raise UnknownTarget(f"{exc} in {where}") from exc
        return helm.parse_history(result.stdout)

    def _manifest(self, spec: HelmTarget, revision: int) -> list[helm.ManifestObject]:
        result = self._run(
            self._args(spec, "get", "manifest", spec.release, "--revision", str(revision)),
            release=spec.release,
            revision=revision,
        )
        return helm.parse_manifest(result.stdout)

    # -- the port ------------------------------------------------------------------------------------------

    def options(self) -> Sequence[BackendOption]:
        return ()

    def check_target(self, target: Target) -> None:
        spec = self._spec(target)
        if self.major_version not in (3, 4):
            raise BackendUnavailable(f"helm v{self.major_version} is not supported; use helm v3 or v4")
        self._history_rows(spec)

    def history(self, target: Target) -> Sequence[Revision]:
        spec = self._spec(target)
        rows = self._history_rows(spec)
        images: dict[int, list[ContainerImage]] = {}
        for row in rows[-HISTORY_IMAGES_LIMIT:]:
            images[row.revision] = helm.images_in(self._manifest(spec, row.revision))
        return helm.revisions(rows, images)

    def current_revision(self, target: Target) -> RevisionNumber:
        rows = self._history_rows(self._spec(target))
        current = helm.current_row(rows) or rows[-1]
        return RevisionNumber(current.revision)

    def plan_rollback(
        self, target: Target, to_revision: RevisionNumber | None, options: Mapping[str, bool | str]
    ) -> RollbackPlan:
        spec = self._spec(target)
        rows = self._history_rows(spec)
        chosen = helm.choose_target(spec.release, rows, to_revision, target_name=str(target.name))
        current = helm.last_deployed(rows)
        latest = rows[-1]
        if current is not None and chosen.revision == current.revision and latest.revision == current.revision:
            raise NothingToDo(f"helm release `{spec.release}` is already at revision {chosen.revision}")
        # Roll back from what the cluster runs, or a failed `helm upgrade --wait` would preview as
        # "1 → 1, no differences" while its broken image is live.
        from_row = helm.applied_row(rows)
        target_objects = self._manifest(spec, chosen.revision)
        changes = helm.manifest_changes(self._manifest(spec, from_row.revision), target_objects)
        notes = [f"target chart: {helm.chart_and_app(chosen)}"]
        if from_row.status in helm.PENDING_STATUSES:
            notes.append(
                f"revision {from_row.revision} is stuck in {from_row.status}; helm leaves it so and "
                f"records the rollback after it"
            )
        elif from_row.status == "failed":
            notes.append(f"revision {from_row.revision} failed, but the cluster runs what helm applied of it")
        if chosen.chart != from_row.chart or chosen.app_version != from_row.app_version:
            notes.append(f"current chart: {helm.chart_and_app(from_row)}")
        if not to_revision:
            notes.append(f"no revision given: the one before the latest ({latest.revision}), as helm does")
        notes.append(f"helm will record the rollback as revision {latest.revision + 1}")
        return RollbackPlan(
            from_revision=RevisionNumber(from_row.revision),
            to_revision=RevisionNumber(chosen.revision),
            changes=tuple(changes),
            notes=tuple(notes),
            options=dict(options),
            backend_data={
                "latest_before": str(latest.revision),
                # A revision's manifest never changes: the watch needs no `helm get manifest` on its critical path.
                "workloads": json.dumps(
                    [[kind.value, name, namespace] for kind, name, namespace in helm.workloads(target_objects)]
                ),
            },
        )

    def roll_back(self, target: Target, plan: RollbackPlan, operation_id: OperationId) -> RollbackReceipt:
        spec = self._spec(target)
        key = self._rollback_key(spec, plan)
        with self._lock:
            running = self._running.get(key)
        expected = RevisionNumber(int(plan.backend_data.get("latest_before", "0")) + 1)
        if running is not None:
            return RollbackReceipt(new_revision=expected, message="helm rollback already running")
        latest_before = int(plan.backend_data["latest_before"]) if "latest_before" in plan.backend_data else None
        # The release still ends at the plan's revision (one LIST of helm's storage): nothing moved under the
        # plan and no earlier attempt recorded anything, so helm may run. Otherwise helm's history decides.
        if latest_before is not None and self._storage.latest_revision(spec) != latest_before:
            recorded_row = helm.decide_rollback(spec.release, self._history_rows(spec), latest_before, plan.to_revision)
            if recorded_row is not None:
                # A take-over after a crash: helm already recorded our rollback; never create a second one.
                return RollbackReceipt(
                    new_revision=RevisionNumber(recorded_row.revision), message="helm rollback already recorded"
                )
        command = self._args(
            spec,
            "rollback",
            spec.release,
            str(plan.to_revision),
            "--history-max",
            str(HISTORY_MAX),
            "--timeout",
            f"{int(self._wait_timeout.total_seconds())}s",
            *self._wait_flags(),
        )
        try:
            process = subprocess.Popen(  # a fixed binary with arguments, never a shell
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=self._environment,
            )
        except FileNotFoundError as exc:
            raise BackendUnavailable(f"the helm binary `{self._helm}` was not found (set ROLLBOT_HELM)") from exc
        running = RunningRollback(process=process, started=self._monotonic())
        threading.Thread(target=running.collect_output, daemon=True).start()
        with self._lock:
            self._running[key] = running
        log.info("helm rollback started", operation_id=operation_id, release=spec.release, to=plan.to_revision)
        try:
            recorded = self._await_recorded(spec, plan, running)
        except BotError:
            # helm gave up before storing anything: asking again with the same plan must run helm again, not
            # find this finished process and replay its failure.
            self._forget(key, running)
            raise
        running.recorded = recorded
        return RollbackReceipt(
            new_revision=RevisionNumber(recorded) if recorded is not None else expected,
            message=f"helm rollback {spec.release} {plan.to_revision}",
        )

    def _await_recorded(self, spec: HelmTarget, plan: RollbackPlan, running: RunningRollback) -> int | None:
        """Return once helm has stored the new revision (pending-rollback), so the receipt is a fact."""
        deadline = self._monotonic() + READ_TIMEOUT_SECONDS
        while self._monotonic() < deadline:
            # Wait for helm first: a fast rollback is over within the poll interval, and a `helm history` run
            # meanwhile would only compete with helm for the CPU (measured: ~0.1 s of the approval→final path).
            if running.exited.wait(RECORD_POLL_SECONDS):
                if running.process.returncode == 0 and "latest_before" in plan.backend_data:
                    # helm stored and deployed the revision right after the plan's latest: by `rollback_row`'s
                    # rule that is this rollback's record, so reading it back would only confirm the number.
                    return int(plan.backend_data["latest_before"]) + 1
                recorded = self._started_rollback(spec, plan)
                if recorded is None and running.process.returncode != 0:
                    raise helm.translate_helm_error("\n".join(running.output), release=spec.release)
                return recorded
            recorded = self._started_rollback(spec, plan)
            if recorded is not None:
                return recorded
        return None

    def _wait_flags(self) -> list[str]:
        # v4 has --wait=watcher|legacy|hookOnly (default hookOnly: no wait); v3 has a boolean --wait.
        return ["--wait=watcher"] if self.major_version >= 4 else ["--wait"]

    def _started_rollback(self, spec: HelmTarget, plan: RollbackPlan) -> int | None:
        before = int(plan.backend_data.get("latest_before", "0"))
        row = helm.rollback_row(self._history_rows(spec), before, plan.to_revision)
        return row.revision if row is not None else None

    def watch_rollout(
        self, target: Target, plan: RollbackPlan, timeout: timedelta, resume_token: str | None = None
    ) -> Iterator[RolloutStatus]:
        spec = self._spec(target)
        with self._lock:
            running = self._running.get(self._rollback_key(spec, plan))
        deadline = self._monotonic() + timeout.total_seconds()
        if running is not None and not running.finished() and timeout >= self._wait_timeout:
            # helm gives up no later than we would: wait for its verdict rather than report before it.
            helm_gives_up = running.started + self._wait_timeout.total_seconds()
            deadline = max(deadline, helm_gives_up) + HELM_VERDICT_GRACE_SECONDS
        workloads = [
            WorkloadRef(kind=kind, name=name, namespace=namespace or spec.namespace, kube_context=spec.kube_context)
            for kind, name, namespace in self._target_workloads(spec, plan)
        ]
        observers = workload_observers(self._clients, workloads)
        for observer in observers:
            observer.start()
        if running is not None and observers:
            threading.Thread(target=wake_when_helm_exits, args=(running, observers[0]), daemon=True).start()
        outcome = HelmOutcome(
            lambda: self._history_rows(spec),
            self._monotonic,
            str(target.name),
            spec,
            plan,
            running,
            target_manifest=lambda: self._manifest(spec, plan.to_revision),
            observers=observers,
        )
        try:
            for status in follow_rollouts(
                observers,
                deadline,
                timeout,
                self._monotonic,
                is_external_done=outcome.is_done,
                external_failure=outcome.failure,
                external_name="helm to record the rollback",
            ):
                if status.phase is RolloutPhase.SUCCEEDED:
                    yield outcome.success(status)
                else:
                    yield status
        finally:
            for observer in observers:
                observer.stop()
            if running is not None and running.finished():
                # Its revision is in helm's history now; a later look (a retry, a take-over) reads it there.
                self._forget(self._rollback_key(spec, plan), running)

    def _forget(self, key: str, running: RunningRollback) -> None:
        with self._lock:
            if self._running.get(key) is running:
                del self._running[key]

    def _target_workloads(self, spec: HelmTarget, plan: RollbackPlan) -> list[tuple[WorkloadKind, str, str | None]]:
        listed = plan.backend_data.get("workloads")
        if listed is None:  # a plan stored before plans carried their workloads
            return helm.workloads(self._manifest(spec, plan.to_revision))
        return [(WorkloadKind(kind), name, namespace) for kind, name, namespace in json.loads(listed)]

    @staticmethod
    def _rollback_key(spec: HelmTarget, plan: RollbackPlan) -> str:
        # The plan fixes the rollback: release, the latest revision it saw and the target revision.
        latest = plan.backend_data.get("latest_before")
        return f"{spec.kube_context}/{spec.namespace}/{spec.release}@{latest}->{plan.to_revision}"

    def status(self, target: Target) -> TargetStatus:
        spec = self._spec(target)
        rows = self._history_rows(spec)
        latest = rows[-1]
        current = helm.last_deployed(rows)
        objects = self._manifest(spec, latest.revision)
        details = [
            f"latest revision {latest.revision}: {latest.status} — {latest.description}",
            f"chart {helm.chart_and_app(latest)}",
        ]
        kubernetes = KubernetesBackend(self._clients)
        unhealthy: list[UnhealthyUnit] = []
        healthy = latest.status == "deployed"
        for kind, name, namespace in helm.workloads(objects):
            workload = Target.model_validate(
                {
                    "name": f"{spec.release}:{name}",
                    "spec": {
                        "backend": "kubernetes",
                        "kind": kind.value,
                        "name": name,
                        "namespace": namespace or spec.namespace,
                        "kube_context": spec.kube_context,
                    },
                    "policy": target.policy.model_dump(),
                }
            )
            try:
                workload_status = kubernetes.status(workload)
            except UnknownTarget:
                details.append(f"{kind.value.lower()}/{name}: missing")
                healthy = False
                continue
            details.append(workload_status.summary)
            unhealthy.extend(workload_status.unhealthy)
            healthy = healthy and workload_status.is_healthy
        return TargetStatus(
            revision=RevisionNumber(current.revision) if current else None,
            summary=f"helm release {spec.namespace}/{spec.release}: revision {latest.revision} {latest.status}",
            images=tuple(helm.images_in(objects)),
            details=tuple(details),
            unhealthy=tuple(unhealthy),
            is_healthy=healthy,
        )

    @staticmethod
    def _spec(target: Target) -> HelmTarget:
        if not isinstance(target.spec, HelmTarget):
            raise UnknownTarget(f"`{target.name}` is not a helm target")
        return target.spec
