"""The chart's RBAC is enough: every API request the real bot and its helm make is allowed by the rendered Roles.

kubesim does not enforce RBAC, but it logs every request (KUBESIM_LOG). The bot, built by `build_app` with its
real Kubernetes and Helm backends, runs history, status and approved rollbacks of a Deployment, a DaemonSet
and a Helm release through the fake Slack; each logged request is then checked, as the API server's RBAC
authorizer would, against the Roles `helm template` renders for the same catalog. Discovery and OpenAPI
(non-resource URLs every authenticated client may read) are not subject to Roles.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from bot.app import RollbotApp, build_app
from bot.core.catalog import WorkloadKind
from bot.settings import Settings
from sandbox.kubesim.cluster import KubeSim
from sandbox.slack.driver import SlackDriver
from sandbox.slack.seed import ALICE, BOB, BOT_TOKEN, INCIDENT, SIGNING_SECRET
from sandbox.slack.server import FakeSlack
from tests._policy import require_tool
from tests.backends.kube_world import KubeWorld
from tests.e2e_slack.conftest import request_rollback, wait_for_phase
from tests.ship.conftest import APPROVERS, HELM, KUBECTL, Grant, Helm, granted, of_kind, socket_values

pytestmark = [pytest.mark.needs_helm, pytest.mark.needs_kubectl]

CATALOG: dict[str, Any] = {
    "defaults": APPROVERS,
    "targets": {
        "workshop": {"backend": "helm", "release": "workshop", "namespace": "shop"},
        "web": {"backend": "kubernetes", "kind": "Deployment", "name": "web", "namespace": "default"},
        "agent": {"backend": "kubernetes", "kind": "DaemonSet", "name": "agent", "namespace": "kube-system"},
    },
}
# Both kubesim log lines: the request line when the response starts (so open watches count too), and
# "METHOD PATH (ms)" when it ends.
REQUEST_LINE = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE) (/\S*)")
NON_RESOURCE = ("/api", "/apis", "/openapi/", "/version", "/healthz", "/livez", "/readyz")


@dataclass(frozen=True)
class ApiRequest:
    verb: str
    group: str
    resource: str  # with "/subresource" when there is one
    namespace: str  # "" for cluster-scoped
    name: str  # "" for collections


def parse(method: str, url: str) -> ApiRequest | None:
    """An HTTP request as the RBAC authorizer sees it (None for non-resource URLs)."""
    split = urlsplit(url)
    parts = [p for p in split.path.split("/") if p]
    if not parts or parts[0] not in ("api", "apis"):
        return None
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if not rest:
        return None  # a discovery document
    group = "" if parts[0] == "api" else parts[1]
    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource, name, sub = rest[0], rest[1] if len(rest) > 1 else "", rest[2] if len(rest) > 2 else ""
    query = parse_qs(split.query)
    if method == "GET":
        verb = "watch" if query.get("watch", [""])[0] in ("true", "1") else ("get" if name else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
    return ApiRequest(verb, group, f"{resource}/{sub}" if sub else resource, namespace, name)


def allowed(request: ApiRequest, grants: set[Grant]) -> bool:
    """As the authorizer decides: a Role in the request's namespace, or a ClusterRole ("*") anywhere."""
    names = {"*", request.name} if request.name else {"*"}
    return any(
        (namespace, request.group, request.resource, request.verb, n) in grants
        for n in names
        for namespace in {request.namespace, "*"}
    )


@pytest.fixture
def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[KubeSim, Helm]]:
    require_tool("helm", HELM.exists(), f"the real helm at {HELM}")
    require_tool("kubectl", KUBECTL.exists(), f"the real kubectl at {KUBECTL}")
    monkeypatch.setenv("KUBESIM_LOG", "1")
    # The bot's helm inherits the process environment: keep its HOME and caches in the test's directory.
    for name, path in (
        ("HOME", "home"),
        ("HELM_CACHE_HOME", "helm-cache"),
        ("HELM_CONFIG_HOME", "helm-config"),
        ("HELM_DATA_HOME", "helm-data"),
        ("KUBECACHEDIR", "kube-cache"),
    ):
        monkeypatch.setenv(name, str(tmp_path / path))
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "home").mkdir()
    with KubeSim(pod_ready_seconds=0.1) as sim:
        kubeconfig = tmp_path / "kubeconfig"
        sim.write_kubeconfig(kubeconfig)
        helm = Helm(
            {
                "PATH": "/usr/bin:/bin",
                "HOME": str(tmp_path / "home"),
                "KUBECONFIG": str(kubeconfig),
                "HELM_CACHE_HOME": str(tmp_path / "helm-cache"),
                "HELM_CONFIG_HOME": str(tmp_path / "helm-config"),
                "HELM_DATA_HOME": str(tmp_path / "helm-data"),
                "KUBECACHEDIR": str(tmp_path / "kube-cache"),
            },
            tmp_path,
        )
        yield sim, helm


