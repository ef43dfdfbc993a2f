"""Fake Slack for tests, benchmarks and the demo (slack.md §7).

- :class:`FakeSlack` serves a stateful Web API and response_urls on ``127.0.0.1:<random port>``;
- :class:`SlackDriver` sends signed slash commands, events and block actions to the bot's endpoint;
- :class:`TranscriptPrinter` turns the fake's state changes into a readable terminal log.

Typical use::

    with FakeSlack() as fake:
        client = WebClient(token=seed.BOT_TOKEN, base_url=fake.api_url)
        driver = SlackDriver("http://127.0.0.1:3000/slack/events", seed.SIGNING_SECRET, fake)
        driver.slash_command("workshop 1", user=seed.ALICE, channel=seed.OPS).assert_acked()
        request = fake.wait_for(lambda: fake.messages(seed.OPS))[0]
"""

from sandbox.slack import seed
from sandbox.slack.driver import Ack, Delivery, SlackDriver
from sandbox.slack.ratelimits import RateLimitMode
from sandbox.slack.records import Call, Change, Ephemeral, Message, ResponseUrlPost
from sandbox.slack.seed import ManualClock, Workspace, default_workspace
from sandbox.slack.server import FakeSlack
from sandbox.slack.signing import compute_signature
from sandbox.slack.transcript import TranscriptPrinter, render_thread
from sandbox.slack.webapi import ApiOptions

__all__ = [
    "Ack",
    "ApiOptions",
    "Call",
    "Change",
    "Delivery",
    "Ephemeral",
    "FakeSlack",
    "ManualClock",
    "Message",
    "RateLimitMode",
    "ResponseUrlPost",
    "SlackDriver",
    "TranscriptPrinter",
    "Workspace",
    "compute_signature",
    "default_workspace",
    "render_thread",
    "seed",
]
