"""Security audit against the real engine: the demo stack's planted problems, hardening a
throwaway copy of the stack (apply, verify, roll back), the tenant probe and the runbook."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import papermill as pm
import pytest
import yaml

from opslib import audit
from opslib import engine as od
from opslib.redact import fingerprint
from opslib.report import results_from_notebook

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "demo" / "compose.yaml"
SERVICES = ["api", "cache", "db", "web"]


def _demo_secrets() -> dict[str, str]:
    """The secret values planted in demo/compose.yaml (to prove they never show up)."""
    spec = yaml.safe_load(BASE.read_text())["services"]
    return {"POSTGRES_PASSWORD": str(spec["db"]["environment"]["POSTGRES_PASSWORD"]),
            "API_SECRET_KEY": str(spec["api"]["environment"]["API_SECRET_KEY"])}


def _assert_no_secret(*texts: str) -> None:
    for name, value in _demo_secrets().items():
        for text in texts:
            assert value not in text, f"value of {name} leaked"


def _rows(findings: pd.DataFrame, project: str, cid: str, source: str = "runtime") -> pd.DataFrame:
    """Findings of one id on the project's own containers (<project>-<service>-1)."""
    own = {f"{project}-{s}-1" for s in SERVICES}
    f = findings[(findings["id"] == cid) & (findings["source"] == source)]
    return f[f["container"].isin(own)] if source == "runtime" else f


@pytest.fixture(scope="module")
def shop_audit(docker_client: Any, shop: str) -> audit.AuditResult:
    return audit.audit_project(docker_client, shop, compose_files=[BASE])


def test_planted_runtime_problems_found_with_evidence(shop_audit: audit.AuditResult,
                                                     shop: str) -> None:
    f = shop_audit.findings
    root = _rows(f, shop, "4.1").set_index("service")
    assert "api" in root.index and "web" in root.index
    assert root.loc["api", "evidence"].startswith("Config.User=''")
    assert root.loc["api", "severity"] == "HIGH" and root.loc["api", "cis_legacy"] == "4.1"
    assert "db" not in root.index and "cache" not in root.index  # USER postgres / redis
    ro = _rows(f, shop, "5.13").set_index("service")
    assert sorted(ro.index) == SERVICES
    assert set(ro["evidence"]) == {"HostConfig.ReadonlyRootfs=false"}
    assert set(ro["cis_legacy"]) == {"5.12"}
    mem = _rows(f, shop, "5.11").set_index("service")
    assert sorted(mem.index) == ["cache", "db"]  # api and web have limits
    assert set(mem["evidence"]) == {"HostConfig.Memory=0"} and set(mem["cis_legacy"]) == {"5.10"}
    assert sorted(_rows(f, shop, "5.29")["service"]) == SERVICES
    assert sorted(_rows(f, shop, "5.26")["service"]) == SERVICES
    tag = _rows(f, shop, "OPS-IMG-TAG")
    assert tag["service"].tolist() == ["web"]
    assert "shop/web:latest" in tag.iloc[0]["evidence"]
    assert _rows(f, shop, "5.14").empty  # every port is bound to 127.0.0.1
    assert _rows(f, shop, "5.5").empty and _rows(f, shop, "5.32").empty


def test_plain_env_secrets_found_by_fingerprint_never_by_value(
        shop_audit: audit.AuditResult, shop: str) -> None:
    values = _demo_secrets()
    s = shop_audit.secrets
    pg = s[(s["name"] == "POSTGRES_PASSWORD") & (s["container"] == f"{shop}-db-1")]
    assert pg["service"].tolist() == ["db"] and pg["id"].tolist() == ["OPS-SEC-ENV"]
    assert pg.iloc[0]["fingerprint"] == fingerprint(values["POSTGRES_PASSWORD"])
    url = s[(s["name"] == "DATABASE_URL") & (s["service"] == "api")]
    assert set(url["reason"]) == {"password in URL"}
    assert set(url["fingerprint"]) == {fingerprint(values["POSTGRES_PASSWORD"])}
    assert url["shared_with"].str.contains("db:POSTGRES_PASSWORD").all()
    key = s[s["name"] == "API_SECRET_KEY"]
    assert set(key["source"]) >= {"container env", "compose environment"}
    sf = shop_audit.findings[shop_audit.findings["source"] == "secrets"]
    assert sf["evidence"].str.contains(fingerprint(values["POSTGRES_PASSWORD"])).any()
    _assert_no_secret(*(df.to_json() for df in (shop_audit.findings, shop_audit.secrets,
                                                shop_audit.dockerfiles, shop_audit.tmpfs)))


