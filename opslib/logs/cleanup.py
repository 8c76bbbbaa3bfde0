"""The cleanup plan and its journaled, resumable apply."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import pandas as pd

from opslib import engine
from opslib._plan import journal_path
from opslib.engine import (
    Client,
    compose,
    project_containers,
)
from opslib.exceptions import (
    ApplyError,
    BadParameter,
    ContainerNotFound,
    NotFound,
    OpslibError,
    PlanError,
    VerificationFailed,
)
from opslib.journal import Journal, latest_by
from opslib.logs.archive import (
    _CHUNK,
    _archive,
    _archived_until,
    _fsync_dir,
    _gz_digest,
    _manifests,
    _write_json_atomic,
    archive_roots,
    dockerd_pid,
    truncate_safety,
)
from opslib.logs.disk import DiskReport, _rotation_text
from opslib.redact import redact_text

__all__ = [
    "PLAN_COLUMNS",
    "apply_cleanup",
    "bytes_freed",
    "load_plan",
    "plan_cleanup",
    "read_journal",
    "save_plan",
    "verify_docker_logs",
]


#: Columns every plan has, in order (apply also reads the technical columns after them).
PLAN_COLUMNS = ["step", "action", "service", "file", "bytes", "bytes_freed", "risk", "why"]
_TECH_COLUMNS = ["id", "project", "container", "container_id", "compose_files", "workdir",
                 "override", "archive_dir", "archive_roots", "target"]


def _plan_row(**kw: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(PLAN_COLUMNS + _TECH_COLUMNS, "")
    row.update(bytes=0, bytes_freed=0)
    row.update(kw)
    return row


def plan_cleanup(
    report: DiskReport,
    *,
    out_dir: str | Path,
    override: str | Path | None = None,
    retention_days: float = 14,
    allow_truncate: bool = False,
    recreate: bool | None = None,
    services: Sequence[str] | None = None,
    now: dt.datetime | None = None,
) -> pd.DataFrame:
    """Plan the cleanup of a project's logs (nothing is changed here).

    Per container whose json-file log has no rotation (no ``max-size``):

    * ``archive`` the live log (gzip copy in ``<out_dir>/archive``, verified), then
    * ``recreate-with-rotation``: recreate the service with ``override`` (from
      :func:`write_prevention_files`) so Docker rotates its new log; the old log goes away with
      the old container (its tail, written until the container stops, is archived first), or
    * with ``allow_truncate`` and a daemon descriptor with O_APPEND, ``truncate`` it in place
      (no restart; the container is paused while the last part is archived). Services truncated
      are not recreated unless ``recreate=True``.

    Uncompressed rotated files (Docker ``.N`` without ``compress=true``; host ``.1``, ``-date``)
    get ``compress-rotated``; archives older than ``retention_days`` get ``delete-archive``.

    The plan is built from the report and from ``/proc`` (dockerd's descriptors); nothing is
    asked from the engine.

    Args:
        report: From :func:`disk_report`.
        out_dir: This run's output folder (archives go to ``out_dir/archive``).
        override: Compose override with logging options; without one no recreate is planned.
        retention_days: Archives older than this are deleted.
        allow_truncate: Offer emergency truncation where it is safe.
        recreate: Recreate services without rotation (default: those not truncated).
        services: Only these services (default: all).
        now: Reference time for retention (default: now).

    Returns:
        The plan: :data:`PLAN_COLUMNS` plus technical columns apply needs.

    Raises:
        BadParameter: Bad retention or an unknown service.
        PlanError: The override file does not exist.
    """
    if retention_days < 0:
        raise BadParameter("retention_days", retention_days, "0 or more days")
    out = Path(out_dir).resolve()
    archive_dir = out / "archive"
    roots = archive_roots(out)
    roots_json = json.dumps([str(r) for r in roots])
    if override is not None and not Path(override).is_file():
        raise PlanError(f"Override {override} does not exist; generate it with "
                        "write_prevention_files() first.")
    files = report.files
    known = sorted(set(files["service"]))
    if services is not None:
        unknown = sorted(set(services) - set(known))
        if unknown:
            raise BadParameter("services", unknown, f"services of the report: {known}")
        files = files[files["service"].isin(services)]
    pid = dockerd_pid()
    rows: list[dict[str, Any]] = []
    common = {"project": report.project, "archive_dir": str(archive_dir),
              "archive_roots": roots_json, "override": str(override or "")}

    for cid, cf in files[files["container_id"] != ""].groupby("container_id", sort=False):
        first = cf.iloc[0]
        svc, name = str(first["service"]), str(first["container"])
        ctx = {**common, "service": svc, "container": name, "container_id": cid,
               "compose_files": first["compose_files"], "workdir": first["workdir"]}
        if first["log_driver"] != "json-file" or not bool(first["accessible"]):
            continue
        opts = first["log_opts"] or {}
        live = cf[cf["kind"] == "live"]
        if "max-size" not in opts and len(live):
            path = str(live.iloc[0]["path"])
            size = int(live.iloc[0]["bytes"])
            done, _ = _archived_until(Path(path), roots)
            safety = truncate_safety(path, pid)
            running = first["state"] in ("running", "paused")
            do_truncate = bool(allow_truncate and safety.safe)
            do_recreate = (recreate if recreate is not None else not do_truncate)
            why_not = "" if do_truncate or not allow_truncate else \
                f"; truncate not offered: {safety.reason}"
            rows.append(_plan_row(
                **ctx, action="archive", file=path, bytes=max(size - done, 0), risk="none",
                why=f"gzip copy of the live log (bytes {done}..{size}) into archive/, verified "
                    "by line count and SHA-256, before anything removes it"))
            if do_truncate:
                rows.append(_plan_row(
                    **ctx, action="truncate", file=path, bytes=size, bytes_freed=size,
                    risk="high",
                    why=f"emergency relief without restart: {safety.reason}; the container is "
                        "paused while the rest is archived, then the file is truncated"))
            managed = bool(first["compose_files"])
            if do_recreate and override and running and managed:
                rows.append(_plan_row(
                    **ctx, action="recreate-with-rotation", file=path, bytes=size,
                    bytes_freed=0 if do_truncate else size, risk="medium",
                    target=str(override),
                    why="no rotation configured: recreate the service with the override's "
                        "json-file options so Docker rotates from now on; it restarts, and its "
                        "old log (archived first, including what it writes until it stops) "
                        "goes away with the old container" + why_not))
            elif do_recreate:
                reason = ("no override file given" if not override else
                          "not created by docker compose (no config-files label)"
                          if not managed else f"container {first['state']}")
                rows.append(_plan_row(
                    **ctx, action="note", file=path, bytes=size, risk="none",
                    why=f"no rotation configured, but not recreated ({reason}); commit the "
                        "override so the next 'docker compose up' adds rotation" + why_not))
        compress = str(opts.get("compress", "")).lower() == "true"
        for _, r in cf[cf["kind"] == "rotated"].iterrows():
            if compress and int(r["index"]) == 1:
                continue  # the daemon compresses .1 itself, asynchronously
            rows.append(_plan_row(
                **ctx, action="compress-rotated", file=r["path"], bytes=int(r["bytes"]),
                bytes_freed=int(r["bytes"]), risk="low",
                why="rotated file the daemon no longer writes, left uncompressed: a verified "
                    "gzip copy goes to archive/ and the file is removed (docker logs then shows "
                    "less history)"))

    for _, r in files[files["kind"] == "host-rotated"].iterrows():
        if str(r["path"]).endswith((".gz", ".xz", ".bz2", ".zst")):
            continue
        rows.append(_plan_row(
            **common, service=r["service"], action="compress-rotated", file=r["path"],
            bytes=int(r["bytes"]), bytes_freed=int(int(r["bytes"]) * 0.9), risk="low",
            target=str(r["path"]) + ".gz",
            why="rotated host log left uncompressed: gzip it in place (verified), as "
                "logrotate's compress would; ~90% of it is freed"))

    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(
        days=min(float(retention_days), 36500.0))
    for m in _manifests(roots):
        created = dt.datetime.fromisoformat(str(m.get("created")))
        if created < cutoff:
            size = Path(m["_archive"]).stat().st_size
            rows.append(_plan_row(
                **common, service=str(m.get("service") or ""), action="delete-archive",
                file=m["_archive"], bytes=size, bytes_freed=size, risk="low",
                target=m["_manifest"],
                why=f"opslib archive created {created:%Y-%m-%d}, older than "
                    f"retention_days={retention_days:g}"))

    plan = pd.DataFrame(rows, columns=PLAN_COLUMNS + _TECH_COLUMNS)
    plan["step"] = range(1, len(plan) + 1)
    plan["id"] = [f"{s:03d}-{a}-{v or 'host'}" for s, a, v in
                  zip(plan["step"], plan["action"], plan["service"], strict=True)]
    return plan.astype({"bytes": "int64", "bytes_freed": "int64"})


def save_plan(plan: pd.DataFrame, path: str | Path) -> Path:
    """Save a plan as JSON (to rerun exactly the same plan later, e.g. after a crash)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(p, {"plan": plan.to_dict(orient="records")})
    return p


def load_plan(path: str | Path) -> pd.DataFrame:
    """Load a plan saved by :func:`save_plan`.

    Raises:
        PlanError: The file is not a saved plan.
    """
    try:
        rows = json.loads(Path(path).read_text())["plan"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PlanError(f"{path} is not a plan saved by save_plan(): {exc}") from exc
    return pd.DataFrame(rows, columns=PLAN_COLUMNS + _TECH_COLUMNS)


class _Journal(Journal):
    """The cleanup journal: one event per line about one plan action (kept in memory too)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, time_key="ts", timespec="auto")
        self.events = self.entries()

    def write(self, row: Mapping[str, Any], event: str, **data: Any) -> None:
        self.events.append(self.append({"id": row["id"], "action": row["action"],
                                        "service": row["service"], "event": event, **data}))

    def finished(self, action_id: str) -> dict[str, Any] | None:
        return latest_by(self.events, "id", event=("done", "skipped")).get(action_id)

    def has(self, action_id: str, event: str) -> bool:
        return action_id in latest_by(self.events, "id", event=event)


def read_journal(path: str | Path) -> list[dict[str, Any]]:
    """The events of a journal (a torn last line, from a crash mid-write, is ignored)."""
    return Journal(path).entries()


def verify_docker_logs(client: Client, container: Any) -> dict[str, Any]:
    """Read a container's whole log through the engine (what ``docker logs`` does) and check
    its json-file for a NUL-filled hole.

    Args:
        client: A ``docker.DockerClient``.
        container: A container object, name or id.

    Returns:
        ``{"container", "bytes", "lines"}``.

    Raises:
        VerificationFailed: The engine cannot read it, or the file starts with NUL bytes.
    """
    name = container if isinstance(container, str) else container.name
    try:
        c = engine.get_container(client, name)
        total = lines = 0
        for chunk in engine.iter_container_logs(c):
            total += len(chunk)
            lines += chunk.count(b"\n")
    except OpslibError as exc:
        raise VerificationFailed("docker logs", name, str(exc)) from exc
    path = c.attrs.get("LogPath") or ""
    if path and os.path.exists(path):
        with open(path, "rb") as fh:
            if fh.read(1) == b"\x00":
                raise VerificationFailed("docker logs", path, "the log starts with NUL bytes "
                                         "(a hole left by an unsafe truncate)")
    return {"container": name, "bytes": total, "lines": lines}


def _current_container(client: Client, row: Mapping[str, Any]) -> Any | None:
    try:
        found = project_containers(client, row["project"], service=row["service"])
    except NotFound:
        return None
    running = [c for c in found if c.status == "running"]
    return (running or found)[0]


def _wait_stable(path: Path, *, settle: float = 0.3, timeout: float = 10.0) -> int:
    """Wait until a file's size stops changing (the daemon has drained the paused pipe)."""
    deadline = time.monotonic() + timeout
    last, since = path.stat().st_size, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        size = path.stat().st_size
        if size != last:
            last, since = size, time.monotonic()
        elif time.monotonic() - since >= settle:
            break
    return last


def bytes_freed(frame: pd.DataFrame, *, status: str | None = None) -> int:
    """Bytes a cleanup plan frees (or an applied result freed, counting rows with ``status``).

    Args:
        frame: A :func:`plan_cleanup` plan or an :func:`apply_cleanup` result.
        status: Only count rows with this status (``"done"`` for what was really freed).

    Returns:
        The sum of ``bytes_freed``.
    """
    rows = frame if status is None else frame[frame["status"] == status]
    return int(rows["bytes_freed"].sum()) if len(rows) else 0


def _needs_client(client: Client | None) -> Client:
    if client is None:
        raise PlanError("apply_cleanup: this plan touches containers; pass client=...")
    return client


class _Applier:
    def __init__(self, client: Client | None, journal: _Journal, compresslevel: int) -> None:
        self._client = client
        self.journal = journal
        self.compresslevel = compresslevel

    @property
    def client(self) -> Client:
        return _needs_client(self._client)

    def roots(self, row: Mapping[str, Any]) -> list[Path]:
        return [Path(p) for p in json.loads(row["archive_roots"] or "[]")]

    def archive(self, row: Mapping[str, Any]) -> dict[str, Any]:
        src = Path(row["file"])
        if not src.exists():
            return {"status": "skipped", "detail": "log file gone (container removed or "
                    "recreated since the plan)", "bytes_freed": 0}
        res = _archive(src, Path(row["archive_dir"]), self.roots(row), service=row["service"],
                       container=row["container"], compresslevel=self.compresslevel)
        detail = (f"archived bytes {res['start']}..{res['end']} ({res['lines']} lines) to "
                  f"{res['archive']}, verified" if res["archive"] else
                  f"nothing new to archive (bytes 0..{res['end']} already archived)")
        return {"status": "done", "detail": detail, "bytes_freed": 0, **res}

    def truncate(self, row: Mapping[str, Any]) -> dict[str, Any]:
        path = Path(row["file"])
        if not path.exists():
            return {"status": "skipped", "detail": "log file gone", "bytes_freed": 0}
        try:
            c = engine.get_container(self.client, row["container_id"])
        except ContainerNotFound:  # the container is gone: so is its log
            return {"status": "skipped", "detail": "container gone", "bytes_freed": 0}
        we_paused = c.status == "paused" and self.journal.has(row["id"], "paused")
        if c.status == "running":
            engine.pause(c)
            we_paused = True
            self.journal.write(row, "paused", container=row["container"])
        try:
            _wait_stable(path)
            safety = truncate_safety(str(path))
            if not safety.safe:
                return {"status": "skipped", "detail": f"not truncated: {safety.reason}",
                        "bytes_freed": 0}
            tail = _archive(path, Path(row["archive_dir"]), self.roots(row),
                            service=row["service"], container=row["container"], whole=True,
                            compresslevel=self.compresslevel)
            size = path.stat().st_size
            covered, _ = _archived_until(path, [Path(row["archive_dir"]), *self.roots(row)])
            if covered < size:
                raise VerificationFailed("archived before truncate", str(path),
                                         f"only bytes 0..{covered} of {size} are archived")
            with open(path, "r+b") as fh:
                fh.truncate(0)
                os.fsync(fh.fileno())
            self.journal.write(row, "truncated", bytes=size, tail=tail.get("archive", ""))
        finally:
            if we_paused:
                engine.reload(c)
                if c.status == "paused":
                    engine.unpause(c)
                self.journal.write(row, "unpaused", container=row["container"])
        check = verify_docker_logs(self.client, row["container_id"])
        return {"status": "done", "bytes_freed": size,
                "detail": f"truncated {size} bytes after archiving them ({safety.reason}); "
                          f"docker logs reads {check['lines']} lines"}

    def recreate(self, row: Mapping[str, Any]) -> dict[str, Any]:
        files = [f for f in str(row["compose_files"]).split(",") if f]
        if not files:
            raise PlanError(f"Container {row['container']} has no compose config-files label; "
                            "recreate it yourself with the override.")
        compose_files = [*files, row["target"] or row["override"]]
        cwd = row["workdir"] or None
        proj, svc = row["project"], row["service"]
        path = Path(row["file"])
        freed = 0
        old_exists = True
        try:
            old = engine.get_container(self.client, row["container_id"])
        except OpslibError:
            old_exists = False
        if old_exists:
            if old.status in ("running", "paused", "restarting"):
                compose(["stop", svc], project=proj, files=compose_files, cwd=cwd)
                self.journal.write(row, "stopped", container=row["container"])
            # The log is final now: archive what was written since the archive step.
            if path.exists():
                _archive(path, Path(row["archive_dir"]), self.roots(row), service=svc,
                         container=row["container"], whole=True,
                         compresslevel=self.compresslevel)
                covered, _ = _archived_until(path, [Path(row["archive_dir"]), *self.roots(row)])
                size = path.stat().st_size
                if covered < size:
                    raise VerificationFailed("archived before recreate", str(path),
                                             f"only bytes 0..{covered} of {size} are archived")
                freed = sum(p.stat().st_size for p in path.parent.glob(path.name + "*")
                            if p.is_file())
                self.journal.write(row, "tail-archived", bytes=size)
        compose(["up", "-d", "--no-deps", "--no-build", "--pull", "never", svc],
                project=proj, files=compose_files, cwd=cwd)
        new = _current_container(self.client, row)
        if new is None:
            raise ApplyError(row["id"], f"service {svc} has no container after 'up'")
        opts = ((new.attrs.get("HostConfig") or {}).get("LogConfig") or {}).get("Config") or {}
        if "max-size" not in opts:
            raise VerificationFailed("rotation options", new.name,
                                     f"log options after recreate are {opts}")
        check = verify_docker_logs(self.client, new)
        return {"status": "done", "bytes_freed": freed,
                "detail": f"recreated as {new.name} ({new.id[:12]}) with "
                          f"{_rotation_text(opts)}; docker logs reads {check['lines']} lines"}

    def compress_rotated(self, row: Mapping[str, Any]) -> dict[str, Any]:
        src = Path(row["file"])
        if row["container_id"]:
            if not src.exists():
                return {"status": "done", "detail": "already moved", "bytes_freed": 0}
            ino = src.stat().st_ino
            size = src.stat().st_size
            res = _archive(src, Path(row["archive_dir"]), self.roots(row),
                           service=row["service"], container=row["container"], whole=True,
                           compresslevel=self.compresslevel)
            covered, _ = _archived_until(src, [Path(row["archive_dir"]), *self.roots(row)])
            if covered < size or src.stat().st_ino != ino:
                raise VerificationFailed("archive", str(src), "the rotated file changed while "
                                         "it was archived; rerun the plan")
            src.unlink()
            return {"status": "done", "bytes_freed": size,
                    "detail": f"moved into {res['archive'] or 'an existing archive'}, verified"}
        dest = Path(row["target"] or str(src) + ".gz")
        if not src.exists():
            return {"status": "done", "detail": f"already compressed to {dest}",
                    "bytes_freed": 0}
        size = src.stat().st_size
        h = hashlib.sha256()
        lines = 0
        with open(src, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
                lines += chunk.count(b"\n")
        if dest.exists():
            sha, n, _ = _gz_digest(dest)
            if (sha, n) != (h.hexdigest(), lines):
                raise ApplyError(row["id"], f"{dest} exists with other content; move it away")
        else:
            part = dest.with_name(dest.name + ".part")
            with open(src, "rb") as fin, gzip.open(part, "wb", compresslevel=6) as gz:
                shutil.copyfileobj(fin, gz, _CHUNK)
            sha, n, _ = _gz_digest(part)
            if (sha, n) != (h.hexdigest(), lines):
                part.unlink(missing_ok=True)
                raise VerificationFailed("compress", str(dest), "decompressed copy differs")
            shutil.copystat(src, part)
            os.replace(part, dest)
            _fsync_dir(dest.parent)
        src.unlink()
        freed = size - dest.stat().st_size
        return {"status": "done", "bytes_freed": freed,
                "detail": f"compressed to {dest} ({lines} lines, verified)"}

    def delete_archive(self, row: Mapping[str, Any]) -> dict[str, Any]:
        gz = Path(row["file"])
        size = gz.stat().st_size if gz.exists() else 0
        gz.unlink(missing_ok=True)
        if row["target"]:
            Path(row["target"]).unlink(missing_ok=True)
        return {"status": "done", "bytes_freed": size, "detail": f"deleted {gz.name}"}


_MODIFYING = ("truncate", "recreate-with-rotation", "compress-rotated")


def apply_cleanup(
    plan: pd.DataFrame,
    *,
    client: Client | None = None,
    journal: str | Path | None = None,
    apply: bool = False,
    compresslevel: int = 1,
    verify: bool = True,
) -> pd.DataFrame:
    """Apply a cleanup plan, journaling every action; a rerun resumes where it stopped.

    Each action is idempotent: archives are segments named by the byte offset they start at and
    recorded by a manifest written before the archive is renamed into place, so a rerun after a
    crash (even SIGKILL mid-write) neither loses nor duplicates a line. Actions the journal
    records as done are skipped. After the plan, ``docker logs`` of every service whose log files
    were changed (truncate, recreate, compress-rotated) is read back in full.

    Args:
        plan: From :func:`plan_cleanup` (or :func:`load_plan`).
        client: A ``docker.DockerClient``.
        client: A ``docker.DockerClient`` (for truncate/recreate actions and the checks).
        journal: The journal file, or this run's output folder (the journal is
            ``log-cleanup-journal.jsonl`` there).
        apply: Without it nothing changes and the plan is returned marked ``dry-run``.
        compresslevel: gzip level of archives (1 is fast and still ~10x smaller for logs).
        verify: Read ``docker logs`` of touched services back at the end.

    Returns:
        One row per action (and per verification): step, id, action, service, file, status
        (done / already done / skipped / dry-run / verified), bytes_freed, detail.

    Raises:
        ApplyError: An action failed (what was done is in the journal; rerun to resume).
        VerificationFailed: An archive or ``docker logs`` check failed.
    """
    cols = ["step", "id", "action", "service", "file", "status", "bytes_freed", "detail"]
    missing = [c for c in PLAN_COLUMNS + _TECH_COLUMNS if c not in plan.columns]
    if missing:
        raise PlanError(f"Not a cleanup plan (missing columns {missing}); build it with "
                        "plan_cleanup().")
    if not apply:
        dry = plan.assign(status="dry-run", detail=plan["why"])
        return dry[cols].reset_index(drop=True)
    log = _Journal(journal_path(journal, "log-cleanup-journal.jsonl", what="apply_cleanup"))
    worker = _Applier(client, log, compresslevel)
    handlers = {"archive": worker.archive, "truncate": worker.truncate,
                "recreate-with-rotation": worker.recreate,
                "compress-rotated": worker.compress_rotated,
                "delete-archive": worker.delete_archive}
    results: list[dict[str, Any]] = []
    touched: dict[str, Mapping[str, Any]] = {}
    records = cast(list[dict[str, Any]], plan.to_dict(orient="records"))
    for row in records:
        base = {k: row[k] for k in ("step", "id", "action", "service", "file")}
        if row["action"] == "note":
            results.append({**base, "status": "skipped", "bytes_freed": 0, "detail": row["why"]})
            continue
        prev = log.finished(row["id"])
        if prev is not None:
            results.append({**base, "status": "already done",
                            "bytes_freed": int(prev.get("bytes_freed") or 0),
                            "detail": str(prev.get("detail", ""))})
            if row["container_id"] and row["action"] in _MODIFYING:
                touched[row["service"]] = row
            continue
        handler = handlers.get(row["action"])
        if handler is None:
            raise PlanError(f"Unknown action {row['action']!r} in step {row['step']}.")
        log.write(row, "start", file=row["file"])
        try:
            res = handler(row)
        except (VerificationFailed, ApplyError, PlanError) as exc:
            log.write(row, "failed", error=redact_text(str(exc)))
            raise
        except (OpslibError, OSError) as exc:
            log.write(row, "failed", error=redact_text(str(exc)))
            raise ApplyError(f"step {row['step']} {row['action']} {row['service']}",
                             redact_text(str(exc))) from exc
        status = res.pop("status")
        log.write(row, "done" if status == "done" else "skipped", **res)
        results.append({**base, "status": status, "bytes_freed": int(res.get("bytes_freed", 0)),
                        "detail": res.get("detail", "")})
        if row["container_id"] and row["action"] in _MODIFYING:
            touched[row["service"]] = row
    if verify:
        for svc, trow in touched.items():
            c = _current_container(_needs_client(client), trow)
            if c is None:
                raise VerificationFailed("docker logs", svc, "the service has no container")
            chk = verify_docker_logs(_needs_client(client), c)
            results.append({"step": None, "id": f"verify-{svc}", "action": "verify-logs",
                            "service": svc, "file": c.attrs.get("LogPath", ""),
                            "status": "verified", "bytes_freed": 0,
                            "detail": f"docker logs {c.name}: {chk['lines']} lines, "
                                      f"{chk['bytes']} bytes"})
    return pd.DataFrame(results, columns=cols)
