"""The seed incidents, played as people play them: kubectl/helm to break things, Slack to recover."""

from __future__ import annotations

from collections.abc import Callable

from sandbox.demo.world import DemoFailed, DemoWorld, timed
from sandbox.slack.seed import ALICE, BOB


def break_bootcamp(world: DemoWorld) -> None:
    """Seed 004's steps: v1, then v2, then v10, an image that does not exist (the rollout stalls)."""
    image = "jocatalin/kubernetes-bootcamp"
    world.sh("kubectl", "create", "deployment", "kubernetes-bootcamp", f"--image={image}:v1", "--replicas=4")
    world.wait_until_rolled_out("deployment/kubernetes-bootcamp")
    for tag in ("v2", "v10"):
        world.sh("kubectl", "set", "image", "deployments/kubernetes-bootcamp", f"kubernetes-bootcamp={image}:{tag}")
        if tag == "v2":
            world.wait_until_rolled_out("deployment/kubernetes-bootcamp")
    world.sh("kubectl", "rollout", "status", "deployment/kubernetes-bootcamp", "--timeout=3s", check=False)


@timed("bootcamp (seed 004)")
def bootcamp(world: DemoWorld) -> None:
    world.say("seed 004: kubernetes-bootcamp v1 → v2 → v10, where v10 does not exist")
    break_bootcamp(world)
    world.sh("kubectl", "get", "pods")

    world.say("the on-call engineer asks rollbot; a second engineer approves with ✅")
    world.type_command(ALICE, "history bootcamp")
    world.type_command(ALICE, 'bootcamp --reason "v10 image does not exist"')
    request = world.request_message("bootcamp")
    world.react(BOB, request)
    phase = world.final_phase(request)
    if phase != "succeeded":
        raise DemoFailed(f"the rollback ended {phase}")

    world.say("afterwards, the cluster agrees")
    world.sh("kubectl", "get", "pods")
    world.sh("kubectl", "rollout", "history", "deployment/kubernetes-bootcamp")
    pods = world.sh(
        "kubectl",
        "get",
        "pods",
        "-l",
        "app=kubernetes-bootcamp",
        "-o",
        "jsonpath={range .items[*]}{.status.phase} {.spec.containers[0].image}{'\\n'}{end}",
        show=False,
    ).stdout.split("\n")
    running_v2 = [line for line in pods if line == "Running jocatalin/kubernetes-bootcamp:v2"]
    if len(running_v2) != 4:
        raise DemoFailed(f"expected 4 pods Running on v2, found: {pods}")
    world.say("4/4 pods Running on jocatalin/kubernetes-bootcamp:v2")


@timed("workshop (seed 000)")
def workshop(world: DemoWorld) -> None:
    world.say("seed 000: helm release workshop, upgraded to an image that does not exist")
    world.sh("helm", "create", "workshop", show=False)
    world.sh("helm", "install", "workshop", "./workshop", "--wait", "--timeout", "60s")
    world.sh("helm", "upgrade", "workshop", "./workshop", "--set", "image.tag=non-existing")
    world.sh("kubectl", "get", "pods", "-l", "app.kubernetes.io/instance=workshop")
    world.sh("helm", "history", "workshop")

    world.type_command(ALICE, "history workshop")
    world.type_command(ALICE, "workshop 1")
    request = world.request_message("workshop")
    world.react(BOB, request)
    phase = world.final_phase(request)
    if phase != "succeeded":
        raise DemoFailed(f"the rollback ended {phase}")
    world.sh("helm", "history", "workshop")
    world.sh("helm", "status", "workshop")


@timed("frontend (noticed by rollbot)")
def noticed(world: DemoWorld) -> None:
    world.say("frontend is deployed with an image that does not exist; nobody notices, rollbot does")
    world.sh("kubectl", "create", "deployment", "frontend", "--image=nginx:1.27", "--replicas=2")
    world.wait_until_rolled_out("deployment/frontend")
    world.sh("kubectl", "set", "image", "deployment/frontend", "nginx=nginx:non-existing")
    card = world.incident_card("frontend")

    world.say("the on-call engineer clicks the card's button; a second engineer approves with ✅")
    world.click_rollback(ALICE, card)
    request = world.request_message("frontend")
    world.react(BOB, request)
    phase = world.final_phase(request)
    if phase != "succeeded":
        raise DemoFailed(f"the rollback ended {phase}")
    resolution = world.incident_resolution(card)
    if resolution != "rolled_back":
        raise DemoFailed(f"the incident ended {resolution}")
    world.say("the card now says how it ended: rolled back, with the operation that did it")
    world.sh("kubectl", "get", "deployment/frontend", "-o", "jsonpath={.spec.template.spec.containers[0].image}")


SCENARIOS: dict[str, Callable[[DemoWorld], None]] = {"bootcamp": bootcamp, "workshop": workshop, "noticed": noticed}
