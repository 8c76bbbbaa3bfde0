"""Streaming, vectorised analysis of Docker json-file logs.

Docker's json-file driver writes one JSON object per line::

    {"log":"GET /products 200\\n","stream":"stdout","time":"2024-05-01T12:00:00.123456789Z"}

A ``log`` value without a trailing newline is a *partial* entry: Docker splits lines longer than
16 KB into several entries, and the following entries of the same stream carry the rest of the
line. This module reads such files (plain or gzip-compressed rotated files) in bounded batches of
raw bytes. Each batch becomes one arrow string array over the batch's buffer (no per-line Python
objects); the envelope fields are cut out by position with vectorised string operations (the
log text stays JSON-escaped, which is all the classification needs), and only lines without the
json-file shape are checked one by one. Partial entries are joined, and each batch is reduced
straight away to small aggregates: bytes and lines per minute, levels, HTTP status classes and
the most repeated messages after masking variable parts (numbers, hex ids, UUIDs, IPs,
timestamps). Nothing per line is kept across batches, so memory stays bounded by the batch size
whatever the file size; batches are parsed and aggregated in worker threads (polars and numpy
release the GIL).

Malformed lines (not JSON, not a json-file entry, NUL-filled holes left by an unsafe truncate,
empty lines) are counted and reported with their line number and byte offset; they never stop the
analysis. Everything shown (messages, examples, malformed snippets) goes through
:func:`opslib.redact.redact_text` first.
"""

from __future__ import annotations

import codecs
import datetime as dt
import gzip
import io
import json
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from opslib.exceptions import BadInputFormat, BadParameter
from opslib.redact import redact_text

__all__ = [
    "DEFAULT_BATCH_BYTES",
    "ENVELOPE_SCHEMA",
    "MASKS",
    "DockerLogReader",
    "LogAnalysis",
    "Malformed",
    "ReadStats",
    "analyse_files",
    "classify",
    "mask_messages",
    "unescape",
]

#: Bytes of raw log read per batch. Peak memory is a small multiple of this.
DEFAULT_BATCH_BYTES = 4 << 20
#: A "line" longer than this (a NUL-filled hole, a binary blob) is skipped and reported.
MAX_LINE_BYTES = 64 << 20
#: At most this many malformed lines per batch get an exact per-line JSON check.
_PY_CHECK_LIMIT = 1000

ENVELOPE_SCHEMA: dict[str, Any] = {"log": pl.String, "stream": pl.String, "time": pl.String}

# Docker writes every entry as {"log":"<JSON-escaped text>","stream":"stdout|stderr",
# ["attrs":{...},]"time":"<RFC3339Nano>"}. Inside the escaped text a quote is always \", so the
# literals below can only match the envelope itself: fields are cut out by position, without a
# JSON parse. Lines without this shape go through a per-line check.
_LOG_PREFIX = '{"log":"'
_STREAM_SEP = '","stream":"'
_TIME_KEY = '"time":"'


def _field_patterns(escaped: bool) -> dict[str, Any]:
    """Regexes for fields of JSON application / access logs.

    One literal key per pattern: the regex engine then skips lines without that key at memchr
    speed (an alternation of keys is ~5x slower). ``escaped`` patterns work on the text as it
    sits in the json-file envelope (quotes of the inner JSON appear as ``\"``).
    """
    if escaped:
        q = r'\\"'
        # The inner string ends at the first lone \" (an inner escaped quote is \\\"); other
        # inner escapes (\\n, \u...) end the captured text early, which is fine for messages.
        val = r'((?:[^\\]|\\\\\\")*)'
    else:
        q = '"'
        val = r'((?:[^"\\]|\\.)*)"'

    def key(name: str) -> str:
        return name + q + r' ?: ?' + q

    return {
        "level": [key("level") + r'([A-Za-z]+)', key("severity") + r'([A-Za-z]+)'],
        "status": [r'status' + q + r' ?: ?(?:' + q + r')?([1-5][0-9][0-9])\b'],
        "msg": [key("msg") + val, key("message") + val],
        # "method" also matches "request_method", "uri" also "request_uri".
        "method": [key("method") + r'([A-Z]+)'],
        "uri": [key("uri") + val, key("path") + val],
        "newline": r"\n" if escaped else "\n",
        # The second patterns above are only tried when one of these keys occurs in a batch.
        "alt_keys": ["severity" + q, "message" + q, "path" + q],
    }


