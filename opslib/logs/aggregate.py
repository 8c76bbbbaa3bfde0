"""The analysis of many log files: per-minute volume and levels, top messages, malformed lines."""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from opslib.exceptions import BadParameter
from opslib.logs import _native
from opslib.logs.fields import (
    _FIELD_COLUMNS,
    _MESSAGE_CHARS,
    _Bytes,
    _collapse,
    _json_fields,
    _json_level,
    _keyword_level,
    _only,
    _split,
    _status_class,
    _stream_codes,
    _text_fields,
    _text_level,
    _zero_digits,
    mask_messages,
)
from opslib.logs.reader import (
    _LINE_COLUMNS,
    DEFAULT_BATCH_BYTES,
    DockerLogReader,
    _BatchAgg,
    _Chunk,
    _complete,
    _empty_entries,
    _join_partials,
    _parse_batch,
    _Skipped,
)
from opslib.redact import redact_text

__all__ = ["LogAnalysis", "analyse_files"]


_VOLUME_SCHEMA = pl.Schema([("service", pl.String), ("minute", pl.Datetime("us", "UTC")),
                            ("lines", pl.Int64), ("bytes", pl.Int64), ("errors", pl.Int64),
                            ("warnings", pl.Int64)])
_TOP_SCHEMA = pl.Schema({"service": pl.String, "level": pl.String, "status_class": pl.String,
                         "message": pl.String, "count": pl.Int64, "bytes": pl.Int64,
                         "example": pl.String})
_FILE_SCHEMA = pl.Schema({"service": pl.String, "path": pl.String, "bytes_read": pl.Int64,
                          "entries": pl.Int64, "lines": pl.Int64, "partial_entries": pl.Int64,
                          "malformed": pl.Int64, "in_window": pl.Int64, "skipped": pl.String})
_MALFORMED_SCHEMA = pl.Schema({"service": pl.String, "path": pl.String, "line": pl.Int64,
                               "offset": pl.Int64, "length": pl.Int64, "reason": pl.String,
                               "snippet": pl.String})
_EXAMPLE_CHARS = 300
_TOP_CAP = 20_000


# -- analysis -----------------------------------------------------------------------------------

@dataclass
class LogAnalysis:
    """What a set of json-file logs contains, per service (polars frames).

    Attributes:
        files: One row per file: service, path, bytes_read, entries, lines, partial_entries,
            malformed, in_window (lines inside the time window), skipped (why, or "").
        volume: service, minute (UTC), lines, bytes, errors, warnings.
        levels: service, level, lines.
        status: service, status_class, lines.
        top_messages: service, level, message (masked and redacted), count, bytes, example
            (one real line, redacted).
        malformed: service, path, line, offset, length, reason, snippet (redacted).
        approximate: True when a service had more distinct messages than the tracking cap, so the
            counts of rare messages are lower bounds.
    """

    files: pl.DataFrame
    volume: pl.DataFrame
    levels: pl.DataFrame
    status: pl.DataFrame
    top_messages: pl.DataFrame
    malformed: pl.DataFrame
    approximate: bool = False

    @property
    def malformed_count(self) -> int:
        """All malformed lines seen (examples are capped, the count is not)."""
        return int(self.files["malformed"].sum()) if self.files.height else 0

    @property
    def total_lines(self) -> int:
        """Logical lines inside the time window."""
        return int(self.volume["lines"].sum()) if self.volume.height else 0

    @property
    def error_rate(self) -> float:
        """Share of lines (inside the window) classified as errors, 0..1."""
        total = self.total_lines
        return float(self.volume["errors"].sum()) / total if total else 0.0

    def per_service(self) -> pl.DataFrame:
        """One row per service: lines, bytes, errors, warnings, error_rate, malformed."""
        vol = (self.volume.group_by("service")
               .agg(pl.col("lines").sum(), pl.col("bytes").sum(), pl.col("errors").sum(),
                    pl.col("warnings").sum()))
        mal = self.files.group_by("service").agg(pl.col("malformed").sum())
        out = (mal.join(vol, on="service", how="left")
               .with_columns(pl.col("lines", "bytes", "errors", "warnings").fill_null(0))
               .with_columns(error_rate=pl.when(pl.col("lines") > 0)
                             .then(pl.col("errors") / pl.col("lines")).otherwise(0.0)))
        return out.select("service", "lines", "bytes", "errors", "warnings", "error_rate",
                          "malformed").sort("bytes", descending=True)

    def top_writer(self) -> str:
        """The service that wrote the most bytes inside the window ("" when nothing)."""
        ps = self.per_service()
        return str(ps["service"][0]) if ps.height and ps["bytes"][0] > 0 else ""


