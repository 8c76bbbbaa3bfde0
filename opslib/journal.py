"""The JSON-lines journal that plan/apply functions write in a run's output folder.

One entry per line, a UTC timestamp first. :meth:`Journal.append` returns only after the line is
flushed and fsync'ed, so an acknowledged entry survives a SIGKILL (or a power cut) of the process
that wrote it; a rerun reads the journal back (:meth:`Journal.entries`, :meth:`Journal.done_keys`)
and resumes instead of redoing or losing work.

A crash in the middle of a write can leave a torn last line (no final newline, not JSON). Readers
ignore it, and the next :meth:`Journal.append` cuts it off before writing, so it never glues onto
the next entry. A journal has one writer at a time (the apply function of one run).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from opslib.exceptions import BadInputFormat

__all__ = ["Journal", "latest_by"]

_CHUNK = 1 << 16


def _matches(entry: Mapping[str, Any], match: Mapping[str, Any]) -> bool:
    for name, want in match.items():
        got = entry.get(name)
        if isinstance(want, tuple | set | frozenset):
            if got not in want:
                return False
        elif got != want:
            return False
    return True


def latest_by(
    entries: Iterable[Mapping[str, Any]], key: str, **match: Any
) -> dict[str, dict[str, Any]]:
    """The last entry per value of ``key`` among the entries whose fields match.

    Args:
        entries: Journal entries, oldest first.
        key: The field that names an action (``service``, ``file``, ``id``...).
        **match: Field values an entry must have; a tuple or set value means "one of".

    Returns:
        ``str(entry[key])`` → that entry (the latest matching one); entries without ``key`` are
        left out.
    """
    out: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if key in entry and _matches(entry, match):
            out[str(entry[key])] = dict(entry)
    return out


class Journal:
    """An append-only JSON-lines journal file.

    Attributes:
        path: The file (created, with its folder, by the first :meth:`append`).
        time_key: Name of the timestamp field every entry starts with.
        timespec: Precision of the timestamp (``datetime.isoformat`` ``timespec``).
    """

    def __init__(self, path: str | Path, *, time_key: str = "ts",
                 timespec: str = "seconds") -> None:
        """Open (lazily) a journal.

        Args:
            path: The journal file.
            time_key: Name of the UTC timestamp field added to each entry.
            timespec: ``"seconds"``, ``"microseconds"``, ``"auto"``... of that timestamp.
        """
        self.path = Path(path)
        self.time_key = time_key
        self.timespec = timespec

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    def append(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """Append one entry, with the current UTC time first; return once it is on disk.

        Args:
            entry: JSON-able fields (other values are written with ``str()``).

        Returns:
            The entry as written (timestamp included).
        """
        now = _dt.datetime.now(_dt.UTC).isoformat(timespec=self.timespec)
        record = {self.time_key: now, **entry}
        line = (json.dumps(record, default=str) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        with open(self.path, "a+b") as fh:
            _end_with_complete_line(fh)
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        if new:  # make the new directory entry durable too
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return record

    def entries(self, *, strict: bool = False) -> list[dict[str, Any]]:
        """All entries, oldest first (none when the file does not exist yet).

        Blank lines and a torn last line (no final newline: a crash mid-write) are skipped.

        Args:
            strict: Raise on a complete line that is not a JSON object, instead of skipping it.

        Returns:
            The entries as dicts.

        Raises:
            BadInputFormat: ``strict`` and a line is not a JSON object.
        """
        if not self.path.is_file():
            return []
        out: list[dict[str, Any]] = []
        with open(self.path, "rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    entry = json.loads(raw)
                except ValueError as exc:
                    if strict and raw.endswith(b"\n"):
                        raise BadInputFormat(str(self.path), f"not a JSON line: {exc}",
                                             line=number) from exc
                    continue
                if isinstance(entry, dict):
                    out.append(entry)
                elif strict and raw.endswith(b"\n"):
                    raise BadInputFormat(str(self.path), "not a JSON object", line=number)
        return out

    def latest(self, key: str, **match: Any) -> dict[str, dict[str, Any]]:
        """The last matching entry per action key (see :func:`latest_by`)."""
        return latest_by(self.entries(), key, **match)

    def done_keys(self, key: str, **match: Any) -> set[str]:
        """The action keys that have an entry with the given fields (the completed actions).

        Args:
            key: The field naming an action (``service``, ``file``, ``id``...).
            **match: Fields of a completion entry, e.g. ``status="deleted"``; a tuple value
                means "one of".

        Returns:
            The keys, as strings.
        """
        return set(self.latest(key, **match))


def _end_with_complete_line(fh: IO[bytes]) -> None:
    """Cut a torn last line off the journal (keep it when it is whole JSON without a newline)."""
    end = fh.seek(0, os.SEEK_END)
    if end == 0:
        return
    fh.seek(end - 1)
    if fh.read(1) == b"\n":
        return
    pos, start = end, 0
    while pos > 0:
        step = min(_CHUNK, pos)
        fh.seek(pos - step)
        i = fh.read(step).rfind(b"\n")
        if i >= 0:
            start = pos - step + i + 1
            break
        pos -= step
    fh.seek(start)
    tail = fh.read()
    try:
        whole = isinstance(json.loads(tail), dict)
    except ValueError:
        whole = False
    if whole:
        fh.write(b"\n")  # append mode: goes to the end
    else:
        fh.truncate(start)
