"""HTTP details of the API server that the CLIs rarely exercise: chunked request bodies, keep-alive."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest

from sandbox.kubesim.server import ApiServer
from sandbox.kubesim.store import Store


@pytest.fixture
def server() -> Iterator[ApiServer]:
    store = Store()
    store.create(("", "v1", "namespaces"), {"metadata": {"name": "default"}})
    api = ApiServer(store).start()
    yield api
    api.stop()


def test_chunked_request_body_and_keep_alive(server: ApiServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    body = json.dumps({"metadata": {"name": "c"}, "data": {"a": "b"}}).encode()
    conn.putrequest("POST", "/api/v1/namespaces/default/configmaps")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    for piece in (body[:10], body[10:]):
        conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
    conn.send(b"0\r\n\r\n")
    created = conn.getresponse()
    assert created.status == 201
    assert json.loads(created.read())["data"] == {"a": "b"}
    # The same connection serves the next request.
    conn.request("GET", "/api/v1/namespaces/default/configmaps/c")
    fetched = conn.getresponse()
    assert fetched.status == 200
    assert json.loads(fetched.read())["metadata"]["name"] == "c"
    conn.close()


def test_unknown_paths_and_methods(server: ApiServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/apis/example.com/v1/widgets")
    missing = conn.getresponse()
    assert missing.status == 404
    assert json.loads(missing.read())["kind"] == "Status"
    conn.request("GET", "/openapi/v2")
    assert conn.getresponse().status == 404
    conn.close()


def test_discovery_aggregated_and_legacy(server: ApiServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    conn.request("GET", "/apis", headers={"Accept": accept})
    response = conn.getresponse()
    assert response.getheader("Content-Type") == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    groups = {item["metadata"]["name"]: item for item in json.loads(response.read())["items"]}
    deployments = next(r for r in groups["apps"]["versions"][0]["resources"] if r["resource"] == "deployments")
    assert deployments["shortNames"] == ["deploy"]
    assert [s["subresource"] for s in deployments["subresources"]] == ["status", "scale"]
    conn.request("GET", "/apis/apps/v1")
    names = [r["name"] for r in json.loads(conn.getresponse().read())["resources"]]
    assert {"deployments", "deployments/scale", "controllerrevisions"} <= set(names)
    conn.request("GET", "/openapi/v3")
    root = json.loads(conn.getresponse().read())
    url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
    conn.request("GET", url)
    doc = json.loads(conn.getresponse().read())
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "apps", "version": "v1", "kind": "Deployment"}
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
    conn.close()


def test_watch_headers_arrive_before_any_event(server: ApiServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
    conn.request("GET", "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=1&timeoutSeconds=30")
    response = conn.getresponse()  # would time out if the headers waited for the first event
    assert response.status == 200
    assert response.getheader("Transfer-Encoding") == "chunked"
    conn.close()
