"""The backend contract: what every `ports.Backend` must do, whatever technology sits behind it.

Each adapter's test module subclasses `BackendContract` and provides one fixture, `backend_case`, returning a
`BackendCase`: the backend, a target, and a world arranged so that revision `good` is an older healthy
revision and revision `current` is the current (bad) one, with `good` being the one right before it. The
suite then checks the semantics the flow relies on:

- history is ordered oldest first, with exactly one current revision, consistent with `current_revision`;
- `plan_rollback(None)` (and 0) means the previous revision; a missing revision raises RevisionNotFound
  listing those that exist; the current revision raises NothingToDo;
- `roll_back` then `watch_rollout` ends SUCCEEDED and the target runs the planned revision afterwards;
- calling `roll_back` twice for the same operation id does not roll back twice (a replica that crashed
  after calling it calls it again on takeover);
- a target that someone changed (`deploy`: a new revision deployed outside the bot) after the plan was made, or
  after this operation's rollback, is never rolled back over: `roll_back` refuses, saying what runs now;
- `status` answers.

    class TestHelmBackend(BackendContract):
        @pytest.fixture
        def backend_case(self, kubesim, helm_binary) -> BackendCase: ...
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from bot.core.catalog import Target
from bot.core.errors import NothingToDo, PermanentError, RevisionNotFound, RollbackRefused
from bot.core.operations import OperationId
from bot.core.rollouts import RevisionNumber, RollbackPlan, RolloutPhase, RolloutStatus
from bot.ports import Backend


@dataclass
class BackendCase:
    backend: Backend
    target: Target
    good: RevisionNumber
    current: RevisionNumber
    # A revision number that certainly does not exist for this target.
    missing: RevisionNumber = RevisionNumber(999)  # noqa: RUF009 - NewType, not a call with effects
    # How long a rollout may take in this backend's simulated world.
    watch_timeout: timedelta = timedelta(seconds=60)
    # Called after roll_back when the world needs a nudge to make progress (e.g. an ECS rollout driver).
    settle: Callable[[], None] = field(default=lambda: None)
    # Someone deploys a new revision outside the bot (kubectl set image, helm upgrade, a new task definition)
    # and it settles; returns the revision the target runs afterwards.
    deploy: Callable[[], RevisionNumber] | None = None


def _watch_to_end(case: BackendCase, plan: RollbackPlan) -> list[RolloutStatus]:
    statuses = []
    for status in case.backend.watch_rollout(case.target, plan, case.watch_timeout):
        statuses.append(status)
        if status.is_finished:
            break
        case.settle()
    return statuses


def _deploy(case: BackendCase) -> RevisionNumber:
    assert case.deploy is not None, "a backend case must say how someone deploys a new revision (deploy=…)"
    deployed = case.deploy()
    assert case.backend.current_revision(case.target) == deployed
    return deployed


class BackendContract:
    """Subclass me and provide a `backend_case` fixture. Every test here must pass for every backend."""

    @pytest.fixture
    def backend_case(self) -> BackendCase:
        raise NotImplementedError("a backend test module must provide the backend_case fixture")

    def test_history_is_oldest_first_with_exactly_one_current_revision(self, backend_case: BackendCase) -> None:
        history = backend_case.backend.history(backend_case.target)
        numbers = [revision.number for revision in history]
        assert numbers == sorted(numbers)
        assert len(set(numbers)) == len(numbers)
        assert [revision.number for revision in history if revision.is_current] == [backend_case.current]

    def test_current_revision_agrees_with_history(self, backend_case: BackendCase) -> None:
        history = backend_case.backend.history(backend_case.target)
        current = backend_case.backend.current_revision(backend_case.target)
        assert current == backend_case.current
        assert any(revision.number == current and revision.is_current for revision in history)
        assert any(revision.number == backend_case.good for revision in history)

    @pytest.mark.parametrize("requested", [None, 0], ids=["no-revision", "zero"])
    def test_plan_without_a_revision_means_the_previous_one(
        self, backend_case: BackendCase, requested: int | None
    ) -> None:
        plan = backend_case.backend.plan_rollback(
            backend_case.target, None if requested is None else RevisionNumber(requested), {}
        )
        assert plan.from_revision == backend_case.current
        assert plan.to_revision == backend_case.good

    def test_plan_for_an_explicit_revision_targets_it(self, backend_case: BackendCase) -> None:
        plan = backend_case.backend.plan_rollback(backend_case.target, backend_case.good, {})
        assert (plan.from_revision, plan.to_revision) == (backend_case.current, backend_case.good)

    def test_plan_for_a_missing_revision_lists_the_revisions_that_exist(self, backend_case: BackendCase) -> None:
        with pytest.raises(RevisionNotFound) as caught:
            backend_case.backend.plan_rollback(backend_case.target, backend_case.missing, {})
        existing: Sequence[int] = [revision.number for revision in backend_case.backend.history(backend_case.target)]
        assert set(caught.value.available) == set(existing)
        assert backend_case.good in caught.value.available

    def test_plan_for_the_current_revision_is_nothing_to_do(self, backend_case: BackendCase) -> None:
        with pytest.raises(NothingToDo):
            backend_case.backend.plan_rollback(backend_case.target, backend_case.current, {})

    def test_roll_back_then_watch_ends_succeeded_on_the_planned_revision(self, backend_case: BackendCase) -> None:
        backend, target = backend_case.backend, backend_case.target
        plan = backend.plan_rollback(target, None, {})
        receipt = backend.roll_back(target, plan, OperationId("op-contract-1"))
        backend_case.settle()
        statuses = _watch_to_end(backend_case, plan)
        assert statuses, "watch_rollout yielded nothing"
        assert statuses[-1].phase is RolloutPhase.SUCCEEDED
        assert all(not status.is_finished for status in statuses[:-1])
        expected = receipt.new_revision if receipt.new_revision is not None else plan.to_revision
        assert backend.current_revision(target) == expected
        history = backend.history(target)
        assert [revision.number for revision in history if revision.is_current] == [expected]

    def test_roll_back_twice_for_the_same_operation_rolls_back_once(self, backend_case: BackendCase) -> None:
        backend, target = backend_case.backend, backend_case.target
        plan = backend.plan_rollback(target, None, {})
        first = backend.roll_back(target, plan, OperationId("op-contract-2"))
        backend_case.settle()
        # Let the first rollback finish, so what follows compares settled worlds (controllers are asynchronous).
        assert _watch_to_end(backend_case, plan)[-1].phase is RolloutPhase.SUCCEEDED
        history_after_first = [revision.number for revision in backend.history(target)]
        current_after_first = backend.current_revision(target)
        second = backend.roll_back(target, plan, OperationId("op-contract-2"))
        backend_case.settle()
        assert _watch_to_end(backend_case, plan)[-1].phase is RolloutPhase.SUCCEEDED
        assert second.new_revision == first.new_revision
        assert [revision.number for revision in backend.history(target)] == history_after_first
        assert backend.current_revision(target) == current_after_first

    def test_roll_back_after_someone_deployed_since_the_plan_refuses_and_keeps_their_deploy(
        self, backend_case: BackendCase
    ) -> None:
        backend, target = backend_case.backend, backend_case.target
        plan = backend.plan_rollback(target, None, {})
        deployed = _deploy(backend_case)
        history_before = [revision.number for revision in backend.history(target)]

        with pytest.raises((RollbackRefused, PermanentError)) as refused:
            backend.roll_back(target, plan, OperationId("op-contract-3"))

        assert str(deployed) in str(refused.value), "the refusal should say which revision runs now"
        assert backend.current_revision(target) == deployed
        assert [revision.number for revision in backend.history(target)] == history_before

    def test_roll_back_again_after_someone_deployed_over_it_refuses_and_keeps_their_deploy(
        self, backend_case: BackendCase
    ) -> None:
        """A replica takes the operation over after this rollback was applied and someone deployed since."""
        backend, target = backend_case.backend, backend_case.target
        plan = backend.plan_rollback(target, None, {})
        backend.roll_back(target, plan, OperationId("op-contract-4"))
        backend_case.settle()
        assert _watch_to_end(backend_case, plan)[-1].phase is RolloutPhase.SUCCEEDED
        deployed = _deploy(backend_case)
        history_before = [revision.number for revision in backend.history(target)]

        with pytest.raises((RollbackRefused, PermanentError)) as refused:
            backend.roll_back(target, plan, OperationId("op-contract-4"))

        assert str(deployed) in str(refused.value), "the refusal should say which revision runs now"
        assert backend.current_revision(target) == deployed
        assert [revision.number for revision in backend.history(target)] == history_before

    def test_status_answers_with_the_current_revision(self, backend_case: BackendCase) -> None:
        status = backend_case.backend.status(backend_case.target)
        assert status.summary
        assert status.revision in (None, backend_case.current)

    def test_check_target_accepts_an_existing_target(self, backend_case: BackendCase) -> None:
        backend_case.backend.check_target(backend_case.target)
