"""Backups and restore drills: PostgreSQL dumps with manifests, Redis snapshots, retention.

A backup nobody has restored is a hope, not a backup. This module takes backups of a compose
project's database, restores them into a throw-away container and proves they are complete.

* :func:`take_backup` streams ``pg_dump -Fc`` out of the ``db`` container into
  ``<backup_dir>/<project>-<database>-<UTC ts>.dump`` (written as ``.partial``, renamed when
  complete) and writes ``<file>.manifest.json`` beside it: sha256, size, server version, per-table
  exact row counts and content checksums, catalog counts (constraints, indexes) and the answers of
  a few application queries -- all taken in the *same snapshot* as the dump (a transaction holds
  ``pg_export_snapshot()`` open and ``pg_dump --snapshot`` uses it).
* :func:`run_drill` verifies a backup's checksum, starts a scratch container from the production
  image (own internal network, no published ports, labelled ``opslib.drill=1``), restores with
  ``pg_restore -j`` and compares the restored database with the manifest. Every phase is timed;
  the verdict is kept beside the backup (``<file>.drill.json``). The scratch container is removed
  in a ``finally``; :func:`cleanup_scratch` removes leftovers of crashed drills.
* :func:`redis_persistence` / :func:`snapshot_redis` check and copy the cache's persistence.
* :func:`plan_retention` / :func:`apply_retention` prune old backups (plan, then apply, with a
  journal) and never delete the newest verified backup.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import io
import json
import os
import re
import secrets
import tarfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from opslib import __version__
from opslib import engine as eng
from opslib.demo import SHOP_APP_QUERIES
from opslib.engine import (
    Client,
    exec_in_container,
    exec_to_file,
    service_container,
)
from opslib.exceptions import (
    ApplyError,
    BackupNotFound,
    BadInputFormat,
    BadParameter,
    CommandFailed,
    ContainerNotFound,
    EngineRefused,
    EngineUnreachable,
    OpslibError,
    PlanError,
    VerificationFailed,
)
from opslib.journal import Journal
from opslib.redact import redact_text

__all__ = [
    "DRILL_LABEL",
    "DRILL_RUN_LABEL",
    "SHOP_APP_QUERIES",
    "Backup",
    "DrillResult",
    "RecoveryObjectives",
    "apply_retention",
    "cleanup_scratch",
    "drill_history",
    "list_backups",
    "load_drill",
    "load_manifest",
    "manifest_path",
    "manifest_tables",
    "new_run_id",
    "plan_retention",
    "recovery_objectives",
    "redis_persistence",
    "resolve_backup_dir",
    "rto_statement",
    "run_drill",
    "sha256_file",
    "snapshot_redis",
    "take_backup",
    "timeline_figure",
    "verify_backup_file",
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
_RESTORE_PATH = "/tmp/opslib-restore.dump"
_KEEP_DRILL_RUNS = 20

#: Session settings that make ``row::text`` and timestamps render the same on every server.
_PGOPTIONS = ("-c datestyle=ISO,YMD -c timezone=UTC -c intervalstyle=postgres "
              "-c extra_float_digits=1 -c bytea_output=hex -c statement_timeout=0")



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


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


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
# SQL used at backup time (production, in the dump's snapshot) and after restore (scratch)

_USER_NS = "{n}.nspname !~ '^pg_' AND {n}.nspname <> 'information_schema'"

_TABLES_SQL = f"""
SELECT coalesce(json_agg(json_build_object(
    'table', format('%I.%I', n.nspname, c.relname),
    'pk', (SELECT coalesce(json_agg(format('%I', a.attname) ORDER BY k.ord), '[]'::json)
           FROM pg_index i
           CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
           WHERE i.indrelid = c.oid AND i.indisprimary))
    ORDER BY n.nspname, c.relname), '[]'::json)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND {_USER_NS.format(n="n")}
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
"""

_CATALOG_SQL = f"""
SELECT json_build_object(
  'server_version', current_setting('server_version'),
  'constraints', (SELECT coalesce(json_object_agg(contype, cnt), '{{}}'::json) FROM (
      SELECT co.contype::text AS contype, count(*) AS cnt FROM pg_constraint co
      JOIN pg_namespace n ON n.oid = co.connamespace
      WHERE {_USER_NS.format(n="n")} GROUP BY 1) s),
  'constraint_names', (SELECT coalesce(json_agg(x ORDER BY x), '[]'::json) FROM (
      SELECT format('%I.%s.%I', n.nspname,
                    coalesce(co.conrelid::regclass::text, co.contypid::regtype::text),
                    co.conname) AS x
      FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace
      WHERE {_USER_NS.format(n="n")}) s),
  'indexes', (SELECT count(*) FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_namespace n ON n.oid = ic.relnamespace WHERE {_USER_NS.format(n="n")}),
  'index_names', (SELECT coalesce(json_agg(format('%I.%I', n.nspname, ic.relname)
                                           ORDER BY n.nspname, ic.relname), '[]'::json)
      FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_namespace n ON n.oid = ic.relnamespace WHERE {_USER_NS.format(n="n")}),
  'invalid_indexes', (SELECT count(*) FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
      JOIN pg_namespace n ON n.oid = ic.relnamespace
      WHERE {_USER_NS.format(n="n")} AND NOT (i.indisvalid AND i.indisready)),
  'sequences', (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'S' AND {_USER_NS.format(n="n")}),
  'extensions', (SELECT coalesce(json_agg(extname ORDER BY extname), '[]'::json)
      FROM pg_extension)
)
"""


def _counts_sql(tables: Sequence[str]) -> str:
    if not tables:
        return "SELECT '{}'::json"
    parts = [f"SELECT {_sql_literal(t)} AS t, count(*) AS n FROM {t}" for t in tables]
    return ("SELECT coalesce(json_object_agg(t, n), '{}'::json) FROM (\n"
            + "\nUNION ALL ".join(parts) + "\n) s")


def _checksums_sql(tables: Mapping[str, Sequence[str]]) -> str:
    """One query: md5 over the md5 of every row's text, rows in primary-key order."""
    if not tables:
        return "SELECT '{}'::json"
    parts = []
    for table, pk in tables.items():
        order = ", ".join(f"_opslib_row.{col}" for col in pk) if pk else "md5(_opslib_row::text)"
        parts.append(
            f"SELECT {_sql_literal(table)} AS t, (SELECT md5(coalesce(string_agg("
            f"md5(_opslib_row::text), '' ORDER BY {order}), '')) FROM {table} AS _opslib_row) AS h"
        )
    return ("SELECT coalesce(json_object_agg(t, h), '{}'::json) FROM (\n"
            + "\nUNION ALL ".join(parts) + "\n) s")


def _app_query_sql(sql: str) -> str:
    body = sql.strip().rstrip(";")
    return ("SELECT json_build_object('rows', count(*), 'md5', md5(coalesce(string_agg("
            "_opslib_q::text, E'\\n' ORDER BY _opslib_q::text), ''))) "
            f"FROM ({body}) AS _opslib_q")


# --------------------------------------------------------------------------------------------
# a psql session held open over a docker exec socket (keeps the exported snapshot alive)


