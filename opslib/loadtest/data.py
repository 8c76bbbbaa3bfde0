"""The shape every reader returns: LoadTestData, the stats columns, shared file helpers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import polars as pl

from opslib.exceptions import BadParameter
from opslib.redact import redact_text

__all__ = ["OVERALL", "STATS_COLUMNS", "LoadTestData"]


OVERALL = "(all)"
"""The ``name`` of the row that covers every request, in ``stats`` and summary tables."""

STATS_COLUMNS: dict[str, pl.DataType] = {
    "name": pl.String(),
    "method": pl.String(),
    "count": pl.Int64(),
    "errors": pl.Int64(),
    "error_rate": pl.Float64(),
    "rps": pl.Float64(),
    "avg": pl.Float64(),
    "min": pl.Float64(),
    "med": pl.Float64(),
    "max": pl.Float64(),
    "p90": pl.Float64(),
    "p95": pl.Float64(),
    "p99": pl.Float64(),
}
"""Columns of an aggregated table (``LoadTestData.stats`` and ``loadtest.summarize``)."""


@dataclass
class LoadTestData:
    """Load-test results read from one tool's output.

    Attributes:
        source: ``"k6"`` (NDJSON), ``"k6-summary"``, ``"locust"`` or ``"jmeter"``.
        path: The file (or Locust CSV prefix) that was read.
        requests: One row per request (k6 NDJSON, JMeter), else ``None``.
        stats: Aggregates as the tool reported them (Locust stats CSV, k6 summary export), with
            :data:`STATS_COLUMNS` plus tool-specific percentile columns; else ``None``.
        history: Locust ``*_stats_history.csv`` (time, user_count, name, rps, fps, p50...).
        failures: Locust ``*_failures.csv`` (method, name, message, count).
        thresholds: Verdicts the tool itself reported: ``{metric: {expression: passed}}``
            (k6 summary export; its inverted booleans are normalised so ``True`` = passed).
        metrics: The raw metrics object of a k6 summary export.
        duration_s: Length of the run in seconds, when known (k6 summary: from http_reqs).
        dropped_lines: Partial final lines dropped with ``allow_truncated_tail=True``.
        failed_points: k6 NDJSON: ``(failed, total)`` counted over ``http_req_failed`` points
            (k6's Rate sink: a point counts as failed when its value is not 0).
    """

    source: str
    path: Path
    requests: pl.DataFrame | None = None
    stats: pl.DataFrame | None = None
    history: pl.DataFrame | None = None
    failures: pl.DataFrame | None = None
    thresholds: dict[str, dict[str, bool]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    duration_s: float | None = None
    dropped_lines: int = 0
    failed_points: tuple[int, int] | None = None


# --- helpers ---------------------------------------------------------------------------------


def _snippet(raw: bytes | str, limit: int = 80) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = text.strip()
    return redact_text(text if len(text) <= limit else text[: limit - 1] + "…")


def _open_checked(path: Path) -> tuple[IO[bytes], bool]:
    """Open a results file; also say whether it is gzip-compressed (by its magic bytes)."""
    try:
        fh = path.open("rb")
    except FileNotFoundError as exc:
        raise BadParameter("path", str(path), "an existing results file") from exc
    except IsADirectoryError as exc:
        raise BadParameter("path", str(path), "a file, not a directory") from exc
    is_gzip = fh.read(2) == b"\x1f\x8b"
    fh.seek(0)
    return fh, is_gzip


def _stats_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    extra = sorted({k for r in rows for k in r} - set(STATS_COLUMNS),
                   key=lambda k: float(k[1:].replace("_", ".")) if k.startswith("p") else 0.0)
    schema = {**STATS_COLUMNS, **{k: pl.Float64() for k in extra}}
    frame = pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema,
                         orient="row")
    return frame.sort(pl.col("name") != OVERALL, "name")


def _stamp_ok(value: str) -> bool:
    """Whether a JTL ``timeStamp`` value is epoch milliseconds (digits only)."""
    return value.strip().isdigit()
