"""Readers for load-test results: k6 NDJSON and summary export, Locust CSVs, JMeter JTL CSV.

Every reader returns a :class:`LoadTestData`. Sources that have one row per request (k6
``--out json``, JMeter JTL) fill ``requests``, the canonical per-request frame:

========================  ==================================================================
column                    meaning
========================  ==================================================================
``time``                  when the request was recorded (``Datetime[us, UTC]``)
``name``                  request name (k6 ``name`` tag, JMeter ``label``)
``method``                HTTP method (null when the tool does not say)
``status``                HTTP status (``Int32``; 0 for a network error, as k6 writes it)
``duration_ms``           request duration in milliseconds (``Float64``)
``ok``                    ``False`` when the request failed (k6 ``http_req_failed``)
``message``               error message, when the tool gives one
========================  ==================================================================

plus source-specific tags (k6: ``expected_response``, ``scenario``, ``group``, ``error_code``,
``url``; JMeter: ``thread``, ``bytes``, ``sent_bytes``, ``latency_ms``, ``connect_ms``, ``url``).
k6's text columns (name, method, message and the tags) are ``Categorical``, which keeps runs of
millions of requests small; compare them with plain strings as usual.
Sources that only have aggregates (Locust, k6 ``--summary-export``) fill ``stats`` (one row per
request name plus the overall row :data:`OVERALL`), and Locust also ``history`` and ``failures``.

k6 NDJSON files run to tens of millions of points, so no per-line Python object is ever made:
polars' CSV reader splits the text into lines (one streaming scan over a plain file; blocks of
decompressed bytes for gzip, detected by its magic bytes), every line is checked to be a JSON
object, only ``http_req_duration`` lines are JSON-decoded and only the value of
``http_req_failed`` lines is extracted, all vectorised, and only a compact frame per request is
kept. Malformed input is located (file and line) by a second, line-by-line pass that runs only
when something is wrong.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import polars as pl

from opslib.exceptions import BadInputFormat, BadParameter
from opslib.redact import redact_text

__all__ = [
    "OVERALL",
    "STATS_COLUMNS",
    "LoadTestData",
    "load_results",
    "read_jmeter_jtl",
    "read_k6_ndjson",
    "read_k6_summary",
    "read_locust_csv",
]

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

_K6_TAGS = ("name", "method", "status", "expected_response", "scenario", "group", "error",
            "error_code", "url")
_K6_LINE = pl.Struct({
    "metric": pl.String,
    "type": pl.String,
    "data": pl.Struct({
        "time": pl.String,
        "value": pl.Float64,
        "tags": pl.Struct({t: pl.String for t in _K6_TAGS}),
    }),
})
_K6_WANTED = ['"metric":"http_req_duration"', '"metric":"http_req_failed"']
_BLOCK_BYTES = 16 << 20
_DURATION, _FAILED, _BAD = 0, 1, 2  # kinds of kept lines
_TIME_FORMAT = "%+"  # RFC 3339 with "Z" or "+hh:mm", nanoseconds allowed (k6's time.RFC3339Nano)


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


class _Chunks:
    """Bytes of a plain or gzip file in chunks of at most ``size`` bytes.

    gzip is decompressed with ``zlib`` directly (multi-member streams included) so that a
    truncated stream still yields everything before the cut; ``cut`` is then set.
    """

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self.cut = False

    def __iter__(self) -> Iterator[bytes]:
        fh, is_gzip = _open_checked(self.path)
        with fh:
            if not is_gzip:
                while chunk := fh.read(self.size):
                    yield chunk
                return
            dec = zlib.decompressobj(wbits=31)
            feed, started = b"", False
            while True:
                if not feed:
                    feed = fh.read(1 << 20)
                    if not feed:
                        self.cut = started and not dec.eof
                        return
                started = True
                try:
                    out = dec.decompress(feed, self.size)
                except zlib.error as exc:
                    raise BadInputFormat(str(self.path), f"corrupt gzip data: {exc}") from exc
                feed = dec.unconsumed_tail
                if out:
                    yield out
                if dec.eof:
                    feed = dec.unused_data.lstrip(b"\x00")
                    dec = zlib.decompressobj(wbits=31)
                    started = False


def _open_stream(path: Path) -> IO[bytes]:
    fh, is_gzip = _open_checked(path)
    if is_gzip:
        fh.close()
        return cast(IO[bytes], gzip.open(path, "rb"))
    return fh


def _k6_line_problem(line: bytes, is_last: bool, ends_file: bool) -> str | None:
    """Why one NDJSON line is not a usable k6 line (``None`` if it is fine). Error path only."""
    text = line.strip()
    if not text:
        return None
    try:
        obj = json.loads(text)
    except ValueError:
        if is_last and ends_file:
            return (f"the last line is truncated (incomplete JSON: {_snippet(text)!r}); the run "
                    "was cut off or the file is still being written. Pass "
                    "allow_truncated_tail=True to drop that line")
        return f"not a JSON line ({_snippet(text)!r}); is this k6 '--out json' output?"
    if not isinstance(obj, dict) or "type" not in obj or "data" not in obj:
        return (f"not a k6 --out json line (no 'type'/'data' keys: {_snippet(text)!r}); "
                "is this k6 '--out json' output?")
    if obj.get("type") == "Point" and obj.get("metric") in ("http_req_duration",
                                                            "http_req_failed"):
        data = obj.get("data") or {}
        if not isinstance(data.get("value"), int | float):
            return f"point without a numeric 'value' ({_snippet(text)!r})"
        stamp = data.get("time")
        if not isinstance(stamp, str) or not re.match(
            r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", stamp
        ):
            return f"point with an unreadable 'time' {stamp!r} (expected RFC 3339)"
    return None


def _scan_for_problem(path: Path, reason: str) -> BadInputFormat:
    """Find the first unusable line by reading the file again line by line (error path only)."""
    previous: tuple[int, bytes] | None = None
    line_no = 0
    chunks = _Chunks(path, 1 << 20)
    rest = b""
    for chunk in chunks:
        buf = rest + chunk
        lines = buf.split(b"\n")
        rest = lines.pop()
        for line in lines:
            line_no += 1
            if previous is not None:
                problem = _k6_line_problem(previous[1], False, False)
                if problem:
                    return BadInputFormat(str(path), problem, line=previous[0])
            previous = (line_no, line)
    if previous is not None:
        problem = _k6_line_problem(previous[1], not rest.strip(), not rest.strip())
        if problem:
            return BadInputFormat(str(path), problem, line=previous[0])
    if rest.strip():
        problem = _k6_line_problem(rest, True, True)
        if problem:
            return BadInputFormat(str(path), problem, line=line_no + 1)
    return BadInputFormat(str(path), reason)


def _points_query(lines: pl.LazyFrame) -> pl.LazyFrame:
    """From a frame of (row, l) text lines to the rows opslib keeps, as one lazy query.

    ``kind`` is ``d`` for http_req_duration lines (decoded), ``f`` for http_req_failed lines
    (only their value, by regex), ``x`` for lines that are not a JSON object (kept raw, to be
    reported). All other lines are dropped inside the scan.
    """
    line = pl.col("l")
    shape_ok = line.str.starts_with("{") & (line.str.ends_with("}") | line.str.ends_with("}\r"))
    kind = (
        pl.when(line.is_null()).then(None)
        .when(~shape_ok).then(pl.lit(_BAD, pl.UInt8))
        .when(line.str.contains(_K6_WANTED[0], literal=True)).then(pl.lit(_DURATION, pl.UInt8))
        .when(line.str.contains(_K6_WANTED[1], literal=True)).then(pl.lit(_FAILED, pl.UInt8))
        .otherwise(None)
    )
    j = pl.col("j")
    data = j.struct.field("data")
    tag = data.struct.field("tags").struct.field
    cat = pl.Categorical()
    return (
        lines.with_columns(kind.alias("kind"))
        .filter(pl.col("kind").is_not_null())
        .with_columns(
            pl.when(pl.col("kind") == _DURATION).then(line).str.json_decode(_K6_LINE)
            .alias("j"),
            pl.when(pl.col("kind") == _FAILED).then(
                line.str.extract(r'"value":([-+0-9.eE]+)', 1)
            ).cast(pl.Float64, strict=False).alias("failed_value"),
            pl.when(pl.col("kind") == _BAD).then(line).alias("raw"),
        )
        # Metric (definition) lines of http_req_duration are decoded too: keep Points only.
        .filter((pl.col("kind") != _DURATION) | (j.struct.field("type") == "Point"))
        .select(
            "row", "kind", "failed_value", "raw",
            data.struct.field("time").str.to_datetime(
                _TIME_FORMAT, time_zone="UTC", time_unit="us").alias("time"),
            tag("name").cast(cat).alias("name"),
            tag("method").cast(cat).alias("method"),
            tag("status").cast(pl.Int32, strict=False).alias("status"),
            data.struct.field("value").alias("duration_ms"),
            tag("error").cast(cat).alias("message"),
            tag("expected_response").cast(cat).alias("expected_response"),
            tag("scenario").cast(cat).alias("scenario"),
            tag("group").cast(cat).alias("group"),
            tag("error_code").cast(cat).alias("error_code"),
            tag("url").cast(cat).alias("url"),
        )
    )


_CSV_LINES = {"has_header": False, "separator": "\x1f", "quote_char": None,
              "new_columns": ["l"], "schema": {"l": pl.String}}


def _tail_line(path: Path) -> bytes | None:
    """The final line of a plain file when it lacks a trailing newline, else ``None``."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        step = 1 << 16
        tail = b""
        while True:
            start = max(0, size - len(tail) - step)
            fh.seek(start)
            tail = fh.read(size - start)
            if not tail or tail.endswith(b"\n"):
                return None
            cut = tail.rfind(b"\n")
            if cut >= 0 or start == 0:
                return tail[cut + 1:]


