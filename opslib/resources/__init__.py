"""Resource tuning: measure what containers use, recommend limits, apply them safely.

The flow of the ``resource-tuning`` runbook (checklist §3):

1. :func:`sample_with_load` samples every container of a compose project
   (:func:`opslib.engine.sample_stats`), optionally while a bounded k6 run loads the demo stack.
2. :func:`current_state` puts the live limits (inspect) next to what the compose file declares and
   flags services without a memory or CPU limit, OOM kills, restarts and CPU throttling.
3. :func:`usage_summary` and :func:`recommend` turn the samples into a memory limit, a memory
   reservation and a CPU limit per service, each with the sentence that explains it;
   :func:`usage_figure` draws usage against the current and recommended limits.
4. :func:`plan_limits` writes a compose override file with ``deploy.resources`` for the services
   that change (the user's compose file is never rewritten); :func:`apply_limits` recreates those
   services one at a time with ``docker compose -f base -f override up -d``, verifies the new
   limits and health, and rolls a service that does not come back healthy to its previous
   settings. Every step is journalled (JSON lines) in the run's output folder.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from opslib import demo
from opslib import engine as od
from opslib.demo import DEMO_COMPOSE
from opslib.engine import (
    Client,
    compose,
    inspect_facts,
    project_containers,
    sample_stats,
    snapshot_stats,
)
from opslib.exceptions import (
    BadParameter,
    CommandFailed,
    OpslibError,
    PlanError,
    ToolMissing,
)
from opslib.journal import Journal
from opslib.redact import redact_text

__all__ = [
    "DEMO_COMPOSE",
    "MIB",
    "REFERENCES",
    "LimitsPlan",
    "LoadedSample",
    "Reference",
    "apply_limits",
    "apply_outcome",
    "build_override",
    "compose_config",
    "current_state",
    "declared_resources",
    "format_cpus",
    "format_memory",
    "host_cpus",
    "parse_cpus",
    "parse_memory",
    "plan_limits",
    "read_journal",
    "readable",
    "recommend",
    "recommended_values",
    "resolve_compose_file",
    "round_cpus",
    "round_memory",
    "sample_with_load",
    "service_role",
    "services_without_limits",
    "usage_figure",
    "usage_summary",
    "validate_override",
]

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

JOURNAL_NAME = "resources-journal.jsonl"
OVERRIDE_NAME = "compose.resources.override.yaml"


@dataclass(frozen=True)
class Reference:
    """Checklist targets for a kind of service, used as informed upper references.

    Attributes:
        memory: Memory limit (bytes).
        memory_reservation: Memory reservation (bytes).
        cpus: CPU limit (cores).
        memory_floor: Smallest memory limit worth setting for this kind of service (bytes).
        cpus_floor: Smallest CPU limit worth setting (cores).
    """

    memory: int
    memory_reservation: int
    cpus: float
    memory_floor: int = 64 * MIB
    cpus_floor: float = 0.5


#: Checklist §3 targets by service role (see :func:`service_role`). "other" has no upper reference.
REFERENCES: dict[str, Reference | None] = {
    "postgres": Reference(2 * GIB, 1 * GIB, 2.0, memory_floor=256 * MIB, cpus_floor=1.0),
    "redis": Reference(512 * MIB, 256 * MIB, 1.0),
    "frontend": Reference(512 * MIB, 256 * MIB, 1.0),
    "other": None,
}

DEFAULT_MEMORY_FLOOR = 64 * MIB
DEFAULT_CPUS_FLOOR = 0.5
#: A reference below observed max × this is ignored (it would starve the service).
MIN_SAFETY = 1.2


# ------------------------------------------------------------------------------------------------
# Units
# ------------------------------------------------------------------------------------------------

_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?)(b?)\s*$", re.IGNORECASE)
_MEM_MULT = {"": 1, "k": KIB, "m": MIB, "g": GIB, "t": GIB * 1024, "p": GIB * 1024 * 1024}


def parse_memory(value: str | float | None) -> int:
    """Parse a memory size as docker and compose write it into bytes.

    Units are binary like docker's (``k``/``m``/``g``/``t``/``p``, optionally followed by ``i``
    and/or ``b``, any case): ``"512m"``, ``"2G"``, ``"1gb"``, ``"256MiB"``, ``"1.5g"``; a bare
    number (or numeric string) is bytes.

    Args:
        value: The size (``None`` or ``""`` means no limit).

    Returns:
        Bytes; 0 for no limit.

    Raises:
        BadParameter: The value is not a size.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0
    if isinstance(value, bool):
        raise BadParameter("memory", value, "a size such as 512M, 2G or a number of bytes")
    if isinstance(value, int | float):
        if value < 0 or math.isnan(value):
            raise BadParameter("memory", value, "a size >= 0")
        return int(value)
    m = _MEM_RE.match(str(value))
    if not m:
        raise BadParameter("memory", value, "a size such as 512M, 2G, 256MiB or a number of bytes")
    number, unit, binary, _byte = m.groups()
    if binary and not unit:  # "5i" / "5ib" are not sizes
        raise BadParameter("memory", value, "a size such as 512M, 2G, 256MiB or a number of bytes")
    return math.ceil(float(number) * _MEM_MULT[unit.lower()])


