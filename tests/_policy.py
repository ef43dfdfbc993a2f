"""The suite's honesty rules, as a pytest plugin (loaded by `tests/conftest.py`).

Two rules, both about a test run telling the truth:

- **No blanket reruns.** pytest-rerunfailures may retry a test only when the test says so with
  `@pytest.mark.flaky(reruns=N, reason="…")` *and* it lives under `tests/e2e_*`, where a real timing race between
  several servers on a small machine is plausible. A `flaky` marker anywhere else, or without a written reason,
  stops the run at collection; so does a global `--reruns`/`--force-reruns`. Every flaky-marked test is listed in the
  terminal summary with its reason, and every rerun shows as `R` (`-r aR`).
- **CI does not skip for a missing tool.** Locally a test that needs `redis-server`, `helm`, `helm3` or `kubectl`
  is skipped when the binary is missing; with `CI=true` the same test fails and names the missing binary, because a
  green CI run that skipped half the integration tests proves nothing.

What this is not: a retry policy for the bot (that lives in the adapters) or a way to mark slow tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

# The only directories whose tests may carry a `flaky` marker: end-to-end scenarios that run several real servers.
FLAKY_ALLOWED_PREFIX = "e2e_"
# Values of $CI that mean "this is a CI run" (GitHub Actions and GitLab set "true"; some runners set "1").
CI_TRUTHY = frozenset({"true", "1", "yes"})
SETUP_HINT = "scripts/setup.sh installs it"

_FLAKY_KEY = pytest.StashKey[list["FlakyTest"]]()


@dataclass(frozen=True)
class FlakyTest:
    nodeid: str
    reruns: int
    reason: str


def is_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in CI_TRUTHY


def require_tool(tool: str, found: bool, detail: str = "") -> None:
    """Skip (locally) or fail (under CI) the current test when `tool` is missing; do nothing when it is found."""
    if found:
        return
    missing_tool(tool, detail)


def missing_tool(tool: str, detail: str = "") -> NoReturn:
    """The current test cannot run without `tool`: a skip locally, a failure naming the tool under `CI=true`."""
    where = f" ({detail})" if detail else ""
    if is_ci():
        pytest.fail(
            f"{tool} is not available{where}. Under CI=true a missing tool fails the run instead of skipping; "
            f"{SETUP_HINT}",
            pytrace=False,
        )
    pytest.skip(f"needs {tool}{where}; {SETUP_HINT}")


def _is_e2e(item: pytest.Item, rootpath: Path) -> bool:
    try:
        parts = item.path.relative_to(rootpath).parts
    except ValueError:
        return False
    return len(parts) > 2 and parts[0] == "tests" and parts[1].startswith(FLAKY_ALLOWED_PREFIX)


def _judge_flaky(item: pytest.Item, mark: pytest.Mark, rootpath: Path) -> FlakyTest | str:
    """The flaky test this marker declares, or what is wrong with it."""
    reason = mark.kwargs.get("reason")
    reruns = mark.kwargs.get("reruns", mark.args[0] if mark.args else None)
    if not _is_e2e(item, rootpath):
        return f"only tests under tests/{FLAKY_ALLOWED_PREFIX}* may be retried; fix the test instead"
    if not isinstance(reason, str) or not reason.strip():
        return 'write down why it is flaky: @pytest.mark.flaky(reruns=N, reason="…")'
    if not isinstance(reruns, int) or isinstance(reruns, bool) or reruns < 1:
        return "say how many reruns it may have: reruns=N with N ≥ 1"
    return FlakyTest(item.nodeid, reruns, reason)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_FLAKY_KEY] = []
    if not config.pluginmanager.hasplugin("rerunfailures"):
        return
    global_reruns = config.getoption("reruns", None) or config.getini("reruns") or 0
    forced = config.getoption("force_reruns", None)
    if int(global_reruns) > 0 or forced:
        raise pytest.UsageError(
            "global reruns are disabled in this project: a failing test must stay visible. Mark a genuinely "
            'flaky end-to-end test with @pytest.mark.flaky(reruns=N, reason="…") instead.'
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problems: list[str] = []
    flaky: list[FlakyTest] = []
    for item in items:
        for mark in item.iter_markers("flaky"):
            verdict = _judge_flaky(item, mark, config.rootpath)
            if isinstance(verdict, FlakyTest):
                flaky.append(verdict)
            else:
                problems.append(f"  {item.nodeid}: {verdict}")
    if problems:
        raise pytest.UsageError("flaky marker not allowed:\n" + "\n".join(problems))
    config.stash[_FLAKY_KEY] = flaky


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On a pytest-xdist worker: hand this worker's flaky-marked tests to the controller, which reports them."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["flaky_marked"] = [[t.nodeid, t.reruns, t.reason] for t in session.config.stash.get(_FLAKY_KEY, [])]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """On the pytest-xdist controller: gather what each worker found (the controller collects nothing itself)."""
    found = getattr(node, "workeroutput", {}).get("flaky_marked", [])
    known = node.config.stash.get(_FLAKY_KEY, [])
    seen = {test.nodeid for test in known}
    known.extend(FlakyTest(n, r, why) for n, r, why in found if n not in seen)
    node.config.stash[_FLAKY_KEY] = known


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    flaky = config.stash.get(_FLAKY_KEY, [])
    if not flaky:
        terminalreporter.write_line("flaky-marked tests: none")
        return
    terminalreporter.section("flaky-marked tests (may be rerun; each rerun shows as R)")
    for test in flaky:
        terminalreporter.write_line(f"{test.nodeid} (reruns={test.reruns}): {test.reason}")
