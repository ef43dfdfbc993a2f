"""helm never sees the bot's secrets: the real helm and the credential plugin it starts get an allow-list.

The proof uses what a leak would go through: a kubeconfig user whose `exec` credential plugin helm runs on
every call to the cluster. The plugin here records the environment helm gave it and then answers with the
cluster's token, so the helm calls still succeed.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from bot.backends.helm_cli import HelmCliBackend
from bot.backends.helm_env import helm_environment
from bot.backends.kubernetes_api import KubernetesClients
from sandbox.kubesim.cluster import TOKEN, KubeSim, kubeconfig_dict
from tests.backends.helm_world import HELM, HelmWorld
from tests.backends.test_helm_backend import helm_target
from tests.backends.tls_front import TlsFront

# What the bot's own environment holds in production, none of which helm needs.
BOT_SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-secret-bot-token",
    "SLACK_APP_TOKEN": "xapp-secret-app-token",
    "SLACK_SIGNING_SECRET": "secret-signing-secret",
    "ROLLBOT_SLACK_BOT_TOKEN": "xoxb-secret-rollbot-token",
    "REDIS_URL": "redis://:secret-redis-password@redis:6379/0",
}
AWS_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIASECRETKEYID",
    "AWS_SECRET_ACCESS_KEY": "secret-aws-access-key",
    "AWS_SESSION_TOKEN": "secret-aws-session-token",
    "AWS_REGION": "eu-west-1",
}


def credential_plugin(path: Path, dump: Path) -> Path:
    """An exec credential plugin that writes its environment to `dump`, then hands out kubesim's token."""
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "kind": "ExecCredential",
        "status": {"token": TOKEN},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n/usr/bin/env > '{dump}'\necho '{json.dumps(credential)}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def exec_kubeconfig(path: Path, server: str, command: Path, args: list[str]) -> Path:
    config = kubeconfig_dict(server)
    config["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = True
    config["users"][0]["user"] = {
        "exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(command), "args": args}
    }
    path.write_text(yaml.safe_dump(config))
    return path


def dumped_environment(dump: Path) -> dict[str, str]:
    lines = dump.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


@pytest.fixture
def tls_kubesim(kubesim: KubeSim, tmp_path: Path) -> Iterator[str]:
    """kubesim behind https, so that helm runs the kubeconfig's credential plugin."""
    with TlsFront(int(kubesim.url.rsplit(":", 1)[1]), tmp_path) as front:
        yield front.url


@pytest.fixture
def installed(kubesim: KubeSim, tmp_path: Path, kubeconfig: Path) -> HelmWorld:
    world = HelmWorld(kubesim, tmp_path, kubeconfig)
    world.install()
    return world


def backend_with(world: HelmWorld, kubeconfig: Path, clients: KubernetesClients, extra: dict[str, str]):
    return HelmCliBackend(
        str(HELM),
        kubeconfig=str(kubeconfig),
        clients=clients,
        environment={**world.env, **extra},
        wait_timeout=timedelta(seconds=20),
    )


def test_helm_and_its_credential_plugin_never_see_the_bots_secrets(
    installed: HelmWorld, tls_kubesim: str, kube_clients: KubernetesClients, tmp_path: Path
) -> None:
    dump = tmp_path / "plugin-env"
    plugin = credential_plugin(tmp_path / "bin" / "cluster-login", dump)
    kubeconfig = exec_kubeconfig(tmp_path / "exec-kubeconfig", tls_kubesim, plugin, ["--cluster", "sandbox"])
    backend = backend_with(installed, kubeconfig, kube_clients, {**BOT_SECRETS, **AWS_CREDENTIALS})

    history = backend.history(helm_target())

    assert [revision.number for revision in history] == [1]
    seen = dumped_environment(dump)
    assert seen["HOME"] == installed.env["HOME"]
    assert seen["HELM_CACHE_HOME"] == installed.env["HELM_CACHE_HOME"]
    leaked = [name for name, value in {**BOT_SECRETS, **AWS_CREDENTIALS}.items() if value in dump.read_text()]
    assert leaked == []


def test_an_eks_kubeconfig_gives_its_aws_token_plugin_the_aws_credentials_and_nothing_else(
    installed: HelmWorld, tls_kubesim: str, kube_clients: KubernetesClients, tmp_path: Path
) -> None:
    dump = tmp_path / "plugin-env"
    # Named like the AWS CLI, as in the kubeconfig `aws eks update-kubeconfig` writes.
    plugin = credential_plugin(tmp_path / "bin" / "aws", dump)
    kubeconfig = exec_kubeconfig(
        tmp_path / "eks-kubeconfig", tls_kubesim, plugin, ["eks", "get-token", "--cluster-name", "sandbox"]
    )
    backend = backend_with(installed, kubeconfig, kube_clients, {**BOT_SECRETS, **AWS_CREDENTIALS})

    backend.history(helm_target())

    seen = dumped_environment(dump)
    assert {name: seen.get(name) for name in AWS_CREDENTIALS} == AWS_CREDENTIALS
    leaked = [name for name, value in BOT_SECRETS.items() if value in dump.read_text()]
    assert leaked == []


def test_every_helm_invocation_including_the_rollback_gets_only_the_allow_list(
    installed: HelmWorld, kube_clients: KubernetesClients, tmp_path: Path
) -> None:
    """A wrapper in place of the helm binary records what the bot passes, then runs the real helm."""
    record = tmp_path / "helm-envs"
    wrapper = tmp_path / "bin" / "helm-recording"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(f"#!/bin/sh\n/usr/bin/env >> '{record}'\necho '--- end' >> '{record}'\nexec '{HELM}' \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    installed.upgrade()
    backend = HelmCliBackend(
        str(wrapper),
        kubeconfig=str(installed.kubeconfig),
        clients=kube_clients,
        environment={**installed.env, **BOT_SECRETS, **AWS_CREDENTIALS},
        wait_timeout=timedelta(seconds=20),
    )
    target = helm_target()
    plan = backend.plan_rollback(target, None, {})

    backend.roll_back(target, plan, "op-env")  # type: ignore[arg-type]
    list(backend.watch_rollout(target, plan, timedelta(seconds=30)))

    invocations = [block for block in record.read_text().split("--- end\n") if block.strip()]
    assert len(invocations) >= 4  # version, history, get manifest…, rollback
    for block in invocations:
        names = {line.split("=", 1)[0] for line in block.splitlines() if "=" in line}
        assert names & (set(BOT_SECRETS) | set(AWS_CREDENTIALS)) == set()
    assert installed.statuses()[-1] == (3, "deployed", "Rollback to 1")


@pytest.mark.parametrize(
    ("name", "passed"),
    [
        ("PATH", True),
        ("HOME", True),
        ("KUBECONFIG", True),
        ("HELM_DRIVER", True),
        ("HELM_KUBETOKEN", True),
        ("HTTPS_PROXY", True),
        ("no_proxy", True),
        ("LC_ALL", True),
        ("TMPDIR", True),
        ("KUBERNETES_SERVICE_HOST", True),
        ("SLACK_BOT_TOKEN", False),
        ("SLACK_SIGNING_SECRET", False),
        ("ROLLBOT_SLACK_BOT_TOKEN", False),
        ("REDIS_URL", False),
        ("AWS_SECRET_ACCESS_KEY", False),
        ("AWS_SESSION_TOKEN", False),
        ("GITHUB_TOKEN", False),
    ],
)
def test_the_allow_list_without_an_aws_kubeconfig(name: str, passed: bool, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(kubeconfig_dict("http://127.0.0.1:1")))
    assert (name in helm_environment({name: "value"}, str(kubeconfig))) is passed


def test_an_unreadable_kubeconfig_passes_no_aws_credentials(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    assert helm_environment({"AWS_SECRET_ACCESS_KEY": "x", "PATH": "/bin"}, str(missing)) == {"PATH": "/bin"}


def test_the_kubeconfig_list_in_the_environment_is_searched_for_aws_users(tmp_path: Path) -> None:
    plain, eks = tmp_path / "plain", tmp_path / "eks"
    plain.write_text(yaml.safe_dump(kubeconfig_dict("http://127.0.0.1:1")))
    config = kubeconfig_dict("http://127.0.0.1:1")
    config["users"][0]["user"] = {"exec": {"command": "/usr/local/bin/aws-iam-authenticator", "args": ["token"]}}
    eks.write_text(yaml.safe_dump(config))
    environ = {"KUBECONFIG": f"{plain}:{eks}", "AWS_PROFILE": "prod"}
    assert helm_environment(environ)["AWS_PROFILE"] == "prod"
