"""Job controller (pkg/controller/job/job_controller.go, much simplified): runs pods to completion so helm
hooks and `kubectl wait --for=condition=complete` finish. Honours parallelism, completions and
backoffLimit; reports active/ready/succeeded/failed, startTime/completionTime and the Complete/Failed
conditions with their 1.31+ companions SuccessCriteriaMet/FailureTarget."""

from __future__ import annotations

from typing import Any

from sandbox.kubesim.controllers.events import EventRecorder
from sandbox.kubesim.controllers.replicaset import pod_from_template
from sandbox.kubesim.controllers.runtime import Runtime
from sandbox.kubesim.controllers.util import JOBS, PODS, get_condition, now, parse_time, pod_is_ready, rfc3339
from sandbox.kubesim.store import ApiError, clone

Obj = dict[str, Any]


def _condition(ctype: str, reason: str, message: str) -> Obj:
    stamp = rfc3339()
    return {
        "type": ctype,
        "status": "True",
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


class JobController:
    def __init__(self, rt: Runtime, events: EventRecorder) -> None:
        self.rt = rt
        self.store = rt.store
        self.events = events
        rt.register("Job", self.sync)

    def sync(self, namespace: str, name: str) -> None:
        ref = self.rt.get_ref(JOBS, namespace, name)
        if ref is None or ref["metadata"].get("deletionTimestamp"):
            return
        job = clone(ref)
        spec = job.get("spec") or {}
        status: Obj = dict(job.get("status") or {})
        finished = any((get_condition(status, t) or {}).get("status") == "True" for t in ("Complete", "Failed"))
        if finished and self._expire(job, status):
            return
        pods = self.rt.owned(job["metadata"]["uid"], PODS)
        phase = [(p.get("status") or {}).get("phase") for p in pods]
        succeeded = phase.count("Succeeded")
        failed = phase.count("Failed")
        active = [p for p, ph in zip(pods, phase, strict=True) if ph not in ("Succeeded", "Failed")]
        completions = spec.get("completions")
        parallelism = int(spec.get("parallelism", 1) if spec.get("parallelism") is not None else 1)
        backoff_limit = int(spec.get("backoffLimit", 6) if spec.get("backoffLimit") is not None else 6)
        if not finished and not spec.get("suspend"):
            status.setdefault("startTime", rfc3339())
            if failed > backoff_limit:
                for pod in active:
                    self._delete(pod)
                active = []
                status["conditions"] = [
                    *status.get("conditions", []),
                    _condition("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
                    _condition("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
                ]
                self.events.record(
                    job,
                    "Warning",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit",
                    component="job-controller",
                )
            elif completions is not None and succeeded >= int(completions):
                status["completionTime"] = rfc3339()
                status["conditions"] = [
                    *status.get("conditions", []),
                    _condition("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
                    _condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods"),
                ]
                self.events.record(job, "Normal", "Completed", "Job completed", component="job-controller")
            else:
                want = parallelism
                if completions is not None:
                    want = min(parallelism, int(completions) - succeeded)
                elif succeeded > 0:
                    want = 0  # a work queue Job is done once any pod succeeded and none are active
                for _ in range(max(0, want - len(active))):
                    pod = pod_from_template(spec.get("template") or {}, job)
                    pod["metadata"].setdefault("annotations", {})["batch.kubernetes.io/job-tracking"] = ""
                    created = self.store.create(PODS, pod)
                    active.append(created)
                    self.events.record(
                        job,
                        "Normal",
                        "SuccessfulCreate",
                        f"Created pod: {created['metadata']['name']}",
                        component="job-controller",
                    )
        status["active"] = len(active)
        status["ready"] = sum(1 for p in active if pod_is_ready(p))
        status["succeeded"] = succeeded
        status["failed"] = failed
        status["terminating"] = 0
        status["uncountedTerminatedPods"] = {}
        for key in ("active", "succeeded", "failed"):
            if not status[key]:
                del status[key]
        if status != job.get("status"):
            job["status"] = status
            self.store.update(JOBS, job, subresource="status")

    def _expire(self, job: Obj, status: Obj) -> bool:
        """The TTL-after-finished controller: delete a finished Job (and, through the GC, its pods) once
        spec.ttlSecondsAfterFinished has passed since it finished. Returns True when the Job was deleted."""
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return False
        finished_at = parse_time(status.get("completionTime")) or max(
            (
                t
                for t in (parse_time(c.get("lastTransitionTime")) for c in status.get("conditions") or [])
                if t is not None
            ),
            default=now(),
        )
        remaining = (finished_at - now()).total_seconds() + int(ttl)
        if remaining > 0:
            self.rt.queue.add_after(("Job", job["metadata"]["namespace"], job["metadata"]["name"]), remaining)
            return False
        try:
            self.store.delete(JOBS, job["metadata"]["namespace"], job["metadata"]["name"])
        except ApiError as exc:
            if exc.code != 404:
                raise
        return True

    def _delete(self, pod: Obj) -> None:
        try:
            self.store.delete(PODS, pod["metadata"]["namespace"], pod["metadata"]["name"])
        except ApiError as exc:
            if exc.code != 404:
                raise
