"""moto plus the ECS rollout driver (ecs.md §4), in this process or as a small server with a control API."""

from sandbox.aws.driver import FAIL, HANG, SUCCEED, RolloutDriver
from sandbox.aws.world import AwsWorld

__all__ = ["FAIL", "HANG", "SUCCEED", "AwsWorld", "RolloutDriver"]