class _PsqlSession:
    """``psql`` running in a container, fed over the exec socket, one query at a time.

    Each query is followed by ``\\echo <marker>``; the answer is the last non-empty stdout line
    before the marker (``None`` when the query failed; psql then printed the error on stderr).
    """

    def __init__(self, client: Client, container: Any, *, user: str, database: str,
                 timeout_s: float) -> None:
        self.container = container if isinstance(container, str) else container.name
        self.cmd = ["psql", "-X", "-q", "-A", "-t", "-U", user, "-d", database]
        self._client = client
        self._exec_id, self._sock = eng.exec_socket(client, self.container, self.cmd,
                                                    environment={"PGOPTIONS": _PGOPTIONS})
        self._raw = getattr(self._sock, "_sock", self._sock)
        with contextlib.suppress(AttributeError, OSError):
            self._raw.settimeout(timeout_s)
        self._frames = b""
        self._stdout = b""
        self._stderr = bytearray()
        self._n = 0
        self._eof = False

    def _fill(self) -> bool:
        if self._eof:
            return False
        try:
            data = self._raw.recv(65536)
        except TimeoutError as exc:
            raise CommandFailed(self.cmd, -1, "no answer from psql before the timeout",
                                self.container) from exc
        if not data:
            self._eof = True
            return False
        self._frames += data
        while len(self._frames) >= 8:
            stream, size = self._frames[0], int.from_bytes(self._frames[4:8], "big")
            if len(self._frames) < 8 + size:
                break
            payload, self._frames = self._frames[8:8 + size], self._frames[8 + size:]
            if stream == 2:
                if len(self._stderr) < 65536:
                    self._stderr += payload
            else:
                self._stdout += payload
        return True

    def query(self, sql: str) -> str | None:
        self._n += 1
        marker = f"__opslib_end_{self._n}__\n".encode()
        self._raw.sendall((sql.strip().rstrip(";") + ";\n\\echo " + marker.decode()).encode())
        while marker not in self._stdout:
            if not self._fill():
                raise CommandFailed(self.cmd, -1, self.stderr or "psql ended early",
                                    self.container)
        before, _, self._stdout = self._stdout.partition(marker)
        lines = [ln for ln in before.decode("utf-8", "replace").splitlines() if ln.strip()]
        return lines[-1] if lines else None

    def query_json(self, sql: str) -> Any:
        line = self.query(sql)
        if line is None:
            raise CommandFailed(self.cmd, -1, self.stderr or "query returned nothing",
                                self.container)
        return json.loads(line)

    @property
    def stderr_len(self) -> int:
        return len(self._stderr)

    def stderr_since(self, mark: int) -> str:
        return redact_text(bytes(self._stderr[mark:]).decode("utf-8", "replace"))

    @property
    def stderr(self) -> str:
        return redact_text(bytes(self._stderr).decode("utf-8", "replace"))

    def close(self, commit: bool = True) -> None:
        with contextlib.suppress(OSError):
            self._raw.sendall(b"COMMIT;\n\\q\n" if commit else b"ROLLBACK;\n\\q\n")
        with contextlib.suppress(OSError, CommandFailed):
            while self._fill():
                pass
        with contextlib.suppress(OSError):
            self._sock.close()


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


def _snapshot_facts(
    session: _PsqlSession, checksum_max_rows: int, app_queries: Mapping[str, str]
) -> dict[str, Any]:
    """Everything the manifest records about the database, read inside the held snapshot."""
    table_rows = session.query_json(_TABLES_SQL)
    pks = {r["table"]: list(r["pk"]) for r in table_rows}
    counts = {k: int(v) for k, v in session.query_json(_counts_sql(list(pks))).items()}
    small = {t: pk for t, pk in pks.items() if counts.get(t, 0) <= checksum_max_rows}
    sums = session.query_json(_checksums_sql(small))
    catalog = session.query_json(_CATALOG_SQL)
    answers: dict[str, Any] = {}
    for name, sql in app_queries.items():
        # A savepoint keeps the snapshot transaction usable when a query fails (other schema).
        session.query("SAVEPOINT opslib_q")
        mark = session.stderr_len
        line = session.query(_app_query_sql(sql))
        session.query("ROLLBACK TO SAVEPOINT opslib_q")
        if line is None:
            err = session.stderr_since(mark).strip()
            answers[name] = {"sql": sql, "error": err[-300:] or "the query failed"}
        else:
            answers[name] = {"sql": sql, **json.loads(line)}
    tables = {t: {"rows": counts.get(t, 0), "pk": pk, "checksum": sums.get(t)}
              for t, pk in pks.items()}
    return {"tables": tables, "catalog": catalog, "app_queries": answers}


def take_backup(
    client: Client,
    project: str,
    *,
    backup_dir: str | Path,
    service: str = "db",
    database: str = "shop",
    user: str = "shop",
    compress_level: int = 1,
    checksum_max_rows: int = 200_000,
    app_queries: Mapping[str, str] | None = None,
    timeout_s: float = 3600.0,
) -> Backup:
    """Dump a PostgreSQL database of a compose service to a file on the host, with a manifest.

    ``pg_dump -Fc -Z<level>`` runs in the service's container; its output is streamed chunk by
    chunk to ``<backup_dir>/<project>-<database>-<UTC ts>.dump.partial`` while it is hashed, and
    renamed to ``.dump`` only when pg_dump succeeded (a crash leaves nothing that looks complete).
    The manifest records row counts, content checksums (tables with at most
    ``checksum_max_rows`` rows), catalog counts and application-query answers, all read in the
    same snapshot the dump uses (``pg_export_snapshot()`` held open, ``pg_dump --snapshot``).

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.
        backup_dir: Folder for backups (created if missing).
        service: The database service.
        database: Database to dump.
        user: Role to connect as (over the container's local socket).
        compress_level: ``pg_dump -Z`` level 0-9 (1 is fast; the default 6 makes pg_dump
            CPU-bound).
        checksum_max_rows: Tables with at most this many rows get a content checksum.
        app_queries: Name -> SELECT answered at backup time and compared after a restore
            (default :data:`SHOP_APP_QUERIES`; a query that fails here is recorded and skipped).
        timeout_s: Seconds to wait for any single answer from the database.

    Returns:
        The :class:`Backup` (path and manifest).

    Raises:
        BadParameter: ``compress_level`` or ``checksum_max_rows`` out of range.
        ServiceNotFound: The project has no such service.
        CommandFailed: pg_dump (or a query) failed; no file is left behind.
    """
    _check_int("compress_level", compress_level, 0, 9)
    _check_int("checksum_max_rows", checksum_max_rows, 0)
    folder = Path(backup_dir)
    folder.mkdir(parents=True, exist_ok=True)
    container = service_container(client, project, service)
    if container.status != "running":
        raise CommandFailed(["pg_dump"], -1, f"service {service!r} is {container.status}; "
                            "start it first", container.name)
    queries = dict(SHOP_APP_QUERIES if app_queries is None else app_queries)
    started = _utcnow()
    target = _unique_path(folder, f"{project}-{database}-{started.strftime(_TS_FORMAT)}", ".dump")
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    version = exec_in_container(client, container, ["pg_dump", "--version"]).stdout.strip()

    session = _PsqlSession(client, container, user=user, database=database, timeout_s=timeout_s)
    ok = False
    try:
        session.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snap = session.query_json(
            "SELECT json_build_object('snapshot', pg_export_snapshot(), "
            "'server_version', current_setting('server_version'), 'snapshot_time', now())"
        )
        facts = _snapshot_facts(session, checksum_max_rows, queries)
        digest = hashlib.sha256()
        cmd = ["pg_dump", "-Fc", f"-Z{compress_level}", f"--snapshot={snap['snapshot']}",
               "-U", user, "-d", database]
        dump_started = _utcnow()
        with open(partial, "wb") as fh:
            code, written, err = exec_to_file(client, container, cmd, fh,
                                              chunk_callback=digest.update)
            fh.flush()
            os.fsync(fh.fileno())
        if code != 0:
            raise CommandFailed(cmd, code, redact_text(err), container.name)
        ok = True
    finally:
        session.close(commit=ok)
        if not ok:
            partial.unlink(missing_ok=True)
    os.replace(partial, target)
    ended = _utcnow()
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "kind": "postgres",
        "file": target.name,
        "source": f"{project}/{service}/{database}",
        "project": project,
        "service": service,
        "container": container.name,
        "image": (container.attrs.get("Config") or {}).get("Image", ""),
        "image_id": container.attrs.get("Image", ""),
        "database": database,
        "user": user,
        "server_version": snap["server_version"],
        "pg_dump_version": version,
        "sha256": digest.hexdigest(),
        "size_bytes": written,
        "started_at": _iso(started),
        "dump_started_at": _iso(dump_started),
        "ended_at": _iso(ended),
        "duration_s": round((ended - started).total_seconds(), 3),
        "snapshot_time": snap["snapshot_time"],
        "consistency": "row counts, checksums and queries read in the dump's snapshot "
                       "(pg_export_snapshot + pg_dump --snapshot)",
        "compress_level": compress_level,
        "checksum_max_rows": checksum_max_rows,
        "opslib_version": __version__,
        **facts,
    }
    _write_json_atomic(manifest_path(target), manifest)
    return Backup(target, manifest)


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


