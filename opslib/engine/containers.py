"""A compose project's containers: list, inspect, exec."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import pandas as pd

from opslib.engine.client import (
    NUMBER_LABEL,
    ONEOFF_LABEL,
    PROJECT_LABEL,
    SERVICE_LABEL,
    Client,
    engine_errors,
)
from opslib.exceptions import (
    CommandFailed,
    ProjectNotFound,
    ServiceNotFound,
)
from opslib.redact import redact_text

__all__ = [
    "ExecResult",
    "exec_in_container",
    "exec_in_service",
    "exec_to_file",
    "inspect_facts",
    "list_projects",
    "project_containers",
    "runs_as_root",
    "service_container",
    "services",
]


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


def list_projects(client: Client) -> list[str]:
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
    client: Client, project: str, *, service: str | None = None, include_stopped: bool = True
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


def services(client: Client, project: str) -> list[str]:
    """Service names of a compose project that have containers.

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.

    Returns:
        Sorted service names.
    """
    return sorted({c.labels.get(SERVICE_LABEL, "") for c in project_containers(client, project)})


def service_container(client: Client, project: str, service: str) -> Any:
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


def inspect_facts(client: Client, project: str) -> pd.DataFrame:
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
    import docker.errors

    containers = project_containers(client, project)
    sizes: dict[str, int] = {}
    with engine_errors():
        for c in containers:
            img = c.attrs.get("Image", "")
            if img and img not in sizes:
                try:
                    sizes[img] = int(client.api.inspect_image(img).get("Size") or 0)
                except docker.errors.NotFound:  # image removed under a running container
                    sizes[img] = 0
        rows = [_facts(c, sizes) for c in containers]
    return pd.DataFrame(rows)


def exec_in_container(
    client: Client,
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
    client: Client,
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
    client: Client,
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
