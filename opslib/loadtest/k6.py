"""k6 results: the NDJSON point stream (streamed, vectorised) and the summary export."""

from __future__ import annotations

import gzip
import json
import re
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, cast

import polars as pl

from opslib.exceptions import BadInputFormat, BadParameter
from opslib.loadtest.data import OVERALL, LoadTestData, _open_checked, _snippet, _stats_frame

__all__ = ["read_k6_ndjson", "read_k6_summary"]


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
