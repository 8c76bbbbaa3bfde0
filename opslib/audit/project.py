"""The whole audit of a project: findings of every kind, the summary, the checks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from opslib import demo
from opslib import engine as od
from opslib.audit.dockerfiles import dockerfile_findings, project_dockerfiles
from opslib.audit.findings import _SEV_RANK, SEVERITIES, _findings_frame, _records, _row
from opslib.audit.runtime import _runtime
from opslib.audit.secrets import secret_scan, secrets_as_findings
from opslib.engine import Client
from opslib.exceptions import (
    ToolMissing,
)

__all__ = [
    "AuditResult",
    "audit_checks",
    "audit_project",
    "compose_files_param",
    "default_compose_file",
    "default_vuln_reports",
    "findings_by_category",
    "findings_by_service",
    "not_run_reasons",
    "summarize",
    "tenant_not_run",
    "vuln_input",
    "vulns_as_findings",
    "vulns_not_run",
]


#: The demo stack's compose file (re-exported from :mod:`opslib.demo`).
default_compose_file = demo.default_compose_file

#: The compose files of a runbook's ``compose_file`` parameter (:mod:`opslib.demo`).
compose_files_param = demo.resolve_compose_files


#: The demo images' sample trivy/grype reports (:func:`opslib.demo.sample_vuln_reports`).
default_vuln_reports = demo.sample_vuln_reports


# --------------------------------------------------------------------------------------------
# Whole audit, summary, results
# --------------------------------------------------------------------------------------------


@dataclass
class AuditResult:
    """Everything :func:`audit_project` found.

    Attributes:
        findings: All findings (runtime, secrets, dockerfile), :data:`FINDING_COLUMNS`.
        secrets: The secret rows behind the ``secrets`` findings (:data:`SECRET_COLUMNS`).
        dockerfiles: The project's Dockerfiles.
        tmpfs: Per service, the writable paths found (for the read-only root filesystem).
        not_run: Checks (by name) that could not run completely, with why and what to do,
            e.g. ``{"dockerfiles_clean": "hadolint is not installed: ..."}``.
    """

    findings: pd.DataFrame
    secrets: pd.DataFrame
    dockerfiles: pd.DataFrame
    tmpfs: pd.DataFrame = field(default_factory=pd.DataFrame)
    not_run: dict[str, str] = field(default_factory=dict)


def audit_project(
    client: Client, project: str, *, compose_files: Sequence[str | Path] = ()
) -> AuditResult:
    """Run the runtime, secrets and Dockerfile parts of the audit on a compose project.

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.
        compose_files: The project's compose files (default: the files recorded in the
            containers' compose labels; without any, no Dockerfile is audited).

    Returns:
        An :class:`AuditResult`; no secret value is in any of its frames.

    Raises:
        ProjectNotFound: The project has no containers.
    """
    files = list(compose_files) or _compose_files_of(client, project)
    model = od.compose_config(files) if files else None
    secrets = secret_scan(client, project, compose_files=files, model=model)
    runtime, tmpfs = _runtime(client, project, with_tmpfs=True)
    dockerfiles = project_dockerfiles(model) if model else pd.DataFrame(
        columns=["service", "image", "context", "dockerfile"])
    not_run: dict[str, str] = {}
    try:
        dfind = dockerfile_findings(dockerfiles)
    except ToolMissing as exc:
        dfind = dockerfile_findings(dockerfiles, hadolint=False)
        not_run["dockerfiles_clean"] = (f"hadolint did not run ({exc}); only the final-stage "
                                        "USER of each Dockerfile was checked")
    findings = _findings_frame(_records(pd.concat([runtime, secrets_as_findings(secrets), dfind],
                                                  ignore_index=True)))
    return AuditResult(findings, secrets, dockerfiles, tmpfs, not_run)


def _compose_files_of(client: Client, project: str) -> list[Path]:
    """The project's own compose files from its labels (never the demo's)."""
    files, _ = od.compose_files_of(client, project, existing_only=True)
    return list(files)


def summarize(findings: pd.DataFrame, vulns: pd.DataFrame | None = None) -> pd.DataFrame:
    """Count findings by category (source) and severity.

    Args:
        findings: Findings (:data:`FINDING_COLUMNS`).
        vulns: Vulnerability rows (:mod:`opslib.audit.vulns`) to count as the ``vulns`` category.

    Returns:
        One row per source with a column per severity and a total.
    """
    if vulns is not None and len(vulns):
        findings = pd.concat([findings, vulns_as_findings(vulns)], ignore_index=True)
    cats = ["runtime", "secrets", "dockerfile", "vulns"]
    table = pd.DataFrame(0, index=pd.Index(cats, name="source"), columns=list(SEVERITIES))
    if len(findings):
        counts = findings.groupby(["source", "severity"]).size().reset_index(name="n")
        for src, sev, n in zip(counts["source"], counts["severity"], counts["n"], strict=True):
            if src not in table.index:
                table.loc[src] = 0
            if sev in table.columns:
                table.loc[src, sev] = int(n)
    table["total"] = table.sum(axis=1)
    return table.reset_index()


def vulns_as_findings(vulns: pd.DataFrame) -> pd.DataFrame:
    """Fold vulnerability-report rows (:mod:`opslib.audit.vulns`) into findings (source ``vulns``).

    Args:
        vulns: :func:`opslib.audit.vulns.read_vuln_reports` output.

    Returns:
        Findings; severity UNKNOWN counts as INFO.
    """
    rows = []
    for r in _records(vulns):
        sev = r["severity"] if r["severity"] in _SEV_RANK else "INFO"
        rows.append(_row(str(r["vuln_id"]), f"{r['pkg']} {r['installed']}", sev, "",
                         str(r["image"]), f"{r['scanner']} {r['report']}: {r['pkg']} "
                         f"{r['installed']} ({r['status']})", str(r["title"]),
                         f"upgrade {r['pkg']} to {r['fixed']} (rebuild the image)"
                         if r["fixable"] else "no fixed version yet: mitigate or accept",
                         source="vulns"))
    return _findings_frame(rows)


def _listed(items: Iterable[Any], limit: int | None = None) -> str:
    """``": a, b, c"`` (sorted, unique, at most ``limit``), or ``""`` when there are none."""
    names = sorted({str(x) for x in items})[:limit]
    return ": " + ", ".join(names) if names else ""


def findings_by_category(
    findings: pd.DataFrame, vulns: pd.DataFrame | None = None
) -> dict[str, dict[str, int]]:
    """The audit's per-category counts for the scorecard: ``{source: {severity: count}}``.

    Args:
        findings: Runtime, secrets and Dockerfile findings.
        vulns: Vulnerability rows from :mod:`opslib.audit.vulns` (the ``vulns`` category).

    Returns:
        Counts per source and severity, plus ``total``.
    """
    summary = summarize(findings, vulns).set_index("source")
    return {src: {sev: int(summary.loc[src, sev]) for sev in SEVERITIES} | {
        "total": int(summary.loc[src, "total"])} for src in summary.index}


def audit_checks(
    findings: pd.DataFrame,
    *,
    vulns: pd.DataFrame | None = None,
    vuln_fail_severity: str = "CRITICAL",
    tenant: pd.DataFrame | None = None,
    not_run: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The audit's pass/fail checks (the runbook records them with ``report.record_checks``).

    Checks ``runtime_no_high``, ``secrets_not_in_env``, ``dockerfiles_clean``,
    ``no_fixable_critical`` (when ``vulns`` is given) and ``tenant_isolation`` (when ``tenant``
    is given). Without ``vulns`` or ``tenant``, a reason for that check in ``not_run`` makes it
    "not run" instead of absent.

    Args:
        findings: Runtime, secrets and Dockerfile findings.
        vulns: Vulnerability rows from :mod:`opslib.audit.vulns`.
        vuln_fail_severity: Fixable vulnerabilities at or above this severity fail the check.
        tenant: :func:`tenant_isolation_probe` output.
        not_run: :attr:`AuditResult.not_run`: such a check fails when what did run found a
            problem, and is "not run" (``ok`` None) otherwise, with the reason as its detail.

    Returns:
        The checks as a frame (name, ok, detail); ``ok`` is None for a check that did not run.
    """
    from opslib.audit import vulns as ovulns

    checks: list[tuple[str, bool, str]] = []

    def high(src: str, what: str) -> tuple[bool, str]:
        f = findings[(findings["source"] == src) & findings["severity"].isin(["CRITICAL", "HIGH"])]
        return f.empty, f"{len(f)} HIGH/CRITICAL {what} findings" + _listed(
            f"{i}@{s}" for i, s in zip(f["id"], f["service"], strict=True))

    checks.append(("runtime_no_high", *high("runtime", "runtime")))
    env = findings[(findings["source"] == "secrets") & findings["id"].isin(["OPS-SEC-ENV", "4.10"])]
    checks.append(("secrets_not_in_env", env.empty,
                   f"{len(env)} secrets in environment variables or images" + _listed(
                       f"{s}:{e.split(' in ', 1)[0]}"
                       for s, e in zip(env["service"], env["evidence"], strict=True))))
    checks.append(("dockerfiles_clean", *high("dockerfile", "Dockerfile")))
    if vulns is not None:
        bad = ovulns.fixable_at_or_above(vulns, vuln_fail_severity)
        checks.append(("no_fixable_critical", bad.empty,
                       f"{len(bad)} fixable findings at or above {vuln_fail_severity.upper()} in "
                       f"{vulns['report'].nunique() if len(vulns) else 0} reports"
                       + _listed(bad["vuln_id"], limit=10)))
    if tenant is not None:
        failed = tenant[~tenant["ok"].astype(bool)]
        checks.append(("tenant_isolation", bool(len(tenant)) and failed.empty,
                       f"{len(tenant) - len(failed)} of {len(tenant)} cross-tenant probes refused "
                       "as expected" + (": failed " + ", ".join(failed["probe"]) if len(failed)
                                        else "")))
    reasons = dict(not_run or {})
    done: list[tuple[str, bool | None, str]] = []
    for name, ok, detail in checks:
        reason = reasons.pop(name, "")
        if reason and ok:
            done.append((name, None, reason))
        else:
            done.append((name, ok, f"{detail} ({reason})" if reason else detail))
    # Checks that did not run at all (no vulnerability report, no tenant logins).
    done += [(name, None, reason) for name, reason in reasons.items()
             if name in ("no_fixable_critical", "tenant_isolation") and reason]
    return pd.DataFrame(done, columns=["name", "ok", "detail"])


