"""The ECS rollback's options: what each flag does, which combinations are refused, and the preview's notes.

`--deregister`, `--no-wait`, `--suspend-auto-scaling` and `--resume-auto-scaling` follow ecspresso's rollback
flags. `plan_notes` is what the preview says about the chosen revision, the service's running deployment and
circuit breaker, and what the chosen options will do (reading the service's scalable target for the last two).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from bot.backends import ecs_interpret as rules
from bot.backends.ecs_auto_scaling import describe_suspended, scalable_target
from bot.backends.ecs_clients import EcsClients
from bot.backends.ecs_service import EcsService
from bot.core.errors import CommandSyntaxError, RollbackRefused
from bot.core.rollouts import BackendOption

DEREGISTER = "deregister"
NO_WAIT = "no-wait"
SUSPEND_AUTO_SCALING = "suspend-auto-scaling"
RESUME_AUTO_SCALING = "resume-auto-scaling"

ROLLBACK_OPTIONS: Final = (
    BackendOption(
        name=DEREGISTER,
        help="after the rollback is confirmed, deregister the task definition rolled back from",
        conflicts_with=(NO_WAIT,),
    ),
    BackendOption(
        name=NO_WAIT,
        help="report once ECS accepted the change, without following the rollout",
        conflicts_with=(DEREGISTER,),
    ),
    BackendOption(
        name=SUSPEND_AUTO_SCALING,
        help="suspend the service's Application Auto Scaling (in, out and scheduled) before rolling back",
    ),
    BackendOption(
        name=RESUME_AUTO_SCALING,
        help="when the rollout is over, put Application Auto Scaling back as it was",
    ),
)


def validate_options(options: Mapping[str, bool | str]) -> dict[str, bool]:
    known = {option.name: option for option in ROLLBACK_OPTIONS}
    chosen: dict[str, bool] = {}
    for name, value in options.items():
        if name not in known:
            raise CommandSyntaxError(
                f"--{name} is not an ECS rollback option (known: {', '.join('--' + n for n in known)})"
            )
        if value not in (True, "true", "yes", "1", ""):
            continue
        chosen[name] = True
    if chosen.get(DEREGISTER) and chosen.get(NO_WAIT):
        raise RollbackRefused(
            "--deregister does not work together with --no-wait: the bot deregisters the old task definition "
            "only after it saw the rollback complete (ecspresso refuses the same combination)"
        )
    return chosen


def plan_notes(
    clients: EcsClients,
    service: EcsService,
    number: int,
    requested: int | None,
    inactive: set[int],
    options: Mapping[str, bool],
) -> list[str]:
    family = service.family
    notes: list[str] = []
    if not requested:
        skipped = sorted(n for n in inactive if number < n < service.revision)
        notes.append(
            f"no revision given: {family}:{number} is the newest ACTIVE revision older than the running "
            f"{service.current}"
            + (f" (INACTIVE skipped: {', '.join(f'{family}:{n}' for n in skipped)})" if skipped else "")
        )
    elif number > service.revision:
        notes.append(f"{family}:{number} is newer than the running {service.current}: this rolls forward")
    primary = rules.primary_deployment(service.raw) or {}
    if primary.get("rolloutState") == "IN_PROGRESS":
        notes.append(f"a deployment of {service.current} is still IN_PROGRESS; the rollback replaces it")
    breaker = (service.raw.get("deploymentConfiguration") or {}).get("deploymentCircuitBreaker") or {}
    if breaker.get("enable"):
        notes.append(
            "ECS deployment circuit breaker is on"
            + (
                " with rollback: if the rollback fails, ECS rolls back to the last completed deployment"
                if breaker.get("rollback")
                else ""
            )
        )
    if options.get(DEREGISTER):
        notes.append(f"{service.current} will be deregistered once {family}:{number} is confirmed COMPLETED")
    if options.get(NO_WAIT):
        notes.append("--no-wait: the bot reports once ECS accepts the change and does not follow the rollout")
    if options.get(SUSPEND_AUTO_SCALING) or options.get(RESUME_AUTO_SCALING):
        scalable = scalable_target(clients, service)
        if scalable is None:
            notes.append(f"no Application Auto Scaling target for {service.resource_id}: nothing to suspend")
        else:
            notes.append(
                f"auto scaling min {scalable.get('MinCapacity')} max {scalable.get('MaxCapacity')}, "
                f"now {describe_suspended(scalable.get('SuspendedState'))}"
                + ("; suspended (in, out, scheduled) during the rollback" if options.get(SUSPEND_AUTO_SCALING) else "")
                + ("; restored afterwards" if options.get(RESUME_AUTO_SCALING) else "")
            )
    return notes
