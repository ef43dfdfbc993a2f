"""`Sighting`: what a watcher saw of one object, the unit that flows from the watchers to the incident flow.

A watcher lists a scope, then watches it; after every (re)list it reports each object it holds once, then every
change. A sighting carries exactly one snapshot (workload, Helm release or ECS service), the pods of the
workload's update revision when `needs_pods` asked for them, and where it was seen (kube context or AWS region).
`deleted` says the object is gone. Pure data; the watcher decides nothing.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, model_validator

from bot.core.detection.snapshots import EcsServiceSnapshot, HelmReleaseSnapshot, PodSnapshot, WorkloadSnapshot


class Sighting(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    location: str  # the kube context, or the AWS region
    seen_at: datetime
    workload: WorkloadSnapshot | None = None
    pods: tuple[PodSnapshot, ...] = ()
    release: HelmReleaseSnapshot | None = None
    service: EcsServiceSnapshot | None = None
    deleted: bool = False
    # True for sightings of a (re)list: the watcher reports the whole scope again; the flow decides nothing
    # about objects it has not heard of until the resync is complete.
    resync: bool = False

    @model_validator(mode="after")
    def _one_object(self) -> Sighting:
        if sum(snapshot is not None for snapshot in (self.workload, self.release, self.service)) != 1:
            raise ValueError("a sighting carries exactly one of workload, release, service")
        return self