_GROUP_KEYS = ["minute", "_lv", "_status", "level", "key"]
_CUBE_KEYS = ["minute", "level", "status_class"]
_MSG_KEYS = ["level", "status_class", "masked"]


def _aggregate(lines: pl.DataFrame, since: str | None = None) -> _BatchAgg:
    """Reduce one batch of logical lines to one small frame of groups.

    Lines are grouped by minute, raw level and status fields and message *before* anything else
    is done per message: the message's grouping key has its digits zeroed (one numpy pass;
    shapes such as timestamps and IPs survive). Only JSON fields are extracted and messages
    decoded per line (by the native scanner when ``lines`` carries its columns, else with
    regexes and :func:`_json_unescape`); levels and status classes are mapped on the distinct
    groups, and the keywords of plain-text lines and masking run later on the distinct keys of
    many batches (see :meth:`_Accumulator.compact`).
    """
    q = _agg_exprs()
    scanned = "_kw" in lines.columns
    df = lines.select(_LINE_COLUMNS + (_FIELD_COLUMNS if scanned else []))
    if since is not None:  # only lines at or after this time (YYYY-MM-DDTHH:MM:SS)
        df = df.filter(pl.col("time").str.slice(0, 19) >= since)
    if scanned:
        frames = [df.with_columns(_keyword_level(df, df["_kw"], True))] if df.height else []
    else:
        js, tx = _split(df, df["log"].str.starts_with("{"))
        frames = ([_json_fields(js, True, per_line=False)] if js.height else []) + (
            [_text_fields(tx, True, defer=True)] if tx.height else [])
    parts = []
    for f in frames:
        if "key" not in f.columns:
            message = _short_col(f["message"])
            f = f.with_columns(message, key=_zero_digits(message))
        f = f.select(*q["minute_str"],
                     *(pl.col(c) if c in f.columns else pl.lit(None, pl.String).alias(c)
                       for c in ("_lv", "_status")),
                     "level", "message", "key", "nbytes")
        parts.append(f.group_by(_GROUP_KEYS).agg(q["agg"]))
    if not parts:
        return _BatchAgg(0, None)
    groups = parts[0] if len(parts) == 1 else pl.concat(parts)
    return _BatchAgg(df.height, _detach(groups))


def _short_col(message: pl.Series) -> pl.Series:
    """``message`` cut to _MESSAGE_CHARS characters (without a pass when none is longer)."""
    longest = message.str.len_bytes().max()
    if longest is None or longest <= _MESSAGE_CHARS:  # type: ignore[operator]
        return message
    return message.str.slice(0, _MESSAGE_CHARS)


