"""The pure half of the Helm backend: reading helm's JSON and manifests, and its error texts.

helm itself does the rollback (three-way merge in v3, server-side apply in v4, hooks); this module only
understands what helm prints, so that the bot can explain it. See shared docs, kubernetes-and-helm.md §5.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml

from bot.core.catalog import WorkloadKind
from bot.core.errors import BotError, RevisionNotFound, RollbackFailed, RollbackRefused, UnknownTarget
from bot.core.rollouts import Change, ContainerImage, Revision, RevisionNumber

PENDING_STATUSES = frozenset({"pending-install", "pending-upgrade", "pending-rollback"})
_WORKLOAD_KINDS = {kind.value: kind for kind in WorkloadKind}
# Kinds whose pod template we read images from, even when we do not watch them (Jobs, CronJobs).
_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "Pod": (),
}


@dataclass(frozen=True)
class HistoryRow:
    revision: int
    status: str
    chart: str
    app_version: str
    description: str
    updated: datetime | None


@dataclass(frozen=True)
class ManifestObject:
    kind: str
    name: str
    namespace: str | None
    body: Mapping[str, Any]

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"


def parse_history(text: str) -> list[HistoryRow]:
    """`helm history -o json`, ascending by revision."""
    rows = json.loads(text or "[]") or []
    parsed = [
        HistoryRow(
            revision=int(row["revision"]),
            status=str(row.get("status", "unknown")),
            chart=str(row.get("chart", "")),
            app_version=str(row.get("app_version", "")),
            description=str(row.get("description", "")),
            updated=_timestamp(row.get("updated")),
        )
        for row in rows
    ]
    return sorted(parsed, key=lambda row: row.revision)


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    # helm prints RFC 3339 with nanoseconds; Python keeps microseconds.
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(trimmed)
    except ValueError:
        return None


def last_deployed(rows: Sequence[HistoryRow]) -> HistoryRow | None:
    deployed = [row for row in rows if row.status == "deployed"]
    return deployed[-1] if deployed else None


def current_row(rows: Sequence[HistoryRow]) -> HistoryRow | None:
    """The revision the release runs or is moving to: a rollback in progress counts (its template is applied)."""
    if rows and rows[-1].status == "pending-rollback":
        return rows[-1]
    return last_deployed(rows)


def applied_row(rows: Sequence[HistoryRow]) -> HistoryRow:
    """The revision whose manifest the cluster runs: the latest one when helm applied it but never marked it
    deployed (an upgrade or rollback that failed its wait, or was interrupted), else the last deployed one."""
    latest = rows[-1]
    if latest.status in PENDING_STATUSES or latest.status == "failed":
        return latest
    return last_deployed(rows) or latest


def revisions(rows: Sequence[HistoryRow], images: Mapping[int, Sequence[ContainerImage]]) -> list[Revision]:
    current = current_row(rows)
    return [
        Revision(
            number=RevisionNumber(row.revision),
            change_cause=row.description or None,
            images=tuple(images.get(row.revision, ())),
            deployed_at=row.updated,
            status=row.status,
            is_current=current is not None and row.revision == current.revision,
            description=row.description or None,
            chart=row.chart or None,
            app_version=row.app_version or None,
        )
        for row in rows
    ]


def choose_target(release: str, rows: Sequence[HistoryRow], to_revision: int | None, *, target_name: str) -> HistoryRow:
    """helm's rule: the given revision, or (None/0) the one before the latest, whatever the latest's status.

    A latest revision stuck in pending-* is refused here, before anything runs, with the last deployed one offered.
    """
    if not rows:
        raise UnknownTarget(f"helm release `{release}` not found")
    latest = rows[-1]
    if latest.status in PENDING_STATUSES:
        good = last_deployed(rows)
        resumed = interrupted_rollback_target(latest)
        accepted = {revision for revision in (resumed, good.revision if good else None) if revision is not None}
        if resumed is not None:
            # The last deployed revision is the one that rollback left: offering it would put it back.
            offer = (
                f" Its rollback to revision {resumed} was interrupted; finish it with "
                f"`/rollback {target_name} {resumed}`."
            )
        elif good is not None:
            offer = f" Roll back to the last deployed revision with `/rollback {target_name} {good.revision}`."
        else:
            offer = " No revision of it was ever deployed."
        if to_revision not in accepted:
            raise RollbackRefused(
                f"helm release `{release}` is stuck in {latest.status} at revision {latest.revision} "
                f'("{latest.description}").{offer}'
            )
    wanted = to_revision or latest.revision - 1
    for row in rows:
        if row.revision == wanted:
            return row
    available = [row.revision for row in rows]
    listing = ", ".join(str(number) for number in available)
    if not to_revision:
        raise RevisionNotFound(f"helm release `{release}` has no revision before {latest.revision}", available)
    raise RevisionNotFound(f"helm release `{release}` has no revision {wanted}; available: {listing}", available)


def interrupted_rollback_target(row: HistoryRow) -> int | None:
    """The revision a rollback left in pending-rollback was going to ("Rollback to N"), else None."""
    match = re.fullmatch(r"Rollback to (\d+)", row.description)
    return int(match.group(1)) if row.status == "pending-rollback" and match else None


def rollback_row(rows: Sequence[HistoryRow], latest_before: int, to_revision: int) -> HistoryRow | None:
    """helm's record of a plan's rollback: the first revision after the plan's latest, if it rolls back to
    `to_revision` (helm writes "Rollback to N", or "Rollback "release" failed: …" when it failed).

    helm cannot carry the operation id (`helm rollback` has no --description or --labels in v3 or v4), so the
    revision's position is the mark: the plan pins the latest revision, and a first `roll_back` refuses to run
    once anything was recorded after it, so the next revision is the one this operation's helm wrote.
    """
    after = [row for row in rows if row.revision > latest_before]
    if not after:
        return None
    first = after[0]
    if first.description == f"Rollback to {to_revision}" or first.description.startswith('Rollback "'):
        return first
    return None


def decide_rollback(
    release: str, rows: Sequence[HistoryRow], latest_before: int, to_revision: int
) -> HistoryRow | None:
    """None: run `helm rollback` now. A row: helm already recorded this plan's rollback; run nothing.

    Raises RollbackRefused when the release moved under the approved plan: someone upgraded (or rolled back)
    after the plan was made, or after this operation's rollback. Never roll back over a deploy nobody approved.
    """
    if not rows:
        raise UnknownTarget(f"helm release `{release}` not found")
    ours = rollback_row(rows, latest_before, to_revision)
    latest = rows[-1]
    if ours is not None:
        if latest.revision == ours.revision:
            return ours
        raise RollbackRefused(
            f"this operation already rolled helm release `{release}` back to revision {to_revision} (recorded as "
            f"revision {ours.revision}), but it has changed since: now at {_row_summary(latest)}. Not rolling back "
            "over it; request the rollback again if it is still needed"
        )
    if latest.revision != latest_before:
        raise RollbackRefused(
            f"helm release `{release}` changed since this rollback was approved: now at {_row_summary(latest)}, "
            f"not revision {latest_before}. Not rolling back over it; request the rollback again if it is still "
            "needed"
        )
    return None


def rollback_command(release: str, revision: int, namespace: str, kube_context: str | None) -> str:
    """The `helm rollback` an operator runs by hand to roll `release` back to `revision`."""
    context = f" --kube-context {kube_context}" if kube_context else ""
    return f"helm rollback {release} {revision} --namespace {namespace}{context}"


def interrupted_rollback_note(row: HistoryRow, to_revision: int, command: str, target_name: str) -> str:
    """What to say about a rollback whose workloads rolled out while helm's record of it stayed pending-rollback:
    the helm that wrote it was killed (with its replica) before recording its verdict.

    helm refuses `upgrade` while the latest revision is pending (`another operation (install/upgrade/rollback) is
    in progress`), but `helm rollback` has no such check: rolling back to the same revision again re-applies what
    already runs and records a deployed revision after the pending one.
    """
    return (
        f"helm's record of it, revision {row.revision}, still reads {row.status}: the helm that ran it stopped "
        "with its replica before recording the outcome, and helm refuses upgrades while the latest revision is "
        f"pending. `/rollback {target_name} {to_revision}` or `{command}` records it as deployed (it re-applies "
        f"revision {to_revision}, which already runs)"
    )


def unapplied_rollback_note(
    row: HistoryRow, to_revision: int, container: str, running: str, wanted: str, target_name: str
) -> str:
    """What to say when helm's record of a rollback reads pending-rollback but the workloads never received its
    manifest: helm stores the revision first and was stopped before it applied anything."""
    return (
        f"helm's record of it, revision {row.revision}, reads {row.status}, but {container} still runs {running}, "
        f"not revision {to_revision}'s {wanted}: the helm that ran it stopped with its replica before applying "
        f"it. Nothing was rolled back; `/rollback {target_name} {to_revision}` runs it again"
    )


def _row_summary(row: HistoryRow) -> str:
    description = f', "{row.description}"' if row.description else ""
    return f"revision {row.revision} ({row.status}{description}, chart {chart_and_app(row)})"


def parse_manifest(text: str) -> list[ManifestObject]:
    objects = []
    for document in yaml.safe_load_all(text or ""):
        if not isinstance(document, Mapping) or "kind" not in document:
            continue
        meta = document.get("metadata") or {}
        objects.append(
            ManifestObject(
                kind=str(document["kind"]),
                name=str(meta.get("name", "")),
                namespace=meta.get("namespace"),
                body=document,
            )
        )
    return objects


def workloads(objects: Iterable[ManifestObject]) -> list[tuple[WorkloadKind, str, str | None]]:
    return [(_WORKLOAD_KINDS[obj.kind], obj.name, obj.namespace) for obj in objects if obj.kind in _WORKLOAD_KINDS]


def pod_template(obj: ManifestObject) -> Mapping[str, Any] | None:
    path = _TEMPLATE_PATHS.get(obj.kind)
    if path is None:
        return None
    node: Any = obj.body
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else None


def images_in(objects: Iterable[ManifestObject]) -> list[ContainerImage]:
    found: list[ContainerImage] = []
    for obj in objects:
        template = pod_template(obj)
        if template is None:
            continue
        spec = template.get("spec") or {}
        for container in list(spec.get("initContainers") or ()) + list(spec.get("containers") or ()):
            found.append(
                ContainerImage(container=f"{obj.name}/{container.get('name', '?')}", image=str(container.get("image")))
            )
    return found


def manifest_changes(current: Sequence[ManifestObject], target: Sequence[ManifestObject]) -> list[Change]:
    """What rolling back changes, per resource: images, replicas, config data, added/removed objects."""
    current_by_key = {obj.key: obj for obj in current}
    target_by_key = {obj.key: obj for obj in target}
    changes: list[Change] = []
    for key in sorted(set(current_by_key) | set(target_by_key)):
        before, after = current_by_key.get(key), target_by_key.get(key)
        if before is None:
            changes.append(Change(scope=key, field="resource", before=None, after="created"))
            continue
        if after is None:
            changes.append(Change(scope=key, field="resource", before="present", after="deleted"))
            continue
        changes.extend(_object_changes(key, before, after))
    return changes


def _object_changes(key: str, before: ManifestObject, after: ManifestObject) -> list[Change]:
    changes: list[Change] = []
    before_images = {image.container: image.image for image in images_in([before])}
    after_images = {image.container: image.image for image in images_in([after])}
    for container in sorted(set(before_images) | set(after_images)):
        if before_images.get(container) != after_images.get(container):
            changes.append(
                Change(
                    scope=f"{key} {container.split('/', 1)[-1]}",
                    field="image",
                    before=before_images.get(container),
                    after=after_images.get(container),
                )
            )
    before_replicas = (before.body.get("spec") or {}).get("replicas")
    after_replicas = (after.body.get("spec") or {}).get("replicas")
    if before_replicas != after_replicas:
        changes.append(Change(scope=key, field="replicas", before=_text(before_replicas), after=_text(after_replicas)))
    if before.kind in ("ConfigMap", "Secret"):
        for section in ("data", "stringData", "binaryData"):
            before_data = before.body.get(section) or {}
            after_data = after.body.get(section) or {}
            changed = sorted(k for k in set(before_data) | set(after_data) if before_data.get(k) != after_data.get(k))
            if changed:
                changes.append(Change(scope=key, field=f"{section} keys", before=None, after=", ".join(changed)))
        return changes
    if not changes and _comparable(before.body) != _comparable(after.body):
        changes.append(Change(scope=key, field="spec", before=None, after="other fields differ"))
    return changes


def _comparable(body: Mapping[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, default=str)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def chart_and_app(row: HistoryRow) -> str:
    app = f" (app {row.app_version})" if row.app_version else ""
    return f"{row.chart}{app}"


def translate_helm_error(stderr: str, *, release: str, revision: int | None = None) -> BotError:
    """helm exits 1 on every error and prints `Error: <msg>`; turn the ones people hit into clear messages."""
    message = _error_text(stderr)
    if "release: not found" in message:
        return UnknownTarget(f"helm release `{release}` not found")
    match = re.search(r"release has no (\d+) version", message)
    if match:
        return RevisionNotFound(f"helm release `{release}` has no revision {match.group(1)}")
    if "another operation (install/upgrade/rollback) is in progress" in message:
        return RollbackRefused(
            f"another helm operation on `{release}` is in progress; wait for it or roll back explicitly"
        )
    if "Kubernetes cluster unreachable" in message or "kubernetes cluster unreachable" in message:
        return RollbackFailed(f"helm cannot reach the cluster: {message}")
    if "context deadline exceeded" in message:
        return RollbackFailed(f"helm gave up waiting for `{release}` (its --timeout): {message}")
    return RollbackFailed(f"helm rollback of `{release}` failed: {message}")


def _error_text(stderr: str) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    errors = [line.removeprefix("Error: ") for line in lines if line.startswith("Error: ")]
    if errors:
        tail = lines[lines.index(next(line for line in lines if line.startswith("Error: "))) + 1 :]
        return " ".join([errors[0], *[line for line in tail if not line.startswith("Error: ")]])[:600]
    return (lines[-1] if lines else "unknown error")[:600]


def helm_major_version(version_output: str) -> int:
    """`helm version --short` prints e.g. `v4.1.4+g…` or `v3.19.0+g…`."""
    match = re.search(r"v(\d+)\.", version_output)
    if not match:
        raise RollbackFailed(f"cannot tell the helm version from {version_output.strip()!r}")
    return int(match.group(1))
