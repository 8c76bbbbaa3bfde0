"""Redis persistence facts and an RDB snapshot copied out of the container."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import tarfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from opslib import __version__
from opslib import engine as eng
from opslib.backup.manifest import (
    _CHUNK,
    _TS_FORMAT,
    MANIFEST_FORMAT,
    PARTIAL_SUFFIX,
    Backup,
    _iso,
    _unique_path,
    _utcnow,
    _write_json_atomic,
    manifest_path,
)
from opslib.engine import (
    Client,
    exec_in_container,
    service_container,
)
from opslib.exceptions import (
    CommandFailed,
    VerificationFailed,
)

__all__ = [
    "persistence_checks",
    "redis_persistence",
    "snapshot_redis",
]


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


def persistence_checks(persistence: pd.DataFrame | None, not_run: str = "") -> pd.DataFrame:
    """The runbook's checks of a :func:`redis_persistence` frame (name, ok, detail):
    ``redis_aof_enabled`` and ``redis_persistence_ok``; both "not run" (``ok`` None, detail
    ``not_run``) when there is no frame because the project has no Redis."""
    if persistence is None:
        return pd.DataFrame([("redis_aof_enabled", None, not_run),
                             ("redis_persistence_ok", None, not_run)],
                            columns=["name", "ok", "detail"])
    failing = persistence.loc[~persistence["ok"], "item"].tolist()
    aof = bool(persistence.set_index("item").loc["aof_enabled", "ok"])
    return pd.DataFrame([
        ("redis_aof_enabled", aof, "appendonly / aof_enabled from CONFIG GET and INFO persistence"),
        ("redis_persistence_ok", not failing,
         f"failing: {', '.join(failing) or 'none'} (AOF writes, rewrites, RDB saves)"),
    ], columns=["name", "ok", "detail"])
