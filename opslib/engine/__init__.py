"""Docker engine access: connect, find a compose project's containers, inspect, exec, compose CLI.

Every function takes the Docker client as its first argument; only notebooks and the CLI connect
(with :func:`connect`). docker-py and requests errors are translated into :mod:`opslib.exceptions`
at this boundary by :func:`engine_errors`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pandas as pd

from opslib.exceptions import (
    BadInputFormat,
    BadParameter,
    CommandFailed,
    ContainerNotFound,
    EngineUnreachable,
    OpslibError,
    ProjectNotFound,
    ServiceNotFound,
    ToolMissing,
)
from opslib.redact import redact_text

__all__ = [
    "DEMO_COMPOSE",
    "PROJECT_LABEL",
    "REPO_ROOT",
    "SERVICE_LABEL",
    "STATS_COLUMNS",
    "ExecResult",
    "compose",
    "compose_config",
    "compose_files_of",
    "connect",
    "container_stats",
    "cpu_percent",
    "default_compose_file",
    "engine_errors",
    "exec_in_container",
    "exec_in_service",
    "exec_to_file",
    "inspect_facts",
    "list_projects",
    "mem_usage_no_cache",
    "parse_stats",
    "project_containers",
    "resolve_compose_files",
    "runs_as_root",
    "sample_stats",
    "service_container",
    "services",
    "snapshot_stats",
    "wait_healthy",
]

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"
ONEOFF_LABEL = "com.docker.compose.oneoff"
WORKDIR_LABEL = "com.docker.compose.project.working_dir"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"


@dataclass(frozen=True)
class ExecResult:
    """What a command run in a container returned.

    Attributes:
        exit_code: The command's exit status.
        stdout: Its standard output, decoded.
        stderr: Its standard error, decoded.
    """

    exit_code: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def engine_errors(url: str | None = None, container: str | None = None) -> Iterator[None]:
    """Translate docker-py / requests errors raised inside the block into opslib errors.

    Args:
        url: The engine URL, for the message of :class:`EngineUnreachable`.
        container: The container concerned, for :class:`ContainerNotFound`.

    Raises:
        EngineUnreachable: The engine did not answer.
        ContainerNotFound: The engine answered 404 for a container.
        OpslibError: Any other engine API error, with the engine's explanation.
    """
    import docker.errors
    import requests.exceptions

    try:
        yield
    except OpslibError:
        raise
    except docker.errors.NotFound as exc:
        raise ContainerNotFound(container or str(exc.explanation or exc)) from exc
    except docker.errors.APIError as exc:
        raise OpslibError(f"Docker engine refused the request: {exc.explanation or exc}") from exc
    except (docker.errors.DockerException, requests.exceptions.ConnectionError) as exc:
        raise EngineUnreachable(url, str(exc)) from exc


def connect(url: str | None = None, timeout: int = 60) -> Any:
    """Connect to a Docker engine and check that it answers.

    Args:
        url: Engine URL (``unix:///var/run/docker.sock``, ``tcp://host:2376``,
            ``ssh://user@host``). ``None`` uses the environment (``DOCKER_HOST``, default socket).
        timeout: Seconds to wait for each API call.

    Returns:
        A ``docker.DockerClient``.

    Raises:
        EngineUnreachable: No engine answers at that URL.
    """
    import docker

    with engine_errors(url):
        if url:
            client = docker.DockerClient(
                base_url=url, timeout=timeout, use_ssh_client=url.startswith("ssh://")
            )
        else:
            client = docker.from_env(timeout=timeout)
        client.ping()
    return client


def list_projects(client: Any) -> list[str]:
    """Names of the compose projects that have containers on the engine.

    Args:
        client: A ``docker.DockerClient``.

    Returns:
        Sorted project names.
    """
    with engine_errors():
        containers = client.containers.list(all=True, filters={"label": PROJECT_LABEL})
    return sorted({c.labels.get(PROJECT_LABEL, "") for c in containers} - {""})


def project_containers(
    client: Any, project: str, *, service: str | None = None, include_stopped: bool = True
) -> list[Any]:
    """The containers of a compose project (one-off ``run`` containers excluded).

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name (``docker compose -p``).
        service: Only this service's containers.
        include_stopped: Include exited containers.

    Returns:
        Containers sorted by service and container number.

    Raises:
        ProjectNotFound: The project has no containers.
        ServiceNotFound: ``service`` was given and has no container.
    """
    with engine_errors():
        found = client.containers.list(
            all=include_stopped, filters={"label": f"{PROJECT_LABEL}={project}"}
        )
    found = [c for c in found if c.labels.get(ONEOFF_LABEL, "False") != "True"]
    if not found:
        raise ProjectNotFound(project, list_projects(client))
    if service is not None:
        names = sorted({c.labels.get(SERVICE_LABEL, "") for c in found})
        found = [c for c in found if c.labels.get(SERVICE_LABEL) == service]
        if not found:
            raise ServiceNotFound(project, service, names)
    return sorted(
        found,
        key=lambda c: (c.labels.get(SERVICE_LABEL, ""), int(c.labels.get(NUMBER_LABEL, "0") or 0)),
    )


def services(client: Any, project: str) -> list[str]:
    """Service names of a compose project that have containers.

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.

    Returns:
        Sorted service names.
    """
    return sorted({c.labels.get(SERVICE_LABEL, "") for c in project_containers(client, project)})


def service_container(client: Any, project: str, service: str) -> Any:
    """The container that runs a service (the running one with the lowest number).

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.
        service: Service name.

    Returns:
        A ``docker.models.containers.Container``.

    Raises:
        ProjectNotFound: The project has no containers.
        ServiceNotFound: The service has no container.
    """
    found = project_containers(client, project, service=service)
    running = [c for c in found if c.status == "running"]
    return (running or found)[0]


def runs_as_root(user: str | None) -> bool:
    """Tell whether a container's configured user is root.

    Args:
        user: ``Config.User`` from inspect (``""``, ``"root"``, ``"0"``, ``"1000:1000"``...).

    Returns:
        True for an empty user (the image default, root unless the image says otherwise), ``root``
        or uid 0.
    """
    name = (user or "").split(":", 1)[0].strip()
    return name in ("", "root", "0")


def _facts(container: Any, image_sizes: Mapping[str, int]) -> dict[str, Any]:
    a = container.attrs
    cfg, host, state = a.get("Config", {}), a.get("HostConfig", {}), a.get("State", {})
    labels = cfg.get("Labels") or {}
    health = (state.get("Health") or {}).get("Status", "none")
    image_id = a.get("Image", "")
    nano = host.get("NanoCpus") or 0
    quota, period = host.get("CpuQuota") or 0, host.get("CpuPeriod") or 0
    cpus = nano / 1e9 if nano else (quota / period if quota and period else 0.0)
    ports = []
    for cport, binds in (host.get("PortBindings") or {}).items():
        for b in binds or []:
            ports.append(f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort')}->{cport}")
    log_cfg = host.get("LogConfig") or {}
    return {
        "service": labels.get(SERVICE_LABEL, ""),
        "container": a.get("Name", "").lstrip("/"),
        "id": a.get("Id", "")[:12],
        "state": state.get("Status", ""),
        "health": health,
        "image": cfg.get("Image", ""),
        "image_id": image_id,
        "image_size_mb": round(image_sizes.get(image_id, 0) / 1e6, 1),
        "user": cfg.get("User") or "",
        "runs_as_root": runs_as_root(cfg.get("User")),
        "memory_limit": int(host.get("Memory") or 0),
        "memory_reservation": int(host.get("MemoryReservation") or 0),
        "cpus": float(cpus),
        "pids_limit": int(host.get("PidsLimit") or 0),
        "restart_policy": (host.get("RestartPolicy") or {}).get("Name", "") or "no",
        "restart_count": int(a.get("RestartCount") or 0),
        "oom_killed": bool(state.get("OOMKilled")),
        "read_only": bool(host.get("ReadonlyRootfs")),
        "privileged": bool(host.get("Privileged")),
        "security_opt": list(host.get("SecurityOpt") or []),
        "cap_add": list(host.get("CapAdd") or []),
        "cap_drop": list(host.get("CapDrop") or []),
        "network_mode": host.get("NetworkMode", ""),
        "networks": sorted((a.get("NetworkSettings", {}).get("Networks") or {}).keys()),
        "mounts": [f"{m.get('Source') or m.get('Name')}:{m.get('Destination')}"
                   for m in a.get("Mounts") or []],
        "ports": ports,
        "healthcheck": bool((cfg.get("Healthcheck") or {}).get("Test")),
        "log_driver": log_cfg.get("Type", ""),
        "log_opts": dict(log_cfg.get("Config") or {}),
        "log_path": a.get("LogPath", ""),
        "started_at": state.get("StartedAt", ""),
    }


def inspect_facts(client: Any, project: str) -> pd.DataFrame:
    """Inspect every container of a compose project into one row of facts each.

    Columns: service, container, id, state, health, image, image_id, image_size_mb, user,
    runs_as_root, memory_limit (bytes, 0 = none), memory_reservation, cpus (0 = none), pids_limit,
    restart_policy, restart_count, oom_killed, read_only, privileged, security_opt, cap_add,
    cap_drop, network_mode, networks, mounts, ports, healthcheck, log_driver, log_opts, log_path,
    started_at.

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.

    Returns:
        A DataFrame with one row per container, sorted by service.

    Raises:
        ProjectNotFound: The project has no containers.
    """
    containers = project_containers(client, project)
    sizes: dict[str, int] = {}
    with engine_errors():
        for c in containers:
            img = c.attrs.get("Image", "")
            if img and img not in sizes:
                try:
                    sizes[img] = int(client.api.inspect_image(img).get("Size") or 0)
                except Exception:  # image removed under a running container
                    sizes[img] = 0
        rows = [_facts(c, sizes) for c in containers]
    return pd.DataFrame(rows)


def exec_in_container(
    client: Any,
    container: Any,
    cmd: Sequence[str],
    *,
    user: str | None = None,
    environment: Mapping[str, str] | None = None,
    workdir: str | None = None,
    check: bool = True,
) -> ExecResult:
    """Run a command in a running container and collect its output.

    Args:
        client: A ``docker.DockerClient``.
        container: A container object or its name/id.
        cmd: The command as a list of arguments (no shell unless you pass ``["sh", "-c", ...]``).
        user: Run as this user.
        environment: Extra environment variables.
        workdir: Working directory.
        check: Raise when the command exits non-zero.

    Returns:
        The exit code, stdout and stderr.

    Raises:
        CommandFailed: ``check`` is set and the command exited non-zero.
        ContainerNotFound: No such container.
    """
    name = container if isinstance(container, str) else container.name
    with engine_errors(container=name):
        exec_id = client.api.exec_create(
            name, list(cmd), user=user or "", environment=dict(environment or {}),
            workdir=workdir, stdout=True, stderr=True,
        )["Id"]
        out, err = client.api.exec_start(exec_id, demux=True)
        code = int(client.api.exec_inspect(exec_id).get("ExitCode") or 0)
    result = ExecResult(code, (out or b"").decode("utf-8", "replace"),
                        (err or b"").decode("utf-8", "replace"))
    if check and code != 0:
        raise CommandFailed(cmd, code, redact_text(result.stderr or result.stdout), name)
    return result


def exec_in_service(
    client: Any,
    project: str,
    service: str,
    cmd: Sequence[str],
    **kwargs: Any,
) -> ExecResult:
    """Run a command in the container of a compose service (see :func:`exec_in_container`).

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.
        service: Service name.
        cmd: The command as a list of arguments.
        **kwargs: ``user``, ``environment``, ``workdir``, ``check``.

    Returns:
        The exit code, stdout and stderr.

    Raises:
        ServiceNotFound: No such service.
        CommandFailed: The command exited non-zero (with ``check=True``, the default).
    """
    return exec_in_container(client, service_container(client, project, service), cmd, **kwargs)


def exec_to_file(
    client: Any,
    container: Any,
    cmd: Sequence[str],
    dest: IO[bytes],
    *,
    user: str | None = None,
    environment: Mapping[str, str] | None = None,
    chunk_callback: Any = None,
) -> tuple[int, int, str]:
    """Run a command in a container and stream its stdout into a file, chunk by chunk.

    Memory stays bounded whatever the output size (used for ``pg_dump`` and log exports).

    Args:
        client: A ``docker.DockerClient``.
        container: A container object or its name/id.
        cmd: The command as a list of arguments.
        dest: A binary file open for writing.
        user: Run as this user.
        environment: Extra environment variables.
        chunk_callback: Called with each stdout chunk (e.g. to update a hash).

    Returns:
        ``(exit_code, bytes_written, stderr)``.
    """
    name = container if isinstance(container, str) else container.name
    written = 0
    err_parts: list[bytes] = []
    with engine_errors(container=name):
        exec_id = client.api.exec_create(
            name, list(cmd), user=user or "", environment=dict(environment or {}),
            stdout=True, stderr=True,
        )["Id"]
        for out, err in client.api.exec_start(exec_id, stream=True, demux=True):
            if out:
                dest.write(out)
                written += len(out)
                if chunk_callback is not None:
                    chunk_callback(out)
            if err and sum(map(len, err_parts)) < 65536:
                err_parts.append(err)
        code = int(client.api.exec_inspect(exec_id).get("ExitCode") or 0)
    return code, written, b"".join(err_parts).decode("utf-8", "replace")


def compose(
    args: Sequence[str],
    *,
    project: str | None = None,
    files: Sequence[str | Path] = (),
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = 600,
) -> subprocess.CompletedProcess[str]:
    """Run ``docker compose`` (v2) with the given project and files.

    Args:
        args: Arguments after ``docker compose [-p P] [-f F]...``, e.g. ``["up", "-d", "api"]``.
        project: Project name (``-p``).
        files: Compose files (``-f``), in order; later files override earlier ones.
        cwd: Working directory.
        env: Extra environment variables for the command.
        check: Raise when it exits non-zero.
        timeout: Seconds before it is killed.

    Returns:
        The completed process (text output captured).

    Raises:
        ToolMissing: ``docker`` or its compose plugin is missing.
        CommandFailed: It exited non-zero (with ``check=True``).
    """
    if shutil.which("docker") is None:
        raise ToolMissing("docker", "install the Docker CLI, or run scripts/docker-engine.sh")
    cmd = ["docker", "compose"]
    if project:
        cmd += ["-p", project]
    for f in files:
        cmd += ["-f", str(f)]
    cmd += list(args)
    full_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(cmd, -1, f"timed out after {timeout} s") from exc
    if proc.returncode != 0 and "is not a docker command" in proc.stderr:
        raise ToolMissing("docker compose", "run scripts/docker-engine.sh to install the plugin")
    if check and proc.returncode != 0:
        raise CommandFailed(cmd, proc.returncode, redact_text(proc.stderr or proc.stdout))
    return proc


# --------------------------------------------------------------------------------------------
# Stats sampling (resource tuning, issue 5). Computed exactly as the ``docker stats`` CLI does
# (docker/cli cli/command/container/stats_helpers.go).
# --------------------------------------------------------------------------------------------

STATS_COLUMNS = [
    "time", "service", "container", "cpu_percent", "mem_usage_bytes", "mem_limit_bytes",
    "mem_percent", "net_rx_bytes", "net_tx_bytes", "blk_read_bytes", "blk_write_bytes", "pids",
    "cpu_periods", "cpu_throttled_periods", "cpu_throttled_time_ns",
]


def cpu_percent(cpu: Mapping[str, Any], precpu: Mapping[str, Any]) -> float:
    """CPU usage in percent of one CPU between two ``cpu_stats`` readings, as ``docker stats``.

    ``(container delta / system delta) × online CPUs × 100``: 100 % is one full core, so a
    container using two cores shows 200 %.

    Args:
        cpu: The later ``cpu_stats`` mapping of the stats API.
        precpu: The earlier one (the API's ``precpu_stats`` or a previous sample's ``cpu_stats``).

    Returns:
        The percentage; 0.0 when either delta is not positive (first reading, stopped container).
    """
    usage = cpu.get("cpu_usage") or {}
    pre_usage = precpu.get("cpu_usage") or {}
    cpu_delta = float(usage.get("total_usage") or 0) - float(pre_usage.get("total_usage") or 0)
    system_delta = float(cpu.get("system_cpu_usage") or 0) - float(
        precpu.get("system_cpu_usage") or 0
    )
    online = float(cpu.get("online_cpus") or 0)
    if online == 0.0:
        online = float(len(usage.get("percpu_usage") or []))
    if system_delta > 0.0 and cpu_delta > 0.0:
        return cpu_delta / system_delta * online * 100.0
    return 0.0


def mem_usage_no_cache(memory_stats: Mapping[str, Any]) -> int:
    """Memory usage without the reclaimable page cache, as ``docker stats`` shows it.

    cgroup v1: ``usage - total_inactive_file``; cgroup v2: ``usage - inactive_file``; the raw
    usage when the cache figure is missing or not smaller.

    Args:
        memory_stats: The ``memory_stats`` mapping of the stats API.

    Returns:
        Bytes in use.
    """
    usage = int(memory_stats.get("usage") or 0)
    stats = memory_stats.get("stats") or {}
    if "total_inactive_file" in stats and int(stats["total_inactive_file"]) < usage:
        return usage - int(stats["total_inactive_file"])
    inactive = int(stats.get("inactive_file") or 0)
    if inactive < usage:
        return usage - inactive
    return usage


def parse_stats(raw: Mapping[str, Any], precpu: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Turn one raw stats API document into the numbers ``docker stats`` prints.

    Args:
        raw: What ``GET /containers/{id}/stats?stream=false`` returned.
        precpu: The ``cpu_stats`` to compute CPU % against; default: the document's own
            ``precpu_stats`` (the daemon's previous reading, about one second earlier).

    Returns:
        ``time`` (UTC timestamp of the reading), ``container`` (name), ``cpu_percent``,
        ``mem_usage_bytes``, ``mem_limit_bytes``, ``mem_percent``, ``net_rx_bytes``,
        ``net_tx_bytes``, ``blk_read_bytes``, ``blk_write_bytes``, ``pids``, ``cpu_periods``,
        ``cpu_throttled_periods``, ``cpu_throttled_time_ns`` (cumulative CFS throttling counters),
        and ``running`` (False when the engine returned an empty reading).
    """
    cpu = raw.get("cpu_stats") or {}
    pre = precpu if precpu is not None else (raw.get("precpu_stats") or {})
    mem = raw.get("memory_stats") or {}
    mem_used = mem_usage_no_cache(mem)
    mem_limit = int(mem.get("limit") or 0)
    rx = tx = 0
    for net in (raw.get("networks") or {}).values():
        rx += int(net.get("rx_bytes") or 0)
        tx += int(net.get("tx_bytes") or 0)
    blk_read = blk_write = 0
    for entry in (raw.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(entry.get("op") or "")[:1].lower()
        if op == "r":
            blk_read += int(entry.get("value") or 0)
        elif op == "w":
            blk_write += int(entry.get("value") or 0)
    throttling = cpu.get("throttling_data") or {}
    running = bool(cpu.get("system_cpu_usage"))
    read = str(raw.get("read") or "")
    time = (pd.Timestamp(read) if running and read and not read.startswith("0001")
            else pd.Timestamp.now(tz="UTC"))
    if time.tzinfo is None:
        time = time.tz_localize("UTC")
    return {
        "time": time.tz_convert("UTC"),
        "container": str(raw.get("name") or "").lstrip("/"),
        "cpu_percent": cpu_percent(cpu, pre),
        "mem_usage_bytes": mem_used,
        "mem_limit_bytes": mem_limit,
        "mem_percent": mem_used / mem_limit * 100.0 if mem_limit else 0.0,
        "net_rx_bytes": rx,
        "net_tx_bytes": tx,
        "blk_read_bytes": blk_read,
        "blk_write_bytes": blk_write,
        "pids": int((raw.get("pids_stats") or {}).get("current") or 0),
        "cpu_periods": int(throttling.get("periods") or 0),
        "cpu_throttled_periods": int(throttling.get("throttled_periods") or 0),
        "cpu_throttled_time_ns": int(throttling.get("throttled_time") or 0),
        "running": running,
    }


class _PoolFullFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Connection pool is full" not in record.getMessage()


@contextlib.contextmanager
def _quiet_pool_warnings() -> Iterator[None]:
    # docker-py keeps 10 pooled connections; concurrent sampling of more containers opens extra
    # (cheap, local) connections and urllib3 warns when it closes them instead of pooling them.
    log = logging.getLogger("urllib3.connectionpool")
    flt = _PoolFullFilter()
    log.addFilter(flt)
    try:
        yield
    finally:
        log.removeFilter(flt)


def _raw_stats(client: Any, container: Any, *, one_shot: bool = False) -> dict[str, Any]:
    name = container if isinstance(container, str) else container.name
    ident = name if isinstance(container, str) else container.id
    with engine_errors(container=name):
        for attempt in range(3):
            try:
                raw: dict[str, Any] = client.api.stats(
                    ident, stream=False, one_shot=True if one_shot else None,
                )
                return raw
            except ValueError as exc:  # empty body: the container stopped during the request
                state = client.api.inspect_container(ident).get("State") or {}  # 404 if gone
                if not state.get("Running") or state.get("Dead"):
                    return {}  # reads as "not running", like the CLI's zeros
                if attempt == 2:
                    raise OpslibError(f"The engine sent no stats for {name} three times; "
                                      "check 'docker stats' and retry.") from exc
    return {}  # pragma: no cover - the loop always returns or raises


def _supports_one_shot(client: Any) -> bool:
    from docker.utils import version_gte

    return bool(version_gte(str(client.api._version), "1.41"))


def _service_of(container: Any) -> str:
    if isinstance(container, str):
        return ""
    return str((container.labels or {}).get(SERVICE_LABEL, ""))


def container_stats(client: Any, container: Any) -> dict[str, Any]:
    """One ``docker stats --no-stream`` reading of one container.

    Takes about one to two seconds: the engine waits for its next collection cycle so that it can
    report the previous CPU reading (``precpu_stats``) too.

    Args:
        client: A ``docker.DockerClient``.
        container: A container object or its name/id.

    Returns:
        The fields of :func:`parse_stats` plus ``service`` (compose service label, "" if none).
        A stopped container reads as zeros with ``running`` False, as in the CLI.

    Raises:
        ContainerNotFound: No such container.
    """
    row = parse_stats(_raw_stats(client, container))
    row["service"] = _service_of(container)
    if not row["container"]:
        row["container"] = container if isinstance(container, str) else container.name
    return row


def snapshot_stats(
    client: Any, containers: Sequence[Any], *, max_workers: int | None = None
) -> pd.DataFrame:
    """One :func:`container_stats` reading of each container, taken concurrently (threads).

    The engine answers every request after its next collection cycle, so reading 20 containers
    at once costs about as much wall time as reading one.

    Args:
        client: A ``docker.DockerClient``.
        containers: Container objects or names/ids.
        max_workers: Threads (default: one per container, at most 64).

    Returns:
        A DataFrame with :data:`STATS_COLUMNS`, one row per container.
    """
    from concurrent.futures import ThreadPoolExecutor

    if not containers:
        return pd.DataFrame(columns=STATS_COLUMNS)
    workers = max_workers or min(len(containers), 64)
    with _quiet_pool_warnings(), ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(lambda c: container_stats(client, c), containers))
    return _stats_frame(rows)


def _stats_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows), columns=STATS_COLUMNS)
    if not df.empty:
        df["time"] = pd.to_datetime(df["time"], utc=True)
        df = df.sort_values(["service", "container", "time"], kind="stable").reset_index(drop=True)
    return df