def test_tmpfs_paths_from_what_containers_write(shop_audit: audit.AuditResult,
                                                shop: str) -> None:
    t = shop_audit.tmpfs[shop_audit.tmpfs["container"].isin(
        {f"{shop}-{s}-1" for s in SERVICES})]
    paths = t.groupby("service")["path"].apply(set)
    assert {"/run", "/var/lib/nginx"} <= paths["web"]
    assert "/run/postgresql" in paths["db"]
    assert "/var/lib/postgresql/data" not in paths["db"]  # a volume stays writable
    assert "/tmp" in paths["api"]
    pg = t[(t["service"] == "db") & (t["path"] == "/run/postgresql")].iloc[0]
    assert pg["uid"] != "0" and pg["mode"] == "2775"


def test_hadolint_and_user_findings_on_demo_dockerfiles(shop_audit: audit.AuditResult) -> None:
    d = shop_audit.findings[shop_audit.findings["source"] == "dockerfile"]
    assert sorted(shop_audit.dockerfiles["service"]) == SERVICES
    pinning = d[d["id"].isin(["DL3002", "DL3006", "DL3007", "DL3008"])]
    assert sorted(set(pinning["service"])) == SERVICES
    assert pinning["evidence"].str.match(r"demo/\w+/Dockerfile:\d+: ").all()
    user = d[d["id"] == "4.1"]
    assert sorted(user["service"]) == ["api", "web"]
    assert user["evidence"].str.endswith("no USER instruction in the final stage").all()


def test_tenant_isolation_probe_on_shop(shop: str) -> None:
    t = audit.tenant_isolation_probe("http://127.0.0.1:8080/api")
    assert t["ok"].all(), t.to_dict(orient="records")
    assert len(t) == 7
    got = dict(zip(t["probe"], t["got"], strict=True))
    assert got["control: owner reads its order"].startswith("HTTP 200")
    assert got["read other tenant's order"] in ("HTTP 403", "HTTP 404")
    assert got["no token"] == "HTTP 401"


# ------------------------------------------------------------------ throwaway stack


@pytest.fixture
def throwaway(docker_client: Any, shop: str, tmp_path: Path,
              test_labels: dict[str, str]) -> Iterator[tuple[str, list[Path]]]:
    """A copy of the demo stack under its own project name, no published ports, labelled."""
    name = f"opslib-test-audit-{uuid.uuid4().hex[:8]}"
    labels = dict(test_labels)
    extra = tmp_path / "throwaway.yaml"
    extra.write_text(yaml.safe_dump({
        "services": {s: {"labels": labels} for s in SERVICES},
        "volumes": {v: {"labels": labels} for v in ("db-data", "cache-data")},
        "networks": {"default": {"labels": labels}},
    }))
    # `!reset` is a compose tag PyYAML cannot write: the port resets go in their own file.
    ports = tmp_path / "no-ports.yaml"
    ports.write_text("services:\n" + "".join(f"  {s}:\n    ports: !reset []\n"
                                             for s in SERVICES))
    files = [BASE, extra, ports]
    try:
        od.compose(["up", "-d", "--no-build", "--wait", "--wait-timeout", "180"], project=name,
                   files=files, timeout=300)
        yield name, files
    finally:
        od.compose(["down", "-v", "--remove-orphans"], project=name, files=files, check=False,
                   timeout=180)


