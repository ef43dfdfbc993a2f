"""kubectl's typed `create <kind>` generators POST protobuf bodies; the server decodes them."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request

import pytest

from sandbox.kubesim.cluster import KubeSim
from tests.conformance.conftest import CliRunner

pytestmark = pytest.mark.needs_kubectl


def test_create_deployment_decodes_the_protobuf_body(kubectl: CliRunner, kubesim: KubeSim) -> None:
    result = kubectl("create", "deployment", "web", "--image=nginx:1.25", "--replicas=2", "--port=80")
    assert result.stdout.strip() == "deployment.apps/web created"
    obj = kubesim.store.get(("apps", "v1", "deployments"), "default", "web")
    assert obj["spec"]["replicas"] == 2
    assert obj["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert obj["metadata"]["labels"] == {"app": "web"}
    assert "creationTimestamp" in obj["metadata"]
    assert not obj["metadata"]["creationTimestamp"].startswith("1970")
    container = obj["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "nginx"
    assert container["image"] == "nginx:1.25"
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]


def test_create_deployment_with_zero_replicas_keeps_the_explicit_zero(kubectl: CliRunner, kubesim: KubeSim) -> None:
    kubectl("create", "deployment", "idle", "--image=nginx:1.25", "--replicas=0")
    assert kubesim.store.get(("apps", "v1", "deployments"), "default", "idle")["spec"]["replicas"] == 0


def test_create_secret_generic_keeps_binary_data(kubectl: CliRunner, kubesim: KubeSim) -> None:
    kubectl("create", "secret", "generic", "creds", "--from-literal=user=admin", "--from-literal=empty=")
    secret = kubesim.store.get(("", "v1", "secrets"), "default", "creds")
    assert secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"]["user"]) == b"admin"
    assert secret["data"]["empty"] == ""
    shown = kubectl("get", "secret", "creds", "-o", "jsonpath={.data.user}").stdout
    assert base64.b64decode(shown) == b"admin"


@pytest.mark.parametrize(
    ("args", "resource", "check"),
    [
        (("configmap", "cfg", "--from-literal=a=b"), ("", "v1", "configmaps"), lambda o: o["data"] == {"a": "b"}),
        (
            ("service", "clusterip", "api", "--tcp=80:8080"),
            ("", "v1", "services"),
            lambda o: o["spec"]["ports"][0]["targetPort"] == 8080 and o["spec"]["selector"] == {"app": "api"},
        ),
        (("serviceaccount", "robot"), ("", "v1", "serviceaccounts"), lambda o: o["metadata"]["name"] == "robot"),
        (
            ("job", "once", "--image=busybox:1.36", "--", "echo", "hi"),
            ("batch", "v1", "jobs"),
            lambda o: o["spec"]["template"]["spec"]["containers"][0]["command"] == ["echo", "hi"],
        ),
        (
            ("role", "reader", "--verb=get", "--resource=pods"),
            ("rbac.authorization.k8s.io", "v1", "roles"),
            lambda o: o["rules"][0]["verbs"] == ["get"],
        ),
        (
            ("poddisruptionbudget", "pdb", "--selector=app=web", "--min-available=1"),
            ("policy", "v1", "poddisruptionbudgets"),
            lambda o: o["spec"]["minAvailable"] == 1,
        ),
        (
            ("cronjob", "nightly", "--image=busybox:1.36", "--schedule=0 1 * * *"),
            ("batch", "v1", "cronjobs"),
            lambda o: o["spec"]["schedule"] == "0 1 * * *",
        ),
    ],
    ids=["configmap", "service", "serviceaccount", "job", "role", "pdb", "cronjob"],
)
def test_typed_create_generators(kubectl: CliRunner, kubesim: KubeSim, args: tuple[str, ...], resource, check) -> None:
    kubectl("create", *args)
    name = args[2] if args[0] == "service" else args[1]
    assert check(kubesim.store.get(resource, "default", name))


def test_protobuf_of_an_unsupported_kind_is_415(kubesim: KubeSim) -> None:
    # An envelope for kind "Lease" (typeMeta{apiVersion, kind}) with an empty raw object.
    type_meta = b"\x0a\x16coordination.k8s.io/v1" + b"\x12\x05Lease"
    body = b"k8s\x00" + b"\x0a" + bytes([len(type_meta)]) + type_meta + b"\x12\x00"
    request = urllib.request.Request(  # noqa: S310 - loopback test server
        f"{kubesim.url}/api/v1/namespaces/default/configmaps",
        data=body,
        method="POST",
        headers={"Content-Type": "application/vnd.kubernetes.protobuf"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)  # noqa: S310 - loopback test server
    assert caught.value.code == 415


def test_autoscale_creates_an_hpa_and_prints_its_table(kubectl: CliRunner) -> None:
    kubectl("create", "deployment", "web", "--image=nginx:1.25")
    assert kubectl("autoscale", "deployment", "web", "--min=1", "--max=4", "--cpu=80%").stdout.strip() == (
        "horizontalpodautoscaler.autoscaling/web autoscaled"
    )
    header, row = [line.split() for line in kubectl("get", "hpa").stdout.splitlines()]
    assert header == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
    assert row[:6] == ["web", "Deployment/web", "cpu:", "<unknown>/80%", "1", "4"]