def _collect_plain(path: Path) -> tuple[pl.DataFrame, bytes | None]:
    """Plain file: one streaming polars scan (bounded memory, all cores)."""
    lines = pl.scan_csv(path, row_index_name="row", **_CSV_LINES)  # type: ignore[arg-type]
    return _points_query(lines).collect(engine="streaming"), _tail_line(path)


def _collect_blocks(path: Path, block_bytes: int
                    ) -> tuple[pl.DataFrame, bytes | None, bool, int]:
    """gzip (or any stream): decompress in blocks of whole lines, same query per block."""
    parts: list[pl.DataFrame] = []
    row = 0
    rest = b""

    def run(block: bytes) -> int:
        frame = pl.read_csv(block, raise_if_empty=False, **_CSV_LINES)  # type: ignore[arg-type]
        parts.append(_points_query(frame.with_row_index("row", offset=row).lazy()).collect())
        return frame.height

    chunks = _Chunks(path, block_bytes)
    for chunk in chunks:
        first = chunk.find(b"\n") + 1
        if first == 0:  # a line longer than a chunk
            rest += chunk
            continue
        last = chunk.rfind(b"\n") + 1
        # The line that straddles two chunks is decoded on its own, so the big middle part is
        # copied once (not once to join and once to cut).
        if rest:
            row += run(rest + chunk[:first])
            body = chunk[first:last]
        else:
            body = chunk[:last]
        if body:
            row += run(body)
        rest = chunk[last:]
    tail = rest if rest.strip() else None
    if tail is not None:
        row += run(rest + b"\n")
    return (pl.concat(parts, rechunk=True) if parts else pl.DataFrame(), tail, chunks.cut,
            row)


