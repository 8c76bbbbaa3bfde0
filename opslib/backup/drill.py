"""The restore drill: restore into a scratch container, verify everything, record it."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import tarfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from opslib import engine as eng
from opslib.backup.manifest import (
    _CHUNK,
    DRILL_LABEL,
    DRILL_RUN_LABEL,
    DRILL_SUFFIX,
    _check_int,
    _drill_path,
    _drill_runs,
    _iso,
    _parse_time,
    _pick_backup,
    _utcnow,
    _write_json_atomic,
    verify_backup_file,
)
from opslib.backup.postgres import (
    _CATALOG_SQL,
    _PGOPTIONS,
    _TABLES_SQL,
    _app_query_sql,
    _checksums_sql,
    _counts_sql,
    _sql_ident,
    _sql_literal,
)
from opslib.backup.scratch import _remove_scratch
from opslib.engine import (
    Client,
    exec_in_container,
    service_container,
)
from opslib.exceptions import (
    CommandFailed,
    ContainerNotFound,
    EngineRefused,
    EngineUnreachable,
    VerificationFailed,
)
from opslib.redact import redact_text

__all__ = ["DrillResult", "drill_history", "load_drill", "new_run_id", "run_drill"]


_RESTORE_PATH = "/tmp/opslib-restore.dump"
_KEEP_DRILL_RUNS = 20


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
    def failed_checks(self) -> int:
        """How many of :attr:`checks` failed."""
        return int((~self.checks["ok"].astype(bool)).sum()) if len(self.checks) else 0

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
