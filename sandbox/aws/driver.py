"""The ECS rollout driver: what moto does not model about deployments (ecs.md §3–§4).

Stock moto keeps a service's single create-time deployment IN_PROGRESS forever and ignores a new task
definition on `update_service`. The driver patches moto's ECS backend in this process so that:

* `update_service` with a new task definition (or `forceNewDeployment`) inserts a new PRIMARY deployment
  (IN_PROGRESS, counts 0) and demotes the old PRIMARY to ACTIVE; `taskDefinition` is stored as a full ARN;
* `create_service` may settle its first deployment at once (`auto_settle`), as a long-running service would be;
* `tick()` moves every IN_PROGRESS PRIMARY one step according to a plan: *succeed* (start one new task, stop one
  old one, then COMPLETED + steady state), *fail* (one more failed task; the circuit breaker, when enabled,
  marks the deployment FAILED at ECS's threshold and, with rollback, starts a deployment of the last COMPLETED
  task definition), or *hang* (nothing happens);
* service events are inserted newest first with unique ids, and EventBridge-shaped deployment events are kept
  in `emitted`.

Plans are per service (`plan(service, mode)`) or per task definition (`plan_task_definition("web:5", "fail")`,
which wins), so a circuit-breaker rollback to a good revision progresses normally. Every COMPLETED is recorded
with its wall-clock time in `completions` (the latency benchmark compares the bot against it).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from moto.core.utils import utcnow
from moto.ecs import models as ecs_models

SUCCEED = "succeed"
FAIL = "fail"
HANG = "hang"
MODES = (SUCCEED, FAIL, HANG)

# ECS keeps about the last 100 events per service.
MAX_EVENTS = 100
CIRCUIT_BREAKER_FAILED_REASON = "ECS deployment circuit breaker: task failed to start."


def circuit_breaker_threshold(desired: int) -> int:
    """ECS's failed-task threshold: half the desired count, clamped to [3, 200]."""
    return min(max(math.ceil(desired / 2), 3), 200)


@dataclass
class Completion:
    cluster: str
    service: str
    deployment_id: str
    task_definition: str
    at: float  # time.time()
    monotonic: float


@dataclass
class _ServiceMemory:
    last_completed: tuple[str, str] | None = None  # (deployment id, task definition ARN)


