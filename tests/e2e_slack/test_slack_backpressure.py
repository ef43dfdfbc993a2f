"""Slack's budget spent at the moment of approval: the rollback starts anyway, and the thread still reads in order.

The approval's Slack effects (the request message re-rendered, the "approved" line) wait for Slack; the backend
write does not wait for them. Slack answers the next chat calls 429 with a Retry-After, as it does when the
workspace's Tier 3 budget or the channel's post rate is used up.
"""

from __future__ import annotations

import time

from sandbox.slack.seed import BOB, INCIDENT
from tests.e2e_slack.conftest import WAIT, eventually, request_rollback, thread_texts, wait_for_thread_line

# How long Slack asks the bot to hold back each refused call; far above what starting a rollback may take.
RETRY_AFTER = 3
# Approval → first backend write on a loaded test machine (the bench's goal is 100 ms at p99).
PROMPT = 1.0


def test_a_rollback_starts_while_slack_holds_back_the_approvals_report(slack, fake_slack, bot, backend) -> None:
    request = request_rollback(slack, fake_slack, bot, "bootcamp")
    target = bot.flow.catalog.get("bootcamp")
    fake_slack.inject_fault("chat.*", status=429, retry_after=RETRY_AFTER, count=2)

    assert slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts).status == 200
    approved_at = time.time()
    calls = eventually(lambda: backend.roll_back_call_log(target), RETRY_AFTER, "the rollback call")

    assert calls[0]["at"] - approved_at < PROMPT
    assert thread_texts(fake_slack, request) == [], "the rollback waited for the approval's report"
    lines = wait_for_thread_line(fake_slack, request, "rolled back to revision 1", WAIT + 2 * RETRY_AFTER)
    approved, rolling_back, final = (
        next(n for n, line in enumerate(lines) if words in line)
        for words in ("approved by", "rolling back", "rolled back to revision 1")
    )
    assert approved < rolling_back < final, lines
    assert len(fake_slack.calls(status=429)) == 2
