"""Streaming, vectorised analysis of Docker json-file logs.

Docker's json-file driver writes one JSON object per line::

    {"log":"GET /products 200\\n","stream":"stdout","time":"2024-05-01T12:00:00.123456789Z"}

A ``log`` value without a trailing newline is a *partial* entry: Docker splits lines longer than
16 KB into several entries, and the following entries of the same stream carry the rest of the
line. This module reads such files (plain or gzip-compressed rotated files) in bounded batches of
raw bytes. Line boundaries and the envelope's fields are found on each batch's bytes, and the
``time``, ``stream`` and ``log`` columns are arrow string *views* into that buffer (no copy, no
per-line Python objects; the log text stays JSON-escaped as dockerd wrote it, with ``<``, ``>``
and ``&`` as ``\\u003c``, ``\\u003e``, ``\\u0026``); only lines without the json-file shape are
checked one by one.

:func:`analyse_files` reduces each batch in a worker thread while the next ones are read: the
per-line work is finding the JSON fields (level, status, message) and decoding the message as a
JSON decoder does (the envelope's escapes, then those of an inner JSON string; only values that
hold a backslash need it); lines are then grouped by minute, level, status and message with its
digits zeroed (never inside an escape: it is decoded by then), and everything else (plain-text
keywords, masking numbers, hex ids, UUIDs, IPs and timestamps) runs on the distinct groups of
many batches. Partial entries are joined in file order. Nothing per line is kept across
batches, so memory stays bounded by the batch size whatever the file size.

The per-line work has two implementations with the same results: a small C scanner
(``_logscan.c``, compiled on first use and loaded with ctypes, see :mod:`opslib.logs._native`), and
numpy plus polars regexes where no C compiler is available (1.3 to 1.8 times slower). Both
release the GIL, so batches are processed in parallel.

Malformed lines (not JSON, not a json-file entry, NUL-filled holes left by an unsafe truncate,
empty lines) are counted and reported with their line number and byte offset; they never stop the
analysis. Everything shown (messages, examples, malformed snippets) goes through
:func:`opslib.redact.redact_text` first.
"""

from __future__ import annotations

import codecs
import dataclasses
import datetime as dt
import functools
import gzip
import io
import json
import os
import re
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa

from opslib.exceptions import BadInputFormat, BadParameter
from opslib.logs import _native
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


def _field_patterns(escaped: bool) -> dict[str, str]:
    """Regexes for fields of JSON application / access logs (the first of the keys of an
    alternation that occurs in the line wins).

    ``escaped`` patterns work on the text as it sits in the json-file envelope (quotes of the
    inner JSON appear as ``\"``).
    """
    if escaped:
        q = r'\\"'
        # The inner string up to its closing \" (a lone quote of the log text), token by token:
        # a character, an escape of the envelope other than \" and \\ (\n, \u003c, ...), or an
        # escaped backslash with the escaped character after it (\\\" is an inner quote).
        val = r'((?:[^\\]|\\[^"\\]|\\\\(?:[^\\]|\\.))*)'
    else:
        q = '"'
        val = r'((?:[^"\\]|\\.)*)"'

    def key(names: str) -> str:
        return f"(?:{names}){q} ?: ?{q}"

    return {
        "level": key("level|severity") + r'([A-Za-z]+)',
        # (?-u:\b): an ASCII word boundary, which keeps the regex on its fast path.
        "status": r'status' + q + r' ?: ?(?:' + q + r')?([1-5][0-9][0-9])(?-u:\b)',
        "msg": key("msg|message") + val,
        # "method" also matches "request_method", "uri" also "request_uri".
        "method": key("method") + r'([A-Z]+)',
        "uri": key("uri|path") + val,
    }


_PATTERNS = {True: _field_patterns(True), False: _field_patterns(False)}
# Plain-text lines: keywords.
_TEXT_ERROR_RE = (r"(?i)\b(?:error|err|fatal|panic|critical|crit|emerg|alert|exception|"
                  r"traceback|failed)\b")
_TEXT_WARN_RE = r"(?i)\bwarn(?:ing)?\b"
# JSON string escapes, for :func:`_unescape_text`: a surrogate pair, any other \uXXXX, the rest.
_ESCAPE_RE = re.compile(r'\\(?:u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})'
                        r'|u([0-9a-fA-F]{4})|(["\\/bfnrt]))')
_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r",
                   "t": "\t"}
# Values with an escaped surrogate: polars' JSON decoder turns a lone one into a NUL.
_SURROGATE_RE = r"\\u[dD][89a-fA-F]"

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


