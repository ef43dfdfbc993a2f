"""Slack's v0 request signature (slack.md §1): HMAC-SHA256 over ``v0:<timestamp>:<raw body>``.

The driver signs the exact bytes it puts on the wire; re-serialising a body after signing is the classic way to
get a signature that a correct verifier rejects.
"""

from __future__ import annotations

import hashlib
import hmac

# What Slack's request sender calls itself in access logs.
SLACK_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"
SIGNATURE_VERSION = "v0"


def compute_signature(signing_secret: str, timestamp: int | str, body: bytes) -> str:
    """``v0=<64 lowercase hex>`` for ``body`` sent at ``timestamp`` (unix seconds)."""
    base = f"{SIGNATURE_VERSION}:{timestamp}:".encode() + body
    digest = hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def signed_headers(signing_secret: str, timestamp: int | str, body: bytes, content_type: str) -> dict[str, str]:
    """The headers Slack sends with every request to the bot's endpoint."""
    return {
        "Content-Type": content_type,
        "User-Agent": SLACK_USER_AGENT,
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": compute_signature(signing_secret, timestamp, body),
    }