_PATTERNS = {True: _field_patterns(True), False: _field_patterns(False)}
# Plain-text lines: keywords.
_TEXT_ERROR_RE = (r"(?i)\b(?:error|err|fatal|panic|critical|crit|emerg|alert|exception|"
                  r"traceback|failed)\b")
_TEXT_WARN_RE = r"(?i)\bwarn(?:ing)?\b"
# Escapes of the json-file envelope undone in messages before they are grouped and shown.
_UNESCAPE = ([r"\\", r"\"", r"\/", r"\u003c", r"\u003e", r"\u0026", r"\t"],
             ["\\", '"', "/", "<", ">", "&", "\t"])

_LEVEL_MAP = {
    "error": "error", "err": "error", "fatal": "error", "critical": "error", "crit": "error",
    "alert": "error", "emerg": "error", "emergency": "error", "panic": "error", "severe": "error",
    "warn": "warning", "warning": "warning",
    "info": "info", "information": "info", "informational": "info", "notice": "info",
    "debug": "debug", "trace": "debug", "verbose": "debug",
}

#: Masks applied, in order, before messages are grouped (pattern, replacement).
MASKS: list[tuple[str, str]] = [
    # ISO-8601 / RFC3339 timestamps and dates
    (r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?",
     "<ts>"),
    # syslog / redis style dates: "01 May 2024 12:00:01.123", "May  1 12:00:01"
    (r"(?i)\b(?:\d{1,2} )?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]* +\d{1,4}"
     r"(?: \d{4})? \d{2}:\d{2}:\d{2}(?:[.,]\d+)?", "<ts>"),
    # times of day
    (r"\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b", "<time>"),
    # UUIDs
    (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "<uuid>"),
    # IPv4 (optional port) and IPv6
    (r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b", "<ip>"),
    (r"(?i)\b(?:[0-9a-f]{1,4}:){2,7}[0-9a-f]{1,4}\b|\b(?:[0-9a-f]{1,4}:){1,6}:[0-9a-f]{0,4}\b",
     "<ip>"),
    # hex ids: 0x..., or 8+ hex digits (request ids, container ids, hashes)
    (r"\b0x[0-9a-fA-F]+\b|\b[0-9a-fA-F]{8,}\b", "<hex>"),
    # query-string values
    (r"([?&][A-Za-z0-9_.-]+)=[^&\s\"]*", "${1}=<v>"),
    # any other number
    (r"\d+(?:\.\d+)?", "<n>"),
]

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
_MESSAGE_CHARS = 300
_EXAMPLE_CHARS = 300
_TOP_CAP = 20_000


@dataclass(frozen=True)
class Malformed:
    """One malformed line of a json-file log.

    Attributes:
        line: 1-based line number in the (decompressed) file.
        offset: Byte offset of the line's first byte.
        length: Its length in bytes (newline excluded).
        reason: What is wrong with it.
        snippet: Its first characters, redacted (NUL bytes shown as ``\\0``).
    """

    line: int
    offset: int
    length: int
    reason: str
    snippet: str


@dataclass
class ReadStats:
    """Counters of one file read by :class:`DockerLogReader`.

    Attributes:
        bytes_read: Bytes read (decompressed for ``.gz``).
        entries: json-file entries (physical lines) that parsed.
        lines: Logical lines after partial entries were joined.
        partial_entries: Entries without a trailing newline (chunks of a longer line).
        malformed: Malformed physical lines.
        examples: The first malformed lines, with positions.
    """

    bytes_read: int = 0
    entries: int = 0
    lines: int = 0
    partial_entries: int = 0
    malformed: int = 0
    examples: list[Malformed] = field(default_factory=list)


def _open(path: Path) -> io.BufferedIOBase:
    if path.suffix == ".gz":
        return gzip.GzipFile(path, "rb")
    return open(path, "rb")


class DockerLogReader:
    """Read a Docker json-file log in bounded batches of logical lines.

    Iterate :meth:`batches` to get polars DataFrames with columns ``line`` (1-based number of the
    line's first entry), ``offset`` (its byte offset), ``time`` (RFC3339Nano string, of the first
    entry), ``stream``, ``log`` (the joined text, trailing newline kept), ``nbytes`` (bytes the
    line's entries take in the file) and ``entries`` (1, or the number of partial chunks joined).
    After iterating, :attr:`stats` holds the counters and the malformed-line examples.

    Args:
        path: A ``*-json.log`` file, a rotated ``.N`` or a compressed ``.N.gz`` sibling.
        batch_bytes: Raw bytes read per batch (memory stays a small multiple of it).
        max_examples: Malformed lines kept as examples (all are counted).
        limit: Stop after this many bytes (e.g. the size seen when the read started, so a file
            that is still being written gives a consistent snapshot); ``None`` reads to the end.
        decode: Give ``log`` as text; without it, ``log`` stays JSON-escaped as in the file
            (``\n``, ``\"``), which is what :func:`analyse_files` works on (faster).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        batch_bytes: int = DEFAULT_BATCH_BYTES,
        max_examples: int = 100,
        limit: int | None = None,
        decode: bool = True,
    ) -> None:
        if batch_bytes < 4096:
            raise BadParameter("batch_bytes", batch_bytes, "at least 4096 bytes")
        self.path = Path(path)
        self.batch_bytes = int(batch_bytes)
        self.max_examples = max_examples
        self.limit = limit
        self.decode = decode
        self.stats = ReadStats()
        self._line = 1

    # -- raw batches ---------------------------------------------------------------------------

    def _raw(self) -> Iterator[tuple[bytearray, int, int]]:
        """Yield (buffer, size, offset): ``buffer[:size]`` holds whole lines only (the last one
        may lack its newline at end of file). Each batch is read into a fresh buffer with
        ``readinto`` (only the partial last line is copied over to the next one). Oversized lines
        are skipped and reported. The consumer advances ``self._line`` by the number of lines of
        each batch before asking for the next one."""
        try:
            fh = _open(self.path)
        except OSError as exc:
            raise BadInputFormat(str(self.path), f"cannot open log file: {exc}") from exc
        offset = 0
        pending = b""
        remaining = self.limit
        with fh:
            while True:
                want = self.batch_bytes if remaining is None else min(self.batch_bytes, remaining)
                buf = bytearray(len(pending) + max(want, 0))
                buf[: len(pending)] = pending
                view = memoryview(buf)
                got = 0
                try:
                    while got < want:
                        k = fh.readinto(view[len(pending) + got:])
                        if not k:
                            break
                        got += k
                except (OSError, EOFError, gzip.BadGzipFile) as exc:
                    self._add_malformed(self._line, offset, len(pending),
                                        f"file unreadable from here: {exc}", pending[:200])
                    return
                finally:
                    view.release()
                if remaining is not None:
                    remaining -= got
                self.stats.bytes_read += got
                filled = len(pending) + got
                if not got:
                    if pending:
                        yield bytearray(pending), len(pending), offset
                    return
                cut = buf.rfind(b"\n", 0, filled)
                if cut < 0:
                    if filled > MAX_LINE_BYTES:
                        # Skip to the end of this giant line without holding it in memory.
                        skipped, head, tail = filled, bytes(buf[:200]), b""
                        while True:
                            more = fh.read(self.batch_bytes)
                            self.stats.bytes_read += len(more)
                            if not more:
                                break
                            nl = more.find(b"\n")
                            if nl >= 0:
                                skipped += nl
                                tail = more[nl + 1:]
                                break
                            skipped += len(more)
                        self._add_malformed(self._line, offset, skipped,
                                            f"line of {skipped} bytes without newline", head)
                        offset += skipped + 1
                        self._line += 1
                        pending = tail
                        continue
                    pending = bytes(buf[:filled])
                    continue
                pending = bytes(buf[cut + 1: filled])
                yield buf, cut + 1, offset
                offset += cut + 1

    # -- parsing -------------------------------------------------------------------------------

    def _add_malformed(self, line: int, offset: int, length: int, reason: str,
                       raw: bytes, snippet: str | None = None) -> None:
        self._record([Malformed(line, offset, length, reason,
                                _snippet(raw) if snippet is None else snippet)])

    def _record(self, found: Sequence[Malformed]) -> None:
        self.stats.malformed += len(found)
        room = self.max_examples - len(self.stats.examples)
        if room > 0:
            self.stats.examples.extend(found[:room])

    # -- logical lines -------------------------------------------------------------------------

    def batches(self, pool: Executor | None = None, depth: int = 2) -> Iterator[pl.DataFrame]:
        """Yield batches of logical lines (partial entries joined).

        A line is yielded once complete, so a line joined across a batch boundary may come after
        lines of the other stream that follow it in the file; within a batch, rows are sorted by
        line number.

        Args:
            pool: Parse batches in these threads (``depth`` ahead of the one being joined and
                yielded); without one, everything runs in the calling thread.
            depth: Batches parsed ahead (each holds one raw batch in memory).
        """
        carry = _empty_entries().with_columns(pl.lit(0, pl.Int64).alias("entries"))
        queue: deque[Future[tuple[pl.DataFrame, list[Malformed]]]] = deque()
        for data, size, offset in self._raw():
            n = data.count(b"\n", 0, size) + (0 if data[size - 1] == 10 else 1)
            line_no, self._line = self._line, self._line + n
            if pool is None:
                done: Future[tuple[pl.DataFrame, list[Malformed]]] = Future()
                done.set_result(_parse_batch(data, size, offset, line_no))
                queue.append(done)
            else:
                queue.append(pool.submit(_parse_batch, data, size, offset, line_no))
            while len(queue) > (depth if pool is not None else 0):
                lines, carry = self._consume(queue.popleft().result(), carry)
                if lines is not None:
                    yield lines
        while queue:
            lines, carry = self._consume(queue.popleft().result(), carry)
            if lines is not None:
                yield lines
        if carry.height:  # a line still incomplete at end of file
            joined = _collapse(carry)
            self.stats.lines += joined.height
            yield self._out(joined)

    def _consume(self, parsed: tuple[pl.DataFrame, list[Malformed]], carry: pl.DataFrame
                 ) -> tuple[pl.DataFrame | None, pl.DataFrame]:
        entries, malformed = parsed
        self._record(malformed)
        self.stats.entries += entries.height
        if not entries.height:
            return None, carry
        entries = entries.with_columns(pl.lit(1, pl.Int64).alias("entries"))
        partial = ~entries.select(_complete(pl.col("log"))).to_series()
        n_partial = int(partial.sum())
        self.stats.partial_entries += n_partial
        if n_partial == 0 and carry.height == 0:
            self.stats.lines += entries.height
            return self._out(entries), carry
        joined, carry = _join_partials(pl.concat([carry, entries]))
        self.stats.lines += joined.height
        return (self._out(joined) if joined.height else None), carry

    def _out(self, lines: pl.DataFrame) -> pl.DataFrame:
        return lines.with_columns(log=unescape(lines["log"])) if self.decode else lines


def _parse_batch(data: bytearray | bytes, size: int, offset: int, line_no: int
                 ) -> tuple[pl.DataFrame, list[Malformed]]:
    """Parse ``data[:size]`` into entries (line, offset, time, stream, log escaped, nbytes) and
    the malformed lines found. Pure: runs in worker threads."""
    buf = np.frombuffer(data, dtype=np.uint8, count=size)
    ends = np.flatnonzero(buf == 10)
    n = len(ends) + (0 if size and data[size - 1] == 10 else 1)
    starts = np.zeros(n, dtype=np.int64)
    starts[1:] = ends[: n - 1] + 1
    nbytes = np.diff(np.append(starts, size))
    text: bytearray | bytes = data
    text_size = size
    ascii_only = not bool((buf >= 128).any())
    starts_t = starts
    if not ascii_only:
        try:
            codecs.utf_8_decode(memoryview(data)[:size], None, True)
        except UnicodeDecodeError:
            # Replace invalid UTF-8 (line boundaries are unchanged); byte counts keep the
            # original sizes.
            text = bytes(data[:size]).decode("utf-8", "replace").encode("utf-8")
            text_size = len(text)
            tends = np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == 10)
            starts_t = np.zeros(n, dtype=np.int64)
            starts_t[1:] = tends[: n - 1] + 1
    # One arrow string array over the whole batch (offsets only, no per-line objects); each
    # string keeps its newline.
    offs = np.append(starts_t, text_size).astype(np.int64)
    arr = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offs), pa.py_buffer(text))
    raw = pl.col("raw")
    # find() gives byte offsets, slice() counts characters. The envelope after the log value is
    # ASCII, so fields are cut relative to the end of the line (bytes == characters there); the
    # log value's length in characters is only needed for non-ASCII batches.
    frame = pl.DataFrame({
        "raw": pl.Series("raw", pl.from_arrow(arr)),
        "line": np.arange(line_no, line_no + n, dtype=np.int64),
        "offset": starts + offset,
        "nbytes": nbytes.astype(np.int64),
    }).with_columns(
        lb=pl.col("nbytes") if text is data else raw.str.len_bytes().cast(pl.Int64),
    ).with_columns(
        tail=pl.col("lb") - raw.str.find(_STREAM_SEP, literal=True).cast(pl.Int64),
        ttail=pl.col("lb") - raw.str.find(_TIME_KEY, literal=True).cast(pl.Int64),
        nl=raw.str.ends_with("\n").cast(pl.Int64),
        chars=pl.col("lb") if ascii_only else raw.str.len_chars().cast(pl.Int64),
    ).with_columns(
        ok=raw.str.starts_with(_LOG_PREFIX)
        & (raw.str.ends_with('"}\n') | raw.str.ends_with('"}'))
        & pl.col("tail").is_not_null() & pl.col("ttail").is_not_null()
        & (pl.col("ttail") < pl.col("tail"))
        & (pl.lit(True) if ascii_only else
           raw.str.slice(-pl.col("tail"), len(_STREAM_SEP)) == _STREAM_SEP),
    )
    ok = frame["ok"].fill_null(False)
    good = frame if ok.all() else frame.filter(ok)
    parts = []
    malformed: list[Malformed] = []
    if good.height:
        tlen = pl.col("ttail") - len(_TIME_KEY)
        parts.append(good.select(
            "line", "offset",
            time=raw.str.slice(-tlen, tlen - 2 - pl.col("nl")),
            stream=raw.str.slice(len(_STREAM_SEP) - pl.col("tail"), 6),
            log=raw.str.slice(len(_LOG_PREFIX),
                              pl.col("chars") - pl.col("tail") - len(_LOG_PREFIX)),
            nbytes=pl.col("nbytes"),
        ))
    if good.height < frame.height:
        parts.append(_parse_careful(frame.filter(~ok), malformed))
    out = parts[0] if len(parts) == 1 else pl.concat(parts).sort("line")
    return out.cast({"time": pl.String, "stream": pl.String, "log": pl.String}), malformed


def _parse_careful(bad: pl.DataFrame, malformed: list[Malformed]) -> pl.DataFrame:
    """Lines that do not have the json-file shape: check each one (up to a limit)."""
    rescued: list[dict[str, Any]] = []
    for i, row in enumerate(bad.select("raw", "line", "offset", "nbytes").iter_rows()):
        raw, line, offset, nbytes = row
        raw = raw[:-1] if raw.endswith("\n") else raw
        exact = i < _PY_CHECK_LIMIT
        reason = _malformed_reason(raw, exact=exact)
        if raw.startswith("\x00"):
            # Report the hole, but keep the entry Docker wrote after it.
            rest = raw.lstrip("\x00")
            hole = len(raw) - len(rest)
            malformed.append(Malformed(line, offset, hole, reason or "",
                                       f"\\0×{hole} " + _snippet(rest[:200].encode("utf-8"))))
            raw, reason = rest, (_malformed_reason(rest, exact=exact) if rest else "")
            if reason is not None:
                continue
        if reason is None:
            obj = json.loads(raw)
            rescued.append({"line": line, "offset": offset,
                            "time": str(obj["time"]), "stream": str(obj.get("stream") or ""),
                            "log": json.dumps(str(obj["log"]), ensure_ascii=False)[1:-1],
                            "nbytes": nbytes})
            continue
        malformed.append(Malformed(line, offset, len(raw.encode("utf-8", "replace")), reason,
                                   _snippet(raw[:200].encode("utf-8", "replace"))))
    return pl.DataFrame(rescued, schema=_empty_entries().schema)


def _complete(log: pl.Expr) -> pl.Expr:
    """An escaped ``log`` value ends with a newline (``\n``, but not an escaped backslash + n)."""
    return log.str.ends_with(r"\n") & (~log.str.ends_with(r"\\n") | log.str.ends_with(r"\\\n"))


def unescape(escaped: pl.Series) -> pl.Series:
    """Decode JSON-escaped ``log`` values (as cut from json-file lines) into text.

    Args:
        escaped: Values without their surrounding quotes.

    Returns:
        The text (a value that is not valid JSON is decoded line by line, best effort).
    """
    quoted = pl.concat_str([pl.lit('"'), pl.col("v"), pl.lit('"')])
    frame = pl.DataFrame({"v": escaped})
    try:
        return frame.select(quoted.str.json_decode(pl.String)).to_series().alias(escaped.name)
    except pl.exceptions.ComputeError:
        return pl.Series(escaped.name, [_unescape_one(v) for v in escaped.to_list()],
                         dtype=pl.String)


def _unescape_one(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(json.loads('"' + value + '"'))
    except ValueError:
        for a, b in zip(*_UNESCAPE, strict=True):
            value = value.replace(a, b)
        return value.replace(r"\n", "\n")


def _empty_entries() -> pl.DataFrame:
    return pl.DataFrame(schema={"line": pl.Int64, "offset": pl.Int64, "time": pl.String,
                                "stream": pl.String, "log": pl.String, "nbytes": pl.Int64})


def _collapse(df: pl.DataFrame, keys: Sequence[str] = ("stream", "grp")) -> pl.DataFrame:
    if "grp" not in df.columns:
        df = df.with_columns(pl.lit(0, pl.Int64).alias("grp"))
    return (df.group_by(list(keys), maintain_order=True)
            .agg(pl.col("line").first(), pl.col("offset").first(), pl.col("time").first(),
                 pl.col("log").str.join(""), pl.col("nbytes").sum(), pl.col("entries").sum())
            .select("line", "offset", "time", "stream", "log", "nbytes", "entries")
            .sort("line"))


def _join_partials(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Join partial entries with the following entries of the same stream.

    Returns the complete logical lines and the trailing incomplete entries (per stream) to carry
    into the next batch.
    """
    df = df.with_columns(final=_complete(pl.col("log")))
    # Group id within a stream = number of complete lines before this entry in that stream.
    df = df.with_columns(
        grp=(pl.col("final").cast(pl.Int64).cum_sum() - pl.col("final").cast(pl.Int64))
        .over("stream"),
        last_grp=pl.col("final").cast(pl.Int64).sum().over("stream"),
    )
    open_tail = pl.col("grp") == pl.col("last_grp")  # entries after the stream's last newline
    carry = df.filter(open_tail).drop("final", "grp", "last_grp")
    done = df.filter(~open_tail)
    multi = pl.len().over("stream", "grp") > 1
    singles = done.filter(~multi).drop("final", "grp", "last_grp")
    grouped = done.filter(multi)
    if grouped.height:
        out = pl.concat([singles, _collapse(grouped.drop("final", "last_grp"))]).sort("line")
    else:
        out = singles
    return out, carry


# -- classification -------------------------------------------------------------------------------

def _text_level(col: pl.Expr) -> pl.Expr:
    return (pl.when(col.str.contains(_TEXT_ERROR_RE)).then(pl.lit("error"))
            .when(col.str.contains(_TEXT_WARN_RE)).then(pl.lit("warning"))
            .otherwise(pl.lit("info")))


def _first_of(patterns: Sequence[str]) -> pl.Expr:
    exprs = [pl.col("log").str.extract(p, 1) for p in patterns]
    return exprs[0] if len(exprs) == 1 else pl.coalesce(exprs)


def _split(df: pl.DataFrame, mask: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows where mask, rows where not), without copying when one side is empty."""
    hits = int(mask.sum())
    if hits == df.height:
        return df, df.clear()
    if hits == 0:
        return df.clear(), df
    return df.filter(mask), df.filter(~mask)


def classify(lines: pl.DataFrame, *, escaped: bool = False) -> pl.DataFrame:
    """Add ``level``, ``status_class`` and ``message`` to logical lines.

    * JSON lines (application logs, nginx JSON access logs): the ``level``/``severity`` field,
      normalised to error / warning / info / debug / other; without one, the HTTP ``status``
      (5xx error, 4xx warning, else info); the message is ``msg``/``message``, else
      ``METHOD uri`` (the status class is a column of its own).
    * Plain-text lines (and JSON without level or status): ERROR / FATAL / PANIC / exception
      keywords mean error, WARN / WARNING warning, anything else info.

    Args:
        lines: Frame with at least a ``log`` column (as from :meth:`DockerLogReader.batches`).
        escaped: ``log`` is JSON-escaped as in the json-file (``DockerLogReader(decode=False)``).

    Returns:
        The frame with the three columns added (row order not preserved).
    """
    pat = _PATTERNS[escaped]
    log = pl.col("log")
    body = log.str.strip_suffix(pat["newline"])
    js, tx = _split(lines, lines["log"].str.starts_with("{"))
    parts: list[pl.DataFrame] = []
    if js.height:
        alt = 2 if any(js["log"].str.contains(k, literal=True).any()
                       for k in pat["alt_keys"]) else 1
        js = js.with_columns(lv=_first_of(pat["level"][:alt]).str.to_lowercase(),
                             status=_first_of(pat["status"]),
                             message=_first_of(pat["msg"][:alt]))
        with_msg, no_msg = _split(js, js["message"].is_not_null())
        if no_msg.height:
            no_msg = no_msg.with_columns(message=pl.concat_str(
                [_first_of(pat["method"]), _first_of(pat["uri"][:alt])], separator=" ",
                ignore_nulls=True))
            blank, named = _split(no_msg, no_msg["message"] == "")
            no_msg = (pl.concat([named, blank.with_columns(message=body)]) if blank.height
                      else named)
            js = pl.concat([with_msg, no_msg]) if with_msg.height else no_msg
        known, unknown = _split(js, js["lv"].is_not_null() | js["status"].is_not_null())
        if known.height:
            st = pl.col("status")
            parts.append(known.with_columns(
                level=pl.when(pl.col("lv").is_not_null())
                .then(pl.col("lv").replace_strict(_LEVEL_MAP, default="other",
                                                  return_dtype=pl.String))
                .when(st >= "500").then(pl.lit("error"))
                .when(st >= "400").then(pl.lit("warning"))
                .otherwise(pl.lit("info"))))
        if unknown.height:
            parts.append(unknown.with_columns(level=_text_level(log)))
    if tx.height:
        parts.append(tx.with_columns(
            lv=pl.lit(None, pl.String), status=pl.lit(None, pl.String),
            message=body.str.strip_suffix(r"\r" if escaped else "\r"),
            level=_text_level(log)))
    if not parts:
        return lines.with_columns(level=pl.lit(None, pl.String),
                                  status_class=pl.lit(None, pl.String),
                                  message=pl.lit(None, pl.String))
    cols = [*lines.columns, "level", "status_class", "message"]
    out = [p.with_columns(status_class=pl.col("status").str.slice(0, 1) + pl.lit("xx"),
                          message=pl.col("message").str.slice(0, _MESSAGE_CHARS)).select(cols)
           for p in parts]
    return out[0] if len(out) == 1 else pl.concat(out)


def _zero_digits(messages: pl.Series) -> pl.Series:
    """Replace every ASCII digit with ``0`` (length-preserving), vectorised with numpy."""
    arr = messages.to_arrow(compat_level=pl.CompatLevel.oldest())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.large_string())
    validity, offsets, data = arr.buffers()
    if data is None or len(arr) == 0:
        return messages
    buf = np.frombuffer(data, dtype=np.uint8).copy()
    buf[(buf >= 48) & (buf <= 57)] = 48
    zeroed = pa.LargeStringArray.from_buffers(len(arr), offsets, pa.py_buffer(buf), validity,
                                              arr.null_count, arr.offset)
    return pl.Series(messages.name, pl.from_arrow(zeroed))


def mask_messages(messages: pl.Expr | pl.Series) -> Any:
    """Mask the variable parts of messages (see :data:`MASKS`) so repeats group together.

    Args:
        messages: A polars string expression or Series.

    Returns:
        The same kind of object with timestamps, UUIDs, IPs, hex ids, query values and numbers
        replaced by ``<ts>``, ``<uuid>``, ``<ip>``, ``<hex>``, ``<v>``, ``<n>``.
    """
    out = messages
    for pattern, repl in MASKS:
        out = out.str.replace_all(pattern, repl)
    return out


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


@dataclass
class _BatchAgg:
    lines: int
    cube: pl.DataFrame  # minute, level, status_class -> lines, bytes
    messages: pl.DataFrame  # level, status_class, masked -> count, bytes, example


_CUBE_KEYS = ["minute", "level", "status_class"]
_MSG_KEYS = ["level", "status_class", "masked"]


def _aggregate(lines: pl.DataFrame) -> _BatchAgg:
    """Reduce one batch of logical lines to small aggregates."""
    c = classify(lines.select("time", "log", "nbytes"), escaped=True)
    cube = (c.group_by(pl.col("time").str.slice(0, 16).alias("minute"), "level", "status_class")
            .agg(lines=pl.len(), bytes=pl.col("nbytes").sum())
            .with_columns(pl.col("minute").str.to_datetime(
                "%Y-%m-%dT%H:%M", strict=False, time_zone="UTC", time_unit="us")))
    # Messages that differ only in their digits are grouped first (digits are zeroed with one
    # numpy pass; shapes such as timestamps and IPs survive), then escapes are undone and the
    # regex masks run on the few distinct keys only.
    raw = (c.with_columns(key=_zero_digits(c["message"]))
           .group_by("level", "status_class", "key")
           .agg(count=pl.len(), bytes=pl.col("nbytes").sum(), example=pl.col("message").first()))
    # Undo the envelope's escapes, and those of JSON messages inside it (\\\" -> \" -> ").
    plain = {c: pl.col(c).str.replace_many(*_UNESCAPE).str.replace_many(*_UNESCAPE)
             for c in ("key", "example")}
    messages = (raw.with_columns(masked=mask_messages(plain["key"]), example=plain["example"])
                .group_by(_MSG_KEYS)
                .agg(pl.col("count").sum(), pl.col("bytes").sum(), pl.col("example").first()))
    return _BatchAgg(lines.height, _detach(cube), _detach(messages))


def _detach(df: pl.DataFrame) -> pl.DataFrame:
    """Copy a small frame's strings into buffers of their own.

    polars strings are views into the buffers of the column they were cut from, so a handful
    of kept example strings would otherwise pin every batch's whole log buffer in memory.
    """
    return pl.DataFrame(pl.from_arrow(df.to_arrow(compat_level=pl.CompatLevel.oldest())))


class _Accumulator:
    """Merges per-batch aggregates of one service into bounded frames."""

    def __init__(self, top_cap: int) -> None:
        self.top_cap = top_cap
        self.cube: list[pl.DataFrame] = []
        self.messages: list[pl.DataFrame] = []
        self.approximate = False
        self.in_window = 0

    def merge(self, agg: _BatchAgg) -> None:
        self.in_window += agg.lines
        self.cube.append(agg.cube)
        self.messages.append(agg.messages)
        if len(self.cube) >= 32:
            self.compact()

    def compact(self) -> None:
        if not self.cube:
            return
        self.cube = [pl.concat(self.cube).group_by(_CUBE_KEYS).agg(
            pl.col("lines").sum(), pl.col("bytes").sum())]
        merged = pl.concat(self.messages).group_by(_MSG_KEYS).agg(
            pl.col("count").sum(), pl.col("bytes").sum(), pl.col("example").first())
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


def _snippet(raw: bytes, limit: int = 160) -> str:
    nuls = len(raw) - len(raw.lstrip(b"\x00"))
    text = raw.lstrip(b"\x00")[:limit].decode("utf-8", "replace")
    prefix = f"\\0×{nuls} " if nuls else ""
    return redact_text(prefix + text.replace("\x00", "\\0"))


def _malformed_reason(raw: str, *, exact: bool) -> str | None:
    """Why a line that failed the fast validator is malformed (None: it is fine after all)."""
    if raw == "" or raw.isspace():
        return "empty line"
    if raw.startswith("\x00"):
        return ("NUL-filled hole (left by truncating a log the daemon writes without O_APPEND; "
                "docker logs fails on it)")
    if not exact:
        return "not a json-file entry"
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        return f"not JSON ({exc.msg} at column {exc.colno})"
    if not isinstance(obj, dict):
        return f"JSON {type(obj).__name__}, not an object"
    if not isinstance(obj.get("log"), str) or not isinstance(obj.get("time"), str):
        return "JSON object without string 'log' and 'time' fields"
    return None


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
    workers: int = 2,
) -> LogAnalysis:
    """Analyse json-file logs, streaming each file in bounded batches.

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
            they run in parallel); 0 runs everything in the calling thread. Each thread holds
            about one batch, so memory grows with it.

    Returns:
        A :class:`LogAnalysis`.
    """
    cutoff = _since_str(since)
    file_rows: list[dict[str, Any]] = []
    mal_rows: list[dict[str, Any]] = []
    accs: dict[str, _Accumulator] = {}
    if workers < 0:
        raise BadParameter("workers", workers, "0 (no extra thread) or a positive count")
    inflight: deque[tuple[_Accumulator, Future[_BatchAgg]]] = deque()
    with ThreadPoolExecutor(max_workers=max(1, workers),
                            thread_name_prefix="logparse") as pool:

        def submit(acc_: _Accumulator, batch_: pl.DataFrame) -> None:
            if workers == 0:
                acc_.merge(_aggregate(batch_))
                return
            inflight.append((acc_, pool.submit(_aggregate, batch_)))
            drain(workers)

        def drain(keep: int) -> None:
            while len(inflight) > keep:
                acc_, fut = inflight.popleft()
                acc_.merge(fut.result())

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
            in_window = 0
            for batch in reader.batches(pool if workers else None, depth=max(1, workers)):
                if cutoff is not None:
                    batch = batch.filter(pl.col("time").str.slice(0, 19) >= cutoff)
                if batch.height:
                    in_window += batch.height
                    submit(acc, batch)
            s = reader.stats
            row.update(bytes_read=s.bytes_read, entries=s.entries, lines=s.lines,
                       partial_entries=s.partial_entries, malformed=s.malformed,
                       in_window=in_window)
            mal_rows += [{"service": service, "path": str(path), "line": m.line,
                          "offset": m.offset, "length": m.length, "reason": m.reason,
                          "snippet": m.snippet} for m in s.examples]
        drain(0)
    return _finish(accs, file_rows, mal_rows, top_n)


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
