"""Load-test results analysed: the tool's own percentiles, time series, errors, baselines."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from opslib import demo
from opslib.exceptions import BadParameter
from opslib.loadtest.data import OVERALL, STATS_COLUMNS, LoadTestData

__all__ = [
    "EXAMPLE_SOURCE",
    "Comparison",
    "compare_runs",
    "error_breakdown",
    "k6_percentile",
    "no_results_reason",
    "not_run_checks",
    "over_time",
    "resolve_source",
    "summarize",
    "total_errors",
]


_PERCENTILES = {"med": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}
_ROOT = demo.REPO_ROOT



#: The ``source`` value that names the committed k6 example run (the demo's sample data).
EXAMPLE_SOURCE = "example"


def resolve_source(source: str | Path) -> Path:
    """The results path a runbook should read.

    Args:
        source: A file or folder, or ``"example"`` for the committed k6 example run
            (:func:`opslib.demo.sample_k6_results`). A relative path is looked up in the current
            folder, then at the repository root (notebooks run in ``notebooks/``).

    Returns:
        The path.

    Raises:
        BadParameter: Nothing given, or it does not exist.
    """
    if str(source) == EXAMPLE_SOURCE:
        return demo.sample_k6_results()
    if not str(source):
        raise BadParameter("source", "", "a results file or folder (k6 NDJSON or summary "
                           f"export, Locust CSV prefix, JMeter JTL), or {EXAMPLE_SOURCE!r}")
    path = Path(source).expanduser()
    if not path.is_absolute() and not path.exists() and (_ROOT / path).exists():
        path = _ROOT / path
    if not path.exists() and not path.with_name(path.name + "_stats.csv").exists():
        raise BadParameter("source", str(source), "an existing results file or folder (k6 "
                           "NDJSON or summary export, Locust CSV prefix, JMeter JTL)")
    return path.absolute()


def no_results_reason() -> str:
    """Why the SLO checks did not run when neither results nor a k6 run were given."""
    return ("no load-test results given: pass -p source <k6 --out json NDJSON, summary export, "
            f"Locust CSV prefix or JMeter JTL>, -p source {EXAMPLE_SOURCE} for the committed "
            "example run, or -p run_k6 true on the demo stack")


def not_run_checks(thresholds: Sequence[Any], reason: str) -> Any:
    """One "not run" check per SLO threshold (name ``slo <threshold>``, ``ok`` None), as a
    pandas frame for ``report.record_checks``."""
    import pandas as pd

    return pd.DataFrame([(f"slo {getattr(t, 'source', t)}", None, reason) for t in thresholds],
                        columns=["name", "ok", "detail"])


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


def total_errors(errors: pl.DataFrame) -> int:
    """Failed requests in an :func:`error_breakdown` frame."""
    return int(errors["count"].sum()) if errors.height else 0
