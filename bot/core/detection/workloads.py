"""The rules for Kubernetes workloads (detection.md §6.2–6.3), as pure functions of a snapshot and its pods.

A Deployment fails on `Progressing=False/ProgressDeadlineExceeded` (the controller's own verdict, at once), on
`ReplicaFailure=True` held 60 s (admission refused the pods, so no pod will ever show why), or when pods of the
update revision wait with a hard reason (or run unready after restarts) for `failing_for`. A DaemonSet or
StatefulSet has no failure of its own (kubectl, Argo CD and kstatus never call one failed), so it fails when its
update is incomplete and has not moved for `stall_after`, or by the same pod rule.

What is never an incident, by design: a paused Deployment; an `OnDelete` update nobody has applied yet (pods
change only when someone deletes them); the ordinals a StatefulSet partition keeps on the old revision; a
revision that already rolled out and settled (a later shortfall on it is scaling or node trouble, which no
rollback fixes); and a rollout that simply completes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Final

from bot.core.catalog import DetectSettings, WorkloadKind, format_duration
from bot.core.detection.snapshots import PodSnapshot, UpdateStrategy, WorkloadSnapshot
from bot.core.detection.verdicts import (
    Health,
    Observations,
    ReasonCount,
    Signal,
    Verdict,
    distinct_messages,
    is_held,
)

# Waiting reasons that do not clear by themselves (Argo CD's "Err*/…Error/…BackOff" pod rule, plus
# InvalidImageName, which that rule misses). ContainerCreating or PodInitializing are just slow.
HARD_WAITING_REASONS: Final = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "CrashLoopBackOff",
    }
)
# A pod that runs but never gets ready and has restarted: the kubelet's word for a failing probe.
UNREADY_REASON: Final = "Unhealthy"
# The Deployment docs' quota example shows ReplicaFailure coming and going while the controller retries; a
# minute rules out the transient ones (a quota freed by a pod terminating) without waiting for the deadline.
REPLICA_FAILURE_HOLD: Final = timedelta(seconds=60)
DEADLINE_REASON: Final = "ProgressDeadlineExceeded"
STALLED_REASON: Final = "Stalled"
# A rollout with no hold running cannot change by time alone; it is judged again this often all the same.
IDLE_RECHECK: Final = timedelta(seconds=30)


def needs_pods(snapshot: WorkloadSnapshot) -> bool:
    """Whether the pod rule could say anything: only mid-rollout or short of available replicas.

    The watcher lists pods only for these, so pods are never listed (let alone watched) cluster-wide.
    """
    if snapshot.kind is WorkloadKind.DEPLOYMENT and snapshot.is_paused:
        return False
    if not snapshot.is_observed:
        return True
    return not _is_complete(snapshot) or snapshot.available < snapshot.replicas


def judge_workload(
    snapshot: WorkloadSnapshot,
    pods: Sequence[PodSnapshot],
    now: datetime,
    settings: DetectSettings,
    memory: Observations,
) -> Verdict:
    """Decide whether a Deployment, DaemonSet or StatefulSet is failing, and remember what must be held."""
    summary = _summary(snapshot)
    if snapshot.kind is WorkloadKind.DEPLOYMENT and snapshot.is_paused:
        # A paused Deployment is someone's deliberate hold (Argo CD: Suspended), never an incident.
        return Verdict(health=Health.IGNORED, observations=memory.held_since((), now), summary=summary)
    revision = snapshot.revision_key
    is_rollout = memory.settled_revision != revision
    facts: list[str] = []
    signals: list[Signal] = []
    if is_rollout:
        signals += _deployment_conditions(snapshot, now, memory, facts)
        signals += _failing_pods(snapshot, pods, now, settings, memory, facts)
        signals += _stall(snapshot, now, settings, memory, facts)
    if signals:
        return Verdict(
            health=Health.FAILING, observations=memory.held_since(facts, now), signal=signals[0], summary=summary
        )
    if _is_complete(snapshot) and snapshot.available >= snapshot.replicas and not _pods_in_trouble(snapshot, pods):
        facts.append("healthy")
        since = memory.since("healthy", now)
        observations = memory.held_since(facts, now)
        if is_held(since, now, settings.healthy_for):
            settled = observations.model_copy(update={"settled_revision": revision})
            return Verdict(health=Health.HEALTHY, observations=settled, summary=summary)
        return Verdict(
            health=Health.RECOVERING,
            observations=observations,
            summary=summary,
            recheck_at=since + settings.healthy_for,
        )
    observations = memory.held_since(facts, now)
    return Verdict(
        health=Health.PROGRESSING,
        observations=observations,
        summary=summary,
        recheck_at=_next_maturity(snapshot, observations, settings, now),
    )


def _next_maturity(
    snapshot: WorkloadSnapshot, observations: Observations, settings: DetectSettings, now: datetime
) -> datetime:
    """When the first of the holds still running matures (or `IDLE_RECHECK` from now if none runs)."""
    due: list[datetime] = []
    for fact, since in observations.first_seen.items():
        if fact == "ReplicaFailure":
            failure = snapshot.condition("ReplicaFailure")
            started = failure.last_transition_time if failure is not None else None
            due.append((started or since) + REPLICA_FAILURE_HOLD)
        elif fact == "pods":
            due.append(since + settings.failing_for)
        elif fact.startswith("stall:"):
            due.append(since + settings.stall_after)
    return min(due, default=now + IDLE_RECHECK)


# --- the rules -------------------------------------------------------------------------------------------------


def _deployment_conditions(
    snapshot: WorkloadSnapshot, now: datetime, memory: Observations, facts: list[str]
) -> list[Signal]:
    if snapshot.kind is not WorkloadKind.DEPLOYMENT or not snapshot.is_observed:
        return []
    signals: list[Signal] = []
    progressing = snapshot.condition("Progressing")
    if progressing is not None and progressing.status == "False" and progressing.reason == DEADLINE_REASON:
        facts.append("deadline")
        since = progressing.last_transition_time or memory.since("deadline", now)
        signals.append(_signal(snapshot, DEADLINE_REASON, since, (progressing.message,), ((DEADLINE_REASON, 1),)))
    failure = snapshot.condition("ReplicaFailure")
    if failure is not None and failure.is_true:
        facts.append("ReplicaFailure")
        since = failure.last_transition_time or memory.since("ReplicaFailure", now)
        if is_held(since, now, REPLICA_FAILURE_HOLD):
            counts = ((failure.reason or "ReplicaFailure", 1),)
            signals.append(_signal(snapshot, "ReplicaFailure", since, (failure.message,), counts))
    return signals


def _failing_pods(
    snapshot: WorkloadSnapshot,
    pods: Sequence[PodSnapshot],
    now: datetime,
    settings: DetectSettings,
    memory: Observations,
    facts: list[str],
) -> list[Signal]:
    troubles = [trouble for pod in pods if _runs_update(snapshot, pod) for trouble in _troubles(pod)]
    if not troubles:
        return []
    # One fact for all pods and reasons: kubelets alternate ErrImagePull and ImagePullBackOff, and a
    # crash-looping pod may be replaced; the rollout has been failing as long as any new pod has been.
    facts.append("pods")
    since = memory.since("pods", now)
    if not is_held(since, now, settings.failing_for):
        return []
    counts = Counter(reason for reason, _ in troubles).most_common()
    return [_signal(snapshot, counts[0][0], since, (message for _, message in troubles), tuple(counts))]


def _stall(
    snapshot: WorkloadSnapshot, now: datetime, settings: DetectSettings, memory: Observations, facts: list[str]
) -> list[Signal]:
    if snapshot.kind is WorkloadKind.DEPLOYMENT or snapshot.strategy is UpdateStrategy.ON_DELETE:
        return []  # Deployments have their deadline; OnDelete updates wait for someone to delete pods.
    if not snapshot.is_observed or (_is_complete(snapshot) and snapshot.available >= snapshot.replicas):
        return []
    # The counts are part of the fact: any movement restarts the clock (kubernetes-mixin's `changes(...) == 0`).
    fact = f"stall:{snapshot.revision_key}:{snapshot.updated}:{snapshot.available}"
    facts.append(fact)
    since = memory.since(fact, now)
    if not is_held(since, now, settings.stall_after):
        return []
    message = (
        f"{snapshot.updated}/{snapshot.goal} pods updated and {snapshot.available}/{snapshot.replicas} available, "
        f"unchanged for {format_duration(now - since)}"
    )
    return [_signal(snapshot, STALLED_REASON, since, (message,), ((STALLED_REASON, 1),))]


# --- helpers ---------------------------------------------------------------------------------------------------


def _is_complete(snapshot: WorkloadSnapshot) -> bool:
    """Every pod that should run the update revision does, and no pod of an older one is left over."""
    if not snapshot.is_observed:
        return False
    if snapshot.kind is not WorkloadKind.DEPLOYMENT and snapshot.strategy is UpdateStrategy.ON_DELETE:
        return True
    if snapshot.updated < snapshot.goal:
        return False
    return snapshot.kind is not WorkloadKind.DEPLOYMENT or snapshot.current <= snapshot.updated


def _runs_update(snapshot: WorkloadSnapshot, pod: PodSnapshot) -> bool:
    """Whether a pod runs the update revision (only those say anything about the rollout)."""
    if snapshot.update_hash is not None and pod.template_hash is not None:
        return pod.template_hash == snapshot.update_hash
    if snapshot.kind is WorkloadKind.DAEMONSET and pod.template_generation is not None:
        return pod.template_generation == snapshot.generation
    # Without a way to tell, the caller listed the update revision's pods only (e.g. by the new ReplicaSet).
    return True


def _troubles(pod: PodSnapshot) -> list[tuple[str, str | None]]:
    hard = [(wait.reason, wait.message) for wait in pod.waiting if wait.reason in HARD_WAITING_REASONS]
    if hard:
        return hard
    if pod.phase == "Running" and not pod.is_ready and (pod.restarts > 0 or pod.has_terminated_before):
        return [(UNREADY_REASON, f"pod {pod.name} runs but is not ready after {pod.restarts} restart(s)")]
    if pod.phase == "Failed":
        return [("Failed", f"pod {pod.name} failed")]
    return []


def _pods_in_trouble(snapshot: WorkloadSnapshot, pods: Sequence[PodSnapshot]) -> bool:
    return any(_troubles(pod) for pod in pods if _runs_update(snapshot, pod))


def _signal(
    snapshot: WorkloadSnapshot,
    reason: str,
    since: datetime,
    messages: Iterable[str | None],
    counts: tuple[tuple[str, int], ...],
) -> Signal:
    return Signal(
        reason=reason,
        since=since,
        revision=snapshot.revision_key,
        revision_number=snapshot.revision,
        images=snapshot.images,
        counts=tuple(ReasonCount(reason=r, count=n) for r, n in counts),
        messages=distinct_messages(messages),
        made_by_operation=snapshot.rollbot_operation,
    )


def _summary(snapshot: WorkloadSnapshot) -> str:
    return f"{snapshot.updated}/{snapshot.goal} updated, {snapshot.available}/{snapshot.replicas} available"
