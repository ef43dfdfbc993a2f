"""One ECS service as the API describes it: the service, its deployment controller, its task definitions.

`EcsService` is a DescribeServices answer with the names every step of the ECS backend needs; the functions here
read it, the revisions of its family and their task definitions, through `ecs_clients`, and refuse a service
whose deployment controller the bot cannot roll back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.backends import ecs_interpret as rules
from bot.backends.ecs_clients import EcsClients, translating_errors
from bot.core.catalog import EcsTarget, Target
from bot.core.errors import RollbackRefused, UnknownTarget

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient


@dataclass(frozen=True)
class EcsService:
    """A DescribeServices answer for one target, with the bits every step of a rollback needs."""

    spec: EcsTarget
    raw: Mapping[str, Any]

    @property
    def current(self) -> str:
        return rules.task_definition_name(rules.current_task_definition(self.raw))

    @property
    def family(self) -> str:
        return rules.split_task_definition(self.current)[0]

    @property
    def revision(self) -> int:
        return rules.split_task_definition(self.current)[1]

    @property
    def tags(self) -> dict[str, str]:
        return {str(t.get("key")): str(t.get("value")) for t in self.raw.get("tags") or ()}

    @property
    def controller(self) -> str:
        return str((self.raw.get("deploymentController") or {}).get("type") or "ECS")

    @property
    def label(self) -> str:
        return f"{self.spec.cluster}/{self.spec.service}"

    @property
    def resource_id(self) -> str:
        return f"service/{self.spec.cluster}/{self.spec.service}"


def describe_target(clients: EcsClients, target: Target, tags: bool = True) -> EcsService:
    """The target's service; a missing or INACTIVE (deleted) one is an UnknownTarget."""
    spec = _spec(target)
    ecs = clients.ecs(spec)
    label = f"{spec.cluster}/{spec.service}"
    with translating_errors(f"describing ECS service {label}"):
        answer = ecs.describe_services(cluster=spec.cluster, services=[spec.service], include=["TAGS"] if tags else [])
    services = answer.get("services") or []
    if not services:
        raise UnknownTarget(f"ECS service {spec.service} is not found in cluster {spec.cluster}")
    raw = services[0]
    if raw.get("status") == "INACTIVE":
        raise UnknownTarget(f"ECS service {label} is INACTIVE (deleted)")
    return EcsService(spec=spec, raw=raw)


def describe_service(clients: EcsClients, spec: EcsTarget) -> EcsService:
    """The service with its tags as ECS describes it now, whatever its status (read again after a rollout)."""
    ecs = clients.ecs(spec)
    with translating_errors(f"describing ECS service {spec.cluster}/{spec.service}"):
        answer = ecs.describe_services(cluster=spec.cluster, services=[spec.service], include=["TAGS"])
    services = answer.get("services") or []
    if not services:
        raise UnknownTarget(f"ECS service {spec.service} is not found in cluster {spec.cluster}")
    return EcsService(spec=spec, raw=services[0])


def refuse_unsupported(service: EcsService) -> None:
    """Only the rolling (ECS) deployment controller is rolled back with UpdateService."""
    if service.controller == "CODE_DEPLOY":
        raise RollbackRefused(
            f"ECS service {service.label} is deployed by CodeDeploy (blue/green), and the bot does not roll "
            "those back yet: an UpdateService would be refused by ECS. Stop the deployment in CodeDeploy "
            "(its auto-rollback restores the original task set) or create a CodeDeploy deployment of the "
            "earlier task definition"
        )
    if service.controller != "ECS":
        raise RollbackRefused(
            f"ECS service {service.label} uses the {service.controller} deployment controller; roll it back "
            "with the tool that manages its task sets"
        )


def revision_statuses(clients: EcsClients, service: EcsService) -> dict[int, str]:
    """Every revision of the service's family and whether it is ACTIVE or INACTIVE (paging to the end)."""
    ecs = clients.ecs(service.spec)
    statuses: dict[int, str] = {}
    with translating_errors(f"listing the task definitions of {service.family}"):
        for status in ("INACTIVE", "ACTIVE"):
            paginator = ecs.get_paginator("list_task_definitions")
            for page in paginator.paginate(familyPrefix=service.family, status=status):
                for arn in page.get("taskDefinitionArns") or ():
                    family, number = rules.split_task_definition(arn)
                    if family == service.family:  # familyPrefix is a prefix: web-worker is not web
                        statuses[number] = status
    return statuses


def task_definition(ecs: ECSClient, name: str) -> dict[str, Any]:
    with translating_errors(f"describing task definition {name}"):
        answer = ecs.describe_task_definition(taskDefinition=name)
    return dict(answer["taskDefinition"])


def _spec(target: Target) -> EcsTarget:
    if not isinstance(target.spec, EcsTarget):
        raise RollbackRefused(f"{target.name} is not an ECS target")
    return target.spec
