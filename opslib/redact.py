"""Redaction of secrets before anything is displayed or saved.

One place decides what a secret looks like, so the runner (parameters, reports), the log analysis
(log text) and the audit (environment variables) agree. Redaction replaces the secret with
:data:`MASK`; :func:`fingerprint` gives a short, stable, non-reversible id so two findings of the
same value can be matched without showing it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MASK",
    "SECRET_NAME_RE",
    "fingerprint",
    "looks_secret_name",
    "redact_mapping",
    "redact_text",
]

MASK = "***REDACTED***"

#: Names (of parameters, environment variables, JSON keys) whose values are secrets.
SECRET_NAME_RE = re.compile(
    r"(pass(word|wd|phrase)?|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|"
    r"(^|[_-])key$|^key$|dsn|credential|auth|cookie|session[_-]?id|signature|salt)",
    re.IGNORECASE,
)

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # scheme://user:password@host  ->  scheme://user:***@host
    (re.compile(r"(?P<pre>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)(?P<secret>[^\s@/]+)(?=@)"),
     r"\g<pre>" + MASK),
    # Authorization / Proxy-Authorization headers, any scheme
    (re.compile(r"(?P<pre>(?:proxy-)?authorization\"?\s*[:=]\s*\"?)(?P<secret>[^\"\r\n]+)",
                re.IGNORECASE),
     r"\g<pre>" + MASK),
    # Bearer / Basic tokens standing alone
    (re.compile(r"(?P<pre>\b(?:bearer|basic)\s+)(?P<secret>[A-Za-z0-9._~+/=-]{8,})",
                re.IGNORECASE),
     r"\g<pre>" + MASK),
    # JSON-style "password": "value"
    (re.compile(
        r"(?P<pre>\"[A-Za-z0-9_.-]*(?:pass(?:word|wd)?|secret|token|api[_-]?key|access[_-]?key|"
        r"private[_-]?key|dsn|credential|cookie)[A-Za-z0-9_.-]*\"\s*:\s*\")(?P<secret>[^\"]*)",
        re.IGNORECASE),
     r"\g<pre>" + MASK),
    # key=value / key: value pairs (query strings, env dumps, logfmt)
    (re.compile(
        r"(?P<pre>\b[A-Za-z0-9_.-]*(?:pass(?:word|wd)?|secret|token|api[_-]?key|access[_-]?key|"
        r"private[_-]?key|credential)[A-Za-z0-9_.-]*\s*[=:]\s*)(?P<secret>[^\s&\"',;]+)",
        re.IGNORECASE),
     r"\g<pre>" + MASK),
    # JSON Web Tokens
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"), MASK),
    # Well-known token shapes: AWS access key ids, GitHub, Slack
    (re.compile(r"\b(?:AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|xox[abprs]-[A-Za-z0-9-]{10,})"),
     MASK),
]


def looks_secret_name(name: str) -> bool:
    """Tell whether a parameter, variable or key name denotes a secret.

    Args:
        name: The name, e.g. ``"POSTGRES_PASSWORD"`` or ``"dsn"``.

    Returns:
        True when the value behind this name must never be shown.
    """
    return bool(SECRET_NAME_RE.search(name))


def redact_text(text: str, extra_secrets: tuple[str, ...] | list[str] = ()) -> str:
    """Replace secrets inside free text (log lines, DSNs, command output) with :data:`MASK`.

    Args:
        text: The text to clean.
        extra_secrets: Literal values known to be secret (e.g. given with ``--secret``); every
            occurrence is masked, whatever its context.

    Returns:
        The text with every recognised secret masked.
    """
    for value in extra_secrets:
        if value and len(value) >= 3:
            text = text.replace(value, MASK)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def redact_mapping(
    data: Mapping[str, Any], extra_secrets: tuple[str, ...] | list[str] = ()
) -> dict[str, Any]:
    """Return a copy of a mapping with secret values masked, recursively.

    Values under secret-looking keys become :data:`MASK`; other strings go through
    :func:`redact_text`; nested mappings and lists are walked.

    Args:
        data: Parameters, environment, a JSON document.
        extra_secrets: Literal values known to be secret.

    Returns:
        A new dict safe to display or save.
    """
    return {k: _redact_value(k, v, extra_secrets) for k, v in data.items()}


def _redact_value(key: str, value: Any, extra: tuple[str, ...] | list[str]) -> Any:
    if looks_secret_name(key) and value not in (None, "", [], {}):
        return MASK
    if isinstance(value, str):
        return redact_text(value, extra)
    if isinstance(value, Mapping):
        return redact_mapping(value, extra)
    if isinstance(value, list | tuple):
        return [_redact_value("", v, extra) for v in value]
    return value


def fingerprint(value: str) -> str:
    """A short, stable, non-reversible fingerprint of a secret value.

    Args:
        value: The secret.

    Returns:
        ``"sha256:"`` followed by the first 12 hex digits of its SHA-256.
    """
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:12]


# Added for log analysis (issue 4): secret-named keys of JSON that is itself escaped inside a JSON
# string, as in a JSON application log line wrapped in Docker's json-file envelope:
#   {"log":"{\"authorization\": \"Bearer abc\", \"password\": \"x\"}\n", ...}
_PATTERNS.append((
    re.compile(
        r"(?P<pre>\\\"[A-Za-z0-9_.-]*(?:pass(?:word|wd)?|secret|token|api[_-]?key|access[_-]?key|"
        r"private[_-]?key|dsn|credential|cookie|authorization)[A-Za-z0-9_.-]*\\\"\s*:\s*\\\")"
        r"(?P<secret>(?:[^\"\\]|\\[^\"])*)",
        re.IGNORECASE),
    r"\g<pre>" + MASK,
))
