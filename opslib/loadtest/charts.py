"""Latency/throughput figures and the bottleneck read from container stats beside latency."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import polars as pl

from opslib.loadtest.data import OVERALL, LoadTestData

__all__ = [
    "Bottleneck",
    "chart_latency_distribution",
    "chart_latency_over_time",
    "chart_latency_vs_resources",
    "chart_throughput_errors",
    "find_bottleneck",
]


# --- charts ----------------------------------------------------------------------------------


def chart_latency_over_time(intervals: pl.DataFrame, *, title: str = "Latency over time") -> Any:
    """p50 and p95 latency per interval (one pair of lines per name).

    Args:
        intervals: From :func:`over_time`.
        title: Figure title.

    Returns:
        A plotly Figure.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    for (name,), part in intervals.partition_by("name", as_dict=True, maintain_order=True).items():
        t = part["time"].to_list()
        fig.add_trace(go.Scatter(x=t, y=part["p95"].to_list(), mode="lines", name=f"{name} p95"))
        fig.add_trace(go.Scatter(x=t, y=part["p50"].to_list(), mode="lines", name=f"{name} p50",
                                 line={"dash": "dot"}))
    fig.update_layout(title=title, xaxis_title="time (UTC)", yaxis_title="latency (ms)",
                      hovermode="x unified", height=380)
    return fig


def chart_throughput_errors(intervals: pl.DataFrame, *,
                            title: str = "Throughput and errors over time") -> Any:
    """Requests/s (bars) and errors/s (line, right axis) per interval, overall.

    Args:
        intervals: From :func:`over_time` (summed over names if it has several).
        title: Figure title.

    Returns:
        A plotly Figure.
    """
    import plotly.graph_objects as go

    agg = intervals.group_by("time").agg(pl.col("rps").sum(), pl.col("eps").sum()).sort("time")
    fig = go.Figure()
    fig.add_trace(go.Bar(x=agg["time"].to_list(), y=agg["rps"].to_list(), name="requests/s",
                         marker_color="#4c78a8"))
    fig.add_trace(go.Scatter(x=agg["time"].to_list(), y=agg["eps"].to_list(),
                             name="errors/s", mode="lines+markers", yaxis="y2",
                             line={"color": "#e45756"}))
    fig.update_layout(title=title, xaxis_title="time (UTC)", yaxis_title="requests/s",
                      yaxis2={"title": "errors/s", "overlaying": "y", "side": "right",
                              "rangemode": "tozero"}, height=380, hovermode="x unified")
    return fig


def chart_latency_distribution(data: LoadTestData, *, bins: int = 60,
                               title: str = "Latency distribution") -> Any:
    """Latency histogram per request name (binned in polars, so big runs stay small).

    Locust and k6 summary exports have no per-request values: their reported percentiles are
    drawn as a percentile curve instead.

    Args:
        data: Results from :func:`load_results`.
        bins: Number of bins from 0 to the overall p99.9 (slower requests go in the last bin).
        title: Figure title.

    Returns:
        A plotly Figure.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    if data.requests is not None and data.requests.height:
        req = data.requests
        top = float(req.select(pl.col("duration_ms").quantile(0.999, "linear")).item() or 1.0)
        width = max(top, 1e-9) / bins
        counts = req.group_by(
            "name", (pl.col("duration_ms") / width).floor().clip(0, bins - 1).alias("bin")
        ).agg(pl.len().alias("n")).sort("name", "bin")
        for (name,), part in counts.partition_by("name", as_dict=True).items():
            fig.add_trace(go.Bar(x=((part["bin"] + 0.5) * width).to_list(),
                                 y=part["n"].to_list(), name=str(name), width=width))
        fig.update_layout(barmode="stack", xaxis_title="latency (ms, last bin = slower)",
                          yaxis_title="requests")
    elif data.stats is not None:
        pcols = [c for c in data.stats.columns if re.fullmatch(r"p\d+(_\d+)?", c)]
        pcols.sort(key=lambda c: float(c[1:].replace("_", ".")))
        for row in data.stats.iter_rows(named=True):
            xs = [float(c[1:].replace("_", ".")) for c in pcols if row[c] is not None]
            ys = [row[c] for c in pcols if row[c] is not None]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=str(row["name"])))
        fig.update_layout(xaxis_title="percentile", yaxis_title="latency (ms)")
    fig.update_layout(title=title, height=380)
    return fig


def chart_latency_vs_resources(intervals: pl.DataFrame, container_stats: Any, *,
                               title: str = "Latency vs. container CPU and memory") -> Any:
    """p95 latency, per-service CPU % and memory on one shared time axis.

    Args:
        intervals: From :func:`over_time` (overall).
        container_stats: From :func:`opslib.engine.sample_stats` (pandas or polars).
        title: Figure title.

    Returns:
        A plotly Figure with three rows.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    stats = _as_polars(container_stats)
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("p95 latency (ms)", "CPU % per service",
                                        "memory per service (MiB)"))
    overall = intervals.filter(pl.col("name") == OVERALL) if intervals.height else intervals
    fig.add_trace(go.Scatter(x=overall["time"].to_list(), y=overall["p95"].to_list(),
                             name="p95 latency", mode="lines"), row=1, col=1)
    if stats is not None and stats.height:
        per_service = stats.group_by("service", "time").agg(
            pl.col("cpu_percent").sum(), pl.col("mem_usage_bytes").sum()).sort("service", "time")
        for (service,), part in per_service.partition_by("service", as_dict=True).items():
            t = part["time"].to_list()
            fig.add_trace(go.Scatter(x=t, y=part["cpu_percent"].to_list(), mode="lines",
                                     name=f"{service} CPU %", legendgroup=str(service)),
                          row=2, col=1)
            fig.add_trace(go.Scatter(x=t, y=(part["mem_usage_bytes"] / 2**20).to_list(),
                                     mode="lines", name=f"{service} MiB",
                                     legendgroup=str(service), showlegend=False), row=3, col=1)
    fig.update_layout(title=title, height=650, hovermode="x unified")
    return fig


