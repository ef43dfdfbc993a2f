"""What a rollout's thread says while it runs: bounded whatever the number of pods, tasks and events."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core import messages
from bot.core.rollouts import RolloutPhase, RolloutStatus, UnhealthyUnit
from bot.core.slack_limits import MAX_SECTION_TEXT
from bot.core.thread_digest import (
    DIGEST_INTERVAL,
    MAX_DIGEST_LINES,
    MAX_REASONS_SHOWN,
    EventTally,
    ThreadDecision,
    ThreadMemory,
    decide_thread,
    next_progress_at,
)
from tests.core.factories import T0, operation

REASONS = ("ImagePullBackOff", "CrashLoopBackOff", "OOMKilled", "ErrImagePull", "Pending", "CreateContainerError")


def progressing(unhealthy: tuple[UnhealthyUnit, ...] = (), events: tuple[str, ...] = ()) -> RolloutStatus:
    return RolloutStatus(phase=RolloutPhase.PROGRESSING, summary="rolling", unhealthy=unhealthy, events=events)


def run(observations: list[tuple[float, RolloutStatus]]) -> list[ThreadDecision]:
    """Feed (seconds since start, status) observations in order, as the executor does."""
    memory = ThreadMemory(watch_started_at=T0)
    decisions = []
    for seconds, status in observations:
        decision = decide_thread(memory, status, T0 + timedelta(seconds=seconds))
        memory = decision.memory
        decisions.append(decision)
    return decisions


units = st.builds(
    UnhealthyUnit,
    name=st.from_regex(r"web-[0-9a-z]{1,6}", fullmatch=True),
    reason=st.sampled_from(REASONS),
    message=st.none() | st.sampled_from(("exit code 1", "Back-off pulling image", "x" * 300)),
)
events = st.one_of(
    st.integers(1, 99).map(lambda n: f"(service web) has started {n} tasks: (task {'a' * 32})."),
    st.integers(1, 99).map(lambda n: f"(service web) has stopped {n} running tasks: (task {'b' * 32})."),
    st.sampled_from(("steady state", "registered 2 targets", "y" * 400)),
    st.text(max_size=20),
)
observation = st.tuples(
    st.floats(min_value=0, max_value=10, allow_nan=False),  # seconds since the previous observation
    st.lists(units, max_size=50).map(tuple),
    st.lists(events, max_size=10).map(tuple),
)


@given(st.lists(observation, max_size=30), st.sampled_from([RolloutPhase.SUCCEEDED, RolloutPhase.FAILED]))
def test_a_rollout_of_any_size_gets_a_bounded_number_of_lines_and_refreshes(
    steps: list[tuple[float, tuple[UnhealthyUnit, ...], tuple[str, ...]]], last_phase: RolloutPhase
) -> None:
    elapsed = 0.0
    observations = []
    for gap, unhealthy, news in steps:
        elapsed = min(elapsed + gap, 179.0)  # a rollout of at most 3 minutes
        observations.append((elapsed, progressing(unhealthy, news)))
    observations.append((180.0, RolloutStatus(phase=last_phase, summary="done", events=("closing note",))))
    decisions = run(observations)

    digests = [(seconds, d.digest) for (seconds, _), d in zip(observations, decisions, strict=True) if d.digest]
    assert len(digests) <= MAX_DIGEST_LINES
    for (earlier, _), (later, _) in itertools.pairwise(digests):
        assert later - earlier >= DIGEST_INTERVAL.total_seconds()
    # The first post, refreshes at 15 s and 60 s, and the final state: 3 minutes never need more.
    assert sum(d.publish_progress for d in decisions) <= 4
    assert decisions[-1].publish_progress
    assert sum(bool(d.closing_notes) for d in decisions) == 1
    assert not any(d.refresh_request for d in decisions)  # the channel message waits for long rollouts
    for _, digest in digests:
        assert digest is not None
        assert len(digest.problems) <= MAX_REASONS_SHOWN
        line = messages.digest_line(operation(), digest)
        assert len(line.text) < MAX_SECTION_TEXT
        assert line.text.count("\n") <= MAX_REASONS_SHOWN + 1


@given(st.lists(st.lists(units, max_size=60).map(tuple), min_size=1, max_size=30))
def test_each_new_unhealthy_unit_is_counted_once(waves: list[tuple[UnhealthyUnit, ...]]) -> None:
    observations = [(12.0 * n, progressing(wave)) for n, wave in enumerate(waves)]
    decisions = run(observations)
    told = sum(problem.count for d in decisions if d.digest for problem in d.digest.problems)
    told += sum(d.digest.more_units for d in decisions if d.digest)
    pending = sum(problem.count for problem in decisions[-1].memory.pending_problems)
    distinct = {f"{unit.name}:{unit.reason}" for wave in waves for unit in wave}
    assert told + pending == len(distinct)


def test_fifty_broken_pods_make_one_line_counted_per_reason() -> None:
    pods = tuple(
        UnhealthyUnit(name=f"web-{n}", reason="ImagePullBackOff", message='Back-off pulling image "web:broken"')
        for n in range(12)
    ) + tuple(UnhealthyUnit(name=f"api-{n}", reason=REASONS[n % 5 + 1]) for n in range(38))
    decisions = run([(1, progressing(pods)), (5, progressing(pods)), (11, progressing(pods))])
    assert [d.digest is not None for d in decisions] == [False, False, True]
    digest = decisions[-1].digest
    assert digest is not None
    text = messages.digest_line(operation(), digest).text
    assert ':warning: 12 pods ImagePullBackOff: Back-off pulling image "web:broken"' in text
    assert "…and 22 pods for 3 more reasons" in text
    assert "web-3" not in text


def test_ecs_service_events_are_summarised_as_tasks_started_and_stopped() -> None:
    started = [f"(service web) has started 2 tasks: (task {n:032x}) (task {n + 1:032x})." for n in range(20)]
    stopped = [f"(service web) has stopped 1 running tasks: (task {n:032x})." for n in range(38)]
    steady = ["(service web) registered 1 targets in (target-group arn:aws:tg/1234)"] * 3
    decisions = run([(1, progressing(events=(*started, *stopped))), (31, progressing(events=tuple(steady)))])
    digest = decisions[-1].digest
    assert digest is not None
    text = messages.digest_line(operation(), digest).text
    assert "started 40 tasks, stopped 38 in the last 31s" in text
    assert "registered 1 targets in (target-group arn:aws:tg/1234) (3×)" in text
    assert "task 0000" not in text


def test_a_finished_service_closes_with_its_last_words_once_never_task_by_task() -> None:
    churn = [f"(service web) has started 1 tasks: (task {n:032x})." for n in range(12)]
    churn += [f"(service web) has stopped 1 running tasks: (task {n:032x})." for n in range(12)]
    last = (
        *churn,
        "(service web) (deployment ecs-svc/7) deployment completed.",
        "(service web) has reached a steady state.",
        "(service web) has reached a steady state.",
        "web:4 was not deregistered: a deployment still uses it",
    )
    done = RolloutStatus(phase=RolloutPhase.SUCCEEDED, summary="web:3 COMPLETED", events=last)
    decision = run([(1, progressing(events=tuple(churn))), (40, done)])[-1]
    assert decision.closing_notes == (
        "(service web) (deployment ecs-svc/7) deployment completed.",
        "(service web) has reached a steady state.",
        "web:4 was not deregistered: a deployment still uses it",
    )
    assert decision.digest is None  # no problem to tell: the progress message shows the final counts


def test_a_failed_service_counts_its_last_tasks_with_the_problems_it_tells() -> None:
    churn = tuple(f"(service web) has started 1 tasks: (task {n:032x})." for n in range(7))
    failed = UnhealthyUnit(name="deployment ecs-svc/7", reason="7 task(s) failed to start")
    done = RolloutStatus(phase=RolloutPhase.FAILED, summary="web:3 FAILED", unhealthy=(failed,), events=churn)
    decision = run([(1, progressing(events=churn[:3])), (5, done)])[-1]
    assert decision.digest is not None
    assert decision.digest.events.started_tasks == 10
    assert decision.closing_notes == ()
    text = messages.digest_line(operation(), decision.digest).text
    assert "started 10 tasks, stopped 0 in the last 5s" in text


def test_many_distinct_events_are_counted_beyond_the_few_shown() -> None:
    tally = EventTally()
    for n in range(10):
        tally = tally.add(f"event kind {'abcdefghij'[n]}")
    assert [event.latest for event in tally.others] == ["event kind h", "event kind i", "event kind j"]
    assert tally.other_omitted == 7


def test_an_event_about_a_unit_already_counted_or_the_summary_is_not_news() -> None:
    pod = UnhealthyUnit(name="web-7", reason="CrashLoopBackOff")
    status = RolloutStatus(
        phase=RolloutPhase.PROGRESSING, summary="1/3 ready", unhealthy=(pod,), events=("pod web-7: CrashLoopBackOff",)
    )
    decision = decide_thread(ThreadMemory(watch_started_at=T0), status, T0)
    assert decision.memory.pending_events.is_empty
    finished = RolloutStatus(phase=RolloutPhase.SUCCEEDED, summary="helm rolled back", events=("helm rolled back",))
    assert decide_thread(decision.memory, finished, T0).closing_notes == ()


@pytest.mark.parametrize(
    ("after", "expected"),
    [(0, 15), (14.9, 15), (15, 60), (59, 60), (60, 240), (239, 240), (240, 420), (1000, 1140)],
    ids=["start", "just-before-15", "at-15", "before-60", "at-60", "before-240", "at-240", "late"],
)
def test_progress_refreshes_back_off(after: float, expected: float) -> None:
    assert next_progress_at(timedelta(seconds=after)) == timedelta(seconds=expected)


def test_a_finished_rollout_is_always_published_and_long_ones_refresh_the_channel_message() -> None:
    observations = [(float(s), progressing()) for s in range(0, 601, 5)]
    decisions = run([*observations, (601.0, RolloutStatus(phase=RolloutPhase.FAILED, summary="x"))])
    published = [s for (s, _), d in zip(observations, decisions, strict=False) if d.publish_progress]
    assert published == [0, 15, 60, 240, 420, 600]
    refreshed = [s for (s, _), d in zip(observations, decisions, strict=False) if d.refresh_request]
    assert refreshed == [420]
    assert decisions[-1].publish_progress