def format_memory(n: float) -> str:
    """Write bytes the way a compose file would (``"2G"``, ``"384M"``, ``"1536k"``).

    Args:
        n: Bytes.

    Returns:
        The shortest exact form in G, M or k; plain bytes otherwise; ``"none"`` for 0.
    """
    b = int(n)
    if b <= 0:
        return "none"
    for unit, mult in (("G", GIB), ("M", MIB), ("k", KIB)):
        if b % mult == 0:
            return f"{b // mult}{unit}"
    return str(b)


def parse_cpus(value: str | float | None) -> float:
    """Parse a CPU limit (``"1.5"``, ``0.5``) into cores.

    Args:
        value: The limit (``None``/``""``/0 means none).

    Returns:
        Cores as a float; 0.0 for no limit.

    Raises:
        BadParameter: Not a non-negative number.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0.0
    try:
        cpus = float(value)
    except (TypeError, ValueError) as exc:
        raise BadParameter("cpus", value, "a number of cores such as 0.5 or 2") from exc
    if cpus < 0 or math.isnan(cpus):
        raise BadParameter("cpus", value, "a number of cores >= 0")
    return cpus


def format_cpus(cpus: float) -> str:
    """Write cores for a compose file (``"1.0"``, ``"0.75"``).

    Args:
        cpus: Cores.

    Returns:
        The value with at most two decimals; ``"none"`` for 0.
    """
    if cpus <= 0:
        return "none"
    text = f"{cpus:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def round_memory(n: float) -> int:
    """Round a memory size up to a sane unit.

    Steps: 16 MiB below 128 MiB, 32 MiB below 512 MiB, 128 MiB below 2 GiB, 512 MiB above.

    Args:
        n: Bytes.

    Returns:
        The rounded size in bytes (at least 16 MiB).
    """
    n = max(float(n), 1.0)
    step = 16 * MIB if n <= 128 * MIB else 32 * MIB if n <= 512 * MIB else (
        128 * MIB if n <= 2 * GIB else 512 * MIB
    )
    return int(math.ceil(n / step) * step)


def round_cpus(cpus: float, step: float = 0.25) -> float:
    """Round cores up to a multiple of ``step`` (0.25 cores by default).

    Args:
        cpus: Cores.
        step: Granularity.

    Returns:
        The rounded value (at least ``step``).
    """
    return max(step, math.ceil(round(cpus / step, 6)) * step)


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
    client: Client, project: str, compose_file: str | Path, *, with_throttling: bool = True
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
    import importlib

    try:
        loadtest: Any = importlib.import_module("opslib.loadtest")
    except ImportError as exc:
        raise ToolMissing("opslib.loadtest", "it ships with opslib; reinstall with "
                          "'pip install -e .' or use load='none'") from exc
    result: dict[str, Any] = {}

    def _run() -> None:
        try:
            result["run"] = loadtest.run_k6(
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


# ------------------------------------------------------------------------------------------------
# Usage summary and recommendations
# ------------------------------------------------------------------------------------------------


def usage_summary(samples: pd.DataFrame) -> pd.DataFrame:
    """Per service: memory and CPU statistics of the samples, plus throttling in the window.

    Quantiles are over every reading of every container of the service (limits are per
    container, so replicas pool their readings).

    Args:
        samples: A frame from :func:`opslib.engine.sample_stats`.

    Returns:
        Columns service, samples, mem_median, mem_p95, mem_p99, mem_max (bytes), cpu_median,
        cpu_p95, cpu_p99, cpu_max (cores: 1.0 = one full CPU), throttled_pct_window (share of
        CFS periods throttled during sampling; NaN without a CPU limit).
    """
    cols = ["service", "samples", "mem_median", "mem_p95", "mem_p99", "mem_max", "cpu_median",
            "cpu_p95", "cpu_p99", "cpu_max", "throttled_pct_window"]
    if samples.empty:
        return pd.DataFrame(columns=cols)
    s = samples.assign(cores=samples["cpu_percent"] / 100.0)
    g = s.groupby("service", sort=True)
    out = pd.DataFrame({
        "samples": g.size(),
        "mem_median": g["mem_usage_bytes"].median(),
        "mem_p95": g["mem_usage_bytes"].quantile(0.95),
        "mem_p99": g["mem_usage_bytes"].quantile(0.99),
        "mem_max": g["mem_usage_bytes"].max(),
        "cpu_median": g["cores"].median(),
        "cpu_p95": g["cores"].quantile(0.95),
        "cpu_p99": g["cores"].quantile(0.99),
        "cpu_max": g["cores"].max(),
    })
    per_c = s.groupby(["service", "container"]).agg(
        p0=("cpu_periods", "min"), p1=("cpu_periods", "max"),
        t0=("cpu_throttled_periods", "min"), t1=("cpu_throttled_periods", "max"))
    per_c = per_c.assign(dp=per_c["p1"] - per_c["p0"], dt=per_c["t1"] - per_c["t0"])
    tot = per_c.groupby(level="service")[["dp", "dt"]].sum()
    out["throttled_pct_window"] = tot["dt"] / tot["dp"].where(tot["dp"] > 0) * 100.0
    return out.reset_index()[cols]


def _first(state: pd.DataFrame, service: str, col: str, default: Any) -> Any:
    rows = state.loc[state["service"] == service, col]
    return rows.iloc[0] if len(rows) else default


def recommend(
    usage: pd.DataFrame,
    state: pd.DataFrame,
    *,
    headroom: float = 1.5,
    host_cpus: float = 2.0,
    host_memory: int = 0,
    references: Mapping[str, Reference | None] | None = None,
) -> pd.DataFrame:
    """Recommend a memory limit, memory reservation and CPU limit per service, explained.

    - Memory limit: observed max (≥ p99) × ``headroom``, rounded up (:func:`round_memory`), at
      least the role's floor (64 MiB; PostgreSQL 256 MiB), at most the checklist reference
      (PostgreSQL 2G, Redis 512M, frontend 512M) unless usage needs more; raised to current ×
      ``headroom`` if the container was OOM-killed.
    - Memory reservation: p95 (≥ median) rounded up, at most the limit and the reference.
    - CPU limit: p99 cores × ``headroom``, rounded up to 0.25, at least the role's floor (0.5;
      PostgreSQL 1.0), at most the reference unless usage needs more, never above the host's
      CPUs (docker rejects that); raised if the container was throttled in ≥ 20 % of periods.
      (Compose ignores ``reservations.cpus`` outside swarm, so no CPU reservation is proposed.)

    ``action`` per resource: ``set`` (no limit now), ``raise`` (current below the
    recommendation), ``lower`` (current more than twice the recommendation; advisory, not
    applied by default) or ``keep``.

    Args:
        usage: A frame from :func:`usage_summary`.
        state: A frame from :func:`current_state`.
        headroom: Multiplier over observed peaks (>= 1).
        host_cpus: CPUs of the engine's host (:func:`host_cpus`).
        host_memory: Host memory in bytes (0 = unknown); no limit exceeds it.
        references: Role → :class:`Reference`; default :data:`REFERENCES`.

    Returns:
        One row per service with columns service, role, current_memory_limit,
        memory_limit, memory_limit_action, memory_limit_why, current_memory_reservation,
        memory_reservation, memory_reservation_why, current_cpus, cpus, cpus_action, cpus_why,
        and the human-readable memory_limit_h, memory_reservation_h.

    Raises:
        BadParameter: ``headroom`` below 1 or ``host_cpus`` not positive.
    """
    if not headroom >= 1.0:
        raise BadParameter("headroom", headroom, "a multiplier >= 1.0, e.g. 1.5")
    if not host_cpus > 0:
        raise BadParameter("host_cpus", host_cpus, "a number of CPUs > 0")
    refs = REFERENCES if references is None else references
    rows = []
    for u in usage.to_dict("records"):
        svc = str(u["service"])
        role = str(_first(state, svc, "role", "other"))
        ref = refs.get(role)
        cur_mem = int(_first(state, svc, "memory_limit", 0))
        cur_res = int(_first(state, svc, "memory_reservation", 0))
        cur_cpus = float(_first(state, svc, "cpus", 0.0))
        oom = bool(state.loc[state["service"] == svc, "oom_killed"].any()) \
            if "oom_killed" in state else False
        window = u.get("throttled_pct_window")
        throttled = float("nan") if window is None else float(window)
        if "throttled_pct" in state and math.isnan(throttled):
            vals = state.loc[state["service"] == svc, "throttled_pct"].dropna()
            throttled = float(vals.max()) if len(vals) else float("nan")
        mem = _memory_limit(u, ref, headroom, cur_mem, oom, host_memory)
        res = _memory_reservation(u, ref, mem[0])
        cpu = _cpu_limit(u, ref, headroom, host_cpus, cur_cpus, throttled)
        rows.append({
            "service": svc, "role": role,
            "current_memory_limit": cur_mem, "memory_limit": mem[0],
            "memory_limit_action": _action(cur_mem, mem[0]), "memory_limit_why": mem[1],
            "current_memory_reservation": cur_res, "memory_reservation": res[0],
            "memory_reservation_why": res[1],
            "current_cpus": cur_cpus, "cpus": cpu[0],
            "cpus_action": _action(cur_cpus, cpu[0]), "cpus_why": cpu[1],
        })
    df = pd.DataFrame(rows, columns=[
        "service", "role", "current_memory_limit", "memory_limit", "memory_limit_action",
        "memory_limit_why", "current_memory_reservation", "memory_reservation",
        "memory_reservation_why", "current_cpus", "cpus", "cpus_action", "cpus_why"])
    df["memory_limit_h"] = df["memory_limit"].map(format_memory)
    df["memory_reservation_h"] = df["memory_reservation"].map(format_memory)
    return df


def _action(current: float, recommended: float) -> str:
    if current <= 0:
        return "set"
    if current < recommended:
        return "raise"
    if current > 2 * recommended:
        return "lower"
    return "keep"


def _mb(n: float) -> str:
    return f"{n / MIB:.0f} MiB" if n < 10 * GIB else f"{n / GIB:.1f} GiB"


def _memory_limit(u: Mapping[Any, Any], ref: Reference | None, headroom: float, current: int,
                  oom: bool, host_memory: int) -> tuple[int, str]:
    peak = float(max(u["mem_max"], u["mem_p99"]))
    floor = ref.memory_floor if ref else DEFAULT_MEMORY_FLOOR
    derived = round_memory(peak * headroom)
    why = (f"observed max {_mb(peak)} (p99 {_mb(u['mem_p99'])}) × {headroom:g} headroom = "
           f"{_mb(peak * headroom)}, rounded up to {format_memory(derived)}")
    value = derived
    if value < floor:
        value = floor
        why += f"; raised to the floor of {format_memory(floor)} for this kind of service"
    if oom and current > 0 and current * headroom > value:
        value = round_memory(current * headroom)
        why += (f"; the container was OOM-killed at {format_memory(current)}, so current × "
                f"{headroom:g} = {format_memory(value)}")
    if ref is not None and value > ref.memory:
        if ref.memory >= peak * MIN_SAFETY:
            value = ref.memory
            why += f"; capped at the checklist reference {format_memory(ref.memory)}"
        else:
            why += (f"; above the checklist reference {format_memory(ref.memory)} because "
                    f"observed usage needs it")
    if host_memory and value > host_memory:
        value = host_memory
        why += f"; capped at the host's memory {_mb(host_memory)}"
    return value, why


def _memory_reservation(u: Mapping[Any, Any], ref: Reference | None,
                        limit: int) -> tuple[int, str]:
    base = float(max(u["mem_p95"], u["mem_median"]))
    value = round_memory(base)
    why = (f"p95 {_mb(u['mem_p95'])} (median {_mb(u['mem_median'])}) rounded up to "
           f"{format_memory(value)}: the memory this service needs when the host is short")
    if ref is not None and value > ref.memory_reservation and ref.memory_reservation >= base:
        value = ref.memory_reservation
        why += f"; capped at the checklist reference {format_memory(value)}"
    if value > limit:
        value = limit
        why += f"; capped at the limit {format_memory(limit)}"
    return value, why


def _cpu_limit(u: Mapping[Any, Any], ref: Reference | None, headroom: float, host: float,
               current: float, throttled: float) -> tuple[float, str]:
    p99 = float(u["cpu_p99"])
    floor = ref.cpus_floor if ref else DEFAULT_CPUS_FLOOR
    derived = round_cpus(p99 * headroom)
    why = (f"p99 {p99:.2f} cores (max {float(u['cpu_max']):.2f}) × {headroom:g} headroom = "
           f"{p99 * headroom:.2f}, rounded up to {format_cpus(derived)}")
    value = derived
    if value < floor:
        value = floor
        why += f"; raised to the floor of {format_cpus(floor)} cores for this kind of service"
    if current > 0 and not math.isnan(throttled) and throttled >= 20.0 and value <= current:
        value = round_cpus(current * headroom)
        why += (f"; throttled in {throttled:.0f}% of CPU periods at {format_cpus(current)} cores,"
                f" so current × {headroom:g}")
    if ref is not None and value > ref.cpus:
        if ref.cpus >= p99 * MIN_SAFETY:
            value = ref.cpus
            why += f"; capped at the checklist reference {format_cpus(ref.cpus)}"
        else:
            why += f"; above the checklist reference {format_cpus(ref.cpus)} as usage needs it"
    if value > host:
        value = float(host)
        why += f"; capped at the host's {host:g} CPUs (docker rejects more)"
    return value, why


def recommended_values(recommendations: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The recommendations as a small JSON-able mapping, for ``report.record``.

    Args:
        recommendations: A frame from :func:`recommend`.

    Returns:
        Service → ``{"memory_limit": "256M", "memory_reservation": "128M", "cpus": 1.0,
        "memory_limit_action": ..., "cpus_action": ...}``.
    """
    return {str(r["service"]): {
        "memory_limit": format_memory(int(r["memory_limit"])),
        "memory_reservation": format_memory(int(r["memory_reservation"])),
        "cpus": float(r["cpus"]),
        "memory_limit_action": str(r["memory_limit_action"]),
        "cpus_action": str(r["cpus_action"]),
    } for r in recommendations.to_dict("records")}