class _Skipped(NamedTuple):
    """Bytes of a file that :meth:`DockerLogReader._raw` skipped (reported as malformed)."""

    offset: int
    length: int
    reason: str
    head: bytes
    lines: int  # physical lines they take (0 for an unreadable rest of the file)


class _Parsed(NamedTuple):
    """One parsed batch: its entries (``line`` numbered from 0 within the batch), malformed
    lines (numbered the same way), its number of physical lines and of partial entries."""

    entries: pl.DataFrame
    malformed: list[Malformed]
    lines: int
    partial: int
    #: 0 for stdout, 1 for stderr per entry, when every entry has the usual shape (else None).
    streams: np.ndarray | None = None
    #: The entries' classification fields, by the native scanner (see :func:`_scan_fields`).
    fields: pl.DataFrame | None = None


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

    def _raw(self) -> Iterator[tuple[_Bytes, int, int] | _Skipped]:
        """Yield (buffer, size, offset): ``buffer[:size]`` holds whole lines only (the last one
        may lack its newline at end of file), followed by at least ``_SLACK`` bytes. Each batch
        is read into a fresh uninitialised numpy buffer with ``readinto``, which releases the
        GIL (only the partial last line is copied over to the next one). Oversized lines
        and an unreadable rest of the file are yielded as :class:`_Skipped`, in file order (the
        consumer numbers lines)."""
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
                buf = np.empty(len(pending) + max(want, 0) + _SLACK, dtype=np.uint8)
                buf[: len(pending)] = np.frombuffer(pending, dtype=np.uint8)
                view = buf.data[: len(pending) + max(want, 0)]
                got = 0
                try:
                    while got < want:
                        k = fh.readinto(view[len(pending) + got:])
                        if not k:
                            break
                        got += k
                except (OSError, EOFError, gzip.BadGzipFile) as exc:
                    yield _Skipped(offset, len(pending), f"file unreadable from here: {exc}",
                                   pending[:200], 0)
                    return
                finally:
                    view.release()
                if remaining is not None:
                    remaining -= got
                self.stats.bytes_read += got
                filled = len(pending) + got
                if not got:
                    if pending:
                        yield pending + bytes(_SLACK), len(pending), offset
                    return
                cut = _last_newline(buf, filled)
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
                        yield _Skipped(offset, skipped,
                                       f"line of {skipped} bytes without newline", head, 1)
                        offset += skipped + 1
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

    def batches(self) -> Iterator[pl.DataFrame]:
        """Yield batches of logical lines (partial entries joined).

        A line is yielded once complete, so a line joined across a batch boundary may come after
        lines of the other stream that follow it in the file; within a batch, rows are sorted by
        line number. (:func:`analyse_files` reads in parallel; this reads in the calling
        thread.)
        """
        carry = _empty_entries()
        for item in self._raw():
            lines, carry = self._consume(
                item if isinstance(item, _Skipped) else _parse_batch(*item), carry)
            if lines is not None:
                yield lines
        if carry.height:  # a line still incomplete at end of file
            joined = _collapse(carry)
            self.stats.lines += joined.height
            yield self._out(joined)

    def _take(self, item: _Parsed | _Chunk | _Skipped) -> int | None:
        """Account for the next batch of this file, in file order: number its lines, record
        its malformed lines and partial entries. Returns the number of its first line (None
        for skipped bytes)."""
        base = self._line
        self._line += item.lines
        if isinstance(item, _Skipped):
            self._add_malformed(base, item.offset, item.length, item.reason, item.head)
            return None
        self._record([dataclasses.replace(m, line=m.line + base) for m in item.malformed])
        self.stats.partial_entries += item.partial
        return base

    def _consume(self, parsed: _Parsed | _Skipped, carry: pl.DataFrame
                 ) -> tuple[pl.DataFrame | None, pl.DataFrame]:
        """Number the lines of a parsed batch (in file order) and join partial entries."""
        base = self._take(parsed)
        if base is None or isinstance(parsed, _Skipped):
            return None, carry
        entries = parsed.entries
        self.stats.entries += entries.height
        if not entries.height:
            return None, carry
        if parsed.partial == 0 and carry.height == 0:
            self.stats.lines += entries.height
            return self._out(entries.with_columns(pl.col("line") + base)), carry
        entries = entries.with_columns(pl.col("line") + base)
        joined, carry = _join_partials(pl.concat([carry, entries]))
        self.stats.lines += joined.height
        return (self._out(joined) if joined.height else None), carry

    def _out(self, lines: pl.DataFrame) -> pl.DataFrame:
        return lines.with_columns(log=unescape(lines["log"])) if self.decode else lines


