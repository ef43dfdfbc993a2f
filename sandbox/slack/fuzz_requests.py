"""Hypothesis strategies for what could reach the bot's Slack endpoint, and a keep-alive sender for them.

`fuzz_requests(world)` draws one `FuzzRequest`: a slash command whose text mixes the grammar's real words
(`history`, `status`, `cancel op-…`, `help`, `--dry-run`, `--reason "…"`, `--to-revision=N`, `deploy/x -n ns`) with
unicode, control characters, quotes and huge strings; a `block_actions` click on known or unknown action ids with
fields missing, of the wrong type, nested junk or huge; a `reaction_added`/`reaction_removed` or other event with a
malformed item; a raw form or JSON body (bad `payload` JSON, junk fields); and, for a share of them, a forged
signature (none, wrong secret, stale or future timestamp, garbled header) which must be answered 401.

What is deliberately not generated: well-formed requests of a kind the bot has no listener for (another slash
command, a shortcut, a top-level `type` Slack never sends to this app). Bolt answers those 404 "unhandled request",
which Slack shows as `dispatch_failed`: the right signal for a misconfigured app. Nor bodies over 1 MiB or not
UTF-8 (answered 413 and 400; Slack sends neither).

`FuzzWorld` holds what the generator may refer to: users, channels, messages and operations that exist, and
response_urls minted by the fake. `FuzzSender` signs at send time (a drawn request may wait in a queue) and posts
over one keep-alive connection per thread, with a per-request timeout so a hung request is seen as one.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.client import HTTPConnection, HTTPException
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from hypothesis import strategies as st

from sandbox.slack import seed
from sandbox.slack.signing import SLACK_USER_AGENT, compute_signature

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
APPROVE_ACTION = "rollbot_approve"
REJECT_ACTION = "rollbot_reject"
# Slack's replay window is 300 s; one second more is already stale.
REPLAY_WINDOW_SECONDS = 300
# Longer than any request waits in the bot's queue before its signature is checked.
FUTURE_MARGIN_SECONDS = 15
# Well above Slack's 4,000-character command text and Block Kit's 3,000-character fields; even percent-encoded
# and JSON-escaped, five of them stay below the endpoint's 1 MiB cap.
HUGE_MIN, HUGE_MAX = 5_000, 100_000
# What a Python traceback looks like wherever it could leak: its header and its frame lines.
TRACEBACK_PATTERN = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]*\", line \d+")

Signing = Literal["valid", "unsigned", "no_timestamp", "wrong_secret", "stale", "future", "garbled"]
Kind = Literal["command", "block_actions", "event", "raw"]


@dataclass(frozen=True)
class FuzzWorld:
    """Names the generator may use so that some requests reach deep paths (a real vote on a real request)."""

    # Tuples, so that a world can key the cache of strategies built from it.
    users: tuple[str, ...] = (seed.ALICE, seed.BOB, seed.CAROL, seed.DAVE, seed.EVE, seed.BOT_USER_ID)
    channels: tuple[str, ...] = (seed.INCIDENT, seed.OPS, seed.RANDOM, seed.ARCHIVED)
    targets: tuple[str, ...] = ("workshop", "bootcamp", "fluentd", "payload-api", "shop-1")
    # (channel, ts) of messages that exist, e.g. request messages posted before the run.
    messages: tuple[tuple[str, str], ...] = ()
    operation_ids: tuple[str, ...] = ()
    response_urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class FuzzRequest:
    kind: Kind
    body: bytes
    content_type: str | None
    signing: Signing = "valid"
    # For forged signatures: how the headers are wrong (the garbled value, the timestamp offset…).
    forgery: str = ""

    @property
    def expected_status(self) -> int:
        """Only a correctly signed request may reach Bolt; everything else is 401 whatever its body."""
        return 200 if self.signing == "valid" else 401


@dataclass
class FuzzAnswer:
    status: int  # 0 when there was no HTTP answer (timeout, connection reset)
    body: bytes
    latency: float
    transport_error: str | None = None


# ---------------------------------------------------------------------------------------------------- building blocks

_control = st.characters(min_codepoint=0, max_codepoint=0x1F) | st.sampled_from("\x7f\u200b\u200e\u202e\ufeff\u2028")
_any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_quotes = st.sampled_from(['"', "'", "“", "”", "‘", "`", '\\"', "«", "»"])
_separators = st.sampled_from([" ", " ", " ", "  ", "\t", "\n", "\u00a0", "\u3000", ""])


def _huge(pieces: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A piece repeated into a long string: hypothesis itself draws at most a few kB per example."""
    return st.builds(
        # Sized in encoded bytes: a 4-byte emoji percent-encodes to 12 characters.
        lambda piece, size: (piece or "x") * max(1, size // (3 * len((piece or "x").encode()))),
        pieces,
        st.integers(HUGE_MIN, HUGE_MAX),
    )


@functools.cache
def _words(world: FuzzWorld) -> st.SearchStrategy[str]:
    operation_ids = st.sampled_from(world.operation_ids) if world.operation_ids else st.nothing()
    revisions = st.integers(-3, 10).map(str) | st.sampled_from(
        ["007", "99999999999999999999", "2147483648", "፩", "²", "1.5", "1e3", "0x1", "+1", "٣"]
    )
    return st.one_of(
        st.sampled_from(world.targets),
        st.sampled_from(["history", "status", "cancel", "help", "HELP", "Status", "worksop", "payload", "payload=1"]),
        revisions,
        st.sampled_from(["--dry-run", "--to-revision", "--revision", "--reason", "-n", "--namespace", "--", "-"]),
        st.builds(lambda n: f"--to-revision={n}", revisions),
        st.builds(lambda q, t: f"--reason {q}{t}{q}", _quotes, _any_text),
        st.builds(lambda q, t: f"--reason={q}{t}", _quotes, _any_text),
        st.builds(lambda k, n: f"{k}/{n}", st.sampled_from(["deploy", "ds", "sts", "foo", ""]), _any_text),
        st.builds(lambda ns: f"-n {ns}", st.sampled_from(["shop", "default", "kube-system", "", "a/b"]) | _any_text),
        st.builds(lambda flag: f"--{flag}", st.sampled_from(["deregister", "no-wait", "unknown", "help", "x=y"])),
        operation_ids,
        st.builds(lambda h: f"op-{h}", st.text("0123456789abcdef", min_size=0, max_size=8)),
        st.sampled_from(["<!channel>", "<@U0BOB>", "*bold*", "`code`", "&amp;", "%70ayload", "🚀", "ℌ𝔢𝔩𝔭"]),
        _quotes,
        _control,
        _any_text,
    )


@functools.cache
def command_texts(world: FuzzWorld) -> st.SearchStrategy[str]:
    """What someone could type after `/rollback`: mostly the grammar's words, sometimes anything at all."""
    words = _words(world)
    phrase = st.lists(st.tuples(words, _separators), max_size=8).map(lambda parts: "".join(w + s for w, s in parts))
    verbs = st.one_of(
        st.builds(lambda t: f"history {t}", st.sampled_from(world.targets) | _any_text),
        st.builds(lambda t: f"status {t}", st.sampled_from(world.targets) | _any_text),
        st.builds(lambda o: f"cancel {o}", (st.sampled_from(world.operation_ids) if world.operation_ids else words)),
        st.builds(lambda t: f"help {t}".strip(), st.sampled_from(["", "history", "status", "cancel", "flags"])),
    )
    text = st.one_of(
        phrase,
        phrase,
        verbs,
        st.text(max_size=200),
        _huge(words),
        st.builds(lambda prefix, junk: prefix + junk, words, _huge(st.sampled_from(['"', "\x00", "é", "🚀", "a "]))),
    )
    return text.filter(lambda value: TRACEBACK_PATTERN.search(value) is None)


@functools.cache
def _json_scalars() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(max_size=30),
    )


