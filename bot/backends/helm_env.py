"""The environment every helm subprocess runs with: an allow-list, never the bot's own environment.

The bot's environment holds its secrets (the Slack bot token and signing secret, the AWS keys it uses for ECS,
the Redis password inside REDIS_URL). helm needs none of them, and a helm plugin, a post-renderer or a
credential helper it starts would see whatever helm was given. So helm gets only what locates and reaches the
cluster: PATH, HOME, the kubeconfig, its own HELM_* settings, proxies, locale and temp dirs, the in-cluster
service address. AWS_* variables pass only when a kubeconfig user authenticates through an AWS `exec` plugin
(`aws eks get-token`, `aws-iam-authenticator`): that plugin is a child of helm and needs them to mint a token.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

# Variables helm (a Go program) or the processes it starts read to find things, never credentials of the bot.
PASSED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "KUBECONFIG",
        # A bot running in a pod without a kubeconfig: helm's in-cluster config reads these two.
        "KUBERNETES_SERVICE_HOST",
        "KUBERNETES_SERVICE_PORT",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        # helm's default config, cache and data paths follow the XDG base directories.
        "XDG_CACHE_HOME",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        # A private CA for the API server or a registry.
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)
# Whole families: helm's own settings (HELM_NAMESPACE, HELM_DRIVER, HELM_*_HOME…) and the locale categories.
PASSED_PREFIXES = ("HELM_", "LC_")
# Passed only when a kubeconfig user runs an AWS exec plugin (see `needs_aws_credentials`).
AWS_PREFIX = "AWS_"
# Commands of the exec plugins that mint EKS tokens from AWS credentials.
AWS_EXEC_COMMANDS = frozenset({"aws", "aws-iam-authenticator"})


def helm_environment(environ: Mapping[str, str], kubeconfig: str | None = None) -> dict[str, str]:
    """The allow-listed subset of `environ` for a helm subprocess using `kubeconfig` (else $KUBECONFIG)."""
    passed = {
        name: value for name, value in environ.items() if name in PASSED_NAMES or name.startswith(PASSED_PREFIXES)
    }
    if needs_aws_credentials(kubeconfig_paths(environ, kubeconfig)):
        passed.update({name: value for name, value in environ.items() if name.startswith(AWS_PREFIX)})
    return passed


def kubeconfig_paths(environ: Mapping[str, str], kubeconfig: str | None) -> list[Path]:
    """The files helm will read its kubeconfig from: `--kubeconfig`, else $KUBECONFIG's list, else ~/.kube/config."""
    if kubeconfig:
        return [Path(kubeconfig)]
    listed = [Path(part) for part in environ.get("KUBECONFIG", "").split(os.pathsep) if part]
    if listed:
        return listed
    home = environ.get("HOME")
    return [Path(home) / ".kube" / "config"] if home else []


def needs_aws_credentials(paths: Iterable[Path]) -> bool:
    """Whether any user in these kubeconfigs authenticates with an AWS exec plugin (EKS)."""
    for path in paths:
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue  # helm will say what is wrong with it; passing no credentials is the safe default
        if any(_is_aws_exec(user) for user in _users(document)):
            return True
    return False


def _users(document: Any) -> list[Mapping[str, Any]]:
    if not isinstance(document, Mapping):
        return []
    found = []
    for entry in document.get("users") or ():
        user = entry.get("user") if isinstance(entry, Mapping) else None
        if isinstance(user, Mapping):
            found.append(user)
    return found


def _is_aws_exec(user: Mapping[str, Any]) -> bool:
    plugin = user.get("exec")
    if not isinstance(plugin, Mapping):
        return False
    command = Path(str(plugin.get("command") or "")).name
    return command in AWS_EXEC_COMMANDS