def _as_polars(frame: Any) -> pl.DataFrame | None:
    if frame is None:
        return None
    if isinstance(frame, pl.DataFrame):
        return frame
    out: pl.DataFrame = pl.from_pandas(frame.reset_index(drop=True))
    if "time" in out.columns and out.schema["time"] == pl.Datetime:
        tz = getattr(out.schema["time"], "time_zone", None)
        out = out.with_columns(
            pl.col("time").dt.replace_time_zone("UTC") if tz is None
            else pl.col("time").dt.convert_time_zone("UTC"))
    return out


# --- bottleneck ------------------------------------------------------------------------------


@dataclass
class Bottleneck:
    """The likely bottleneck of a run.

    Attributes:
        cpu_service: Service with the highest mean CPU % during the run.
        cpu_mean: Its mean CPU % (100 = one core).
        cpu_max: Its peak CPU %.
        memory_service: Service with the highest peak memory % of its limit.
        memory_percent_max: That peak.
        slowest_name: Request name with the highest p95.
        slowest_p95_ms: Its p95.
        resources: Per service: cpu_mean, cpu_max, mem_max_bytes, mem_percent_max.
        text: One sentence for the report.
    """

    cpu_service: str | None
    cpu_mean: float | None
    cpu_max: float | None
    memory_service: str | None
    memory_percent_max: float | None
    slowest_name: str | None
    slowest_p95_ms: float | None
    resources: pl.DataFrame
    text: str


def find_bottleneck(summary: pl.DataFrame, container_stats: Any = None) -> Bottleneck:
    """Name the likely bottleneck: busiest service (CPU), memory pressure, slowest endpoint.

    Args:
        summary: From :func:`summarize`.
        container_stats: From :func:`opslib.engine.sample_stats` during the run, or ``None``.

    Returns:
        A :class:`Bottleneck`.
    """
    named = summary.filter((pl.col("name") != OVERALL) & pl.col("p95").is_not_null())
    slow = named.sort("p95", descending=True).head(1)
    slowest = slow["name"][0] if slow.height else None
    slowest_p95 = float(slow["p95"][0]) if slow.height else None
    stats = _as_polars(container_stats)
    resources = pl.DataFrame(schema={"service": pl.String, "cpu_mean": pl.Float64,
                                     "cpu_max": pl.Float64, "mem_max_bytes": pl.Int64,
                                     "mem_percent_max": pl.Float64})
    cpu_service = mem_service = None
    cpu_mean = cpu_max = mem_pct = None
    if stats is not None and stats.height:
        per_time = stats.group_by("service", "time").agg(
            pl.col("cpu_percent").sum(), pl.col("mem_usage_bytes").sum(),
            pl.col("mem_percent").max())
        resources = per_time.group_by("service").agg(
            pl.col("cpu_percent").mean().alias("cpu_mean"),
            pl.col("cpu_percent").max().alias("cpu_max"),
            pl.col("mem_usage_bytes").max().cast(pl.Int64).alias("mem_max_bytes"),
            pl.col("mem_percent").max().alias("mem_percent_max"),
        ).sort("cpu_mean", descending=True, nulls_last=True)
        top = resources.row(0, named=True)
        cpu_service, cpu_mean, cpu_max = top["service"], top["cpu_mean"], top["cpu_max"]
        mem = resources.sort("mem_percent_max", descending=True, nulls_last=True).row(
            0, named=True)
        mem_service, mem_pct = mem["service"], mem["mem_percent_max"]
    parts = []
    if cpu_service is not None:
        parts.append(f"busiest service: {cpu_service} (CPU mean {cpu_mean or 0:.0f}%, peak "
                     f"{cpu_max or 0:.0f}%; 100% = one core)")
        parts.append(f"highest memory pressure: {mem_service} ({mem_pct or 0:.1f}% of its "
                     "limit)")
    else:
        parts.append("no container stats were sampled")
    if slowest is not None:
        parts.append(f"slowest endpoint: {slowest} (p95 {slowest_p95 or 0:.1f} ms)")
    return Bottleneck(cpu_service=cpu_service, cpu_mean=cpu_mean, cpu_max=cpu_max,
                      memory_service=mem_service, memory_percent_max=mem_pct,
                      slowest_name=slowest, slowest_p95_ms=slowest_p95, resources=resources,
                      text="Likely bottleneck — " + "; ".join(parts) + ".")
