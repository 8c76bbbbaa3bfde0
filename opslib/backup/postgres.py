"""PostgreSQL backups: a streamed pg_dump with a snapshot-consistent manifest."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opslib import __version__
from opslib import engine as eng
from opslib.backup.manifest import (
    _TS_FORMAT,
    MANIFEST_FORMAT,
    PARTIAL_SUFFIX,
    Backup,
    _check_int,
    _iso,
    _unique_path,
    _utcnow,
    _write_json_atomic,
    manifest_path,
)
from opslib.engine import (
    AUTO,
    Client,
    Stack,
    exec_in_container,
    exec_to_file,
    service_container,
)
from opslib.exceptions import (
    BadParameter,
    CommandFailed,
)
from opslib.redact import redact_text

__all__ = ["PgTarget", "discover_postgres", "take_backup"]


#: Session settings that make ``row::text`` and timestamps render the same on every server.
_PGOPTIONS = ("-c datestyle=ISO,YMD -c timezone=UTC -c intervalstyle=postgres "
              "-c extra_float_digits=1 -c bytea_output=hex -c statement_timeout=0")


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


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


@dataclass(frozen=True)
class PgTarget:
    """The PostgreSQL database of a project that the drill backs up, as discovered.

    Attributes:
        service: The compose service running PostgreSQL.
        database: The application database (the one that is not a template or ``postgres``).
        user: Its owner (the role the dump connects as over the container's local socket).
        databases: Every non-template database found, for the report.
    """

    service: str
    database: str
    user: str
    databases: tuple[str, ...] = ()


def discover_postgres(client: Client, stack: Stack, *, service: str = AUTO,
                      database: str = AUTO) -> PgTarget:
    """Find the PostgreSQL service, its application database and that database's owner.

    The service is the project's only ``postgres`` role (or the one named). Inside it,
    ``psql`` connects over the local socket as ``$POSTGRES_USER`` (the official image's
    superuser) or ``postgres``, and lists the databases: the one that is neither a template nor
    ``postgres`` is the application's (or the one named); its owner is the user.

    Args:
        client: A connected client.
        stack: The discovered project (:func:`opslib.engine.discover`).
        service: ``"auto"`` or a service name (the runbook's ``db_service``).
        database: ``"auto"`` or a database name (the runbook's ``database``).

    Returns:
        The :class:`PgTarget`.

    Raises:
        RoleNotFound: No (or several) PostgreSQL services and none named.
        BadParameter: Several application databases and none named, or the named one is absent.
        CommandFailed: psql could not list the databases.
    """
    name = stack.pick("postgres", service, param="db_service")
    env = stack.env.get(name, {})
    superuser = env.get("POSTGRES_USER") or "postgres"
    container = service_container(client, stack.project, name)
    res = exec_in_container(client, container, [
        "psql", "-X", "-q", "-A", "-t", "-F", "\t", "-U", superuser, "-d", "postgres", "-c",
        "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE NOT datistemplate "
        "ORDER BY datname"])
    owners = dict(line.split("\t", 1) for line in res.stdout.splitlines() if "\t" in line)
    apps = sorted(d for d in owners if d != "postgres")
    if database and database != AUTO:
        if database not in owners:
            raise BadParameter("database", database, "a database of service " + repr(name),
                               sorted(owners))
        chosen = database
    elif len(apps) <= 1:
        chosen = apps[0] if apps else "postgres"
    else:
        raise BadParameter("database", database, f"one of the databases of {name!r}: set "
                           "-p database <name>", apps)
    return PgTarget(name, chosen, owners.get(chosen) or superuser, tuple(sorted(owners)))


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
            (default none; the demo's are :data:`opslib.demo.SHOP_APP_QUERIES`; a query that
            fails here is recorded and skipped).
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
    queries = dict(app_queries or {})
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
