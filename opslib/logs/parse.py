"""Streaming, vectorised analysis of Docker json-file logs.

Docker's json-file driver writes one JSON object per line::

    {"log":"GET /products 200\n","stream":"stdout","time":"2024-05-01T12:00:00.123456789Z"}

A ``log`` value without a trailing newline is a *partial* entry: Docker splits lines longer than
16 KB into several entries, and the following entries of the same stream carry the rest of the
line. This module reads such files (plain or gzip-compressed rotated files) in bounded batches of
raw bytes. Line boundaries and the envelope's fields are found on each batch's bytes, and the
``time``, ``stream`` and ``log`` columns are arrow string *views* into that buffer (no copy, no
per-line Python objects; the log text stays JSON-escaped as dockerd wrote it, with ``<``, ``>``
and ``&`` as ``\u003c``, ``\u003e``, ``\u0026``); only lines without the json-file shape are
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

from opslib.logs.aggregate import LogAnalysis, analyse_files
from opslib.logs.fields import MASKS, classify, mask_messages, unescape
from opslib.logs.reader import (
    DEFAULT_BATCH_BYTES,
    ENVELOPE_SCHEMA,
    DockerLogReader,
    Malformed,
    ReadStats,
)

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