@dataclass
class RolloutDriver:
    """Install once per process; `reset()` between tests. Thread-safe against moto's request threads."""

    auto_settle: bool = True
    default_mode: str = SUCCEED
    plans: dict[tuple[str, str], str] = field(default_factory=dict)
    task_definition_plans: dict[str, str] = field(default_factory=dict)
    emitted: list[dict[str, Any]] = field(default_factory=list)
    completions: list[Completion] = field(default_factory=list)
    _memory: dict[tuple[str, str, str, str], _ServiceMemory] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _changed: threading.Condition = field(init=False)
    _originals: dict[str, Callable[..., Any]] = field(default_factory=dict)
    _background: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _ids: Iterator[int] = field(default_factory=lambda: iter(range(7_000_000_000_000_000_001, 10**19)))

    def __post_init__(self) -> None:
        self._changed = threading.Condition(self._lock)

    # --- installation -------------------------------------------------------------------------------------

    def install(self) -> RolloutDriver:
        if self._originals:
            return self
        backend_class = ecs_models.EC2ContainerServiceBackend
        self._originals = {
            "update_service": backend_class.update_service,
            "create_service": backend_class.create_service,
        }
        driver = self

        def update_service(backend: Any, service_properties: dict[str, Any]) -> Any:
            return driver._update_service(backend, service_properties)

        def create_service(backend: Any, *args: Any, **kwargs: Any) -> Any:
            return driver._create_service(backend, *args, **kwargs)

        backend_class.update_service = update_service  # type: ignore[method-assign]
        backend_class.create_service = create_service  # type: ignore[method-assign]
        return self

    def uninstall(self) -> None:
        self.stop_background()
        backend_class = ecs_models.EC2ContainerServiceBackend
        for name, original in self._originals.items():
            setattr(backend_class, name, original)
        self._originals = {}

    def reset(self) -> None:
        """Forget plans and records (moto's own state is reset through /moto-api/reset or mock_aws)."""
        with self._lock:
            self.plans.clear()
            self.task_definition_plans.clear()
            self.emitted.clear()
            self.completions.clear()
            self._memory.clear()
            self.default_mode = SUCCEED

    # --- plans --------------------------------------------------------------------------------------------

    def plan(self, service: str, mode: str, cluster: str = "default") -> None:
        _check_mode(mode)
        with self._lock:
            self.plans[(cluster, service)] = mode

    def plan_task_definition(self, name: str, mode: str) -> None:
        """`name` is `family:revision`; deployments of that revision follow `mode` whatever the service plan."""
        _check_mode(mode)
        with self._lock:
            self.task_definition_plans[_td_name(name)] = mode

    def mode_for(self, cluster: str, service: str, task_definition: str) -> str:
        with self._lock:
            by_td = self.task_definition_plans.get(_td_name(task_definition))
            return by_td or self.plans.get((cluster, service), self.default_mode)

    # --- time ---------------------------------------------------------------------------------------------

    def tick(self) -> int:
        """Advance every in-flight deployment by one step; returns how many services moved."""
        moved = 0
        with self._lock:
            for key, backend, service in list(self._services()):
                if self._step(key, backend, service):
                    moved += 1
            if moved:
                self._changed.notify_all()
        return moved

    def run_in_background(self, interval: float = 0.5) -> None:
        """Tick every `interval` seconds in a daemon thread (realistic polling, the demo, the benchmark)."""
        self.stop_background()
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                self.tick()

        self._background = threading.Thread(target=loop, name="ecs-rollout-driver", daemon=True)
        self._background.start()

    def stop_background(self) -> None:
        self._stop.set()
        if self._background is not None:
            self._background.join(timeout=5)
            self._background = None

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Block until `predicate()` holds after a tick (no sleep polling in tests)."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout=timeout)

    def settle(self, cluster: str, service: str) -> None:
        """Mark the service's PRIMARY deployment COMPLETED with every task running (a service that has been up)."""
        with self._lock:
            for key, _backend, svc in self._services():
                if key[2] == cluster and key[3] == service:
                    self._complete(key, svc, _primary(svc), record=False)

    # --- the patched moto calls ---------------------------------------------------------------------------

    def _create_service(self, backend: Any, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            service = self._originals["create_service"](backend, *args, **kwargs)
            for deployment in service.deployments:
                deployment.setdefault("failedTasks", 0)
            if self.auto_settle and service.deployments:
                key = (backend.account_id, backend.region_name, service.cluster_name, service.name)
                self._complete(key, service, service.deployments[0], record=False)
            return service

    def _update_service(self, backend: Any, properties: dict[str, Any]) -> Any:
        with self._lock:
            cluster_name = (properties.get("cluster") or "default").split("/")[-1]
            name = properties["service"].split("/")[-1]
            existing = backend._get_service(cluster_name, name)
            before = existing.task_definition
            forced = bool(properties.get("force_new_deployment"))
            service = self._originals["update_service"](backend, properties)
            if service.task_definition:
                service.task_definition = backend.describe_task_definition(service.task_definition).arn
            for deployment in service.deployments:
                if deployment.get("status") == "PRIMARY":
                    deployment["desiredCount"] = service.desired_count
            if service.deployments and (service.task_definition != before or forced):
                key = (backend.account_id, backend.region_name, service.cluster_name, service.name)
                self._start_deployment(key, service, service.task_definition, reason=None)
            self._recount(service)
            self._changed.notify_all()
            return service

    # --- the model ----------------------------------------------------------------------------------------

    def _services(self) -> Iterator[tuple[tuple[str, str, str, str], Any, Any]]:
        for account_id, regions in list(ecs_models.ecs_backends.items()):
            for region, backend in list(regions.items()):
                for service in list(backend.services.values()):
                    if service.status == "ACTIVE" and service.deployments:
                        yield (account_id, region, service.cluster_name, service.name), backend, service

    def _start_deployment(
        self, key: tuple[str, str, str, str], service: Any, task_definition: str, reason: str | None
    ) -> dict[str, Any]:
        deployment_id = f"ecs-svc/{next(self._ids)}"
        now = utcnow()
        primary = _primary(service)
        deployment = {
            **{k: v for k, v in (primary or {}).items() if k in ("launchType", "platformFamily", "platformVersion")},
            "id": deployment_id,
            "status": "PRIMARY",
            "taskDefinition": task_definition,
            "desiredCount": service.desired_count,
            "pendingCount": 0,
            "runningCount": 0,
            "failedTasks": 0,
            "createdAt": now,
            "updatedAt": now,
            "rolloutState": "IN_PROGRESS",
            "rolloutStateReason": reason or f"ECS deployment {deployment_id} in progress.",
        }
        others = []
        for old in service.deployments:
            if old.get("status") == "PRIMARY":
                old = {**old, "status": "ACTIVE", "updatedAt": now}
            others.append(old)
        service.deployments = [deployment, *others]
        self._emit(key, "SERVICE_DEPLOYMENT_IN_PROGRESS", deployment_id, deployment["rolloutStateReason"])
        return deployment

    def _step(self, key: tuple[str, str, str, str], backend: Any, service: Any) -> bool:
        primary = _primary(service)
        if primary is None or primary.get("rolloutState") != "IN_PROGRESS":
            return False
        mode = self.mode_for(key[2], key[3], primary["taskDefinition"])
        if mode == HANG:
            return False
        if mode == FAIL:
            self._fail_one_task(key, service, primary)
        else:
            self._advance(key, service, primary)
        self._recount(service)
        return True

    def _advance(self, key: tuple[str, str, str, str], service: Any, primary: dict[str, Any]) -> None:
        desired = int(primary.get("desiredCount") or 0)
        running = int(primary.get("runningCount") or 0)
        if running < desired:
            primary["runningCount"] = running + 1
            primary["pendingCount"] = max(desired - running - 1, 0)
            self._event(service, f"has started 1 tasks: (task {uuid.uuid4().hex}).")
        for old in reversed(service.deployments):
            if old is not primary and int(old.get("runningCount") or 0) > 0:
                old["runningCount"] = int(old["runningCount"]) - 1
                self._event(service, f"has stopped 1 running tasks: (task {uuid.uuid4().hex}).")
                break
        primary["updatedAt"] = utcnow()
        draining = any(int(d.get("runningCount") or 0) > 0 for d in service.deployments if d is not primary)
        if int(primary["runningCount"]) >= desired and not draining:
            self._complete(key, service, primary, record=True)

    def _fail_one_task(self, key: tuple[str, str, str, str], service: Any, primary: dict[str, Any]) -> None:
        primary["failedTasks"] = int(primary.get("failedTasks") or 0) + 1
        primary["pendingCount"] = int(primary.get("desiredCount") or 0)
        primary["updatedAt"] = utcnow()
        task = uuid.uuid4().hex
        self._event(service, f"has started 1 tasks: (task {task}).")
        self._event(service, f"has stopped 1 running tasks: (task {task}).")
        breaker = (getattr(service, "deployment_configuration", None) or {}).get("deploymentCircuitBreaker") or {}
        if not breaker.get("enable"):
            if primary["failedTasks"] % 3 == 0:
                self._event(service, "is unable to consistently start tasks successfully.")
            return
        if primary["failedTasks"] < circuit_breaker_threshold(int(primary.get("desiredCount") or 0)):
            return
        primary["rolloutState"] = "FAILED"
        primary["rolloutStateReason"] = CIRCUIT_BREAKER_FAILED_REASON
        primary["pendingCount"] = 0
        self._event(service, f"(deployment {primary['id']}) deployment failed: tasks failed to start.")
        self._emit(key, "SERVICE_DEPLOYMENT_FAILED", primary["id"], CIRCUIT_BREAKER_FAILED_REASON)
        memory = self._memory.get(key)
        if breaker.get("rollback") and memory and memory.last_completed:
            good_id, good_td = memory.last_completed
            service.task_definition = good_td
            self._start_deployment(
                key,
                service,
                good_td,
                reason=f"ECS deployment circuit breaker: rolling back to deploymentId {good_id}.",
            )

    def _complete(
        self, key: tuple[str, str, str, str], service: Any, deployment: dict[str, Any] | None, record: bool
    ) -> None:
        if deployment is None:
            return
        desired = int(deployment.get("desiredCount") or 0)
        deployment.update(
            runningCount=desired,
            pendingCount=0,
            rolloutState="COMPLETED",
            rolloutStateReason=f"ECS deployment {deployment['id']} completed.",
            updatedAt=utcnow(),
        )
        service.deployments = [deployment]
        self._recount(service)
        self._memory.setdefault(key, _ServiceMemory()).last_completed = (deployment["id"], deployment["taskDefinition"])
        if record:
            self._event(service, f"(deployment {deployment['id']}) deployment completed.")
            self._event(service, "has reached a steady state.")
            self._emit(key, "SERVICE_DEPLOYMENT_COMPLETED", deployment["id"], deployment["rolloutStateReason"])
            self.completions.append(
                Completion(
                    cluster=key[2],
                    service=key[3],
                    deployment_id=deployment["id"],
                    task_definition=deployment["taskDefinition"],
                    at=time.time(),
                    monotonic=time.monotonic(),
                )
            )

    @staticmethod
    def _recount(service: Any) -> None:
        # The stock services_stable waiter reads the service-level counts; keep them the sum over deployments.
        service.running_count = sum(int(d.get("runningCount") or 0) for d in service.deployments)
        service.pending_count = sum(int(d.get("pendingCount") or 0) for d in service.deployments)

    @staticmethod
    def _event(service: Any, text: str) -> None:
        event = {"id": str(uuid.uuid4()), "createdAt": utcnow(), "message": f"(service {service.name}) {text}"}
        service.events = [event, *service.events][:MAX_EVENTS]

    def _emit(self, key: tuple[str, str, str, str], name: str, deployment_id: str, reason: str) -> None:
        self.emitted.append(
            {
                "source": "aws.ecs",
                "detail-type": "ECS Deployment State Change",
                "account": key[0],
                "region": key[1],
                "resources": [f"arn:aws:ecs:{key[1]}:{key[0]}:service/{key[2]}/{key[3]}"],
                "detail": {
                    "eventType": "ERROR" if name.endswith("FAILED") else "INFO",
                    "eventName": name,
                    "deploymentId": deployment_id,
                    "updatedAt": utcnow().isoformat() + "Z",
                    "reason": reason,
                },
            }
        )


def _primary(service: Any) -> dict[str, Any] | None:
    return next((d for d in service.deployments if d.get("status") == "PRIMARY"), None)


def _td_name(value: str) -> str:
    return value.rsplit("/", 1)[-1]


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
