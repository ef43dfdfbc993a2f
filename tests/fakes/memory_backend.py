"""`MemoryBackend`: a deployment technology that exists only in a dict (or in Redis), with scripted rollouts.

It satisfies `ports.Backend` the way a real adapter does: revisions are numbered, exactly one is current,
`plan_rollback(None)` means the previous one, `roll_back` is idempotent per operation id (a replica that
crashed after calling it may call it again) and refuses when someone deployed (`deploy`) since the plan or
since its own rollback, and `watch_rollout` yields progress that ends SUCCEEDED or FAILED.
What happens during a rollout is scripted per target (`RolloutScript`): succeed after N steps, fail with a
reason, hang until the watch times out, or hold at the first step until the test releases it.

The world lives in a `BackendWorld`: `MemoryWorld` for one process, `RedisWorld` when the bot runs in a
subprocess that the test kills and restarts (the rollout state must outlive the process, as a real
cluster's would). tests/contracts/test_memory_backend.py holds it to the backend contract suite.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from bot.core.catalog import Target
from bot.core.errors import BackendUnavailable, NothingToDo, RevisionNotFound, RollbackRefused, UnknownTarget
from bot.core.operations import OperationId
from bot.core.rollouts import (
    BackendOption,
    Change,
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

Outcome = Literal["succeed", "fail", "hang"]
# A held or hanging rollout repeats its last status this often (a real backend's poll interval, compressed).
HOLD_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class RolloutScript:
    """What the next rollout of a target does."""

    steps: int = 3
    outcome: Outcome = "succeed"
    reason: str = "pods crash-looping: CrashLoopBackOff"
    # Emit an unhealthy pod and an event at this step (1-based), for thread-line tests.
    trouble_at_step: int | None = None
    # Stop at step 1 until `release(target)` is called (the "kill the bot mid-rollout" scenarios).
    hold: bool = False
    # Seconds between steps, so progress coalescing and leases can be observed.
    step_delay: float = 0.0
    # Raise an unexpected RuntimeError (a bug, not a BotError) from `roll_back` or from `watch_rollout`.
    explode_in: Literal["roll_back", "watch"] | None = None
    # Raise BackendUnavailable from this many `roll_back` calls before one succeeds.
    unavailable_calls: int = 0
    # Cut this many watches with BackendUnavailable after their first observation.
    watch_interruptions: int = 0
    # A big rollout in trouble: from `trouble_at_step` (or step 1) on, this many pods are unhealthy at every step
    # (every fifth one CrashLoopBackOff, the others ImagePullBackOff; replaced by new pods every 10 steps)…
    unhealthy_pods: int = 0
    # …and every step brings this many service events (tasks started and stopped, each with its own id).
    events_per_step: int = 0
    # Time each step takes on the backend's `pass_time` clock (a ManualClock), so minutes pass without waiting.
    simulated_step_seconds: float = 0.0


class BackendWorld(Protocol):
    """Where the fake's state lives; `update` is atomic per key."""

    def load(self, key: str) -> dict[str, Any] | None: ...

    def update(self, key: str, change: Callable[[dict[str, Any] | None], dict[str, Any]]) -> dict[str, Any]: ...


class MemoryWorld:
    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._data: dict[str, str] = {}

    def load(self, key: str) -> dict[str, Any] | None:
        with self._mutex:
            raw = self._data.get(key)
        return json.loads(raw) if raw is not None else None

    def update(self, key: str, change: Callable[[dict[str, Any] | None], dict[str, Any]]) -> dict[str, Any]:
        with self._mutex:
            raw = self._data.get(key)
            new = change(json.loads(raw) if raw is not None else None)
            self._data[key] = json.dumps(new)
            return new