def _parse_batch(data: _Bytes, size: int, offset: int, *, fields: bool = False) -> _Parsed:
    """Parse ``data[:size]`` (whole lines) into entries (line, offset, time, stream, log still
    JSON-escaped, nbytes) and the malformed lines found. Pure: runs in worker threads.

    Line boundaries and the envelope's fields are found on the raw bytes by the native scanner
    (:mod:`opslib.logs._native`), else with numpy; the ``time``, ``stream`` and ``log`` columns are
    arrow string *views* into the batch's buffer (no copy of the text, no per-line objects).
    Lines without the usual shape (``attrs``, odd field order) are cut with polars string
    searches, and only the rest is checked one by one.

    With ``fields``, when the native scanner is available and every line has the usual shape,
    ``_Parsed.fields`` holds the classification fields of each entry (see
    :func:`_scan_fields`).
    """
    if len(data) < size + _SLACK:
        data = bytes(data[:size]) + bytes(_SLACK)
    b = tb = _Buf(data)
    tsize = size
    if not _is_ascii(b.u1[:size]):
        try:
            codecs.utf_8_decode(b.u1[:size].data, None, True)
        except UnicodeDecodeError:
            # Replace invalid UTF-8 (line boundaries are unchanged); byte counts keep the
            # original sizes.
            text = bytes(data[:size]).decode("utf-8", "replace").encode("utf-8")
            tsize = len(text)
            tb = _Buf(text + bytes(_SLACK))
    scanner = _native.scanner()
    cut = scanner.cut(b.u1, size) if scanner is not None and tb is b else None
    if cut is not None:
        starts = tstarts = cut.starts
        n = len(starts)
        log_s, log_e, time_s = cut.log_s, cut.log_e, cut.time_s
    else:
        ends = np.flatnonzero(b.u1[:size] == 10)
        n = len(ends) + (0 if size and data[size - 1] == 10 else 1)
        starts = tstarts = np.zeros(n, dtype=np.int64)
        starts[1:] = ends[: n - 1] + 1
        if tb is not b:
            tstarts = np.zeros(n, dtype=np.int64)
            tstarts[1:] = np.flatnonzero(tb.u1[:tsize] == 10)[: n - 1] + 1
    nbytes = np.diff(starts, append=size)
    rest = tends = np.empty(0, dtype=np.int64)
    if cut is None or cut.rest:
        tends = np.append(tstarts[1:], tsize)
        if tsize:
            tends -= tb.u1[np.maximum(tends - 1, 0)] == 10  # content end, newline excluded
    if cut is None:
        log_s, log_e, time_s, rest = _cut_envelopes(tb, tstarts, tends)
    elif cut.rest:
        rest = np.flatnonzero(log_s < 0)
    usual = not rest.size
    if rest.size:
        more = _cut_envelopes_search(tb, tstarts[rest], tends[rest])
        found = rest[more[0]]
        if found.size:
            log_s[found], log_e[found], time_s[found] = more[1:]
        rest = rest[~more[0]]
    idx: Any = slice(None) if not rest.size else np.flatnonzero(log_s >= 0)
    lines = np.arange(n, dtype=np.int64)
    ls, le, ts = log_s[idx], log_e[idx], time_s[idx]
    if cut is not None and usual:
        columns = [tb.column(cut.views[k]) for k in range(3)]
        partial = n - int(np.count_nonzero(cut.complete))
        streams: np.ndarray | None = cut.stream.astype(np.int64)
    else:
        columns = [tb.views(ts, tends[idx] - 2 - ts),
                   tb.views(le + len(_STREAM_SEP), np.full(len(ls), 6)),
                   tb.views(ls, le - ls)]
        partial = len(ls) - int(np.count_nonzero(_ends_with_newline(tb, le)))
        # The usual shape was checked to hold "stdout" or "stderr": "e" at the fourth byte.
        streams = (tb.u1[le + len(_STREAM_SEP) + 3] == 101).astype(np.int64) if usual else None
    out = pl.DataFrame({
        "line": lines[idx],
        "offset": starts[idx] + offset,
        "time": columns[0], "stream": columns[1], "log": columns[2],
        "nbytes": nbytes[idx],
        "entries": np.ones(len(ls), dtype=np.int64),
    })
    malformed: list[Malformed] = []
    if rest.size:
        bad = pl.DataFrame({
            "raw": tb.views(tstarts[rest], tends[rest] - tstarts[rest]),
            "line": lines[rest], "offset": starts[rest] + offset, "nbytes": nbytes[rest],
        })
        rescued = _parse_careful(bad, malformed)
        if rescued.height:
            partial += int((~rescued.select(_complete(pl.col("log"))).to_series()).sum())
            out = pl.concat([out, rescued]).sort("line")
    found_fields = (_scan_fields(scanner, tb, ls, le)
                    if fields and usual and scanner is not None else None)
    return _Parsed(out, malformed, n, partial, streams, found_fields)


