"""`rollbot report-deploy`: a pipeline tells the bot that a deploy failed (or succeeded), signed.

It posts `{target, status, revision?, url?, summary?}` to `$ROLLBOT_URL/webhooks/deploy` with the headers the bot
checks (`X-Rollbot-Timestamp`, `X-Rollbot-Signature`, bot/core/intake.py). Exit codes: 0 the bot took it,
2 the bot refused it (its reason is printed) or the environment is incomplete, 1 the bot could not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.error
import urllib.request
from typing import Protocol

from bot.core.intake import sign

EXIT_OK = 0
EXIT_REFUSED = 2
EXIT_UNREACHABLE = 1
DEPLOY_PATH = "/webhooks/deploy"
# A pipeline step should fail fast when the bot is down rather than hang the job.
TIMEOUT_SECONDS = 15


class Console(Protocol):
    def say(self, text: str) -> None: ...

    def error(self, text: str) -> None: ...


def report_deploy(args: argparse.Namespace, console: Console) -> int:
    base = os.environ.get("ROLLBOT_URL", "").strip().rstrip("/")
    secret = os.environ.get("ROLLBOT_WEBHOOK_SECRET", "")
    if not base.startswith(("http://", "https://")):
        console.error("rollbot report-deploy: set ROLLBOT_URL to the bot's base URL, e.g. https://rollbot.example.com")
        return EXIT_REFUSED
    if not secret:
        console.error("rollbot report-deploy: set ROLLBOT_WEBHOOK_SECRET (the same secret the bot has)")
        return EXIT_REFUSED
    report = {"target": args.target, "status": args.status}
    report |= {key: getattr(args, key) for key in ("revision", "url", "summary") if getattr(args, key)}
    body = json.dumps(report).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
        base + DEPLOY_PATH,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-Rollbot-Timestamp": timestamp,
            "X-Rollbot-Signature": sign(secret, timestamp, body),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            answer = _json(response.read())
    except urllib.error.HTTPError as exc:
        reason = _json(exc.read()).get("error") or exc.reason
        console.error(f"rollbot report-deploy: the bot refused the report ({exc.code}): {reason}")
        return EXIT_REFUSED if exc.code < 500 else EXIT_UNREACHABLE
    except (urllib.error.URLError, OSError) as exc:
        why = getattr(exc, "reason", exc)
        console.error(f"rollbot report-deploy: cannot reach the bot at {base}: {why}")
        return EXIT_UNREACHABLE
    console.say(f"rollbot report-deploy: {answer.get('outcome', 'accepted')}")
    return EXIT_OK


def _json(raw: bytes) -> dict[str, str]:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}
