"""Discovery documents: /version, legacy APIVersions/APIGroupList/APIResourceList and aggregated v2."""

from __future__ import annotations

from typing import Any

from sandbox.kubesim.resources import RESOURCES, ResourceInfo, group_versions

Infos = tuple[ResourceInfo, ...]

AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

VERSION_INFO = {
    "major": "1",
    "minor": "35",
    "emulationMajor": "1",
    "emulationMinor": "35",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "34",
    "gitVersion": "v1.35.0",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.25.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}

_SERVER_ADDRESSES = [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]
_STATUS_VERBS = ["get", "patch", "update"]


def wants_aggregated(accept: str) -> bool:
    return "as=APIGroupDiscoveryList" in accept and "v=v2" in accept


def _resources_of(group: str, version: str, infos: Infos) -> list[ResourceInfo]:
    return [r for r in infos if r.group == group and r.version == version]


def api_versions() -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": _SERVER_ADDRESSES}


def api_group_list(infos: Infos = RESOURCES) -> dict[str, Any]:
    groups: dict[str, list[str]] = {}
    for group, version in group_versions(infos):
        if group:
            groups.setdefault(group, []).append(version)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": group,
                "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
                "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]},
            }
            for group, versions in groups.items()
        ],
    }


def api_group(group: str, infos: Infos = RESOURCES) -> dict[str, Any] | None:
    for entry in api_group_list(infos)["groups"]:
        if entry["name"] == group:
            return {"kind": "APIGroup", "apiVersion": "v1", **entry}
    return None


def _scale_kind() -> dict[str, str]:
    return {"group": "autoscaling", "version": "v1", "kind": "Scale"}


def api_resource_list(group: str, version: str, all_infos: Infos = RESOURCES) -> dict[str, Any] | None:
    infos = _resources_of(group, version, all_infos)
    if not infos:
        return None
    resources: list[dict[str, Any]] = []
    for info in infos:
        entry: dict[str, Any] = {
            "name": info.plural,
            "singularName": info.singular,
            "namespaced": info.namespaced,
            "kind": info.kind,
            "verbs": list(info.verbs),
        }
        if info.short_names:
            entry["shortNames"] = list(info.short_names)
        if info.categories:
            entry["categories"] = list(info.categories)
        resources.append(entry)
        for sub in info.subresources:
            sub_entry: dict[str, Any] = {
                "name": f"{info.plural}/{sub}",
                "singularName": "",
                "namespaced": info.namespaced,
                "kind": info.kind,
                "verbs": _STATUS_VERBS,
            }
            if sub == "scale":
                sub_entry.update({"group": "autoscaling", "version": "v1", "kind": "Scale"})
            resources.append(sub_entry)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}


def _aggregated_resource(info: ResourceInfo) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": info.plural,
        "responseKind": {"group": info.group, "version": info.version, "kind": info.kind},
        "scope": "Namespaced" if info.namespaced else "Cluster",
        "singularResource": info.singular,
        "verbs": list(info.verbs),
    }
    if info.short_names:
        entry["shortNames"] = list(info.short_names)
    if info.categories:
        entry["categories"] = list(info.categories)
    if info.subresources:
        entry["subresources"] = [
            {
                "subresource": sub,
                "responseKind": _scale_kind()
                if sub == "scale"
                else {"group": info.group, "version": info.version, "kind": info.kind},
                "verbs": _STATUS_VERBS,
            }
            for sub in info.subresources
        ]
    return entry


def aggregated(*, legacy: bool, infos: Infos = RESOURCES) -> dict[str, Any]:
    """APIGroupDiscoveryList for /api (legacy=True, the core group) or /apis (named groups)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for group, version in group_versions(infos):
        if (group == "") != legacy:
            continue
        groups.setdefault(group, []).append(
            {
                "version": version,
                "resources": [_aggregated_resource(r) for r in _resources_of(group, version, infos)],
                "freshness": "Current",
            }
        )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": [
            {"metadata": {"name": group, "creationTimestamp": None}, "versions": versions}
            for group, versions in groups.items()
        ],
    }
