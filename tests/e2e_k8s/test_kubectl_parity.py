"""rollbot's rollback is kubectl's rollback: same target revision, same patch, same renumbering.

Each case breaks a workload the same way on two fresh clusters, then undoes it once with the real
`kubectl rollout undo` and once through rollbot's signed-HTTP Slack flow, and compares what kubectl sees.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bot.app import RollbotApp
from bot.core.catalog import WorkloadKind
from sandbox.slack.driver import SlackDriver
from sandbox.slack.seed import SIGNING_SECRET
from sandbox.slack.server import FakeSlack
from tests.e2e_k8s.conftest import KubeCluster
from tests.e2e_k8s.scenarios import break_workload, observe, undo_with_kubectl, undo_with_rollbot


@pytest.mark.parametrize("to_revision", [None, 1], ids=["previous", "to-revision-1"])
@pytest.mark.parametrize("kind", list(WorkloadKind), ids=[kind.value for kind in WorkloadKind])
def test_rollbot_undo_matches_kubectl_undo(
    kind: WorkloadKind,
    to_revision: int | None,
    make_cluster: Callable[[str], KubeCluster],
    make_bot: Callable[[KubeCluster], RollbotApp],
    fake_slack: FakeSlack,
) -> None:
    by_kubectl = make_cluster("kubectl")
    break_workload(by_kubectl, kind)
    undo_with_kubectl(by_kubectl, kind, to_revision)
    expected = observe(by_kubectl, kind)

    by_rollbot = make_cluster("rollbot")
    break_workload(by_rollbot, kind)
    bot = make_bot(by_rollbot)
    with SlackDriver(bot.events_url, SIGNING_SECRET, fake_slack) as slack:
        undo_with_rollbot(slack, fake_slack, bot, kind, to_revision)
    by_rollbot.kubectl("rollout", "status", f"{kind.value.lower()}/{observe_name(kind)}", "--timeout=60s")
    actual = observe(by_rollbot, kind)

    assert actual.template == expected.template
    assert actual.revisions == expected.revisions
    assert actual.history == expected.history
    assert actual.images == expected.images


def observe_name(kind: WorkloadKind) -> str:
    from tests.e2e_k8s.scenarios import WORKLOADS

    return WORKLOADS[kind][0]