# Keys that name a request kind: junk must not invent a well-formed kind the bot has no listener for.
_KIND_KEYS = frozenset({"type", "command"})
_junk_keys = st.text(max_size=10).filter(lambda key: key not in _KIND_KEYS)


@functools.cache
def json_junk(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON value, nested."""
    return st.recursive(
        _json_scalars(),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(_junk_keys, children, max_size=4),
        max_leaves=max_leaves,
    )


def _deep(depth: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    """Nesting a recursive walker may choke on, yet `json.dumps` can still write (it stops near 1,000 levels)."""
    return st.builds(_nest, depth, st.booleans())


def _deep_json(depth: st.SearchStrategy[int]) -> st.SearchStrategy[str]:
    """JSON text nested far deeper than any parser's recursion limit, written without recursing."""
    return st.builds(
        lambda n, as_list: ("[" * n + "0" + "]" * n) if as_list else ('{"a":' * n + "0" + "}" * n), depth, st.booleans()
    )


def _nest(depth: int, as_list: bool) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


@functools.cache
def _junk_value() -> st.SearchStrategy[Any]:
    return st.one_of(json_junk(), _huge(st.text(min_size=1, max_size=3)), _deep(st.integers(10, 900)))


@st.composite
def _mutated(draw: st.DrawFn, base: dict[str, Any], protected: frozenset[str] = frozenset()) -> dict[str, Any]:
    """`base` with some keys removed and some replaced by junk, at the top level and one level down.

    Keys in `protected` may be dropped or given a non-string value, never another string (see the module docstring).
    """
    payload = json.loads(json.dumps(base))
    keys = sorted(payload)
    for key in draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)):
        payload.pop(key, None)
    for key in draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)):
        junk = draw(_junk_value())
        if key in protected and isinstance(junk, str):
            junk = None
        payload[key] = junk
    nested = [key for key in sorted(payload) if isinstance(payload[key], dict) and payload[key]]
    for key in draw(st.lists(st.sampled_from(nested), max_size=2, unique=True)) if nested else []:
        inner = payload[key]
        inner_key = draw(st.sampled_from(sorted(inner)))
        if draw(st.booleans()):
            inner.pop(inner_key)
        else:
            inner[inner_key] = draw(_junk_value())
    for key, value in draw(st.dictionaries(_junk_keys, json_junk(4), max_size=2)).items():
        if key not in protected:
            payload[key] = value
    return payload