def findings_by_service(findings: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per service of the project, its findings counted by severity (findings of no single
    service, e.g. engine-wide ones, under ``""``)."""
    out: dict[str, dict[str, int]] = {}
    for svc, sev in zip(findings["service"], findings["severity"], strict=True):
        counts = out.setdefault(str(svc), {})
        counts[str(sev)] = counts.get(str(sev), 0) + 1
    return dict(sorted(out.items()))


def vulns_not_run() -> str:
    """Why ``no_fixable_critical`` did not run, and how to give it a report."""
    return ("no vulnerability report given: scan the images (trivy image --format json -o "
            "trivy.json IMAGE, or grype IMAGE -o json > grype.json) and pass "
            "-p vuln_reports trivy.json,grype.json")


def tenant_not_run(api_url: str | None, probe: bool) -> str:
    """Why ``tenant_isolation`` did not run ("" when it can run)."""
    if not probe:
        return ("no tenant logins given: the cross-tenant probe logs in as a user of one tenant "
                "and asks for another's data; only the demo's logins are built in "
                "(demo_data=True on the demo stack)")
    if not api_url:
        return "the project publishes no HTTP endpoint on this host: set api_url"
    return ""


def vuln_input(vuln_reports: str, *, demo_sample: bool = False) -> pd.DataFrame | None:
    """The vulnerability reports the audit checks: the ones given, the demo's samples (only
    with ``demo_sample``), or ``None`` (the check is then "not run", never fixture data).

    Args:
        vuln_reports: The runbook parameter (comma-separated trivy/grype JSON paths).
        demo_sample: Use the demo images' committed sample reports when none is given.
    """
    from opslib.audit import vulns as ovulns

    if vuln_reports.strip():
        return ovulns.read_vuln_reports(vuln_reports)
    return ovulns.read_vuln_reports(demo.sample_vuln_reports()) if demo_sample else None


def not_run_reasons(result: AuditResult, *, vulns: pd.DataFrame | None,
                    tenant_reason: str) -> dict[str, str]:
    """The checks of this audit that could not run, with why: the audit's own (hadolint
    missing), the vulnerability check without a report, the tenant probe without logins."""
    out = dict(result.not_run)
    if vulns is None:
        out["no_fixable_critical"] = vulns_not_run()
    if tenant_reason:
        out["tenant_isolation"] = tenant_reason
    return out