def test_hardening_override_removes_findings_and_rolls_back(
        docker_client: Any, throwaway: tuple[str, list[Path]], tmp_path: Path) -> None:
    project, files = throwaway
    before = audit.runtime_findings(docker_client, project)
    assert not _rows(before, project, "5.11").empty and not _rows(before, project, "4.1").empty
    assert _rows(before, project, "5.9").empty  # ports reset: nothing published

    out = tmp_path / "out"
    plan = audit.plan_hardening(docker_client, project, seccomp_file=out / "seccomp.json")
    assert plan.services == SERVICES and plan.skipped.empty
    settings = plan.override["services"]
    assert settings["web"]["user"] == "33:33" and settings["api"]["user"] == "65534:65534"
    assert "user" not in settings["db"]  # already postgres
    assert any(t.startswith("/run/postgresql:uid=") for t in settings["db"]["tmpfs"])
    assert settings["db"]["deploy"]["resources"]["limits"]["memory"].endswith("M")
    assert "memory" not in settings["api"].get("deploy", {}).get("resources", {}).get(
        "limits", {})  # api has its own limit

    dry = audit.apply_hardening(plan, base_files=files, journal=out, apply=False)
    assert set(dry["status"]) == {"planned"} and not (out / "hardening-journal.jsonl").exists()

    done = audit.apply_hardening(plan, base_files=files, journal=out, apply=True,
                                 client=docker_client)
    assert done.set_index("service")["status"].to_dict() == {s: "hardened" for s in SERVICES}
    facts = od.inspect_facts(docker_client, project).set_index("service")
    assert set(facts["health"]) == {"healthy"} and facts["read_only"].all()
    assert json.loads((out / "seccomp.json").read_text())["defaultAction"] == "SCMP_ACT_ERRNO"

    after = audit.runtime_findings(docker_client, project)
    for cid in ("4.1", "5.3", "5.11", "5.13", "5.26", "5.29"):
        assert _rows(after, project, cid).empty, (cid, _rows(after, project, cid))
    assert _rows(after, project, "5.4").empty
    assert set(_rows(after, project, "5.12")["severity"]) <= {"INFO"}
    assert _rows(after, project, "OPS-IMG-TAG")["service"].tolist() == ["web"]  # needs a tag

    again = audit.apply_hardening(plan, base_files=files, journal=out, apply=True,
                                  client=docker_client)
    assert set(again["status"]) == {"already hardened"}  # resumed from the journal

    # A plan that breaks the cache (a user that cannot read redis.conf) is rolled back.
    bad_spec = {**settings["cache"], "user": "65534:65534"}
    bad = audit.HardeningPlan(project, {"services": {"cache": bad_spec}},
                              plan.actions[plan.actions["service"] == "cache"], plan.skipped,
                              plan.seccomp_file)
    rolled = audit.apply_hardening(bad, base_files=files, journal=out, apply=True,
                                   client=docker_client, timeout=60)
    row = rolled.set_index("service").loc["cache"]
    assert row["status"] == "rolled back" and "recreated from the base" in row["detail"]
    cache = od.service_container(docker_client, project, "cache")
    assert cache.attrs["Config"]["User"] == "redis"
    assert cache.attrs["State"]["Health"]["Status"] == "healthy"
    journal = [json.loads(x) for x in (out / "hardening-journal.jsonl").read_text().splitlines()]
    assert [e["status"] for e in journal if e["service"] == "cache"][-3:] == [
        "applying", "failed", "rolled back"]
    _assert_no_secret((out / "hardening-journal.jsonl").read_text(),
                      (out / "hardening-override.yaml").read_text())


# ------------------------------------------------------------------ the runbook


def test_security_audit_notebook_records_categories(shop: str, tmp_path: Path) -> None:
    out_nb = tmp_path / "security-audit.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "security-audit.ipynb"), str(out_nb),
                        parameters={"project": shop, "output_dir": str(tmp_path / "run"),
                                    "demo_data": True},
                        cwd=str(ROOT / "notebooks"), progress_bar=False)
    res = results_from_notebook(out_nb)
    cats = res["records"]["findings_by_category"]
    assert set(cats) == {"runtime", "secrets", "dockerfile", "vulns"}
    assert cats["runtime"]["HIGH"] >= 2 and cats["secrets"]["HIGH"] >= 3
    assert cats["vulns"]["CRITICAL"] == 3
    checks = {c["name"]: c["ok"] for c in res["checks"]}
    assert checks == {"runtime_no_high": False, "secrets_not_in_env": False,
                      "dockerfiles_clean": False, "no_fixable_critical": False,
                      "tenant_isolation": True}
    assert (tmp_path / "run" / "hardening-override.yaml").is_file()
    assert not (tmp_path / "run" / "hardening-journal.jsonl").exists()  # apply=False
    _assert_no_secret(out_nb.read_text(),
                      *(p.read_text() for p in (tmp_path / "run").iterdir()))


def test_security_audit_without_demo_data_never_shows_sample_reports(shop: str,
                                                                      tmp_path: Path) -> None:
    out_nb = tmp_path / "security-audit.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "security-audit.ipynb"), str(out_nb),
                        parameters={"project": shop, "output_dir": str(tmp_path / "run")},
                        cwd=str(ROOT / "notebooks"), progress_bar=False)
    res = results_from_notebook(out_nb)
    checks = {c["name"]: c for c in res["checks"]}
    assert checks["no_fixable_critical"]["status"] == "not_run"
    assert checks["tenant_isolation"]["status"] == "not_run"
    assert res["records"]["findings_by_category"]["vulns"]["total"] == 0
    assert "CVE-2024-45490" not in out_nb.read_text()  # the committed sample report's CVE
