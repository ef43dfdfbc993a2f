"""Ready-made incidents for the pure-core tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.core.catalog import BackendKind, ChannelId, TargetName
from bot.core.detection import ReasonCount, Signal
from bot.core.incidents import Incident, IncidentId, LastGood, WorkloadRef, open_incident
from bot.core.rollouts import ContainerImage, RevisionNumber
from tests.core.factories import T0

WEB = WorkloadRef(backend=BackendKind.KUBERNETES, location="sandbox", kind="Deployment", namespace="shop", name="web")
CARD_CHANNEL = ChannelId("C0WEB")
LAST_GOOD = LastGood(
    revision=RevisionNumber(2), images=(ContainerImage(container="web", image="registry.example/web:1.9"),)
)


def signal(reason: str = "ImagePullBackOff", revision: str = "3", since: datetime = T0, **fields: Any) -> Signal:
    base: dict[str, Any] = {
        "reason": reason,
        "since": since,
        "revision": revision,
        "revision_number": int(revision) if revision.isdigit() else None,
        "images": (ContainerImage(container="web", image="registry.example/web:2.0-typo"),),
        "counts": (ReasonCount(reason=reason, count=3),),
        "messages": ('Back-off pulling image "registry.example/web:2.0-typo"',),
    }
    return Signal(**{**base, **fields})


def incident(
    *, target: str | None = "web", workload: WorkloadRef = WEB, sig: Signal | None = None, **fields: Any
) -> Incident:
    opened = open_incident(
        IncidentId("inc-1"),
        workload,
        sig or signal(),
        CARD_CHANNEL,
        T0,
        target=TargetName(target) if target else None,
        last_good=fields.pop("last_good", LAST_GOOD),
        no_button_reason=fields.pop("no_button_reason", None),
    ).incident
    return opened.model_copy(update=fields)