def _sample_one(
    client: Any,
    container: Any,
    start: float,
    interval_s: float,
    readings: int,
    rows: list[dict[str, Any]],
    tick: Any,
) -> None:
    import time as _time

    service = _service_of(container)

    def keep(raw: Mapping[str, Any], precpu: Mapping[str, Any] | None) -> bool:
        row = parse_stats(raw, precpu)
        if row["running"]:
            row["service"] = service
            row["container"] = row["container"] or container.name
            if precpu is None and not raw.get("precpu_stats", {}).get("system_cpu_usage"):
                row["cpu_percent"] = float("nan")  # nothing to diff against
            rows.append(row)
        tick()
        return bool(row["running"])

    try:
        if readings == 0:  # one reading, exactly like `docker stats --no-stream`
            keep(_raw_stats(client, container), None)
            return
        # A baseline now, then one reading at the end of each interval; CPU % of a reading is
        # the CLI's formula over the whole interval since the previous one. With a previous
        # reading to diff against, the engine need not wait for two cycles (one-shot).
        one_shot = _supports_one_shot(client)
        base = _raw_stats(client, container, one_shot=one_shot)
        previous = base.get("cpu_stats") if (base.get("cpu_stats") or {}).get(
            "system_cpu_usage") else None
        end = start + readings * interval_s + 1.0  # intervals < 1 s: stop on time anyway
        for k in range(1, readings + 1):
            delay = start + k * interval_s - _time.monotonic()
            if delay > 0:
                _time.sleep(delay)
            elif _time.monotonic() > end:
                break
            raw = _raw_stats(client, container, one_shot=one_shot)
            running = keep(raw, previous)
            previous = raw.get("cpu_stats") if running else None
    except ContainerNotFound:  # removed while we sampled: keep what we have
        return


