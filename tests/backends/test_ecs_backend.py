"""The ECS backend against moto + the rollout driver, through boto3's standard configuration (AWS_ENDPOINT_URL).

Each watch runs on virtual time: every sleep of the backend's poll loop lets the driver take one step, so the
rollouts are deterministic and the tests fast while the backend's own polling schedule is exercised.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest

from bot.backends.aws_ecs import EcsBackend
from bot.backends.ecs_clients import EcsClients
from bot.core.catalog import EcsTarget, SlackUserId, Target, TargetName
from bot.core.catalog_approvals import ApprovalPolicy
from bot.core.errors import (
    BackendUnavailable,
    NothingToDo,
    RevisionNotFound,
    RollbackFailed,
    RollbackRefused,
    UnknownTarget,
)
from bot.core.operations import OperationId
from bot.core.rollouts import RevisionNumber, RollbackPlan, RolloutPhase, RolloutStatus
from sandbox.aws import FAIL, HANG, AwsWorld
from sandbox.aws.scenarios import RevisionSpec, myservice_revisions, register_scalable_target, seed_service
from sandbox.aws.testing import VirtualTime, sandbox_env

CLUSTER = "default"
SERVICE = "myservice"
TIMEOUT = timedelta(minutes=10)


@pytest.fixture(scope="module")
def world() -> Iterator[AwsWorld]:
    with AwsWorld() as running:
        yield running


@pytest.fixture
def aws(world: AwsWorld, monkeypatch: pytest.MonkeyPatch) -> AwsWorld:
    world.reset()
    for key, value in sandbox_env(world.url).items():
        monkeypatch.setenv(key, value)
    return world


@pytest.fixture
def vtime(aws: AwsWorld) -> VirtualTime:
    return VirtualTime(aws.driver)


@pytest.fixture
def backend(vtime: VirtualTime) -> EcsBackend:
    return EcsBackend(monotonic=vtime.monotonic, sleep=vtime.sleep)


@pytest.fixture
def ecs(aws: AwsWorld) -> Any:
    return aws.client("ecs")


@pytest.fixture
def autoscaling(aws: AwsWorld) -> Any:
    return aws.client("application-autoscaling")


def ecs_target(service: str = SERVICE, cluster: str = CLUSTER, role_arn: str | None = None) -> Target:
    return Target(
        name=TargetName(service),
        spec=EcsTarget(cluster=cluster, service=service, region="us-east-1", role_arn=role_arn),
        policy=ApprovalPolicy(approvers=(SlackUserId("U0AAA"),)),
    )


def arrange(ecs: Any, *, inactive: tuple[int, ...] = (), breaker: tuple[bool, bool] | None = (True, True)) -> None:
    """myservice on revision 4 (the bad build), revisions 1-3 older, `inactive` deregistered."""
    seed_service(
        ecs,
        cluster=CLUSTER,
        service=SERVICE,
        revisions=myservice_revisions(),
        inactive=inactive,
        circuit_breaker=breaker,
    )


def describe(ecs: Any) -> dict[str, Any]:
    service: dict[str, Any] = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    return service


def td_status(ecs: Any, revision: int) -> str:
    return str(ecs.describe_task_definition(taskDefinition=f"{SERVICE}:{revision}")["taskDefinition"]["status"])


def watch(backend: EcsBackend, plan: RollbackPlan, timeout: timedelta = TIMEOUT) -> list[RolloutStatus]:
    return list(backend.watch_rollout(ecs_target(), plan, timeout))


def roll_back(backend: EcsBackend, options: dict[str, bool | str] | None = None, to: int | None = None) -> RollbackPlan:
    plan = backend.plan_rollback(ecs_target(), None if to is None else RevisionNumber(to), options or {})
    backend.roll_back(ecs_target(), plan, OperationId("op-1"))
    return plan


# --- options and target checks ------------------------------------------------------------------------------


def test_options_declare_the_ecspresso_flags_with_deregister_refusing_no_wait(backend: EcsBackend) -> None:
    options = {option.name: option for option in backend.options()}
    assert set(options) == {"deregister", "no-wait", "suspend-auto-scaling", "resume-auto-scaling"}
    assert options["deregister"].conflicts_with == ("no-wait",)
    assert options["no-wait"].conflicts_with == ("deregister",)


def test_deregister_with_no_wait_is_refused_up_front(backend: EcsBackend, ecs: Any) -> None:
    arrange(ecs)
    with pytest.raises(RollbackRefused, match="--no-wait"):
        backend.plan_rollback(ecs_target(), None, {"deregister": True, "no-wait": True})


def test_check_target_accepts_a_rolling_service(backend: EcsBackend, ecs: Any) -> None:
    arrange(ecs)
    backend.check_target(ecs_target())


@pytest.mark.parametrize(
    ("service", "cluster"), [("nope", CLUSTER), (SERVICE, "nocluster")], ids=["missing-service", "missing-cluster"]
)
def test_check_target_reports_a_missing_service_or_cluster(
    backend: EcsBackend, ecs: Any, service: str, cluster: str
) -> None:
    arrange(ecs)
    with pytest.raises(UnknownTarget):
        backend.check_target(ecs_target(service, cluster))


def test_a_codedeploy_service_is_refused_with_an_explanation(backend: EcsBackend, ecs: Any) -> None:
    seed_service(ecs, cluster=CLUSTER, service="bluegreen", revisions=myservice_revisions()[:2], code_deploy=True)
    with pytest.raises(RollbackRefused, match=r"CodeDeploy \(blue/green\)"):
        backend.check_target(ecs_target("bluegreen"))
    with pytest.raises(RollbackRefused, match="CodeDeploy"):
        backend.plan_rollback(ecs_target("bluegreen"), RevisionNumber(1), {})


def test_an_unreachable_endpoint_is_a_temporary_error(monkeypatch: pytest.MonkeyPatch, aws: AwsWorld) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(BackendUnavailable):
        EcsBackend().current_revision(ecs_target())


# --- history and plans --------------------------------------------------------------------------------------


def test_history_lists_active_and_inactive_revisions_with_the_primary_marked(backend: EcsBackend, ecs: Any) -> None:
    arrange(ecs, inactive=(2,))
    history = backend.history(ecs_target())
    assert [(r.number, r.status, r.is_current) for r in history] == [
        (1, "ACTIVE", False),
        (2, "INACTIVE", False),
        (3, "ACTIVE", False),
        (4, "ACTIVE", True),
    ]
    current = history[-1]
    assert [(i.container, i.image) for i in current.images] == [
        ("app", "registry.example.com/myservice:1.3.0"),
        ("envoy", "envoyproxy/envoy:v1.30"),
    ]
    assert current.description is not None
    assert current.description == "PRIMARY deployment, COMPLETED, 2/2 running"


def test_no_revision_means_the_newest_active_revision_older_than_the_running_one(backend: EcsBackend, ecs: Any) -> None:
    seed_service(
        ecs,
        cluster=CLUSTER,
        service=SERVICE,
        revisions=[RevisionSpec(images={"app": f"app:{n}"}) for n in range(1, 6)],
        inactive=(4,),
    )
    plan = backend.plan_rollback(ecs_target(), None, {})
    assert (plan.from_revision, plan.to_revision) == (5, 3)
    assert any("INACTIVE skipped: myservice:4" in note for note in plan.notes)


def test_an_explicit_revision_is_that_revision_of_the_services_family(backend: EcsBackend, ecs: Any) -> None:
    arrange(ecs)
    plan = backend.plan_rollback(ecs_target(), RevisionNumber(1), {})
    assert (plan.from_revision, plan.to_revision) == (4, 1)
    assert plan.backend_data["to_task_definition"].endswith("task-definition/myservice:1")


def test_an_inactive_target_revision_is_refused_with_the_active_ones(backend: EcsBackend, ecs: Any) -> None:
    arrange(ecs, inactive=(2,))
    with pytest.raises(RevisionNotFound, match=r"myservice:2 is INACTIVE") as caught:
        backend.plan_rollback(ecs_target(), RevisionNumber(2), {})
    assert caught.value.available == (1, 3, 4)
    assert "myservice:1, myservice:3, myservice:4" in str(caught.value)


def test_a_missing_revision_is_refused_and_the_current_one_is_nothing_to_do(backend: EcsBackend, ecs: Any) -> None:
    arrange(ecs)
    with pytest.raises(RevisionNotFound, match="does not exist"):
        backend.plan_rollback(ecs_target(), RevisionNumber(42), {})
    with pytest.raises(NothingToDo):
        backend.plan_rollback(ecs_target(), RevisionNumber(4), {})


def test_the_preview_lists_images_env_cpu_memory_and_command(backend: EcsBackend, ecs: Any) -> None:
    arrange(ecs)
    plan = backend.plan_rollback(ecs_target(), None, {})
    changes = {(c.scope, c.field): (c.before, c.after) for c in plan.changes}
    assert changes == {
        ("task definition", "cpu"): ("512", "256"),
        ("task definition", "memory"): ("1024", "512"),
        ("container app", "image"): ("registry.example.com/myservice:1.3.0", "registry.example.com/myservice:1.2.0"),
        ("container app", "memory"): ("512", "256"),
        ("container app", "command"): ("./server --workers=8", None),
        ("container app", "env FEATURE_X"): ("on", "off"),
        ("container app", "env LOG_LEVEL"): ("debug", "info"),
        ("container envoy", "image"): ("envoyproxy/envoy:v1.30", "envoyproxy/envoy:v1.29"),
        ("container envoy", "memory"): ("512", "256"),
    }


def test_planning_changes_nothing_in_aws(backend: EcsBackend, ecs: Any, autoscaling: Any) -> None:
    arrange(ecs)
    register_scalable_target(autoscaling, CLUSTER, SERVICE)
    before = describe(ecs), autoscaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    backend.plan_rollback(ecs_target(), None, {"deregister": True, "suspend-auto-scaling": True})
    after = describe(ecs), autoscaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"]
    assert after == before
    assert [td_status(ecs, n) for n in (1, 2, 3, 4)] == ["ACTIVE"] * 4
    assert not ecs.list_tags_for_resource(resourceArn=before[0]["serviceArn"])["tags"]


# --- rolling back and watching ------------------------------------------------------------------------------


def test_a_rollback_progresses_to_completed_with_counts_and_new_events(
    backend: EcsBackend, ecs: Any, vtime: VirtualTime
) -> None:
    arrange(ecs)
    plan = roll_back(backend)
    statuses = watch(backend, plan)
    assert [s.phase for s in statuses[:-1]] == [RolloutPhase.PROGRESSING] * (len(statuses) - 1)
    final = statuses[-1]
    assert final.phase is RolloutPhase.SUCCEEDED
    assert (final.ready, final.desired) == (2, 2)
    assert "myservice:3 is the PRIMARY deployment, COMPLETED with 2/2 tasks running" in final.summary
    assert statuses[0].summary.startswith("PRIMARY myservice:3 running 0/2")
    assert "ACTIVE myservice:4 running 2/2" in statuses[0].summary
    events = [e for s in statuses for e in s.events]
    assert len(events) == len(set(events))
    assert events[-1] == "(service myservice) has reached a steady state."
    assert any("deployment completed." in e for e in events)
    assert sum("has started 1 tasks" in e for e in events) == 2  # each event once, although polled repeatedly
    primary = describe(ecs)["deployments"]
    assert [(d["status"], d["taskDefinition"].rsplit("/", 1)[-1], d["rolloutState"]) for d in primary] == [
        ("PRIMARY", "myservice:3", "COMPLETED")
    ]
    tags = {t["key"]: t["value"] for t in ecs.list_tags_for_resource(resourceArn=describe(ecs)["serviceArn"])["tags"]}
    assert (tags["rollbot:operation"], tags["rollbot:rolled-back-to"]) == ("op-1", "myservice:3")


def test_polling_starts_at_about_one_second_and_never_exceeds_five(
    backend: EcsBackend, ecs: Any, vtime: VirtualTime, aws: AwsWorld
) -> None:
    arrange(ecs)
    plan = roll_back(backend)
    aws.driver.plan_task_definition("myservice:3", HANG)
    statuses = watch(backend, plan, timeout=timedelta(seconds=60))
    assert statuses[-1].phase is RolloutPhase.FAILED
    assert vtime.sleeps[0] == pytest.approx(1.0)
    assert max(vtime.sleeps) <= 5.0
    assert sum(vtime.sleeps) == pytest.approx(60.0)


def test_a_target_that_also_fails_is_failed_with_ecs_reason(backend: EcsBackend, ecs: Any, aws: AwsWorld) -> None:
    arrange(ecs, breaker=(True, False))
    aws.driver.plan_task_definition("myservice:3", FAIL)
    statuses = watch(backend, roll_back(backend))
    final = statuses[-1]
    assert final.phase is RolloutPhase.FAILED
    assert final.reason == (
        "ECS marked the deployment of myservice:3 FAILED: ECS deployment circuit breaker: task failed to start."
    )
    assert any("deployment failed: tasks failed to start." in e for s in statuses for e in s.events)


def test_a_circuit_breaker_rollback_while_waiting_is_reported_as_such_not_as_success(
    backend: EcsBackend, ecs: Any, aws: AwsWorld
) -> None:
    arrange(ecs, breaker=(True, True))
    aws.driver.plan_task_definition("myservice:3", FAIL)
    statuses = watch(backend, roll_back(backend))
    final = statuses[-1]
    assert final.phase is RolloutPhase.FAILED
    assert final.reason is not None
    assert "circuit breaker stopped the rollback to myservice:3" in final.reason
    assert "rolled the service back to myservice:4 on its own" in final.reason
    # Let ECS finish its own rollback: the stock waiter then calls the service stable, which is the trap.
    while aws.driver.tick():
        pass
    waiter = ecs.get_waiter("services_stable")
    waiter.wait(cluster=CLUSTER, services=[SERVICE], WaiterConfig={"Delay": 1, "MaxAttempts": 2})
    assert backend.current_revision(ecs_target()) == 4


def test_a_rollout_that_hangs_times_out_with_the_last_counts(backend: EcsBackend, ecs: Any, aws: AwsWorld) -> None:
    arrange(ecs)
    aws.driver.plan_task_definition("myservice:3", HANG)
    final = watch(backend, roll_back(backend, {"deregister": True}), timeout=timedelta(seconds=30))[-1]
    assert final.phase is RolloutPhase.FAILED
    assert final.reason is not None
    assert final.reason.startswith("timed out after 30s waiting for myservice:3")
    assert "PRIMARY myservice:3 running 0/2" in final.reason
    assert [td_status(ecs, n) for n in (3, 4)] == ["ACTIVE", "ACTIVE"]


def test_deregister_removes_exactly_the_rolled_back_from_revision_after_success(backend: EcsBackend, ecs: Any) -> None:
    arrange(ecs)
    final = watch(backend, roll_back(backend, {"deregister": True}))[-1]
    assert final.phase is RolloutPhase.SUCCEEDED
    assert "deregistered myservice:4" in final.summary
    assert [td_status(ecs, n) for n in (1, 2, 3, 4)] == ["ACTIVE", "ACTIVE", "ACTIVE", "INACTIVE"]


def test_deregister_removes_nothing_when_the_rollback_fails(backend: EcsBackend, ecs: Any, aws: AwsWorld) -> None:
    arrange(ecs, breaker=(True, True))
    aws.driver.plan_task_definition("myservice:3", FAIL)
    final = watch(backend, roll_back(backend, {"deregister": True}))[-1]
    assert final.phase is RolloutPhase.FAILED
    assert "myservice:4 was not deregistered" in final.events[-1]
    assert [td_status(ecs, n) for n in (1, 2, 3, 4)] == ["ACTIVE"] * 4


def test_suspend_and_resume_leave_the_scalable_target_as_it_was(
    backend: EcsBackend, ecs: Any, autoscaling: Any, vtime: VirtualTime
) -> None:
    arrange(ecs)
    register_scalable_target(autoscaling, CLUSTER, SERVICE, minimum=2, maximum=8)
    autoscaling.register_scalable_target(
        ServiceNamespace="ecs",
        ResourceId=f"service/{CLUSTER}/{SERVICE}",
        ScalableDimension="ecs:service:DesiredCount",
        SuspendedState={
            "DynamicScalingInSuspended": False,
            "DynamicScalingOutSuspended": False,
            "ScheduledScalingSuspended": True,
        },
    )

    def scalable() -> dict[str, Any]:
        found: dict[str, Any] = autoscaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"][0]
        return {k: v for k, v in found.items() if k not in ("CreationTime", "ScalableTargetARN")}

    before = scalable()
    during: list[dict[str, Any]] = []
    vtime.on_sleep = lambda _: during.append(scalable()["SuspendedState"])
    plan = roll_back(backend, {"suspend-auto-scaling": True, "resume-auto-scaling": True})
    final = watch(backend, plan)[-1]
    assert final.phase is RolloutPhase.SUCCEEDED
    assert during
    assert all(state == dict.fromkeys(state, True) and len(state) == 3 for state in during)
    assert scalable() == before
    assert "auto scaling restored: suspended: scheduled" in final.events


def test_resume_also_restores_auto_scaling_after_a_failed_rollback(
    backend: EcsBackend, ecs: Any, autoscaling: Any, aws: AwsWorld
) -> None:
    arrange(ecs, breaker=(True, False))
    register_scalable_target(autoscaling, CLUSTER, SERVICE)
    aws.driver.plan_task_definition("myservice:3", FAIL)
    final = watch(backend, roll_back(backend, {"suspend-auto-scaling": True, "resume-auto-scaling": True}))[-1]
    assert final.phase is RolloutPhase.FAILED
    state = autoscaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"][0]["SuspendedState"]
    assert not any(state.values())


def test_no_wait_ends_once_ecs_accepted_the_change(backend: EcsBackend, ecs: Any, vtime: VirtualTime) -> None:
    arrange(ecs)
    statuses = watch(backend, roll_back(backend, {"no-wait": True}))
    assert len(statuses) == 1
    assert statuses[0].phase is RolloutPhase.SUCCEEDED
    assert "not waiting for the rollout (--no-wait)" in statuses[0].summary
    assert vtime.sleeps == []
    assert describe(ecs)["deployments"][0]["rolloutState"] == "IN_PROGRESS"


def test_roll_back_twice_for_one_operation_starts_one_deployment(backend: EcsBackend, ecs: Any) -> None:
    arrange(ecs)
    plan = backend.plan_rollback(ecs_target(), None, {})
    backend.roll_back(ecs_target(), plan, OperationId("op-7"))
    deployments = [d["id"] for d in describe(ecs)["deployments"]]
    receipt = backend.roll_back(ecs_target(), plan, OperationId("op-7"))
    assert [d["id"] for d in describe(ecs)["deployments"]] == deployments
    assert receipt.new_revision == 3
    assert receipt.message is not None
    assert "no second deployment" in receipt.message


def test_roll_back_again_after_ecs_undid_it_does_not_deploy_a_second_time(
    backend: EcsBackend, ecs: Any, aws: AwsWorld
) -> None:
    arrange(ecs, breaker=(True, True))
    aws.driver.plan_task_definition("myservice:3", FAIL)
    plan = backend.plan_rollback(ecs_target(), None, {})
    backend.roll_back(ecs_target(), plan, OperationId("op-8"))
    for _ in range(3):
        aws.driver.tick()
    assert backend.current_revision(ecs_target()) == 4  # the circuit breaker put 4 back
    deployments = [(d["id"], d["status"]) for d in describe(ecs)["deployments"]]
    backend.roll_back(ecs_target(), plan, OperationId("op-8"))
    assert [(d["id"], d["status"]) for d in describe(ecs)["deployments"]] == deployments
    assert backend.current_revision(ecs_target()) == 4


def test_a_service_that_moved_since_the_preview_is_not_rolled_back(backend: EcsBackend, ecs: Any) -> None:
    arrange(ecs)
    plan = backend.plan_rollback(ecs_target(), RevisionNumber(1), {})
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition="myservice:2")
    with pytest.raises(RollbackFailed, match="moved from myservice:4 to myservice:2"):
        backend.roll_back(ecs_target(), plan, OperationId("op-9"))


def test_a_watch_resumed_from_its_token_carries_on_without_repeating_events(
    backend: EcsBackend, ecs: Any, vtime: VirtualTime
) -> None:
    arrange(ecs)
    plan = roll_back(backend)
    first_watch = backend.watch_rollout(ecs_target(), plan, TIMEOUT)
    seen = [next(first_watch), next(first_watch)]
    first_watch.close()  # the replica died here
    token = seen[-1].resume_token
    assert token
    takeover = EcsBackend(monotonic=vtime.monotonic, sleep=vtime.sleep)
    rest = list(takeover.watch_rollout(ecs_target(), plan, TIMEOUT, resume_token=token))
    assert rest[-1].phase is RolloutPhase.SUCCEEDED
    before = {e for s in seen for e in s.events}
    after = [e for s in rest for e in s.events]
    assert before
    assert not before & set(after)


def test_status_reports_the_running_revision_and_its_deployments(backend: EcsBackend, ecs: Any) -> None:
    arrange(ecs)
    status = backend.status(ecs_target())
    assert status.revision == 4
    assert status.is_healthy
    assert status.summary == "myservice:4: 2/2 tasks running, COMPLETED"
    assert status.details[0].startswith("PRIMARY myservice:4")


# --- accounts -----------------------------------------------------------------------------------------------


def test_a_target_with_a_role_is_reached_through_assume_role_with_clients_reused(aws: AwsWorld) -> None:
    role = "arn:aws:iam::111111111111:role/rollbot"
    other_account = (
        boto3.session.Session(region_name="us-east-1")
        .client("sts")
        .assume_role(RoleArn=role, RoleSessionName="arrange")["Credentials"]
    )
    ecs_other = boto3.session.Session(
        aws_access_key_id=other_account["AccessKeyId"],
        aws_secret_access_key=other_account["SecretAccessKey"],
        aws_session_token=other_account["SessionToken"],
        region_name="us-east-1",
    ).client("ecs")
    seed_service(ecs_other, cluster=CLUSTER, service="payments", revisions=myservice_revisions()[:2])
    clients = EcsClients()
    backend = EcsBackend(clients)
    assert backend.current_revision(ecs_target("payments", role_arn=role)) == 2
    with pytest.raises(UnknownTarget):
        backend.current_revision(ecs_target("payments"))  # not in the bot's own account
    spec = ecs_target("payments", role_arn=role).spec
    assert isinstance(spec, EcsTarget)
    assert clients.ecs(spec) is clients.ecs(spec)
    assert clients.ecs(spec).meta.config.retries["mode"] == "standard"
    assert clients.ecs(spec).meta.endpoint_url == aws.url  # AWS_ENDPOINT_URL, boto3's standard configuration


def test_a_refused_update_does_not_leave_auto_scaling_suspended(
    backend: EcsBackend, ecs: Any, autoscaling: Any
) -> None:
    arrange(ecs)
    register_scalable_target(autoscaling, CLUSTER, SERVICE)
    plan = backend.plan_rollback(ecs_target(), None, {"suspend-auto-scaling": True})
    broken = plan.model_copy(update={"backend_data": {**plan.backend_data, "to_task_definition": "myservice:99"}})
    with pytest.raises(RollbackFailed):
        backend.roll_back(ecs_target(), broken, OperationId("op-10"))
    state = autoscaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"][0]["SuspendedState"]
    assert not any(state.values())
    assert backend.current_revision(ecs_target()) == 4


def test_resume_ignores_the_auto_scaling_state_an_earlier_operation_left_behind(
    backend: EcsBackend, ecs: Any, autoscaling: Any
) -> None:
    arrange(ecs)
    register_scalable_target(autoscaling, CLUSTER, SERVICE)
    ecs.tag_resource(
        resourceArn=describe(ecs)["serviceArn"],
        tags=[{"key": "rollbot:autoscaling-before", "value": "in=true out=true scheduled=true"}],
    )
    final = watch(backend, roll_back(backend, {"resume-auto-scaling": True}))[-1]
    assert final.phase is RolloutPhase.SUCCEEDED
    state = autoscaling.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"][0]["SuspendedState"]
    assert not any(state.values())


def test_a_poll_aws_does_not_answer_is_not_the_outcome_the_watch_carries_on(
    backend: EcsBackend, ecs: Any, aws: AwsWorld, vtime: VirtualTime
) -> None:
    arrange(ecs)
    plan = roll_back(backend)
    outages = iter([4])  # the second poll and its retry (AWS_MAX_ATTEMPTS=2) twice: two polls lost
    vtime.on_sleep = lambda _: aws.app.outage(next(outages, 0)) if len(vtime.sleeps) == 1 else None
    served = aws.app.outage_answers
    final = watch(backend, plan)[-1]
    assert final.phase is RolloutPhase.SUCCEEDED
    assert aws.app.outage_answers - served == 4
