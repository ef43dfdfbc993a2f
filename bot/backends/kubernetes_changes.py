"""What rolling a workload back changes in its pod template, container by container, for the preview.

Pure, like `kubernetes_interpret`, and compared the same way (`normalized`: empty and absent are alike; the
pod-template-hash label the controller adds is ignored).
"""

from __future__ import annotations

from bot.backends.kubernetes_interpret import Obj, normalized, template_without_hash
from bot.core.rollouts import Change


def template_changes(current: Obj, target: Obj) -> list[Change]:
    """What rolling back from `current` to `target` changes, container by container."""
    changes: list[Change] = []
    current_spec, target_spec = current.get("spec") or {}, target.get("spec") or {}
    current_containers = _containers_by_name(current_spec)
    target_containers = _containers_by_name(target_spec)
    for name in list(current_containers) + [n for n in target_containers if n not in current_containers]:
        before, after = current_containers.get(name), target_containers.get(name)
        scope = f"container {name}"
        if before is None:
            changes.append(Change(scope=scope, field="container", before=None, after="added"))
            continue
        if after is None:
            changes.append(Change(scope=scope, field="container", before="present", after="removed"))
            continue
        changes.extend(_container_changes(scope, before, after))
    other = _other_differences(current, target)
    if other:
        changes.append(Change(scope="pod template", field="other", before=None, after=", ".join(other)))
    return changes


def _containers_by_name(spec: Obj) -> dict[str, Obj]:
    containers = list(spec.get("initContainers") or ()) + list(spec.get("containers") or ())
    return {container.get("name", "?"): container for container in containers}


def _container_changes(scope: str, before: Obj, after: Obj) -> list[Change]:
    changes: list[Change] = []
    if before.get("image") != after.get("image"):
        changes.append(Change(scope=scope, field="image", before=before.get("image"), after=after.get("image")))
    before_env, after_env = _env(before), _env(after)
    for key in sorted(set(before_env) | set(after_env)):
        if before_env.get(key) != after_env.get(key):
            changes.append(
                Change(scope=scope, field=f"env {key}", before=before_env.get(key), after=after_env.get(key))
            )
    for field in ("command", "args"):
        if normalized(before.get(field)) != normalized(after.get(field)):
            changes.append(
                Change(scope=scope, field=field, before=_render(before.get(field)), after=_render(after.get(field)))
            )
    for section in ("requests", "limits"):
        before_res = (before.get("resources") or {}).get(section) or {}
        after_res = (after.get("resources") or {}).get(section) or {}
        for resource in sorted(set(before_res) | set(after_res)):
            if before_res.get(resource) != after_res.get(resource):
                changes.append(
                    Change(
                        scope=scope,
                        field=f"{section}.{resource}",
                        before=_render(before_res.get(resource)),
                        after=_render(after_res.get(resource)),
                    )
                )
    known = {"image", "env", "command", "args", "resources", "name"}
    other = sorted(
        key
        for key in set(before) | set(after)
        if key not in known and normalized(before.get(key)) != normalized(after.get(key))
    )
    if other:
        changes.append(Change(scope=scope, field="other", before=None, after=", ".join(other)))
    return changes


def _env(container: Obj) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in container.get("env") or ():
        if "value" in item:
            values[item["name"]] = str(item["value"])
        elif "valueFrom" in item:
            values[item["name"]] = "(from " + ", ".join(sorted(item["valueFrom"])) + ")"
        else:
            values[item["name"]] = ""
    return values


def _render(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    return str(value)


def _other_differences(current: Obj, target: Obj) -> list[str]:
    differences = []
    current_spec, target_spec = current.get("spec") or {}, target.get("spec") or {}
    for key in sorted(set(current_spec) | set(target_spec)):
        if key in ("containers", "initContainers"):
            continue
        if normalized(current_spec.get(key)) != normalized(target_spec.get(key)):
            differences.append(key)
    current_meta = template_without_hash(current).get("metadata") or {}
    target_meta = template_without_hash(target).get("metadata") or {}
    for key in ("labels", "annotations"):
        if normalized(current_meta.get(key)) != normalized(target_meta.get(key)):
            differences.append(f"pod {key}")
    return differences
