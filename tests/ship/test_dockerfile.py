"""The Dockerfile cannot be built on these machines; these checks keep its promises from drifting.

Multi-stage, a pinned base, helm at the version the test suite runs (verified by sha256), a non-root final
stage without build tools, and a build context that carries no tests, sandbox or local state.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests._policy import require_tool

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "Dockerfile").read_text(encoding="utf-8")
HELM = REPO / ".tools" / "bin" / "helm"


def stages() -> list[str]:
    """The text of each stage, split at every FROM."""
    parts = re.split(r"(?m)^FROM ", DOCKERFILE)
    return ["FROM " + part for part in parts[1:]]


def arg_default(name: str) -> str:
    match = re.search(rf"(?m)^ARG {name}=(\S+)$", DOCKERFILE)
    assert match, f"ARG {name} has no default"
    return match.group(1)


def test_is_multi_stage_on_a_version_pinned_base() -> None:
    assert len(stages()) == 3
    base = arg_default("PYTHON_IMAGE")
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    assert all(stage.startswith("FROM ${PYTHON_IMAGE}") for stage in stages())


def test_helm_is_pinned_and_verified_for_each_architecture() -> None:
    assert re.fullmatch(r"v\d+\.\d+\.\d+", arg_default("HELM_VERSION"))
    for arch in ("AMD64", "ARM64"):
        assert re.fullmatch(r"[0-9a-f]{64}", arg_default(f"HELM_SHA256_{arch}"))
    helm_stage = stages()[0]
    assert "sha256sum -c -" in helm_stage
    # The checksum is checked before the archive is unpacked.
    assert helm_stage.index("sha256sum -c") < helm_stage.index("tar -xzf")


@pytest.mark.needs_helm
def test_the_image_ships_the_helm_version_the_tests_run() -> None:
    require_tool("helm", HELM.exists(), f"the real helm at {HELM}")
    version = subprocess.run([str(HELM), "version", "--short"], capture_output=True, text=True, check=True).stdout
    assert version.startswith(arg_default("HELM_VERSION") + "+")


def test_final_stage_runs_as_non_root_without_build_tools() -> None:
    final = stages()[-1]
    assert re.search(r"(?m)^USER 10001:10001$", final)
    for tool in ("apt-get", "apk ", "curl", "wget", "gcc", "pip install", "build-essential"):
        assert tool not in final, tool
    copied = re.findall(r"(?m)^COPY --from=(\w+) (\S+)", final)
    assert copied == [("helm", "/usr/local/bin/helm"), ("build", "/opt/rollbot")]
    assert 'ENTRYPOINT ["rollbot"]' in final
    assert 'CMD ["serve"]' in final
    assert "HOME=/tmp" in final  # with a read-only root filesystem, only /tmp is writable


def test_build_context_carries_only_the_package() -> None:
    ignore = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert ignore[next(i for i, line in enumerate(ignore) if not line.startswith("#"))] == "*"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == {"pyproject.toml", "requirements.lock", "README.md", "bot", "handlers"}
    copied = set(re.findall(r"(?m)^COPY (?!--from)(.+) \S+$", DOCKERFILE))
    sources = {source for line in copied for source in line.split()}
    assert sources <= allowed, sources - allowed
