"""Minimal OpenAPI v3 documents.

Clients only need to see, per GVK, a PATCH operation that declares the `fieldValidation` query parameter
(cli-runtime query_param_verifier_v3); they then leave validation to the server and fetch no schemas.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

from sandbox.kubesim.resources import RESOURCES, ResourceInfo, group_versions


def _gv_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _param(name: str, location: str = "query") -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": location, "schema": {"type": "string", "uniqueItems": True}}
    if location == "path":
        param["required"] = True
    return param


_WRITE_PARAMS = [_param("dryRun"), _param("fieldManager"), _param("fieldValidation")]


def _operation(info: ResourceInfo, action: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "tags": [_gv_path(info.group, info.version).replace("/", "_")],
        "operationId": f"{action}{info.kind}",
        "parameters": params,
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": info.group, "version": info.version, "kind": info.kind},
    }


def _paths_for(info: ResourceInfo) -> dict[str, Any]:
    prefix = "/" + _gv_path(info.group, info.version)
    if info.namespaced:
        collection = f"{prefix}/namespaces/{{namespace}}/{info.plural}"
        path_params = [_param("namespace", "path")]
    else:
        collection = f"{prefix}/{info.plural}"
        path_params = []
    item = f"{collection}/{{name}}"
    item_params = [*path_params, _param("name", "path")]
    paths: dict[str, Any] = {
        collection: {
            "get": _operation(info, "list", [_param("labelSelector"), _param("fieldSelector"), _param("limit")]),
            "post": _operation(info, "post", list(_WRITE_PARAMS)),
            "parameters": path_params,
        },
        item: {
            "get": _operation(info, "get", []),
            "put": _operation(info, "put", list(_WRITE_PARAMS)),
            "patch": _operation(info, "patch", [*_WRITE_PARAMS, _param("force")]),
            "delete": _operation(info, "delete", [_param("dryRun"), _param("propagationPolicy")]),
            "parameters": item_params,
        },
    }
    for sub in info.subresources:
        paths[f"{item}/{sub}"] = {
            "get": _operation(info, "get", []),
            "put": _operation(info, "put", list(_WRITE_PARAMS)),
            "patch": _operation(info, "patch", [*_WRITE_PARAMS, _param("force")]),
            "parameters": item_params,
        }
    return paths


Infos = tuple[ResourceInfo, ...]


@lru_cache(maxsize=64)  # keyed by the served types, which change with CRDs
def group_version_document(group: str, version: str, infos: Infos = RESOURCES) -> bytes:
    paths: dict[str, Any] = {}
    for info in infos:
        if info.group == group and info.version == version:
            paths.update(_paths_for(info))
    doc = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.35.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _hash(body: bytes) -> str:
    return hashlib.sha512(body).hexdigest().upper()[:128]


@lru_cache(maxsize=64)  # keyed by the served types, which change with CRDs
def root_document(infos: Infos = RESOURCES) -> bytes:
    paths = {}
    for group, version in group_versions(infos):
        gv = _gv_path(group, version)
        digest = _hash(group_version_document(group, version, infos))
        paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest}"}
    return json.dumps({"paths": paths}, separators=(",", ":")).encode()


def document_for_path(path: str, infos: Infos = RESOURCES) -> bytes | None:
    """The per-GV document for `/openapi/v3/<api/v1 | apis/g/v>`, or None."""
    rest = path.removeprefix("/openapi/v3/").strip("/")
    parts = rest.split("/")
    if parts == ["api", "v1"]:
        return group_version_document("", "v1", infos)
    if len(parts) == 3 and parts[0] == "apis":
        for group, version in group_versions(infos):
            if group == parts[1] and version == parts[2]:
                return group_version_document(group, version, infos)
    return None