# --------------------------------------------------------------------------------------------
# drills


_PHASE_COLUMNS = ["phase", "started_at", "ended_at", "seconds", "ok", "detail"]
_CHECK_COLUMNS = ["check", "object", "expected", "found", "ok"]


@dataclass
class DrillResult:
    """What a restore drill did and found.

    Attributes:
        run_id: The drill's id (also the ``opslib.drill.run`` label of its scratch objects).
        backup: The backup file restored.
        verified: Whether every check passed.
        phases: One row per phase: phase, started_at, ended_at, seconds, ok, detail.
        checks: One row per comparison: check, object, expected, found, ok.
        error: The failure message ("" when verified).
        failed_check: Name of the first failed check ("" when verified).
        image: The image the scratch database ran (the production db's image id).
        started_at: When the drill started.
        ended_at: When the drill (including cleanup) ended.
        restore_jobs: ``pg_restore -j``.
        snapshot_time: When the restored data was current (the backup's snapshot).
    """

    run_id: str
    backup: Path
    verified: bool = False
    phases: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=_PHASE_COLUMNS))
    checks: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=_CHECK_COLUMNS))
    error: str = ""
    failed_check: str = ""
    image: str = ""
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    restore_jobs: int = 0
    snapshot_time: str = ""

    def phase_seconds(self, phase: str) -> float | None:
        """Seconds a phase took (``None`` if it did not run)."""
        rows = self.phases[self.phases["phase"] == phase]
        return float(rows["seconds"].iloc[0]) if len(rows) else None

    @property
    def rto_s(self) -> float | None:
        """Measured recovery time: start of the restore procedure (checksum verification of the
        backup) to the end of the verification of the restored database; ``None`` unless the
        drill verified. Cleanup of the scratch container is not part of it."""
        if not self.verified or not len(self.phases):
            return None
        ph = self.phases[self.phases["phase"] != "cleanup"]
        start, end = ph["started_at"].min(), ph["ended_at"].max()
        return round(float((end - start).total_seconds()), 3)

    @property
    def summary(self) -> str:
        """One sentence for a check's detail."""
        if self.verified:
            n = int(self.checks["ok"].sum()) if len(self.checks) else 0
            return (f"{self.backup.name} restored with pg_restore -j {self.restore_jobs} into a "
                    f"scratch container and verified: {n} checks passed, RTO {self.rto_s} s")
        return self.error or f"drill of {self.backup.name} did not complete"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (kept in ``<backup>.drill.json``)."""
        def frame(df: pd.DataFrame) -> list[dict[str, Any]]:
            out = []
            for rec in df.to_dict(orient="records"):
                out.append({str(k): (_iso(v) if isinstance(v, dt.datetime) else
                                     v.item() if hasattr(v, "item") else v)
                            for k, v in rec.items()})
            return out

        return {
            "run_id": self.run_id, "backup": str(self.backup), "verified": self.verified,
            "error": self.error, "failed_check": self.failed_check, "image": self.image,
            "started_at": _iso(self.started_at) if self.started_at else None,
            "ended_at": _iso(self.ended_at) if self.ended_at else None,
            "restore_jobs": self.restore_jobs, "snapshot_time": self.snapshot_time,
            "rto_s": self.rto_s, "phases": frame(self.phases), "checks": frame(self.checks),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DrillResult:
        """Rebuild a result from :meth:`to_dict` output."""
        phases = pd.DataFrame(list(data.get("phases") or []), columns=_PHASE_COLUMNS)
        for col in ("started_at", "ended_at"):
            phases[col] = pd.to_datetime(phases[col], utc=True)
        return cls(
            run_id=str(data.get("run_id", "")), backup=Path(str(data.get("backup", ""))),
            verified=bool(data.get("verified")), phases=phases,
            checks=pd.DataFrame(list(data.get("checks") or []), columns=_CHECK_COLUMNS),
            error=str(data.get("error") or ""), failed_check=str(data.get("failed_check") or ""),
            image=str(data.get("image") or ""), started_at=_parse_time(data.get("started_at")),
            ended_at=_parse_time(data.get("ended_at")),
            restore_jobs=int(data.get("restore_jobs") or 0),
            snapshot_time=str(data.get("snapshot_time") or ""),
        )


class _Phases:
    """Times named phases; a phase that raises is recorded as failed with the error."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def phase(self, name: str, detail: str = "") -> Iterator[dict[str, Any]]:
        row: dict[str, Any] = {"phase": name, "started_at": _utcnow(), "ended_at": None,
                               "seconds": 0.0, "ok": True, "detail": detail}
        t0 = time.perf_counter()
        self.rows.append(row)
        try:
            yield row
        except BaseException as exc:
            row["ok"] = False
            row["detail"] = redact_text(str(exc))[:500]
            raise
        finally:
            row["seconds"] = round(time.perf_counter() - t0, 3)
            row["ended_at"] = row["started_at"] + dt.timedelta(seconds=row["seconds"])

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows, columns=_PHASE_COLUMNS)
        for col in ("started_at", "ended_at"):
            df[col] = pd.to_datetime(df[col], utc=True)
        return df


def new_run_id() -> str:
    """A fresh drill id: UTC time plus 6 random hex digits."""
    return _utcnow().strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def _tar_stream(path: Path, arcname: str, chunk: int = _CHUNK) -> Iterator[bytes]:
    """A one-member tar archive of ``path``, generated on the fly (never whole in memory)."""
    size = path.stat().st_size
    info = tarfile.TarInfo(arcname)
    info.size = size
    info.mode = 0o644
    info.mtime = int(path.stat().st_mtime)
    yield info.tobuf(format=tarfile.GNU_FORMAT)
    sent = 0
    with open(path, "rb") as fh:
        while sent < size:
            block = fh.read(min(chunk, size - sent))
            if not block:
                raise VerificationFailed("copy", str(path), "the file shrank while being copied")
            sent += len(block)
            yield block
    yield b"\0" * ((-size) % tarfile.BLOCKSIZE) + b"\0" * (2 * tarfile.BLOCKSIZE)


def _scratch_psql_json(client: Client, scratch: Any, database: str, sql: str) -> Any:
    cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", "postgres",
           "-d", database, "-c", sql]
    res = exec_in_container(client, scratch, cmd, environment={"PGOPTIONS": _PGOPTIONS})
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    return json.loads(lines[-1]) if lines else None


