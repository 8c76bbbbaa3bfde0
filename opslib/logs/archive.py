"""Archive-first log handling: verified, resumable archive segments and truncate safety."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opslib.exceptions import (
    VerificationFailed,
)

__all__ = ["TruncateSafety", "archive_roots", "dockerd_pid", "truncate_safety"]


O_APPEND = 0o2000
O_ACCMODE = 0o3
_CHUNK = 4 << 20
_ARCHIVE_KIND = "opslib-log-archive"


# =============================================================================================
# 3. Plan, then apply
# =============================================================================================

@dataclass(frozen=True)
class TruncateSafety:
    """Whether truncating a live json-file log in place is safe.

    Attributes:
        safe: True when every descriptor the daemon writes it through has O_APPEND, or none is
            open (stopped container).
        reason: Why, in words.
        flags: The octal ``flags`` of the daemon's write descriptors (from fdinfo).
    """

    safe: bool
    reason: str
    flags: tuple[str, ...] = ()


def dockerd_pid() -> int | None:
    """The pid of the local dockerd (``pidof dockerd``, else ``/var/run/docker.pid``)."""
    pidof = shutil.which("pidof")
    if pidof:
        out = subprocess.run([pidof, "dockerd"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.split():
            return int(out.stdout.split()[0])
    try:
        pid = int(Path("/var/run/docker.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def _writer_flags(pid: int, path: str) -> list[int]:
    target = os.path.realpath(path)
    found: list[int] = []
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(fd_dir / fd) != target:
                continue
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        m = re.search(r"^flags:\s*([0-7]+)", info, re.M)
        if m and int(m.group(1), 8) & O_ACCMODE:  # opened for writing
            found.append(int(m.group(1), 8))
    return found


def truncate_safety(path: str, pid: int | None = None) -> TruncateSafety:
    """Check the daemon's descriptors of a live json-file log in ``/proc/<pid>/fdinfo``.

    Args:
        path: The ``*-json.log`` file.
        pid: dockerd's pid (default: :func:`dockerd_pid`).

    Returns:
        A :class:`TruncateSafety`.
    """
    pid = pid or dockerd_pid()
    if pid is None:
        return TruncateSafety(False, "dockerd's pid is unknown (not local, or not running)")
    try:
        flags = _writer_flags(pid, path)
    except OSError as exc:
        return TruncateSafety(False, f"cannot read /proc/{pid}/fd ({exc.strerror}; run as root)")
    octal = tuple(f"0{f:o}" for f in flags)
    if not flags:
        return TruncateSafety(True, "no daemon descriptor writes it (container stopped)")
    if all(f & O_APPEND for f in flags):
        return TruncateSafety(True, f"dockerd writes it with O_APPEND (flags {', '.join(octal)})",
                              octal)
    return TruncateSafety(False, f"dockerd writes it without O_APPEND (flags {', '.join(octal)}; "
                          "it reopened the file after a rotation): truncating would leave a "
                          "NUL-filled hole that breaks docker logs (moby/moby#29511)", octal)


def archive_roots(out_dir: str | Path) -> list[Path]:
    """Archive folders of this run and of earlier runs next to it.

    ``<out_dir>/archive`` first, then every ``<out_dir>/../*/archive``: runs of one runbook share
    a parent folder, so earlier archives are found for retention and to continue an archive
    where the previous run stopped.

    Args:
        out_dir: This run's output folder.

    Returns:
        Existing or to-be-created archive folders.
    """
    out = Path(out_dir).resolve()
    roots = [out / "archive"]
    if out.parent.is_dir():
        roots += sorted(p for p in out.parent.glob("*/archive")
                        if p.is_dir() and p.resolve() != roots[0])
    return roots


