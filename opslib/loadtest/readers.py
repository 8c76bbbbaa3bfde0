"""Locust CSV and JMeter JTL results, and load_results, which tells the formats apart."""

from __future__ import annotations

import csv
import io
import json
import warnings
import zlib
from pathlib import Path
from typing import Any

import polars as pl

from opslib.exceptions import BadInputFormat, BadParameter
from opslib.loadtest.data import OVERALL, LoadTestData, _stamp_ok, _stats_frame
from opslib.loadtest.k6 import _open_stream, read_k6_ndjson, read_k6_summary

__all__ = ["load_results", "read_jmeter_jtl", "read_locust_csv"]


# --- Locust ----------------------------------------------------------------------------------

_LOCUST_STATS_REQUIRED = ("Type", "Name", "Request Count", "Failure Count",
                          "Median Response Time", "Average Response Time", "Min Response Time",
                          "Max Response Time", "Requests/s")


def _locust_prefix(path: Path) -> Path:
    if path.is_dir():
        found = sorted(path.glob("*_stats.csv"))
        if not found:
            raise BadInputFormat(str(path), "no Locust '*_stats.csv' in this folder "
                                 "(run locust with --csv PREFIX)")
        if len(found) > 1:
            raise BadParameter("path", str(path), "a folder with one Locust run; it has "
                               + ", ".join(p.name for p in found) + " — pass one of them")
        return found[0].with_name(found[0].name[: -len("_stats.csv")])
    for suffix in ("_stats_history.csv", "_stats.csv", "_failures.csv", "_exceptions.csv"):
        if path.name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)])
    return path


