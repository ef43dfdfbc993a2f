"""Which container images the simulated nodes can pull, and which ones crash after starting.

The fake kubelet asks this object instead of a real registry. Configuration is a YAML or JSON file
(`--registry FILE`)::

    missing: ["*:v10", "*non-existing*"]   # globs of references that cannot be pulled
    exists: []                             # if non-empty, only matching references can be pulled
    crashloop: ["*/crasher:*"]             # pulled fine, but the container exits 1 right after starting
    unready: ["*:broken-health"]           # runs, but its readiness probe keeps failing (Running, 0/1 READY)

Globs use fnmatch syntax and are matched against the reference as written in the pod spec and against
its normalised form (`docker.io/library/nginx:latest`), so `nginx:*` and `docker.io/library/nginx:*` both work.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_MISSING: tuple[str, ...] = ("*non-existing*",)


def normalize_image(image: str) -> str:
    """The fully qualified reference a container runtime reports (`nginx` -> `docker.io/library/nginx:latest`)."""
    name, _, digest = image.partition("@")
    first, _, rest = name.partition("/")
    has_domain = bool(rest) and ("." in first or ":" in first or first == "localhost")
    if not has_domain:
        name = f"docker.io/{name}" if rest else f"docker.io/library/{name}"
    last = name.rsplit("/", 1)[-1]
    if digest:
        return f"{name}@{digest}"
    if ":" not in last:
        name += ":latest"
    return name


def image_id(image: str) -> str:
    """A stable fake digest reference, shaped like containerd's `imageID`."""
    normalized = normalize_image(image)
    repo = normalized.split("@", 1)[0]
    last = repo.rsplit("/", 1)[-1]
    if ":" in last:
        repo = repo[: len(repo) - len(last)] + last.split(":", 1)[0]
    digest = hashlib.sha256(normalized.encode()).hexdigest()
    return f"{repo}@sha256:{digest}"


def _matches(globs: list[str], image: str) -> bool:
    candidates = (image, normalize_image(image))
    return any(fnmatch.fnmatchcase(c, g) for g in globs for c in candidates)


@dataclass
class RegistryConfig:
    missing: list[str] = field(default_factory=lambda: list(DEFAULT_MISSING))
    exists: list[str] = field(default_factory=list)
    crashloop: list[str] = field(default_factory=list)
    unready: list[str] = field(default_factory=list)

    def image_exists(self, image: str) -> bool:
        if _matches(self.missing, image):
            return False
        return not self.exists or _matches(self.exists, image)

    def crashes(self, image: str) -> bool:
        return _matches(self.crashloop, image)

    def never_ready(self, image: str) -> bool:
        return _matches(self.unready, image)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RegistryConfig:
        def globs(key: str, default: list[str]) -> list[str]:
            value = data.get(key, default)
            if isinstance(value, str):
                return [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"registry config: {key!r} must be a list of glob strings")
            return list(value)

        unknown = set(data) - {"missing", "exists", "crashloop", "unready"}
        if unknown:
            raise ValueError(f"registry config: unknown keys {sorted(unknown)}")
        return cls(
            missing=globs("missing", list(DEFAULT_MISSING)),
            exists=globs("exists", []),
            crashloop=globs("crashloop", []),
            unready=globs("unready", []),
        )

    @classmethod
    def load(cls, path: str | Path) -> RegistryConfig:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        return cls.from_dict(data or {})
