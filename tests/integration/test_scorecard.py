"""The scorecard of a throwaway copy of the ledger stack goes up when a runbook's fix is applied.

The copy (project ``ledgercard``, no published ports) starts as the ledger does: postgres and
redis without memory limits, two services without a healthcheck. resource-tuning's dry run
leaves Resource limits at one star (no OOM kill, but limits missing); applying its plan sets the
limits, and the scorecard computed from those real runs shows three. The scorecard notebook run
headless reports this project only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opslib import scorecard

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "tests" / "stacks" / "ledger" / "compose.yaml"
PROJECT = "ledgercard"

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def ledger_copy(docker_client: Any) -> Iterator[str]:
    cmd = ["docker", "compose", "-p", PROJECT, "-f", str(COMPOSE)]
    subprocess.run([*cmd, "down", "-v", "--remove-orphans"], capture_output=True, timeout=300,
                   check=False)
    proc = subprocess.run([*cmd, "up", "-d", "--build", "--wait", "--wait-timeout", "240"],
                          capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{PROJECT} did not come up:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    try:
        yield PROJECT
    finally:
        subprocess.run([*cmd, "down", "-v", "--remove-orphans"], capture_output=True,
                       timeout=300, check=False)


def _opslib(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "opslib", *args], capture_output=True,
                          text=True, timeout=900, check=False, cwd=ROOT)


def _stars(outputs: Path, key: str) -> int | None:
    card = scorecard.compute_scorecard(scorecard.load_history(outputs), PROJECT)
    return card.category(key).stars


def test_applying_the_resource_plan_raises_the_stars(ledger_copy: str, tmp_path: Path) -> None:
    base = ("--outputs", str(tmp_path), "--project", ledger_copy, "-p", "duration_s", "4",
            "-p", "interval_s", "1")
    dry = _opslib("run", "resource-tuning", *base)
    assert dry.returncode == 2, dry.stdout + dry.stderr  # limits missing: a failed check
    assert _stars(tmp_path, "resources") == 1
    assert _stars(tmp_path, "backup") is None  # restore-drill never ran here: not assessed

    applied = _opslib("run", "resource-tuning", *base, "-p", "apply", "true")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert _stars(tmp_path, "resources") == 3

    gate = _opslib("scorecard", "--outputs", str(tmp_path), "--project", ledger_copy,
                   "--min-stars", "3")
    assert gate.returncode == 2 and "Backup/DR is not assessed" in gate.stderr
    data = json.loads(_opslib("scorecard", "--outputs", str(tmp_path), "--json").stdout)
    assert data["project"] == ledger_copy and data["categories"]["resources"]["stars"] == 3

    nb = _opslib("run", "scorecard", "--outputs", str(tmp_path), "-p", "project", ledger_copy,
                 "-p", "history_dir", str(tmp_path), "-p", "min_stars", "1")
    assert nb.returncode == 2, nb.stdout + nb.stderr  # with a minimum, not assessed is below it
    results = json.loads(next((tmp_path / "scorecard").glob("*/results.json")).read_text())
    statuses = {c["name"]: c["status"] for c in results["checks"]}
    assert statuses["stars_resources"] == "pass" and statuses["stars_backup"] == "fail"
    assert results["records"]["stars"]["resources"] == 3
    page = (next((tmp_path / "scorecard").glob("*/report.html"))).read_text()
    assert "ledgercard" in page and "'shop'" not in page
    index = (tmp_path / "index.html").read_text()
    assert index.index("ledgercard: overall") < index.index("Runs, newest first")