_BYTES_COLS = re.compile(r"(^|_)(memory|mem)(_|$)")


def _size(v: Any, is_limit: bool) -> str:
    if v is None or pd.isna(v):
        return ""
    if not v:
        return "none" if is_limit else "0"
    if v % MIB == 0:
        return format_memory(v)
    return f"{v / MIB:.1f}Mi"


def readable(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of a state, usage or recommendation frame with sizes and cores made readable.

    Byte columns (names with ``memory``/``mem``) become ``"256M"``-style strings, core columns
    (``cpus``, ``cpu_*``) get two decimals, percentages one; ``*_why`` columns are kept.

    Args:
        df: A frame from :func:`current_state`, :func:`usage_summary` or :func:`recommend`.

    Returns:
        A new frame for display only.
    """
    out = df.copy()
    for col in out.columns:
        name = str(col)
        if name.endswith(("_why", "_h", "_action", "_percent")) or name == "samples":
            continue
        if pd.api.types.is_bool_dtype(out[col]):
            continue
        if _BYTES_COLS.search(name) and pd.api.types.is_numeric_dtype(out[col]):
            is_limit = "limit" in name or "reservation" in name
            out[col] = out[col].map(lambda v, lim=is_limit: _size(v, lim))
        elif (name == "cpus" or name.startswith(("cpu_", "current_cpus", "declared_cpus"))) \
                and pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].round(2)
        elif name.endswith("_pct") or name.endswith("_pct_window"):
            out[col] = out[col].round(1)
    return out.drop(columns=[c for c in ("memory_limit_h", "memory_reservation_h")
                             if c in out.columns])


# ------------------------------------------------------------------------------------------------
# Charts
# ------------------------------------------------------------------------------------------------


def usage_figure(
    samples: pd.DataFrame,
    recommendations: pd.DataFrame,
    *,
    resource: str = "memory",
) -> Any:
    """Usage over time per service against the current and recommended limits.

    Args:
        samples: A frame from :func:`opslib.engine.sample_stats`.
        recommendations: A frame from :func:`recommend`.
        resource: ``"memory"`` (MiB) or ``"cpu"`` (cores).

    Returns:
        A plotly figure with one row per service.

    Raises:
        BadParameter: Unknown ``resource``.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if resource not in ("memory", "cpu"):
        raise BadParameter("resource", resource, "'memory' or 'cpu'")
    services = sorted(set(samples["service"])) if not samples.empty else []
    n = max(1, len(services))
    unit = "MiB" if resource == "memory" else "cores"
    fig = make_subplots(rows=n, cols=1, shared_xaxes=True, vertical_spacing=0.04,
                        subplot_titles=[f"{s} ({unit})" for s in services] or [""])
    recs = recommendations.set_index("service") if not recommendations.empty else None
    for i, svc in enumerate(services, start=1):
        part = samples[samples["service"] == svc]
        for ctr, g in part.groupby("container", sort=True):
            y = g["mem_usage_bytes"] / MIB if resource == "memory" else g["cpu_percent"] / 100.0
            fig.add_trace(go.Scatter(x=g["time"], y=y, mode="lines+markers", name=str(ctr),
                                     showlegend=False), row=i, col=1)
        if recs is None or svc not in recs.index:
            continue
        r = recs.loc[svc]
        if resource == "memory":
            lines = [(r["current_memory_limit"] / MIB, "current limit", "#cf222e", "dash"),
                     (r["memory_limit"] / MIB, "recommended limit", "#1a7f37", "dash"),
                     (r["memory_reservation"] / MIB, "recommended reservation", "#1a7f37", "dot")]
        else:
            lines = [(r["current_cpus"], "current limit", "#cf222e", "dash"),
                     (r["cpus"], "recommended limit", "#1a7f37", "dash")]
        for y, label, colour, dash in lines:
            if y and y > 0:
                fig.add_hline(y=float(y), line_color=colour, line_dash=dash, row=i, col=1,
                              annotation_text=f"{label} {y:.2f}" if resource == "cpu"
                              else f"{label} {y:.0f}", annotation_position="top left")
    title = "Memory usage (no cache)" if resource == "memory" else "CPU usage"
    fig.update_layout(title=f"{title} vs. current and recommended limits",
                      height=max(300, 230 * n), margin={"t": 70, "l": 50, "r": 20, "b": 40})
    return fig


# ------------------------------------------------------------------------------------------------
# Plan: the override file
# ------------------------------------------------------------------------------------------------


def build_override(
    entries: Mapping[str, Mapping[str, Any]], base_model: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Build a compose override document setting ``deploy.resources`` for some services.

    Where the base file uses the short forms (``mem_limit``, ``mem_reservation``, ``cpus``), the
    override sets them to the same values, because compose refuses distinct values for the short
    and the ``deploy`` form.

    Args:
        entries: Service → ``{"memory_limit": bytes, "memory_reservation": bytes,
            "cpus": cores}`` (0 or missing = leave out).
        base_model: The base project's model (:func:`compose_config`), for the short forms.

    Returns:
        The override as a mapping (dump it with ``yaml.safe_dump``).
    """
    base_services = (base_model or {}).get("services") or {}
    services: dict[str, Any] = {}
    for name in sorted(entries):
        e = entries[name]
        limits: dict[str, str] = {}
        reservations: dict[str, str] = {}
        if e.get("cpus"):
            limits["cpus"] = format_cpus(float(e["cpus"]))
        if e.get("memory_limit"):
            limits["memory"] = format_memory(int(e["memory_limit"]))
        if e.get("memory_reservation"):
            reservations["memory"] = format_memory(int(e["memory_reservation"]))
        resources: dict[str, Any] = {}
        if limits:
            resources["limits"] = limits
        if reservations:
            resources["reservations"] = reservations
        if not resources:
            continue
        svc: dict[str, Any] = {"deploy": {"resources": resources}}
        base = base_services.get(name) or {}
        if base.get("mem_limit") and "memory" in limits:
            svc["mem_limit"] = limits["memory"]
        if base.get("mem_reservation") and "memory" in reservations:
            svc["mem_reservation"] = reservations["memory"]
        if base.get("cpus") and "cpus" in limits:
            svc["cpus"] = limits["cpus"]
        services[name] = svc
    return {"services": services}


def _dump_override(doc: Mapping[str, Any], project: str) -> str:
    head = (f"# Resource limits for compose project {project!r}, written by opslib "
            "(resource-tuning runbook).\n# Use it together with the project's compose file: "
            "docker compose -f <compose file> -f <this file> up -d\n")
    return head + yaml.safe_dump(dict(doc), sort_keys=True, default_flow_style=False)


@dataclass
class LimitsPlan:
    """What :func:`apply_limits` will do.

    Attributes:
        project: Compose project name.
        compose_files: The project's own compose file(s), never rewritten.
        override_path: The override file this plan writes (in the run's output folder).
        journal_path: The JSON-lines journal of applied actions.
        actions: One row per service to change: service, memory_limit, memory_reservation, cpus
            (targets), previous_* (live values), why.
        entries: Service → target resources (what the override sets).
        previous: Service → resources the service ran with before (for rollback).
        base_model: The base project's compose model.
        override_yaml: The override file's text.
    """

    project: str
    compose_files: list[Path]
    override_path: Path
    journal_path: Path
    actions: pd.DataFrame
    entries: dict[str, dict[str, Any]]
    previous: dict[str, dict[str, Any]]
    base_model: dict[str, Any] = field(default_factory=dict)
    override_yaml: str = ""

    @property
    def services(self) -> list[str]:
        """Services the plan changes, in apply order."""
        return list(self.entries)


def plan_limits(
    recommendations: pd.DataFrame,
    state: pd.DataFrame,
    *,
    project: str,
    compose_file: str | Path,
    out_dir: str | Path,
    include_lower: bool = False,
    services: Sequence[str] | None = None,
) -> LimitsPlan:
    """Plan the limits to apply and write the proposed override file (nothing is changed yet).

    A service is in the plan when one of its recommendations is ``set`` or ``raise`` (or
    ``lower`` with ``include_lower``). Its override entry is complete: resources that keep their
    current value are written with that value, so the entry says everything about the service.

    Args:
        recommendations: A frame from :func:`recommend` (edit values before planning if needed).
        state: A frame from :func:`current_state` (the live values, kept for rollback).
        project: Compose project name.
        compose_file: The project's compose file.
        out_dir: The run's output folder; the override and the journal are written there.
        include_lower: Also lower limits that are more than twice the recommendation.
        services: Only these services (default: every service that needs a change).

    Returns:
        The plan; its ``override_path`` holds the proposed override.

    Raises:
        PlanError: A named service has no recommendation, or a target is invalid
            (reservation above limit).
    """
    base_file = Path(compose_file).resolve()
    model = compose_config(base_file, project)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wanted = {"set", "raise"} | ({"lower"} if include_lower else set())
    recs = {str(r["service"]): r for r in recommendations.to_dict("records")}
    if services is not None:
        missing = [s for s in services if s not in recs]
        if missing:
            raise PlanError(f"No recommendation for service(s) {', '.join(missing)}; "
                            f"recommendations exist for {', '.join(recs) or 'no service'}.")
        chosen = list(services)
    else:
        chosen = [s for s, r in recs.items()
                  if r["memory_limit_action"] in wanted or r["cpus_action"] in wanted]
    entries: dict[str, dict[str, Any]] = {}
    previous: dict[str, dict[str, Any]] = {}
    rows = []
    for svc in chosen:
        r = recs[svc]
        mem_change = services is not None or r["memory_limit_action"] in wanted
        cpu_change = services is not None or r["cpus_action"] in wanted
        cur = {"memory_limit": int(r["current_memory_limit"]),
               "memory_reservation": int(r["current_memory_reservation"]),
               "cpus": float(r["current_cpus"])}
        target = {
            "memory_limit": int(r["memory_limit"]) if mem_change or not cur["memory_limit"]
            else cur["memory_limit"],
            "memory_reservation": int(r["memory_reservation"])
            if mem_change or not cur["memory_reservation"] else cur["memory_reservation"],
            "cpus": float(r["cpus"]) if cpu_change or not cur["cpus"] else cur["cpus"],
        }
        if target["memory_reservation"] > target["memory_limit"] > 0:
            raise PlanError(f"Service {svc}: memory reservation "
                            f"{format_memory(target['memory_reservation'])} is above its limit "
                            f"{format_memory(target['memory_limit'])}; lower the reservation.")
        if 0 < target["memory_limit"] < 6 * MIB:
            raise PlanError(f"Service {svc}: docker refuses memory limits below 6M.")
        live = state[state["service"] == svc]
        if len(live):
            cur = {"memory_limit": int(live["memory_limit"].iloc[0]),
                   "memory_reservation": int(live["memory_reservation"].iloc[0]),
                   "cpus": float(live["cpus"].iloc[0])}
        entries[svc] = target
        previous[svc] = cur
        why = []
        if mem_change:
            why.append(f"memory: {r['memory_limit_why']}")
            why.append(f"reservation: {r['memory_reservation_why']}")
        if cpu_change:
            why.append(f"cpus: {r['cpus_why']}")
        rows.append({
            "service": svc,
            "memory_limit": format_memory(target["memory_limit"]),
            "previous_memory_limit": format_memory(cur["memory_limit"]),
            "memory_reservation": format_memory(target["memory_reservation"]),
            "previous_memory_reservation": format_memory(cur["memory_reservation"]),
            "cpus": format_cpus(target["cpus"]),
            "previous_cpus": format_cpus(cur["cpus"]),
            "why": " | ".join(why),
        })
    actions = pd.DataFrame(rows, columns=[
        "service", "memory_limit", "previous_memory_limit", "memory_reservation",
        "previous_memory_reservation", "cpus", "previous_cpus", "why"])
    plan = LimitsPlan(project=project, compose_files=[base_file],
                      override_path=out / OVERRIDE_NAME, journal_path=out / JOURNAL_NAME,
                      actions=actions, entries=entries, previous=previous, base_model=model)
    plan.override_yaml = _write_override(plan, entries)
    return plan


def _write_override(plan: LimitsPlan, entries: Mapping[str, Mapping[str, Any]]) -> str:
    text = _dump_override(build_override(entries, plan.base_model), plan.project)
    tmp = plan.override_path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(plan.override_path)
    return text


def validate_override(plan: LimitsPlan) -> dict[str, Any]:
    """Check the plan's override with ``docker compose config`` and read back its resources.

    Args:
        plan: A plan from :func:`plan_limits`.

    Returns:
        Service → resources (as :func:`declared_resources` reads them) of the merged model, for
        the planned services.

    Raises:
        PlanError: ``docker compose`` rejects the base + override combination.
    """
    try:
        model = compose_config([*plan.compose_files, plan.override_path], plan.project)
    except CommandFailed as exc:
        raise PlanError(f"docker compose rejects the override {plan.override_path}: "
                        f"{exc.stderr.strip()[-500:]}") from exc
    declared = declared_resources(model).set_index("service")
    return {s: declared.loc[s].to_dict() for s in plan.services if s in declared.index}


# ------------------------------------------------------------------------------------------------
# Apply
# ------------------------------------------------------------------------------------------------


def _journal_file(path: Path) -> Journal:
    return Journal(path, time_key="time", timespec="seconds")


def _journal(plan: LimitsPlan, service: str, step: str, status: str, detail: str = "",
             **extra: Any) -> None:
    _journal_file(plan.journal_path).append(
        {"project": plan.project, "service": service, "step": step, "status": status,
         "detail": redact_text(detail), **extra})


def read_journal(path: str | Path) -> pd.DataFrame:
    """Read a resources journal (JSON lines) into a frame.

    Args:
        path: The journal file (or the run's output folder).

    Returns:
        One row per journalled step (empty when there is no journal yet).

    Raises:
        BadInputFormat: A complete line is not JSON (a torn last line, from a crash
            mid-write, is skipped).
    """
    p = Path(path)
    if p.is_dir():
        p = p / JOURNAL_NAME
    if not p.exists():
        return pd.DataFrame(columns=["time", "project", "service", "step", "status", "detail"])
    return pd.DataFrame(_journal_file(p).entries(strict=True))


def _live(client: Client, project: str, service: str) -> list[dict[str, Any]]:
    facts = inspect_facts(client, project)
    return [{str(k): v for k, v in r.items()}
            for r in facts[facts["service"] == service].to_dict("records")]


def _matches(row: Mapping[str, Any], target: Mapping[str, Any]) -> bool:
    return (int(row["memory_limit"]) == int(target.get("memory_limit") or 0)
            and int(row["memory_reservation"]) == int(target.get("memory_reservation") or 0)
            and abs(float(row["cpus"]) - float(target.get("cpus") or 0.0)) < 1e-6)


def _up(plan: LimitsPlan, service: str) -> None:
    compose(["up", "-d", "--no-deps", service], project=plan.project,
            files=[*plan.compose_files, plan.override_path])


def apply_limits(
    client: Client,
    plan: LimitsPlan,
    *,
    apply: bool = False,
    timeout_s: float = 180.0,
) -> pd.DataFrame:
    """Apply a plan: recreate each planned service with the override, verify, roll back failures.

    One service at a time: ``docker compose -p P -f base -f override up -d --no-deps S``; then
    inspect must show the new limits and the service must be running and healthy within
    ``timeout_s``. A service that is OOM-killed, exits, restarts, turns unhealthy or does not
    become healthy in time is rolled back: its entry is removed from the override (or set back to
    the entry it had before) and it is recreated with its previous settings. Services already
    running with their target limits are skipped, so rerunning after a crash resumes.

    Args:
        client: A ``docker.DockerClient``.
        plan: A plan from :func:`plan_limits` (show ``plan.actions`` first).
        apply: Really change the system; otherwise return what would be done.
        timeout_s: Seconds each service has to become healthy.

    Returns:
        One row per planned service: service, status (``dry run``, ``applied``,
        ``already applied``, ``rolled back``, ``rollback failed``), detail, memory_limit,
        memory_reservation, cpus (the live values afterwards).

    Raises:
        PlanError: The plan is stale (the override file was removed).
    """
    cols = ["service", "status", "detail", "memory_limit", "memory_reservation", "cpus"]
    if not apply:
        files = " ".join(f"-f {f}" for f in [*plan.compose_files, plan.override_path])
        rows = [{"service": a["service"], "status": "dry run",
                 "detail": f"would run: docker compose -p {plan.project} {files} "
                           f"up -d --no-deps {a['service']}",
                 "memory_limit": a["memory_limit"], "memory_reservation": a["memory_reservation"],
                 "cpus": a["cpus"]}
                for a in plan.actions.to_dict("records")]
        return pd.DataFrame(rows, columns=cols)
    if not plan.override_path.parent.exists():
        raise PlanError(f"The plan's folder {plan.override_path.parent} is gone; plan again.")
    in_effect = {k: dict(v) for k, v in plan.entries.items()}
    _write_override(plan, in_effect)
    _journal(plan, "*", "write_override", "done", str(plan.override_path),
             entries={k: v for k, v in plan.entries.items()})
    results = []
    for svc in plan.services:
        target = plan.entries[svc]
        before = _live(client, plan.project, svc)
        if before and all(_matches(r, target) for r in before) and od.wait_healthy(
                client, plan.project, svc, 0, restarts_before=int(before[0]["restart_count"]),
                settle_s=0)[0]:
            _journal(plan, svc, "apply", "skipped", "already running with the target limits")
            results.append(_result(client, plan, svc, "already applied",
                                   "already running with the target limits"))
            continue
        _journal(plan, svc, "up", "started", target=target)
        ok, detail = True, ""
        try:
            _up(plan, svc)
        except OpslibError as exc:
            ok, detail = False, f"docker compose up failed: {exc}"
        if ok:
            ok, detail = od.wait_healthy(client, plan.project, svc, timeout_s)
        if ok:
            live = _live(client, plan.project, svc)
            if not live or not all(_matches(r, target) for r in live):
                ok, detail = False, "inspect does not show the new limits"
        if ok:
            _journal(plan, svc, "verify", "ok", detail, target=target)
            results.append(_result(client, plan, svc, "applied", f"healthy: {detail}"))
            continue
        _journal(plan, svc, "verify", "failed", detail, target=target)
        results.append(_rollback(client, plan, svc, in_effect, detail, timeout_s))
    return pd.DataFrame(results, columns=cols)


def apply_outcome(result: pd.DataFrame) -> Any:
    """Summarise what :func:`apply_limits` returned, for ``report.record("apply_outcome", ...)``.

    Args:
        result: The frame :func:`apply_limits` returned.

    Returns:
        ``"nothing to apply"``, ``"dry run"``, or service → status (``applied``,
        ``already applied``, ``rolled back``, ``rollback failed``).
    """
    if result.empty:
        return "nothing to apply"
    if set(result["status"]) == {"dry run"}:
        return "dry run"
    return {str(s): str(st) for s, st in zip(result["service"], result["status"], strict=True)}


def _rollback(client: Client, plan: LimitsPlan, svc: str, in_effect: dict[str, dict[str, Any]],
              reason: str, timeout_s: float) -> dict[str, Any]:
    # Recreate from the base file alone, unless the service ran with other values than the base
    # file declares (e.g. it was started with an earlier override): then pin those live values.
    previous: dict[str, Any] | None = None
    declared = _declared_from_service((plan.base_model.get("services") or {}).get(svc) or {})
    prev_live = plan.previous.get(svc, {})
    same = (int(prev_live.get("memory_limit", 0)) == declared["declared_memory_limit"]
            and int(prev_live.get("memory_reservation", 0))
            == declared["declared_memory_reservation"]
            and abs(float(prev_live.get("cpus", 0.0)) - declared["declared_cpus"]) < 1e-6)
    if not same and any(prev_live.values()):
        previous = prev_live
    if previous is None:
        in_effect.pop(svc, None)
    else:
        in_effect[svc] = dict(previous)
    _write_override(plan, in_effect)
    _journal(plan, svc, "rollback", "started", reason, previous=previous or "compose file")
    try:
        _up(plan, svc)
        ok, detail = od.wait_healthy(client, plan.project, svc, timeout_s)
    except OpslibError as exc:
        ok, detail = False, str(exc)
    status = "rolled back" if ok else "rollback failed"
    _journal(plan, svc, "rollback", "ok" if ok else "failed", detail)
    msg = (f"new limits failed ({reason}); rolled back to the previous settings"
           + (f" and healthy again: {detail}" if ok else f" but still not healthy: {detail}"))
    return _result(client, plan, svc, status, msg)


def _result(client: Client, plan: LimitsPlan, svc: str, status: str, detail: str) -> dict[str, Any]:
    live = _live(client, plan.project, svc)
    r = live[0] if live else {"memory_limit": 0, "memory_reservation": 0, "cpus": 0.0}
    return {"service": svc, "status": status, "detail": redact_text(detail),
            "memory_limit": format_memory(int(r["memory_limit"])),
            "memory_reservation": format_memory(int(r["memory_reservation"])),
            "cpus": format_cpus(float(r["cpus"]))}