#: Columns of :func:`_scan_fields`.
_FIELD_COLUMNS = ["_lv", "_status", "message", "key", "_kw"]


def _scan_fields(scanner: _native.Scanner, b: _Buf, log_s: np.ndarray, log_e: np.ndarray
                 ) -> pl.DataFrame:
    """What :func:`_aggregate` needs of each line, found by the native scanner in one pass:
    the raw ``_lv`` and ``_status`` fields, the ``message`` (decoded, cut short), its
    grouping ``key`` (digits zeroed) and ``_kw``, whether the line's level must come from
    keywords of the whole line (JSON without level or status, or plain text longer than a
    message). The same values as the regexes and decoding of :func:`_json_fields` and
    :func:`_text_fields` followed by :func:`_short_col` and :func:`_zero_digits`."""
    found = scanner.scan(b.u1, log_s, log_e, _MESSAGE_CHARS)
    return pl.DataFrame([
        b.column(found.views[0], found.valid[0]).alias("_lv"),
        b.column(found.views[1], found.valid[1]).alias("_status"),
        pl.Series("message", pl.from_arrow(found.message)),
        pl.Series("key", pl.from_arrow(found.key)),
        pl.Series("_kw", found.keywords)])


#: A raw batch: bytes, or the numpy buffer that :meth:`DockerLogReader._raw` reads into.
_Bytes = bytearray | bytes | np.ndarray

#: Readable bytes after the end of a batch (so that 16 bytes can be read at any position).
_SLACK = 16


class _Buf:
    """The bytes of a batch (followed by at least ``_SLACK`` readable bytes), with numpy views
    that read a little-endian 4- or 8-byte word at any byte position."""

    def __init__(self, data: _Bytes) -> None:
        self.u1 = np.frombuffer(data, dtype=np.uint8)
        n = len(self.u1)
        self.u4 = np.ndarray((max(n - 3, 0),), dtype="<u4", buffer=self.u1, strides=(1,))
        self.u8 = np.ndarray((max(n - 7, 0),), dtype="<u8", buffer=self.u1, strides=(1,))
        self.arrow = pa.py_buffer(data)

    def views(self, starts: np.ndarray, lengths: np.ndarray) -> pl.Series:
        """A polars String column of ``lengths[i]`` bytes at ``starts[i]`` (valid UTF-8), as
        arrow string views into this buffer: no copy of the text.

        An arrow view is 16 bytes: the length, then either the string itself (up to 12 bytes,
        zero-padded) or its first 4 bytes, the buffer index (0) and the offset in the buffer.
        """
        n = len(starts)
        views = np.empty((n, 4), dtype=np.uint32)
        views[:, 0] = lengths
        views[:, 1] = self.u4[starts]
        views[:, 2] = 0
        views[:, 3] = starts
        short = np.flatnonzero(lengths <= 12)
        if short.size:
            # Short strings are stored inline: their bytes, then zeros.
            at = starts[short]
            ln = lengths[short].astype(np.uint64)
            keep8 = np.where(ln >= 8, np.uint64(0xFFFFFFFFFFFFFFFF),
                             (np.uint64(1) << (np.minimum(ln, 7) * np.uint64(8))) - np.uint64(1))
            head = self.u8[at] & keep8
            views[short, 1] = head & 0xFFFFFFFF
            views[short, 2] = head >> np.uint64(32)
            if (ln > 8).any():
                keep4 = (np.uint64(1) << (np.clip(ln, 8, 12) - np.uint64(8)) * np.uint64(8)) \
                    - np.uint64(1)
                views[short, 3] = self.u4[at + 8] & keep4
            else:
                views[short, 3] = 0
        return self.column(views)

    def column(self, views: np.ndarray, valid: np.ndarray | None = None) -> pl.Series:
        """A polars String column of arrow string views into this buffer (one 16-byte view per
        row, as :meth:`views` or the native scanner make them); null where not ``valid``."""
        validity = None
        if valid is not None and not valid.all():
            validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
        arr = pa.Array.from_buffers(pa.string_view(), len(views),
                                    [validity, pa.py_buffer(views), self.arrow])
        return pl.Series(pl.from_arrow(arr))


#: What :func:`_aggregate` needs of a line.
_LINE_COLUMNS = ["time", "log", "nbytes"]