@functools.cache
def _message_refs(world: FuzzWorld) -> st.SearchStrategy[tuple[str, str]]:
    junk_ref = st.tuples(st.sampled_from(world.channels) | _any_text, st.text("0123456789.", max_size=20))
    return (st.sampled_from(world.messages) | junk_ref) if world.messages else junk_ref


@functools.cache
def _response_urls(world: FuzzWorld) -> st.SearchStrategy[str]:
    # Refused outright, without a connection attempt: no DNS, no host outside this machine, and no retry (whose
    # jitter would draw from `random` while hypothesis is generating in the same process).
    junk = st.sampled_from(["", "not a url", "ftp://127.0.0.1/x", "http://[::1", "//no-scheme"])
    return (st.sampled_from(world.response_urls) | junk) if world.response_urls else junk


# ---------------------------------------------------------------------------------------------------- request kinds


@st.composite
def slash_commands(draw: st.DrawFn, world: FuzzWorld) -> FuzzRequest:
    channel = draw(st.sampled_from(world.channels) | _any_text)
    user = draw(st.sampled_from(world.users) | _any_text)
    fields: dict[str, str] = {
        "token": "legacy-verification-token",
        "team_id": seed.TEAM_ID,
        "team_domain": seed.TEAM_DOMAIN,
        "channel_id": channel,
        "channel_name": draw(st.sampled_from(["incident", "ops", "directmessage", "payload"]) | _any_text),
        "user_id": user,
        "user_name": draw(_any_text),
        "command": "/rollback",
        "text": draw(command_texts(world)),
        "api_app_id": seed.API_APP_ID,
        "is_enterprise_install": draw(st.sampled_from(["false", "true", "", "maybe"])),
        "response_url": draw(_response_urls(world)),
        "trigger_id": draw(st.text(max_size=20)),
    }
    for key in draw(st.lists(st.sampled_from(sorted(set(fields) - {"command"})), max_size=3, unique=True)):
        del fields[key]
    pairs = list(fields.items())
    # Repeated fields: Bolt keeps the last one, parse_qs all of them.
    repeatable = sorted(set(fields) - {"command"})  # a second `command` would be another slash command
    pairs += [(key, draw(_any_text)) for key in draw(st.lists(st.sampled_from(repeatable), max_size=2))]
    return FuzzRequest("command", urlencode(pairs).encode(), draw(_form_content_types()))


@functools.cache
def _form_content_types() -> st.SearchStrategy[str | None]:
    return st.sampled_from([FORM, FORM, FORM, f"{FORM}; charset=utf-8", "text/plain", None])


