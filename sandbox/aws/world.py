"""The whole simulated AWS in one object: moto's server with the driver, for tests and the benchmark."""

from __future__ import annotations

from typing import Any

from sandbox.aws.driver import RolloutDriver
from sandbox.aws.server import DriverApp, ServerThread, reset_moto, sandbox_client


class AwsWorld:
    """`with AwsWorld() as world:` serves moto + driver on a free port; `world.url` is the AWS endpoint."""

    def __init__(self, region: str = "us-east-1") -> None:
        self.region = region
        self.driver = RolloutDriver().install()
        self.app = DriverApp(self.driver)
        self._server = ServerThread(self.app).start()
        self._clients: dict[tuple[str, str], Any] = {}

    @property
    def url(self) -> str:
        return self._server.url

    def client(self, service: str, region: str | None = None) -> Any:
        """A plain boto3 client for arranging and asserting (the bot builds its own); cached, they are slow to build."""
        key = (service, region or self.region)
        if key not in self._clients:
            self._clients[key] = sandbox_client(service, self.url, key[1])
        return self._clients[key]

    def reset(self) -> None:
        self.app.outage(0)
        self.driver.stop_background()
        reset_moto()
        self.driver.reset()

    def close(self) -> None:
        self._server.stop()
        self.driver.uninstall()

    def __enter__(self) -> AwsWorld:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