@pytest.fixture
def world(kube: tuple[KubeSim, Helm]) -> tuple[KubeSim, Helm]:
    """Two revisions of each target: the workloads written to the store, the release installed by helm."""
    sim, helm = kube
    workloads = KubeWorld(sim)
    workloads.create(WorkloadKind.DEPLOYMENT, "web", "nginx:1.25")
    workloads.create(WorkloadKind.DAEMONSET, "agent", "fluentd:1.16", namespace="kube-system")
    workloads.wait_until(lambda: workloads.rolled_out(WorkloadKind.DEPLOYMENT, "web"), what="web rolled out")
    workloads.set_image(WorkloadKind.DEPLOYMENT, "web", "nginx:1.26")
    workloads.set_image(WorkloadKind.DAEMONSET, "agent", "fluentd:1.17", namespace="kube-system")
    helm.kubectl("create", "namespace", "shop")
    helm("create", "workshop")
    chart = str(helm.workdir / "workshop")
    helm("install", "workshop", chart, "-n", "shop", "--set", "image.tag=1.16.0")
    helm("upgrade", "workshop", chart, "-n", "shop", "--set", "image.tag=1.17.0")
    return sim, helm


@pytest.fixture
def bot(world: tuple[KubeSim, Helm], redis_url: str, tmp_path: Path) -> Iterator[tuple[RollbotApp, FakeSlack]]:
    _, helm = world
    catalog_path = tmp_path / "catalog.yaml"
    catalog_path.write_text(yaml.safe_dump(CATALOG), encoding="utf-8")
    with FakeSlack() as fake:
        settings = Settings(
            slack_bot_token=BOT_TOKEN,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=fake.api_url,
            redis_url=redis_url,
            config_path=catalog_path,
            kubeconfig=helm.env["KUBECONFIG"],
            helm_path=str(HELM),
            host="127.0.0.1",
            port=0,
            rollout_timeout=timedelta(seconds=60),
            sweep_interval=timedelta(milliseconds=200),
        )
        app = build_app(settings).start()
        try:
            yield app, fake
        finally:
            app.stop()


def test_every_request_the_bot_and_helm_make_is_allowed_by_the_rendered_roles(
    bot: tuple[RollbotApp, FakeSlack],
    caplog: pytest.LogCaptureFixture,
    render: Callable[..., list[dict[str, Any]]],
) -> None:
    app, fake = bot
    caplog.clear()  # the seeding above is not the bot's doing
    with (
        caplog.at_level(logging.INFO, logger="kubesim.server"),
        SlackDriver(app.events_url, SIGNING_SECRET, fake) as slack,
    ):
        for text in ("history workshop", "status web", "history agent", "status workshop"):
            assert slack.slash_command(text, user=ALICE, channel=INCIDENT).status == 200
        for text in ("web 1", "agent 1", "workshop 1"):
            request = request_rollback(slack, fake, app, text)
            slack.reaction_added(BOB, "white_check_mark", INCIDENT, request.ts)
            wait_for_phase(fake, request, "succeeded", timeout=60)
    requests = {
        parsed
        for record in caplog.records
        if record.name == "kubesim.server"
        and (line := REQUEST_LINE.search(record.getMessage()))
        and (parsed := parse(line.group(1), line.group(2)))
    }
    objects = render(socket_values(catalog=CATALOG))
    grants = granted(objects)
    assert of_kind(objects, "Role")
    denied = sorted(str(r) for r in requests if not allowed(r, grants))
    assert not denied, "requests the chart's RBAC would deny:\n" + "\n".join(denied)
    # The rollbacks really went through the API: the patches, and helm's new release revision.
    assert ApiRequest("patch", "apps", "deployments", "default", "web") in requests
    assert ApiRequest("patch", "apps", "daemonsets", "kube-system", "agent") in requests
    assert any(r.verb == "create" and r.resource == "secrets" and r.namespace == "shop" for r in requests)
    # Cluster-scoped: only finding the Flux HelmRelease of a helm release (the GitOps reader, ADR 0020).
    cluster_scoped = {(r.group, r.resource, r.verb) for r in requests if not r.namespace}
    assert cluster_scoped <= {("helm.toolkit.fluxcd.io", "helmreleases", "list")}, cluster_scoped
