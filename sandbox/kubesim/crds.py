"""CustomResourceDefinitions: what an `apiextensions.k8s.io/v1` CRD makes the simulated API server serve.

A committed CRD is turned into a `ResourceInfo` in its store's `Catalog` at once (before the write returns),
so `kubectl apply -f crd.yaml` followed by `kubectl apply -f app.yaml` works as on a real cluster, where the
CRD becomes Established within milliseconds. Updating the CRD re-registers it (printer columns, short names,
subresources); deleting it deletes every object of the type, as the real finalizer
`customresourcecleanup.apiextensions.k8s.io` does before the CRD goes.

Deliberately not simulated: conversion between versions (only the storage version is served, or the first
served one), the `scale` subresource, OpenAPI schema validation, defaulting and pruning of custom objects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sandbox.kubesim.jsonpath import JsonPathError, parse
from sandbox.kubesim.resources import ALL_VERBS, PrinterColumn, ResourceInfo, ResourceKey

if TYPE_CHECKING:
    from sandbox.kubesim.store import Store

CRDS: ResourceKey = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")
# The default a v1 CRD gets when it declares no additionalPrinterColumns.
_AGE_COLUMN = PrinterColumn("Age", "date", ".metadata.creationTimestamp")
_SCOPES = ("Namespaced", "Cluster")


def served_version(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The one version kubesim serves: the storage version if served, else the first served version."""
    versions = [v for v in spec.get("versions") or [] if isinstance(v, dict) and v.get("served")]
    storage = [v for v in versions if v.get("storage")]
    chosen = storage or versions
    return chosen[0] if chosen else None


def problems(crd: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, message) pairs the real API server would answer with 422 Invalid, in its wording."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group") or ""
    plural = names.get("plural") or ""
    causes: list[tuple[str, str]] = []
    if not group:
        causes.append(("spec.group", "Required value"))
    if not plural:
        causes.append(("spec.names.plural", "Required value"))
    if not names.get("kind"):
        causes.append(("spec.names.kind", "Required value"))
    name = (crd.get("metadata") or {}).get("name", "")
    if group and plural and name != f"{plural}.{group}":
        causes.append(("metadata.name", f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group'))
    if spec.get("scope") not in _SCOPES:
        causes.append(
            ("spec.scope", f'Unsupported value: "{spec.get("scope", "")}": supported values: "Cluster", "Namespaced"')
        )
    versions = spec.get("versions") or []
    if not versions:
        causes.append(("spec.versions", "Invalid value: null: must have exactly one version marked as storage version"))
    elif sum(1 for v in versions if isinstance(v, dict) and v.get("storage")) != 1:
        causes.append(("spec.versions", "Invalid value: must have exactly one version marked as storage version"))
    for index, version in enumerate(versions):
        for column_index, column in enumerate((version or {}).get("additionalPrinterColumns") or []):
            where = f"spec.versions[{index}].additionalPrinterColumns[{column_index}].jsonPath"
            try:
                parse(str(column.get("jsonPath", "")))
            except JsonPathError:
                causes.append((where, f'Invalid value: "{column.get("jsonPath")}": must be a simple json path'))
    return causes


def resource_info(crd: dict[str, Any]) -> ResourceInfo | None:
    """The served type a (valid) CRD declares; None when no version is served."""
    spec = crd["spec"]
    version = served_version(spec)
    if version is None:
        return None
    names = spec["names"]
    declared = version.get("additionalPrinterColumns")
    columns = (
        tuple(
            PrinterColumn(
                name=c["name"],
                type=c.get("type", "string"),
                json_path=c["jsonPath"],
                priority=int(c.get("priority", 0)),
                format=c.get("format", ""),
                description=c.get("description", ""),
            )
            for c in declared
        )
        if declared
        else (_AGE_COLUMN,)
    )
    return ResourceInfo(
        group=spec["group"],
        version=version["name"],
        plural=names["plural"],
        singular=names.get("singular") or names["kind"].lower(),
        kind=names["kind"],
        namespaced=spec.get("scope") == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        subresources=("status",) if isinstance((version.get("subresources") or {}).get("status"), dict) else (),
        # The custom resource strategy bumps generation on every spec change, like built-ins.
        has_generation=True,
        verbs=ALL_VERBS,
        is_custom=True,
        printer_columns=columns,
    )


def established_status(crd: dict[str, Any], now: str) -> dict[str, Any]:
    """The status the apiextensions controllers write once names are accepted and the type is served."""
    spec = crd["spec"]
    names = dict(spec["names"])
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", f"{names['kind']}List")
    condition = {"status": "True", "lastTransitionTime": now}
    return {
        "acceptedNames": names,
        "conditions": [
            {**condition, "type": "NamesAccepted", "reason": "NoConflicts", "message": "no conflicts found"},
            {
                **condition,
                "type": "Established",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
            },
        ],
        "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
    }


class CustomResourceServing:
    """Keeps a store's catalog in step with its CRDs (a store listener: runs inside each commit)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        # CRD name -> the type it registered, so an update or delete knows what to drop.
        self._served: dict[str, ResourceKey] = {}

    def __call__(self, event_type: str, res: ResourceKey, crd: dict[str, Any]) -> None:
        if res != CRDS:
            return
        name = crd["metadata"]["name"]
        previous = self._served.pop(name, None)
        if event_type == "DELETED":
            if previous is not None:
                self._store.purge_resource(previous)
                self._store.catalog.unregister([previous])
            return
        info = resource_info(crd)
        if previous is not None and (info is None or info.key != previous):
            self._store.purge_resource(previous)
            self._store.catalog.unregister([previous])
        if info is None:
            return
        self._store.catalog.register([info])
        self._served[name] = info.key
        if not any(c.get("type") == "Established" for c in (crd.get("status") or {}).get("conditions") or []):
            from sandbox.kubesim.store import now_rfc3339  # local: store imports this module's siblings

            self._store.update(CRDS, {**crd, "status": established_status(crd, now_rfc3339())}, subresource="status")
