"""What a log line says: JSON escapes decoded, level, HTTP status class, message key and
masked message."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from opslib.logs import _native

__all__ = ["MASKS", "classify", "mask_messages", "unescape"]


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
_MESSAGE_CHARS = 300


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


def _collapse(df: pl.DataFrame, keys: Sequence[str] = ("stream", "grp")) -> pl.DataFrame:
    if "grp" not in df.columns:
        df = df.with_columns(pl.lit(0, pl.Int64).alias("grp"))
    return (df.group_by(list(keys), maintain_order=True)
            .agg(pl.col("line").first(), pl.col("offset").first(), pl.col("time").first(),
                 pl.col("log").str.join(""), pl.col("nbytes").sum(), pl.col("entries").sum())
            .select("line", "offset", "time", "stream", "log", "nbytes", "entries")
            .sort("line"))


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


def _stream_codes(stream: pl.Series) -> np.ndarray:
    """0 for stdout, 1 for stderr, then 2.. for any other stream name (or none)."""
    err = (stream == "stderr").fill_null(False).to_numpy()
    if int(err.sum()) + int((stream == "stdout").sum()) == len(stream):
        return err.astype(np.int64)
    ranks = stream.rank("dense").cast(pl.Int64).fill_null(0).to_numpy()
    return np.asarray(ranks + 2, dtype=np.int64)