def _wait_ready(client: Client, scratch: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        eng.reload(scratch)
        if scratch.status in ("exited", "dead"):
            logs = eng.container_logs(scratch, tail=30)
            raise CommandFailed(["shop-db-entrypoint"], int(
                (scratch.attrs.get("State") or {}).get("ExitCode") or -1),
                redact_text(logs), scratch.name)
        if scratch.status == "running":
            res = exec_in_container(client, scratch, ["pg_isready", "-q", "-U", "postgres"],
                                    check=False)
            if res.exit_code == 0:
                return
        if time.monotonic() > deadline:
            raise CommandFailed(["pg_isready"], -1, f"scratch database not ready after "
                                f"{timeout_s:g} s", scratch.name)
        time.sleep(0.25)


def _compare(
    manifest: Mapping[str, Any], restored: Mapping[str, Any], checksum_max_rows: int
) -> list[dict[str, Any]]:
    """Compare the manifest (production at backup time) with the restored database."""
    rows: list[dict[str, Any]] = []

    def add(check: str, obj: str, expected: Any, found: Any, ok: bool | None = None) -> None:
        rows.append({"check": check, "object": obj, "expected": str(expected),
                     "found": str(found), "ok": bool(expected == found if ok is None else ok)})

    want_tables = manifest.get("tables") or {}
    counts = restored.get("counts") or {}
    sums = restored.get("checksums") or {}
    missing = sorted(set(want_tables) - set(counts))
    add("tables_present", "database", len(want_tables), len(want_tables) - len(missing),
        not missing)
    for t in missing:
        add("tables_present", t, "present", "missing", False)
    for t, info in want_tables.items():
        if t in counts:
            add("row_count", t, int(info.get("rows", 0)), int(counts[t]))
    for t, info in want_tables.items():
        want = info.get("checksum")
        if want and t in counts and int(info.get("rows", 0)) <= checksum_max_rows:
            add("content_checksum", t, want, sums.get(t, "not computed"))
    want_cat = manifest.get("catalog") or {}
    cat = restored.get("catalog") or {}
    names = {"p": "primary key", "f": "foreign key", "u": "unique", "c": "check",
             "x": "exclusion", "t": "trigger"}
    for ctype in sorted(set(want_cat.get("constraints") or {}) | set(cat.get("constraints") or {})):
        add("constraints", names.get(ctype, ctype),
            int((want_cat.get("constraints") or {}).get(ctype, 0)),
            int((cat.get("constraints") or {}).get(ctype, 0)))
    lost = sorted(set(want_cat.get("constraint_names") or []) -
                  set(cat.get("constraint_names") or []))
    if lost:
        add("constraints", "missing: " + ", ".join(lost[:10]), "none missing",
            f"{len(lost)} missing", False)
    add("indexes", "count", int(want_cat.get("indexes", 0)), int(cat.get("indexes", 0)))
    lost = sorted(set(want_cat.get("index_names") or []) - set(cat.get("index_names") or []))
    if lost:
        add("indexes", "missing: " + ", ".join(lost[:10]), "none missing", f"{len(lost)} missing",
            False)
    add("indexes", "invalid after restore", 0, int(cat.get("invalid_indexes", 0)))
    add("sequences", "count", int(want_cat.get("sequences", 0)), int(cat.get("sequences", 0)))
    add("extensions", "installed", ", ".join(want_cat.get("extensions") or []),
        ", ".join(cat.get("extensions") or []))
    answers = restored.get("app_queries") or {}
    for name, want_q in (manifest.get("app_queries") or {}).items():
        if "error" in want_q:
            continue  # the query did not answer on production either (different schema)
        got = answers.get(name) or {}
        if "error" in got:
            add("app_query", name, f"{want_q.get('rows')} rows", got["error"][:200], False)
            continue
        add("app_query", name, f"{want_q.get('rows')} rows md5 {str(want_q.get('md5'))[:12]}",
            f"{got.get('rows')} rows md5 {str(got.get('md5'))[:12]}",
            want_q.get("rows") == got.get("rows") and want_q.get("md5") == got.get("md5"))
    return rows


def _restored_facts(
    client: Client, scratch: Any, database: str, manifest: Mapping[str, Any],
    checksum_max_rows: int,
) -> dict[str, Any]:
    tables = _scratch_psql_json(client, scratch, database, _TABLES_SQL) or []
    pks = {r["table"]: list(r["pk"]) for r in tables}
    counts = _scratch_psql_json(client, scratch, database, _counts_sql(list(pks))) or {}
    want = manifest.get("tables") or {}
    to_sum = {t: pks[t] for t, info in want.items() if t in pks and info.get("checksum")
              and int(info.get("rows", 0)) <= checksum_max_rows}
    sums = _scratch_psql_json(client, scratch, database, _checksums_sql(to_sum)) or {}
    catalog = _scratch_psql_json(client, scratch, database, _CATALOG_SQL) or {}
    answers: dict[str, Any] = {}
    for name, q in (manifest.get("app_queries") or {}).items():
        if "error" in q:
            continue
        try:
            answers[name] = _scratch_psql_json(client, scratch, database, _app_query_sql(q["sql"]))
        except CommandFailed as exc:
            answers[name] = {"error": exc.stderr or str(exc)}
    return {"counts": counts, "checksums": sums, "catalog": catalog, "app_queries": answers}


def _still_running(container: Any) -> bool:
    try:
        eng.reload(container)
    except (ContainerNotFound, EngineRefused, EngineUnreachable):  # removed, or engine gone
        return False
    return bool(container.status == "running")


def _write_drill_record(result: DrillResult) -> None:
    dpath = _drill_path(result.backup)
    runs = _drill_runs(result.backup)
    runs.append(result.to_dict())
    _write_json_atomic(dpath, {"backup": result.backup.name, "runs": runs[-_KEEP_DRILL_RUNS:]})


def run_drill(
    client: Client,
    project: str,
    *,
    backup_dir: str | Path,
    backup_file: str | Path = "",
    service: str = "db",
    restore_jobs: int = 2,
    checksum_max_rows: int = 200_000,
    run_id: str = "",
    labels: Mapping[str, str] | None = None,
    ready_timeout_s: float = 180.0,
) -> DrillResult:
    """Restore a backup into a scratch container from the production image and verify it.

    Phases (each timed): ``verify_checksum`` (size and sha256 against the manifest),
    ``start_scratch`` (own internal network, container from the production db's image id, no
    published ports, labels ``opslib.drill=1`` / ``opslib.drill.run=<id>``, empty target
    database), ``copy`` (the dump streamed in with ``put_archive``, its sha256 checked inside),
    ``restore`` (``pg_restore -j``), ``verify`` (tables, exact row counts, content checksums of
    tables up to ``checksum_max_rows`` rows, constraints, indexes, sequences, extensions and the
    manifest's application queries, all compared with production at backup time) and
    ``cleanup`` (in a ``finally``: container and network removed, also when the drill fails).
    The verdict is appended to ``<backup>.drill.json`` (see :func:`load_drill`).

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name (its db service provides the image).
        backup_dir: Folder with backups.
        backup_file: File name or path of the backup to restore ("" = the newest .dump).
        service: The production database service.
        restore_jobs: ``pg_restore -j`` parallel jobs.
        checksum_max_rows: Compare content checksums for tables with at most this many rows.
        run_id: Drill id ("" = :func:`new_run_id`); pass one to find the record afterwards.
        labels: Extra labels for the scratch container and network.
        ready_timeout_s: Seconds to wait for the scratch database to accept connections.

    Returns:
        The :class:`DrillResult` of a verified drill.

    Raises:
        BackupNotFound: No backup in the folder (or no such file).
        VerificationFailed: A check failed; ``check`` names it (``sha256``, ``size``,
            ``manifest``, ``copy_sha256``, ``restore``, ``row_count``, ``content_checksum``,
            ``constraints``, ``indexes``, ``app_query`` ...) and ``path`` the backup file. The
            scratch container is gone and the failed verdict is recorded.
    """
    _check_int("restore_jobs", restore_jobs, 1, 64)
    _check_int("checksum_max_rows", checksum_max_rows, 0)
    folder = Path(backup_dir)
    path = _pick_backup(folder, backup_file)
    run_id = run_id or new_run_id()
    result = DrillResult(run_id=run_id, backup=path, started_at=_utcnow(),
                         restore_jobs=restore_jobs)
    all_labels = {**dict(labels or {}), DRILL_LABEL: "1", DRILL_RUN_LABEL: run_id}
    timer = _Phases()
    failure: VerificationFailed | None = None
    other: BaseException | None = None
    scratch: Any = None
    network: Any = None
    checks: list[dict[str, Any]] = []
    try:
        with timer.phase("verify_checksum", path.name):
            manifest = verify_backup_file(path)
        result.snapshot_time = str(manifest.get("snapshot_time") or manifest.get("started_at"))
        database = str(manifest.get("database") or "postgres")
        owner = str(manifest.get("user") or "postgres")
        checks.append({"check": "sha256", "object": path.name, "expected": manifest["sha256"],
                       "found": manifest["sha256"], "ok": True})
        with timer.phase("start_scratch") as row:
            prod = service_container(client, project, service)
            result.image = str(prod.attrs.get("Image", ""))
            name = f"opslib-drill-{run_id}"
            network = eng.create_network(client, name, internal=True, labels=all_labels)
            scratch = eng.run_container(
                client, result.image, name=name, network=network.name, labels=all_labels,
                environment={"POSTGRES_PASSWORD": secrets.token_urlsafe(24)},
            )
            _wait_ready(client, scratch, ready_timeout_s)
            exec_in_container(client, scratch, [
                "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres",
                "-c", f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
                      f"{_sql_literal(owner)}) THEN CREATE ROLE {_sql_ident(owner)}; END IF; "
                      "END $$",
                "-c", f"DROP DATABASE IF EXISTS {_sql_ident(database)}",
                "-c", f"CREATE DATABASE {_sql_ident(database)} OWNER {_sql_ident(owner)}"])
            row["detail"] = f"{scratch.name} from {result.image[:19]} on internal network"
        with timer.phase("copy", f"{manifest.get('size_bytes')} bytes") as row:
            ok = eng.put_archive(scratch, os.path.dirname(_RESTORE_PATH),
                                 _tar_stream(path, os.path.basename(_RESTORE_PATH)))
            if not ok:
                raise VerificationFailed("copy", str(path), "the engine refused the archive")
            got = exec_in_container(client, scratch, ["sha256sum", _RESTORE_PATH]).stdout.split()
            found = got[0] if got else ""
            checks.append({"check": "copy_sha256", "object": _RESTORE_PATH,
                           "expected": manifest["sha256"], "found": found,
                           "ok": found == manifest["sha256"]})
            if found != manifest["sha256"]:
                raise VerificationFailed("copy_sha256", str(path),
                                         f"the copy in the scratch container hashes to {found}")
        with timer.phase("restore", f"pg_restore -j {restore_jobs}"):
            cmd = ["pg_restore", "-j", str(restore_jobs), "-U", "postgres", "-d", database,
                   _RESTORE_PATH]
            res = exec_in_container(client, scratch, cmd, check=False)
            if res.exit_code != 0 and not _still_running(scratch):
                raise CommandFailed(cmd, res.exit_code, "the scratch container stopped or was "
                                    "removed during the restore: not a fault of the backup; "
                                    "run the drill again", scratch.name)
            checks.append({"check": "restore", "object": " ".join(cmd), "expected": "exit 0",
                           "found": f"exit {res.exit_code}", "ok": res.exit_code == 0})
            if res.exit_code != 0:
                raise VerificationFailed(
                    "restore", str(path), f"pg_restore exited {res.exit_code}: "
                    + redact_text(res.stderr.strip())[-1500:])
        with timer.phase("verify") as row:
            restored = _restored_facts(client, scratch, database, manifest, checksum_max_rows)
            compared = _compare(manifest, restored, checksum_max_rows)
            checks.extend(compared)
            bad = [c for c in compared if not c["ok"]]
            row["detail"] = f"{len(compared) - len(bad)} of {len(compared)} checks passed"
            if bad:
                first = bad[0]
                more = f" ({len(bad) - 1} more failed checks)" if len(bad) > 1 else ""
                raise VerificationFailed(
                    first["check"], str(path), f"{first['object']}: expected {first['expected']},"
                    f" found {first['found']} in the restored database{more}")
        result.verified = True
    except VerificationFailed as exc:
        failure = exc
    except BaseException as exc:
        other = exc
    finally:
        with timer.phase("cleanup") as row:
            row["detail"] = _remove_scratch(scratch, network)
    result.ended_at = _utcnow()
    result.phases = timer.frame()
    result.checks = pd.DataFrame(checks, columns=_CHECK_COLUMNS)
    if failure is not None:
        result.error = str(failure)
        result.failed_check = failure.check
        if not any(c["check"] == failure.check and not c["ok"] for c in checks):
            result.checks = pd.concat([result.checks, pd.DataFrame(
                [{"check": failure.check, "object": path.name, "expected": "pass",
                  "found": failure.detail[:300], "ok": False}], columns=_CHECK_COLUMNS)],
                ignore_index=True)
    elif other is not None:
        result.error = f"drill did not complete: {redact_text(str(other))[:500]}"
        result.failed_check = "drill_error"
    with contextlib.suppress(OSError):
        _write_drill_record(result)
    if failure is not None:
        raise failure
    if other is not None:
        raise other
    return result


def _remove_with_retry(what: str, remove: Callable[[], None], attempts: int = 5
                       ) -> tuple[bool, str]:
    """Remove one object; retried because a busy engine can refuse or time out once.

    Returns:
        ``(removed, note)``: the note tells about failed attempts.
    """
    errors: list[str] = []
    for i in range(attempts):
        try:
            remove()  # gone already counts as removed
        except (EngineRefused, EngineUnreachable) as exc:  # busy, removal in progress, timeout
            errors.append(f"{type(exc).__name__}: {redact_text(str(exc))[:200]}")
            time.sleep(0.5 * (i + 1))
            continue
        note = f" (after {len(errors)} failed attempts: {errors[-1]})" if errors else ""
        return True, what + note
    return False, f"{what}: {errors[-1]}"


def _remove_scratch(scratch: Any, network: Any) -> str:
    done: list[str] = []
    errors: list[str] = []
    if scratch is not None:
        ok, note = _remove_with_retry(f"container {scratch.name}",
                                      functools.partial(eng.remove_container, scratch))
        (done if ok else errors).append(note)
    if network is not None:
        ok, note = _remove_with_retry(f"network {network.name}",
                                      functools.partial(eng.remove_network, network))
        (done if ok else errors).append(note)
    text = "removed " + ", ".join(done) if done else "nothing to remove"
    if errors:
        text += "; NOT removed (run cleanup_scratch): " + "; ".join(errors)
    return text


def cleanup_scratch(client: Client, *, older_than_s: float = 0.0) -> pd.DataFrame:
    """Remove scratch containers and networks of earlier drills (label ``opslib.drill=1``).

    A drill removes its own scratch objects in a ``finally``; this catches what a killed kernel
    or a crashed host left behind.

    Args:
        client: A ``docker.DockerClient``.
        older_than_s: Only remove objects created more than this many seconds ago (use it when
            a drill may be running concurrently on the same engine).

    Returns:
        Columns kind, name, run, created, removed, detail (one row per object found).
    """
    def created_at(attrs: Mapping[str, Any]) -> dt.datetime | None:
        return _parse_time(str(attrs.get("Created", ""))[:26].rstrip("Z") + "+00:00")

    def young(created: dt.datetime | None) -> bool:
        return bool(older_than_s and created
                    and (now - created).total_seconds() < older_than_s)

    rows = []
    label = f"{DRILL_LABEL}=1"
    now = _utcnow()
    containers = eng.labeled_containers(client, label)
    networks = eng.labeled_networks(client, label)
    for c in containers:
        created = created_at(c.attrs)
        if young(created):
            continue
        ok, note = _remove_with_retry(f"container {c.name}",
                                      functools.partial(eng.remove_container, c))
        rows.append({"kind": "container", "name": c.name,
                     "run": c.labels.get(DRILL_RUN_LABEL, ""), "created": created,
                     "removed": ok, "detail": note})
    for n in networks:
        if not eng.reload_network(n):
            continue  # removed meanwhile
        created = created_at(n.attrs)
        if young(created) or n.attrs.get("Containers"):
            continue  # a drill that is running right now
        ok, note = _remove_with_retry(f"network {n.name}",
                                      functools.partial(eng.remove_network, n))
        rows.append({"kind": "network", "name": n.name,
                     "run": (n.attrs.get("Labels") or {}).get(DRILL_RUN_LABEL, ""),
                     "created": created, "removed": ok, "detail": note})
    return pd.DataFrame(rows, columns=["kind", "name", "run", "created", "removed", "detail"])


def drill_history(backup_dir: str | Path) -> pd.DataFrame:
    """Every recorded drill of the backups in a folder, newest first.

    Args:
        backup_dir: The folder.

    Returns:
        Columns run_id, backup, verified, failed_check, rto_s, started_at, ended_at, error.
    """
    rows = []
    folder = Path(backup_dir)
    for dpath in sorted(folder.glob("*" + DRILL_SUFFIX)) if folder.is_dir() else []:
        backup = dpath.with_name(dpath.name.removesuffix(DRILL_SUFFIX))
        for r in _drill_runs(backup):
            rows.append({"run_id": r.get("run_id", ""), "backup": backup.name,
                         "verified": bool(r.get("verified")),
                         "failed_check": r.get("failed_check", ""), "rto_s": r.get("rto_s"),
                         "started_at": _parse_time(r.get("started_at")),
                         "ended_at": _parse_time(r.get("ended_at")),
                         "error": r.get("error", "")})
    df = pd.DataFrame(rows, columns=["run_id", "backup", "verified", "failed_check", "rto_s",
                                     "started_at", "ended_at", "error"])
    if len(df):
        df = df.sort_values("ended_at", ascending=False, kind="stable").reset_index(drop=True)
    return df


def load_drill(backup_dir: str | Path, run_id: str = "") -> DrillResult | None:
    """A recorded drill, by id (or the most recent one).

    Args:
        backup_dir: The folder holding the backups and their ``.drill.json`` records.
        run_id: The drill id ("" = the most recent drill).

    Returns:
        The :class:`DrillResult`, or ``None`` when no such drill was recorded (e.g. the drill
        stopped before it found a backup).
    """
    folder = Path(backup_dir)
    best: dict[str, Any] | None = None
    for dpath in folder.glob("*" + DRILL_SUFFIX) if folder.is_dir() else []:
        for r in _drill_runs(dpath.with_name(dpath.name.removesuffix(DRILL_SUFFIX))):
            if run_id and r.get("run_id") == run_id:
                return DrillResult.from_dict(r)
            if not run_id and (best is None or str(r.get("ended_at")) > str(best.get("ended_at"))):
                best = r
    return DrillResult.from_dict(best) if best is not None else None


# --------------------------------------------------------------------------------------------
# RTO / RPO


@dataclass(frozen=True)
class RecoveryObjectives:
    """Measured RTO and RPO against their targets.

    Attributes:
        rto_s: Measured recovery time of this drill (``None`` if it did not verify).
        rpo_s: Age of the newest verified backup's data (``None`` if no backup is verified).
        rto_target_s: RTO target.
        rpo_target_s: RPO target.
        newest_verified: File name of the newest verified backup ("" if none).
    """

    rto_s: float | None
    rpo_s: float | None
    rto_target_s: float
    rpo_target_s: float
    newest_verified: str

    @property
    def rto_ok(self) -> bool:
        """RTO measured and within target."""
        return self.rto_s is not None and self.rto_s <= self.rto_target_s

    @property
    def rpo_ok(self) -> bool:
        """RPO known and within target."""
        return self.rpo_s is not None and self.rpo_s <= self.rpo_target_s

    @property
    def rto_detail(self) -> str:
        """Sentence for the RTO check."""
        if self.rto_s is None:
            return "RTO not measured: the drill did not verify a restore"
        return (f"restore procedure to verified database took {self.rto_s:.1f} s "
                f"(target {self.rto_target_s:g} s = {self.rto_target_s / 3600:g} h)")

    @property
    def rpo_detail(self) -> str:
        """Sentence for the RPO check."""
        if self.rpo_s is None:
            return "no verified backup: data loss on a disaster is unbounded; run a drill"
        return (f"newest verified backup {self.newest_verified} holds data "
                f"{self.rpo_s / 60:.1f} min old (target {self.rpo_target_s / 60:g} min)")

    def table(self) -> pd.DataFrame:
        """Metric, measured, target, ok."""
        return pd.DataFrame([
            {"metric": "RTO (s)", "measured": self.rto_s, "target": self.rto_target_s,
             "ok": self.rto_ok, "detail": self.rto_detail},
            {"metric": "RPO (s)", "measured": self.rpo_s, "target": self.rpo_target_s,
             "ok": self.rpo_ok, "detail": self.rpo_detail},
        ])


def recovery_objectives(
    drill: DrillResult | None,
    backup_dir: str | Path,
    *,
    rto_target_s: float = 14400,
    rpo_target_s: float = 3600,
    now: dt.datetime | None = None,
) -> RecoveryObjectives:
    """Measured RTO (this drill) and RPO (age of the newest verified backup) vs. targets.

    Args:
        drill: This run's drill (``None`` when it did not run).
        backup_dir: Folder with the backups (for the newest verified one).
        rto_target_s: RTO target (the checklist: < 4 h).
        rpo_target_s: RPO target (the checklist: < 1 h).
        now: Reference time (default now, UTC).

    Returns:
        A :class:`RecoveryObjectives`.
    """
    now = now or _utcnow()
    df = list_backups(backup_dir, now=now)
    verified = df[df["verified"] & (df["kind"] == "postgres")] if len(df) else df
    rpo_s: float | None = None
    newest = ""
    if len(verified):
        top = verified.iloc[0]
        rpo_s = round(float((now - top["created_at"]).total_seconds()), 1)
        newest = str(top["file"])
    return RecoveryObjectives(drill.rto_s if drill else None, rpo_s, float(rto_target_s),
                              float(rpo_target_s), newest)


def rto_statement(drill: DrillResult | None, rto_target_s: float = 14400) -> str:
    """A markdown line for the playbook: the RTO this drill measured.

    Args:
        drill: This run's drill.
        rto_target_s: RTO target.

    Returns:
        Markdown text.
    """
    if drill is None or drill.rto_s is None:
        return ("**Estimated recovery time: unknown** -- this drill did not verify a restore "
                f"(target {rto_target_s / 3600:g} h). Fix the failed check first.")
    restore = drill.phase_seconds("restore")
    return (f"**Estimated recovery time (measured by drill {drill.run_id}): {drill.rto_s:.0f} s "
            f"({drill.rto_s / 60:.1f} min)** from a verified backup to a verified database, of "
            f"which pg_restore -j {drill.restore_jobs} took {restore:.0f} s; target "
            f"{rto_target_s / 3600:g} h. Add the time to detect the incident and to repoint the "
            "application.")


def timeline_figure(drill: DrillResult | None) -> Any:
    """Gantt-like chart of the drill's phases, with the measured RTO span.

    Args:
        drill: The drill (``None`` gives an empty chart that says so).

    Returns:
        A plotly Figure.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    if drill is None or not len(drill.phases):
        fig.update_layout(title="No drill ran", height=200)
        return fig
    ph = drill.phases
    t0 = ph["started_at"].min()
    offsets = [(s - t0).total_seconds() for s in ph["started_at"]]
    colours = ["#1a7f37" if ok else "#cf222e" for ok in ph["ok"]]
    fig.add_trace(go.Bar(
        y=ph["phase"], x=ph["seconds"], base=offsets, orientation="h", marker_color=colours,
        text=[f"{s:.1f} s" for s in ph["seconds"]], textposition="auto",
        hovertext=[str(d) for d in ph["detail"]], name="phase",
    ))
    if drill.rto_s is not None:
        fig.add_vline(x=drill.rto_s, line_dash="dash", line_color="#0969da",
                      annotation_text=f"RTO {drill.rto_s:.1f} s")
    verdict = "verified" if drill.verified else f"FAILED ({drill.failed_check})"
    fig.update_layout(
        title=f"Restore drill {drill.run_id}: {verdict}", height=320,
        xaxis_title="seconds since drill start", showlegend=False, margin={"t": 50, "b": 40},
    )
    fig.update_yaxes(autorange="reversed")
    return fig


# --------------------------------------------------------------------------------------------
# Redis


def _redis_cli(client: Client, container: Any, args: Sequence[str], password: str) -> str:
    env = {"REDISCLI_AUTH": password} if password else {}
    return exec_in_container(client, container, ["redis-cli", "--no-auth-warning", *args],
                             environment=env).stdout


def _redis_info(client: Client, container: Any, password: str, section: str) -> dict[str, str]:
    out = _redis_cli(client, container, ["INFO", section], password)
    info = {}
    for line in out.splitlines():
        if ":" in line and not line.startswith("#"):
            k, _, v = line.strip().partition(":")
            info[k] = v
    return info


def redis_persistence(
    client: Client, project: str, *, service: str = "cache", password: str = ""
) -> pd.DataFrame:
    """Check the persistence of a Redis service: AOF/RDB enabled and last writes succeeded.

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.
        service: The Redis service.
        password: ``requirepass`` if set (passed as ``REDISCLI_AUTH``, never shown).

    Returns:
        Columns item, value, expected, ok: appendonly, aof_enabled, aof_last_write_status,
        aof_last_bgrewrite_status, rdb_last_bgsave_status, rdb_last_save_time (ISO),
        rdb_changes_since_last_save, save (RDB schedule).
    """
    c = service_container(client, project, service)
    appendonly = _redis_cli(client, c, ["CONFIG", "GET", "appendonly"], password).split()
    save = _redis_cli(client, c, ["CONFIG", "GET", "save"], password).splitlines()
    info = _redis_info(client, c, password, "persistence")
    last = int(info.get("rdb_last_save_time", "0") or 0)
    save_sched = save[1].strip() if len(save) > 1 else ""
    rows = [
        ("appendonly", appendonly[1] if len(appendonly) > 1 else "", "yes"),
        ("aof_enabled", info.get("aof_enabled", ""), "1"),
        ("aof_last_write_status", info.get("aof_last_write_status", ""), "ok"),
        ("aof_last_bgrewrite_status", info.get("aof_last_bgrewrite_status", ""), "ok"),
        ("rdb_last_bgsave_status", info.get("rdb_last_bgsave_status", ""), "ok"),
    ]
    df = pd.DataFrame([{"item": i, "value": v, "expected": e, "ok": v == e} for i, v, e in rows])
    extra = pd.DataFrame([
        {"item": "rdb_last_save_time",
         "value": _iso(dt.datetime.fromtimestamp(last, dt.UTC)) if last else "",
         "expected": "", "ok": True},
        {"item": "rdb_changes_since_last_save",
         "value": info.get("rdb_changes_since_last_save", ""), "expected": "", "ok": True},
        {"item": "save", "value": save_sched, "expected": "a schedule (RDB snapshots)",
         "ok": bool(save_sched)},
    ])
    return pd.concat([df, extra], ignore_index=True)


class _IterReader(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (for streaming ``tarfile``)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._it = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf:
            try:
                self._buf = next(self._it)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def snapshot_redis(
    client: Client,
    project: str,
    *,
    backup_dir: str | Path,
    service: str = "cache",
    password: str = "",
    timeout_s: float = 300.0,
) -> Backup:
    """Take a fresh RDB snapshot (``BGSAVE``) and copy it out of the Redis container.

    The RDB file is streamed out with the engine's archive API, hashed while written to
    ``<backup_dir>/<project>-<service>-<UTC ts>.rdb`` (via ``.partial``), with a manifest.

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.
        backup_dir: Folder for backups.
        service: The Redis service.
        password: ``requirepass`` if set (never shown).
        timeout_s: Seconds to wait for the background save.

    Returns:
        The :class:`Backup` (path and manifest).

    Raises:
        CommandFailed: BGSAVE failed or did not finish in time.
        VerificationFailed: The copied file is not an RDB file.
    """
    folder = Path(backup_dir)
    folder.mkdir(parents=True, exist_ok=True)
    c = service_container(client, project, service)
    started = _utcnow()
    before = int(_redis_cli(client, c, ["LASTSAVE"], password).strip() or 0)
    server_now = int(_redis_cli(client, c, ["TIME"], password).split()[0])
    if server_now <= before:  # LASTSAVE has 1 s resolution: make the next save distinguishable
        time.sleep(1.05)
    reply = _redis_cli(client, c, ["BGSAVE", "SCHEDULE"], password).strip()
    if "ERR" in reply and "in progress" not in reply:
        raise CommandFailed(["redis-cli", "BGSAVE"], 1, reply, c.name)
    deadline = time.monotonic() + timeout_s
    while True:
        info = _redis_info(client, c, password, "persistence")
        last = int(info.get("rdb_last_save_time", "0") or 0)
        if info.get("rdb_bgsave_in_progress") == "0" and last > before:
            break
        if info.get("rdb_bgsave_in_progress") == "0" and info.get(
                "rdb_last_bgsave_status") == "err":
            raise CommandFailed(["redis-cli", "BGSAVE"], 1, "rdb_last_bgsave_status:err; "
                                "read the cache logs (disk full? permissions?)", c.name)
        if time.monotonic() > deadline:
            raise CommandFailed(["redis-cli", "BGSAVE"], -1,
                                f"no new snapshot after {timeout_s:g} s", c.name)
        time.sleep(0.2)
    rdir = _redis_cli(client, c, ["CONFIG", "GET", "dir"], password).splitlines()[1].strip()
    rfile = _redis_cli(client, c, ["CONFIG", "GET", "dbfilename"],
                       password).splitlines()[1].strip()
    server = _redis_info(client, c, password, "server")
    keyspace = _redis_cli(client, c, ["DBSIZE"], password).strip()
    target = _unique_path(folder, f"{project}-{service}-{started.strftime(_TS_FORMAT)}", ".rdb")
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    digest = hashlib.sha256()
    written = 0
    try:
        stream = eng.get_archive(c, f"{rdir}/{rfile}")
        with tarfile.open(fileobj=io.BufferedReader(_IterReader(stream), _CHUNK),
                          mode="r|") as tf, open(partial, "wb") as out:
            member = tf.next()
            src = tf.extractfile(member) if member is not None else None
            if src is None:
                raise VerificationFailed("rdb_copy", f"{rdir}/{rfile}",
                                         "the archive holds no regular file")
            while block := src.read(_CHUNK):
                if written == 0 and not block.startswith(b"REDIS"):
                    raise VerificationFailed("rdb_magic", f"{rdir}/{rfile}",
                                             "the file does not start with 'REDIS'")
                out.write(block)
                digest.update(block)
                written += len(block)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    ended = _utcnow()
    manifest = {
        "format": MANIFEST_FORMAT, "kind": "redis", "file": target.name,
        "source": f"{project}/{service}", "project": project, "service": service,
        "container": c.name, "image": (c.attrs.get("Config") or {}).get("Image", ""),
        "image_id": c.attrs.get("Image", ""), "redis_version": server.get("redis_version", ""),
        "source_path": f"{rdir}/{rfile}", "keys": int(keyspace or 0) if keyspace.isdigit() else 0,
        "lastsave": _iso(dt.datetime.fromtimestamp(last, dt.UTC)),
        "aof_enabled": info.get("aof_enabled", ""), "sha256": digest.hexdigest(),
        "size_bytes": written, "started_at": _iso(started), "ended_at": _iso(ended),
        "duration_s": round((ended - started).total_seconds(), 3), "opslib_version": __version__,
    }
    _write_json_atomic(manifest_path(target), manifest)
    return Backup(target, manifest)


# --------------------------------------------------------------------------------------------
# retention

_PLAN_COLUMNS = ["file", "kind", "source", "created_at", "age_days", "manifest", "verified",
                 "action", "why", "path"]


def plan_retention(
    backup_dir: str | Path,
    *,
    keep_days: float,
    keep_min_count: int,
    now: dt.datetime | None = None,
    partial_grace_s: float = 3600.0,
) -> pd.DataFrame:
    """Plan which backups to keep and which to delete, by age and count.

    Per source (project/service/database), newest first: the newest verified backup is always
    kept (when none is verified, the newest with an intact manifest is kept instead); then the
    ``keep_min_count`` newest; then everything younger than ``keep_days``; the rest is deleted.
    Unfinished ``.partial`` files older than ``partial_grace_s`` are deleted.

    Args:
        backup_dir: The folder.
        keep_days: Keep backups younger than this many days.
        keep_min_count: Always keep this many newest backups per source.
        now: Reference time (default now, UTC).
        partial_grace_s: Age after which a ``.partial`` file is considered abandoned.

    Returns:
        Columns file, kind, source, created_at, age_days, manifest, verified, action
        (keep/delete), why, path -- nothing is changed (see :func:`apply_retention`).

    Raises:
        BadParameter: Negative ``keep_days`` or ``keep_min_count``.
    """
    if keep_days < 0:
        raise BadParameter("keep_days", keep_days, "a number of days >= 0")
    _check_int("keep_min_count", keep_min_count, 0)
    now = now or _utcnow()
    df = list_backups(backup_dir, now=now)
    rows = []
    for source, group in df.groupby("source", sort=True) if len(df) else []:
        done = group[group["manifest"] != "partial"]
        protected = ""
        verified = done[done["verified"]]
        if len(verified):
            protected, protect_why = str(verified.iloc[0]["file"]), \
                "newest verified backup: never deleted"
        else:
            intact = done[done["manifest"] == "ok"]
            if len(intact):
                protected, protect_why = str(intact.iloc[0]["file"]), \
                    "newest intact backup (none verified yet): never deleted"
        rank = 0
        for rec in group.to_dict(orient="records"):
            age_days = float(rec["age_s"]) / 86400
            if rec["manifest"] == "partial":
                stale = float(rec["age_s"]) > partial_grace_s
                action = "delete" if stale else "keep"
                why = ("unfinished .partial left by a crashed backup" if stale
                       else "unfinished .partial, may still be written")
            else:
                rank += 1
                if rec["file"] == protected:
                    action, why = "keep", protect_why
                elif rank <= keep_min_count:
                    action, why = "keep", f"among the {keep_min_count} newest of {source}"
                elif age_days <= keep_days:
                    action, why = "keep", f"younger than {keep_days:g} days"
                else:
                    action, why = "delete", (f"older than {keep_days:g} days and not among the "
                                             f"{keep_min_count} newest")
            rows.append({"file": rec["file"], "kind": rec["kind"], "source": source,
                         "created_at": rec["created_at"], "age_days": round(age_days, 2),
                         "manifest": rec["manifest"], "verified": bool(rec["verified"]),
                         "action": action, "why": why, "path": rec["path"]})
    plan = pd.DataFrame(rows, columns=_PLAN_COLUMNS)
    if len(plan):
        plan = plan.sort_values(["source", "created_at"], ascending=[True, False],
                                kind="stable").reset_index(drop=True)
    return plan


def apply_retention(
    plan: pd.DataFrame,
    *,
    apply: bool = False,
    journal: str | Path,
    remove: Callable[[Path], None] | None = None,
) -> pd.DataFrame:
    """Delete the backups a retention plan marks ``delete`` (with their manifest and drill record).

    Before deleting, the folder is listed again: if a file marked ``delete`` is now the newest
    verified (or protected) backup of its source, the plan is stale and nothing is deleted. Each
    deletion is journalled (``intent`` then ``deleted``) so a rerun after a crash resumes.

    Args:
        plan: The frame from :func:`plan_retention` (shown to a person first).
        apply: Really delete (``False`` = report what would be deleted).
        journal: JSON-lines journal (in the run's output folder).
        remove: How to delete one file (default ``Path.unlink``); for tests of failures.

    Returns:
        Columns file, action, status (``would delete``, ``deleted``, ``already deleted``,
        ``kept``), detail.

    Raises:
        PlanError: The plan lacks columns or is stale (it would delete a protected backup).
        ApplyError: A deletion failed (the journal says what was done).
    """
    missing = [c for c in ("file", "action", "path", "source") if c not in plan.columns]
    if missing:
        raise PlanError(f"not a retention plan: columns {missing} missing; build it with "
                        "opslib.backup.plan_retention")
    log = Journal(journal, time_key="ts", timespec="microseconds")
    deletes = plan[plan["action"] == "delete"]
    folders = {str(Path(str(p)).parent) for p in deletes["path"]}
    protected: set[str] = set()
    for folder in folders:
        fresh = plan_retention(folder, keep_days=1e9, keep_min_count=0)
        protected |= {str(p) for p, why in zip(fresh["path"], fresh["why"], strict=True)
                      if "never deleted" in str(why)}
    stale = sorted(str(p) for p in deletes["path"] if str(p) in protected)
    if stale:
        raise PlanError(f"stale plan: it would delete {', '.join(Path(s).name for s in stale)}, "
                        "now the newest verified backup of its source; rebuild the plan")
    done = log.done_keys("file", status="deleted")
    unlink = remove or (lambda p: p.unlink(missing_ok=True))
    rows = []
    for rec in plan.to_dict(orient="records"):
        path = Path(str(rec["path"]))
        if rec["action"] != "delete":
            rows.append({"file": rec["file"], "action": rec["action"], "status": "kept",
                         "detail": rec.get("why", "")})
            continue
        targets = [path, manifest_path(path), _drill_path(path)]
        if not apply:
            rows.append({"file": rec["file"], "action": "delete", "status": "would delete",
                         "detail": ", ".join(t.name for t in targets if t.exists())})
            continue
        if str(path) in done and not any(t.exists() for t in targets):
            rows.append({"file": rec["file"], "action": "delete", "status": "already deleted",
                         "detail": "done by an earlier run (journal)"})
            continue
        log.append({"action": "delete", "file": str(path), "status": "intent"})
        try:
            for t in targets:
                if t.exists():
                    unlink(t)
        except OSError as exc:
            log.append({"action": "delete", "file": str(path), "status": "failed",
                        "error": str(exc)})
            raise ApplyError(f"delete {rec['file']}", str(exc)) from exc
        log.append({"action": "delete", "file": str(path), "status": "deleted"})
        rows.append({"file": rec["file"], "action": "delete", "status": "deleted",
                     "detail": ", ".join(t.name for t in targets)})
    return pd.DataFrame(rows, columns=["file", "action", "status", "detail"])
