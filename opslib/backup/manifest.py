"""Backup files and their manifests: names, checksums, listing, verification."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from opslib.exceptions import (
    BackupNotFound,
    BadInputFormat,
    BadParameter,
    OpslibError,
    VerificationFailed,
)

__all__ = [
    "DRILL_LABEL",
    "DRILL_RUN_LABEL",
    "Backup",
    "list_backups",
    "load_manifest",
    "manifest_path",
    "manifest_tables",
    "resolve_backup_dir",
    "sha256_file",
    "verified_count",
    "verify_backup_file",
    "without_paths",
]


DRILL_LABEL = "opslib.drill"
DRILL_RUN_LABEL = "opslib.drill.run"
MANIFEST_FORMAT = "opslib-backup-manifest/1"
MANIFEST_SUFFIX = ".manifest.json"
DRILL_SUFFIX = ".drill.json"
PARTIAL_SUFFIX = ".partial"
BACKUP_SUFFIXES = (".dump", ".rdb")
_CHUNK = 1 << 20
_TS_FORMAT = "%Y%m%dT%H%M%SZ"
_NAME_RE = re.compile(r"^(?P<source>.+)-(?P<ts>\d{8}T\d{6}Z)(?:-\d+)?\.(?P<ext>dump|rdb)$")



# --------------------------------------------------------------------------------------------
# small helpers


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _parse_time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + PARTIAL_SUFFIX)
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def sha256_file(path: Path, chunk: int = _CHUNK) -> str:
    """SHA-256 of a file, read in chunks (memory stays bounded).

    Args:
        path: The file.
        chunk: Bytes read per step.

    Returns:
        The hex digest.
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def manifest_path(backup: str | Path) -> Path:
    """The manifest file that belongs to a backup file (``<file>.manifest.json``).

    Args:
        backup: The backup file.

    Returns:
        The manifest path (it may not exist).
    """
    p = Path(backup)
    return p.with_name(p.name + MANIFEST_SUFFIX)


def _drill_path(backup: Path) -> Path:
    return backup.with_name(backup.name + DRILL_SUFFIX)


def load_manifest(backup: str | Path) -> dict[str, Any]:
    """Read the manifest of a backup.

    Args:
        backup: The backup file (not the manifest).

    Returns:
        The manifest as a dict.

    Raises:
        BackupNotFound: There is no manifest beside the file.
        BadInputFormat: The manifest is not valid JSON.
    """
    mpath = manifest_path(backup)
    if not mpath.is_file():
        raise BackupNotFound(str(mpath), "the backup has no manifest")
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInputFormat(str(mpath), f"unreadable manifest: {exc}") from exc
    if not isinstance(data, dict):
        raise BadInputFormat(str(mpath), "manifest is not a JSON object")
    return data


def resolve_backup_dir(backup_dir: str | Path, project: str) -> Path:
    """The backup folder: the parameter, or ``<repo>/outputs/backups/<project>`` when empty.

    Args:
        backup_dir: The notebook's ``backup_dir`` parameter ("" = default).
        project: Compose project name.

    Returns:
        The folder, created if missing.
    """
    if str(backup_dir):
        folder = Path(backup_dir)
    else:
        here = Path.cwd()
        root = here.parent if here.name == "notebooks" else here
        folder = root / "outputs" / "backups" / project
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _unique_path(folder: Path, stem: str, ext: str) -> Path:
    path = folder / f"{stem}{ext}"
    n = 2
    while path.exists() or path.with_name(path.name + PARTIAL_SUFFIX).exists():
        path = folder / f"{stem}-{n}{ext}"
        n += 1
    return path


def _check_int(name: str, value: int, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (
        hi is not None and value > hi
    ):
        rng = f"an integer from {lo} to {hi}" if hi is not None else f"an integer >= {lo}"
        raise BadParameter(name, value, rng)


# --------------------------------------------------------------------------------------------
# backups


@dataclass(frozen=True)
class Backup:
    """A backup file and its manifest.

    Attributes:
        path: The backup file (``.dump`` or ``.rdb``).
        manifest: Its manifest (also written to ``<path>.manifest.json``).
    """

    path: Path
    manifest: dict[str, Any]

    @property
    def size_bytes(self) -> int:
        """Size of the backup file."""
        return int(self.manifest.get("size_bytes", 0))

    @property
    def duration_s(self) -> float:
        """Seconds the backup took."""
        return float(self.manifest.get("duration_s", 0.0))


def manifest_tables(manifest: Mapping[str, Any]) -> pd.DataFrame:
    """Per-table facts of a manifest: rows, primary key, content checksum.

    Args:
        manifest: A manifest (``Backup.manifest`` or :func:`load_manifest`).

    Returns:
        Columns table, rows, primary_key, checksum (empty when the table was too big).
    """
    rows = [{"table": t, "rows": int(v.get("rows", 0)), "primary_key": ", ".join(v.get("pk", [])),
             "checksum": v.get("checksum") or ""}
            for t, v in (manifest.get("tables") or {}).items()]
    return pd.DataFrame(rows, columns=["table", "rows", "primary_key", "checksum"])


def verify_backup_file(path: str | Path) -> dict[str, Any]:
    """Check a backup file against its manifest: size, then sha256 (read in chunks).

    Args:
        path: The backup file.

    Returns:
        The manifest.

    Raises:
        VerificationFailed: No manifest (check ``manifest``), size differs (check ``size``,
            e.g. truncated) or content differs (check ``sha256``, e.g. a flipped byte).
    """
    p = Path(path)
    if not p.is_file():
        raise VerificationFailed("file", str(p), "the backup file does not exist")
    try:
        manifest = load_manifest(p)
    except OpslibError as exc:
        raise VerificationFailed("manifest", str(p), f"{exc}; without a manifest the backup "
                                 "cannot be verified, take a new one") from exc
    want_sha = str(manifest.get("sha256") or "")
    if not want_sha:
        raise VerificationFailed("manifest", str(p), "the manifest records no sha256 "
                                 "(checksum unknown); take a new backup")
    size = p.stat().st_size
    want_size = int(manifest.get("size_bytes", -1))
    if size != want_size:
        raise VerificationFailed(
            "size", str(p), f"manifest says {want_size} bytes, file has {size} bytes"
            + (" (truncated)" if size < want_size else "") + "; do not restore from this file")
    got = sha256_file(p)
    if got != want_sha:
        raise VerificationFailed(
            "sha256", str(p), f"manifest says {want_sha[:16]}…, file hashes to {got[:16]}…: "
            "the file changed after the backup (corruption or tampering); "
            "do not restore from it, use an older verified backup")
    return manifest


# --------------------------------------------------------------------------------------------
# listing


def _created_at(path: Path, manifest: Mapping[str, Any] | None) -> dt.datetime:
    t = _parse_time((manifest or {}).get("started_at"))
    if t is not None:
        return t
    m = _NAME_RE.match(path.name.removesuffix(PARTIAL_SUFFIX))
    if m:
        return dt.datetime.strptime(m["ts"], _TS_FORMAT).replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)