def _read_csv_rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """Small CSV files (Locust's): rows as dicts, checked for width, with line numbers."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BadInputFormat(str(path), "not a UTF-8 text file") from exc
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration as exc:
        raise BadInputFormat(str(path), "empty file", line=1) from exc
    missing = [c for c in required if c not in header]
    if missing:
        raise BadInputFormat(str(path), f"missing columns {missing}: not a Locust CSV of the "
                             f"expected kind (header: {', '.join(header[:8])}...)", line=1)
    rows = []
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            raise BadInputFormat(str(path), f"{len(row)} fields where the header has "
                                 f"{len(header)} (truncated or malformed row)",
                                 line=reader.line_num)
        rows.append(dict(zip(header, row, strict=True)))
    return rows


def _num(value: str | None, path: Path, line: int, column: str) -> float | None:
    if value is None or value in ("", "N/A"):
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise BadInputFormat(str(path), f"column {column!r}: {value!r} is not a number",
                             line=line) from exc


def read_locust_csv(path: str | Path) -> LoadTestData:
    """Read Locust ``--csv PREFIX`` output: ``PREFIX_stats.csv`` (+ history and failures).

    Locust writes no per-request rows, so ``requests`` is ``None``; ``stats`` holds its
    aggregated table as it printed it (response times in ms; percentiles in columns ``p50``,
    ``p66`` ... ``p99_9``, ``p100``; ``med`` = "Median Response Time"; the "Aggregated" row is
    :data:`OVERALL`).

    Args:
        path: The ``*_stats.csv`` file, any sibling (``*_stats_history.csv``,
            ``*_failures.csv``), the ``PREFIX`` itself, or a folder with one run.

    Returns:
        ``LoadTestData(source="locust", stats=..., history=..., failures=...)``.

    Raises:
        BadInputFormat: A file is missing columns or has a malformed row (file and line).
    """
    prefix = _locust_prefix(Path(path))
    stats_path = prefix.with_name(prefix.name + "_stats.csv")
    if not stats_path.exists():
        raise BadParameter("path", str(path), f"Locust CSV output ({stats_path.name} not found)")
    rows: list[dict[str, Any]] = []
    duration_s = None
    for i, r in enumerate(_read_csv_rows(stats_path, _LOCUST_STATS_REQUIRED), start=2):
        name = OVERALL if r["Name"] == "Aggregated" and not r["Type"] else r["Name"]
        count = int(_num(r["Request Count"], stats_path, i, "Request Count") or 0)
        fails = int(_num(r["Failure Count"], stats_path, i, "Failure Count") or 0)
        row: dict[str, Any] = {
            "name": name,
            "method": r["Type"] or None,
            "count": count,
            "errors": fails,
            "error_rate": fails / count if count else None,
            "rps": _num(r["Requests/s"], stats_path, i, "Requests/s"),
            "avg": _num(r["Average Response Time"], stats_path, i, "Average Response Time"),
            "min": _num(r["Min Response Time"], stats_path, i, "Min Response Time"),
            "med": _num(r["Median Response Time"], stats_path, i, "Median Response Time"),
            "max": _num(r["Max Response Time"], stats_path, i, "Max Response Time"),
        }
        for col, val in r.items():
            if col.endswith("%"):
                row["p" + col[:-1].replace(".", "_")] = _num(val, stats_path, i, col)
        if name == OVERALL and row["rps"]:
            duration_s = count / row["rps"]
        rows.append(row)
    if not rows:
        raise BadInputFormat(str(stats_path), "no rows: the Locust run made no requests")
    stats = _stats_frame(rows)

    history = None
    hist_path = prefix.with_name(prefix.name + "_stats_history.csv")
    if hist_path.exists():
        hrows = []
        for i, r in enumerate(_read_csv_rows(hist_path, ("Timestamp", "Name", "Requests/s")),
                              start=2):
            h: dict[str, Any] = {
                "time": _num(r["Timestamp"], hist_path, i, "Timestamp"),
                "user_count": _num(r.get("User Count"), hist_path, i, "User Count"),
                "name": OVERALL if r["Name"] == "Aggregated" else r["Name"],
                "rps": _num(r["Requests/s"], hist_path, i, "Requests/s"),
                "fps": _num(r.get("Failures/s"), hist_path, i, "Failures/s"),
                "total_requests": _num(r.get("Total Request Count"), hist_path, i, "count"),
                "total_failures": _num(r.get("Total Failure Count"), hist_path, i, "count"),
            }
            for col, val in r.items():
                if col.endswith("%"):
                    h["p" + col[:-1].replace(".", "_")] = _num(val, hist_path, i, col)
            hrows.append(h)
        if hrows:
            history = pl.DataFrame(hrows, infer_schema_length=None).with_columns(
                (pl.col("time") * 1_000_000).cast(pl.Int64).cast(pl.Datetime("us", "UTC")),
                pl.col("user_count").cast(pl.Int64),
                pl.col("total_requests").cast(pl.Int64),
                pl.col("total_failures").cast(pl.Int64),
            )
    failures = None
    fail_path = prefix.with_name(prefix.name + "_failures.csv")
    if fail_path.exists():
        frows = [
            {"method": r["Method"] or None, "name": r["Name"], "message": r["Error"],
             "count": int(_num(r["Occurrences"], fail_path, i, "Occurrences") or 0)}
            for i, r in enumerate(
                _read_csv_rows(fail_path, ("Method", "Name", "Error", "Occurrences")), start=2)
        ]
        failures = pl.DataFrame(
            frows, schema={"method": pl.String, "name": pl.String, "message": pl.String,
                           "count": pl.Int64}, orient="row")
    return LoadTestData(source="locust", path=stats_path, stats=stats, history=history,
                        failures=failures, duration_s=duration_s)


# --- JMeter ----------------------------------------------------------------------------------

_JTL_REQUIRED = ("timeStamp", "elapsed", "label", "responseCode", "success")
_JTL_SCHEMA = {
    "timeStamp": pl.String, "elapsed": pl.String, "label": pl.String,
    "responseCode": pl.String, "responseMessage": pl.String, "threadName": pl.String,
    "dataType": pl.String, "success": pl.String, "failureMessage": pl.String,
    "bytes": pl.Int64, "sentBytes": pl.Int64, "grpThreads": pl.Int64, "allThreads": pl.Int64,
    "URL": pl.String, "Latency": pl.Int64, "IdleTime": pl.Int64, "Connect": pl.Int64,
}


def read_jmeter_jtl(path: str | Path, *, allow_truncated_tail: bool = False) -> LoadTestData:
    """Read a JMeter JTL results file in CSV format (with its header line) by column names.

    ``timeStamp`` is epoch milliseconds (JMeter's default); ``elapsed`` the sample time in ms;
    ``ok`` is JMeter's ``success``; ``status`` is ``responseCode`` (0 when JMeter wrote a
    "Non HTTP response code: ..." text); ``message`` is ``failureMessage`` or, for a failed
    sample without one, ``responseMessage``.

    Args:
        path: The ``.jtl``/``.csv`` file.
        allow_truncated_tail: Drop a final incomplete row with a warning instead of raising.

    Returns:
        ``LoadTestData(source="jmeter", requests=...)``.

    Raises:
        BadInputFormat: XML JTL, missing columns, or a malformed row (file and line).
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except FileNotFoundError as exc:
        raise BadParameter("path", str(path), "an existing JTL file") from exc
    if head.lstrip().startswith(b"<"):
        raise BadInputFormat(str(path), "XML JTL is not supported: save results as CSV "
                             "(jmeter.save.saveservice.output_format=csv)", line=1)
    header = next(csv.reader([head.split(b"\n", 1)[0].decode("utf-8", "replace")]), [])
    missing = [c for c in _JTL_REQUIRED if c not in header]
    if missing:
        raise BadInputFormat(str(path), f"missing JTL columns {missing} (needs a CSV JTL with "
                             "its header line: jmeter.save.saveservice.print_field_names=true)",
                             line=1)
    try:
        raw = pl.read_csv(path, schema_overrides={k: v for k, v in _JTL_SCHEMA.items()
                                                  if k in header},
                          infer_schema=False, missing_columns="insert")
    except pl.exceptions.PolarsError as exc:
        raise BadInputFormat(str(path), f"malformed CSV: {str(exc).splitlines()[0]}") from exc
    stamp = pl.col("timeStamp").cast(pl.Int64, strict=False)
    elapsed = pl.col("elapsed").cast(pl.Float64, strict=False)
    success = pl.col("success").str.to_lowercase()
    valid = stamp.is_not_null() & elapsed.is_not_null() & success.is_in(["true", "false"])
    bad_rows = raw.with_row_index("row").filter(~valid.fill_null(False))
    dropped = 0
    if bad_rows.height:
        first = int(bad_rows["row"][0])
        line = first + 2  # header is line 1
        is_tail = bad_rows.height == 1 and first == raw.height - 1
        if is_tail and allow_truncated_tail:
            raw = raw.head(raw.height - 1)
            dropped = 1
            warnings.warn(f"{path}:{line}: dropped 1 truncated final row", stacklevel=2)
        else:
            r = bad_rows.row(0, named=True)
            what = ("the last row is truncated (pass allow_truncated_tail=True to drop it)"
                    if is_tail else "malformed row")
            if r.get("timeStamp") is not None and _stamp_ok(r["timeStamp"]) is False:
                what = (f"timeStamp {r['timeStamp']!r} is not epoch milliseconds "
                        "(set jmeter.save.saveservice.timestamp_format=ms)")
            raise BadInputFormat(str(path), what, line=line)
    code = pl.col("responseCode")
    is_ok = success == "true"
    requests = raw.select(
        (stamp * 1000).cast(pl.Datetime("us", "UTC")).alias("time"),
        pl.col("label").alias("name"),
        pl.lit(None, dtype=pl.String).alias("method"),
        code.cast(pl.Int32, strict=False).fill_null(0).alias("status"),
        elapsed.alias("duration_ms"),
        is_ok.alias("ok"),
        pl.when(~is_ok).then(
            pl.coalesce(pl.col("failureMessage").replace("", None),
                        pl.col("responseMessage").replace("", None))
        ).alias("message"),
        pl.col("threadName").alias("thread"),
        pl.col("bytes").alias("bytes"),
        pl.col("sentBytes").alias("sent_bytes"),
        pl.col("Latency").cast(pl.Float64).alias("latency_ms"),
        pl.col("Connect").cast(pl.Float64).alias("connect_ms"),
        pl.col("URL").alias("url"),
        code.alias("response_code"),
    )
    if requests.height == 0:
        raise BadInputFormat(str(path), "no samples after the header")
    return LoadTestData(source="jmeter", path=path, requests=requests, dropped_lines=dropped)


