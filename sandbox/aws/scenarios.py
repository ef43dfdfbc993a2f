"""Seeded ECS worlds for tests and the demo: a family of task-definition revisions behind one service.

Everything here goes through the public AWS APIs (boto3 against moto), so a scenario is what an operator
would have built with the console; the driver then moves the deployments. moto drops `deploymentConfiguration`
at create time (ecs.md §3.1), so the circuit breaker is set with a follow-up `update_service`, as ecs.md §3.2
recommends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RevisionSpec:
    """One task-definition revision: per-container image, plus the knobs the preview diffs."""

    images: Mapping[str, str]
    env: Mapping[str, str] = field(default_factory=dict)
    cpu: str = "256"
    memory: str = "512"
    command: Sequence[str] | None = None


@dataclass(frozen=True)
class SeededService:
    cluster: str
    service: str
    family: str
    arns: Mapping[int, str]  # revision number → task-definition ARN


def register_revisions(ecs: Any, family: str, revisions: Sequence[RevisionSpec]) -> dict[int, str]:
    arns: dict[int, str] = {}
    for spec in revisions:
        containers = []
        for index, (name, image) in enumerate(spec.images.items()):
            container: dict[str, Any] = {
                "name": name,
                "image": image,
                "essential": index == 0,
                "memory": int(spec.memory) // max(len(spec.images), 1),
                "environment": [{"name": k, "value": v} for k, v in spec.env.items()] if index == 0 else [],
            }
            if spec.command is not None and index == 0:
                container["command"] = list(spec.command)
            containers.append(container)
        td = ecs.register_task_definition(
            family=family,
            containerDefinitions=containers,
            cpu=spec.cpu,
            memory=spec.memory,
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
        )["taskDefinition"]
        arns[int(td["revision"])] = td["taskDefinitionArn"]
    return arns


def seed_service(
    ecs: Any,
    *,
    cluster: str,
    service: str,
    revisions: Sequence[RevisionSpec],
    current: int | None = None,
    family: str | None = None,
    desired: int = 2,
    circuit_breaker: tuple[bool, bool] | None = (True, True),
    inactive: Sequence[int] = (),
    code_deploy: bool = False,
) -> SeededService:
    """Register `revisions` (1..n), run the service on `current` (default: the last) and settle it.

    `circuit_breaker` is `(enable, rollback)` or None for no deploymentConfiguration at all. The driver must be
    installed with `auto_settle` (the default) for the service to start out COMPLETED.
    """
    family = family or service
    if cluster not in {c.rsplit("/", 1)[-1] for c in ecs.list_clusters()["clusterArns"]}:
        ecs.create_cluster(clusterName=cluster)
    arns = register_revisions(ecs, family, revisions)
    current = current or max(arns)
    create: dict[str, Any] = {
        "cluster": cluster,
        "serviceName": service,
        "taskDefinition": arns[current],
        "desiredCount": desired,
        "launchType": "FARGATE",
    }
    if code_deploy:
        create["deploymentController"] = {"type": "CODE_DEPLOY"}
    ecs.create_service(**create)
    if circuit_breaker is not None and not code_deploy:
        enable, rollback = circuit_breaker
        ecs.update_service(
            cluster=cluster,
            service=service,
            deploymentConfiguration={
                "deploymentCircuitBreaker": {"enable": enable, "rollback": rollback},
                "maximumPercent": 200,
                "minimumHealthyPercent": 100,
            },
        )
    for number in inactive:
        ecs.deregister_task_definition(taskDefinition=arns[number])
    return SeededService(cluster=cluster, service=service, family=family, arns=arns)


def register_scalable_target(autoscaling: Any, cluster: str, service: str, minimum: int = 2, maximum: int = 10) -> None:
    autoscaling.register_scalable_target(
        ServiceNamespace="ecs",
        ResourceId=f"service/{cluster}/{service}",
        ScalableDimension="ecs:service:DesiredCount",
        MinCapacity=minimum,
        MaxCapacity=maximum,
    )


def myservice_revisions() -> list[RevisionSpec]:
    """Seed 002: myservice on the default cluster; revision 4 is the bad build, 2 was deregistered."""
    return [
        RevisionSpec(images={"app": "registry.example.com/myservice:1.0.0"}, env={"LOG_LEVEL": "info"}),
        RevisionSpec(images={"app": "registry.example.com/myservice:1.1.0"}, env={"LOG_LEVEL": "info"}),
        RevisionSpec(
            images={"app": "registry.example.com/myservice:1.2.0", "envoy": "envoyproxy/envoy:v1.29"},
            env={"LOG_LEVEL": "info", "FEATURE_X": "off"},
        ),
        RevisionSpec(
            images={"app": "registry.example.com/myservice:1.3.0", "envoy": "envoyproxy/envoy:v1.30"},
            env={"LOG_LEVEL": "debug", "FEATURE_X": "on"},
            cpu="512",
            memory="1024",
            command=["./server", "--workers=8"],
        ),
    ]


def seed_myservice(ecs: Any, autoscaling: Any, cluster: str = "default") -> SeededService:
    """The demo world: `myservice` on rev 4 (bad), rev 2 INACTIVE, autoscaling registered, plus a CodeDeploy service."""
    seeded = seed_service(ecs, cluster=cluster, service="myservice", revisions=myservice_revisions(), inactive=(2,))
    register_scalable_target(autoscaling, cluster, "myservice")
    seed_service(
        ecs,
        cluster=cluster,
        service="myservice-bluegreen",
        revisions=myservice_revisions()[:2],
        code_deploy=True,
    )
    return seeded
