"""What a project's services have now: declared and live limits, and usage samples."""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from opslib import demo
from opslib import engine as od
from opslib.engine import (
    Client,
    inspect_facts,
    project_containers,
    sample_stats,
    snapshot_stats,
)
from opslib.exceptions import (
    BadParameter,
)
from opslib.loadtest import run_k6
from opslib.redact import redact_text
from opslib.resources.units import parse_cpus, parse_memory

__all__ = [
    "LoadedSample",
    "compose_config",
    "current_state",
    "declared_resources",
    "host_cpus",
    "oom_killed_services",
    "resolve_compose_file",
    "restarts_total",
    "sample_with_load",
    "service_role",
    "services_without_limits",
]


# ------------------------------------------------------------------------------------------------
# Compose file and current state
# ------------------------------------------------------------------------------------------------


def resolve_compose_file(compose_file: str | Path = "") -> Path:
    """Resolve the runbook's ``compose_file`` parameter (one file; see
    :func:`opslib.demo.resolve_compose_files`).

    Args:
        compose_file: A path; empty means the demo stack's ``demo/compose.yaml``. Relative paths
            are taken relative to the repository root (notebooks run from ``notebooks/``).

    Returns:
        The absolute path.

    Raises:
        BadParameter: The file does not exist, or several files were named.
    """
    paths = demo.resolve_compose_files(compose_file)
    if len(paths) != 1:
        raise BadParameter("compose_file", str(compose_file), "one compose file")
    return paths[0]


def compose_config(
    files: Path | str | Sequence[Path | str], project: str | None = None
) -> dict[str, Any]:
    """The fully resolved compose model: :func:`opslib.engine.compose_config`."""
    return od.compose_config(files, project=project)


def _declared_from_service(svc: Mapping[str, Any]) -> dict[str, Any]:
    res = ((svc.get("deploy") or {}).get("resources")) or {}
    limits, reservations = res.get("limits") or {}, res.get("reservations") or {}
    return {
        "declared_memory_limit": parse_memory(limits.get("memory") or svc.get("mem_limit")),
        "declared_memory_reservation": parse_memory(
            reservations.get("memory") or svc.get("mem_reservation")
        ),
        "declared_cpus": parse_cpus(limits.get("cpus") or svc.get("cpus")),
    }


def declared_resources(model: Mapping[str, Any]) -> pd.DataFrame:
    """What a compose model declares for each service's memory and CPU.

    ``deploy.resources`` and the short forms ``mem_limit``/``mem_reservation``/``cpus`` are read.

    Args:
        model: A model from :func:`compose_config`.

    Returns:
        Columns service, declared_memory_limit, declared_memory_reservation (bytes, 0 = none),
        declared_cpus (0 = none).
    """
    rows = [{"service": name, **_declared_from_service(svc or {})}
            for name, svc in sorted((model.get("services") or {}).items())]
    return pd.DataFrame(rows, columns=["service", "declared_memory_limit",
                                       "declared_memory_reservation", "declared_cpus"])


def service_role(service: str, image: str = "", command: str = "") -> str:
    """Guess what kind of server a service runs, to pick floors and checklist references.

    Args:
        service: Compose service name.
        image: Image name.
        command: Entrypoint and command, joined.

    Returns:
        ``"postgres"``, ``"redis"``, ``"frontend"`` (nginx / web / frontend) or ``"other"``.
    """
    text = f"{service} {image} {command}".lower()
    name = service.lower()
    if "postgres" in text or name in ("db", "database", "pg", "postgresql"):
        return "postgres"
    if "redis" in text or name in ("cache", "redis"):
        return "redis"
    if "nginx" in text or name in ("web", "frontend", "proxy", "nginx"):
        return "frontend"
    return "other"


def host_cpus(client: Client) -> int:
    """Number of CPUs the Docker engine's host has (the upper bound for any CPU limit).

    Args:
        client: A ``docker.DockerClient``.

    Returns:
        ``docker info`` NCPU.
    """
    return int(od.engine_info(client).get("NCPU") or 1)