@functools.cache
def _agg_exprs() -> dict[str, list[pl.Expr]]:
    """The expressions of :func:`_aggregate` and :class:`_Accumulator`, built once."""
    level = pl.col("level")
    return {
        "minute_str": [pl.col("time").str.slice(0, 16).alias("minute")],
        "agg": [pl.len().alias("count"), pl.col("nbytes").sum().alias("bytes"),
                pl.col("message").first().alias("example")],
        # Levels of the distinct groups: the JSON level or status field, else keywords (of the
        # whole line, or of the key for plain-text lines that are their own message).
        "classes": [pl.coalesce(level, _json_level()).alias("level"),
                    _status_class().alias("status_class")],
        "text_level": [pl.coalesce(level, _text_level(_only(level.is_null(), pl.col("key"))))
                       .alias("level")],
        "cube": [pl.col("count").sum().alias("lines"), pl.col("bytes").sum()],
        "cube_sums": [pl.col("lines").sum(), pl.col("bytes").sum()],
        "minute": [pl.col("minute").str.to_datetime("%Y-%m-%dT%H:%M", strict=False,
                                                    time_zone="UTC", time_unit="us")],
        "sums": [pl.col("count").sum(), pl.col("bytes").sum(), pl.col("example").first()],
        "mask": [mask_messages(pl.col("key")).alias("masked"), pl.col("example")],
    }


def _detach(df: pl.DataFrame) -> pl.DataFrame:
    """Copy a small frame's strings into buffers of their own.

    polars strings are views into the buffers of the column they were cut from, so a handful
    of kept example strings would otherwise pin every batch's whole log buffer in memory.
    """
    return pl.DataFrame(pl.from_arrow(df.to_arrow(compat_level=pl.CompatLevel.oldest())))


