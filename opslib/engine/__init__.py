"""The Docker engine boundary: the only package that imports docker-py.

Every function takes the client as its first argument; only notebooks and the CLI connect (with
:func:`connect`). docker-py and requests errors are translated into :mod:`opslib.exceptions`
here, once (:func:`engine_errors`). Modules: :mod:`~opslib.engine.client` (connect, errors,
the client type, compose labels), :mod:`~opslib.engine.containers` (a project's containers,
inspect, exec, container operations), :mod:`~opslib.engine.compose` (the compose CLI and model,
health waits), :mod:`~opslib.engine.stats` (``docker stats``-exact sampling).
"""

from __future__ import annotations

from opslib.engine.client import (
    CONFIG_FILES_LABEL,
    NUMBER_LABEL,
    ONEOFF_LABEL,
    PROJECT_LABEL,
    SERVICE_LABEL,
    WORKDIR_LABEL,
    Client,
    connect,
    engine_errors,
)
from opslib.engine.compose import compose, compose_config, compose_files_of, wait_healthy
from opslib.engine.containers import (
    ExecResult,
    exec_in_container,
    exec_in_service,
    exec_to_file,
    inspect_facts,
    list_projects,
    project_containers,
    runs_as_root,
    service_container,
    services,
)
from opslib.engine.stats import (
    STATS_COLUMNS,
    container_stats,
    cpu_percent,
    mem_usage_no_cache,
    parse_stats,
    sample_stats,
    snapshot_stats,
)

__all__ = [
    "CONFIG_FILES_LABEL",
    "NUMBER_LABEL",
    "ONEOFF_LABEL",
    "PROJECT_LABEL",
    "SERVICE_LABEL",
    "STATS_COLUMNS",
    "WORKDIR_LABEL",
    "Client",
    "ExecResult",
    "compose",
    "compose_config",
    "compose_files_of",
    "connect",
    "container_stats",
    "cpu_percent",
    "engine_errors",
    "exec_in_container",
    "exec_in_service",
    "exec_to_file",
    "inspect_facts",
    "list_projects",
    "mem_usage_no_cache",
    "parse_stats",
    "project_containers",
    "runs_as_root",
    "sample_stats",
    "service_container",
    "services",
    "snapshot_stats",
    "wait_healthy",
]
