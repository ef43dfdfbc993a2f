"""Helpers for tests and benchmarks that drive the ECS backend against `AwsWorld`.

`VirtualTime` stands in for the backend's `monotonic`/`sleep` pair: each sleep advances virtual time and lets
the rollout driver take one step, so a watch is deterministic and instant while still exercising the backend's
own polling schedule (the sleeps are recorded for assertions).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sandbox.aws.driver import RolloutDriver

# The environment a bot process needs to reach the sandbox through boto3's standard configuration.
SANDBOX_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_MAX_ATTEMPTS": "2",
}


@dataclass
class VirtualTime:
    driver: RolloutDriver
    now: float = 0.0
    ticks_per_sleep: int = 1
    sleeps: list[float] = field(default_factory=list)
    on_sleep: Callable[[float], None] | None = None

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        for _ in range(self.ticks_per_sleep):
            self.driver.tick()
        if self.on_sleep is not None:
            self.on_sleep(seconds)


def sandbox_env(url: str) -> dict[str, str]:
    return {**SANDBOX_ENV, "AWS_ENDPOINT_URL": url}
