"""Fixtures for backend tests: a fresh kubesim per test and a kubeconfig pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.backends.kubernetes_api import KubernetesClients
from sandbox.kubesim.cluster import KubeSim

# Fast pods keep rollouts short; the rules under test do not depend on the delay.
POD_READY_SECONDS = 0.1


@pytest.fixture
def kubesim(request: pytest.FixtureRequest) -> Iterator[KubeSim]:
    """A fresh kubesim; `@pytest.mark.parametrize("kubesim", [seconds], indirect=True)` slows its pods down."""
    with KubeSim(pod_ready_seconds=getattr(request, "param", POD_READY_SECONDS)) as sim:
        yield sim


@pytest.fixture
def kubeconfig(kubesim: KubeSim, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    kubesim.write_kubeconfig(path)
    return path


@pytest.fixture
def kube_clients(kubeconfig: Path) -> Iterator[KubernetesClients]:
    clients = KubernetesClients(str(kubeconfig))
    yield clients
    clients.close()