def _ends_with_newline(b: _Buf, log_e: np.ndarray) -> np.ndarray:
    """Whether each escaped log value ending at ``log_e`` ends with ``\\n`` (see
    :func:`_complete`). The 4 bytes before ``log_e`` are always inside the line (the value
    follows the 8-byte ``{"log":"``)."""
    w = b.u4[log_e - 4]
    bs1 = (w >> 8) & 0xFF == 92
    return np.asarray((w >> 16 == 0x6E5C)  # ends with backslash, "n"
                      & (~bs1 | ((w & 0xFF == 92) & bs1)), dtype=bool)


def _is_ascii(u1: np.ndarray) -> bool:
    """Whether bytes hold ASCII only (numpy reductions over 8-byte words release the GIL, which
    ``bytes.isascii`` holds)."""
    n8 = len(u1) // 8
    high = int(np.bitwise_or.reduce(u1[: n8 * 8].view("<u8"))) if n8 else 0
    return not (high & 0x8080808080808080 or bool((u1[n8 * 8:] >= 128).any()))


def _last_newline(buf: np.ndarray, end: int) -> int:
    """Index of the last newline in ``buf[:end]`` (-1 if none), searched backwards in growing
    slices (a batch's last line is usually short)."""
    hi, step = end, 1 << 16
    while hi > 0:
        lo = max(0, hi - step)
        k = buf[lo:hi].tobytes().rfind(b"\n")
        if k >= 0:
            return lo + k
        hi, step = lo, step * 4
    return -1


def _word(text: bytes) -> int:
    return int.from_bytes(text, "little")


_W_PREFIX = _word(_LOG_PREFIX.encode())
# The end of a usual entry: ","stream":"stdout","time":"<time>"} (28 bytes before the time).
_TAILS = [(_STREAM_SEP + s + '",' + _TIME_KEY).encode() for s in ("stdout", "stderr")]
_TAIL_LEN = len(_TAILS[0])
_TAIL_AT = (0, 8, 16, _TAIL_LEN - 8)
_TAIL_WORDS = [[_word(t[k:k + 8]) for k in _TAIL_AT] for t in _TAILS]
# Times that Docker writes (RFC3339Nano, trailing zeros of the fraction trimmed), most common
# lengths first.
_TIME_LENGTHS = [30, 29, 28, 27, 26, 25, 24, 23, 22, 20, 21, *range(31, 41)]


