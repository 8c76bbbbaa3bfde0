"""Container logs: who fills the disk, what they write, safe cleanup, and rotation from now on.

1. :func:`disk_report` lists every container's json-file log of a compose project (path from
   inspect, rotated siblings ``-json.log.N`` / ``.N.gz``), optional host log directories, and the
   filesystems holding them (used %, free; flagged over a threshold).
2. :func:`analyse_logs` streams those files through :mod:`opslib.logs.parse` (bounded memory,
   vectorised) into volume, levels, error rate and top messages per service;
   :func:`volume_chart` and :func:`error_rate_chart` draw them.
3. :func:`plan_cleanup` builds a plan (a DataFrame: action, service, file, bytes, bytes_freed,
   risk, why) and :func:`apply_cleanup` executes it with a JSON-lines journal, resumably.
   json-file logs belong to the daemon: an outside truncate of a file the daemon writes without
   ``O_APPEND`` (it reopens without it after its own rotation; moby/moby#29511,
   docker/for-linux#140) leaves a NUL-filled hole that breaks ``docker logs``. So the safe path
   archives first (gzip, verified by line count and SHA-256), then recreates the service with
   rotation options so Docker rotates from then on (a recreated container gets a new log file;
   the old one goes away with the old container). Truncating a live log is offered only when the
   daemon's descriptor has ``O_APPEND`` and only after the part it removes is archived.
4. :func:`write_prevention_files` generates the compose override, the ``daemon.json``
   ``log-opts`` and a logrotate file for host logs, checked with ``docker compose config`` and
   ``logrotate -d``.
"""

from __future__ import annotations

from opslib.logs.analysis import analyse_logs, error_rate_chart, volume_chart
from opslib.logs.archive import TruncateSafety, archive_roots, dockerd_pid, truncate_safety
from opslib.logs.cleanup import (
    PLAN_COLUMNS,
    apply_cleanup,
    bytes_freed,
    load_plan,
    plan_cleanup,
    read_journal,
    save_plan,
    verify_docker_logs,
)
from opslib.logs.disk import (
    DiskReport,
    disk_chart,
    disk_report,
    filesystem_usage,
    host_log_files,
    log_files,
)
from opslib.logs.prevention import (
    PreventionFiles,
    check_compose_override,
    check_logrotate,
    compose_logging_override,
    daemon_json,
    logrotate_config,
    project_compose_files,
    rotation_table,
    threshold_detail,
    write_prevention_files,
)

__all__ = [
    "PLAN_COLUMNS",
    "DiskReport",
    "PreventionFiles",
    "TruncateSafety",
    "analyse_logs",
    "apply_cleanup",
    "archive_roots",
    "bytes_freed",
    "check_compose_override",
    "check_logrotate",
    "compose_logging_override",
    "daemon_json",
    "disk_chart",
    "disk_report",
    "dockerd_pid",
    "error_rate_chart",
    "filesystem_usage",
    "host_log_files",
    "load_plan",
    "log_files",
    "logrotate_config",
    "plan_cleanup",
    "project_compose_files",
    "read_journal",
    "rotation_table",
    "save_plan",
    "threshold_detail",
    "truncate_safety",
    "verify_docker_logs",
    "volume_chart",
    "write_prevention_files",
]