def sample_stats(
    client: Any,
    project: str,
    *,
    duration_s: float,
    interval_s: float = 1.0,
    progress: bool = False,
) -> pd.DataFrame:
    """Sample CPU, memory, network, block I/O and PIDs of every running container of a project.

    Every container is read in its own thread: a baseline reading at the start, then one at the
    end of each ``interval_s`` for ``duration_s`` seconds (``duration_s // interval_s``
    readings). Numbers are computed as ``docker stats`` does (CPU delta over system delta ×
    online CPUs, here over the whole interval since the previous reading; memory usage minus
    inactive file cache, cgroup v1 and v2). With ``duration_s < interval_s`` each container is
    read once, exactly as ``docker stats --no-stream`` (CPU over the engine's last second). The
    engine collects stats once a second, so readings land on its next cycle (up to ~1 s late) and
    an ``interval_s`` below 1 s samples as fast as the engine allows.

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.
        duration_s: How long to sample, in seconds.
        interval_s: Seconds between readings of one container.
        progress: Show a tqdm progress bar (``tqdm.auto``: a widget in Jupyter).

    Returns:
        A DataFrame with columns time (UTC), service, container, cpu_percent, mem_usage_bytes,
        mem_limit_bytes, mem_percent, net_rx_bytes, net_tx_bytes, blk_read_bytes,
        blk_write_bytes, pids, cpu_periods, cpu_throttled_periods, cpu_throttled_time_ns (the
        last three are cumulative CFS throttling counters), sorted by service, container, time.

    Raises:
        BadParameter: ``duration_s`` is negative or ``interval_s`` not positive.
        ProjectNotFound: The project has no running container.
    """
    import threading
    import time as _time
    from concurrent.futures import ThreadPoolExecutor

    from opslib.exceptions import BadParameter

    if not duration_s >= 0:
        raise BadParameter("duration_s", duration_s, "a number of seconds >= 0")
    if not interval_s > 0:
        raise BadParameter("interval_s", interval_s, "a number of seconds > 0")
    containers = project_containers(client, project, include_stopped=False)
    readings = int(duration_s // interval_s) if duration_s >= interval_s else 0
    bar: Any = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max(1, readings) * len(containers), desc=f"stats {project}",
                   unit="sample")
    lock = threading.Lock()

    def tick() -> None:
        if bar is not None:
            with lock:
                bar.update(1)

    rows: list[dict[str, Any]] = []
    start = _time.monotonic()
    try:
        workers = min(len(containers), 64)
        with _quiet_pool_warnings(), ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_sample_one, client, c, start, interval_s, readings, rows, tick)
                       for c in containers]
            for fut in futures:
                fut.result()
    finally:
        if bar is not None:
            bar.close()
    return _stats_frame(rows)


