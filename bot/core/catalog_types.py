"""The catalog's vocabulary: ids, names, durations and the validators every part of the catalog shares."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, NewType

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    TypeAdapter,
    ValidationError,
)

TargetName = NewType("TargetName", str)
SlackUserId = NewType("SlackUserId", str)
SlackGroupId = NewType("SlackGroupId", str)
ChannelId = NewType("ChannelId", str)

# A duration as operators write it in YAML: "90s", "15m", "2h", "1h30m", or a bare number of seconds.
_DURATION_PART = re.compile(r"(\d+)([smhd])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_ISO_DURATION = TypeAdapter(timedelta)


def parse_duration(value: object) -> timedelta:
    """Parse "15m"-style durations; also accepts timedelta and plain seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 15m, 90s or 1h")
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"\d+", text):
            return timedelta(seconds=int(text))
        if text and re.fullmatch(r"(?:\d+[smhd])+", text):
            seconds = sum(int(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))
            return timedelta(seconds=seconds)
        if text.startswith(("p", "-p")):
            # ISO 8601 ("PT15M") is how pydantic writes a timedelta to JSON; records must read back.
            try:
                return _ISO_DURATION.validate_python(value.strip())
            except ValidationError:
                pass
    raise ValueError("expected a duration such as 15m, 90s or 1h")


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60}m"
    return f"{seconds}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]

_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
_SLACK_GROUP = re.compile(r"^S[A-Z0-9]{2,}$")
_SLACK_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,}$")
# Kubernetes object names (RFC 1123 subdomain) and namespaces (RFC 1123 label).
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_K8S_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_TARGET_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def _kubernetes_namespace(value: str) -> str:
    if not _K8S_NAMESPACE.match(value):
        raise ValueError(f"{value!r} is not a valid Kubernetes namespace")
    return value


def _kubernetes_name(value: str) -> str:
    if not _K8S_NAME.match(value):
        raise ValueError(f"{value!r} is not a valid Kubernetes object name")
    return value


Namespace = Annotated[str, AfterValidator(_kubernetes_namespace)]
ObjectName = Annotated[str, AfterValidator(_kubernetes_name)]


class BackendKind(StrEnum):
    HELM = "helm"
    KUBERNETES = "kubernetes"
    ECS = "ecs"


class WorkloadKind(StrEnum):
    DEPLOYMENT = "Deployment"
    DAEMONSET = "DaemonSet"
    STATEFULSET = "StatefulSet"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _channel_id(value: str) -> str:
    if not _SLACK_CHANNEL.match(value):
        raise ValueError(f"{value!r} is not a Slack channel ID (like C0INCIDENT)")
    return value


def _positive_duration(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


SlackChannel = Annotated[ChannelId, AfterValidator(_channel_id)]
PositiveDuration = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive_duration)]
