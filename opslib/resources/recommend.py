"""Limits recommended from measured usage and reference values, and their figures."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from opslib.exceptions import (
    BadParameter,
)
from opslib.resources.units import GIB, MIB, format_cpus, format_memory, round_cpus, round_memory

__all__ = [
    "REFERENCES",
    "Reference",
    "readable",
    "recommend",
    "recommended_values",
    "usage_figure",
    "usage_summary",
]


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