def _cut_envelopes(b: _Buf, starts: np.ndarray, ends: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut the usual entry shape ``{"log":"…","stream":"std…","time":"…"}`` with numpy.

    Returns start and end of the log value and start of the time (-1 for lines without that
    shape), and the indices of those lines.
    """
    n = len(starts)
    log_s = np.full(n, -1, dtype=np.int64)
    log_e, time_s = log_s.copy(), log_s.copy()
    minimum = len(_LOG_PREFIX) + _TAIL_LEN + 2 + 20
    cand = np.flatnonzero(ends - starts >= minimum)
    s, e = starts[cand], ends[cand]
    shaped = (b.u8[s] == _W_PREFIX) & (b.u4[e - 4] >> 16 == _word(b'"}'))
    if not shaped.all():
        cand, s, e = cand[shaped], s[shaped], e[shaped]
    todo: Any = slice(None)
    for length in _TIME_LENGTHS:
        q = e[todo] - 3 - length  # the quote before the time
        hit = b.u1[q] == 34
        hq = q[hit]
        tail = hq - (_TAIL_LEN - 1)
        w = [b.u8[tail + k] for k in _TAIL_AT]
        ok = (((w[0] == _TAIL_WORDS[0][0]) & (w[1] == _TAIL_WORDS[0][1])
               & (w[2] == _TAIL_WORDS[0][2]) & (w[3] == _TAIL_WORDS[0][3]))
              | ((w[0] == _TAIL_WORDS[1][0]) & (w[1] == _TAIL_WORDS[1][1])
                 & (w[2] == _TAIL_WORDS[1][2]) & (w[3] == _TAIL_WORDS[1][3])))
        pos = np.arange(len(cand))[todo][hit]
        ok &= tail >= s[pos] + len(_LOG_PREFIX)
        rows = cand[pos[ok]]
        log_s[rows] = starts[rows] + len(_LOG_PREFIX)
        log_e[rows] = tail[ok]
        time_s[rows] = hq[ok] + 1
        left = np.ones(len(q), dtype=bool)
        left[np.flatnonzero(hit)[ok]] = False
        todo = np.arange(len(cand))[todo][left]
        if not todo.size:
            break
    return log_s, log_e, time_s, np.flatnonzero(log_s < 0)


def _cut_envelopes_search(b: _Buf, starts: np.ndarray, ends: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut other json-file shapes (``attrs``, other field order) by searching the envelope's
    literals: Docker escapes every quote inside the log text, so they can only match the
    envelope itself. Returns (found mask, log start, log end, time start)."""
    raw = pl.col("raw")
    f = pl.DataFrame({"raw": b.views(starts, ends - starts)}).select(
        sep=_byte_find(raw, _STREAM_SEP),
        tkey=_byte_find(raw, _TIME_KEY),
        shape=raw.str.starts_with(_LOG_PREFIX) & raw.str.ends_with('"}'),
    )
    sep = f["sep"].fill_null(-1).to_numpy().astype(np.int64)
    tkey = f["tkey"].fill_null(-1).to_numpy().astype(np.int64)
    found = f["shape"].fill_null(False).to_numpy() & (sep >= 0) & (tkey > sep)
    s = starts[found]
    return found, s + len(_LOG_PREFIX), s + sep[found], s + tkey[found] + len(_TIME_KEY)


def _byte_find(raw: pl.Expr, literal: str) -> pl.Expr:
    """Byte offset of the first ``literal`` in each value, null where it does not occur.

    ``str.find`` counts bytes in polars 1 and characters in polars 2; the byte length of the
    text before the first split is the same in both.
    """
    before = raw.str.splitn(literal, 2).struct.field("field_0").str.len_bytes()
    return pl.when(raw.str.contains(literal, literal=True)).then(before.cast(pl.Int64))


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
                            "nbytes": nbytes, "entries": 1})
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
        The text, as a JSON decoder gives it (see :func:`_json_unescape`).
    """
    return _json_unescape(escaped)


def _json_unescape(values: pl.Series, times: int = 1) -> pl.Series:
    """Decode the JSON string escapes of string values ``times`` times (0: as they are).

    The same decoding as ``unescape()`` of ``_logscan.c`` and a JSON decoder: ``\\"``, ``\\\\``,
    ``\\/``, ``\\b``, ``\\f``, ``\\n``, ``\\r``, ``\\t``, ``\\uXXXX`` (a surrogate pair as one
    character, a lone surrogate as U+FFFD); a backslash that starts no valid escape is kept.
    Only values holding a backslash are touched, with polars' JSON decoder where it applies
    (valid JSON string content without escaped surrogates), else one by one in Python.
    """
    for _ in range(times):
        has = values.str.contains("\\", literal=True).fill_null(False)
        hits = int(has.sum())
        if not hits:
            break
        idx = has.arg_true()
        some = values if hits == len(values) else values.gather(idx)
        decoded = None
        if not some.str.contains(_SURROGATE_RE).any():
            quoted = pl.concat_str([pl.lit('"'), pl.col("v"), pl.lit('"')])
            try:
                decoded = pl.DataFrame({"v": some}).select(quoted.str.json_decode(pl.String)
                                                           ).to_series()
            except pl.exceptions.ComputeError:  # not valid JSON string content
                decoded = None
        if decoded is None:
            decoded = pl.Series([_unescape_text(v) for v in some.to_list()], dtype=pl.String)
        decoded = decoded.alias(values.name)
        values = decoded if hits == len(values) else values.clone().scatter(idx, decoded)
    return values


def _unescape_text(value: str | None) -> str | None:
    """One value decoded as :func:`_json_unescape` does, in Python."""
    if value is None:
        return None

    def one(m: re.Match[str]) -> str:
        if m[1]:
            return chr(0x10000 + ((int(m[1], 16) - 0xD800) << 10) + int(m[2], 16) - 0xDC00)
        if m[3]:
            u = int(m[3], 16)
            return "\ufffd" if 0xD800 <= u <= 0xDFFF else chr(u)
        return _SIMPLE_ESCAPES[m[4]]

    return _ESCAPE_RE.sub(one, value)


def _empty_entries() -> pl.DataFrame:
    return pl.DataFrame(schema={"line": pl.Int64, "offset": pl.Int64, "time": pl.String,
                                "stream": pl.String, "log": pl.String, "nbytes": pl.Int64,
                                "entries": pl.Int64})


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
    final = df.select(_complete(pl.col("log"))).to_series().fill_null(False).to_numpy()
    g = _Groups(df, final)
    carry = df.filter(pl.Series(g.open_tail))
    return g.lines(df, ~g.open_tail), carry


class _Groups:
    """The logical lines of entries in file order: per stream, an entry belongs to the line
    that its stream's next complete entry ends (Docker writes the chunks of a long line one
    after the other on the same stream)."""

    def __init__(self, df: pl.DataFrame, final: np.ndarray) -> None:
        # Stream codes, then the group id of each entry within its stream: the number of
        # complete lines before it in that stream.
        codes = _stream_codes(df["stream"])
        n = len(final)
        self.grp = np.empty(n, dtype=np.int64)
        self.open_tail = np.empty(n, dtype=bool)  # entries after their stream's last newline
        for c in np.unique(codes):
            idx = np.flatnonzero(codes == c)
            f = final[idx].astype(np.int64)
            grp = np.cumsum(f) - f
            self.grp[idx] = grp + c * n
            self.open_tail[idx] = grp == f.sum()
        sizes = np.bincount(self.grp, minlength=1) if n else np.zeros(1, dtype=np.int64)
        self.multi = sizes[self.grp] > 1  # entries of a line of several entries

    def lines(self, df: pl.DataFrame, rows: np.ndarray) -> pl.DataFrame:
        """The logical lines of the entries where ``rows`` (whole groups), sorted by line."""
        singles = df.filter(pl.Series(rows & ~self.multi))
        multi = rows & self.multi
        if not multi.any():
            return singles
        grouped = df.filter(pl.Series(multi)).with_columns(grp=pl.Series(self.grp[multi]))
        return pl.concat([singles, _collapse(grouped)]).sort("line")


# -- classification -------------------------------------------------------------------------------

def _text_level(col: pl.Expr) -> pl.Expr:
    return (pl.when(col.str.contains(_TEXT_ERROR_RE)).then(pl.lit("error"))
            .when(col.str.contains(_TEXT_WARN_RE)).then(pl.lit("warning"))
            .otherwise(pl.lit("info")))


def _only(cond: pl.Expr, value: pl.Expr) -> pl.Expr:
    """``value`` where ``cond``, else null (for small frames: string kernels still run on
    every row)."""
    return pl.when(cond).then(value)


def _split(df: pl.DataFrame, mask: pl.Series) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows where mask, rows where not), without copying when one side is empty."""
    hits = int(mask.sum())
    if hits == df.height:
        return df, df.clear()
    if hits == 0:
        return df.clear(), df
    return df.filter(mask), df.filter(~mask)


