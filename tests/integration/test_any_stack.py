"""Every runbook on a second compose project that is not the demo (``tests/stacks/ledger``).

The ledger stack has the checklist's own service names (postgres, redis, backend, nginx), a
database and role that are not "shop", two services without a healthcheck, one unpublished
service, and two compose files outside demo/. Each runbook runs headless against it with only
``project`` set (everything else is discovered), must exit 0 or 2, and must report the ledger's
services only: no demo service, container or project name in its results.json or report.html.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "tests" / "stacks" / "ledger"
FILES = [STACK / "compose.yaml", STACK / "compose.ports.yaml"]
PROJECT = "ledger"
LEDGER_SERVICES = {"postgres", "redis", "backend", "nginx"}
DEMO_SERVICES = {"db", "cache", "api", "web"}
#: Demo names as they would appear in a report: container names, the project, its images.
DEMO_PATTERN = re.compile(r"\bshop-(db|cache|api|web)-\d\b|\bshop/(db|cache|api|web)\b|"
                          r"\bproject 'shop'|\bdemo/compose\.yaml\b")

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def ledger(docker_client: Any) -> Iterator[str]:
    """The ledger stack built from debian:bookworm-slim, up and (where it can be) healthy."""
    cmd = ["docker", "compose", "-p", PROJECT, *[a for f in FILES for a in ("-f", str(f))]]
    proc = subprocess.run([*cmd, "up", "-d", "--build", "--wait", "--wait-timeout", "240"],
                          capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        pytest.fail(f"the ledger stack did not come up:\n{proc.stdout[-2000:]}\n"
                    f"{proc.stderr[-3000:]}")
    yield PROJECT


def _run(runbook: str, tmp_path: Path, *params: str) -> tuple[int, dict[str, Any], str]:
    args = [sys.executable, "-m", "opslib", "run", runbook, "--outputs", str(tmp_path),
            "-p", "project", PROJECT, *params]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=900, check=False,
                          cwd=ROOT)
    runs = sorted((tmp_path / runbook).glob("*/results.json"))
    assert runs, f"{runbook} wrote no results.json:\n{proc.stdout}\n{proc.stderr}"
    results = json.loads(runs[-1].read_text())
    page = (runs[-1].parent / "report.html").read_text()
    return proc.returncode, results, page


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def _cells(page: str) -> set[str]:
    return {html.unescape(m).strip() for m in re.findall(r"<td[^>]*>(.*?)</td>", page, re.S)}


def assert_only_ledger(results: dict[str, Any], page: str) -> None:
    """No demo service appears as a value in results.json, a table cell, or a demo name."""
    values = set(_strings({"records": results.get("records"), "checks": results.get("checks")}))
    assert not values & DEMO_SERVICES, sorted(values & DEMO_SERVICES)
    assert not _cells(page) & DEMO_SERVICES, sorted(_cells(page) & DEMO_SERVICES)
    hits = [m.group(0) for text in (page, json.dumps(results)) for m in DEMO_PATTERN.finditer(text)]
    assert not hits, hits[:5]


RUNBOOKS = ["stack-overview", "log-cleanup", "resource-tuning", "restore-drill",
            "security-audit", "load-test-analysis"]


@pytest.mark.slow
@pytest.mark.parametrize("runbook", RUNBOOKS)
def test_runbook_runs_on_another_stack_and_reports_only_its_services(
        ledger: str, tmp_path: Path, runbook: str) -> None:
    code, results, page = _run(runbook, tmp_path, "--timeout", "600")
    assert code in (0, 2), (runbook, code, results.get("exit_reason"))
    assert_only_ledger(results, page)
    if runbook == "load-test-analysis":  # no results given: its SLO checks are not run
        assert {c["status"] for c in results["checks"]} == {"not_run"}
        return
    # The report names the ledger's own services somewhere (it looked at this project).
    assert _cells(page) & LEDGER_SERVICES or set(_strings(results)) & LEDGER_SERVICES


def test_overview_states_health_honestly(ledger: str, tmp_path: Path) -> None:
    code, results, _ = _run("stack-overview", tmp_path)
    assert code == 2, results.get("exit_reason")  # two services have no healthcheck
    checks = {c["name"]: c for c in results["checks"]}
    assert checks["all_services_have_healthcheck"]["status"] == "fail"
    assert "backend, redis" in checks["all_services_have_healthcheck"]["detail"]
    assert checks["all_services_healthy"]["status"] == "pass"  # none is unhealthy or stopped
    assert results["records"]["services_without_healthcheck"] == ["backend", "redis"]
    assert results["records"]["health_states"] == {
        "backend": "no healthcheck", "nginx": "healthy", "postgres": "healthy",
        "redis": "no healthcheck"}
    assert results["records"]["service_roles"] == {
        "backend": "http", "nginx": "nginx", "postgres": "postgres", "redis": "redis"}


def test_restore_drill_finds_the_database_and_its_owner(ledger: str, tmp_path: Path) -> None:
    code, results, _ = _run("restore-drill", tmp_path, "-p", "backup_dir",
                            str(tmp_path / "backups"))
    checks = {c["name"]: c for c in results["checks"]}
    assert checks["drill_verified"]["status"] == "pass", checks["drill_verified"]["detail"]
    assert results["records"]["db_service"] == "postgres"
    assert results["records"]["database"] == "books"
    assert results["records"]["backup_file"].startswith("ledger-books-")
    assert code in (0, 2)


def test_security_audit_without_reports_or_tenants_says_not_run(ledger: str,
                                                                 tmp_path: Path) -> None:
    code, results, _ = _run("security-audit", tmp_path)
    checks = {c["name"]: c for c in results["checks"]}
    assert checks["no_fixable_critical"]["status"] == "not_run"
    assert "trivy" in checks["no_fixable_critical"]["detail"]
    assert checks["tenant_isolation"]["status"] == "not_run"
    findings = results["records"]["findings_by_service"]
    assert set(findings) <= LEDGER_SERVICES, findings
    assert code == 2
