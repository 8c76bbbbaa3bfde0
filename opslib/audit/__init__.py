"""Security hardening audit of a compose project: runtime, secrets, Dockerfiles, fixes, tenants.

What it checks, and where the answer comes from:

* **Runtime** (:func:`runtime_findings`): every container's inspect data against the CIS Docker
  Benchmark section 5 and 4.1, numbered as docker-bench-security v1.6.0 prints them (CIS Docker
  Benchmark 1.6.0; the older 1.2–1.4 numbering is kept in ``cis_legacy``). One row per problem:
  id, severity, service, container, evidence (the inspect field and its value), why it matters
  and the compose fix. :func:`writable_paths` tells which paths need a ``tmpfs`` before the root
  filesystem can be made read-only (from ``docker diff`` plus known runtime directories).
* **Secrets** (:func:`secret_scan`): environment variables (inspect and ``docker compose
  config``), image history and Dockerfile ``ENV``/``ARG`` lines whose name or value looks secret,
  and ``.env`` files readable by group/others. Values never leave this module: rows carry the
  name, where it was found and :func:`opslib.redact.fingerprint` of the value.
* **Dockerfiles** (:func:`dockerfile_findings`): hadolint's JSON findings plus a missing ``USER``.
* **Fixes** (:func:`plan_hardening` / :func:`apply_hardening`): a compose override file and a
  seccomp profile; applied service by service, verified healthy, rolled back when not.
* **Tenant isolation** (:func:`tenant_isolation_probe`): tenant A asks the API for tenant B's data.

All findings share :data:`FINDING_COLUMNS` so :func:`summarize` and :func:`audit_checks` can
count them by category (``runtime``, ``secrets``, ``dockerfile``, ``vulns``) for the scorecard.
Vulnerability reports (trivy/grype) are read by :mod:`opslib.audit.vulns`.
"""

from __future__ import annotations

from opslib.audit.dockerfiles import (
    dockerfile_findings,
    hadolint_path,
    project_dockerfiles,
    run_hadolint,
)
from opslib.audit.findings import (
    CIS_CHECKS,
    FINDING_COLUMNS,
    SEVERITIES,
    CisCheck,
    cis_coverage,
    findings_of,
)
from opslib.audit.hardening import (
    HardeningPlan,
    apply_hardening,
    plan_hardening,
    seccomp_profile,
    seccomp_profile_path,
    write_hardening_files,
)
from opslib.audit.project import (
    AuditResult,
    audit_checks,
    audit_project,
    compose_files_param,
    default_compose_file,
    default_vuln_reports,
    findings_by_category,
    findings_by_service,
    not_run_reasons,
    summarize,
    tenant_not_run,
    vuln_input,
    vulns_as_findings,
    vulns_not_run,
)
from opslib.audit.runtime import (
    EngineFacts,
    container_findings,
    engine_facts,
    runtime_findings,
    tmpfs_mounts_from_diff,
    writable_paths,
)
from opslib.audit.secrets import (
    SECRET_COLUMNS,
    env_file_findings,
    history_assignments,
    parse_dockerfile_assignments,
    secret_reason,
    secret_scan,
    secrets_as_findings,
    shannon_entropy,
)
from opslib.audit.tenants import tenant_isolation_probe

__all__ = [
    "CIS_CHECKS",
    "FINDING_COLUMNS",
    "SECRET_COLUMNS",
    "SEVERITIES",
    "AuditResult",
    "CisCheck",
    "EngineFacts",
    "HardeningPlan",
    "apply_hardening",
    "audit_checks",
    "audit_project",
    "cis_coverage",
    "compose_files_param",
    "container_findings",
    "default_compose_file",
    "default_vuln_reports",
    "dockerfile_findings",
    "engine_facts",
    "env_file_findings",
    "findings_by_category",
    "findings_by_service",
    "findings_of",
    "hadolint_path",
    "history_assignments",
    "not_run_reasons",
    "parse_dockerfile_assignments",
    "plan_hardening",
    "project_dockerfiles",
    "run_hadolint",
    "runtime_findings",
    "seccomp_profile",
    "seccomp_profile_path",
    "secret_reason",
    "secret_scan",
    "secrets_as_findings",
    "shannon_entropy",
    "summarize",
    "tenant_isolation_probe",
    "tenant_not_run",
    "tmpfs_mounts_from_diff",
    "vuln_input",
    "vulns_as_findings",
    "vulns_not_run",
    "writable_paths",
    "write_hardening_files",
]
