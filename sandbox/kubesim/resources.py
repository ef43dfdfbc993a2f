"""The catalogue of resource types kubesim serves (discovery, routing, store validation).

The built-in types are a fixed tuple; each `Store` owns a `Catalog` that adds the custom resources its
CustomResourceDefinitions declare (see `crds.py`), so two simulated clusters never see each other's CRDs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

ResourceKey = tuple[str, str, str]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class PrinterColumn:
    """One `additionalPrinterColumns` entry of a CRD version: a Table column read by a JSONPath."""

    name: str
    type: str
    json_path: str
    priority: int = 0
    format: str = ""
    description: str = ""


@dataclass(frozen=True)
class ResourceInfo:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # Subresources served: "status" and/or "scale".
    subresources: tuple[str, ...] = ()
    # Whether metadata.generation is maintained (objects with a spec the user declares).
    has_generation: bool = False
    verbs: tuple[str, ...] = field(default=ALL_VERBS)
    # Custom resources (declared by a CRD): no strategic merge patch, no typed field validation, and
    # Table columns from the CRD's additionalPrinterColumns instead of a built-in printer.
    is_custom: bool = False
    printer_columns: tuple[PrinterColumn, ...] = ()

    @property
    def key(self) -> ResourceKey:
        return (self.group, self.version, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """`deployments.apps` or `secrets`: how the API server names resources in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


_ALL = "all"

RESOURCES: tuple[ResourceInfo, ...] = (
    # core/v1
    ResourceInfo(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        namespaced=False,
        short_names=("ns",),
        subresources=("status",),
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
    ),
    ResourceInfo(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        short_names=("po",),
        categories=(_ALL,),
        subresources=("status",),
        has_generation=True,
    ),
    ResourceInfo("", "v1", "secrets", "secret", "Secret"),
    ResourceInfo("", "v1", "configmaps", "configmap", "ConfigMap", short_names=("cm",)),
    ResourceInfo(
        "",
        "v1",
        "services",
        "service",
        "Service",
        short_names=("svc",),
        categories=(_ALL,),
        subresources=("status",),
        verbs=("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"),
    ),
    ResourceInfo("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", short_names=("sa",)),
    ResourceInfo("", "v1", "events", "event", "Event", short_names=("ev",)),
    ResourceInfo("", "v1", "nodes", "node", "Node", namespaced=False, short_names=("no",), subresources=("status",)),
    # apps/v1
    ResourceInfo(
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        short_names=("deploy",),
        categories=(_ALL,),
        subresources=("status", "scale"),
        has_generation=True,
    ),
    ResourceInfo(
        "apps",
        "v1",
        "replicasets",
        "replicaset",
        "ReplicaSet",
        short_names=("rs",),
        categories=(_ALL,),
        subresources=("status", "scale"),
        has_generation=True,
    ),
    ResourceInfo(
        "apps",
        "v1",
        "daemonsets",
        "daemonset",
        "DaemonSet",
        short_names=("ds",),
        categories=(_ALL,),
        subresources=("status",),
        has_generation=True,
    ),
    ResourceInfo(
        "apps",
        "v1",
        "statefulsets",
        "statefulset",
        "StatefulSet",
        short_names=("sts",),
        categories=(_ALL,),
        subresources=("status", "scale"),
        has_generation=True,
    ),
    ResourceInfo("apps", "v1", "controllerrevisions", "controllerrevision", "ControllerRevision"),
    # batch/v1
    ResourceInfo(
        "batch", "v1", "jobs", "job", "Job", categories=(_ALL,), subresources=("status",), has_generation=True
    ),
    ResourceInfo(
        "batch",
        "v1",
        "cronjobs",
        "cronjob",
        "CronJob",
        short_names=("cj",),
        categories=(_ALL,),
        subresources=("status",),
        has_generation=True,
    ),
    # storage-only kinds: no controllers, but charts create them
    ResourceInfo("rbac.authorization.k8s.io", "v1", "roles", "role", "Role"),
    ResourceInfo("rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding"),
    ResourceInfo("rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole", namespaced=False),
    ResourceInfo(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        namespaced=False,
    ),
    ResourceInfo(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        namespaced=False,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        subresources=("status",),
        has_generation=True,
    ),
    ResourceInfo(
        "networking.k8s.io",
        "v1",
        "ingresses",
        "ingress",
        "Ingress",
        short_names=("ing",),
        subresources=("status",),
        has_generation=True,
    ),
    ResourceInfo(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "networkpolicy",
        "NetworkPolicy",
        short_names=("netpol",),
        has_generation=True,
    ),
    ResourceInfo(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        short_names=("pdb",),
        subresources=("status",),
        has_generation=True,
    ),
    ResourceInfo(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        "HorizontalPodAutoscaler",
        short_names=("hpa",),
        categories=(_ALL,),
        subresources=("status",),
        has_generation=True,
    ),
)

BY_KEY: dict[ResourceKey, ResourceInfo] = {r.key: r for r in RESOURCES}
BY_KIND: dict[tuple[str, str], ResourceInfo] = {(r.api_version, r.kind): r for r in RESOURCES}


def group_versions(infos: tuple[ResourceInfo, ...] = RESOURCES) -> list[tuple[str, str]]:
    """(group, version) pairs in a stable order, core first."""
    seen: list[tuple[str, str]] = []
    for r in infos:
        if (r.group, r.version) not in seen:
            seen.append((r.group, r.version))
    return seen


def lookup(res: ResourceKey) -> ResourceInfo | None:
    """A built-in type; a store's custom resources are found through its `Catalog`."""
    return BY_KEY.get(res)


def by_kind(api_version: str, kind: str) -> ResourceInfo | None:
    return BY_KIND.get((api_version, kind))


class Catalog:
    """The types one simulated cluster serves: the built-ins plus the custom resources of its CRDs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._custom: dict[ResourceKey, ResourceInfo] = {}
        # Bumped on every change so cached discovery/OpenAPI documents can be keyed by it.
        self.generation = 0

    def lookup(self, res: ResourceKey) -> ResourceInfo | None:
        return BY_KEY.get(res) or self._custom.get(res)

    def by_kind(self, api_version: str, kind: str) -> ResourceInfo | None:
        found = BY_KIND.get((api_version, kind))
        if found is not None:
            return found
        return next((r for r in self._custom.values() if (r.api_version, r.kind) == (api_version, kind)), None)

    @property
    def resources(self) -> tuple[ResourceInfo, ...]:
        """Built-ins first, then custom resources sorted by group and plural (a stable discovery order)."""
        with self._lock:
            custom = sorted(self._custom.values(), key=lambda r: (r.group, r.version, r.plural))
        return (*RESOURCES, *custom)

    def register(self, infos: list[ResourceInfo]) -> None:
        with self._lock:
            for info in infos:
                self._custom[info.key] = info
            self.generation += 1

    def unregister(self, keys: list[ResourceKey]) -> None:
        with self._lock:
            for key in keys:
                self._custom.pop(key, None)
            self.generation += 1
