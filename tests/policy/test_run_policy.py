"""The run's honesty rules (tests/_policy.py), proven by running pytest on a tiny generated project.

Each test writes a few test files into a temporary directory, wires in the project's real conftest (its hooks and
its `redis_server` fixture), and runs pytest in a subprocess with a controlled environment, as CI would.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CONFTEST = """\
from tests.conftest import pytest_collection_modifyitems, pytest_configure, pytest_terminal_summary, redis_server
"""

USES_REDIS = """\
def test_talks_to_redis(redis_server):
    assert redis_server.is_running
"""


def run_pytest(
    project: Path, files: dict[str, str], *args: str, ci: bool, path: str
) -> subprocess.CompletedProcess[str]:
    (project / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    (project / "conftest.py").write_text(CONFTEST)
    for name, text in files.items():
        target = project / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
    env = {"PATH": path, "PYTHONPATH": str(REPO), "HOME": str(project)}
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-r", "aR", *args, str(project)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def path_without_redis(tmp_path: Path) -> str:
    """A PATH on which no redis-server can be found."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    return str(empty)


def test_under_ci_a_missing_redis_server_fails_the_run_and_names_it(tmp_path: Path, path_without_redis: str) -> None:
    done = run_pytest(tmp_path, {"test_redis.py": USES_REDIS}, ci=True, path=path_without_redis)
    assert done.returncode != 0, done.stdout
    assert "redis-server is not available" in done.stdout
    assert "scripts/setup.sh installs it" in done.stdout
    assert "1 error" in done.stdout


def test_without_ci_a_missing_redis_server_skips(tmp_path: Path, path_without_redis: str) -> None:
    done = run_pytest(tmp_path, {"test_redis.py": USES_REDIS}, ci=False, path=path_without_redis)
    assert done.returncode == 0, done.stdout
    assert "1 skipped" in done.stdout
    assert "needs redis-server" in done.stdout


def test_an_e2e_test_marked_flaky_with_a_reason_is_rerun_and_listed(tmp_path: Path) -> None:
    counter = tmp_path / "attempts"
    flaky = f"""\
        from pathlib import Path

        import pytest

        @pytest.mark.flaky(reruns=2, reason="the bot and kubesim race for two cores")
        def test_passes_on_the_second_attempt():
            attempts = Path({str(counter)!r})
            seen = int(attempts.read_text()) if attempts.exists() else 0
            attempts.write_text(str(seen + 1))
            assert seen >= 1, "first attempt loses the race"
    """
    done = run_pytest(tmp_path, {"tests/e2e_demo/test_race.py": flaky}, ci=True, path="/usr/bin:/bin")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed, 1 rerun" in done.stdout
    assert "RERUN tests/e2e_demo/test_race.py::test_passes_on_the_second_attempt" in done.stdout
    assert (
        "tests/e2e_demo/test_race.py::test_passes_on_the_second_attempt (reruns=2): "
        "the bot and kubesim race for two cores"
    ) in done.stdout


def test_a_flaky_marker_outside_e2e_or_without_a_reason_stops_the_run(tmp_path: Path) -> None:
    outside = """\
        import pytest

        @pytest.mark.flaky(reruns=1, reason="timing")
        def test_unit():
            pass
    """
    unexplained = """\
        import pytest

        @pytest.mark.flaky(reruns=3)
        def test_scenario():
            pass
    """
    files = {"tests/core/test_unit.py": outside, "tests/e2e_demo/test_scenario.py": unexplained}
    done = run_pytest(tmp_path, files, ci=False, path="/usr/bin:/bin")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "tests/core/test_unit.py::test_unit: only tests under tests/e2e_* may be retried" in done.stderr
    assert "tests/e2e_demo/test_scenario.py::test_scenario: write down why it is flaky" in done.stderr
    assert "passed" not in done.stdout


def test_global_reruns_are_refused(tmp_path: Path) -> None:
    done = run_pytest(
        tmp_path, {"test_ok.py": "def test_ok():\n    pass\n"}, "--reruns", "2", ci=False, path="/usr/bin:/bin"
    )
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "global reruns are disabled" in done.stderr