# --- dispatch --------------------------------------------------------------------------------


def _sniff(path: Path) -> str:
    name = path.name.lower()
    if path.is_dir():
        if list(path.glob("*_stats.csv")):
            return "locust"
        candidates = [p for p in path.iterdir() if p.is_file()
                      and p.suffix.lower() in (".ndjson", ".json", ".gz", ".jtl", ".csv")]
        kinds = {p: _sniff(p) for p in candidates}
        usable = [p for p, k in kinds.items() if k in ("k6", "jmeter")]
        if len(usable) == 1:
            return kinds[usable[0]]
        raise BadParameter("source", str(path), "a results file, or a folder with exactly one "
                           "(found: " + (", ".join(p.name for p in usable) or "none") + ")")
    if any(name.endswith(s) for s in ("_stats.csv", "_stats_history.csv", "_failures.csv")):
        return "locust"
    with _open_stream(path) as fh:
        try:
            head = fh.read(65536)
        except (EOFError, OSError, zlib.error):
            head = b""
    first = head.lstrip()[:1]
    if name.endswith(".jtl") or head.startswith(b"timeStamp,"):
        return "jmeter"
    if first == b"{":
        line = head.lstrip().split(b"\n", 1)[0]
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and obj.get("type") in ("Metric", "Point"):
            return "k6"
        if b'"metrics"' in head or obj is None:
            return "k6-summary"
        return "k6"
    raise BadInputFormat(str(path), "unknown results format: expected k6 --out json (NDJSON), "
                         "a k6 --summary-export JSON, Locust --csv files or a JMeter CSV JTL",
                         line=1)