def read_k6_ndjson(
    path: str | Path, *, allow_truncated_tail: bool = False, block_bytes: int = _BLOCK_BYTES
) -> LoadTestData:
    """Read k6 ``--out json`` output (NDJSON, plain or gzip) into the canonical request frame.

    Only ``Point`` lines of ``http_req_duration`` (durations, tags) and ``http_req_failed``
    (failures) are decoded; every other line is only checked to be a JSON object. A request is
    not ok when its ``expected_response`` tag is ``"false"`` — exactly when k6 adds a non-zero
    ``http_req_failed`` point (status outside the expected range, 200–399 by default, or a
    network error with status 0). Plain files are read by one streaming polars scan; gzip files
    are decompressed in blocks of ``block_bytes``. Memory stays bounded: only the compact
    per-request frame is kept.

    Args:
        path: The ``.json``/``.ndjson`` file, optionally gzip-compressed.
        allow_truncated_tail: Drop a final partial line (a run cut off mid-write, or a cut gzip
            stream) with a warning instead of raising.
        block_bytes: Decompressed bytes per block (gzip).

    Returns:
        ``LoadTestData(source="k6", requests=..., failed_points=(failed, total))``.

    Raises:
        BadInputFormat: A line is not JSON, the last line is truncated, the gzip stream is cut,
            or the file has no HTTP points; the message names the file and line.
        BadParameter: The file does not exist.
    """
    path = Path(path)
    fh, is_gzip = _open_checked(path)
    fh.close()
    cut_stream = False
    lines_total: int | None = None
    try:
        if is_gzip:
            out, tail, cut_stream, lines_total = _collect_blocks(path, block_bytes)
        else:
            out, tail = _collect_plain(path)
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        raise _scan_for_problem(path, f"cannot read k6 points: {str(exc).splitlines()[0]}"
                                ) from exc
    if out.height == 0:
        out = pl.DataFrame(schema={"row": pl.UInt32, "kind": pl.UInt8, "raw": pl.String})
    dropped = 0
    bad = out.filter(pl.col("kind") == _BAD).filter(pl.col("raw").str.strip_chars() != "")
    tail_bad = tail is not None and (cut_stream or _k6_line_problem(tail, True, True) is not None)
    if cut_stream and tail is None and not allow_truncated_tail:
        raise BadInputFormat(str(path), "the gzip stream ends early (file truncated) after this "
                             "line. Pass allow_truncated_tail=True to keep the complete lines",
                             line=_max_row(out) + 1)
    if tail_bad:
        if lines_total is None:  # plain file: count its lines (a second scan, error path only)
            lines_total = int(pl.scan_csv(path, **_CSV_LINES)  # type: ignore[arg-type]
                              .select(pl.len()).collect(engine="streaming").item())
        tail_row = lines_total - 1
        if allow_truncated_tail:
            dropped = 1
            warnings.warn(f"{path}:{tail_row + 1}: dropped 1 truncated final line "
                          f"({len(tail or b'')} bytes)", stacklevel=2)
            out = out.filter(pl.col("row") != tail_row)
            bad = bad.filter(pl.col("row") != tail_row)
        elif bad.height == 0 or int(bad["row"][0]) == tail_row:
            reason = (_k6_line_problem(tail or b"", True, True)
                      or "the last line is truncated")
            if cut_stream:
                reason = ("the gzip stream ends early (file truncated) inside this line. Pass "
                          "allow_truncated_tail=True to drop it")
            raise BadInputFormat(str(path), reason, line=tail_row + 1)
    if bad.height:
        row = bad.row(0, named=True)
        problem = _k6_line_problem((row["raw"] or "").encode(), False, False)
        raise BadInputFormat(str(path), problem or "not a JSON object", line=int(row["row"]) + 1)
    return _finish_k6(path, out, dropped)


