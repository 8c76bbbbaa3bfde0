"""The ``docker compose`` CLI, the resolved compose model, waiting for a healthy service."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from opslib.engine.client import CONFIG_FILES_LABEL, WORKDIR_LABEL, Client
from opslib.engine.containers import _facts, project_containers
from opslib.exceptions import (
    BadInputFormat,
    CommandFailed,
    OpslibError,
    ToolMissing,
)
from opslib.redact import redact_text

__all__ = ["compose", "compose_config", "compose_files_of", "wait_healthy"]


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
    client: Client, project: str, *, existing_only: bool = False
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
    client: Client,
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