# --------------------------------------------------------------------------------------------
# Compose files, the resolved compose model and service health (shared by the runbooks that
# change a project: resources, audit, logs).
# --------------------------------------------------------------------------------------------

#: The repository root (the folder above the ``opslib`` package).
REPO_ROOT = Path(__file__).resolve().parents[2]

#: The demo stack's compose file, relative to :data:`REPO_ROOT`.
DEMO_COMPOSE = "demo/compose.yaml"


def default_compose_file() -> Path:
    """The demo stack's compose file, ``demo/compose.yaml`` at the repository root."""
    return REPO_ROOT / DEMO_COMPOSE


def resolve_compose_files(compose_file: str | Path | Sequence[str | Path] = "") -> list[Path]:
    """The compose files named by a runbook's ``compose_file`` parameter.

    Args:
        compose_file: A path, comma-separated paths (in a string) or a list; empty means
            :func:`default_compose_file`. ``~`` is expanded; relative paths are taken from the
            repository root (notebooks run from ``notebooks/``).

    Returns:
        Absolute paths, in order (later files override earlier ones).

    Raises:
        BadParameter: A file does not exist.
    """
    if isinstance(compose_file, Path):
        items = [str(compose_file)]
    elif isinstance(compose_file, str):
        items = [x.strip() for x in compose_file.split(",")]
    else:
        items = [str(x).strip() for x in compose_file]
    paths = [Path(x).expanduser() for x in items if x]
    paths = [p if p.is_absolute() else REPO_ROOT / p for p in paths] or [default_compose_file()]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise BadParameter("compose_file", compose_file,
                           "existing compose file(s) (relative paths are taken from the "
                           f"repository root {REPO_ROOT}; leave it empty for the demo stack); "
                           "not found: " + ", ".join(missing))
    return paths


