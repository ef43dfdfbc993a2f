"""moto's server plus the driver's control API under `/_driver/…`, as one WSGI app.

The same app runs in a test's thread (`AwsWorld`) and as `python -m sandbox.aws --port P` for the demo, so the
bot in another process sees exactly what the tests see. Control API (JSON bodies):

    POST /_driver/plan        {"service": "myservice", "mode": "fail", "cluster": "default"}
                              {"task_definition": "myservice:4", "mode": "fail"}
    POST /_driver/settle      {"cluster": "default", "service": "myservice"}
    POST /_driver/tick        → {"moved": 1}
    POST /_driver/background  {"interval": 0.5}  or  {"stop": true}
    POST /_driver/scenario    {"name": "myservice", "region": "us-east-1"}
    POST /_driver/reset       moto's state, plans and records
    POST /_driver/outage      {"requests": 4}: the next 4 AWS calls answer 503 ServiceUnavailable
    GET  /_driver/emitted     EventBridge-shaped deployment events
    GET  /_driver/completions when each deployment reached COMPLETED (wall clock)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

import boto3
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from sandbox.aws import scenarios
from sandbox.aws.driver import RolloutDriver

PREFIX = "/_driver/"
# moto accepts any credentials; these only keep botocore from looking for real ones.
SANDBOX_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def sandbox_client(service: str, endpoint_url: str, region: str = "us-east-1") -> Any:
    return boto3.session.Session(region_name=region, **SANDBOX_CREDENTIALS).client(service, endpoint_url=endpoint_url)


class DriverApp:
    def __init__(self, driver: RolloutDriver) -> None:
        self.driver = driver
        self.moto = DomainDispatcherApplication(create_backend_app)
        self._outage = 0
        self.outage_answers = 0  # how many 503s were served, for tests to check the outage happened
        self._outage_lock = threading.Lock()

    def outage(self, requests: int) -> None:
        """Answer the next `requests` AWS calls with 503, as a throttled or struggling endpoint would."""
        with self._outage_lock:
            self._outage = requests

    def _in_outage(self) -> bool:
        with self._outage_lock:
            if self._outage <= 0:
                return False
            self._outage -= 1
            self.outage_answers += 1
            return True

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not environ.get("PATH_INFO", "").startswith(PREFIX):
            if self._in_outage():
                body = json.dumps({"__type": "ServiceUnavailableException", "message": "sandbox outage"})
                response = Response(body, status=503, mimetype="application/x-amz-json-1.1")
                return response(environ, start_response)
            return self.moto(environ, start_response)
        request = Request(environ)
        try:
            body = self.control(request)
            response = Response(json.dumps(body, default=str), mimetype="application/json")
        except (KeyError, ValueError) as exc:
            response = Response(json.dumps({"error": str(exc)}), status=400, mimetype="application/json")
        return response(environ, start_response)

    def control(self, request: Request) -> dict[str, Any]:
        action = request.path.removeprefix(PREFIX).strip("/")
        data = request.get_json(silent=True) or {}
        driver = self.driver
        if action == "plan" and request.method == "POST":
            if "task_definition" in data:
                driver.plan_task_definition(data["task_definition"], data["mode"])
            else:
                driver.plan(data["service"], data["mode"], data.get("cluster", "default"))
            return {"ok": True}
        if action == "settle" and request.method == "POST":
            driver.settle(data.get("cluster", "default"), data["service"])
            return {"ok": True}
        if action == "tick" and request.method == "POST":
            return {"moved": driver.tick()}
        if action == "background" and request.method == "POST":
            if data.get("stop"):
                driver.stop_background()
            else:
                driver.run_in_background(float(data.get("interval", 0.5)))
            return {"ok": True}
        if action == "reset" and request.method == "POST":
            reset_moto()
            driver.reset()
            return {"ok": True}
        if action == "scenario" and request.method == "POST":
            if data.get("name") != "myservice":
                raise ValueError("unknown scenario; known: myservice")
            endpoint = f"{request.scheme}://{request.host}"
            region = data.get("region", "us-east-1")
            seeded = scenarios.seed_myservice(
                sandbox_client("ecs", endpoint, region), sandbox_client("application-autoscaling", endpoint, region)
            )
            return {"cluster": seeded.cluster, "service": seeded.service, "arns": seeded.arns}
        if action == "outage" and request.method == "POST":
            self.outage(int(data.get("requests", 1)))
            return {"ok": True}
        if action == "emitted":
            return {"events": list(driver.emitted)}
        if action == "completions":
            return {"completions": [asdict(c) for c in driver.completions]}
        raise KeyError(f"no control action {request.method} {action}")


def reset_moto() -> None:
    from moto.moto_api import _internal

    _internal.moto_api_backend.reset()


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class ServerThread:
    """Serve a WSGI app on 127.0.0.1 (port 0 = the OS picks) in a daemon thread."""

    def __init__(self, app: WsgiApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server: BaseWSGIServer = make_server(host, port, app, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="aws-sandbox", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ServerThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
