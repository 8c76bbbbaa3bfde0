"""Load-test analysis: the same numbers as k6/Locust/JMeter, SLO thresholds, run comparison.

Read results with :func:`load_results` (k6 ``--out json`` NDJSON plain/gzip, k6
``--summary-export``, Locust ``--csv``, JMeter CSV JTL; see :mod:`opslib.loadtest.readers`), then:

- :func:`summarize` — per request name and overall: count, errors, error rate, throughput,
  avg/min/med/max/p(90)/p(95)/p(99) computed exactly as k6's Trend sink does (sort, then
  interpolate linearly between the closest ranks: ``i = p·(n−1)``,
  ``v[⌊i⌋] + (v[⌈i⌉]−v[⌊i⌋])·(i−⌊i⌋)``);
  error rate with k6's ``http_req_failed`` semantics;
- :func:`over_time`, :func:`error_breakdown` and the ``chart_*`` plotly figures;
- :func:`parse_thresholds` / :func:`evaluate_thresholds` — k6 threshold syntax
  (``p(95)<500``, ``rate<0.01``, ``count>100``, ``http_req_duration{name:login}:p(99)<800``)
  evaluated with k6's semantics on any source;
- :func:`compare_runs` — baseline vs candidate with a regression verdict;
- :func:`run_k6` / :func:`run_locust` — a bounded run against the demo stack on 127.0.0.1, with
  the stack's container stats sampled meanwhile (:func:`opslib.engine.sample_stats`), and
  :func:`find_bottleneck` / :func:`chart_latency_vs_resources` to put latency next to CPU/memory.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import polars as pl

from opslib import demo
from opslib.demo import DEMO_BASE_URL, K6_DEMO_SCRIPT, LOCUST_DEMO_FILE
from opslib.engine import Client
from opslib.exceptions import BadParameter, CommandFailed, OpslibError, ToolMissing
from opslib.loadtest.readers import (
    OVERALL,
    STATS_COLUMNS,
    LoadTestData,
    load_results,
    read_jmeter_jtl,
    read_k6_ndjson,
    read_k6_summary,
    read_locust_csv,
)
from opslib.redact import redact_text

__all__ = [
    "DEMO_BASE_URL",
    "OVERALL",
    "STATS_COLUMNS",
    "Bottleneck",
    "Comparison",
    "K6Run",
    "LoadTestData",
    "LocustRun",
    "Threshold",
    "chart_latency_distribution",
    "chart_latency_over_time",
    "chart_latency_vs_resources",
    "chart_throughput_errors",
    "compare_runs",
    "error_breakdown",
    "evaluate_thresholds",
    "find_bottleneck",
    "k6_percentile",
    "load_results",
    "over_time",
    "parse_thresholds",
    "read_jmeter_jtl",
    "read_k6_ndjson",
    "read_k6_summary",
    "read_locust_csv",
    "resolve_source",
    "run_k6",
    "run_locust",
    "summarize",
]

_PERCENTILES = {"med": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}
_ROOT = demo.REPO_ROOT



def resolve_source(source: str | Path = "") -> Path:
    """The results path a runbook should read.

    Args:
        source: A file or folder; empty means the committed k6 example run
            (:func:`opslib.demo.sample_k6_results`). A relative path is looked up in the current
            folder, then at the repository root (notebooks run in ``notebooks/``).

    Returns:
        The path.

    Raises:
        BadParameter: It does not exist.
    """
    if not str(source):
        return demo.sample_k6_results()
    path = Path(source).expanduser()
    if not path.is_absolute() and not path.exists() and (_ROOT / path).exists():
        path = _ROOT / path
    if not path.exists() and not path.with_name(path.name + "_stats.csv").exists():
        raise BadParameter("source", str(source), "an existing results file or folder (k6 "
                           "NDJSON or summary export, Locust CSV prefix, JMeter JTL)")
    return path.absolute()


# --- k6 statistics ---------------------------------------------------------------------------


def k6_percentile(column: str, pct: float) -> pl.Expr:
    """Percentile of a column exactly as k6's Trend sink computes it (``TrendSink.P``).

    The column must already be sorted ascending within each group (sort the frame by it once;
    group_by keeps row order within groups). Like k6: ``i = pct/100 · (n − 1)``, result
    ``v[⌊i⌋] + (v[⌈i⌉] − v[⌊i⌋]) · (i − ⌊i⌋)``; one value gives itself.

    Args:
        column: Column name (sorted within each group).
        pct: Percentile in [0, 100].

    Returns:
        A scalar (per group) polars expression.
    """
    i = (pl.len() - 1).cast(pl.Float64) * (pct / 100.0)
    lo = pl.col(column).get(i.floor().cast(pl.Int64))
    hi = pl.col(column).get(i.ceil().cast(pl.Int64))
    return lo + (hi - lo) * (i - i.floor())


def _trend_aggs(column: str = "duration_ms") -> list[pl.Expr]:
    return [
        pl.col(column).mean().alias("avg"),
        pl.col(column).min().alias("min"),
        *[k6_percentile(column, pct).alias(key) for key, pct in _PERCENTILES.items()],
        pl.col(column).max().alias("max"),
    ]


def _run_seconds(data: LoadTestData) -> float | None:
    if data.duration_s:
        return data.duration_s
    if data.requests is None or data.requests.height == 0:
        return None
    span = data.requests.select(
        (pl.col("time").max() - pl.col("time").min()).dt.total_microseconds()
    ).item()
    return span / 1e6 if span else None


def summarize(data: LoadTestData) -> pl.DataFrame:
    """Per request name and overall: count, errors, error rate, rps and latency statistics.

    For per-request sources (k6 NDJSON, JMeter) everything is computed here, with k6's
    formulas (see :func:`k6_percentile`; ``avg`` = sum/count; error rate = failed/total as
    k6's ``http_req_failed`` Rate). ``rps`` is count / run length (k6 NDJSON: first to last
    request, as k6's own test duration is not in the file). For Locust and k6 summary exports
    the tool's own aggregates are returned.

    Args:
        data: Results from :func:`load_results`.

    Returns:
        A frame with :data:`STATS_COLUMNS`, the :data:`OVERALL` row first, then names sorted.
    """
    if data.requests is None:
        stats = data.stats if data.stats is not None else pl.DataFrame(schema=STATS_COLUMNS)
        return stats.select(list(STATS_COLUMNS))
    seconds = _run_seconds(data)
    req = data.requests.select("name", "method", "ok", "duration_ms").sort("duration_ms")
    aggs = [
        pl.len().cast(pl.Int64).alias("count"),
        (~pl.col("ok")).sum().cast(pl.Int64).alias("errors"),
        *_trend_aggs(),
    ]
    per_name = req.group_by("name").agg(
        pl.col("method").drop_nulls().unique().cast(pl.String).sort().str.join("/")
        .alias("method"), *aggs
    )
    overall = req.select(pl.lit(OVERALL).alias("name"), pl.lit(None, pl.String).alias("method"),
                         *aggs)
    out = pl.concat([overall, per_name.sort("name")], how="diagonal_relaxed")
    out = out.with_columns(
        (pl.col("errors") / pl.col("count")).alias("error_rate"),
        (pl.col("count") / seconds if seconds else pl.lit(None, pl.Float64)).alias("rps"),
        pl.col("method").replace("", None),
    )
    return out.select([pl.col(c).cast(t) for c, t in STATS_COLUMNS.items()])


def over_time(data: LoadTestData, every: str = "1s", *, by_name: bool = False) -> pl.DataFrame:
    """Throughput, errors and latency per time interval.

    Args:
        data: Results from :func:`load_results`.
        every: Interval as a polars duration (``"1s"``, ``"10s"``, ``"1m"``).
        by_name: One series per request name instead of one overall.

    Returns:
        Columns time (interval start, UTC), name, requests, errors, rps, eps (errors/s),
        error_rate, p50, p95, max. Locust: from its stats history (its own rps, failures/s and
        percentiles; name :data:`OVERALL`); k6 summary exports have no time series (empty).
    """
    cols: dict[str, pl.DataType] = {
        "time": pl.Datetime("us", "UTC"), "name": pl.String(), "requests": pl.Int64(),
        "errors": pl.Int64(), "rps": pl.Float64(), "eps": pl.Float64(),
        "error_rate": pl.Float64(), "p50": pl.Float64(), "p95": pl.Float64(),
        "max": pl.Float64()}
    seconds = _interval_seconds(every)
    if data.requests is not None:
        keys = [pl.col("time").dt.truncate(every).alias("time")]
        keys += [pl.col("name")] if by_name else [pl.lit(OVERALL).alias("name")]
        out = data.requests.group_by(keys).agg(
            pl.len().cast(pl.Int64).alias("requests"),
            (~pl.col("ok")).sum().cast(pl.Int64).alias("errors"),
            pl.col("duration_ms").quantile(0.5, "linear").alias("p50"),
            pl.col("duration_ms").quantile(0.95, "linear").alias("p95"),
            pl.col("duration_ms").max().alias("max"),
        ).with_columns(
            (pl.col("requests") / seconds).alias("rps"),
            (pl.col("errors") / seconds).alias("eps"),
            (pl.col("errors") / pl.col("requests")).alias("error_rate"),
        )
        return out.select([pl.col(c).cast(t) for c, t in cols.items()]).sort("time", "name")
    if data.history is not None:
        hist = data.history.filter(pl.col("name") == OVERALL) if not by_name else data.history
        out = hist.sort("time").with_columns(
            pl.col("total_requests").diff().over("name").fill_null(pl.col("total_requests"))
            .alias("requests"),
            pl.col("total_failures").diff().over("name").fill_null(pl.col("total_failures"))
            .alias("errors"),
        ).with_columns(
            pl.when(pl.col("requests") > 0).then(pl.col("errors") / pl.col("requests"))
            .alias("error_rate"),
            pl.col("fps").alias("eps"),
            pl.col("p100").alias("max") if "p100" in hist.columns else pl.lit(None).alias("max"),
        )
        return out.select([pl.col(c).cast(t) for c, t in cols.items()])
    return pl.DataFrame(schema=cols)


def _interval_seconds(every: str) -> float:
    match = re.fullmatch(r"([1-9]\d*)(ms|s|m|h)", str(every).strip())
    if not match:
        raise BadParameter("every", every, "an interval like '500ms', '1s', '10s', '1m' or '1h'")
    factor = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
    return int(match.group(1)) * factor


def error_breakdown(data: LoadTestData) -> pl.DataFrame:
    """Failed requests grouped by name, method, status and message, most frequent first.

    Args:
        data: Results from :func:`load_results`.

    Returns:
        Columns name, method, status, message, count, share (of all requests of that source).
        The message is the tool's (k6 ``error`` tag, JMeter failureMessage/responseMessage,
        Locust error text) or ``"HTTP <status>"``; k6 network errors carry status 0.
    """
    schema: dict[str, pl.DataType] = {
        "name": pl.String(), "method": pl.String(), "status": pl.Int32(),
        "message": pl.String(), "count": pl.Int64(), "share": pl.Float64()}
    if data.requests is not None:
        total = data.requests.height
        failed = data.requests.filter(~pl.col("ok"))
        message = pl.coalesce(
            pl.col("message").cast(pl.String),
            pl.format("HTTP {}", pl.col("status").cast(pl.String)),
        )
        out = failed.group_by("name", "method", "status", message.alias("message")).agg(
            pl.len().cast(pl.Int64).alias("count")
        ).with_columns((pl.col("count") / max(total, 1)).alias("share"))
    elif data.failures is not None:
        total = int(summarize(data).filter(pl.col("name") == OVERALL)["count"].sum() or 0)
        out = data.failures.with_columns(
            pl.col("message").str.extract(r"\b([1-5]\d\d) (?:Client|Server) Error", 1)
            .cast(pl.Int32).alias("status"),
            (pl.col("count") / max(total, 1)).alias("share"),
        )
    else:
        return pl.DataFrame(schema=schema)
    return out.select([pl.col(c).cast(t) for c, t in schema.items()]).sort(
        "count", "name", descending=[True, False])


# --- thresholds ------------------------------------------------------------------------------

_OPERATORS = ("<=", "<", ">=", ">", "===", "==", "!=")  # k6's scan order
_METRIC_TYPES = {"http_req_duration": "trend", "http_req_failed": "rate", "http_reqs": "counter"}
_AGGS_BY_TYPE = {"trend": {"avg", "min", "max", "med", "p"}, "rate": {"rate"},
                 "counter": {"count", "rate"}}
_DEFAULT_METRIC = {"avg": "http_req_duration", "min": "http_req_duration",
                   "max": "http_req_duration", "med": "http_req_duration",
                   "p": "http_req_duration", "rate": "http_req_failed", "count": "http_reqs"}
_FLOAT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_SCOPED = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)(?P<tags>\{[^}]*\})?\s*:\s*(?P<expr>.+)$")


@dataclass(frozen=True)
class Threshold:
    """One parsed threshold (k6 syntax).

    Attributes:
        source: The text as given (``"p(95)<500"``, ``"http_req_duration{name:login}:p(99)<800"``).
        metric: ``http_req_duration`` (trend), ``http_req_failed`` (rate) or ``http_reqs``
            (counter).
        tags: Sub-metric tag filter, e.g. ``(("name", "login"),)``.
        aggregation: ``avg``, ``min``, ``max``, ``med``, ``p``, ``rate`` or ``count``.
        percentile: For ``p``: the N of ``p(N)``.
        operator: One of k6's ``<``, ``<=``, ``>``, ``>=``, ``==``, ``===``, ``!=``.
        value: The right-hand side.
    """

    source: str
    metric: str
    tags: tuple[tuple[str, str], ...]
    aggregation: str
    percentile: float | None
    operator: str
    value: float

    @property
    def key(self) -> str:
        """The k6 metric key (``http_req_duration{name:login}``)."""
        if not self.tags:
            return self.metric
        return self.metric + "{" + ",".join(f"{k}:{v}" for k, v in self.tags) + "}"

    @property
    def method(self) -> str:
        """The aggregation as k6 names it in sinks and summaries (``p(95)``, ``avg``)."""
        return f"p({self.percentile:g})" if self.aggregation == "p" else self.aggregation

    @property
    def expression(self) -> str:
        """The expression alone, normalised (``p(95)<500``)."""
        return f"{self.method}{self.operator}{self.value:g}"


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch in "{(":
            depth += 1
        elif ch in "})":
            depth = max(depth - 1, 0)
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _parse_one(expr: str, source: str, metric: str | None, tags: tuple[tuple[str, str], ...]
               ) -> Threshold:
    def bad(why: str) -> BadParameter:
        return BadParameter("thresholds", source, f"k6 threshold syntax ({why}), e.g. "
                            "'p(95)<500', 'avg<200', 'rate<0.01', 'count>100' or "
                            "'http_req_duration{name:login}:p(99)<800'")

    for op in _OPERATORS:
        left, sep, right = expr.partition(op)
        if sep:
            break
    else:
        raise bad("no operator: use one of < <= > >= == === !=")
    left, right = left.strip(), right.strip()
    if not _FLOAT.match(right):
        raise bad(f"right-hand side {right!r} is not a number")
    percentile = None
    if left in ("avg", "min", "max", "med", "rate", "count"):
        agg = left
    elif left == "value":
        raise bad("'value' applies to gauges; load-test results have none")
    elif left.startswith("p(") and left.endswith(")"):
        inner = left[2:-1].strip()
        if not _FLOAT.match(inner):
            raise bad(f"percentile {inner!r} is not a number")
        percentile = float(inner)
        if not 0 <= percentile <= 100:
            raise bad(f"percentile {percentile:g} is outside 0..100")
        agg = "p"
    else:
        raise bad(f"unknown aggregation {left!r}")
    metric = metric or _DEFAULT_METRIC[agg]
    if metric not in _METRIC_TYPES:
        raise bad(f"unsupported metric {metric!r}; supported: {', '.join(_METRIC_TYPES)}")
    mtype = _METRIC_TYPES[metric]
    if agg not in _AGGS_BY_TYPE[mtype]:
        raise bad(f"{left!r} is not an aggregation of {mtype} metric {metric}")
    return Threshold(source=source, metric=metric, tags=tags, aggregation=agg,
                     percentile=percentile, operator=op, value=float(right))


def _parse_tags(text: str | None, source: str) -> tuple[tuple[str, str], ...]:
    if not text:
        return ()
    tags = []
    for part in _split_top_level(text.strip()[1:-1]):
        key, sep, value = part.partition(":")
        if not sep or not key.strip():
            raise BadParameter("thresholds", source, "k6 threshold syntax (tag filters are "
                               "written {key:value,...})")
        tags.append((key.strip(), value.strip()))
    return tuple(tags)


def parse_thresholds(
    spec: str | Sequence[str | Threshold] | Mapping[str, Sequence[str]]
) -> list[Threshold]:
    """Parse thresholds written in k6's syntax.

    Accepted forms: a comma-separated string (``"p(95)<500,rate<0.01"``), a list of such
    expressions, or k6's ``options.thresholds`` mapping (``{"http_req_duration{name:login}":
    ["p(99)<800"]}``). In the string/list forms an expression may be scoped with a metric and
    tag filter prefix (``http_req_failed{name:create_order}:rate<0.05``); without one, trend
    aggregations (avg, min, max, med, p(N)) apply to ``http_req_duration``, ``rate`` to
    ``http_req_failed`` and ``count`` to ``http_reqs``. The expression grammar is k6's:
    ``aggregation operator number`` with operators ``< <= > >= == === !=``.

    Args:
        spec: The thresholds (already parsed :class:`Threshold` items pass through).

    Returns:
        The parsed thresholds, in order.

    Raises:
        BadParameter: Invalid syntax, unknown aggregation/metric, or an aggregation the metric
            type does not have (k6 rejects those too).
    """
    out: list[Threshold] = []
    if isinstance(spec, Mapping):
        for key, exprs in spec.items():
            match = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)(\{[^}]*\})?\s*", key)
            if not match:
                raise BadParameter("thresholds", key, "a k6 metric key like "
                                   "'http_req_duration' or 'http_req_duration{name:login}'")
            items = [exprs] if isinstance(exprs, str) else list(exprs)
            for expr in items:
                src = f"{key.strip()}:{expr.strip()}"
                out.append(_parse_one(expr.strip(), src, match.group(1),
                                      _parse_tags(match.group(2), src)))
        return out
    if isinstance(spec, str):
        items = _split_top_level(spec)
    elif isinstance(spec, Sequence):
        if all(isinstance(s, Threshold) for s in spec):
            return [s for s in spec if isinstance(s, Threshold)]
        items = [str(s).strip() for s in spec if str(s).strip()]
    else:
        raise BadParameter("thresholds", spec, "a string, a list of strings or a mapping")
    for item in items:
        scoped = _SCOPED.match(item)
        if scoped:
            out.append(_parse_one(scoped.group("expr").strip(), item, scoped.group("metric"),
                                  _parse_tags(scoped.group("tags"), item)))
        else:
            out.append(_parse_one(item, item, None, ()))
    return out


def _compare(lhs: float, op: str, rhs: float) -> bool:
    if op == "<":
        return lhs < rhs
    if op == "<=":
        return lhs <= rhs
    if op == ">":
        return lhs > rhs
    if op == ">=":
        return lhs >= rhs
    if op in ("==", "==="):
        return lhs == rhs
    return lhs != rhs


def _value_from_requests(data: LoadTestData, th: Threshold) -> tuple[float | None, str]:
    assert data.requests is not None
    req = data.requests
    for key, _ in th.tags:
        if key not in req.columns:
            return None, f"the {data.source} results have no tag {key!r}"
    if th.tags:
        cond = pl.lit(True)
        for key, value in th.tags:
            cond = cond & (pl.col(key).cast(pl.String) == value)
        req = req.filter(cond)
    n = req.height
    if th.metric == "http_reqs":
        if th.aggregation == "count":
            return float(n), ""
        seconds = _run_seconds(data)
        if not seconds:
            return None, "the run length is unknown"
        note = "" if data.duration_s else " (run length estimated from first to last request)"
        return n / seconds, note
    if n == 0:
        return None, "no requests match"
    if th.metric == "http_req_failed":
        return float(req.select((~pl.col("ok")).sum()).item()) / n, ""
    if th.aggregation == "p":
        assert th.percentile is not None
        expr = k6_percentile("duration_ms", th.percentile)
        return float(req.select("duration_ms").sort("duration_ms").select(expr).item()), ""
    aggs = {"avg": pl.col("duration_ms").mean(), "min": pl.col("duration_ms").min(),
            "max": pl.col("duration_ms").max(), "med": k6_percentile("duration_ms", 50.0)}
    return float(req.select("duration_ms").sort("duration_ms").select(aggs[th.aggregation])
                 .item()), ""


def _value_from_stats(data: LoadTestData, th: Threshold) -> tuple[float | None, str]:
    if data.source == "k6-summary":
        values = data.metrics.get(th.key)
        if values is None:
            return None, f"the summary export has no metric {th.key} (add a threshold on it " \
                         "to the script so k6 exports it)"
        sink = {"p": th.method}.get(th.aggregation, th.aggregation)
        if sink not in values:
            return None, f"{th.key} has no {th.method} in the export (add it to " \
                         "--summary-trend-stats)"
        return float(values[sink]), ""
    assert data.stats is not None
    tags = dict(th.tags)
    if set(tags) - {"name"}:
        return None, f"{data.source} aggregates only by request name, not by {sorted(tags)}"
    rows = data.stats.filter(pl.col("name") == tags.get("name", OVERALL))
    if rows.height == 0:
        return None, f"no request named {tags.get('name')!r}"
    row = rows.row(0, named=True)
    if th.metric == "http_reqs":
        col = "count" if th.aggregation == "count" else "rps"
    elif th.metric == "http_req_failed":
        col = "error_rate"
    elif th.aggregation == "p":
        assert th.percentile is not None
        col = "p" + f"{th.percentile:g}".replace(".", "_")
    else:
        col = th.aggregation
    if row.get(col) is None:
        have = [c[1:].replace("_", ".") for c in data.stats.columns
                if re.fullmatch(r"p\d+(_\d+)?", c)]
        return None, (f"{data.source} does not report {th.method}"
                      + (f" (it reports p({'), p('.join(have)}))" if th.aggregation == "p"
                         else ""))
    return float(row[col]), ""


def evaluate_thresholds(
    data: LoadTestData,
    thresholds: str | Sequence[str | Threshold] | Mapping[str, Sequence[str]],
) -> pl.DataFrame:
    """Evaluate k6-syntax thresholds on any source, with k6's semantics.

    Per-request sources (k6 NDJSON, JMeter) are evaluated exactly like k6's sinks (Trend
    percentiles by :func:`k6_percentile`, avg = sum/count, Rate = non-zero/total, Counter
    count; ``http_reqs`` rate = count / run length). k6 summary exports use the exported sink
    values; Locust its aggregated stats (by name only; percentiles only those Locust reports).
    A threshold that cannot be evaluated is ``unavailable`` and not ok (an SLO that cannot be
    verified is not met).

    Args:
        data: Results from :func:`load_results`.
        thresholds: See :func:`parse_thresholds`.

    Returns:
        Columns threshold, metric (k6 key), aggregation, operator, limit, value, ok, status
        (``pass``/``fail``/``unavailable``), detail.

    Raises:
        BadParameter: Invalid threshold syntax.
    """
    parsed = parse_thresholds(thresholds)
    rows = []
    for th in parsed:
        if data.requests is not None:
            value, note = _value_from_requests(data, th)
        else:
            value, note = _value_from_stats(data, th)
        unit = " ms" if th.metric == "http_req_duration" else ""
        if value is None:
            status, ok = "unavailable", False
            detail = f"{th.key} {th.method}: cannot be evaluated: {note}"
        else:
            ok = _compare(value, th.operator, th.value)
            status = "pass" if ok else "fail"
            detail = (f"{th.key} {th.method} = {value:.6g}{unit} (limit {th.operator} "
                      f"{th.value:g}{unit}): {'met' if ok else 'BREACHED'}{note}")
        rows.append({"threshold": th.source, "metric": th.key, "aggregation": th.method,
                     "operator": th.operator, "limit": th.value, "value": value, "ok": ok,
                     "status": status, "detail": detail})
    schema = {"threshold": pl.String, "metric": pl.String, "aggregation": pl.String,
              "operator": pl.String, "limit": pl.Float64, "value": pl.Float64,
              "ok": pl.Boolean, "status": pl.String, "detail": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row")


# --- compare runs ----------------------------------------------------------------------------


@dataclass
class Comparison:
    """Baseline vs candidate.

    Attributes:
        table: One row per request name (overall first) with counts, error rates, p50/p95/p99
            of both runs, deltas (absolute and %) and a verdict.
        regression: Whether the candidate regressed (overall or any request name).
        verdict: One sentence for the report.
        regressions: The names that regressed.
    """

    table: pl.DataFrame
    regression: bool
    verdict: str
    regressions: list[str] = field(default_factory=list)


def compare_runs(
    baseline: LoadTestData | pl.DataFrame,
    candidate: LoadTestData | pl.DataFrame,
    *,
    p95_increase_pct: float = 10.0,
    error_rate_increase_pp: float = 1.0,
    min_count: int = 1,
) -> Comparison:
    """Compare two runs per request name and give a regression verdict.

    A name regresses when its p95 grows by more than ``p95_increase_pct`` % or its error rate by
    more than ``error_rate_increase_pp`` percentage points; it improves when p95 drops by more
    than that % and its error rate does not grow. Names with fewer than ``min_count`` requests
    in either run are ``too few requests``; names in only one run are ``new``/``gone``.

    Args:
        baseline: Results (or a :func:`summarize` table) of the reference run.
        candidate: Results (or a summary table) of the run under test.
        p95_increase_pct: Allowed p95 growth, in percent.
        error_rate_increase_pp: Allowed error-rate growth, in percentage points.
        min_count: Minimum requests per name in both runs to judge it.

    Returns:
        A :class:`Comparison`.

    Raises:
        BadParameter: A limit is negative.
    """
    if p95_increase_pct < 0:
        raise BadParameter("p95_increase_pct", p95_increase_pct, "a percentage >= 0")
    if error_rate_increase_pp < 0:
        raise BadParameter("error_rate_increase_pp", error_rate_increase_pp,
                           "percentage points >= 0")
    base = baseline if isinstance(baseline, pl.DataFrame) else summarize(baseline)
    cand = candidate if isinstance(candidate, pl.DataFrame) else summarize(candidate)
    keep = ["name", "count", "error_rate", "med", "p95", "p99"]
    joined = base.select(keep).rename({"med": "p50"}).join(
        cand.select(keep).rename({"med": "p50"}), on="name", how="full", coalesce=True,
        suffix="_cand",
    ).rename({"count": "count_base", "error_rate": "error_rate_base", "p50": "p50_base",
              "p95": "p95_base", "p99": "p99_base"})
    exprs = [((pl.col("error_rate_cand") - pl.col("error_rate_base")) * 100)
             .alias("error_rate_delta_pp")]
    for p in ("p50", "p95", "p99"):
        exprs += [
            (pl.col(f"{p}_cand") - pl.col(f"{p}_base")).alias(f"{p}_delta_ms"),
            pl.when(pl.col(f"{p}_base") > 0)
            .then((pl.col(f"{p}_cand") - pl.col(f"{p}_base")) / pl.col(f"{p}_base") * 100)
            .alias(f"{p}_delta_pct"),
        ]
    table = joined.with_columns(exprs)
    grew = (pl.col("p95_delta_pct") > p95_increase_pct) | (
        pl.col("error_rate_delta_pp") > error_rate_increase_pp)
    verdict = (
        pl.when(pl.col("count_base").is_null()).then(pl.lit("new"))
        .when(pl.col("count_cand").is_null()).then(pl.lit("gone"))
        .when((pl.col("count_base") < min_count) | (pl.col("count_cand") < min_count))
        .then(pl.lit("too few requests"))
        .when(grew.fill_null(False)).then(pl.lit("regression"))
        .when((pl.col("p95_delta_pct") < -p95_increase_pct).fill_null(False)
              & (pl.col("error_rate_delta_pp") <= 0).fill_null(True))
        .then(pl.lit("improvement"))
        .otherwise(pl.lit("ok"))
    )
    table = table.with_columns(verdict.alias("verdict")).sort(
        pl.col("name") != OVERALL, "name")
    order = ["name", "verdict", "count_base", "count_cand", "error_rate_base", "error_rate_cand",
             "error_rate_delta_pp"]
    for p in ("p50", "p95", "p99"):
        order += [f"{p}_base", f"{p}_cand", f"{p}_delta_ms", f"{p}_delta_pct"]
    table = table.select(order)
    regressions = table.filter(pl.col("verdict") == "regression")["name"].to_list()
    if regressions:
        text = (f"REGRESSION in {', '.join(regressions)} (p95 > +{p95_increase_pct:g}% or "
                f"error rate > +{error_rate_increase_pp:g} pp vs baseline)")
    else:
        text = (f"no regression: every request name within +{p95_increase_pct:g}% p95 and "
                f"+{error_rate_increase_pp:g} pp error rate of the baseline")
    return Comparison(table=table, regression=bool(regressions), verdict=text,
                      regressions=regressions)


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


# --- running a load test ---------------------------------------------------------------------



_REQUESTS_PER_ITERATION = 4  # search, order, report, health (+ a login every 20 iterations)


@dataclass
class K6Run:
    """A finished k6 run.

    Attributes:
        ndjson_path: The ``--out json`` NDJSON file.
        summary_path: The ``--summary-export`` JSON file.
        exit_code: k6's exit status (0 ok, 99 = thresholds crossed).
        started: Start time (UTC).
        finished: End time (UTC).
        script_path: The script that ran.
        container_stats: Container stats sampled during the run (pandas), or ``None``.
        stats_error: Why sampling failed, when it did (the run itself is still valid).
    """

    ndjson_path: Path
    summary_path: Path
    exit_code: int
    started: _dt.datetime
    finished: _dt.datetime
    script_path: Path | None = None
    container_stats: Any = None
    stats_error: str | None = None


@dataclass
class LocustRun:
    """A finished Locust run.

    Attributes:
        csv_prefix: The ``--csv`` prefix (``<prefix>_stats.csv`` ...).
        exit_code: Locust's exit status (1 when any request failed).
        started: Start time (UTC).
        finished: End time (UTC).
        locustfile: The locustfile that ran.
        container_stats: Container stats sampled during the run (pandas), or ``None``.
        stats_error: Why sampling failed, when it did.
    """

    csv_prefix: Path
    exit_code: int
    started: _dt.datetime
    finished: _dt.datetime
    locustfile: Path | None = None
    container_stats: Any = None
    stats_error: str | None = None


def _check_target(base_url: str) -> None:
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or parsed.hostname not in (
        "127.0.0.1", "localhost", "::1"
    ):
        raise BadParameter("base_url", base_url, "an http(s) URL on 127.0.0.1/localhost (load "
                           "tests only target the local demo stack)")


def _tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    found = shutil.which(name) or (str(local) if local.exists() else None)
    if not found:
        raise ToolMissing(name, f"pip install {name} (into the same virtualenv as opslib)")
    return found


def _bounded(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadParameter(name, value, f"an integer between {low} and {high}")


class _Sampler:
    """Samples container stats in a background thread while a load test runs."""

    def __init__(self, client: Client | None, project: str | None, duration_s: float,
                 interval_s: float) -> None:
        self.result: Any = None
        self.error: str | None = None
        self.thread: threading.Thread | None = None
        if client is None or not project:
            return
        from opslib.engine import sample_stats

        def work() -> None:
            try:
                self.result = sample_stats(client, project, duration_s=duration_s,
                                           interval_s=interval_s)
            except OpslibError as exc:
                self.error = str(exc)
            except Exception as exc:  # reported with the run, never swallowed silently
                self.error = f"{type(exc).__name__}: {exc}"

        self.thread = threading.Thread(target=work, name="opslib-stats", daemon=True)
        self.thread.start()

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)
            if self.thread.is_alive():
                self.error = self.error or "stats sampling did not finish in time"


def _run_tool(cmd: list[str], timeout: float, env: Mapping[str, str]) -> int:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              check=False, env=dict(env))
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(cmd, -1, redact_text(f"timed out after {timeout:.0f} s")) from exc
    if proc.returncode not in (0, 1, 99):
        raise CommandFailed(cmd, proc.returncode, redact_text(proc.stderr or proc.stdout))
    return proc.returncode


def run_k6(
    base_url: str,
    *,
    vus: int = 10,
    duration_s: int = 20,
    out_dir: Path,
    script: Path | None = None,
    max_requests: int | None = None,
    client: Client | None = None,
    project: str | None = None,
    stats_interval_s: float = 1.0,
) -> K6Run:
    """Run a bounded k6 load test against the local demo stack, sampling container stats.

    The built-in script (:data:`K6_DEMO_SCRIPT`) logs in (tenant acme, user alice, password
    demo; again every 20 iterations), searches products, creates an order, reads the sales
    report and calls health, with requests tagged by name. k6 writes NDJSON (``--out json``) and
    a summary export (with p(99) and count) into ``out_dir``.

    Args:
        base_url: API base URL on 127.0.0.1/localhost, e.g. ``http://127.0.0.1:8080/api``.
        vus: Virtual users (1..500).
        duration_s: Run length in seconds (1..1800).
        out_dir: Folder for the script, NDJSON and summary.
        script: A k6 script of your own (gets ``BASE_URL`` in ``__ENV``); default built-in.
        max_requests: Stop after about this many requests (k6 ``--iterations``).
        client: A docker client: sample the project's container stats during the run.
        project: The compose project to sample.
        stats_interval_s: Seconds between stats readings.

    Returns:
        A :class:`K6Run`.

    Raises:
        BadParameter: A non-local URL or out-of-range bounds.
        ToolMissing: k6 is not installed.
        CommandFailed: k6 failed (other than thresholds crossed) or timed out.
    """
    _check_target(base_url)
    _bounded("vus", vus, 1, 500)
    _bounded("duration_s", duration_s, 1, 1800)
    if max_requests is not None:
        _bounded("max_requests", max_requests, 1, 10_000_000)
    k6 = _tool("k6")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if script is None:
        script = out_dir / "k6-demo-script.js"
        script.write_text(K6_DEMO_SCRIPT)
    ndjson = out_dir / "k6.ndjson"
    summary = out_dir / "k6-summary.json"
    for p in (ndjson, summary):
        p.unlink(missing_ok=True)
    cmd = [k6, "run", "--quiet", "--no-usage-report", "--no-color", "--vus", str(vus),
           "--duration", f"{duration_s}s", "--out", f"json={ndjson}",
           "--summary-export", str(summary),
           "--summary-trend-stats", "avg,min,med,max,p(90),p(95),p(99),count",
           "-e", f"BASE_URL={base_url.rstrip('/')}"]
    if max_requests is not None:
        cmd += ["--iterations", str(max(1, math.ceil(max_requests / _REQUESTS_PER_ITERATION)))]
    cmd.append(str(script))
    env = {**os.environ, "K6_NO_USAGE_REPORT": "true"}
    sampler = _Sampler(client, project, duration_s + 2, stats_interval_s)
    started = _dt.datetime.now(_dt.UTC)
    code = _run_tool(cmd, duration_s + 120, env)
    finished = _dt.datetime.now(_dt.UTC)
    sampler.join(duration_s + 60)
    if not ndjson.exists() or not summary.exists():
        raise CommandFailed(cmd, code, "k6 wrote no results")
    return K6Run(ndjson_path=ndjson, summary_path=summary, exit_code=code, started=started,
                 finished=finished, script_path=script, container_stats=sampler.result,
                 stats_error=sampler.error)


def run_locust(
    base_url: str,
    *,
    users: int = 10,
    spawn_rate: float = 10.0,
    duration_s: int = 20,
    out_dir: Path,
    locustfile: Path | None = None,
    client: Client | None = None,
    project: str | None = None,
    stats_interval_s: float = 1.0,
) -> LocustRun:
    """Run a bounded headless Locust test against the local demo stack (like :func:`run_k6`).

    Args:
        base_url: API base URL on 127.0.0.1/localhost (Locust ``--host``).
        users: Concurrent users (1..500).
        spawn_rate: Users started per second.
        duration_s: Run length in seconds (1..1800).
        out_dir: Folder for the locustfile and CSVs (prefix ``locust``).
        locustfile: Your own locustfile; default :data:`LOCUST_DEMO_FILE`.
        client: A docker client: sample the project's container stats during the run.
        project: The compose project to sample.
        stats_interval_s: Seconds between stats readings.

    Returns:
        A :class:`LocustRun` (read it with :func:`read_locust_csv`).

    Raises:
        BadParameter: A non-local URL or out-of-range bounds.
        ToolMissing: locust is not installed.
        CommandFailed: Locust failed or timed out.
    """
    _check_target(base_url)
    _bounded("users", users, 1, 500)
    _bounded("duration_s", duration_s, 1, 1800)
    if not 0 < spawn_rate <= 500:
        raise BadParameter("spawn_rate", spawn_rate, "users per second in (0, 500]")
    locust = _tool("locust")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if locustfile is None:
        locustfile = out_dir / "locust_demo.py"
        locustfile.write_text(LOCUST_DEMO_FILE)
    prefix = out_dir / "locust"
    for p in out_dir.glob("locust_*.csv"):
        p.unlink()
    cmd = [locust, "-f", str(locustfile), "--headless", "-u", str(users), "-r", f"{spawn_rate:g}",
           "-t", f"{duration_s}s", "--host", base_url.rstrip("/"), "--csv", str(prefix),
           "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "5"]
    sampler = _Sampler(client, project, duration_s + 2, stats_interval_s)
    started = _dt.datetime.now(_dt.UTC)
    code = _run_tool(cmd, duration_s + 120, os.environ)
    finished = _dt.datetime.now(_dt.UTC)
    sampler.join(duration_s + 60)
    if not prefix.with_name("locust_stats.csv").exists():
        raise CommandFailed(cmd, code, "locust wrote no stats CSV")
    return LocustRun(csv_prefix=prefix, exit_code=code, started=started, finished=finished,
                     locustfile=locustfile, container_stats=sampler.result,
                     stats_error=sampler.error)
