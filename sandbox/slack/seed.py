"""The workspace the fake Slack starts with: team, tokens, users, usergroups and channels.

Tests, benchmarks and the demo share these ids, so they are module constants. A test that needs a different
world builds its own :class:`Workspace` (``default_workspace()`` then edit, or from scratch) and passes it to
``FakeSlack(workspace=…)``. The data model is deliberately plain (dataclasses, no behaviour): the server owns the
rules.

Default world::

    team T0001 "acme"
    users   UBOT (rollbot, bot BBOT) · U0ALICE · U0BOB · U0CAROL (SREs) · U0DAVE (developer) · U0EVE (outsider)
            U0GONE (deactivated) · USLACKBOT
    groups  S0SRE "sre-oncall" = alice, bob, carol · S0EMPTY "nobody" = []
    public  C0OPS #ops (bot, alice, bob, carol, dave) · C0INCIDENT #incident (everyone but eve)
            C0RANDOM #random (everyone but the bot)
    private G0SRE #sre-private (bot, alice, bob) · G0NOBOT #hr-private (alice; bot not invited)
    archived C0OLD #old-ops (bot, alice)
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

TEAM_ID = "T0001"
TEAM_DOMAIN = "acme"
TEAM_NAME = "Acme Corp"
API_APP_ID = "A0ROLLBOT"

BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
BOT_NAME = "rollbot"
BOT_TOKEN = "xoxb-0001-rollbot-fake"
APP_TOKEN = "xapp-1-A0ROLLBOT-0001-fake"
USER_TOKEN = "xoxp-0001-alice-fake"
SIGNING_SECRET = "fake-signing-secret-0123456789abcdef"

# What the rollback bot's manifest asks for; tests remove scopes from a copy to provoke missing_scope.
BOT_SCOPES = (
    "chat:write",
    "chat:write.public",
    "commands",
    "reactions:read",
    "reactions:write",
    "channels:read",
    "groups:read",
    "channels:history",
    "groups:history",
    "users:read",
    "usergroups:read",
)
APP_SCOPES = ("connections:write",)

ALICE = "U0ALICE"
BOB = "U0BOB"
CAROL = "U0CAROL"
DAVE = "U0DAVE"
EVE = "U0EVE"
GONE = "U0GONE"
SLACKBOT = "USLACKBOT"

SRE_GROUP = "S0SRE"
EMPTY_GROUP = "S0EMPTY"

OPS = "C0OPS"
INCIDENT = "C0INCIDENT"
RANDOM = "C0RANDOM"
SRE_PRIVATE = "G0SRE"
NOBOT_PRIVATE = "G0NOBOT"
ARCHIVED = "C0OLD"

TokenKind = Literal["bot", "user", "app"]


class Clock(Protocol):
    """Anything with ``now() -> epoch seconds``; ``slack_sdk.signature.Clock`` fits too."""

    def now(self) -> float: ...


class WallClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock tests move by hand, so expiry and rate-limit refills need no sleeping."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


@dataclass
class Token:
    token: str
    kind: TokenKind
    user_id: str
    scopes: tuple[str, ...]
    bot_id: str | None = None
    revoked: bool = False


@dataclass
class User:
    id: str
    name: str
    real_name: str
    is_bot: bool = False
    deleted: bool = False
    tz: str = "Europe/Berlin"
    email: str | None = None
    bot_id: str | None = None


@dataclass
class Channel:
    id: str
    name: str
    members: list[str]
    is_private: bool = False
    is_archived: bool = False
    is_im: bool = False
    created: int = 1_600_000_000
    creator: str = ALICE


@dataclass
class Workspace:
    team_id: str = TEAM_ID
    domain: str = TEAM_DOMAIN
    name: str = TEAM_NAME
    api_app_id: str = API_APP_ID
    bot_user_id: str = BOT_USER_ID
    bot_id: str = BOT_ID
    tokens: dict[str, Token] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    usergroups: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)

    def add_user(self, user: User) -> None:
        self.users[user.id] = user

    def add_channel(self, channel: Channel) -> None:
        self.channels[channel.id] = channel

    def copy(self) -> Workspace:
        return copy.deepcopy(self)


def default_workspace() -> Workspace:
    """A fresh copy of the default world described in the module docstring."""
    workspace = Workspace()
    workspace.tokens = {
        BOT_TOKEN: Token(BOT_TOKEN, "bot", BOT_USER_ID, BOT_SCOPES, bot_id=BOT_ID),
        APP_TOKEN: Token(APP_TOKEN, "app", BOT_USER_ID, APP_SCOPES),
        USER_TOKEN: Token(USER_TOKEN, "user", ALICE, ("chat:write", "reactions:write", "reactions:read")),
    }
    for user in (
        User(BOT_USER_ID, BOT_NAME, "Rollbot", is_bot=True, bot_id=BOT_ID),
        User(ALICE, "alice", "Alice Archer", email="alice@acme.test"),
        User(BOB, "bob", "Bob Baker", email="bob@acme.test", tz="America/New_York"),
        User(CAROL, "carol", "Carol Chen", email="carol@acme.test", tz="Asia/Tokyo"),
        User(DAVE, "dave", "Dave Diaz", email="dave@acme.test"),
        User(EVE, "eve", "Eve Evans", email="eve@acme.test"),
        User(GONE, "gone", "Former Employee", deleted=True),
        User(SLACKBOT, "slackbot", "Slackbot", is_bot=True),
    ):
        workspace.add_user(user)
    workspace.usergroups = {
        SRE_GROUP: ("sre-oncall", [ALICE, BOB, CAROL]),
        EMPTY_GROUP: ("nobody", []),
    }
    everyone = [BOT_USER_ID, ALICE, BOB, CAROL, DAVE, EVE]
    for channel in (
        Channel(OPS, "ops", [BOT_USER_ID, ALICE, BOB, CAROL, DAVE]),
        Channel(INCIDENT, "incident", [BOT_USER_ID, ALICE, BOB, CAROL, DAVE]),
        Channel(RANDOM, "random", [user for user in everyone if user != BOT_USER_ID]),
        Channel(SRE_PRIVATE, "sre-private", [BOT_USER_ID, ALICE, BOB], is_private=True),
        Channel(NOBOT_PRIVATE, "hr-private", [ALICE], is_private=True),
        Channel(ARCHIVED, "old-ops", [BOT_USER_ID, ALICE], is_archived=True),
    ):
        workspace.add_channel(channel)
    return workspace