class _Accumulator:
    """Merges per-batch groups of one service into bounded frames."""

    #: Pending groups (rows) or batches that trigger a compaction.
    PENDING_ROWS = 20_000
    PENDING_BATCHES = 32

    def __init__(self, top_cap: int) -> None:
        self.top_cap = top_cap
        self.pending: list[pl.DataFrame] = []
        self.pending_rows = 0
        self.cube: list[pl.DataFrame] = []
        self.messages: list[pl.DataFrame] = []
        self.approximate = False

    def merge(self, agg: _BatchAgg) -> None:
        if agg.groups is None:
            return
        self.pending.append(agg.groups)
        self.pending_rows += agg.groups.height
        if len(self.pending) >= self.PENDING_BATCHES or self.pending_rows >= self.PENDING_ROWS:
            self.compact()

    def compact(self) -> None:
        """Fold the pending groups into the minute cube and the masked messages: keywords of
        plain-text keys and masking run once per distinct key here."""
        if not self.pending:
            return
        q = _agg_exprs()
        groups = (pl.concat(self.pending).group_by(_GROUP_KEYS).agg(q["sums"])
                  .with_columns(q["classes"]).with_columns(q["text_level"]))
        self.pending, self.pending_rows = [], 0
        cube = (groups.group_by(_CUBE_KEYS).agg(q["cube"]).with_columns(q["minute"]))
        self.cube = [pl.concat([*self.cube, cube]).group_by(_CUBE_KEYS).agg(q["cube_sums"])]
        messages = (groups.group_by("level", "status_class", "key").agg(q["sums"])
                    .with_columns(q["mask"]).group_by(_MSG_KEYS).agg(q["sums"]))
        merged = pl.concat([*self.messages, messages]).group_by(_MSG_KEYS).agg(q["sums"])
        if merged.height > self.top_cap:
            self.approximate = True
            merged = merged.sort("count", descending=True).head(self.top_cap // 2)
        self.messages = [merged]

    def volume(self) -> pl.DataFrame:
        err = pl.col("lines").filter(pl.col("level") == "error").sum()
        warn = pl.col("lines").filter(pl.col("level") == "warning").sum()
        return (self.cube[0].group_by("minute")
                .agg(pl.col("lines").sum(), pl.col("bytes").sum(), errors=err, warnings=warn))

    def levels(self) -> pl.DataFrame:
        return self.cube[0].group_by("level").agg(pl.col("lines").sum())

    def status(self) -> pl.DataFrame:
        return (self.cube[0].filter(pl.col("status_class").is_not_null())
                .group_by("status_class").agg(pl.col("lines").sum()))


def _since_str(since: dt.datetime | None) -> str | None:
    if since is None:
        return None
    if since.tzinfo is not None:
        since = since.astimezone(dt.UTC).replace(tzinfo=None)
    return since.strftime("%Y-%m-%dT%H:%M:%S")


def analyse_files(
    files: Iterable[tuple[str, str | Path]],
    *,
    since: dt.datetime | None = None,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    max_examples: int = 100,
    top_n: int = 50,
    top_cap: int = _TOP_CAP,
    workers: int | None = None,
) -> LogAnalysis:
    """Analyse json-file logs, streaming each file in bounded batches.

    The calling thread only reads raw batches and keeps the books; each batch is parsed and
    reduced to small aggregates in one worker task (:func:`_process_batch`), files one after
    the other without draining the pipeline in between. Lines that may continue across a batch
    boundary (partial entries, and each stream's first entry of a batch) come back to the
    calling thread, which joins them in file order.

    Args:
        files: ``(service, path)`` pairs; a service may have several files (live and rotated).
        since: Only lines at or after this time (UTC if naive) count in volume, levels, status
            and messages; malformed lines are counted over whole files. Rotated files last
            modified before it are skipped without being read.
        batch_bytes: Raw bytes per batch.
        max_examples: Malformed-line examples kept per file.
        top_n: Top messages kept per service.
        top_cap: Distinct masked messages tracked per service before rare ones are dropped.
        workers: Threads that parse and aggregate batches (polars and numpy release the GIL, so
            they run in parallel); 0 runs everything in the calling thread; ``None`` (default)
            one per CPU plus one, at most 8. About two batches per thread are in flight,
            so memory grows with it.

    Returns:
        A :class:`LogAnalysis`.

    Raises:
        BadParameter: ``workers`` is negative or ``batch_bytes`` below 4096.
        BadInputFormat: A file cannot be opened.
    """
    cutoff = _since_str(since)
    _native.scanner()  # built (once) here rather than in a worker
    if workers is None:
        workers = min(8, (os.cpu_count() or 1) + 1)
    if workers < 0:
        raise BadParameter("workers", workers, "0 (no extra thread) or a positive count")
    file_rows: list[dict[str, Any]] = []
    mal_rows: list[dict[str, Any]] = []
    accs: dict[str, _Accumulator] = {}
    inflight: deque[tuple[_FileRun, Future[Any]]] = deque()
    depth = 2 * workers

    with ThreadPoolExecutor(max_workers=max(1, workers),
                            thread_name_prefix="logparse") as pool:

        def queue(run_: _FileRun, item: Any) -> None:
            done: Future[Any] = Future()
            done.set_result(item)
            inflight.append((run_, done))

        def drain(keep: int) -> None:
            while len(inflight) > keep:
                run_, fut = inflight.popleft()
                run_.consume(fut.result())

        for service, p in files:
            path = Path(p)
            acc = accs.setdefault(service, _Accumulator(top_cap))
            row: dict[str, Any] = {"service": service, "path": str(path), "bytes_read": 0,
                                   "entries": 0, "lines": 0, "partial_entries": 0,
                                   "malformed": 0, "in_window": 0, "skipped": ""}
            file_rows.append(row)
            try:
                st = path.stat()
            except OSError as exc:
                row["skipped"] = f"cannot stat: {exc.strerror}"
                continue
            if since is not None and _is_rotated(path) and dt.datetime.fromtimestamp(
                    st.st_mtime, dt.UTC) < (since if since.tzinfo else
                                            since.replace(tzinfo=dt.UTC)):
                row["skipped"] = "rotated before the window"
                continue
            reader = DockerLogReader(path, batch_bytes=batch_bytes, max_examples=max_examples,
                                     limit=None if path.suffix == ".gz" else st.st_size,
                                     decode=False)
            run = _FileRun(reader, acc, row, cutoff, 2 * batch_bytes)
            for item in reader._raw():
                if isinstance(item, _Skipped):
                    queue(run, item)
                elif workers:
                    inflight.append((run, pool.submit(_process_batch, *item, cutoff)))
                else:
                    queue(run, _process_batch(*item, cutoff))
                drain(depth)
            queue(run, None)  # end of file
            drain(depth)
        drain(0)
    for row in file_rows:
        mal_rows += row.pop("_malformed", [])
    return _finish(accs, file_rows, mal_rows, top_n)


def _process_batch(data: _Bytes, size: int, offset: int, since: str | None) -> _Chunk:
    """Parse a raw batch and reduce the lines that lie wholly inside it. Pure: runs in worker
    threads (the batch's line numbers are only known in file order: the caller adds them).

    Entries that may belong to a line spanning batches are handed back as ``rest``: partial
    entries, the complete entry that ends them, and each stream's first entry of the batch (it
    may end a line that the previous batch left open).
    """
    p = _parse_batch(data, size, offset, fields=True)
    e = p.entries
    if not e.height:
        return _Chunk(p.lines, 0, p.partial, p.malformed, 0, _BatchAgg(0, None), e, 0)
    unsafe = _spanning(e, p.partial, p.streams)
    keep = pl.Series(~unsafe)
    safe = e.filter(keep)
    if p.fields is not None:
        safe = pl.concat([safe, p.fields.filter(keep)], how="horizontal")
    rest = _own(e.filter(pl.Series(unsafe)))
    agg = _aggregate(safe, since) if safe.height else _BatchAgg(0, None)
    return _Chunk(p.lines, e.height, p.partial, p.malformed, safe.height, agg, rest,
                  int(rest["nbytes"].sum()))


def _spanning(e: pl.DataFrame, partial: int, codes: np.ndarray | None = None) -> np.ndarray:
    """Rows of entries (in file order) that may belong to a line of several entries: per
    stream, the first entry, partial entries and the entry following a partial one.
    ``codes`` numbers the entries' streams when the parser knows them."""
    out = np.zeros(e.height, dtype=bool)
    if codes is None:
        codes = _stream_codes(e["stream"])
    if not partial:
        for c in range(int(codes.max()) + 1):
            first = int(np.argmax(codes == c))
            if codes[first] == c:
                out[first] = True
        return out
    final = e.select(_complete(pl.col("log"))).to_series().fill_null(False).to_numpy()
    for c in np.unique(codes):
        idx = np.flatnonzero(codes == c)
        f = final[idx]
        out[idx[1:]] |= ~f[1:] | ~f[:-1]
        out[idx[0]] = True
    return out


def _own(df: pl.DataFrame) -> pl.DataFrame:
    """A copy of a frame whose strings are in buffers of its own (see :func:`_detach`); a few
    rows go faster through Python objects."""
    if df.height > 64:
        return _detach(df)
    return pl.DataFrame(df.rows(), schema=df.schema, orient="row")


class _FileRun:
    """The books of one file being analysed, kept in file order by the calling thread."""

    def __init__(self, reader: DockerLogReader, acc: _Accumulator, row: dict[str, Any],
                 since: str | None, rest_limit: int) -> None:
        self.reader, self.acc, self.row, self.since = reader, acc, row, since
        self.rest: list[tuple[int, pl.DataFrame]] = []  # (first line of its batch, entries)
        self.rest_bytes = 0
        self.rest_limit = rest_limit
        self.carry = _empty_entries()

    def consume(self, item: _Chunk | _Skipped | None) -> None:
        """Take the next result of this file, in file order (``None`` ends the file)."""
        r, st = self.reader, self.reader.stats
        if item is None:
            self._join(final=True)
            self.row.update(bytes_read=st.bytes_read, entries=st.entries, lines=st.lines,
                            partial_entries=st.partial_entries, malformed=st.malformed)
            self.row["_malformed"] = [
                {"service": self.row["service"], "path": self.row["path"], "line": m.line,
                 "offset": m.offset, "length": m.length, "reason": m.reason,
                 "snippet": m.snippet} for m in st.examples]
            return
        base = r._take(item)
        if base is None or isinstance(item, _Skipped):
            return
        st.entries += item.entries
        st.lines += item.done
        self._merge(item.agg)
        if item.rest.height:
            self.rest.append((base, item.rest))
            self.rest_bytes += item.rest_bytes
            if self.rest_bytes > self.rest_limit:
                self._join(final=False)

    def _merge(self, agg: _BatchAgg) -> None:
        self.row["in_window"] += agg.lines
        self.acc.merge(agg)

    def _join(self, *, final: bool) -> None:
        """Join the entries handed back so far (after the carried ones) and reduce the lines
        that are complete; at the end of the file, an unfinished line counts as it is."""
        if not self.rest and not (final and self.carry.height):
            return
        joined, self.carry = _join_partials(pl.concat(
            [self.carry, *(rest.with_columns(pl.col("line") + base) for base, rest in self.rest)]))
        self.rest, self.rest_bytes = [], 0
        if final and self.carry.height:
            joined = pl.concat([joined, _collapse(self.carry)])
            self.carry = _empty_entries()
        self.reader.stats.lines += joined.height
        if joined.height:
            self._merge(_aggregate(joined, self.since))


def _is_rotated(path: Path) -> bool:
    name = path.name
    return name.endswith(".gz") or name.rsplit(".", 1)[-1].isdigit()


def _finish(accs: dict[str, _Accumulator], file_rows: list[dict[str, Any]],
            mal_rows: list[dict[str, Any]], top_n: int) -> LogAnalysis:
    vols, lvls, stats, tops = [], [], [], []
    approximate = False
    for service, acc in accs.items():
        svc = pl.lit(service).alias("service")
        acc.compact()
        if acc.cube:
            vols.append(acc.volume().with_columns(svc))
            lvls.append(acc.levels().with_columns(svc))
            stats.append(acc.status().with_columns(svc))
        if acc.messages and acc.messages[0].height:
            top = acc.messages[0].sort(["count", "bytes"], descending=True).head(top_n)
            tops.append(top.with_columns(svc))
        approximate |= acc.approximate
    volume = (pl.concat(vols)
              .filter(pl.col("minute").is_not_null())
              .group_by("service", "minute").agg(pl.col("lines", "bytes", "errors",
                                                          "warnings").sum())
              .select(list(_VOLUME_SCHEMA)).cast(_VOLUME_SCHEMA)
              .sort("service", "minute")
              if vols else pl.DataFrame(schema=_VOLUME_SCHEMA))
    levels = (pl.concat(lvls).select("service", "level", pl.col("lines").cast(pl.Int64))
              .sort("service", "lines", descending=[False, True])
              if lvls else pl.DataFrame(schema={"service": pl.String, "level": pl.String,
                                                "lines": pl.Int64}))
    status = (pl.concat(stats).select("service", "status_class", pl.col("lines").cast(pl.Int64))
              .sort("service", "status_class")
              if stats else pl.DataFrame(schema={"service": pl.String,
                                                 "status_class": pl.String, "lines": pl.Int64}))
    if tops:
        t = pl.concat(tops)
        top_messages = pl.DataFrame({
            "service": t["service"], "level": t["level"], "status_class": t["status_class"],
            "message": [redact_text(m) for m in t["masked"].to_list()],
            "count": t["count"].cast(pl.Int64), "bytes": t["bytes"].cast(pl.Int64),
            "example": [redact_text(str(e)[:_EXAMPLE_CHARS]) for e in t["example"].to_list()],
        }, schema=_TOP_SCHEMA).sort("count", descending=True)
    else:
        top_messages = pl.DataFrame(schema=_TOP_SCHEMA)
    return LogAnalysis(
        files=pl.DataFrame(file_rows, schema=_FILE_SCHEMA),
        volume=volume, levels=levels, status=status, top_messages=top_messages,
        malformed=pl.DataFrame(mal_rows, schema=_MALFORMED_SCHEMA), approximate=approximate,
    )
