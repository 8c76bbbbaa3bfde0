"""The scorecard's rules: for each checklist category, what earns each star, and from which run.

A rule names the evidence that proves it: a check (pass required) or a recorded value of a named
runbook, as written to that runbook's ``results.json``. Each rule says whether it is
**configured** (read from configuration: a healthcheck exists, a limit is set) or **proven**
(measured by a drill or a real probe: a restore that worked, an alert that fired). Stars are a
ladder: a category has N stars when every rule of stars 1..N is met by fresh evidence.

The ten categories and their order are those of the checklist's final scorecard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["CATEGORIES", "DEFAULT_RULES", "RISK_WEIGHTS", "Evidence", "Rule"]

#: Category key -> label, in the checklist's order.
CATEGORIES: dict[str, str] = {
    "security": "Security",
    "logging": "Logging",
    "resources": "Resource limits",
    "health": "Health checks",
    "performance": "Performance",
    "monitoring": "Monitoring",
    "backup": "Backup/DR",
    "config": "Config management",
    "scaling": "Scaling",
    "compliance": "Security/Compliance",
}

#: Weights of the usual risk-weighted scorecards (Critical 10, High 7.5, Medium 5, Low 2.5).
RISK_WEIGHTS: dict[str, float] = {"critical": 10.0, "high": 7.5, "medium": 5.0, "low": 2.5}

Kind = Literal["configured", "proven"]
Risk = Literal["critical", "high", "medium", "low"]
Op = Literal["present", "empty", "nonempty", "true", "==", "<=", ">=", "<", ">"]


@dataclass(frozen=True)
class Evidence:
    """Where a rule looks in a run's results.json.

    Exactly one of ``check`` and ``record`` is set.

    Attributes:
        runbook: The runbook whose runs hold the evidence (``restore-drill``).
        check: A check name, or an ``fnmatch`` pattern (``slo *``): every matching check of the
            run must pass and at least one must exist.
        record: A recorded value's name, tested with ``op`` against ``value``.
        op: ``present``, ``empty`` (an empty list/dict/string), ``nonempty``, ``true``, or a
            comparison (``==``, ``<=``, ``>=``, ``<``, ``>``) with ``value``.
        value: The right-hand side of a comparison.
    """

    runbook: str
    check: str | None = None
    record: str | None = None
    op: Op = "present"
    value: Any = None

    def __post_init__(self) -> None:
        if (self.check is None) == (self.record is None):
            raise ValueError("Evidence needs exactly one of check= and record=")

    def describe(self) -> str:
        """``restore-drill: check drill_verified`` / ``... record rto_s <= 300``."""
        if self.check is not None:
            return f"{self.runbook}: check {self.check}"
        tail = "" if self.op == "present" else f" {self.op}" + (
            f" {self.value!r}" if self.op in ("==", "<=", ">=", "<", ">") else "")
        return f"{self.runbook}: record {self.record}{tail}"


@dataclass(frozen=True)
class Rule:
    """One requirement for one star of one category.

    Attributes:
        id: Stable identifier (``backup.verified_restore``).
        category: A key of :data:`CATEGORIES`.
        stars: The star it gives (1-5); all rules of lower stars must be met too.
        title: What is true when the rule is met, in a few words.
        kind: ``configured`` (read from configuration) or ``proven`` (measured by a drill/probe).
        risk: ``critical``, ``high``, ``medium`` or ``low``: what is at stake when it is missing.
        why: One sentence: why the checklist asks for it.
        remediation: Which runbook and parameters produce or fix the evidence.
        evidence: All of these must hold in the runs (each from its newest decisive run).
    """

    id: str
    category: str
    stars: int
    title: str
    kind: Kind
    risk: Risk
    why: str
    remediation: str
    evidence: tuple[Evidence, ...] = field(default_factory=tuple)


def _r(id: str, stars: int, title: str, kind: Kind, risk: Risk, why: str, remediation: str,
       *evidence: Evidence) -> Rule:
    return Rule(id, id.split(".", 1)[0], stars, title, kind, risk, why, remediation,
                tuple(evidence))


_SEC = "security-audit"
_LOGS = "log-cleanup"
_RES = "resource-tuning"
_OVR = "stack-overview"
_LT = "load-test-analysis"
_DR = "restore-drill"

#: The rule set shipped with opslib. A category none of whose runbooks has run is "not assessed".
DEFAULT_RULES: tuple[Rule, ...] = (
    # -- 1. Security hardening ------------------------------------------------------------------
    _r("security.audited", 1, "images and containers audited", "configured", "medium",
       "Nothing can be hardened that has not been looked at (checklist §1).",
       "Run security-audit.", Evidence(_SEC, record="findings_by_service")),
    _r("security.dockerfiles_clean", 2, "no HIGH Dockerfile findings (USER, pinning)",
       "configured", "high", "Images that run as root give an attacker root in the container.",
       "security-audit: fix the Dockerfile findings (USER appuser, pinned base).",
       Evidence(_SEC, check="dockerfiles_clean")),
    _r("security.runtime_hardened", 3, "no HIGH runtime findings (root, capabilities, rw root)",
       "configured", "high", "Non-root, dropped capabilities, seccomp and read-only filesystems "
       "cut the attack surface (checklist §1: 70 %).",
       "security-audit: apply its hardening override (-p apply true).",
       Evidence(_SEC, check="runtime_no_high")),
    _r("security.no_secrets_in_env", 4, "no secrets in environment variables or images",
       "configured", "high", "Environment values leak through inspect, logs and crash reports.",
       "security-audit: move the listed secrets to files/secrets (secrets_not_in_env).",
       Evidence(_SEC, check="secrets_not_in_env")),
    _r("security.no_fixable_critical", 5, "no fixable CRITICAL vulnerability in the images",
       "configured", "critical", "A known, fixable critical CVE is the easiest way in.",
       "security-audit: give -p vuln_reports (trivy/grype JSON) and rebuild the images.",
       Evidence(_SEC, check="no_fixable_critical")),
    # -- 2. Logging -----------------------------------------------------------------------------
    _r("logging.structured", 1, "container logs parse as structured lines", "proven", "medium",
       "Structured (JSON) logs are what makes analysis and search possible (checklist §2).",
       "log-cleanup: malformed_lines must be 0; fix the services that print free text.",
       Evidence(_LOGS, record="malformed_lines", op="==", value=0)),
    _r("logging.disk_safe", 2, "logs are not filling the disk", "proven", "high",
       "A full disk from unrotated json-file logs takes every service down.",
       "log-cleanup: -p apply true (rotation override + truncation of archived logs).",
       Evidence(_LOGS, check="fs_below_threshold")),
    _r("logging.rotation_valid", 3, "rotation configuration accepted by logrotate", "configured",
       "medium", "Rotation that logrotate rejects never runs.",
       "log-cleanup: install the generated logrotate file.",
       Evidence(_LOGS, check="logrotate_file_valid")),
    # -- 3. Resource limits ---------------------------------------------------------------------
    _r("resources.no_oom", 1, "no service was OOM-killed", "proven", "critical",
       "An OOM kill drops every session of the killed service.",
       "resource-tuning: raise the limit of the services it lists.",
       Evidence(_RES, record="services_oom_killed", op="empty")),
    _r("resources.memory_limits", 2, "every service has a memory limit", "configured", "high",
       "One service without a limit can take the whole host down (checklist §3).",
       "resource-tuning: -p apply true (limits from measured usage).",
       Evidence(_RES, check="all_services_have_memory_limit")),
    _r("resources.limits_valid", 3, "the recommended limits form a valid compose override",
       "configured", "medium", "An override compose rejects is never deployed.",
       "resource-tuning: fix the override it reports.",
       Evidence(_RES, check="override_valid")),
    # -- 4. Health checks -----------------------------------------------------------------------
    _r("health.healthchecks", 1, "every service has a healthcheck", "configured", "high",
       "Without a healthcheck nothing notices a hung service (checklist §4).",
       "stack-overview lists them; health-recovery generates deep healthchecks.",
       Evidence(_OVR, check="all_services_have_healthcheck")),
    _r("health.healthy", 2, "every service is running and healthy", "proven", "high",
       "An unhealthy service is an incident in progress.",
       "stack-overview: read the first table; log-cleanup for the service's logs.",
       Evidence(_OVR, check="all_services_healthy")),
    # -- 5. Performance -------------------------------------------------------------------------
    _r("performance.load_tested", 1, "a load test was run and analysed", "proven", "medium",
       "Latency and error rates are only known under load (checklist §5).",
       "load-test-analysis: -p run_k6 true (or -p source your k6/Locust output).",
       Evidence(_LT, record="requests", op=">", value=0)),
    _r("performance.slos_met", 2, "every latency/error SLO of the load test met", "proven",
       "high", "The SLO is the promise to users; a breach under test load is one in production.",
       "load-test-analysis: see the bottleneck it names.", Evidence(_LT, check="slo *")),
    # -- 7. Backup & disaster recovery ----------------------------------------------------------
    _r("backup.exists", 1, "a backup exists", "configured", "critical",
       "Without a backup a lost volume is lost data (checklist §7).",
       "restore-drill takes one (pg_dump) on every run.",
       Evidence(_DR, record="backups_total", op=">=", value=1)),
    _r("backup.verified_restore", 2, "the backup restores into a scratch database",
       "proven", "critical", "An unverified backup is a hope, not a backup.",
       "restore-drill (the drill runs by default).", Evidence(_DR, check="drill_verified")),
    _r("backup.objectives_met", 3, "measured RTO and RPO within target", "proven", "high",
       "The targets are what the business was promised (RTO < 4 h, RPO < 1 h).",
       "restore-drill: -p rto_target_s / -p rpo_target_s; schedule it hourly.",
       Evidence(_DR, check="rto_within_target"), Evidence(_DR, check="rpo_within_target")),
    _r("backup.cache_persistent", 3, "Redis persistence (AOF/RDB) enabled and writing",
       "configured", "medium", "A cache that loses its data on restart stampedes the database.",
       "restore-drill reports the failing persistence; set appendonly yes.",
       Evidence(_DR, check="redis_persistence_ok")),
    # -- 10. Security & compliance --------------------------------------------------------------
    _r("compliance.tenant_isolation", 1, "cross-tenant access refused (probed)", "proven",
       "critical", "Checklist §10: test cross-tenant data access (it must fail).",
       "security-audit: -p tenants / endpoints of your application.",
       Evidence(_SEC, check="tenant_isolation")),
)
