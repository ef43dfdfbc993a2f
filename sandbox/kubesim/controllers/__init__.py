"""kubesim's controller manager: Deployment, ReplicaSet, DaemonSet, StatefulSet, Job, garbage collector, plus the
fake scheduler/kubelet. `KubeSim.start()` calls `start_controllers`.

Fidelity notes (where kubesim knowingly differs from a real cluster):
- pod-template-hash / DaemonSet revision hashes use fnv32a over the semantic JSON of the template, not Go's
  spew dump of the typed struct, so names differ from a real cluster's (format, alphabet and stability match).
- ControllerRevision `data` is Go-compatible (sorted keys, omitempty rules for pod-template fields), so
  kubectl's byte comparison ("skipped rollback") works as long as the server serialises it compactly.
- Pods disappear at once when deleted (no Terminating phase); probes are not executed (registry `unready`
  simulates a failing readiness probe); back-off delays are scaled by `backoff_base`.
- Events are aggregated by (object, reason, message) with `count`, without client-go's similar-event spam filter.
"""

from __future__ import annotations

from sandbox.kubesim.controllers.daemonset import DaemonSetController
from sandbox.kubesim.controllers.deployment import DeploymentController
from sandbox.kubesim.controllers.events import EventRecorder
from sandbox.kubesim.controllers.gc import GarbageCollector
from sandbox.kubesim.controllers.job import JobController
from sandbox.kubesim.controllers.replicaset import ReplicaSetController
from sandbox.kubesim.controllers.runtime import Runtime
from sandbox.kubesim.controllers.statefulset import StatefulSetController
from sandbox.kubesim.kubelet import Kubelet
from sandbox.kubesim.registry import RegistryConfig
from sandbox.kubesim.store import Store

__all__ = ["Controllers", "start_controllers"]


class Controllers:
    """The running control plane; `stop()` ends the worker threads and detaches from the store."""

    def __init__(
        self,
        store: Store,
        *,
        nodes: int,
        pod_ready_seconds: float,
        registry: RegistryConfig | None,
        events: bool = True,
        workers: int = 1,
        backoff_base: float | None = None,
    ) -> None:
        self.store = store
        self.runtime = Runtime(store, workers=workers)
        self.events = EventRecorder(store, enabled=events)
        self.kubelet = Kubelet(
            self.runtime,
            self.events,
            nodes=nodes,
            pod_ready_seconds=pod_ready_seconds,
            registry=registry,
            backoff_base=backoff_base,
        )
        self.deployments = DeploymentController(self.runtime, self.events)
        self.replicasets = ReplicaSetController(self.runtime, self.events)
        self.daemonsets = DaemonSetController(self.runtime, self.events, self.kubelet.nodes)
        self.statefulsets = StatefulSetController(self.runtime, self.events)
        self.jobs = JobController(self.runtime, self.events)
        self.gc = GarbageCollector(self.runtime)

    def start(self) -> Controllers:
        self.kubelet.create_nodes()
        self.runtime.start()
        return self

    def stop(self) -> None:
        self.runtime.stop()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once no work is queued or running (delayed work such as readiness timers may be pending)."""
        return self.runtime.queue.wait_idle(timeout)


def start_controllers(
    store: Store,
    *,
    nodes: int = 3,
    pod_ready_seconds: float = 1.0,
    registry: RegistryConfig | None = None,
    events: bool = True,
    workers: int = 1,
    backoff_base: float | None = None,
) -> Controllers:
    return Controllers(
        store,
        nodes=nodes,
        pod_ready_seconds=pod_ready_seconds,
        registry=registry,
        events=events,
        workers=workers,
        backoff_base=backoff_base,
    ).start()