def compose_config(
    files: str | Path | Sequence[str | Path],
    *,
    project: str | None = None,
    cwd: str | Path | None = None,
) -> dict[str, Any]:
    """The fully resolved compose model (``docker compose config --format json``).

    The model holds the secret values of ``environment:``: keep it inside the library, never
    show or save it.

    Args:
        files: One compose file or several (later ones override earlier ones).
        project: Project name (``-p``).
        cwd: Working directory (the project's, for relative paths in the files).

    Returns:
        The parsed JSON model.

    Raises:
        CommandFailed: The files do not make a valid compose project (message redacted).
        BadInputFormat: ``docker compose`` printed something that is not a JSON object.
    """
    flist = [files] if isinstance(files, str | Path) else list(files)
    proc = compose(["config", "--format", "json"], project=project, files=flist, cwd=cwd)
    where = str(flist[0]) if flist else "docker compose config"
    try:
        model = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise BadInputFormat(where, f"docker compose config printed no JSON: {exc}") from exc
    if not isinstance(model, dict):
        raise BadInputFormat(where, "the compose model is not a JSON object")
    return model


def compose_files_of(
    client: Any, project: str, *, existing_only: bool = False
) -> tuple[list[Path], str]:
    """The compose files and working directory a project was started with (container labels).

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.
        existing_only: Only accept files that all exist on this machine (the engine may be
            remote, or the checkout moved).

    Returns:
        ``(files, working_dir)`` of the first container that has them; ``([], "")`` when none.

    Raises:
        ProjectNotFound: The project has no containers.
    """
    for c in project_containers(client, project):
        labels = c.labels or {}
        files = [Path(f) for f in str(labels.get(CONFIG_FILES_LABEL, "")).split(",") if f]
        if files and (not existing_only or all(f.is_file() for f in files)):
            return files, str(labels.get(WORKDIR_LABEL, ""))
    return [], ""


