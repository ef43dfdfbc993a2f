"""The handful of validation rules clients actually trip over (422 Invalid with the real wording)."""

from __future__ import annotations

import re
from typing import Any

from sandbox.kubesim.crds import CRDS
from sandbox.kubesim.crds import problems as crd_problems
from sandbox.kubesim.resources import ResourceInfo
from sandbox.kubesim.selectors import label_selector_from_dict, labels_match

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_WORKLOADS = {"Deployment", "ReplicaSet", "DaemonSet", "StatefulSet"}


def _go_map(labels: dict[str, Any]) -> str:
    """Render a map the way Go's %#v prints map[string]string (used in selector mismatch messages)."""
    inner = ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items()))
    return "map[string]string{" + inner + "}"


def validate(info: ResourceInfo, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    from sandbox.kubesim.store import ApiError

    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    causes: list[tuple[str, str]] = []
    if info.kind not in ("Event",) and (len(name) > 253 or not _SUBDOMAIN.match(name)):
        causes.append(("metadata.name", f'Invalid value: "{name}": {_SUBDOMAIN_MSG}'))
    if info.kind in _WORKLOADS:
        spec = obj.get("spec") or {}
        selector = spec.get("selector")
        template = spec.get("template") or {}
        template_labels = (template.get("metadata") or {}).get("labels") or {}
        if not selector:
            causes.append(("spec.selector", "Required value"))
        elif not labels_match(label_selector_from_dict(selector), template_labels):
            causes.append(
                (
                    "spec.template.metadata.labels",
                    f"Invalid value: {_go_map(template_labels)}: `selector` does not match template `labels`",
                )
            )
        containers = (template.get("spec") or {}).get("containers")
        if not containers:
            causes.append(("spec.template.spec.containers", "Required value"))
        if old is not None and info.kind != "ReplicaSet":
            old_selector = (old.get("spec") or {}).get("selector")
            if selector and old_selector and selector != old_selector:
                causes.append(("spec.selector", f"Invalid value: {_selector_repr(selector)}: field is immutable"))
    if info.key == CRDS:
        causes.extend(crd_problems(obj))
    if causes:
        raise ApiError.invalid(info, name, causes)


def _selector_repr(selector: dict[str, Any]) -> str:
    labels = selector.get("matchLabels") or {}
    return "v1.LabelSelector{MatchLabels:" + _go_map(labels) + ", MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"