class RedisWorld:
    """The same world in Redis (WATCH/MULTI per key), shared by a test and the bot subprocesses it starts."""

    def __init__(self, client: Any, prefix: str = "fakebackend:") -> None:
        self._client = client
        self._prefix = prefix

    def load(self, key: str) -> dict[str, Any] | None:
        raw = self._client.get(self._prefix + key)
        return json.loads(raw) if raw is not None else None

    def update(self, key: str, change: Callable[[dict[str, Any] | None], dict[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}

        def transaction(pipe: Any) -> None:
            raw = pipe.get(self._prefix + key)
            new = change(json.loads(raw) if raw is not None else None)
            pipe.multi()
            pipe.set(self._prefix + key, json.dumps(new))
            result.update(new)

        self._client.transaction(transaction, self._prefix + key)
        return result


@dataclass
class _Arrangement:
    revisions: list[dict[str, Any]] = field(default_factory=list)
    current: int = 0
    script: dict[str, Any] = field(default_factory=lambda: asdict(RolloutScript()))
    receipts: dict[str, dict[str, Any]] = field(default_factory=dict)
    rollout: dict[str, Any] | None = None
    rollbacks_applied: int = 0
    unavailable: bool = False


def _image(number: int, name: str) -> str:
    return f"ghcr.io/acme/{name}:1.{number}.0"


class MemoryBackend:
    """A fake `ports.Backend`. Arrange targets with `arrange(target, revisions=2)`; script with `script(...)`."""

    def __init__(
        self,
        world: BackendWorld | None = None,
        *,
        declared_options: Sequence[BackendOption] = (),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        poll_interval: float = 0.02,
        pass_time: Callable[[timedelta], object] | None = None,
        caller: str | None = None,
    ) -> None:
        self._world: BackendWorld = world if world is not None else MemoryWorld()
        self._options = tuple(declared_options)
        self._now = now
        self._poll = poll_interval
        self._pass_time = pass_time
        # Who calls `roll_back` (a replica id), logged in the world so fault tests can tell replicas apart.
        self._caller = caller

    # --- arranging the world (tests) -------------------------------------------------------------------

    def arrange(
        self,
        target: Target,
        revisions: int = 2,
        current: int | None = None,
        script: RolloutScript | None = None,
        container: str = "web",
    ) -> None:
        """Revisions 1..N exist (each a new image); `current` (default N) runs. Resets receipts and rollouts."""
        deployed = self._now() - timedelta(hours=revisions)
        rows = [
            {
                "number": n,
                "image": _image(n, target.name),
                "container": container,
                "deployed_at": (deployed + timedelta(hours=n - 1)).isoformat(),
                "cause": f"deploy {target.name} 1.{n}.0",
            }
            for n in range(1, revisions + 1)
        ]
        state = _Arrangement(revisions=rows, current=current if current is not None else revisions)
        if script is not None:
            state.script = asdict(script)
        self._world.update(self._key(target), lambda _: asdict(state))

    def script(self, target: Target, script: RolloutScript) -> None:
        self._change(target, lambda s: s | {"script": asdict(script)})

    def release(self, target: Target) -> None:
        """Let a held rollout (`RolloutScript(hold=True)`) continue."""
        self._change(target, lambda s: s | {"script": s["script"] | {"hold": False}})

    def deploy(self, target: Target) -> RevisionNumber:
        """Someone deploys the next image outside the bot: a new revision, current at once."""

        def apply(state: dict[str, Any]) -> dict[str, Any]:
            number = max(int(row["number"]) for row in state["revisions"]) + 1
            row = dict(state["revisions"][-1])
            row.update(
                number=number,
                image=_image(number, target.name),
                deployed_at=self._now().isoformat(),
                cause=f"deploy {target.name} 1.{number}.0",
            )
            return state | {"revisions": [*state["revisions"], row], "current": number, "rollout": None}

        self._change(target, apply)
        return self.current_revision(target)

    def set_unavailable(self, target: Target, unavailable: bool = True) -> None:
        self._change(target, lambda s: s | {"unavailable": unavailable})

    def rollbacks_applied(self, target: Target) -> int:
        """How many times a rollback really changed the target (idempotent repeats do not count)."""
        return int(self._state(target)["rollbacks_applied"])

    def roll_back_calls(self, target: Target) -> int:
        return int(self._state(target).get("calls", 0))

    def roll_back_call_log(self, target: Target) -> list[dict[str, Any]]:
        """Every `roll_back` call in the order the world saw it: `{"by": caller, "operation_id": …}`."""
        return list(self._state(target).get("call_log", []))

    # --- ports.Backend ----------------------------------------------------------------------------------

    def options(self) -> Sequence[BackendOption]:
        return self._options

    def check_target(self, target: Target) -> None:
        self._state(target)

    def history(self, target: Target) -> Sequence[Revision]:
        state = self._state(target)
        return tuple(self._revision(row, state["current"]) for row in state["revisions"])

    def current_revision(self, target: Target) -> RevisionNumber:
        return RevisionNumber(int(self._state(target)["current"]))

    def plan_rollback(
        self, target: Target, to_revision: RevisionNumber | None, options: Mapping[str, bool | str]
    ) -> RollbackPlan:
        state = self._state(target)
        current = int(state["current"])
        numbers = [int(row["number"]) for row in state["revisions"]]
        if to_revision is None or to_revision == 0:
            older = [n for n in numbers if n < current]
            if not older:
                raise RevisionNotFound(f"{target.name} has no revision before {current}", available=numbers)
            to_revision = RevisionNumber(max(older))
        if to_revision not in numbers:
            listed = ", ".join(str(n) for n in numbers)
            raise RevisionNotFound(f"{target.name} has no revision {to_revision} (has {listed})", available=numbers)
        if to_revision == current:
            raise NothingToDo(f"{target.name} is already at revision {current}")
        before = self._row(state, current)
        after = self._row(state, to_revision)
        return RollbackPlan(
            from_revision=RevisionNumber(current),
            to_revision=to_revision,
            changes=(
                Change(
                    scope=f"container {after['container']}", field="image", before=before["image"], after=after["image"]
                ),
            ),
            notes=(f"revision {to_revision}: {after['cause']}",),
            options=dict(options),
        )

    def roll_back(self, target: Target, plan: RollbackPlan, operation_id: OperationId) -> RollbackReceipt:
        def apply(state: dict[str, Any] | None) -> dict[str, Any]:
            assert state is not None
            state["calls"] = state.get("calls", 0) + 1
            current = int(state["current"])
            state.setdefault("call_log", []).append({"by": self._caller, "operation_id": operation_id})
            if operation_id in state["receipts"]:
                if current != int(plan.to_revision):
                    raise RollbackRefused(
                        f"this operation already rolled {target.name} back to revision {plan.to_revision}, but "
                        f"it has changed since: now at revision {current}. Not rolling back over it"
                    )
                return state
            if current not in (int(plan.from_revision), int(plan.to_revision)):
                raise RollbackRefused(
                    f"{target.name} changed since this rollback was approved: now at revision {current}, not "
                    f"{plan.from_revision}. Not rolling back over it"
                )
            state["current"] = int(plan.to_revision)
            state["rollbacks_applied"] += 1
            state["receipts"][operation_id] = {"new_revision": None, "message": f"rolled back to {plan.to_revision}"}
            state["rollout"] = {"operation_id": operation_id, "to": int(plan.to_revision), "step": 0}
            return state

        script = RolloutScript(**self._state(target)["script"])
        if script.explode_in == "roll_back":
            raise RuntimeError("boom: KeyError('spec') in the rollback code, with internal details")
        if script.unavailable_calls > 0:
            self.script(target, replace(script, unavailable_calls=script.unavailable_calls - 1))
            raise BackendUnavailable(f"{target.spec.display} cannot be reached right now")
        state = self._world.update(self._key(target), apply)
        return RollbackReceipt.model_validate(state["receipts"][operation_id])

    def watch_rollout(
        self, target: Target, plan: RollbackPlan, timeout: timedelta, resume_token: str | None = None
    ) -> Iterator[RolloutStatus]:
        deadline = time.monotonic() + timeout.total_seconds()
        while True:
            state = self._state(target)
            script = RolloutScript(**state["script"])
            if script.explode_in == "watch":
                raise RuntimeError("boom: AttributeError in the watch code, with internal details")
            if script.watch_interruptions > 0 and int((state["rollout"] or {"step": 0})["step"]) >= 1:
                self.script(target, replace(script, watch_interruptions=script.watch_interruptions - 1))
                raise BackendUnavailable(f"{target.spec.display}: the watch connection was reset")
            rollout = state["rollout"] or {"step": script.steps}
            step = int(rollout["step"])
            if step >= script.steps:
                yield self._finished(script)
                return
            if time.monotonic() >= deadline:
                yield RolloutStatus(
                    phase=RolloutPhase.FAILED,
                    summary=f"timed out after {int(timeout.total_seconds())}s",
                    reason=f"rollout did not finish within {int(timeout.total_seconds())}s",
                )
                return
            if script.outcome == "hang" or (script.hold and step >= 1):
                if step == 0:
                    self._advance(target)
                    yield self._progress(script, 1)
                    continue
                # Stuck: keep reporting the same state, as a polling backend would, so watchers can stop.
                time.sleep(max(self._poll, script.step_delay, HOLD_POLL_SECONDS))
                yield self._progress(script, step)
                continue
            if script.step_delay:
                time.sleep(script.step_delay)
            if script.simulated_step_seconds and self._pass_time is not None:
                self._pass_time(timedelta(seconds=script.simulated_step_seconds))
            step = self._advance(target)
            if step < script.steps:
                yield self._progress(script, step)

    def status(self, target: Target) -> TargetStatus:
        state = self._state(target)
        row = self._row(state, int(state["current"]))
        return TargetStatus(
            revision=RevisionNumber(int(state["current"])),
            summary="all pods ready",
            images=(ContainerImage(container=row["container"], image=row["image"]),),
        )

    # --- internals --------------------------------------------------------------------------------------

    def _progress(self, script: RolloutScript, step: int) -> RolloutStatus:
        if script.unhealthy_pods or script.events_per_step:
            return self._big_trouble(script, step)
        trouble = script.trouble_at_step == step
        return RolloutStatus(
            phase=RolloutPhase.PROGRESSING,
            summary=f"{step}/{script.steps} pods updated",
            ready=step,
            desired=script.steps,
            updated=step,
            unhealthy=(UnhealthyUnit(name=f"web-{step}", reason="CrashLoopBackOff", message="exit code 1"),)
            if trouble
            else (),
            events=(f"pod web-{step} restarted",) if trouble else (),
        )

    def _big_trouble(self, script: RolloutScript, step: int) -> RolloutStatus:
        troubled = step >= (script.trouble_at_step or 1)
        generation = step // 10
        unhealthy = tuple(
            UnhealthyUnit(name=f"web-{generation}-{n}", reason="CrashLoopBackOff", message="exit code 1")
            if n % 5 == 0
            else UnhealthyUnit(
                name=f"web-{generation}-{n}",
                reason="ImagePullBackOff",
                message='Back-off pulling image "ghcr.io/acme/web:broken"',
            )
            for n in range(script.unhealthy_pods if troubled else 0)
        )
        events = tuple(
            f"(service web) has {'started 1 tasks' if n % 2 == 0 else 'stopped 1 running tasks'}: "
            f"(task {step:08x}{n:08x}{'0' * 16})."
            for n in range(script.events_per_step)
        )
        return RolloutStatus(
            phase=RolloutPhase.PROGRESSING,
            summary=f"{step}/{script.steps} steps",
            unhealthy=unhealthy,
            events=events,
        )

    def _finished(self, script: RolloutScript) -> RolloutStatus:
        if script.outcome == "fail":
            return RolloutStatus(
                phase=RolloutPhase.FAILED,
                summary="rollout failed",
                ready=0,
                desired=script.steps,
                reason=script.reason,
                unhealthy=(UnhealthyUnit(name="web-0", reason="CrashLoopBackOff"),),
            )
        return RolloutStatus(
            phase=RolloutPhase.SUCCEEDED,
            summary=f"{script.steps}/{script.steps} pods ready",
            ready=script.steps,
            desired=script.steps,
            updated=script.steps,
        )

    def _advance(self, target: Target) -> int:
        def bump(state: dict[str, Any] | None) -> dict[str, Any]:
            assert state is not None
            if state["rollout"] is not None:
                state["rollout"]["step"] += 1
            return state

        state = self._world.update(self._key(target), bump)
        return int((state["rollout"] or {"step": 0})["step"])

    def _revision(self, row: Mapping[str, Any], current: int) -> Revision:
        number = int(row["number"])
        return Revision(
            number=RevisionNumber(number),
            change_cause=row["cause"],
            images=(ContainerImage(container=row["container"], image=row["image"]),),
            deployed_at=datetime.fromisoformat(row["deployed_at"]),
            status="deployed" if number == current else "superseded",
            is_current=number == current,
        )

    @staticmethod
    def _row(state: Mapping[str, Any], number: int) -> Mapping[str, Any]:
        return next(row for row in state["revisions"] if int(row["number"]) == number)

    def _state(self, target: Target) -> dict[str, Any]:
        state = self._world.load(self._key(target))
        if state is None:
            raise UnknownTarget(f"{target.spec.display} does not exist")
        if state.get("unavailable"):
            raise BackendUnavailable(f"{target.spec.display} cannot be reached")
        return state

    def _change(self, target: Target, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        def apply(state: dict[str, Any] | None) -> dict[str, Any]:
            if state is None:
                raise UnknownTarget(f"{target.spec.display} does not exist")
            return change(state)

        self._world.update(self._key(target), apply)

    @staticmethod
    def _key(target: Target) -> str:
        return target.lock_key
