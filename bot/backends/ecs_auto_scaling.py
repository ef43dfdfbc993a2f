"""Application Auto Scaling of an ECS service: read and set its suspended state, and write it down in a tag.

A rollback may suspend the service's scaling (in, out and scheduled) while it runs and put it back afterwards;
the state before is kept in a tag value (`encode_suspended`/`decode_suspended`) so that it survives a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.backends.ecs_clients import EcsClients, translating_errors
from bot.backends.ecs_service import EcsService

SUSPEND_KEYS = ("DynamicScalingInSuspended", "DynamicScalingOutSuspended", "ScheduledScalingSuspended")
_SHORT = ("in", "out", "scheduled")


def scalable_target(clients: EcsClients, service: EcsService) -> dict[str, Any] | None:
    autoscaling = clients.autoscaling(service.spec)
    with translating_errors(f"describing the scalable target {service.resource_id}"):
        answer = autoscaling.describe_scalable_targets(
            ServiceNamespace="ecs", ResourceIds=[service.resource_id], ScalableDimension="ecs:service:DesiredCount"
        )
    found = answer.get("ScalableTargets") or []
    return dict(found[0]) if found else None


def set_suspended(clients: EcsClients, service: EcsService, state: Mapping[str, bool]) -> None:
    autoscaling = clients.autoscaling(service.spec)
    with translating_errors(f"updating the scalable target {service.resource_id}"):
        autoscaling.register_scalable_target(
            ServiceNamespace="ecs",
            ResourceId=service.resource_id,
            ScalableDimension="ecs:service:DesiredCount",
            SuspendedState={  # always all three: a partial object replaces the whole state (ecs.md §3.1)
                "DynamicScalingInSuspended": bool(state.get("DynamicScalingInSuspended")),
                "DynamicScalingOutSuspended": bool(state.get("DynamicScalingOutSuspended")),
                "ScheduledScalingSuspended": bool(state.get("ScheduledScalingSuspended")),
            },
        )


def encode_suspended(state: Mapping[str, Any] | None) -> str:
    # Tag values allow letters, digits, spaces and _.:/=+-@, so "in=false out=false scheduled=false".
    state = state or {}
    return " ".join(
        f"{short}={str(bool(state.get(key))).lower()}" for short, key in zip(_SHORT, SUSPEND_KEYS, strict=True)
    )


def decode_suspended(text: str) -> dict[str, bool]:
    pairs = dict(part.split("=", 1) for part in text.split() if "=" in part)
    return {key: pairs.get(short) == "true" for short, key in zip(_SHORT, SUSPEND_KEYS, strict=True)}


def describe_suspended(state: Mapping[str, Any] | None) -> str:
    # moto omits SuspendedState when it was never set; AWS answers all-false. Both mean "nothing suspended".
    state = state or {}
    suspended = [short for short, key in zip(_SHORT, SUSPEND_KEYS, strict=True) if state.get(key)]
    return f"suspended: {', '.join(suspended)}" if suspended else "nothing suspended"
