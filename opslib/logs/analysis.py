"""What the logs say: the analysis of a disk report's files and its figures."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from opslib.exceptions import (
    BadParameter,
)
from opslib.logs.disk import DiskReport
from opslib.logs.parse import LogAnalysis, analyse_files

__all__ = ["analyse_logs", "error_rate_chart", "volume_chart"]


# =============================================================================================
# 2. What is being written
# =============================================================================================

def analyse_logs(report: DiskReport, *, since_minutes: float = 1440,
                 now: dt.datetime | None = None, **kwargs: Any) -> LogAnalysis:
    """Analyse the container json-file logs of a disk report (live and rotated files).

    Args:
        report: From :func:`disk_report`.
        since_minutes: Only lines of the last N minutes count (0 = everything).
        now: The end of the window (default: now, UTC).
        **kwargs: Passed to :func:`opslib.logs.parse.analyse_files` (``batch_bytes``,
            ``top_n`` ...).

    Returns:
        A :class:`opslib.logs.parse.LogAnalysis`.

    Raises:
        BadParameter: A negative window.
    """
    if since_minutes < 0:
        raise BadParameter("since_minutes", since_minutes, "0 (everything) or more minutes")
    since = None
    if since_minutes:
        since = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(minutes=float(since_minutes))
    f = report.files
    f = f[f["accessible"] & f["kind"].isin(["live", "rotated", "rotated-gz"])]
    # Oldest first per service, so partial lines continue across files in order.
    f = f.assign(order=-f["index"].where(f["index"] > 0, 0)).sort_values(["service", "order"])
    return analyse_files(list(zip(f["service"], f["path"], strict=True)), since=since, **kwargs)


def volume_chart(analysis: LogAnalysis) -> Any:
    """Bytes written per minute and service (lines in the hover).

    Args:
        analysis: From :func:`analyse_logs`.

    Returns:
        A plotly figure.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    v = analysis.volume.to_pandas()
    for service, d in v.groupby("service", sort=True):
        fig.add_trace(go.Scatter(
            x=d["minute"], y=d["bytes"] / 1e3, name=str(service), mode="lines",
            stackgroup="bytes", customdata=d[["lines"]],
            hovertemplate="%{x}<br>%{y:.1f} kB, %{customdata[0]} lines<extra>%{fullData.name}"
                          "</extra>"))
    fig.update_layout(title="Log volume per minute", yaxis_title="kB / minute", height=350,
                      margin={"t": 50, "b": 40})
    return fig


def error_rate_chart(analysis: LogAnalysis) -> Any:
    """Share of error lines per minute and service.

    Args:
        analysis: From :func:`analyse_logs`.

    Returns:
        A plotly figure.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    v = analysis.volume.with_columns(
        rate=pl.when(pl.col("lines") > 0).then(100.0 * pl.col("errors") / pl.col("lines"))
        .otherwise(0.0)).to_pandas()
    for service, d in v.groupby("service", sort=True):
        fig.add_trace(go.Scatter(x=d["minute"], y=d["rate"], name=str(service),
                                 mode="lines+markers", customdata=d[["errors", "lines"]],
                                 hovertemplate="%{x}<br>%{y:.1f}% (%{customdata[0]} of "
                                               "%{customdata[1]})<extra>%{fullData.name}"
                                               "</extra>"))
    fig.update_layout(title="Error rate per minute", yaxis_title="% of lines", height=350,
                      margin={"t": 50, "b": 40})
    return fig