def _max_row(frame: pl.DataFrame) -> int:
    value = frame.select(pl.col("row").max()).item() if frame.height else None
    return int(value) if value is not None else 0


def _finish_k6(path: Path, out: pl.DataFrame, dropped: int) -> LoadTestData:
    req = out.filter(pl.col("kind") == _DURATION)
    if req.height == 0:
        raise BadInputFormat(
            str(path),
            "no http_req_duration points: is this k6 '--out json' output of a test that "
            "made HTTP requests?",
        )
    nulls = req.filter(pl.col("duration_ms").is_null() | pl.col("time").is_null())
    if nulls.height:
        raise BadInputFormat(str(path), "an http_req_duration point has no numeric value or "
                             "time", line=int(nulls["row"][0]) + 1)
    failed = out.filter(pl.col("kind") == _FAILED)["failed_value"].drop_nulls()
    del out
    failed_points = (int((failed != 0).sum()), failed.len()) if failed.len() else None
    status_ok = pl.col("status").is_between(200, 399)
    if req["expected_response"].null_count() < req.height:
        # k6 sets http_req_failed = !expected_response for every request it tags.
        ok = (pl.col("expected_response") == "true").fill_null(status_ok)
        req = req.with_columns(ok.alias("ok"))
    elif failed.len() == req.height:
        # No expected_response tag (custom --system-tags): the http_req_failed point of a
        # request is written right after its http_req_duration point, in the same order.
        req = req.with_columns((failed == 0).alias("ok"))
    else:
        req = req.with_columns(status_ok.fill_null(False).alias("ok"))
    order = ["time", "name", "method", "status", "duration_ms", "ok", "message",
             "expected_response", "scenario", "group", "error_code", "url"]
    req = req.select(order)
    return LoadTestData(source="k6", path=path, requests=req,
                        dropped_lines=dropped, failed_points=failed_points)


# --- k6 summary export -----------------------------------------------------------------------

_SUBMETRIC = re.compile(r"^(?P<metric>[A-Za-z0-9_]+)(\{(?P<tags>.*)\})?$")