def _unhealthy_reason(container: Any, facts: Mapping[str, Any], restarts_before: int) -> str:
    state, health = facts["state"], facts["health"]
    restarts = int(facts["restart_count"])
    if facts["oom_killed"]:
        return "OOM-killed"
    if state in ("exited", "dead", "restarting") or health == "unhealthy" or (
            restarts > restarts_before):
        code = ""
        if state in ("exited", "dead"):
            code = f" (exit code {(container.attrs.get('State') or {}).get('ExitCode')})"
        return f"state {state}{code}, health {health}, {restarts} restarts"
    return ""


def wait_healthy(
    client: Any,
    project: str,
    service: str,
    timeout_s: float,
    *,
    restarts_before: int = 0,
    settle_s: float = 5.0,
) -> tuple[bool, str]:
    """Wait until every container of a compose service runs and is healthy.

    Gives up at once, with the reason, when a container is OOM-killed, exits or dies, is
    restarting, turns unhealthy or has restarted more than ``restarts_before`` times. A
    container without a health check must keep running for ``settle_s`` seconds (an OOM kill
    right after the start would otherwise go unnoticed). While the service has no container
    (being recreated) it keeps waiting.

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.
        service: Service name.
        timeout_s: Seconds to wait for it (at least ``settle_s``); 0 with ``settle_s=0`` checks
            once.
        restarts_before: Restarts the containers may already have (0 for new containers).
        settle_s: Seconds a container without a health check must be running.

    Returns:
        ``(True, "<container> running/healthy, ...")`` or ``(False, why)``.
    """
    import time as _time

    deadline = _time.monotonic() + max(timeout_s, settle_s)
    last = "no container"
    ok_since: float | None = None
    while True:
        try:
            found = project_containers(client, project, service=service)
        except OpslibError as exc:  # not there (yet), or removed while listed: look again
            found, last = [], str(exc)
        rows = [(c, _facts(c, {})) for c in found]
        if rows:
            for c, r in rows:
                why = _unhealthy_reason(c, r, restarts_before)
                if why:
                    return False, f"{r['container']}: {why}"
            ok = all(r["state"] == "running" and r["health"] in ("healthy", "none")
                     for _, r in rows)
            last = ", ".join(f"{r['container']} {r['state']}/{r['health']}" for _, r in rows)
            now = _time.monotonic()
            ok_since = (ok_since or now) if ok else None
            unchecked = any(r["health"] == "none" for _, r in rows)
            if ok_since is not None and (not unchecked or now - ok_since >= settle_s):
                return True, last
        else:
            ok_since = None
        if _time.monotonic() >= deadline:
            return False, f"not healthy within {timeout_s:g} s ({last})"
        _time.sleep(1.0)
