"""The outbound budget: the schedule's decisions on a fake clock, then the threaded outbox with real threads."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from bot.adapters.slack_outbox import Budget, OutboundSchedule, SlackOutbox, Ticket, TicketState
from bot.core.outbound import Priority

CHANNEL = "C0INCIDENT"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drain(schedule: OutboundSchedule, clock: FakeClock, until: float, step: float = 0.05) -> list[tuple[float, Ticket]]:
    """Grant everything the budget allows from now until `until`; returns (time granted, ticket)."""
    granted: list[tuple[float, Ticket]] = []
    while clock.now <= until:
        granted.extend((clock.now, ticket) for ticket in schedule.grant(clock.now))
        clock.now = round(clock.now + step, 6)
    return granted


def test_urgent_goes_before_normal_before_progress_on_a_spent_bucket() -> None:
    schedule, clock = OutboundSchedule(Budget()), FakeClock()
    for _ in range(50):  # spend chat.update's Tier 3 burst
        schedule.submit("chat.update", Priority.NORMAL, clock.now)
    schedule.grant(clock.now)
    progress, _ = schedule.submit("chat.update", Priority.PROGRESS, clock.now, coalesce_key="m1")
    normal, _ = schedule.submit("chat.update", Priority.NORMAL, clock.now)
    urgent, _ = schedule.submit("chat.update", Priority.URGENT, clock.now)

    order = [ticket for _, ticket in drain(schedule, clock, clock.now + 20)]

    assert order == [urgent, normal, progress]


def test_posts_are_paced_per_channel_after_a_short_burst() -> None:
    schedule, clock = OutboundSchedule(Budget()), FakeClock()
    start = clock.now
    posts = [schedule.submit("chat.postMessage", Priority.URGENT, clock.now, channel=CHANNEL)[0] for _ in range(6)]
    elsewhere, _ = schedule.submit("chat.postMessage", Priority.URGENT, clock.now, channel="C0OTHER")

    granted = dict((ticket.seq, at - start) for at, ticket in drain(schedule, clock, start + 5))

    assert [granted[t.seq] for t in posts[:3]] == [0.0, 0.0, 0.0]  # the burst of three
    assert [round(granted[t.seq]) for t in posts[3:]] == [1, 2, 3]  # then one a second
    assert granted[elsewhere.seq] == 0.0  # another channel has its own pace


def test_a_newer_progress_update_replaces_the_one_still_waiting_and_keeps_its_place() -> None:
    schedule, clock = OutboundSchedule(Budget(tier_per_minute={"chat.update": 1})), FakeClock()
    schedule.submit("chat.update", Priority.NORMAL, clock.now)
    schedule.grant(clock.now)  # the only token is gone
    first, _ = schedule.submit("chat.update", Priority.PROGRESS, clock.now, coalesce_key="m1")
    other, _ = schedule.submit("chat.update", Priority.PROGRESS, clock.now, coalesce_key="m2")
    newer, replaced = schedule.submit("chat.update", Priority.PROGRESS, clock.now, coalesce_key="m1")

    assert replaced == [first]
    assert first.state is TicketState.SUPERSEDED
    assert schedule.waiting() == [newer, other]  # in the first one's place, ahead of m2


def test_an_urgent_update_is_never_replaced_and_replaces_waiting_progress() -> None:
    schedule, clock = OutboundSchedule(Budget(tier_per_minute={"chat.update": 1})), FakeClock()
    schedule.submit("chat.update", Priority.NORMAL, clock.now)
    schedule.grant(clock.now)
    progress, _ = schedule.submit("chat.update", Priority.PROGRESS, clock.now, coalesce_key="m1")
    final, replaced = schedule.submit("chat.update", Priority.URGENT, clock.now, coalesce_key="m1")
    later, replaced_later = schedule.submit("chat.update", Priority.PROGRESS, clock.now, coalesce_key="m1")

    assert replaced == [progress]
    assert replaced_later == []
    assert final.state is TicketState.WAITING
    assert schedule.waiting() == [final, later]


def test_retry_after_pauses_the_method_and_the_call_keeps_its_place() -> None:
    schedule, clock = OutboundSchedule(Budget()), FakeClock()
    bounced, _ = schedule.submit("reactions.add", Priority.URGENT, clock.now)
    schedule.grant(clock.now)
    behind, _ = schedule.submit("reactions.add", Priority.URGENT, clock.now)
    schedule.pause(bounced, retry_after=3.0, now=clock.now)
    schedule.requeue(bounced)
    start = clock.now

    granted = [(round(at - start, 2), ticket) for at, ticket in drain(schedule, clock, start + 5)]

    assert granted[0] == (3.0, bounced)  # nothing before Retry-After, and the bounced call first
    assert granted[1][1] is behind
    assert schedule.estimated_wait(behind, clock.now) == 0.0


def test_progress_never_takes_the_last_tokens_so_urgent_is_not_starved() -> None:
    schedule, clock = OutboundSchedule(Budget(tier_per_minute={"chat.update": 10})), FakeClock()
    progress = [
        schedule.submit("chat.update", Priority.PROGRESS, clock.now, coalesce_key=f"m{n}")[0] for n in range(10)
    ]
    granted_progress = schedule.grant(clock.now)
    urgent = [schedule.submit("chat.update", Priority.URGENT, clock.now)[0] for _ in range(2)]

    granted_urgent = schedule.grant(clock.now)

    assert len(granted_progress) == 8  # a fifth of the bucket stays for what people act on
    assert granted_urgent == urgent
    assert all(t.state is TicketState.WAITING for t in progress[8:])


def test_the_wait_estimate_counts_the_calls_ahead() -> None:
    schedule, clock = OutboundSchedule(Budget()), FakeClock()
    tickets = [schedule.submit("chat.postMessage", Priority.URGENT, clock.now, channel=CHANNEL)[0] for _ in range(8)]
    schedule.grant(clock.now)

    assert schedule.estimated_wait(tickets[-1], clock.now) == pytest.approx(5.0)


def test_budgets_are_divided_among_replicas_and_scaled() -> None:
    budget = Budget(replicas=2, scale=60.0)
    update = budget.bucket_for(("method", "chat.update"))
    posts = budget.bucket_for(("channel", CHANNEL))

    assert (update.capacity, update.per_second) == (25.0, 25.0)  # 50/min shared by two, a minute per second
    assert (posts.capacity, posts.per_second) == (1.5, 30.0)


def test_a_budget_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="replicas >= 1"):
        Budget(replicas=0)


# ------------------------------------------------------------------ the threaded outbox


class RateLimited(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__("ratelimited")
        self.retry_after = retry_after


def retry_after_of(exc: BaseException) -> float | None:
    return exc.retry_after if isinstance(exc, RateLimited) else None


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(work()), daemon=True)
    thread.start()
    return thread, result


def test_a_progress_update_stuck_on_a_spent_bucket_does_not_block_an_urgent_write() -> None:
    budget = Budget(tier_per_minute={"chat.update": 1}, scale=0.001)  # one update, then none for hours
    outbox = SlackOutbox(budget, rate_limited=retry_after_of, progress_patience=3600)
    sent: list[str] = []
    outbox.call("chat.update", lambda: sent.append("first"), priority=Priority.NORMAL)
    stuck, _stuck_result = in_thread(
        lambda: outbox.call("chat.update", lambda: sent.append("progress"), priority=Priority.PROGRESS)
    )
    done = threading.Event()
    _urgent, _ = in_thread(
        lambda: (
            outbox.call("chat.postMessage", lambda: sent.append("urgent"), priority=Priority.URGENT, channel=CHANNEL),
            done.set(),
        )
    )

    assert done.wait(5), "the urgent post waited behind a progress update"
    assert sent == ["first", "urgent"]
    assert stuck.is_alive()


def test_a_replaced_progress_call_returns_none_and_the_newer_content_is_sent() -> None:
    budget = Budget(tier_per_minute={"chat.update": 1}, scale=1.0)  # next token in 60 s
    outbox = SlackOutbox(budget, rate_limited=retry_after_of, progress_patience=3600)
    sent: list[str] = []
    outbox.call("chat.update", lambda: sent.append("first"), priority=Priority.NORMAL)
    older, older_result = in_thread(
        lambda: outbox.call("chat.update", lambda: "old", priority=Priority.PROGRESS, coalesce_key="m1")
    )
    while not outbox.waiting():
        threading.Event().wait(0.01)
    _newer, _newer_result = in_thread(
        lambda: outbox.call("chat.update", lambda: "new", priority=Priority.URGENT, coalesce_key="m1")
    )

    older.join(5)
    assert older_result == [None]
    assert [t.priority for t in outbox.waiting()] == [Priority.URGENT]  # the newer one waits for the next token


def test_progress_gives_up_after_its_patience_instead_of_failing() -> None:
    outbox = SlackOutbox(Budget(tier_per_minute={"chat.update": 1}), rate_limited=retry_after_of, progress_patience=0.2)
    outbox.call("chat.update", lambda: "first", priority=Priority.NORMAL)

    assert outbox.call("chat.update", lambda: "progress", priority=Priority.PROGRESS, coalesce_key="m1") is None
    assert outbox.waiting() == []


def test_a_429_is_waited_out_and_sent_again() -> None:
    outbox = SlackOutbox(Budget(), rate_limited=retry_after_of)
    answers: list[object] = [RateLimited(0.3), "ok"]

    def send() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert outbox.call("chat.postMessage", send, priority=Priority.URGENT, channel=CHANNEL) == "ok"


def test_a_429_on_a_read_is_raised_after_pausing_the_method() -> None:
    outbox = SlackOutbox(Budget(), rate_limited=retry_after_of)

    def bounced() -> object:
        raise RateLimited(30)

    with pytest.raises(RateLimited):
        outbox.call("reactions.get", bounced, priority=Priority.NORMAL, retry_rate_limits=False)
    queued: list[float] = []
    thread, _ = in_thread(
        lambda: outbox.call("reactions.get", lambda: "x", priority=Priority.NORMAL, on_queued=queued.append)
    )
    thread.join(0.3)
    assert queued
    assert queued[0] == pytest.approx(30, abs=1)


def test_many_callers_queued_on_one_bucket_all_go_out_in_their_order_as_it_refills() -> None:
    # Only the first in line watches the clock; everyone behind it must still be woken in turn.
    outbox = SlackOutbox(Budget(posts_per_second=40.0), rate_limited=retry_after_of)
    sent: list[int] = []
    threads = []
    for n in range(30):
        thread, _ = in_thread(
            lambda n=n: outbox.call(
                "chat.postMessage", lambda: sent.append(n), priority=Priority.NORMAL, channel=CHANNEL
            )
        )
        while len(outbox.waiting()) + len(sent) < n + 1:  # queued (or sent) before the next one comes
            threading.Event().wait(0.001)
        threads.append(thread)
    urgent, _ = in_thread(
        lambda: outbox.call("chat.postMessage", lambda: sent.append(-1), priority=Priority.URGENT, channel=CHANNEL)
    )
    for thread in [*threads, urgent]:
        thread.join(5)

    assert not any(thread.is_alive() for thread in [*threads, urgent]), "a queued caller was never woken"
    assert sorted(sent) == [-1, *range(30)]
    assert [n for n in sent if n >= 0] == list(range(30))  # same priority: first come, first served
    assert sent.index(-1) < 29  # the urgent one overtook the normal ones still waiting