def _drill_runs(path: Path) -> list[dict[str, Any]]:
    dpath = _drill_path(path)
    if not dpath.is_file():
        return []
    try:
        data = json.loads(dpath.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    runs = data.get("runs") if isinstance(data, dict) else None
    return [r for r in runs or [] if isinstance(r, dict)]


_LIST_COLUMNS = ["file", "kind", "source", "created_at", "age_s", "age_h", "size_bytes",
                 "size_mb", "manifest", "sha256", "last_drill", "last_drill_at", "verified",
                 "path"]


def list_backups(backup_dir: str | Path, *, now: dt.datetime | None = None) -> pd.DataFrame:
    """The backups in a folder with their age, size, manifest state and last drill verdict.

    Manifest states: ``ok`` (manifest with sha256 and matching size), ``missing`` (no manifest),
    ``checksum unknown`` (manifest unreadable or without sha256), ``size mismatch`` (file size
    differs: truncated or replaced), ``partial`` (an unfinished ``.partial`` file). The checksum
    itself is only recomputed by a drill (:func:`verify_backup_file`).

    Args:
        backup_dir: The folder.
        now: Reference time for ages (default: now, UTC).

    Returns:
        One row per backup file, newest first; ``verified`` is True when the last drill of the
        file passed.
    """
    folder = Path(backup_dir)
    now = now or _utcnow()
    rows = []
    files = sorted(folder.iterdir()) if folder.is_dir() else []
    for p in files:
        name = p.name
        partial = name.endswith(PARTIAL_SUFFIX)
        base = name.removesuffix(PARTIAL_SUFFIX)
        if not p.is_file() or not base.endswith(BACKUP_SUFFIXES):
            continue
        manifest: dict[str, Any] | None = None
        state = "partial" if partial else "missing"
        if not partial and manifest_path(p).is_file():
            try:
                manifest = load_manifest(p)
            except OpslibError:
                state = "checksum unknown"
            else:
                if not manifest.get("sha256"):
                    state = "checksum unknown"
                elif int(manifest.get("size_bytes", -1)) != p.stat().st_size:
                    state = "size mismatch"
                else:
                    state = "ok"
        runs = [] if partial else _drill_runs(p)
        last = runs[-1] if runs else {}
        created = _created_at(p, manifest)
        age = (now - created).total_seconds()
        size = p.stat().st_size
        m = _NAME_RE.match(base)
        kind = "postgres" if base.endswith(".dump") else "redis"
        rows.append({
            "file": name,
            "kind": (manifest or {}).get("kind", kind),
            "source": (manifest or {}).get("source") or (m["source"] if m else base),
            "created_at": created,
            "age_s": round(age, 1),
            "age_h": round(age / 3600, 2),
            "size_bytes": size,
            "size_mb": round(size / 1e6, 2),
            "manifest": state,
            "sha256": str((manifest or {}).get("sha256", ""))[:12],
            "last_drill": ("passed" if last.get("verified") else "failed") if last else "",
            "last_drill_at": _parse_time(last.get("ended_at")) if last else None,
            "verified": bool(last.get("verified")) and state == "ok",
            "path": str(p),
        })
    df = pd.DataFrame(rows, columns=_LIST_COLUMNS)
    if len(df):
        df = df.sort_values("created_at", ascending=False, kind="stable").reset_index(drop=True)
    return df


def _pick_backup(backup_dir: Path, backup_file: str | Path) -> Path:
    if str(backup_file):
        p = Path(backup_file)
        p = p if p.is_absolute() or p.parent != Path(".") else backup_dir / p
        if not p.is_file():
            raise BackupNotFound(str(p), "no such backup file")
        return p
    df = list_backups(backup_dir)
    df = df[(df["kind"] == "postgres") & (df["manifest"] != "partial")] if len(df) else df
    if not len(df):
        raise BackupNotFound(str(backup_dir), "no PostgreSQL backup (.dump) in this folder")
    return Path(str(df.iloc[0]["path"]))


def verified_count(inventory: pd.DataFrame) -> int:
    """How many backups of a :func:`list_backups` frame passed their drill verification."""
    return int(inventory["verified"].sum()) if len(inventory) else 0


def without_paths(frame: pd.DataFrame) -> pd.DataFrame:
    """A backup listing or retention plan for display: without the absolute ``path`` column."""
    return frame.drop(columns=["path"], errors="ignore")