def _resolve_dir(path: Path, kind: str) -> Path:
    if not path.is_dir() or kind == "locust":
        return path
    for p in sorted(path.iterdir()):
        if p.is_file() and p.suffix.lower() in (".ndjson", ".json", ".gz", ".jtl", ".csv"):
            try:
                if _sniff(p) == kind:
                    return p
            except BadInputFormat:
                continue
    return path


def load_results(source: str | Path, *, allow_truncated_tail: bool = False) -> LoadTestData:
    """Read load-test results of any supported tool, detecting the format.

    Args:
        source: A k6 NDJSON (plain/gzip) or summary-export file, a Locust CSV file/prefix/folder,
            a JMeter CSV JTL, or a folder holding exactly one of them.
        allow_truncated_tail: Drop a truncated final line (k6 NDJSON, JTL) with a warning.

    Returns:
        The :class:`LoadTestData` of the detected reader.

    Raises:
        BadParameter: The path does not exist or a folder is ambiguous.
        BadInputFormat: The format is unknown or the file is malformed.
    """
    path = Path(source)
    if not path.exists() and not _locust_prefix(path).with_name(
        _locust_prefix(path).name + "_stats.csv"
    ).exists():
        raise BadParameter("source", str(source), "an existing results file or folder")
    kind = "locust" if not path.exists() else _sniff(path)
    path = _resolve_dir(path, kind)
    if kind == "locust":
        return read_locust_csv(path)
    if kind == "jmeter":
        return read_jmeter_jtl(path, allow_truncated_tail=allow_truncated_tail)
    if kind == "k6-summary":
        return read_k6_summary(path)
    return read_k6_ndjson(path, allow_truncated_tail=allow_truncated_tail)
