"""Is a signed request shaped the way Bolt can route it? Checked before Bolt sees it.

Bolt trusts Slack's payloads: it parses the body with `json.loads` unguarded and dereferences fields on the way to
a listener (`body["actions"][0]`, `"type" in body["event"]`, `payload["authorizations"][0].get(…)`). A signed body
that is not valid JSON, not a JSON object, or has one of those fields of another type makes Bolt raise before any
listener runs, and the request is answered 500 with a traceback in the log (found by `bench/faults.py --scenario
fuzz`). Slack never sends such bodies; a sender holding the signing secret that does is buggy, and answering it 200
and dropping it (with one warning line) is what keeps Slack from retrying and the log free of false alarms.

This module models only what Bolt reads, with `extra="allow"`: anything Bolt never looks at stays free. It is not a
schema of Slack's payloads; what the bot itself needs from them is read by the listeners.
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from slack_bolt.request.internals import parse_body

# Where Bolt applies `in` or `[...]` to a value without checking it is a container first: an explicit null there
# is as fatal as a wrong type.
_NOT_NULLABLE: Final = ("event", "view", "actions", "container")
# Kinds whose listeners Bolt finds by dereferencing a field the kind cannot do without.
_REQUIRED_BY_TYPE: Final = {
    "event_callback": "event",
    "block_actions": "actions",
    "interactive_message": "actions",
    "view_submission": "view",
    "view_closed": "view",
}
# Slack's payloads nest about a dozen levels (a message's blocks inside an interactivity payload). Far deeper JSON is
# refused before parsing: `json.loads` recurses in C, and 100,000 levels overflowed the stack of a waitress
# thread and killed the whole process ("Fatal Python error: Cannot recover from stack overflow").
MAX_NESTING: Final = 64
_JSON_STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_A_BRACKET: Final = str.maketrans("", "", "".join(chr(c) for c in range(128) if chr(c) not in "[]{}"))
# One line in the log is enough to find the sender; the rest of a fuzzed value is noise.
_SHOWN_LENGTH: Final = 120

# Bolt reads a user, channel, team or enterprise either as an id string or as an object it asks for "id".
Reference = str | dict[str, Any] | None


class _Walked(BaseModel):
    """The fields Bolt's context builder (`build_context`) and matchers read, at every level they walk into."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: str | None = None
    user: Reference = None
    channel: Reference = None
    team: Reference = None
    enterprise: Reference = None
    # Bolt reads `authorizations[0]` and walks it like a payload.
    authorizations: list[_Walked] | None = None
    message: _Walked | None = None
    previous_message: _Walked | None = None
    item: _Walked | None = None
    assistant_thread: _Walked | None = None
    function_data: dict[str, Any] | None = None
    view: _View | None = None
    container: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_null_where_bolt_looks_inside(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in _NOT_NULLABLE:
                if name in data and data[name] is None:
                    raise ValueError(f"`{name}` is null")
        return data


class _View(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    # Bolt tells a workflow step's view from a modal by `view["type"]`.
    type: str


class _Event(_Walked):
    # `is_event` needs `type`; the matchers run regular expressions over it.
    type: str


class _Action(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    # The action matchers compare it with `re` or `==` and would raise on anything but a string.
    action_id: str


class _Request(_Walked):
    """A whole request body: every kind has a string `type`, except slash commands and Slack's ssl_check."""

    event: _Event | None = None
    # `body["actions"][0]` for every interactive payload that has the key.
    actions: list[_Action] | None = Field(default=None, min_length=1)
    command: str | None = None

    @model_validator(mode="after")
    def _says_what_it_is(self) -> _Request:
        extra = self.model_extra or {}
        if self.type is None and self.command is None and "ssl_check" not in extra:
            raise ValueError("no `type`, `command` or `ssl_check`: not a Slack request")
        required = _REQUIRED_BY_TYPE.get(self.type or "")
        if required is not None and getattr(self, required, None) is None:
            raise ValueError(f"a `{self.type}` without `{required}`")
        return self


def malformed_reason(body: str, content_type: str | None) -> str | None:
    """None when Bolt can route `body` safely; otherwise one line saying what is wrong with it.

    `content_type` is the header's media type as Bolt extracts it (before any `;`): Bolt decides between JSON and a
    form on exactly that, so this check does too, by calling Bolt's own parser.
    """
    if not body:
        return "empty body"
    if _nesting_depth(_json_text(body, content_type)) > MAX_NESTING:
        return f"JSON nested deeper than {MAX_NESTING} levels"
    try:
        parsed = parse_body(body, content_type)
    except (ValueError, RecursionError) as error:  # JSONDecodeError is a ValueError
        return f"not JSON where Bolt expects JSON: {type(error).__name__}"
    if not isinstance(parsed, dict):
        return f"a JSON {type(parsed).__name__}, not an object"
    try:
        _Request.model_validate(parsed)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        return f"{where}: {first['msg']}"[:_SHOWN_LENGTH]
    except RecursionError:
        return "nested too deeply"
    return None


def _json_text(body: str, content_type: str | None) -> str:
    """The part of `body` Bolt will hand to `json.loads`, chosen exactly as Bolt's `parse_body` chooses."""
    if content_type == "application/json" or body.startswith("{"):
        return body
    if "payload" in body:
        return dict(parse_qsl(body, keep_blank_values=True)).get("payload") or ""
    return ""


def _nesting_depth(text: str) -> int:
    """How deep brackets nest outside JSON strings; linear, and without recursing itself."""
    if text.count("[") + text.count("{") <= MAX_NESTING:
        return 0
    brackets = _JSON_STRING.sub("", text).translate(_NOT_A_BRACKET)
    depth = deepest = 0
    for bracket in brackets:
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif bracket in "]}":
            depth -= 1
    return deepest
