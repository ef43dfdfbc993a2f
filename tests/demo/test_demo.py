"""The README's first command plays the seed incidents end to end; it must keep working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_plays_every_seed_incident_to_a_healthy_end() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sandbox.demo", "all"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    # seed 004: the thread shows the rollback and its outcome, and the cluster agrees.
    assert "ImagePullBackOff" in output
    assert "Rolled back" in output
    assert "4/4 pods Running on jocatalin/kubernetes-bootcamp:v2" in output
    # seed 000: helm recorded the rollback as a new revision.
    assert "Rollback to 1" in output
    # seed 002: ECS is on the target revision and the rolled-back-from one is deregistered.
    assert "PRIMARY myservice:3 desired:2 running:2 COMPLETED" in output
    assert "1:ACTIVE 2:INACTIVE 3:ACTIVE 4:INACTIVE" in output
    # noticed: rollbot posted the card by itself, and the rollback from its button resolved it.
    assert "Failing · *frontend* · ErrImagePull" in output
    assert "Resolved · *frontend* · ErrImagePull: rolled back by `op-" in output
    assert "demo finished" in output
