"""The words of a `/rollback` command: how its text is cut into tokens (quotes as phones and keyboards type
them), how flags split into name and value, and how a word is echoed back or quoted. `bot.core.commands` builds
the grammar on these."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

from bot.core.errors import CommandSyntaxError

# Anything we echo back inside backticks is cut to this length so an error stays one line.
SHOWN_LENGTH: Final = 40
_OPTION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")

# Opening quote → the characters that may close it. Phones and macOS turn "…" into “…”, and some keyboards
# produce ”…” or „…“, so all of them work. A quote closes only when followed by whitespace or the end, which
# keeps apostrophes inside a reason ('it's broken') intact.
QUOTES: Final[Mapping[str, str]] = {
    '"': '"',
    "'": "'",
    "“": "”“",
    "‘": "’‘",
    "”": "”",
    "„": "“”",
}
# The pairs render_command may use, in order of preference.
_RENDER_QUOTES: Final = (('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"))

_T = TypeVar("_T")


@dataclass(frozen=True)
class Token:
    text: str
    # A quoted word is always a value: never a flag, a verb or a `kind/name`.
    is_quoted: bool = False

    @property
    def is_flag(self) -> bool:
        return not self.is_quoted and len(self.text) > 1 and self.text.startswith("-")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    end = len(text)
    i = 0
    while i < end:
        if text[i].isspace():
            i += 1
            continue
        if text[i] in QUOTES:
            value, i = read_quoted(text, i)
            tokens.append(Token(value, is_quoted=True))
            continue
        j = i
        while j < end and not text[j].isspace():
            j += 1
        word = text[i:j]
        equals = word.find("=")
        if word.startswith("--") and equals > 0 and i + equals + 1 < end and text[i + equals + 1] in QUOTES:
            # --reason="two words": the value is quoted, the flag is not.
            value, j = read_quoted(text, i + equals + 1)
            word = word[: equals + 1] + value
        tokens.append(Token(word))
        i = j
    return tokens


def read_quoted(text: str, start: int) -> tuple[str, int]:
    closers = QUOTES[text[start]]
    for k in range(start + 1, len(text)):
        if text[k] in closers and (k + 1 == len(text) or text[k + 1].isspace()):
            return text[start + 1 : k], k + 1
    raise CommandSyntaxError(
        f'unclosed quote `{text[start]}` — quote the whole reason, like `--reason "db migration broke"`'
    )


def split_flag(token: Token, usage: str) -> tuple[str, str | None]:
    """`--name=value` → (name, value); `--name` → (name, None); `-n` → ("n", None)."""
    text = token.text
    if not text.startswith("--"):
        if text == "-n":
            return "n", None
        raise CommandSyntaxError(f"unknown option `{shown(text)}` — usage: {usage}")
    name, equals, value = text[2:].partition("=")
    if not _OPTION_NAME.fullmatch(name):
        raise CommandSyntaxError(f"unknown option `{shown(text)}` — usage: {usage}")
    if equals and not value:
        raise CommandSyntaxError(f"`--{name}=` needs a value after the `=`")
    return name, (value if equals else None)


def take_value(tokens: list[Token], i: int, flag: str, placeholder: str) -> tuple[str, int]:
    if i >= len(tokens) or tokens[i].is_flag:
        raise CommandSyntaxError(f"`{shown(flag)}` needs a value: `{shown(flag)} {placeholder}`")
    return tokens[i].text, i + 1


def merge(current: _T | None, new: _T, what: str) -> _T:
    """Giving a flag twice is fine if both agree; otherwise nobody can tell which one was meant."""
    if current is not None and current != new:
        raise CommandSyntaxError(f"{what} given twice with different values — give it once")
    return new


def shown(word: str) -> str:
    """A user's word made safe to echo inside backticks on one line."""
    flat = " ".join(word.replace("`", "'").split())
    return flat if len(flat) <= SHOWN_LENGTH else flat[: SHOWN_LENGTH - 1] + "…"


def quote(text: str) -> str:
    """Quote `text` so the tokenizer reads it back whole. Raises ValueError if no quote pair can carry it."""
    for opening, closing in _RENDER_QUOTES:
        closers = QUOTES[opening]
        if not any(ch in closers and (k + 1 == len(text) or text[k + 1].isspace()) for k, ch in enumerate(text)):
            return f"{opening}{text}{closing}"
    raise ValueError(f"no quotes can carry {text!r}")
