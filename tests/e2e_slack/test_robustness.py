"""Slack's hard edges through the HTTP endpoint: Bolt's pitfalls A and B, and 1,000 random command texts."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

from sandbox.slack.seed import ALICE, BOB, CAROL, DAVE, INCIDENT
from tests.e2e_slack.conftest import (
    WAIT,
    arrange_all,
    request_rollback,
    thread_texts,
    wait_for_phase,
    wait_for_thread_line,
)
from tests.fakes.memory_backend import RolloutScript

# Comfortably inside Slack's 3 s, with room for a loaded CI machine.
ACK_BUDGET_SECONDS = 1.0


def test_many_long_rollbacks_in_flight_do_not_starve_the_acks(slack, fake_slack, bot, backend, catalog) -> None:
    # Pitfall A: with Bolt's 5 listener threads busy running rollbacks, the 6th command got a 404 after 3 s.
    arrange_all(backend, catalog, RolloutScript(steps=3, hold=True))
    requests = [request_rollback(slack, fake_slack, bot, f"shop-{n}", user=ALICE) for n in range(1, 8)]
    for request in requests:
        slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
    fake_slack.wait_for(
        lambda: all(any("pods updated" in line for line in thread_texts(fake_slack, r)) for r in requests),
        WAIT,
        description="seven rollouts in progress",
    )
    with ThreadPoolExecutor(max_workers=20) as pool:
        acks = list(
            pool.map(lambda n: slack.slash_command(f"status shop-{n % 7 + 1}", user=DAVE, channel=INCIDENT), range(20))
        )
    assert [ack.status for ack in acks] == [200] * 20
    assert max(ack.latency for ack in acks) < ACK_BUDGET_SECONDS
    for n in range(1, 8):
        backend.release(catalog.get(f"shop-{n}"))


def test_an_exception_after_ack_still_answers_200(slack, fake_slack, bot) -> None:
    # Pitfall B: an exception escaping a listener after ack() turned the answer into a 404 after 3 s.
    request = request_rollback(slack, fake_slack, bot, "workshop")
    for gestures in (bot.request_executor, bot.vote_executor):  # every hand-over now raises RuntimeError
        gestures.shutdown(wait=True)
    click = slack.block_action(CAROL, INCIDENT, request.ts, "rollbot_approve")
    reaction = slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
    command = slack.slash_command("status workshop", user=DAVE, channel=INCIDENT)
    for ack in (click, reaction, command):
        assert ack.status == 200, ack.text
        assert ack.latency < ACK_BUDGET_SECONDS
    assert "Internal error" in (command.ephemeral_text or "")
    assert "Traceback" not in (command.ephemeral_text or "")


def test_an_unhandled_event_type_is_acknowledged_not_404(slack, fake_slack, bot) -> None:
    ack = slack.event({"type": "app_mention", "user": DAVE, "text": "<@UBOT> hi", "channel": INCIDENT})
    assert ack.status == 200
    ack = slack.message(DAVE, INCIDENT, "just chatting")
    assert ack.status == 200


_WORDS = [
    "workshop",
    "worksop",
    "fluentd",
    "bootcamp",
    "payload-api",
    "shop-1",
    "history",
    "status",
    "cancel",
    "help",
    "0",
    "1",
    "2",
    "3",
    "-1",
    "007",
    "99999999999999999999",
    "፩",
    "²",
    "1.5",
    "--dry-run",
    "--to-revision=1",
    "--to-revision",
    "--revision=2",
    "--reason",
    '"two words"',
    "'single'",
    "“curly”",
    '"unclosed',
    "--reason=",
    "-n",
    "shop",
    "deploy/web",
    "ds/fluentd",
    "sts/db",
    "foo/bar",
    "--deregister",
    "--no-wait",
    "--help",
    "-h",
    "op-123abc",
    "payload",
    "payload=1",
    "&",
    "<!channel>",
    "`",
    "*bold*",
    "🚀",
    "\t",
    "\n",
    "   ",
    "--",
    "-",
    "=",
    "WORKSHOP",
    "--namespace=kube-system",
    "--unknown",
    "%70ayload",
    "a" * 70,
]


def _random_text(rng: random.Random) -> str:
    if rng.random() < 0.1:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(0, 40)))
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(0, 7)))


def test_a_thousand_random_commands_are_all_answered(slack, fake_slack, bot) -> None:
    rng = random.Random(20261122)
    texts = [_random_text(rng) for _ in range(1000)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        acks = list(pool.map(lambda text: slack.slash_command(text, user=DAVE, channel=INCIDENT), texts))
    bad = [(text, ack.status, ack.text) for text, ack in zip(texts, acks, strict=True) if ack.status != 200]
    assert bad == []
    assert all(ack.ephemeral_text for ack in acks)
    # Commands the ack could not answer by itself ("Working on …") are answered through their response_url.
    pending = {ack.response_url for ack in acks if (ack.ephemeral_text or "").startswith(":hourglass")}
    fake_slack.wait_for(
        lambda: pending <= {r.url for r in fake_slack.responses("commands") if r.status == 200 and r.text},
        30,
        description=f"{len(pending)} delayed answers",
    )
    answers = [r.text for r in fake_slack.responses("commands")]
    assert not any("Traceback" in text or "Internal error" in text for text in answers)
    fake_slack.assert_no_errors()


def test_under_slacks_rate_limits_the_thread_is_complete_and_nothing_is_lost(
    slack, fake_slack, bot, backend, catalog
) -> None:
    # chat.postMessage: 1/s per channel (burst 3); a rollout produces more than that. 429s are waited out.
    fake_slack.set_rate_limits("strict")
    backend.script(catalog.get("workshop"), RolloutScript(steps=4, trouble_at_step=2, step_delay=0.2))
    request = request_rollback(slack, fake_slack, bot, "workshop")
    slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
    wait_for_phase(fake_slack, request, "succeeded", timeout=30)
    lines = wait_for_thread_line(fake_slack, request, "rolled back to revision 1", timeout=30)
    # The pod's restart event names a pod already counted under CrashLoopBackOff: one line says it all.
    for expected in ("approved by", "rolling back", "CrashLoopBackOff", "Rollout"):
        assert any(expected in line for line in lines), (expected, lines)
    assert fake_slack.calls("chat.postMessage", status=429), "the test did not hit the rate limit"
    fake_slack.assert_no_errors(allow=["ratelimited"])