def _json_fields(js: pl.DataFrame, escaped: bool, *, per_line: bool = True) -> pl.DataFrame:
    """Add ``level``, ``status_class`` and ``message`` (full length) to JSON lines.

    Without ``per_line``, add the raw ``_lv`` and ``_status`` fields and ``message`` instead,
    and ``level`` only for lines with neither field (keywords): the caller maps the raw fields
    on distinct values (:func:`_json_level`).

    Each regex runs only where it is needed: ``METHOD uri`` only on lines without a message,
    keywords only on lines with neither a level nor a status. String values (message, uri)
    are decoded as a JSON decoder does: the envelope's escapes, then the inner string's.
    """
    pat = _PATTERNS[escaped]
    log = pl.col("log")
    inner = 2 if escaped else 1  # escapes of the envelope, then of the inner JSON string
    f = js.with_columns(_lv=log.str.extract(pat["level"], 1),
                        _status=log.str.extract(pat["status"], 1),
                        message=log.str.extract(pat["msg"], 1))
    f = f.with_columns(_json_unescape(f["message"], inner))
    if f["message"].null_count():
        missing = f["message"].is_null()
        rest = f.filter(missing)["log"]
        named = pl.DataFrame({
            "method": rest.str.extract(pat["method"], 1),
            "uri": _json_unescape(rest.str.extract(pat["uri"], 1), inner),
            "line": _json_unescape(rest, inner - 1).str.strip_suffix("\n"),
        })
        mu = pl.concat_str([pl.col("method"), pl.col("uri")], separator=" ", ignore_nulls=True)
        # Without method and uri either, the line itself is the message.
        unnamed = named.select(pl.when(mu != "").then(mu).otherwise(pl.col("line"))).to_series()
        f = f.with_columns(f["message"].clone().scatter(missing.arg_true(), unnamed))
    if not per_line:
        unknown = f["_lv"].is_null() & f["_status"].is_null()
        return f.with_columns(_keyword_level(f, unknown, escaped))
    level = _json_level(named_only=not f["_lv"].null_count())
    f = f.with_columns(level=level, status_class=_status_class())
    if f["level"].null_count():  # neither level nor status: keywords of the whole line
        f = f.with_columns(level=pl.coalesce(
            "level", _keyword_level(f, f["level"].is_null(), escaped)))
    return f.drop("_lv", "_status")


