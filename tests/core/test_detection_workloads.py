"""The Kubernetes workload rules (detection.md §6.2–6.3), on objects shaped as the API server returns them."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.core.catalog import WorkloadKind
from bot.core.detection import (
    Health,
    Observations,
    PodSnapshot,
    UpdateStrategy,
    Verdict,
    WorkloadSnapshot,
    judge_workload,
    needs_pods,
)
from bot.core.rollouts import ContainerImage
from tests.core.detection_objects import (
    NEW_HASH,
    OLD_HASH,
    SETTINGS,
    condition,
    daemonset,
    deployment,
    pod,
    statefulset,
)
from tests.core.factories import T0

PULL_MESSAGE = 'Back-off pulling image "registry.example/web:2.0-typo"'
ROLLING_OUT = [
    condition("Available", "True", "MinimumReplicasAvailable"),
    condition("Progressing", "True", "ReplicaSetUpdated", 'ReplicaSet "web-7d9f8c6b5" is progressing.'),
]


def snap(obj: dict[str, object], update_hash: str | None = NEW_HASH) -> WorkloadSnapshot:
    snapshot = WorkloadSnapshot.from_manifest(obj)
    if snapshot.kind is WorkloadKind.DEPLOYMENT:
        # The watcher reads the newest ReplicaSet's pod-template-hash when it lists pods.
        snapshot = snapshot.model_copy(update={"update_hash": update_hash})
    return snapshot


def pods(*objs: dict[str, object]) -> list[PodSnapshot]:
    return [PodSnapshot.from_manifest(obj) for obj in objs]


def judge_over(snapshot: WorkloadSnapshot, pod_list: list[PodSnapshot], minutes: list[float]) -> list[Verdict]:
    """Judge the same observation at several moments, threading the memory as the watcher does."""
    memory = Observations()
    verdicts = []
    for minute in minutes:
        verdict = judge_workload(snapshot, pod_list, T0 + timedelta(minutes=minute), SETTINGS, memory)
        memory = verdict.observations
        verdicts.append(verdict)
    return verdicts


# --- the projection -------------------------------------------------------------------------------------------


def test_a_deployment_is_projected_with_its_revision_images_and_conditions() -> None:
    snapshot = WorkloadSnapshot.from_manifest(deployment(replicas=3, updated=1, ready=0, current=4))
    assert (snapshot.kind, snapshot.namespace, snapshot.name) == (WorkloadKind.DEPLOYMENT, "shop", "web")
    assert snapshot.revision == 2
    assert snapshot.revision_key == "2"
    assert snapshot.images == (ContainerImage(container="web", image="registry.example/web:2.0"),)
    assert (snapshot.replicas, snapshot.current, snapshot.updated, snapshot.ready, snapshot.available) == (
        3,
        4,
        1,
        0,
        0,
    )
    assert snapshot.unavailable == 3
    progressing = snapshot.condition("Progressing")
    assert progressing is not None
    assert progressing.reason == "NewReplicaSetAvailable"
    assert progressing.last_transition_time == T0
    assert snapshot.progress_deadline_seconds == 600


def test_a_pod_is_projected_with_its_template_hash_and_waiting_reason() -> None:
    (projected,) = pods(pod("web-7d9f8c6b5-abcde", waiting="ImagePullBackOff", message=PULL_MESSAGE))
    assert projected.template_hash == NEW_HASH
    assert projected.waiting[0].reason == "ImagePullBackOff"
    assert projected.waiting[0].message == PULL_MESSAGE
    assert not projected.is_ready


# --- Deployments ----------------------------------------------------------------------------------------------


def test_progress_deadline_exceeded_is_an_incident_at_once_since_the_conditions_transition() -> None:
    obj = deployment(
        updated=3,
        ready=0,
        current=5,
        conditions=[
            condition("Available", "True", "MinimumReplicasAvailable"),
            condition(
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                'ReplicaSet "web-7d9f8c6b5" has timed out progressing.',
                T0,
            ),
        ],
    )
    verdict = judge_workload(snap(obj), [], T0 + timedelta(seconds=1), SETTINGS, Observations())
    assert verdict.health is Health.FAILING
    assert verdict.signal is not None
    assert verdict.signal.reason == "ProgressDeadlineExceeded"
    assert verdict.signal.since == T0
    assert verdict.signal.revision == "2"
    assert verdict.signal.revision_number == 2
    assert verdict.signal.messages == ('ReplicaSet "web-7d9f8c6b5" has timed out progressing.',)
    assert verdict.signal.images[0].image == "registry.example/web:2.0"


def test_replica_failure_is_held_sixty_seconds_before_it_is_an_incident() -> None:
    # The quota example of the Deployment docs: ReplicaFailure=True while Progressing is still True.
    quota = (
        'pods "web-7d9f8c6b5-x" is forbidden: exceeded quota: object-counts, '
        "requested: pods=1, used: pods=3, limited: pods=3"
    )
    obj = deployment(
        updated=0,
        ready=3,
        current=3,
        revision=3,
        generation=3,
        conditions=[*ROLLING_OUT, condition("ReplicaFailure", "True", "FailedCreate", quota, T0)],
    )
    early = judge_workload(snap(obj), [], T0 + timedelta(seconds=59), SETTINGS, Observations())
    assert early.health is Health.PROGRESSING
    late = judge_workload(snap(obj), [], T0 + timedelta(seconds=60), SETTINGS, early.observations)
    assert late.signal is not None
    assert late.signal.reason == "ReplicaFailure"
    assert [(c.reason, c.count) for c in late.signal.counts] == [("FailedCreate", 1)]
    assert late.signal.messages == (quota,)


def test_image_pull_errors_open_after_failing_for_even_while_the_kubelet_alternates_reasons() -> None:
    rolling = snap(deployment(updated=1, ready=3, current=4, revision=3, generation=3, conditions=ROLLING_OUT))
    erring = pods(pod("web-7d9f8c6b5-a", waiting="ErrImagePull", message="rpc error: not found"))
    backing_off = pods(pod("web-7d9f8c6b5-a", waiting="ImagePullBackOff", message=PULL_MESSAGE))
    memory = Observations()
    for minute, seen in [(0, erring), (0.5, backing_off), (1, erring), (1.9, backing_off)]:
        verdict = judge_workload(rolling, seen, T0 + timedelta(minutes=minute), SETTINGS, memory)
        assert verdict.health is Health.PROGRESSING, minute
        memory = verdict.observations
    verdict = judge_workload(rolling, backing_off, T0 + timedelta(minutes=2), SETTINGS, memory)
    assert verdict.signal is not None
    assert verdict.signal.reason == "ImagePullBackOff"
    assert verdict.signal.since == T0
    assert verdict.signal.revision == "3"


def test_a_pod_reason_that_clears_restarts_the_clock() -> None:
    rolling = snap(deployment(updated=1, ready=3, current=4, revision=3, generation=3, conditions=ROLLING_OUT))
    failing = pods(pod("web-7d9f8c6b5-a", waiting="CrashLoopBackOff", phase="Running", restarts=2))
    creating = pods(pod("web-7d9f8c6b5-a", waiting="ContainerCreating"))
    memory = judge_workload(rolling, failing, T0, SETTINGS, Observations()).observations
    memory = judge_workload(rolling, creating, T0 + timedelta(minutes=1), SETTINGS, memory).observations
    again = judge_workload(rolling, failing, T0 + timedelta(minutes=2), SETTINGS, memory)
    assert again.health is Health.PROGRESSING
    assert again.observations.first_seen["pods"] == T0 + timedelta(minutes=2)


def test_thirty_crash_looping_replicas_make_one_signal_with_counts_and_three_messages() -> None:
    rolling = snap(deployment(replicas=30, updated=30, ready=0, revision=3, generation=3, conditions=ROLLING_OUT))
    crashing = pods(
        *(
            pod(
                f"web-7d9f8c6b5-{index:02d}",
                waiting="CrashLoopBackOff",
                message=f"back-off 5m0s restarting failed container=web pod=web-7d9f8c6b5-{index:02d}",
                phase="Running",
                restarts=5,
            )
            for index in range(30)
        )
    )
    (_, verdict) = judge_over(rolling, crashing, [0, 2])
    assert verdict.signal is not None
    assert verdict.signal.reason == "CrashLoopBackOff"
    assert [(c.reason, c.count) for c in verdict.signal.counts] == [("CrashLoopBackOff", 30)]
    assert len(verdict.signal.messages) == 3


def test_the_most_common_reason_names_the_signal_and_every_reason_is_counted() -> None:
    rolling = snap(deployment(replicas=3, updated=3, ready=0, revision=3, generation=3, conditions=ROLLING_OUT))
    mixed = pods(
        pod("web-a", waiting="CreateContainerConfigError", message='secret "db" not found'),
        pod("web-b", waiting="CreateContainerConfigError", message='secret "db" not found'),
        pod("web-c", waiting="InvalidImageName", message="invalid reference format"),
    )
    (_, verdict) = judge_over(rolling, mixed, [0, 2])
    assert verdict.signal is not None
    assert verdict.signal.reason == "CreateContainerConfigError"
    assert [(c.reason, c.count) for c in verdict.signal.counts] == [
        ("CreateContainerConfigError", 2),
        ("InvalidImageName", 1),
    ]
    assert verdict.signal.messages == ('secret "db" not found', "invalid reference format")


def test_a_running_pod_that_never_gets_ready_after_restarts_is_failing() -> None:
    rolling = snap(deployment(updated=1, ready=3, current=4, revision=3, generation=3, conditions=ROLLING_OUT))
    unready = pods(pod("web-a", phase="Running", ready=False, restarts=3, terminated_before=True))
    (_, verdict) = judge_over(rolling, unready, [0, 2])
    assert verdict.signal is not None
    assert verdict.signal.reason == "Unhealthy"


def test_pods_of_the_old_revision_say_nothing_about_the_rollout() -> None:
    rolling = snap(deployment(updated=1, ready=3, current=4, revision=3, generation=3, conditions=ROLLING_OUT))
    old = pods(pod("web-old", template_hash=OLD_HASH, waiting="CrashLoopBackOff", phase="Running", restarts=9))
    verdicts = judge_over(rolling, old, [0, 5, 30])
    assert {v.health for v in verdicts} == {Health.PROGRESSING}


def test_slow_pods_are_not_failing() -> None:
    rolling = snap(deployment(updated=3, ready=0, current=3, revision=3, generation=3, conditions=ROLLING_OUT))
    slow = pods(pod("web-a", waiting="ContainerCreating"), pod("web-b", phase="Running", ready=False))
    verdicts = judge_over(rolling, slow, [0, 5, 30])
    assert {v.health for v in verdicts} == {Health.PROGRESSING}


def test_a_paused_deployment_is_ignored_even_past_its_deadline() -> None:
    obj = deployment(
        paused=True,
        updated=1,
        ready=0,
        conditions=[condition("Progressing", "False", "ProgressDeadlineExceeded", "timed out")],
    )
    verdict = judge_workload(snap(obj), pods(pod("web-a", waiting="ImagePullBackOff")), T0, SETTINGS, Observations())
    assert verdict.health is Health.IGNORED
    assert verdict.signal is None
    assert not needs_pods(snap(obj))


def test_a_successful_rollout_recovers_then_is_healthy_and_settles_its_revision() -> None:
    done = snap(deployment(revision=4, generation=4))
    verdicts = judge_over(done, [], [0, 1, 2])
    assert [v.health for v in verdicts] == [Health.RECOVERING, Health.RECOVERING, Health.HEALTHY]
    assert verdicts[-1].observations.settled_revision == "4"
    assert not needs_pods(done)


def test_old_pods_still_running_mean_the_rollout_is_not_complete() -> None:
    surging = snap(deployment(replicas=3, updated=3, current=4, revision=3, generation=3, conditions=ROLLING_OUT))
    assert judge_over(surging, [], [0])[0].health is Health.PROGRESSING
    assert needs_pods(surging)


def test_an_unobserved_generation_is_progressing_and_needs_pods() -> None:
    fresh = snap(deployment(generation=5, observed=4))
    assert judge_over(fresh, [], [0, 30])[-1].health is Health.PROGRESSING
    assert needs_pods(fresh)


def test_scaling_a_settled_revision_is_never_an_incident() -> None:
    settled = Observations(settled_revision="2")
    # Scaled 3 → 10: the same revision, seven pods short, some not pulling yet, a quota refusing more.
    scaled = snap(
        deployment(
            replicas=10,
            updated=10,
            ready=3,
            revision=2,
            generation=7,
            conditions=[*ROLLING_OUT, condition("ReplicaFailure", "True", "FailedCreate", "exceeded quota")],
        )
    )
    stuck = pods(pod("web-new", waiting="ImagePullBackOff"))
    verdict = judge_workload(scaled, stuck, T0 + timedelta(hours=1), SETTINGS, settled)
    assert verdict.health is Health.PROGRESSING
    assert needs_pods(scaled)


def test_a_revision_made_by_rollbot_says_so_in_its_signal() -> None:
    obj = deployment(
        updated=3,
        ready=0,
        annotations={"rollbot.dev/operation": "op-7"},
        conditions=[condition("Progressing", "False", "ProgressDeadlineExceeded", "timed out")],
    )
    verdict = judge_workload(snap(obj), [], T0, SETTINGS, Observations())
    assert verdict.signal is not None
    assert verdict.signal.made_by_operation == "op-7"


@settings(deadline=None)
@given(
    replicas=st.integers(0, 50),
    updated=st.integers(0, 50),
    ready=st.integers(0, 50),
    reason=st.sampled_from(["ProgressDeadlineExceeded", "ReplicaSetUpdated", "NewReplicaSetAvailable"]),
    waiting=st.sampled_from(["ImagePullBackOff", "CrashLoopBackOff", "ErrImagePull", None]),
    minutes=st.floats(0, 600),
)
def test_a_paused_deployment_is_never_an_incident(
    replicas: int, updated: int, ready: int, reason: str, waiting: str | None, minutes: float
) -> None:
    status = "False" if reason == "ProgressDeadlineExceeded" else "True"
    obj = deployment(
        paused=True,
        replicas=replicas,
        updated=updated,
        ready=ready,
        conditions=[condition("Progressing", status, reason), condition("ReplicaFailure", "True", "FailedCreate")],
    )
    pod_list = pods(pod("web-a", waiting=waiting, phase="Running", restarts=3))
    assert {v.health for v in judge_over(snap(obj), pod_list, [0, minutes])} == {Health.IGNORED}


@settings(deadline=None)
@given(
    before=st.integers(1, 30),
    after=st.integers(0, 30),
    ready=st.integers(0, 30),
    waiting=st.sampled_from(["ImagePullBackOff", "CrashLoopBackOff", None]),
    minutes=st.lists(st.floats(0, 600), min_size=1, max_size=5),
)
def test_scaling_never_opens_an_incident(
    before: int, after: int, ready: int, waiting: str | None, minutes: list[float]
) -> None:
    # The revision rolled out and settled at `before` replicas, then only `replicas` changed.
    settled = judge_over(snap(deployment(replicas=before, updated=before)), [], [0, 2])[-1]
    assert settled.health is Health.HEALTHY
    scaled = snap(deployment(replicas=after, updated=after, ready=min(ready, after), generation=3))
    memory = settled.observations
    for minute in sorted(minutes):
        pod_list = pods(pod("web-x", waiting=waiting, phase="Running", restarts=1))
        verdict = judge_workload(scaled, pod_list, T0 + timedelta(minutes=2 + minute), SETTINGS, memory)
        assert verdict.health is not Health.FAILING
        memory = verdict.observations


@settings(deadline=None)
@given(count=st.integers(1, 200), distinct=st.integers(1, 200))
def test_at_most_three_distinct_messages_whatever_the_number_of_pods(count: int, distinct: int) -> None:
    rolling = snap(deployment(replicas=count, updated=count, ready=0, revision=3, generation=3, conditions=ROLLING_OUT))
    pod_list = pods(*(pod(f"web-{i}", waiting="ErrImagePull", message=f"error {i % distinct}") for i in range(count)))
    verdict = judge_over(rolling, pod_list, [0, 2])[-1]
    assert verdict.signal is not None
    assert len(verdict.signal.messages) == min(3, distinct, count)
    assert sum(c.count for c in verdict.signal.counts) == count


# --- DaemonSets -----------------------------------------------------------------------------------------------


def test_a_daemonset_update_that_does_not_move_for_stall_after_is_stalled() -> None:
    stuck = snap(daemonset(desired=4, updated=1, available=3))
    verdicts = judge_over(stuck, [], [0, 9.9, 10])
    assert [v.health for v in verdicts] == [Health.PROGRESSING, Health.PROGRESSING, Health.FAILING]
    signal = verdicts[-1].signal
    assert signal is not None
    assert signal.reason == "Stalled"
    assert signal.since == T0
    assert signal.messages == ("1/4 pods updated and 3/4 available, unchanged for 10m",)


def test_a_daemonset_update_that_moves_restarts_the_stall_clock() -> None:
    memory = judge_workload(snap(daemonset(updated=1, available=3)), [], T0, SETTINGS, Observations()).observations
    moved = judge_workload(snap(daemonset(updated=2, available=3)), [], T0 + timedelta(minutes=8), SETTINGS, memory)
    later = judge_workload(
        snap(daemonset(updated=2, available=3)), [], T0 + timedelta(minutes=12), SETTINGS, moved.observations
    )
    assert later.health is Health.PROGRESSING


def test_an_ondelete_daemonset_is_never_stalled() -> None:
    waiting = snap(daemonset(desired=4, updated=0, available=4, strategy="OnDelete"))
    assert waiting.strategy is UpdateStrategy.ON_DELETE
    verdicts = judge_over(waiting, [], [0, 60, 600])
    assert Health.FAILING not in {v.health for v in verdicts}
    assert verdicts[-1].health is Health.HEALTHY
    assert not needs_pods(waiting)


def test_daemonset_pods_of_the_new_template_generation_are_judged() -> None:
    stuck = snap(daemonset(desired=2, updated=1, available=1))
    new = pod("fluentd-a", waiting="CrashLoopBackOff", phase="Running", restarts=4)
    new["metadata"]["labels"] = {"pod-template-generation": "3"}
    old = pod("fluentd-b", waiting="CrashLoopBackOff", phase="Running", restarts=4)
    old["metadata"]["labels"] = {"pod-template-generation": "2"}
    verdict = judge_over(stuck, pods(new, old), [0, 2])[-1]
    assert verdict.signal is not None
    assert [(c.reason, c.count) for c in verdict.signal.counts] == [("CrashLoopBackOff", 1)]


# --- StatefulSets ---------------------------------------------------------------------------------------------


def test_a_statefulset_held_by_its_partition_is_not_stalled() -> None:
    # replicas 5, partition 3: only ordinals 3 and 4 are expected to update.
    held = snap(statefulset(replicas=5, updated=2, partition=3))
    assert held.goal == 2
    verdicts = judge_over(held, [], [0, 60, 600])
    assert Health.FAILING not in {v.health for v in verdicts}
    assert verdicts[-1].health is Health.HEALTHY


def test_a_stalled_statefulset_is_an_incident_on_its_update_revision() -> None:
    stuck = snap(statefulset(replicas=5, updated=1, available=4))
    verdict = judge_over(stuck, [], [0, 10])[-1]
    assert verdict.signal is not None
    assert verdict.signal.reason == "Stalled"
    assert verdict.signal.revision == "db-9a7c"
    assert needs_pods(stuck)


def test_an_ondelete_statefulset_is_never_stalled() -> None:
    waiting = snap(statefulset(replicas=3, updated=0, strategy="OnDelete"))
    assert Health.FAILING not in {v.health for v in judge_over(waiting, [], [0, 600])}


def test_statefulset_pods_match_the_update_revision_label() -> None:
    stuck = snap(statefulset(replicas=3, updated=1, available=2))
    new = pod("db-2", template_hash="db-9a7c", waiting="CrashLoopBackOff", phase="Running", restarts=2)
    new["metadata"]["labels"] = {"controller-revision-hash": "db-9a7c"}
    verdict = judge_over(stuck, pods(new), [0, 2])[-1]
    assert verdict.signal is not None
    assert verdict.signal.reason == "CrashLoopBackOff"


def test_a_failed_pod_of_the_new_revision_is_failing() -> None:
    rolling = snap(deployment(updated=1, ready=3, current=4, revision=3, generation=3, conditions=ROLLING_OUT))
    verdict = judge_over(rolling, pods(pod("web-a", phase="Failed")), [0, 2])[-1]
    assert verdict.signal is not None
    assert verdict.signal.reason == "Failed"


def test_without_an_update_hash_the_pods_given_are_taken_as_the_new_revisions() -> None:
    rolling = snap(deployment(updated=1, ready=3, current=4, revision=3, conditions=ROLLING_OUT), update_hash=None)
    crashing = pods(pod("web-a", template_hash=OLD_HASH, waiting="CrashLoopBackOff", phase="Running", restarts=2))
    assert judge_over(rolling, crashing, [0, 2])[-1].is_failing


def test_a_verdict_says_when_time_alone_may_change_it_so_thousands_of_workloads_are_not_rejudged_every_second() -> None:
    # Recovering: due when `healthy_for` has held; judged then, it is healthy.
    done = snap(deployment(revision=4, generation=4))
    recovering = judge_workload(done, [], T0, SETTINGS, Observations())
    assert recovering.recheck_at == T0 + SETTINGS.healthy_for
    due = judge_workload(done, [], recovering.recheck_at, SETTINGS, recovering.observations)
    assert due.health is Health.HEALTHY
    # Pods failing: due when `failing_for` has held; judged then, it fails.
    rolling = snap(deployment(updated=1, ready=3, current=4, revision=3, generation=3, conditions=ROLLING_OUT))
    erring = pods(pod("web-7d9f8c6b5-a", waiting="ErrImagePull", message="rpc error: not found"))
    held = judge_workload(rolling, erring, T0, SETTINGS, Observations())
    assert held.recheck_at == T0 + SETTINGS.failing_for
    assert held.recheck_at is not None
    assert judge_workload(rolling, erring, held.recheck_at, SETTINGS, held.observations).is_failing
    # ReplicaFailure: due 60 s after the condition's own transition, even for a watcher that saw it late.
    quota = condition("ReplicaFailure", "True", "FailedCreate", "exceeded quota", T0)
    refused = snap(deployment(updated=0, ready=3, current=3, revision=3, generation=3, conditions=[quota]))
    late = judge_workload(refused, [], T0 + timedelta(seconds=20), SETTINGS, Observations())
    assert late.recheck_at == T0 + timedelta(seconds=60)
    # Nothing held: time alone changes nothing, yet it is looked at again now and then.
    slow = pods(pod("web-7d9f8c6b5-a", waiting="ContainerCreating"))
    idle = judge_workload(rolling, slow, T0, SETTINGS, Observations())
    assert idle.health is Health.PROGRESSING
    assert idle.recheck_at == T0 + timedelta(seconds=30)