def current_state(
    client: Client, project: str, compose_file: str | Path | Sequence[str | Path], *,
    with_throttling: bool = True
) -> pd.DataFrame:
    """Live limits of each container next to what the compose file declares, with flags.

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.
        compose_file: The project's compose file (see :func:`resolve_compose_file`).
        with_throttling: Also read each running container's stats once (about 1-2 s, concurrent)
            for its cumulative CPU throttling since it started.

    Returns:
        One row per container: service, container, state, health, role, memory_limit,
        memory_reservation, cpus (live; 0 = none), declared_memory_limit,
        declared_memory_reservation, declared_cpus, matches_compose, restart_count, oom_killed,
        throttled_pct (share of CFS periods throttled since start; NaN without a CPU limit or
        stats), no_memory_limit, no_cpu_limit, flags (a readable summary).

    Raises:
        ProjectNotFound: The project has no containers.
        CommandFailed: ``docker compose config`` rejected the compose file.
    """
    facts = inspect_facts(client, project)
    declared = declared_resources(compose_config(compose_file, project))
    df = facts.merge(declared, on="service", how="left")
    for col in ("declared_memory_limit", "declared_memory_reservation"):
        df[col] = df[col].fillna(0).astype("int64")
    df["declared_cpus"] = df["declared_cpus"].fillna(0.0).astype("float64")
    commands = {c.name: " ".join([*(c.attrs.get("Config", {}).get("Entrypoint") or []),
                                  *(c.attrs.get("Config", {}).get("Cmd") or [])])
                for c in project_containers(client, project)}
    df["role"] = [service_role(s, i, commands.get(c, ""))
                  for s, i, c in zip(df["service"], df["image"], df["container"], strict=True)]
    df["throttled_pct"] = float("nan")
    if with_throttling:
        running = [c for c in project_containers(client, project) if c.status == "running"]
        snap = snapshot_stats(client, running)
        if not snap.empty:
            snap = snap.assign(throttled_pct=snap["cpu_throttled_periods"]
                               / snap["cpu_periods"].where(snap["cpu_periods"] > 0) * 100.0)
            pct = dict(zip(snap["container"], snap["throttled_pct"], strict=True))
            df["throttled_pct"] = df["container"].map(pct).astype("float64")
    df["matches_compose"] = (
        (df["memory_limit"] == df["declared_memory_limit"])
        & (df["memory_reservation"] == df["declared_memory_reservation"])
        & ((df["cpus"] - df["declared_cpus"]).abs() < 1e-6)
    )
    df["no_memory_limit"] = df["memory_limit"] <= 0
    df["no_cpu_limit"] = df["cpus"] <= 0
    df["flags"] = [_flags(r) for r in df.to_dict("records")]
    cols = ["service", "container", "state", "health", "role", "memory_limit",
            "memory_reservation", "cpus", "declared_memory_limit", "declared_memory_reservation",
            "declared_cpus", "matches_compose", "restart_count", "oom_killed", "throttled_pct",
            "no_memory_limit", "no_cpu_limit", "flags"]
    return df[cols].sort_values(["service", "container"]).reset_index(drop=True)


def _flags(r: Mapping[Any, Any]) -> str:
    out = []
    if r["no_memory_limit"]:
        out.append("no memory limit")
    if r["no_cpu_limit"]:
        out.append("no CPU limit")
    if r["oom_killed"]:
        out.append("OOM-killed")
    if int(r["restart_count"]) > 0:
        out.append(f"restarted {int(r['restart_count'])}x")
    pct = r.get("throttled_pct")
    if pct is not None and not math.isnan(float(pct)) and float(pct) >= 5.0:
        out.append(f"CPU throttled in {float(pct):.0f}% of periods")
    if not r["matches_compose"]:
        out.append("live limits differ from the compose file")
    if r["state"] != "running":
        out.append(f"state {r['state']}")
    return ", ".join(out) or "ok"