def _first_line_sha(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.readline(65536)
    return hashlib.sha256(head).hexdigest()


def _manifests(roots: Iterable[Path]) -> list[dict[str, Any]]:
    out = []
    for root in roots:
        if not root.is_dir():
            continue
        for m in root.rglob("*.gz.json"):
            try:
                data = json.loads(m.read_text())
            except (OSError, ValueError):
                continue
            gz = m.with_suffix("")
            if isinstance(data, dict) and data.get("kind") == _ARCHIVE_KIND and gz.exists():
                data["_manifest"] = str(m)
                data["_archive"] = str(gz)
                out.append(data)
    return out


def _archived_until(path: Path, roots: Iterable[Path]) -> tuple[int, str]:
    """(end of the contiguous archived prefix of ``path``, sha of its first line)."""
    if not path.exists() or path.stat().st_size == 0:
        return 0, ""
    head = _first_line_sha(path)
    segs = sorted((m["start"], m["end"]) for m in _manifests(roots)
                  if m.get("source") == str(path) and m.get("head_sha") == head)
    end = 0
    for start, stop in segs:
        if start <= end:
            end = max(end, stop)
    return end, head


def _last_newline_before(path: Path, limit: int) -> int:
    """Offset just after the last newline at or before ``limit`` (0 when none)."""
    if limit <= 0:
        return 0
    with open(path, "rb") as fh:
        pos = limit
        while pos > 0:
            step = min(_CHUNK, pos)
            fh.seek(pos - step)
            buf = fh.read(step)
            i = buf.rfind(b"\n")
            if i >= 0:
                return pos - step + i + 1
            pos -= step
    return 0


def _gz_digest(path: Path) -> tuple[str, int, int]:
    h = hashlib.sha256()
    lines = size = 0
    with gzip.open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
            lines += chunk.count(b"\n")
            size += len(chunk)
    return h.hexdigest(), lines, size


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _archive(src: Path, archive_dir: Path, roots: Sequence[Path], *, service: str,
             container: str, whole: bool = False, compresslevel: int = 1) -> dict[str, Any]:
    """Archive the not-yet-archived complete lines of ``src`` into a verified gzip segment.

    Idempotent: segments already archived (by this or an earlier run) are not archived again.
    ``whole`` archives up to the end of file even without a final newline (files nobody writes).

    Returns:
        ``{"archive", "start", "end", "lines", "sha256", "gz_bytes"}``; ``archive`` is "" when
        there was nothing new.
    """
    start, head = _archived_until(src, [archive_dir, *roots])
    size = src.stat().st_size
    end = size if whole else _last_newline_before(src, size)
    if end <= start:
        return {"archive": "", "start": start, "end": start, "lines": 0, "sha256": "",
                "gz_bytes": 0}
    dest_dir = archive_dir / (service or "host")
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{src.name}.{head[:10]}.{start:013d}.gz"
    part = dest.with_name(dest.name + ".part")
    h = hashlib.sha256()
    lines = 0
    with open(src, "rb") as fin, open(part, "wb") as raw:
        with gzip.GzipFile(filename=src.name, mode="wb", fileobj=raw,
                           compresslevel=compresslevel) as gz:
            fin.seek(start)
            left = end - start
            while left:
                chunk = fin.read(min(_CHUNK, left))
                if not chunk:
                    raise VerificationFailed("archive", str(src),
                                             f"file shrank while archiving (at {end - left})")
                gz.write(chunk)
                h.update(chunk)
                lines += chunk.count(b"\n")
                left -= len(chunk)
        raw.flush()
        os.fsync(raw.fileno())
    sha, lines2, size2 = _gz_digest(part)
    if (sha, lines2, size2) != (h.hexdigest(), lines, end - start):
        part.unlink(missing_ok=True)
        raise VerificationFailed("archive", str(dest),
                                 f"decompressed copy has {lines2} lines / sha {sha[:12]}, "
                                 f"expected {lines} / {h.hexdigest()[:12]}")
    if _first_line_sha(src) != head:
        part.unlink(missing_ok=True)
        raise VerificationFailed("archive", str(src), "the file was truncated or replaced "
                                 "while it was archived; rerun the plan")
    manifest = {"kind": _ARCHIVE_KIND, "source": str(src), "service": service,
                "container": container, "head_sha": head, "start": start, "end": end,
                "lines": lines,
                "sha256": h.hexdigest(), "gz_bytes": part.stat().st_size,
                "created": dt.datetime.now(dt.UTC).isoformat()}
    _write_json_atomic(dest.with_name(dest.name + ".json"), manifest)
    os.replace(part, dest)
    _fsync_dir(dest_dir)
    return {"archive": str(dest), "start": start, "end": end, "lines": lines,
            "sha256": manifest["sha256"], "gz_bytes": manifest["gz_bytes"]}
