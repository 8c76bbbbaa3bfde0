"""k6-syntax SLO thresholds: parse them and evaluate them against results."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from opslib.exceptions import BadParameter
from opslib.loadtest.analysis import _run_seconds, k6_percentile
from opslib.loadtest.data import OVERALL, LoadTestData

__all__ = ["Threshold", "evaluate_thresholds", "parse_thresholds"]


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