def services_without_limits(state: pd.DataFrame, *, kind: str = "any") -> list[str]:
    """Services that have a container without a limit.

    Args:
        state: A frame from :func:`current_state` (or :func:`opslib.engine.inspect_facts`).
        kind: ``"memory"``, ``"cpu"`` or ``"any"`` (no memory limit or no CPU limit).

    Returns:
        Sorted service names.

    Raises:
        BadParameter: Unknown ``kind``.
    """
    if kind not in ("memory", "cpu", "any"):
        raise BadParameter("kind", kind, "'memory', 'cpu' or 'any'")
    no_mem = state["memory_limit"] <= 0
    no_cpu = state["cpus"] <= 0
    mask = no_mem if kind == "memory" else no_cpu if kind == "cpu" else (no_mem | no_cpu)
    return sorted(set(state.loc[mask, "service"]))


# ------------------------------------------------------------------------------------------------
# Sampling (optionally under load)
# ------------------------------------------------------------------------------------------------


@dataclass
class LoadedSample:
    """Stats samples and, when load was driven, the load test's result.

    Attributes:
        samples: The frame of :func:`opslib.engine.sample_stats`.
        load: ``"none"`` or ``"k6"``.
        k6_run: What ``opslib.loadtest.run_k6`` returned (``None`` without load).
        load_error: Why the load run failed, if it did (sampling still completed).
    """

    samples: pd.DataFrame
    load: str
    k6_run: Any = None
    load_error: str = ""


def sample_with_load(
    client: Client,
    project: str,
    *,
    duration_s: float,
    interval_s: float = 1.0,
    load: str = "none",
    k6_vus: int = 10,
    base_url: str = "http://127.0.0.1:8080/api",
    out_dir: Path | None = None,
    progress: bool = False,
) -> LoadedSample:
    """Sample a project's containers, optionally while a bounded k6 run drives load.

    With ``load="k6"``, ``opslib.loadtest.run_k6`` runs in a background thread for
    ``duration_s`` seconds with ``k6_vus`` virtual users against ``base_url`` (127.0.0.1 only)
    while :func:`opslib.engine.sample_stats` samples.

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.
        duration_s: Seconds to sample (and to load).
        interval_s: Seconds between readings of one container.
        load: ``"none"`` or ``"k6"``.
        k6_vus: Virtual users of the k6 run.
        base_url: The API base URL k6 targets.
        out_dir: Folder for k6's output (required with ``load="k6"``).
        progress: Show a progress bar while sampling.

    Returns:
        The samples and the load result.

    Raises:
        BadParameter: Unknown ``load``, a non-loopback ``base_url``, or no ``out_dir`` for k6.
        ToolMissing: ``opslib.loadtest`` is not available.
    """
    if load not in ("none", "k6"):
        raise BadParameter("load", load, "'none' or 'k6'")
    if load == "none":
        samples = sample_stats(client, project, duration_s=duration_s, interval_s=interval_s,
                               progress=progress)
        return LoadedSample(samples, load)
    if not re.match(r"^https?://(127\.0\.0\.1|localhost)(:\d+)?(/|$)", base_url):
        raise BadParameter("base_url", base_url, "a URL on 127.0.0.1 (load only goes to the demo)")
    if out_dir is None:
        raise BadParameter("out_dir", out_dir, "the run's output folder for k6's results")
    result: dict[str, Any] = {}

    def _run() -> None:
        try:
            result["run"] = run_k6(
                base_url=base_url, vus=int(k6_vus), duration_s=max(1, round(duration_s)),
                out_dir=Path(out_dir) / "k6",
            )
        except Exception as exc:  # reported with the samples, never swallowed
            result["error"] = f"{type(exc).__name__}: {exc}"

    worker = threading.Thread(target=_run, name="opslib-k6", daemon=True)
    worker.start()
    try:
        samples = sample_stats(client, project, duration_s=duration_s, interval_s=interval_s,
                               progress=progress)
    finally:
        worker.join(timeout=duration_s + 300)
    error = result.get("error", "")
    if worker.is_alive():
        error = "the k6 run did not finish within duration + 300 s"
    return LoadedSample(samples, load, result.get("run"), redact_text(error))


def oom_killed_services(state: pd.DataFrame) -> list[str]:
    """Services with an OOM-killed container, sorted (from :func:`current_state`)."""
    return sorted(state.loc[state["oom_killed"], "service"].unique().tolist())


def restarts_total(state: pd.DataFrame) -> int:
    """Restarts of every container in a :func:`current_state` frame, summed."""
    return int(state["restart_count"].sum())