def _keyword_level(df: pl.DataFrame, mask: pl.Series, escaped: bool) -> pl.Series:
    """``level`` from keywords of the whole line (decoded first when ``escaped``) where
    ``mask`` holds, null elsewhere."""
    hits = int(mask.sum())
    nulls = pl.repeat(None, df.height, dtype=pl.String, eager=True).alias("level")
    if not hits:
        return nulls
    idx = mask.arg_true()
    log = df["log"] if hits == df.height else df["log"].gather(idx)
    if escaped:
        log = _json_unescape(log)
    levels = pl.DataFrame({"log": log}).select(_text_level(pl.col("log")).alias("level")
                                               ).to_series()
    return levels if hits == df.height else nulls.scatter(idx, levels)


@functools.cache
def _json_level(*, named_only: bool = False) -> pl.Expr:
    """Level from the raw ``_lv`` field (normalised), else from the HTTP ``_status`` (null
    when neither)."""
    lv, st = pl.col("_lv"), pl.col("_status")
    named = lv.str.to_lowercase().replace_strict(_LEVEL_MAP, default="other",
                                                 return_dtype=pl.String)
    if named_only:
        return named
    return (pl.when(lv.is_not_null()).then(named)
            .when(st >= "500").then(pl.lit("error"))
            .when(st >= "400").then(pl.lit("warning"))
            .when(st.is_not_null()).then(pl.lit("info")))


@functools.cache
def _status_class() -> pl.Expr:
    return pl.col("_status").str.slice(0, 1) + pl.lit("xx")


def _text_fields(tx: pl.DataFrame, escaped: bool, *, defer: bool) -> pl.DataFrame:
    """Add ``level`` (keywords), ``status_class`` (null) and ``message`` (the line, full
    length) to plain-text lines. With ``defer``, ``level`` is only set on lines longer than a
    message (the others are their own message, whose level the caller finds on the distinct
    messages: same text, same keywords)."""
    every = pl.repeat(True, tx.height, eager=True)
    level = _keyword_level(tx, tx["log"].str.len_bytes() > _MESSAGE_CHARS if defer else every,
                           escaped)
    message = _json_unescape(tx["log"], 1 if escaped else 0)
    return tx.with_columns(
        level=level, status_class=pl.lit(None, pl.String),
        message=message.str.strip_suffix("\n").str.strip_suffix("\r"))


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
    js, tx = _split(lines, lines["log"].str.starts_with("{"))
    parts = [_json_fields(js, escaped)] if js.height else []
    if tx.height:
        parts.append(_text_fields(tx, escaped, defer=False))
    if not parts:
        return lines.with_columns(level=pl.lit(None, pl.String),
                                  status_class=pl.lit(None, pl.String),
                                  message=pl.lit(None, pl.String))
    cols = [*lines.columns, "level", "status_class", "message"]
    out = [p.select(cols).with_columns(_short(pl.col("message"))) for p in parts]
    return out[0] if len(out) == 1 else pl.concat(out)


def _short(message: pl.Expr) -> pl.Expr:
    return message.str.slice(0, _MESSAGE_CHARS)


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
    buf = np.frombuffer(data, dtype=np.uint8)
    # Plain arithmetic (no boolean indexing): d = byte - "0" wraps around for bytes below
    # "0", so d < 10 only for digits, and byte - d is then "0".
    d = buf - np.uint8(48)
    d *= d < 10
    zeroed = pa.LargeStringArray.from_buffers(len(arr), offsets, pa.py_buffer(buf - d), validity,
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
    lines: int  # lines inside the time window
    # minute (string), raw JSON level and status fields (_lv, _status), level (only for lines
    # classified by keywords per line, else null), key (decoded message with digits zeroed)
    # -> count, bytes, example; None when no line is in the window
    groups: pl.DataFrame | None


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


class _Chunk(NamedTuple):
    """One batch parsed and reduced in a worker (see :func:`_process_batch`)."""

    lines: int  # physical lines
    entries: int
    partial: int
    malformed: list[Malformed]  # lines numbered from 0 within the batch
    done: int  # logical lines reduced into ``agg``
    agg: _BatchAgg
    rest: pl.DataFrame  # entries of lines that may span batches (own buffers, numbered so)
    rest_bytes: int


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


def _stream_codes(stream: pl.Series) -> np.ndarray:
    """0 for stdout, 1 for stderr, then 2.. for any other stream name (or none)."""
    err = (stream == "stderr").fill_null(False).to_numpy()
    if int(err.sum()) + int((stream == "stdout").sum()) == len(stream):
        return err.astype(np.int64)
    ranks = stream.rank("dense").cast(pl.Int64).fill_null(0).to_numpy()
    return np.asarray(ranks + 2, dtype=np.int64)


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
