"""Fails when the public surface of opslib changes by accident (add names here on purpose)."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

import pytest

import opslib

EXPECTED: dict[str, set[str]] = {
    "opslib.engine": {
        "AUTO", "HEALTH_STATES", "ROLES", "PublishedPort", "ServiceInfo", "Stack",
        "compose_files_param", "detect_role", "discover", "health_state", "worst_health",
        "CONFIG_FILES_LABEL", "Client", "ExecResult", "NUMBER_LABEL", "ONEOFF_LABEL",
        "PROJECT_LABEL", "SERVICE_LABEL", "STATS_COLUMNS", "WORKDIR_LABEL", "compose",
        "compose_config", "compose_files_of", "connect", "container_diff", "container_logs",
        "container_stats", "container_top", "cpu_percent", "create_network", "engine_errors",
        "engine_info", "exec_in_container", "exec_in_service", "exec_socket", "exec_to_file",
        "get_archive", "get_container", "image_env", "image_history", "inspect_facts",
        "iter_container_logs", "labeled_containers", "labeled_networks", "list_projects",
        "mem_usage_no_cache", "one_shot_stats", "parse_stats", "pause", "project_containers",
        "put_archive", "reload", "reload_network", "remove_container", "remove_network",
        "run_container", "runs_as_root", "sample_stats", "service_container", "services",
        "snapshot_stats", "unpause", "wait_healthy",
    },
    "opslib.audit": {
        "findings_by_service", "tenant_not_run", "vulns_not_run", "not_run_reasons",
        "vuln_input",
        "AuditResult", "CIS_CHECKS", "CisCheck", "EngineFacts", "FINDING_COLUMNS", "HardeningPlan",
        "SECRET_COLUMNS", "SEVERITIES", "apply_hardening", "audit_checks", "audit_project",
        "cis_coverage", "compose_files_param", "container_findings", "default_compose_file",
        "default_vuln_reports", "dockerfile_findings", "engine_facts", "env_file_findings",
        "findings_by_category", "findings_of", "hadolint_path", "history_assignments",
        "parse_dockerfile_assignments", "plan_hardening", "project_dockerfiles", "run_hadolint",
        "runtime_findings", "seccomp_profile", "seccomp_profile_path", "secret_reason",
        "secret_scan", "secrets_as_findings", "shannon_entropy", "summarize",
        "tenant_isolation_probe", "tmpfs_mounts_from_diff", "vulns_as_findings", "writable_paths",
        "write_hardening_files",
    },
    "opslib.backup": {
        "PgTarget", "discover_postgres", "dr_playbook",
        "Backup", "DRILL_LABEL", "DRILL_RUN_LABEL", "DrillResult", "MANIFEST_FORMAT",
        "RecoveryObjectives", "SHOP_APP_QUERIES", "apply_retention", "cleanup_scratch",
        "deletes_planned", "drill_history", "list_backups", "load_drill", "load_manifest",
        "manifest_path", "manifest_tables", "new_run_id", "persistence_checks", "plan_retention",
        "recovery_objectives", "redis_persistence", "resolve_backup_dir", "rto_statement",
        "run_drill", "sha256_file", "snapshot_redis", "take_backup", "timeline_figure",
        "verified_count", "verify_backup_file", "without_paths",
    },
    "opslib.logs": {
        "DiskReport", "PLAN_COLUMNS", "PreventionFiles", "TruncateSafety", "analyse_logs",
        "apply_cleanup", "archive_roots", "bytes_freed", "check_compose_override",
        "check_logrotate", "compose_logging_override", "daemon_json", "disk_chart", "disk_report",
        "dockerd_pid", "error_rate_chart", "filesystem_usage", "host_log_files", "load_plan",
        "log_files", "logrotate_config", "plan_cleanup", "project_compose_files", "read_journal",
        "rotation_table", "save_plan", "threshold_detail", "truncate_safety", "verify_docker_logs",
        "volume_chart", "write_prevention_files",
    },
    "opslib.resources": {
        "DEMO_COMPOSE", "LimitsPlan", "LoadedSample", "MIB", "REFERENCES", "Reference",
        "apply_limits", "apply_outcome", "build_override", "compose_config", "current_state",
        "declared_resources", "format_cpus", "format_memory", "host_cpus", "oom_killed_services",
        "parse_cpus", "parse_memory", "plan_limits", "read_journal", "readable", "recommend",
        "recommended_values", "resolve_compose_file", "restarts_total", "round_cpus",
        "round_memory", "sample_with_load", "service_role", "services_without_limits",
        "usage_figure", "usage_summary", "validate_override",
    },
    "opslib.scorecard": {
        "CATEGORIES", "DEFAULT_FRESHNESS_DAYS", "DEFAULT_RULES", "RISK_WEIGHTS",
        "SCORECARD_RUNBOOK", "CategoryScore", "Evidence", "Rule", "RuleResult", "Scorecard",
        "category_checks", "compute_scorecard", "load_history", "project_of", "projects_in",
        "scorecard_trend", "stars_figure", "stars_text", "trend_figure",
    },
    "opslib.loadtest": {
        "Bottleneck", "Comparison", "DEMO_BASE_URL", "K6Run", "LoadTestData", "LocustRun",
        "OVERALL", "STATS_COLUMNS", "Threshold", "chart_latency_distribution",
        "chart_latency_over_time", "chart_latency_vs_resources", "chart_throughput_errors",
        "compare_runs", "error_breakdown", "evaluate_thresholds", "find_bottleneck",
        "k6_percentile", "load_results", "over_time", "parse_thresholds", "read_jmeter_jtl",
        "read_k6_ndjson", "read_k6_summary", "read_locust_csv", "resolve_source", "run_k6",
        "EXAMPLE_SOURCE", "no_results_reason", "not_run_checks",
        "run_locust", "summarize", "total_errors",
    },
}


def test_public_names() -> None:
    assert opslib.__all__ == sorted(opslib.__all__)
    assert set(opslib.__all__) == {"OpslibError", "__version__", "check", "record", "show",
                                   "table"}
    for name in opslib.__all__:
        assert hasattr(opslib, name)


def _submodules(pkg: ModuleType) -> list[ModuleType]:
    return [importlib.import_module(f"{pkg.__name__}.{m.name}")
            for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_")]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_subpackage_public_names(name: str) -> None:
    pkg = importlib.import_module(name)
    assert len(pkg.__all__) == len(set(pkg.__all__)), "a name listed twice"
    assert set(pkg.__all__) == EXPECTED[name]
    for attr in pkg.__all__:
        assert hasattr(pkg, attr), f"{name}.{attr} is exported but missing"


#: Modules used as modules (``from opslib.audit import vulns``), not through their package:
#: the module that re-exports their names instead.
MODULE_APIS = {
    "opslib.audit.vulns": "opslib.audit.vulns",
    "opslib.logs.parse": "opslib.logs.parse",
    "opslib.logs.reader": "opslib.logs.parse",
    "opslib.logs.fields": "opslib.logs.parse",
    "opslib.logs.aggregate": "opslib.logs.parse",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_submodules_export_what_they_define(name: str) -> None:
    """Each public module of a subpackage lists its public names in ``__all__``, and the package
    (or, for a module API, the module that gathers it) re-exports every one of them."""
    pkg = importlib.import_module(name)
    for mod in _submodules(pkg):  # private modules (opslib.logs._native) are left out
        exported = getattr(mod, "__all__", None)
        assert exported is not None, f"{mod.__name__} has no __all__"
        assert len(exported) == len(set(exported)), f"{mod.__name__}: a name listed twice"
        gatherer = importlib.import_module(MODULE_APIS.get(mod.__name__, name))
        for attr in exported:
            assert hasattr(mod, attr), f"{mod.__name__}.{attr} is exported but missing"
            assert attr in gatherer.__all__, \
                f"{mod.__name__}.{attr} is not re-exported by {gatherer.__name__}"
            assert getattr(gatherer, attr) is getattr(mod, attr)


def _public_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(opslib.__path__, "opslib.")]
    return sorted(n for n in names if not any(p.startswith("_") for p in n.split(".")[1:]))


@pytest.mark.parametrize("name", _public_modules())
def test_every_public_module_lists_existing_names(name: str) -> None:
    mod = importlib.import_module(name)
    if name == "opslib.runbook":
        return  # a package of modules (report, runner, ...), imported one by one
    assert isinstance(getattr(mod, "__all__", None), list), f"{name} has no __all__"
    for attr in mod.__all__:
        assert hasattr(mod, attr), f"{name}.{attr} is exported but missing"
