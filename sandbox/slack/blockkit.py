"""Block Kit validation for messages the fake Slack receives (slack.md §6).

Real Slack rejects malformed blocks with ``invalid_blocks`` plus an ``errors`` list whose entries end in a
``[json-pointer:/blocks/…]`` suffix; we produce the same shape so a failing bot test points at the offending
field. This is a pragmatic subset: the limits a rollback bot can plausibly hit (counts, lengths, ids, button
styles), not a full schema. Unknown element types inside known blocks are accepted, unknown block types are not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# Message surfaces allow 50 blocks; modals and the Home tab allow 100.
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
# Observed ceiling on the aggregate JSON size of a message's blocks (bolt-js#2509, ≈13.2 k characters);
# above it Slack answers msg_blocks_too_long instead of invalid_blocks.
MAX_BLOCKS_JSON_CHARS = 13_200
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_SECTION_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_ID_LENGTH = 255
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_BUTTON_URL = 3000
MAX_ACCESSIBILITY_LABEL = 75
MAX_MARKDOWN_BLOCK_TEXT = 12_000
MAX_IMAGE_ALT_TEXT = 2000
MAX_CONFIRM_TITLE = 100
MAX_CONFIRM_TEXT = 300
MAX_CONFIRM_BUTTON = 30

BUTTON_STYLES = frozenset({"primary", "danger"})
TEXT_OBJECT_TYPES = frozenset({"plain_text", "mrkdwn"})
# Block types Slack accepts on message surfaces; anything else is "unsupported type" (a typo in the bot).
KNOWN_BLOCK_TYPES = frozenset(
    {
        "actions",
        "context",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "table",
        "video",
    }
)


@dataclass
class BlockValidation:
    """Outcome of validating one ``blocks`` array: the Slack error code (if any) and human-readable details."""

    errors: list[str] = field(default_factory=list)
    too_long: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors and not self.too_long

    @property
    def error_code(self) -> str | None:
        if self.errors:
            return "invalid_blocks"
        if self.too_long:
            return "msg_blocks_too_long"
        return None


class _Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, message: str, pointer: str) -> None:
        self.errors.append(f"{message} [json-pointer:{pointer}]")

    def text_object(
        self,
        value: Any,
        pointer: str,
        *,
        max_length: int,
        allowed_types: Iterable[str] = TEXT_OBJECT_TYPES,
    ) -> None:
        allowed = frozenset(allowed_types)
        if not isinstance(value, dict):
            self.fail("must be a text object", pointer)
            return
        text_type = value.get("type")
        if text_type not in allowed:
            self.fail(f"must be one of {sorted(allowed)}", f"{pointer}/type")
        text = value.get("text")
        if not isinstance(text, str):
            self.fail("must be a string", f"{pointer}/text")
        elif len(text) == 0:
            self.fail("must be more than 0 characters", f"{pointer}/text")
        elif len(text) > max_length:
            self.fail(f"must be less than {max_length + 1} characters", f"{pointer}/text")

    def optional_string(self, value: Any, pointer: str, *, max_length: int) -> None:
        if value is None:
            return
        if not isinstance(value, str):
            self.fail("must be a string", pointer)
        elif len(value) > max_length:
            self.fail(f"must be less than {max_length + 1} characters", pointer)

    def confirm(self, value: Any, pointer: str) -> None:
        if not isinstance(value, dict):
            self.fail("must be a confirmation dialog object", pointer)
            return
        self.text_object(
            value.get("title"), f"{pointer}/title", max_length=MAX_CONFIRM_TITLE, allowed_types={"plain_text"}
        )
        self.text_object(value.get("text"), f"{pointer}/text", max_length=MAX_CONFIRM_TEXT)
        for key in ("confirm", "deny"):
            self.text_object(
                value.get(key), f"{pointer}/{key}", max_length=MAX_CONFIRM_BUTTON, allowed_types={"plain_text"}
            )
        style = value.get("style")
        if style is not None and style not in BUTTON_STYLES:
            self.fail(f"must be one of {sorted(BUTTON_STYLES)}", f"{pointer}/style")

    def element(self, element: Any, pointer: str, seen_action_ids: set[str]) -> None:
        if not isinstance(element, dict) or not isinstance(element.get("type"), str):
            self.fail("must be an element object with a type", pointer)
            return
        action_id = element.get("action_id")
        if action_id is not None:
            if not isinstance(action_id, str) or not action_id:
                self.fail("must be a non-empty string", f"{pointer}/action_id")
            elif len(action_id) > MAX_ID_LENGTH:
                self.fail(f"must be less than {MAX_ID_LENGTH + 1} characters", f"{pointer}/action_id")
            elif action_id in seen_action_ids:
                self.fail(f"action_id '{action_id}' already exists", f"{pointer}/action_id")
            else:
                seen_action_ids.add(action_id)
        if "confirm" in element:
            self.confirm(element["confirm"], f"{pointer}/confirm")
        if element["type"] == "button":
            self.button(element, pointer)

    def button(self, button: dict[str, Any], pointer: str) -> None:
        self.text_object(
            button.get("text"), f"{pointer}/text", max_length=MAX_BUTTON_TEXT, allowed_types={"plain_text"}
        )
        self.optional_string(button.get("value"), f"{pointer}/value", max_length=MAX_BUTTON_VALUE)
        self.optional_string(button.get("url"), f"{pointer}/url", max_length=MAX_BUTTON_URL)
        self.optional_string(
            button.get("accessibility_label"), f"{pointer}/accessibility_label", max_length=MAX_ACCESSIBILITY_LABEL
        )
        style = button.get("style")
        if style is not None and style not in BUTTON_STYLES:
            self.fail(f"must be one of {sorted(BUTTON_STYLES)}", f"{pointer}/style")

    def block(self, block: Any, pointer: str, seen_block_ids: set[str]) -> None:
        if not isinstance(block, dict):
            self.fail("must be an object", pointer)
            return
        block_type = block.get("type")
        if block_type not in KNOWN_BLOCK_TYPES:
            self.fail(f"unsupported type: {block_type!r}", f"{pointer}/type")
            return
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or not block_id:
                self.fail("must be a non-empty string", f"{pointer}/block_id")
            elif len(block_id) > MAX_ID_LENGTH:
                self.fail(f"must be less than {MAX_ID_LENGTH + 1} characters", f"{pointer}/block_id")
            elif block_id in seen_block_ids:
                self.fail(f"block_id '{block_id}' already exists", f"{pointer}/block_id")
            else:
                seen_block_ids.add(block_id)
        validate = getattr(self, f"_{block_type}", None)
        if validate is not None:
            validate(block, pointer)

    def _section(self, block: dict[str, Any], pointer: str) -> None:
        has_text = "text" in block
        fields = block.get("fields")
        if not has_text and fields is None:
            self.fail("must provide either text or fields", pointer)
        if has_text:
            self.text_object(block["text"], f"{pointer}/text", max_length=MAX_SECTION_TEXT)
        if fields is not None:
            if not isinstance(fields, list) or not fields:
                self.fail("must be a non-empty array", f"{pointer}/fields")
            else:
                if len(fields) > MAX_SECTION_FIELDS:
                    self.fail(f"must contain at most {MAX_SECTION_FIELDS} items", f"{pointer}/fields")
                for index, item in enumerate(fields):
                    self.text_object(item, f"{pointer}/fields/{index}", max_length=MAX_SECTION_FIELD_TEXT)
        if "accessory" in block:
            self.element(block["accessory"], f"{pointer}/accessory", set())

    def _header(self, block: dict[str, Any], pointer: str) -> None:
        self.text_object(block.get("text"), f"{pointer}/text", max_length=MAX_HEADER_TEXT, allowed_types={"plain_text"})

    def _context(self, block: dict[str, Any], pointer: str) -> None:
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements:
            self.fail("must be a non-empty array", f"{pointer}/elements")
            return
        if len(elements) > MAX_CONTEXT_ELEMENTS:
            self.fail(f"must contain at most {MAX_CONTEXT_ELEMENTS} items", f"{pointer}/elements")
        for index, element in enumerate(elements):
            element_pointer = f"{pointer}/elements/{index}"
            if isinstance(element, dict) and element.get("type") == "image":
                self.optional_string(
                    element.get("alt_text"), f"{element_pointer}/alt_text", max_length=MAX_IMAGE_ALT_TEXT
                )
            else:
                self.text_object(element, element_pointer, max_length=MAX_SECTION_TEXT)

    def _actions(self, block: dict[str, Any], pointer: str) -> None:
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements:
            self.fail("must be a non-empty array", f"{pointer}/elements")
            return
        if len(elements) > MAX_ACTIONS_ELEMENTS:
            self.fail(f"must contain at most {MAX_ACTIONS_ELEMENTS} items", f"{pointer}/elements")
        # action_id uniqueness is scoped to the block: two blocks may reuse an action_id.
        seen_action_ids: set[str] = set()
        for index, element in enumerate(elements):
            self.element(element, f"{pointer}/elements/{index}", seen_action_ids)

    def _markdown(self, block: dict[str, Any], pointer: str) -> None:
        self.optional_string(block.get("text"), f"{pointer}/text", max_length=MAX_MARKDOWN_BLOCK_TEXT)
        if not block.get("text"):
            self.fail("must be more than 0 characters", f"{pointer}/text")

    def _image(self, block: dict[str, Any], pointer: str) -> None:
        if not block.get("image_url") and not block.get("slack_file"):
            self.fail("must provide image_url or slack_file", pointer)
        alt_text = block.get("alt_text")
        if not isinstance(alt_text, str) or not alt_text:
            self.fail("must be a non-empty string", f"{pointer}/alt_text")
        else:
            self.optional_string(alt_text, f"{pointer}/alt_text", max_length=MAX_IMAGE_ALT_TEXT)


def validate_blocks(
    blocks: Any,
    *,
    max_blocks: int = MAX_MESSAGE_BLOCKS,
    max_json_chars: int | None = MAX_BLOCKS_JSON_CHARS,
) -> BlockValidation:
    """Check a decoded ``blocks`` value against the §6 limits.

    Schema errors win over the aggregate size check, mirroring that Slack reports the first problem it meets.
    """
    checker = _Checker()
    if not isinstance(blocks, list):
        checker.fail("must be an array", "/blocks")
        return BlockValidation(errors=checker.errors)
    if len(blocks) > max_blocks:
        checker.fail(f"must contain at most {max_blocks} items", "/blocks")
    seen_block_ids: set[str] = set()
    for index, block in enumerate(blocks):
        checker.block(block, f"/blocks/{index}", seen_block_ids)
    too_long = max_json_chars is not None and len(json.dumps(blocks, ensure_ascii=False)) > max_json_chars
    return BlockValidation(errors=checker.errors, too_long=too_long)


def blocks_plain_text(blocks: Any) -> str:
    """Flatten the human-visible text of blocks (for assertions and the transcript), one line per block."""
    if not isinstance(blocks, list):
        return ""
    lines: list[str] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        parts: list[str] = []
        text = block.get("text")
        if isinstance(text, dict) and isinstance(text.get("text"), str):
            parts.append(text["text"])
        elif isinstance(text, str):
            parts.append(text)
        for item in block.get("fields") or []:
            if isinstance(item, dict) and isinstance(item.get("text"), str):
                parts.append(item["text"])
        for element in block.get("elements") or []:
            if not isinstance(element, dict):
                continue
            label = element.get("text")
            if element.get("type") == "button" and isinstance(label, dict):
                parts.append(f"[{label.get('text', '')}]")
            elif isinstance(label, str):
                parts.append(label)
        if parts:
            lines.append(" ".join(parts))
    return "\n".join(lines)