@st.composite
def block_actions(draw: st.DrawFn, world: FuzzWorld) -> FuzzRequest:
    channel, ts = draw(_message_refs(world))
    user = draw(st.sampled_from(world.users) | _any_text)
    action_id = draw(st.sampled_from([APPROVE_ACTION, REJECT_ACTION, APPROVE_ACTION]) | _any_text)
    action: dict[str, Any] = {
        "action_id": action_id,
        "block_id": draw(st.sampled_from(["decision", "block"]) | _any_text),
        "type": "button",
        "value": draw(st.sampled_from(world.operation_ids or ["op-000000"]) | _any_text | _huge(_any_text)),
        "text": {"type": "plain_text", "text": draw(_any_text), "emoji": True},
        "action_ts": draw(st.text("0123456789.", max_size=20)),
    }
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user, "username": "someone", "name": "someone", "team_id": seed.TEAM_ID},
        "api_app_id": seed.API_APP_ID,
        "token": "legacy-verification-token",
        "trigger_id": draw(st.text(max_size=20)),
        "team": {"id": seed.TEAM_ID, "domain": seed.TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": draw(st.booleans())},
        "channel": {"id": channel, "name": "incident"},
        "message": {"type": "message", "ts": ts, "text": draw(_any_text), "user": seed.BOT_USER_ID},
        "state": {"values": {}},
        "response_url": draw(_response_urls(world)),
        "actions": [action],
    }
    if draw(st.booleans()):
        payload = draw(_mutated(payload, protected=frozenset({"type"})))
        if isinstance(payload.get("actions"), list) and payload["actions"] and draw(st.booleans()):
            payload["actions"] = [draw(_mutated(action)), *payload["actions"][1:]]
    encoded = json.dumps(payload)
    if draw(st.integers(0, 9)) == 0:
        # Bad `payload` JSON: cut short, or never JSON at all.
        encoded = draw(st.sampled_from([encoded[: len(encoded) // 2], "{not json", "", "null", "[]", "'x'"]))
    return FuzzRequest("block_actions", urlencode({"payload": encoded}).encode(), draw(_form_content_types()))


@st.composite
def events(draw: st.DrawFn, world: FuzzWorld) -> FuzzRequest:
    channel, ts = draw(_message_refs(world))
    kind = draw(st.sampled_from(["reaction_added", "reaction_removed", "reaction_added", "message", "app_mention"]))
    if kind.startswith("reaction"):
        inner: dict[str, Any] = {
            "type": kind,
            "user": draw(st.sampled_from(world.users) | _any_text),
            "reaction": draw(
                st.sampled_from(["white_check_mark", "x", "+1", "thumbsup::skin-tone-2", "heavy_check_mark", "eyes"])
                | _any_text
            ),
            "item": {"type": draw(st.sampled_from(["message", "file", "file_comment"])), "channel": channel, "ts": ts},
            "item_user": draw(st.sampled_from(world.users)),
            "event_ts": draw(st.text("0123456789.", max_size=20)),
        }
    else:
        inner = {"type": kind, "user": draw(st.sampled_from(world.users)), "text": draw(command_texts(world))}
        inner |= {"channel": channel, "ts": ts}
    if draw(st.booleans()):
        inner = draw(_mutated(inner))
    envelope: dict[str, Any] = {
        "token": "legacy-verification-token",
        "team_id": seed.TEAM_ID,
        "api_app_id": seed.API_APP_ID,
        "event": inner,
        "type": "event_callback",
        "event_id": draw(st.text(min_size=1, max_size=16)),
        "event_time": draw(st.integers(0, 2**40)),
        "authorizations": [{"team_id": seed.TEAM_ID, "user_id": seed.BOT_USER_ID, "is_bot": True}],
        "is_ext_shared_channel": draw(st.booleans()),
    }
    if draw(st.integers(0, 3)) == 0:
        envelope = draw(_mutated(envelope, protected=frozenset({"type"})))
    content_type = draw(st.sampled_from([JSON, JSON, f"{JSON}; charset=utf-8", FORM, None]))
    return FuzzRequest("event", json.dumps(envelope).encode(), content_type)


@st.composite
def raw_bodies(draw: st.DrawFn) -> FuzzRequest:
    """Bodies no template produced: random forms, a `payload` field that is not JSON, JSON of any shape."""
    body = draw(
        st.one_of(
            st.dictionaries(_junk_keys, st.text(max_size=40), max_size=5).map(urlencode),
            st.builds(lambda junk: urlencode({"payload": junk}), st.text(max_size=60)),
            st.builds(lambda value: urlencode({"payload": json.dumps(value)}), json_junk()),
            json_junk().map(json.dumps),
            st.builds(lambda value: "{" + value, st.text(max_size=40)),
            st.text(max_size=100),
            st.sampled_from(["ssl_check=1", "ssl_check=1&token=x", '{"type": "url_verification"}']),
            st.builds(lambda c: json.dumps({"type": "url_verification", "challenge": c}), json_junk()),
            st.builds(lambda n: json.dumps({"type": "app_rate_limited", "minute_rate_limited": n}), json_junk()),
            _deep_json(st.integers(10, 100_000)),
        )
    )
    content_type = draw(st.sampled_from([JSON, FORM, "text/plain", "application/JSON", "", None]))
    return FuzzRequest("raw", body.encode(), content_type)


@functools.cache
def _forgeries() -> st.SearchStrategy[tuple[Signing, str]]:
    """How a signature is forged, and with what (seconds off for stale/future, the junk timestamp for garbled)."""
    offsets = st.integers(REPLAY_WINDOW_SECONDS + 1, 10**9).map(str)
    # The bot checks a future timestamp some time after it is written (whole seconds, then a queue under load): a
    # margin keeps "301 s ahead" from arriving as 300.4 s, which is rightly valid. The edge itself is tested in
    # tests/adapters/test_http_server.py.
    future_offsets = st.integers(REPLAY_WINDOW_SECONDS + FUTURE_MARGIN_SECONDS, 10**9).map(str)
    garbled = st.sampled_from(["abc", "", " ", "1e9", "-1", "²", "١٢٣", "0x10", "9" * 400, "v0=", "V0=ABC"])
    plain: list[Signing] = ["unsigned", "no_timestamp", "wrong_secret"]
    return st.one_of(
        st.tuples(st.sampled_from(plain), st.just("")),
        st.tuples(st.just("stale"), offsets),
        st.tuples(st.just("future"), future_offsets),
        st.tuples(st.just("garbled"), garbled),
    )


def fuzz_requests(world: FuzzWorld, forged_share: float = 0.15) -> st.SearchStrategy[FuzzRequest]:
    """One request of any kind, a share of them with a forged signature.

    `forged_share` weights the draw, but hypothesis leans towards a strategy's first choices: with the default,
    about a third of the requests come out forged (the tally counts them).
    """
    forged_in_twenty = max(1, round(forged_share * 20))
    is_forged = st.sampled_from([True] * forged_in_twenty + [False] * (20 - forged_in_twenty))
    signed = st.one_of(slash_commands(world), slash_commands(world), block_actions(world), events(world), raw_bodies())

    @st.composite
    def one(draw: st.DrawFn) -> FuzzRequest:
        request = draw(signed)
        if draw(is_forged):
            signing, forgery = draw(_forgeries())
            return FuzzRequest(request.kind, request.body, request.content_type, signing, forgery)
        return request

    return one()


# ---------------------------------------------------------------------------------------------------- sending


@dataclass
class FuzzSender:
    """Signs (or forges) at send time and POSTs over one keep-alive connection per thread."""

    url: str
    signing_secret: str
    timeout: float = 10.0
    _local: threading.local = field(default_factory=threading.local)
    _connections: list[HTTPConnection] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def headers(self, request: FuzzRequest, now: float | None = None) -> dict[str, bytes]:
        timestamp = str(int(time.time() if now is None else now))
        headers: dict[str, bytes] = {"User-Agent": SLACK_USER_AGENT.encode()}
        if request.content_type is not None:
            headers["Content-Type"] = request.content_type.encode()
        secret, signature_time = self.signing_secret, timestamp
        match request.signing:
            case "unsigned":
                return headers
            case "wrong_secret":
                secret = "not-the-" + self.signing_secret
            case "stale":
                timestamp = signature_time = str(int(timestamp) - int(request.forgery))
            case "future":
                timestamp = signature_time = str(int(timestamp) + int(request.forgery))
            case "garbled":
                # Signed over the garbled timestamp, so only the timestamp itself is wrong.
                timestamp = signature_time = request.forgery
        signature = compute_signature(secret, signature_time, request.body)
        if request.signing != "no_timestamp":
            headers["X-Slack-Request-Timestamp"] = timestamp.encode()
        headers["X-Slack-Signature"] = signature.encode()
        return headers

    def send(self, request: FuzzRequest) -> FuzzAnswer:
        started = time.perf_counter()
        path = urlsplit(self.url).path
        error: Exception | None = None
        for attempt in range(2):  # one retry, only for a kept-alive connection the server closed while idle
            connection, reused = self._connection()
            try:
                connection.request("POST", path, body=request.body, headers=self.headers(request))
                response = connection.getresponse()
                body = response.read()
            except TimeoutError:
                self._drop()
                return FuzzAnswer(0, b"", time.perf_counter() - started, "timeout")
            except (HTTPException, OSError) as exc:
                self._drop()
                error = exc
                if reused and attempt == 0:
                    continue
                break
            if response.will_close:
                self._drop()
            return FuzzAnswer(response.status, body, time.perf_counter() - started)
        return FuzzAnswer(0, b"", time.perf_counter() - started, f"{type(error).__name__}: {error}")

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    def _connection(self) -> tuple[HTTPConnection, bool]:
        connection: HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection, True
        parts = urlsplit(self.url)
        connection = HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=self.timeout)
        self._local.connection = connection
        with self._lock:
            self._connections.append(connection)
        return connection, False

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
        self._local.connection = None


def leaks_traceback(text: str) -> bool:
    return TRACEBACK_PATTERN.search(text) is not None
