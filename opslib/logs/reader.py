"""Docker json-file logs read in bounded batches: envelopes cut (native scanner or numpy),
partial lines joined, malformed lines counted."""

from __future__ import annotations

import codecs
import dataclasses
import gzip
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from opslib.exceptions import BadInputFormat, BadParameter
from opslib.logs import _native
from opslib.logs.fields import _SLACK, _Buf, _Bytes, _collapse, _Groups, _scan_fields, unescape
from opslib.redact import redact_text

__all__ = ["DEFAULT_BATCH_BYTES", "ENVELOPE_SCHEMA", "DockerLogReader", "Malformed", "ReadStats"]


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


def _empty_entries() -> pl.DataFrame:
    return pl.DataFrame(schema={"line": pl.Int64, "offset": pl.Int64, "time": pl.String,
                                "stream": pl.String, "log": pl.String, "nbytes": pl.Int64,
                                "entries": pl.Int64})


def _join_partials(df: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Join partial entries with the following entries of the same stream.

    Returns the complete logical lines and the trailing incomplete entries (per stream) to carry
    into the next batch.
    """
    final = df.select(_complete(pl.col("log"))).to_series().fill_null(False).to_numpy()
    g = _Groups(df, final)
    carry = df.filter(pl.Series(g.open_tail))
    return g.lines(df, ~g.open_tail), carry


@dataclass
class _BatchAgg:
    lines: int  # lines inside the time window
    # minute (string), raw JSON level and status fields (_lv, _status), level (only for lines
    # classified by keywords per line, else null), key (decoded message with digits zeroed)
    # -> count, bytes, example; None when no line is in the window
    groups: pl.DataFrame | None


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