def _parse_tag_filter(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition(":")
        if not sep:
            raise ValueError(f"tag filter {part!r} is not key:value")
        tags[key.strip()] = value.strip()
    return tags


def _percentile_key(name: str) -> str | None:
    match = re.fullmatch(r"p\((\d+(?:\.\d+)?)\)", name)
    if not match:
        return None
    num = float(match.group(1))
    return "p" + (f"{num:g}".replace(".", "_"))


def read_k6_summary(path: str | Path) -> LoadTestData:
    """Read a k6 ``--summary-export`` file (or a ``handleSummary`` JSON ``data`` dump).

    Args:
        path: The JSON file.

    Returns:
        ``LoadTestData(source="k6-summary")`` with ``stats`` (one row for ``http_req_duration``
        as :data:`OVERALL`, one per ``http_req_duration{name:...}`` sub-metric; trend columns as
        exported, ``p90``/``p95``/``p99`` null when not in ``--summary-trend-stats``),
        ``thresholds`` normalised so ``True`` means passed, ``metrics`` (raw) and
        ``duration_s`` (``http_reqs`` count / rate).

    Raises:
        BadInputFormat: Not JSON, or no ``metrics`` object.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise BadParameter("path", str(path), "an existing k6 summary JSON file") from exc
    except UnicodeDecodeError as exc:
        raise BadInputFormat(str(path), "not a text file (a k6 summary export is JSON)") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputFormat(str(path), f"not valid JSON: {exc.msg} (column {exc.colno})",
                             line=exc.lineno) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("metrics"), dict):
        raise BadInputFormat(str(path), "no 'metrics' object: not a k6 --summary-export file")
    raw: dict[str, Any] = doc["metrics"]
    metrics: dict[str, dict[str, Any]] = {}
    thresholds: dict[str, dict[str, bool]] = {}
    for key, body in raw.items():
        if not isinstance(body, dict):
            continue
        if isinstance(body.get("values"), dict):  # handleSummary() data format
            values = dict(body["values"])
            for expr, res in (body.get("thresholds") or {}).items():
                thresholds.setdefault(key, {})[expr] = bool(res.get("ok"))
        else:  # legacy --summary-export: {"thresholds": {expr: failed}}
            values = {k: v for k, v in body.items() if k != "thresholds"}
            if "passes" in values and "fails" in values and "value" in values:
                values = {"rate": values["value"], "passes": values["passes"],
                          "fails": values["fails"]}
            for expr, failed in (body.get("thresholds") or {}).items():
                thresholds.setdefault(key, {})[expr] = not bool(failed)
        metrics[key] = values
    rows: list[dict[str, Any]] = []
    duration_s = None
    reqs = metrics.get("http_reqs", {})
    if reqs.get("rate"):
        duration_s = float(reqs["count"]) / float(reqs["rate"])
    for key, values in metrics.items():
        match = _SUBMETRIC.match(key)
        if not match or match.group("metric") != "http_req_duration":
            continue
        tags = _parse_tag_filter(match.group("tags") or "")
        if tags and set(tags) != {"name"}:
            continue
        name = tags.get("name", OVERALL)
        suffix = "{" + match.group("tags") + "}" if match.group("tags") else ""
        failed = metrics.get("http_req_failed" + suffix, {})
        count_m = metrics.get("http_reqs" + suffix, {})
        count = values.get("count", count_m.get("count"))
        row: dict[str, Any] = {
            "name": name,
            "method": None,
            "count": None if count is None else int(count),
            "errors": int(failed["passes"]) if "passes" in failed else None,
            "error_rate": failed.get("rate"),
            "rps": count_m.get("rate"),
            "avg": values.get("avg"),
            "min": values.get("min"),
            "med": values.get("med"),
            "max": values.get("max"),
        }
        for stat, val in values.items():
            pkey = _percentile_key(stat)
            if pkey:
                row[pkey] = val
        rows.append(row)
    if not rows:
        raise BadInputFormat(str(path), "no http_req_duration metric: the test made no HTTP "
                             "requests, or this is not a k6 summary export")
    stats = _stats_frame(rows)
    return LoadTestData(source="k6-summary", path=path, stats=stats, thresholds=thresholds,
                        metrics=metrics, duration_s=duration_s)


def _stats_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    extra = sorted({k for r in rows for k in r} - set(STATS_COLUMNS),
                   key=lambda k: float(k[1:].replace("_", ".")) if k.startswith("p") else 0.0)
    schema = {**STATS_COLUMNS, **{k: pl.Float64() for k in extra}}
    frame = pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema,
                         orient="row")
    return frame.sort(pl.col("name") != OVERALL, "name")


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


def _stamp_ok(value: str) -> bool:
    """Whether a JTL ``timeStamp`` value is epoch milliseconds (digits only)."""
    return value.strip().isdigit()


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
