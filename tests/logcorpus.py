"""A corpus of tricky log lines, and the reference analysis of a json-file log made with the
standard library's ``json`` decoder, line by line.

The corpus is what applications print (bytes, each line with its newline): JSON app lines whose
messages hold ``<``, ``>`` and ``&`` (which dockerd writes as ``\\u003c``, ``\\u003e``,
``\\u0026``), quotes, backslashes, inner escapes (``\\n``, ``\\t``, ``\\uXXXX`` incl. surrogate
pairs), raw emoji and other non-BMP characters, nested JSON, lines longer than 16 KB (dockerd
splits them into partial entries), invalid UTF-8, and plain-text lines. The integration test has
dockerd write it (a throwaway container prints it); the unit test encodes it as dockerd does
(:func:`dockerd_entries`, Go's HTML-safe JSON).

:func:`reference_lines` reads a json-file log with ``json.loads`` and nothing from opslib but
its level names and masks; :func:`reference_aggregates` and :func:`analysis_aggregates` put the
reference and an :class:`opslib.logs.parse.LogAnalysis` side by side.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl

from opslib.logs import fields as lpf
from opslib.logs import parse as lp
from opslib.redact import redact_text

#: The three lines of issue #26, with their expected template and count.
IMG = '{"level":"error","msg":"<img src=x onerror=alert(document.domain)> boom"}'
SEARCH = '{"level":"error","msg":"upstream failed for /search?q=a&page=2"}'
SCRIPT = "<script>alert(4242)</script> plain error"
TEMPLATES = {
    "<img src=x onerror=alert(document.domain)> boom": 3000,
    "upstream failed for /search?q=<v>&page=<v>": 200,
    "<script>alert(<n>)</script> plain error": 1,
}


def _js(obj: dict[str, Any], *, ascii_only: bool = True) -> bytes:
    """An app's JSON line (Python's json: non-ASCII as \\uXXXX unless ``ascii_only`` is off)."""
    return (json.dumps(obj, ensure_ascii=ascii_only) + "\n").encode()


def corpus() -> list[tuple[str, int, bytes]]:
    """(stream, repeat, line bytes) in the order they are printed."""
    long_msg = "deploy <" + "&".join(f"k{i}=v{i}" for i in range(2500)) + "> 🚀 done"
    lines: list[tuple[str, int, bytes]] = [
        ("stdout", 3000, (IMG + "\n").encode()),
        ("stdout", 200, (SEARCH + "\n").encode()),
        ("stderr", 1, (SCRIPT + "\n").encode()),
        ("stdout", 3, _js({"level": "warning", "msg": 'say "hi" to C:\\temp\\new & <b>'})),
        ("stdout", 2, _js({"level": "info", "msg": "two\nlines\tand a tab\\n not a newline"})),
        ("stdout", 2, _js({"level": "info", "msg": "café 日本 🚀 𝄞 😀"})),
        ("stdout", 2, _js({"level": "info", "msg": "café 日本 🚀 𝄞 😀 raw"}, ascii_only=False)),
        ("stdout", 2, _js({"level": "error", "msg": json.dumps(
            {"inner": "<a href=\"x\">&amp;</a>", "path": "C:\\x", "n": 42})})),
        ("stdout", 4, _js({"level": "info", "msg": "GET /x?a=1&b=2 200", "status": 200})),
        ("stderr", 2, _js({"status": 503, "msg": "upstream <timeout> after 30s"})),
        ("stdout", 2, _js({"method": "GET", "uri": "/p?a=1&b=<2>", "status": 404})),
        ("stdout", 2, _js({"msg": "fatal: x & y"})),
        ("stdout", 1, _js({"level": "info", "msg": "line sep \u2028 and \u2029 and bell \x07"})),
        ("stderr", 2, b"C:\\path\\to\\file & more error\n"),
        ("stderr", 2, b"windows <line> warning\r\n"),
        ("stderr", 1, b"ends with a backslash and n \\n\n"),
        ("stderr", 2, b"bad \xff\xfe bytes & error\n"),
        ("stdout", 1, b'{"level":"warn","msg":"bad \xc3 byte <x>"}\n'),
        ("stdout", 1, _js({"level": "error", "msg": long_msg, "detail": "x" * 20_000})),
        ("stderr", 1, ("plain <long> " + "é&" * 12_000 + " error\n").encode()),
        ("stdout", 1, b"tab\tinside & <angle> info\n"),
    ]
    return lines


def dockerd_entries(text: bytes, stream: str, time: str) -> list[str]:
    """Encode one printed line as dockerd's json-file driver does: chunks of 16 KB of the raw
    bytes (each invalid UTF-8 byte becomes U+FFFD), see :func:`dockerd_json`."""
    return [dockerd_json("".join(_go_chars(text[k:k + 16_384])), stream, time)
            for k in range(0, len(text), 16_384)]


def dockerd_json(log: str, stream: str, time: str) -> str:
    """One json-file entry as dockerd writes it: Go's HTML-safe JSON (``<``, ``>``, ``&``,
    U+2028 and U+2029 escaped as ``\\uXXXX``, other non-ASCII characters as they are)."""
    enc = (json.dumps({"log": log, "stream": stream, "time": time}, ensure_ascii=False,
                      separators=(",", ":"))
           .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
           .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return enc + "\n"


def _go_chars(raw: bytes) -> list[str]:
    """The characters Go reads from bytes: one U+FFFD per invalid byte."""
    out: list[str] = []
    i = 0
    while i < len(raw):
        for size in (1, 2, 3, 4):
            try:
                out.append(raw[i:i + size].decode("utf-8"))
                i += size
                break
            except UnicodeDecodeError:
                continue
        else:
            out.append("\ufffd")
            i += 1
    return out


_ERROR_RE = re.compile(lpf._TEXT_ERROR_RE.removeprefix("(?i)"), re.IGNORECASE)
_WARN_RE = re.compile(lpf._TEXT_WARN_RE.removeprefix("(?i)"), re.IGNORECASE)


def _keywords(text: str) -> str:
    return "error" if _ERROR_RE.search(text) else "warning" if _WARN_RE.search(text) else "info"


def reference_lines(path: Path) -> list[dict[str, Any]]:
    """Each logical line of a json-file log, decoded with ``json.loads`` line by line (partial
    entries joined per stream), with its level, status class and message as a JSON decoder
    reads them: the ``level`` field (opslib's level names), else the HTTP ``status``, else
    keywords; the ``msg`` field, else ``method uri``, else the line without its newline (and,
    for plain text, carriage return); messages cut to 300 characters."""
    lines: list[dict[str, Any]] = []
    open_: dict[str, dict[str, Any]] = {}
    with path.open("rb") as fh:
        for no, raw in enumerate(fh):
            obj = json.loads(raw)
            stream = obj.get("stream") or ""
            cur = open_.pop(stream, None) or {"time": obj["time"], "stream": stream, "log": "",
                                               "nbytes": 0, "entries": 0, "first": no}
            cur["log"] += obj["log"]
            cur["nbytes"] += len(raw)
            cur["entries"] += 1
            if obj["log"].endswith("\n"):
                lines.append(cur)
            else:
                open_[stream] = cur
    lines += open_.values()
    lines.sort(key=lambda x: x["first"])
    for line in lines:
        text = line["log"]
        level = status = message = None
        if text.startswith("{"):
            app = json.loads(text)
            status = app.get("status")
            if isinstance(app.get("level"), str):
                level = lpf._LEVEL_MAP.get(app["level"].lower(), "other")
            elif status is not None:
                level = "error" if status >= 500 else "warning" if status >= 400 else "info"
            else:
                level = _keywords(text)
            if "msg" in app:
                message = app["msg"]
            elif "method" in app or "uri" in app:
                message = " ".join(str(app[k]) for k in ("method", "uri") if k in app)
            else:
                message = text.removesuffix("\n")
        else:
            level = _keywords(text)
            message = text.removesuffix("\n").removesuffix("\r")
        line.update(level=level, message=message[:300],
                    status_class=None if status is None else f"{str(status)[0]}xx")
    return lines


def reference_aggregates(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Levels, status classes and top messages (masked as opslib masks, redacted) of the
    reference lines."""
    masked = lp.mask_messages(lpf._zero_digits(pl.Series([x["message"] for x in lines],
                                                        dtype=pl.String))).to_list()
    top: Counter[tuple[str, str | None, str]] = Counter()
    nbytes: Counter[tuple[str, str | None, str]] = Counter()
    examples: dict[tuple[str, str | None, str], set[str]] = {}
    for x, m in zip(lines, masked, strict=True):
        k = (x["level"], x["status_class"], redact_text(m))
        top[k] += 1
        nbytes[k] += x["nbytes"]
        examples.setdefault(k, set()).add(redact_text(x["message"]))
    return {"levels": dict(Counter(x["level"] for x in lines)),
            "status": dict(Counter(x["status_class"] for x in lines if x["status_class"])),
            "top": {k: (v, nbytes[k]) for k, v in top.items()}, "examples": examples}


def analysis_aggregates(a: lp.LogAnalysis) -> dict[str, Any]:
    """The same of an analysis (of one service)."""
    t = a.top_messages
    return {"levels": dict(a.levels.select("level", "lines").iter_rows()),
            "status": dict(a.status.select("status_class", "lines").iter_rows()),
            "top": {(r["level"], r["status_class"], r["message"]): (r["count"], r["bytes"])
                    for r in t.iter_rows(named=True)},
            "examples": {(r["level"], r["status_class"], r["message"]): r["example"]
                         for r in t.iter_rows(named=True)}}


def assert_matches(a: lp.LogAnalysis, ref_lines: list[dict[str, Any]]) -> None:
    """The analysis equals the reference: levels, status classes, each masked message with its
    count and bytes, and each example one of its group's reference messages; the templates of
    issue #26 are among them."""
    ref, got = reference_aggregates(ref_lines), analysis_aggregates(a)
    assert got["levels"] == ref["levels"]
    assert got["status"] == ref["status"]
    assert got["top"] == ref["top"]
    for k, example in got["examples"].items():
        assert example in ref["examples"][k], (k, example)
    counts = {k[2]: v[0] for k, v in got["top"].items()}
    for template, count in TEMPLATES.items():
        assert counts.get(template) == count, (template, counts.get(template))


def assert_reader_matches(path: Path, ref: list[dict[str, Any]], batch_bytes: int) -> None:
    """The reader's decoded text, and each line's level, status class and message (the regex
    path), equal the stdlib reference line by line."""
    from opslib.logs.parse import DockerLogReader, classify

    got = pl.concat(list(DockerLogReader(path, batch_bytes=batch_bytes).batches())).sort("line")
    assert got["log"].to_list() == [x["log"] for x in ref]
    escaped = pl.concat(list(DockerLogReader(path, batch_bytes=batch_bytes, decode=False)
                             .batches())).sort("line")
    c = classify(escaped, escaped=True).sort("line")
    assert c.select("level", "status_class", "message").rows() == [
        (x["level"], x["status_class"], x["message"]) for x in ref]
