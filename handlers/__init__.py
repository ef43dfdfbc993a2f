"""Slack listeners: a payload in, one flow call, an ack out. No decisions live here.

`register_listeners(app, flow, settings)` wires every listener onto a Bolt `App`:

- the slash command (`ROLLBOT_SLASH_COMMAND`, default `/rollback`): acked at once with an ephemeral reply;
  the real work runs on the bot's own bounded executor, never in a Bolt listener thread (Pitfall A);
- `reaction_added` / `reaction_removed`: votes on request messages (Bolt auto-acks events);
- the Approve / Reject buttons (`rollbot_approve`, `rollbot_reject`);
- no-op listeners for every other event type, so Bolt never answers 404 and Slack never retries (slack.md §3.4);
- `@app.error`, the last resort: log, never a traceback in Slack.

Every listener wraps what follows `ack()` in `try/except` (Pitfall B: an exception after `ack()` turns the
answer into a 404 after three seconds). Pitfall C (a command text containing `payload`) is handled before
Bolt sees the request, in `bot.adapters.http_server`.
"""

from __future__ import annotations

from slack_bolt import App

from bot.flows import RollbackFlow
from bot.settings import Settings
from handlers.actions import register_actions
from handlers.commands import register_commands
from handlers.errors import register_error_handler
from handlers.events import register_events


def register_listeners(app: App, flow: RollbackFlow, settings: Settings) -> None:
    register_commands(app, flow, settings.slash_command)
    register_actions(app, flow)
    register_events(app, flow)
    register_error_handler(app)
