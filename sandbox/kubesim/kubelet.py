"""A fake scheduler and kubelet for kubesim's simulated nodes.

The scheduler binds pending pods to `node-1..node-N` (honouring a DaemonSet's node affinity, nodeName and
the hostname nodeSelector). The kubelet then walks each pod through ContainerCreating to Running/Ready after
`pod_ready_seconds`, or through the failure loops a real kubelet reports:

* an image the registry does not have: `ErrImagePull`, then `ImagePullBackOff`, alternating with a doubling
  back-off, with the `Failed`/`BackOff` events the kubelet records;
* an image marked crash-looping: `CrashLoopBackOff` with a growing restartCount and `lastState.terminated`.

Back-off delays are scaled down (`backoff_base` replaces the kubelet's 10 s) so tests stay fast, while
messages show the real kubelet's numbers.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from sandbox.kubesim.controllers.events import EventRecorder
from sandbox.kubesim.controllers.runtime import Runtime
from sandbox.kubesim.controllers.util import NODES, PODS, rfc3339
from sandbox.kubesim.registry import RegistryConfig, image_id, normalize_image
from sandbox.kubesim.store import ApiError, clone

Obj = dict[str, Any]

# Real kubelet back-off: 10 s doubling to 300 s, for both image pulls and container restarts.
_REAL_BASE_SECONDS = 10
_REAL_CAP_SECONDS = 300


def node_names(count: int) -> list[str]:
    return [f"node-{i}" for i in range(1, count + 1)]


def node_object(name: str, index: int) -> Obj:
    stamp = rfc3339()
    ip = f"172.18.0.{index + 1}"
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": "amd64",
            },
        },
        "spec": {"podCIDR": f"10.244.{index}.0/24", "podCIDRs": [f"10.244.{index}.0/24"]},
        "status": {
            "capacity": {"cpu": "8", "memory": "16374624Ki", "pods": "110", "ephemeral-storage": "102625208Ki"},
            "allocatable": {"cpu": "8", "memory": "16374624Ki", "pods": "110", "ephemeral-storage": "102625208Ki"},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": stamp,
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                }
            ],
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "nodeInfo": {
                "kubeletVersion": "v1.35.0",
                "containerRuntimeVersion": "containerd://2.1.0",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "osImage": "kubesim",
                "kernelVersion": "6.8.0",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kubeProxyVersion": "",
            },
        },
    }


def node_labels(name: str) -> dict[str, str]:
    labels: dict[str, str] = node_object(name, 0)["metadata"]["labels"]
    return labels


def _expression_matches(expr: Obj, labels: dict[str, str]) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return False


def node_matches(pod_spec: Obj, node: str) -> bool:
    """Whether a pod template may run on `node`: nodeSelector and required node affinity (labels and the
    metadata.name field), the checks the DaemonSet controller's NodeShouldRunDaemonPod makes."""
    labels = node_labels(node)
    for key, value in (pod_spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    affinity = (pod_spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True
    fields = {"metadata.name": node}
    for term in terms:
        exprs = term.get("matchExpressions") or []
        field_exprs = term.get("matchFields") or []
        if not exprs and not field_exprs:
            continue
        if all(_expression_matches(e, labels) for e in exprs) and all(
            _expression_matches(e, fields) for e in field_exprs
        ):
            return True
    return False


def affinity_node(pod: Obj) -> str | None:
    """The node a DaemonSet pod is pinned to via requiredDuringScheduling matchFields metadata.name."""
    affinity = ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in required.get("nodeSelectorTerms") or []:
        for expr in term.get("matchFields") or []:
            if expr.get("key") == "metadata.name" and expr.get("operator") == "In" and expr.get("values"):
                return str(expr["values"][0])
    return None


@dataclass
class ContainerState:
    name: str
    image: str
    # "creating" | "running" | "pull-error" | "pull-backoff" | "crash-backoff" | "completed" | "failed"
    phase: str = "creating"
    failures: int = 0
    restart_count: int = 0
    started_at: str = ""
    last_terminated: Obj | None = None
    message: str = ""
    # Running but failing its readiness probe (registry `unready`).
    unready: bool = False
    # restartPolicy Never/OnFailure: when the running container exits 0, and its terminated state then.
    finish_due: float = float("inf")
    terminated: Obj | None = None


@dataclass
class PodState:
    uid: str
    node: str
    pod_ip: str
    host_ip: str
    start_time: str
    due: float
    containers: list[ContainerState] = field(default_factory=list)
    init_containers: list[ContainerState] = field(default_factory=list)
    restart_policy: str = "Always"
    timer_for: float = -1.0
    ready_since: str = ""
    conditions_since: dict[str, tuple[str, str]] = field(default_factory=dict)


class Kubelet:
    def __init__(
        self,
        rt: Runtime,
        events: EventRecorder,
        *,
        nodes: int,
        pod_ready_seconds: float,
        registry: RegistryConfig | None,
        backoff_base: float | None = None,
    ) -> None:
        self.rt = rt
        self.store = rt.store
        self.events = events
        self.nodes = node_names(max(1, nodes))
        self.node_index = {n: i + 1 for i, n in enumerate(self.nodes)}
        self.ready_seconds = max(0.0, pod_ready_seconds)
        self.registry = registry or RegistryConfig()
        self.backoff_base = backoff_base if backoff_base is not None else min(10.0, max(0.5, 10 * pod_ready_seconds))
        self._pods: dict[tuple[str, str], PodState] = {}
        self._load: dict[str, int] = dict.fromkeys(self.nodes, 0)
        self._ip_counter: dict[str, int] = dict.fromkeys(self.nodes, 1)
        self._rr = 0
        rt.register("Kubelet", self.sync)

    def create_nodes(self) -> None:
        for name in self.nodes:
            if self.rt.get_ref(NODES, "", name) is None:
                with contextlib.suppress(ApiError):
                    self.store.create(NODES, node_object(name, self.node_index[name]))

    # ------------------------------------------------------------------ scheduling

    def _pick_node(self, pod: Obj) -> str | None:
        spec = pod.get("spec") or {}
        fits = [n for n in self.nodes if node_matches(spec, n)]
        if not fits:
            return None
        # Least loaded node, round-robin among equals, like the default scheduler's spreading.
        lowest = min(self._load[n] for n in fits)
        candidates = [n for n in fits if self._load[n] == lowest]
        self._rr += 1
        return candidates[self._rr % len(candidates)]

    def _bind(self, pod: Obj) -> None:
        node = self._pick_node(pod)
        if node is None:
            # Unschedulable: the pod stays Pending with PodScheduled=False, as on a real cluster.
            count = len(self.nodes)
            message = (
                f"0/{count} nodes are available: {count} node(s) didn't match Pod's node affinity/selector. "
                f"preemption: 0/{count} nodes are available: {count} Preemption is not helpful for scheduling."
            )
            self.events.record(pod, "Warning", "FailedScheduling", message, component="default-scheduler")
            status = dict(pod.get("status") or {})
            cond = {
                "type": "PodScheduled",
                "status": "False",
                "lastProbeTime": None,
                "lastTransitionTime": rfc3339(),
                "reason": "Unschedulable",
                "message": message,
            }
            current = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
            if current is None or current.get("reason") != "Unschedulable":
                status["conditions"] = [cond]
                status.setdefault("phase", "Pending")
                updated = clone(pod)
                updated["status"] = status
                self.store.update(PODS, updated, subresource="status", check_rv=False)
            return
        bound = {**pod, "spec": {**pod["spec"], "nodeName": node}}
        self.store.update(PODS, bound)
        meta = pod["metadata"]
        self.events.record(
            pod,
            "Normal",
            "Scheduled",
            f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}",
            component="default-scheduler",
        )

    # ------------------------------------------------------------------ sync

    def sync(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        pod = self.rt.get_ref(PODS, namespace, name)
        state = self._pods.get(key)
        if pod is None or (state is not None and state.uid != pod["metadata"]["uid"]):
            if state is not None:
                self._forget(key, state)
            if pod is None:
                return
            state = None
        if pod["metadata"].get("deletionTimestamp"):
            return
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            self._bind(pod)
            return
        if node not in self._load:
            return  # bound to a node we do not simulate
        if state is None:
            state = self._admit(pod, node)
            self._write_status(pod, state)
            self._arm(key, state)
            return
        if self._restart_changed_containers(pod, state):
            self._write_status(pod, state)
            self._arm(key, state)
            return
        remaining = state.due - time.monotonic()
        if remaining > 0:
            self._arm(key, state)
            return
        self._advance(pod, state)
        self._write_status(pod, state)
        self._arm(key, state)

    def _restart_changed_containers(self, pod: Obj, state: PodState) -> bool:
        """`kubectl set image pod/...`: the kubelet kills a container whose image changed and starts the new one."""
        images = {c.get("name"): c.get("image", "") for c in (pod.get("spec") or {}).get("containers") or []}
        changed = False
        for c in state.containers:
            new_image = images.get(c.name)
            if new_image is None or new_image == c.image:
                continue
            self.events.record(
                pod,
                "Normal",
                "Killing",
                f"Container {c.name} definition changed, will be restarted",
                component="kubelet",
                host=state.node,
                field_path=f"spec.containers{{{c.name}}}",
            )
            if c.phase in ("running", "crash-backoff", "completed", "failed"):
                code, reason = (0, "Completed") if c.phase in ("running", "completed") else (1, "Error")
                c.last_terminated = {"terminated": self._terminated(state, c, code, reason)}
                c.restart_count += 1
            c.image = new_image
            c.phase = "creating"
            c.failures = 0
            c.finish_due = float("inf")
            c.unready = False
            changed = True
        if changed:
            state.due = time.monotonic() + self.ready_seconds
        return changed

    def _forget(self, key: tuple[str, str], state: PodState) -> None:
        self._pods.pop(key, None)
        self._load[state.node] = max(0, self._load.get(state.node, 1) - 1)
        self.events.forget(state.uid)

    def _arm(self, key: tuple[str, str], state: PodState) -> None:
        if state.due == float("inf") or state.timer_for == state.due:
            return
        state.timer_for = state.due
        self.rt.queue.add_after(("Kubelet", *key), max(0.0, state.due - time.monotonic()))

    def _admit(self, pod: Obj, node: str) -> PodState:
        index = self.node_index[node]
        n = self._ip_counter[node]
        self._ip_counter[node] = n % 250 + 1
        self._load[node] += 1
        state = PodState(
            uid=pod["metadata"]["uid"],
            node=node,
            pod_ip=f"10.244.{index}.{n + 1}",
            host_ip=f"172.18.0.{index + 1}",
            start_time=rfc3339(),
            due=time.monotonic() + self.ready_seconds,
            restart_policy=(pod.get("spec") or {}).get("restartPolicy") or "Always",
            containers=[
                ContainerState(name=c.get("name", ""), image=c.get("image", ""))
                for c in (pod.get("spec") or {}).get("containers") or []
            ],
            init_containers=[
                ContainerState(name=c.get("name", ""), image=c.get("image", ""))
                for c in (pod.get("spec") or {}).get("initContainers") or []
            ],
        )
        self._pods[(pod["metadata"]["namespace"], pod["metadata"]["name"])] = state
        return state

    def _backoff(self, failures: int) -> tuple[float, int]:
        """(simulated delay, the delay the real kubelet would show) after `failures` consecutive failures."""
        steps = max(0, failures - 1)
        real = min(_REAL_CAP_SECONDS, _REAL_BASE_SECONDS * 2**steps)
        return self.backoff_base * real / _REAL_BASE_SECONDS, real

    def _advance(self, pod: Obj, state: PodState) -> None:
        """Run everything that is due: pulls, starts, crashes, completions and back-off expiries.

        Init containers run one after the other, each to completion; the app containers start once all
        of them have completed."""
        now = time.monotonic()
        for c in state.init_containers:
            if c.phase == "completed":
                continue
            due = self._step(pod, state, c, now, init=True)
            if c.phase == "completed":
                continue
            state.due = due
            return
        next_due = float("inf")
        for c in state.containers:
            next_due = min(next_due, self._step(pod, state, c, now, init=False))
        state.due = next_due

    def _step(self, pod: Obj, state: PodState, c: ContainerState, now: float, *, init: bool) -> float:
        """Advance one container; returns when it next needs attention (inf: never)."""
        meta = pod["metadata"]
        fpath = f"spec.{'initContainers' if init else 'containers'}{{{c.name}}}"
        # Init containers always run to completion; app containers only under restartPolicy Never/OnFailure.
        runs_to_completion = init or state.restart_policy != "Always"

        def emit(etype: str, reason: str, message: str) -> None:
            self.events.record(pod, etype, reason, message, component="kubelet", host=state.node, field_path=fpath)

        if c.phase == "running":
            if c.finish_due > now:
                return c.finish_due
            c.phase = "completed"
            c.terminated = self._terminated(state, c, 0, "Completed")
            return float("inf")
        if c.phase in ("completed", "failed"):
            return float("inf")
        if c.phase == "pull-error":
            # The next sync finds the image in back-off.
            c.phase = "pull-backoff"
            delay, _ = self._backoff(c.failures)
            c.message = f'Back-off pulling image "{c.image}": ErrImagePull: {self._pull_error(c.image)}'
            emit("Normal", "BackOff", f'Back-off pulling image "{c.image}"')
            emit("Warning", "Failed", "Error: ImagePullBackOff")
            return now + delay
        if c.phase in ("creating", "pull-backoff"):
            if not self.registry.image_exists(c.image):
                c.failures += 1
                c.phase = "pull-error"
                c.message = self._pull_error(c.image)
                emit("Normal", "Pulling", f'Pulling image "{c.image}"')
                emit("Warning", "Failed", f'Failed to pull image "{c.image}": {c.message}')
                emit("Warning", "Failed", "Error: ErrImagePull")
                # ErrImagePull is visible until the kubelet's next pod sync.
                return now + min(self.backoff_base, max(self.ready_seconds, 0.2))
            c.failures = 0
            self._pulled(pod, c, emit)
        if c.phase == "crash-backoff":
            c.phase = "starting"
        emit("Normal", "Created", f"Created container: {c.name}")
        emit("Normal", "Started", f"Started container {c.name}")
        c.started_at = rfc3339()
        if not self.registry.crashes(c.image):
            c.phase = "running"
            if runs_to_completion:
                c.finish_due = now + max(self.ready_seconds, 0.05)
                return c.finish_due
            if not init and self.registry.never_ready(c.image):
                c.unready = True
                emit("Warning", "Unhealthy", self._probe_failure(pod, c, state))
            return float("inf")
        if state.restart_policy == "Never":
            c.phase = "failed"
            c.terminated = self._terminated(state, c, 1, "Error")
            return float("inf")
        c.restart_count += 1 if c.last_terminated is not None else 0
        c.last_terminated = {"terminated": self._terminated(state, c, 1, "Error")}
        if c.restart_count == 0:
            c.restart_count = 1
        c.phase = "crash-backoff"
        delay, real = self._backoff(c.restart_count)
        who = f"{meta['name']}_{meta['namespace']}({meta['uid']})"
        c.message = f"back-off {real}s restarting failed container={c.name} pod={who}"
        emit("Warning", "BackOff", f"Back-off restarting failed container {c.name} in pod {who}")
        return now + delay

    def _pulled(self, pod: Obj, c: ContainerState, emit: Any) -> None:
        spec = pod.get("spec") or {}
        policy = next(
            (
                x.get("imagePullPolicy")
                for x in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
                if x.get("name") == c.name
            ),
            "IfNotPresent",
        )
        if policy == "Always":
            emit("Normal", "Pulling", f'Pulling image "{c.image}"')
            emit(
                "Normal",
                "Pulled",
                f'Successfully pulled image "{c.image}" in 512ms (512ms including waiting). Image size: 4194304 bytes.',
            )
        else:
            emit("Normal", "Pulled", f'Container image "{c.image}" already present on machine')
        c.phase = "starting"

    @staticmethod
    def _probe_failure(pod: Obj, c: ContainerState, state: PodState) -> str:
        """The kubelet's Unhealthy event text for the container's readiness probe (HTTP 503 by default)."""
        spec = next((x for x in (pod.get("spec") or {}).get("containers") or [] if x.get("name") == c.name), {})
        probe = spec.get("readinessProbe") or {}
        if "tcpSocket" in probe:
            port = probe["tcpSocket"].get("port", 80)
            return f"Readiness probe failed: dial tcp {state.pod_ip}:{port}: connect: connection refused"
        if "exec" in probe:
            return "Readiness probe failed: command exited with non-zero status 1"
        return "Readiness probe failed: HTTP probe failed with statuscode: 503"

    @staticmethod
    def _pull_error(image: str) -> str:
        ref = normalize_image(image)
        return (
            f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}": '
            f'failed to resolve reference "{ref}": {ref}: not found'
        )

    def _terminated(self, state: PodState, c: ContainerState, exit_code: int, reason: str) -> Obj:
        return {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": c.started_at,
            "finishedAt": rfc3339(),
            "containerID": self._container_id(state, c),
        }

    @staticmethod
    def _container_id(state: PodState, c: ContainerState) -> str:
        import hashlib

        digest = hashlib.sha256(f"{state.uid}/{c.name}/{c.restart_count}".encode()).hexdigest()
        return f"containerd://{digest}"

    # ------------------------------------------------------------------ status

    def _condition(self, state: PodState, ctype: str, ok: bool, reason: str = "", message: str = "") -> Obj:
        status = "True" if ok else "False"
        prev = state.conditions_since.get(ctype)
        if prev is None or prev[0] != status:
            prev = (status, rfc3339())
            state.conditions_since[ctype] = prev
        cond: Obj = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": prev[1]}
        if not ok and reason:
            cond["reason"] = reason
            if message:
                cond["message"] = message
        return cond

    def _container_status(self, state: PodState, c: ContainerState, *, init: bool, waiting: str) -> Obj:
        pulled = ("running", "crash-backoff", "completed", "failed")
        entry: Obj = {
            "name": c.name,
            "image": normalize_image(c.image) if c.phase in pulled else c.image,
            "imageID": image_id(c.image) if c.phase in pulled else "",
            # A completed init container counts as ready, a running one as started.
            "ready": c.phase == "completed" if init else (c.phase == "running" and not c.unready),
            "restartCount": c.restart_count,
            "started": c.phase == "running",
            "lastState": c.last_terminated or {},
        }
        if c.phase == "running":
            entry["containerID"] = self._container_id(state, c)
            entry["state"] = {"running": {"startedAt": c.started_at}}
        elif c.phase in ("completed", "failed") and c.terminated is not None:
            entry["containerID"] = c.terminated["containerID"]
            entry["state"] = {"terminated": dict(c.terminated)}
        elif c.phase == "crash-backoff":
            entry["containerID"] = self._container_id(state, c)
            entry["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": c.message}}
        elif c.phase == "pull-error":
            entry["state"] = {"waiting": {"reason": "ErrImagePull", "message": c.message}}
        elif c.phase == "pull-backoff":
            entry["state"] = {"waiting": {"reason": "ImagePullBackOff", "message": c.message}}
        else:
            entry["state"] = {"waiting": {"reason": waiting}}
        return entry

    def _write_status(self, pod: Obj, state: PodState) -> None:
        incomplete = [c.name for c in state.init_containers if c.phase != "completed"]
        init_failed = any(c.phase == "failed" for c in state.init_containers)
        init_statuses = [
            self._container_status(state, c, init=True, waiting="PodInitializing") for c in state.init_containers
        ]
        waiting = "PodInitializing" if incomplete else "ContainerCreating"
        statuses = [self._container_status(state, c, init=False, waiting=waiting) for c in state.containers]
        unready = [c.name for c in state.containers if c.phase != "running" or c.unready]
        any_started = any(c.phase in ("running", "completed", "failed", "crash-backoff") for c in state.containers)
        all_ready = not unready
        not_ready_reason, not_ready_msg = "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]"
        phase = "Running" if any_started else "Pending"
        if init_failed:
            phase = "Failed"
        elif state.containers and all(c.phase in ("completed", "failed") for c in state.containers):
            phase = "Succeeded" if all(c.phase == "completed" for c in state.containers) else "Failed"
        if phase in ("Succeeded", "Failed"):
            not_ready_reason, not_ready_msg = "PodCompleted", ""
        status: Obj = {
            "phase": phase,
            "conditions": [
                self._condition(state, "PodReadyToStartContainers", phase not in ("Succeeded", "Failed")),
                self._condition(
                    state,
                    "Initialized",
                    not incomplete,
                    "ContainersNotInitialized",
                    f"containers with incomplete status: [{' '.join(incomplete)}]",
                ),
                self._condition(state, "Ready", all_ready, not_ready_reason, not_ready_msg),
                self._condition(state, "ContainersReady", all_ready, not_ready_reason, not_ready_msg),
                self._condition(state, "PodScheduled", True),
            ],
            "hostIP": state.host_ip,
            "hostIPs": [{"ip": state.host_ip}],
            "podIP": state.pod_ip,
            "podIPs": [{"ip": state.pod_ip}],
            "startTime": state.start_time,
            "containerStatuses": statuses,
            "qosClass": (pod.get("status") or {}).get("qosClass", "BestEffort"),
        }
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        if pod.get("status") == status:
            return
        self.store.update(PODS, {"metadata": pod["metadata"], "status": status}, subresource="status", check_rv=False)
