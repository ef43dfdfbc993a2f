"""The JSONPath subset CRD `additionalPrinterColumns` use: `.a.b`, `.a[0]`, `.a[*].b`, `.a[?(@.k=="v")].b`.

The API server evaluates a column's path against each object and prints the first result; a path that
finds nothing gives an empty (nil) cell, which kubectl shows as `<none>`.
"""

from __future__ import annotations

import re
from typing import Any

# One step: a field name, an index/wildcard, or an equality filter on a child field.
_STEP = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_\-$]+)
      | \[(?P<index>-?\d+|\*)\]
      | \[\?\(@\.(?P<key>[A-Za-z0-9_.\-]+)\s*==\s*(?P<quote>["'])(?P<value>[^"']*)(?P=quote)\)\]
      | \['(?P<quoted>[^']+)'\]""",
    re.VERBOSE,
)


class JsonPathError(ValueError):
    """The path uses syntax this subset does not know."""


def parse(path: str) -> list[tuple[str, str]]:
    """Steps of a path (`{...}` braces optional); raises JsonPathError on anything unparsable."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    steps: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        match = _STEP.match(text, position)
        if match is None:
            raise JsonPathError(f"unsupported JSONPath {path!r} at {text[position:]!r}")
        if match["field"] is not None:
            steps.append(("field", match["field"]))
        elif match["quoted"] is not None:
            steps.append(("field", match["quoted"]))
        elif match["index"] is not None:
            steps.append(("index", match["index"]))
        else:
            steps.append(("filter", f"{match['key']}={match['value']}"))
        position = match.end()
    return steps


def _child(value: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def find(obj: Any, path: str) -> list[Any]:
    """Every value the path selects in obj, in document order."""
    current = [obj]
    for kind, arg in parse(path):
        selected: list[Any] = []
        for value in current:
            if kind == "field" and isinstance(value, dict) and arg in value:
                selected.append(value[arg])
            elif kind == "index" and isinstance(value, list):
                if arg == "*":
                    selected.extend(value)
                elif -len(value) <= int(arg) < len(value):
                    selected.append(value[int(arg)])
            elif kind == "filter" and isinstance(value, list):
                key, _, wanted = arg.partition("=")
                selected.extend(item for item in value if str(_child(item, key)) == wanted)
        current = selected
    return current
