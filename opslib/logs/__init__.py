"""Container logs: who fills the disk, what they write, safe cleanup, and rotation from now on.

1. :func:`disk_report` lists every container's json-file log of a compose project (path from
   inspect, rotated siblings ``-json.log.N`` / ``.N.gz``), optional host log directories, and the
   filesystems holding them (used %, free; flagged over a threshold).
2. :func:`analyse_logs` streams those files through :mod:`opslib.logs.parse` (bounded memory,
   vectorised) into volume, levels, error rate and top messages per service;
   :func:`volume_chart` and :func:`error_rate_chart` draw them.
3. :func:`plan_cleanup` builds a plan (a DataFrame: action, service, file, bytes, bytes_freed,
   risk, why) and :func:`apply_cleanup` executes it with a JSON-lines journal, resumably.
   json-file logs belong to the daemon: an outside truncate of a file the daemon writes without
   ``O_APPEND`` (it reopens without it after its own rotation; moby/moby#29511,
   docker/for-linux#140) leaves a NUL-filled hole that breaks ``docker logs``. So the safe path
   archives first (gzip, verified by line count and SHA-256), then recreates the service with
   rotation options so Docker rotates from then on (a recreated container gets a new log file;
   the old one goes away with the old container). Truncating a live log is offered only when the
   daemon's descriptor has ``O_APPEND`` and only after the part it removes is archived.
4. :func:`write_prevention_files` generates the compose override, the ``daemon.json``
   ``log-opts`` and a logrotate file for host logs, checked with ``docker compose config`` and
   ``logrotate -d``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pandas as pd
import polars as pl

from opslib import engine
from opslib._plan import journal_path
from opslib.engine import (
    CONFIG_FILES_LABEL,
    SERVICE_LABEL,
    WORKDIR_LABEL,
    Client,
    compose,
    compose_config,
    compose_files_of,
    engine_errors,
    project_containers,
)
from opslib.exceptions import (
    ApplyError,
    BadParameter,
    ContainerNotFound,
    NotFound,
    OpslibError,
    PlanError,
    ToolMissing,
    VerificationFailed,
)
from opslib.journal import Journal, latest_by
from opslib.logs.parse import LogAnalysis, analyse_files
from opslib.redact import redact_text

__all__ = [
    "PLAN_COLUMNS",
    "DiskReport",
    "PreventionFiles",
    "TruncateSafety",
    "analyse_logs",
    "apply_cleanup",
    "archive_roots",
    "bytes_freed",
    "check_compose_override",
    "check_logrotate",
    "compose_logging_override",
    "daemon_json",
    "disk_chart",
    "disk_report",
    "dockerd_pid",
    "error_rate_chart",
    "filesystem_usage",
    "host_log_files",
    "load_plan",
    "log_files",
    "logrotate_config",
    "plan_cleanup",
    "project_compose_files",
    "read_journal",
    "rotation_table",
    "save_plan",
    "threshold_detail",
    "truncate_safety",
    "verify_docker_logs",
    "volume_chart",
    "write_prevention_files",
]

O_APPEND = 0o2000
O_ACCMODE = 0o3
_ROTATED_RE = re.compile(r"\.(\d+)(\.gz)?$")
_HOST_ROTATED_RE = re.compile(r"(\.\d+|[-.]\d{8}(\d{2})?|\.old)(\.gz|\.xz|\.bz2|\.zst)?$")
_SIZE_RE = re.compile(r"^[1-9]\d*[kmg]?$")
_CHUNK = 4 << 20
_ARCHIVE_KIND = "opslib-log-archive"

#: Columns every plan has, in order (apply also reads the technical columns after them).
PLAN_COLUMNS = ["step", "action", "service", "file", "bytes", "bytes_freed", "risk", "why"]
_TECH_COLUMNS = ["id", "project", "container", "container_id", "compose_files", "workdir",
                 "override", "archive_dir", "archive_roots", "target"]


# =============================================================================================
# 1. Disk pressure
# =============================================================================================

@dataclass
class DiskReport:
    """Where a compose project's logs are and how full their filesystems are.

    Attributes:
        project: The compose project.
        files: One row per log file: service, container, container_id, state, log_driver,
            log_opts (dict), rotation ("max-size=... max-file=..." or "none"), path, kind
            (live / rotated / rotated-gz / host / host-rotated), bytes, mtime (UTC), accessible.
        services: One row per service: containers, files, live_bytes, rotated_bytes,
            total_bytes, share_pct, rotation.
        filesystems: One row per filesystem: mount, size, used, free, used_pct, threshold_pct,
            over_threshold, log_bytes (of the files above on it).
        threshold_pct: The threshold used.
    """

    project: str
    files: pd.DataFrame
    services: pd.DataFrame
    filesystems: pd.DataFrame
    threshold_pct: float

    @property
    def log_bytes_used(self) -> int:
        """Bytes of all log files found (container and host)."""
        return int(self.files["bytes"].sum()) if len(self.files) else 0

    @property
    def over_threshold(self) -> bool:
        """True when any filesystem holding logs is over the threshold."""
        return bool(self.filesystems["over_threshold"].any()) if len(self.filesystems) else False

    def top_service(self) -> str:
        """The service whose logs take the most disk ("" when none)."""
        svc = self.services[~self.services["service"].str.startswith("host:")]
        return str(svc.iloc[0]["service"]) if len(svc) and svc.iloc[0]["total_bytes"] else ""


def _rotation_text(opts: Mapping[str, str]) -> str:
    keys = [k for k in ("max-size", "max-file", "compress") if k in opts]
    return " ".join(f"{k}={opts[k]}" for k in keys) if "max-size" in opts else "none"


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


def log_files(client: Client, project: str) -> pd.DataFrame:
    """Every json-file log of a compose project's containers, with its rotated siblings.

    The live file comes from inspect (``LogPath``); siblings are ``<LogPath>.N`` and
    ``<LogPath>.N.gz``. Containers with another log driver get one row with ``path=""``.

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.

    Returns:
        See :attr:`DiskReport.files`.

    Raises:
        ProjectNotFound: The project has no containers.
    """
    rows: list[dict[str, Any]] = []
    with engine_errors():
        containers = project_containers(client, project)
    for c in containers:
        a = c.attrs
        labels = (a.get("Config") or {}).get("Labels") or {}
        log_cfg = (a.get("HostConfig") or {}).get("LogConfig") or {}
        opts = dict(log_cfg.get("Config") or {})
        base = {
            "service": labels.get(SERVICE_LABEL, ""),
            "container": a.get("Name", "").lstrip("/"),
            "container_id": a.get("Id", ""),
            "state": (a.get("State") or {}).get("Status", ""),
            "log_driver": log_cfg.get("Type", ""),
            "log_opts": opts,
            "rotation": _rotation_text(opts),
            "compose_files": labels.get(CONFIG_FILES_LABEL, ""),
            "workdir": labels.get(WORKDIR_LABEL, ""),
        }
        log_path = a.get("LogPath") or ""
        if base["log_driver"] != "json-file" or not log_path:
            rows.append({**base, "path": "", "kind": "unsupported", "index": 0, "bytes": 0,
                         "mtime": pd.NaT, "accessible": False})
            continue
        live = Path(log_path)
        try:
            st = live.stat()
            rows.append({**base, "path": str(live), "kind": "live", "index": 0,
                         "bytes": st.st_size, "mtime": _utc(st.st_mtime), "accessible": True})
        except OSError:
            rows.append({**base, "path": str(live), "kind": "live", "index": 0, "bytes": 0,
                         "mtime": pd.NaT, "accessible": False})
            continue
        try:
            siblings = sorted(live.parent.iterdir())
        except OSError:
            siblings = []
        for p in siblings:
            if not p.name.startswith(live.name + "."):
                continue
            m = _ROTATED_RE.search(p.name[len(live.name):])
            if not m or p.name.endswith(".tmp"):
                continue
            try:
                st = p.stat()
            except OSError:
                continue
            rows.append({**base, "path": str(p), "kind": "rotated-gz" if m.group(2) else "rotated",
                         "index": int(m.group(1)), "bytes": st.st_size,
                         "mtime": _utc(st.st_mtime), "accessible": True})
    return pd.DataFrame(rows, columns=_FILE_COLUMNS)


_FILE_COLUMNS = ["service", "container", "container_id", "state", "log_driver", "log_opts",
                 "rotation", "compose_files", "workdir", "path", "kind", "index", "bytes",
                 "mtime", "accessible"]


def host_log_files(dirs: Sequence[str | Path]) -> pd.DataFrame:
    """Regular files under host log directories (recursively), live or rotated.

    Args:
        dirs: Directories such as ``/var/log/nginx``.

    Returns:
        Rows like :func:`log_files` with service ``host:<dir>`` and kind ``host`` or
        ``host-rotated`` (``.1``, ``.2.gz``, ``-20240501``, ``.old``).

    Raises:
        BadParameter: A directory does not exist.
    """
    rows: list[dict[str, Any]] = []
    for d in dirs:
        root = Path(d)
        if not root.is_dir():
            raise BadParameter("host_log_dirs", str(d), "an existing directory")
        for dirpath, _, names in os.walk(root):
            for name in sorted(names):
                p = Path(dirpath) / name
                try:
                    st = p.lstat()
                except OSError:
                    continue
                if not p.is_file() or p.is_symlink():
                    continue
                rotated = bool(_HOST_ROTATED_RE.search(name)) or name.endswith(".gz")
                rows.append({"service": f"host:{root}", "container": "", "container_id": "",
                             "state": "", "log_driver": "", "log_opts": {}, "rotation": "",
                             "compose_files": "", "workdir": "", "path": str(p),
                             "kind": "host-rotated" if rotated else "host", "index": 0,
                             "bytes": st.st_size, "mtime": _utc(st.st_mtime),
                             "accessible": True})
    return pd.DataFrame(rows, columns=_FILE_COLUMNS)


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    dev = path.stat().st_dev
    while path != path.parent and path.parent.stat().st_dev == dev:
        path = path.parent
    return path


def filesystem_usage(paths: Iterable[str | Path], threshold_pct: float = 80.0,
                     sizes: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Used %, free and size of the filesystems holding some paths (``os.statvfs``, like df).

    Args:
        paths: Files or directories; missing ones are skipped.
        threshold_pct: Flag a filesystem whose used % is above this.
        sizes: Optional ``{path: bytes}`` summed per filesystem into ``log_bytes``.

    Returns:
        One row per filesystem: mount, size, used, free, used_pct, threshold_pct,
        over_threshold, log_bytes.
    """
    _check_threshold(threshold_pct)
    seen: dict[int, dict[str, Any]] = {}
    for raw in paths:
        p = Path(raw)
        probe = p if p.exists() else p.parent
        if not probe.exists():
            continue
        st = probe.stat()
        if st.st_dev not in seen:
            mount = _mount_point(probe if probe.is_dir() else probe.parent)
            vfs = os.statvfs(mount)
            size = vfs.f_blocks * vfs.f_frsize
            free = vfs.f_bavail * vfs.f_frsize
            used = (vfs.f_blocks - vfs.f_bfree) * vfs.f_frsize
            pct = 100.0 * used / (used + free) if used + free else 0.0
            seen[st.st_dev] = {"mount": str(mount), "size": size, "used": used, "free": free,
                               "used_pct": round(pct, 1), "threshold_pct": threshold_pct,
                               "over_threshold": pct > threshold_pct, "log_bytes": 0}
        if sizes:
            seen[st.st_dev]["log_bytes"] += int(sizes.get(str(raw), 0))
    return pd.DataFrame(list(seen.values()),
                        columns=["mount", "size", "used", "free", "used_pct", "threshold_pct",
                                 "over_threshold", "log_bytes"])


def _check_threshold(threshold_pct: float) -> None:
    if not 0 < float(threshold_pct) <= 100:
        raise BadParameter("threshold_pct", threshold_pct, "a percentage in (0, 100]")


def _paths(value: str | Sequence[str | Path]) -> list[str]:
    """A list of paths from a list or a comma-separated string (notebook parameter)."""
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    return [str(p) for p in value]


def disk_report(
    client: Client,
    project: str,
    *,
    host_log_dirs: str | Sequence[str | Path] = (),
    threshold_pct: float = 80.0,
    extra_paths: Sequence[str | Path] = (),
) -> DiskReport:
    """Measure a compose project's container logs, host log directories and their filesystems.

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.
        host_log_dirs: Extra host directories of log files (a list, or comma-separated).
        threshold_pct: Flag filesystems above this used % (the checklist's "81% full").
        extra_paths: More paths whose filesystem should be shown (e.g. the archive folder).

    Returns:
        A :class:`DiskReport`.

    Raises:
        ProjectNotFound: The project has no containers.
        BadParameter: Bad threshold or a host directory that does not exist.
    """
    _check_threshold(threshold_pct)
    host_log_dirs = _paths(host_log_dirs)
    files = pd.concat([log_files(client, project), host_log_files(host_log_dirs)],
                      ignore_index=True)
    ok = files[files["accessible"]]
    sizes = dict(zip(ok["path"], ok["bytes"], strict=True))
    probe = list(ok["path"]) + [str(p) for p in host_log_dirs] + [str(p) for p in extra_paths]
    if not len(ok):
        probe.append("/var/lib/docker/containers")
    fs = filesystem_usage(probe, threshold_pct, sizes)
    return DiskReport(project, files, _service_summary(files), fs, float(threshold_pct))


def _service_summary(files: pd.DataFrame) -> pd.DataFrame:
    cols = ["service", "containers", "files", "live_bytes", "rotated_bytes", "total_bytes",
            "share_pct", "rotation"]
    if not len(files):
        return pd.DataFrame(columns=cols)
    f = files.assign(
        live=files["bytes"].where(files["kind"].isin(["live", "host"]), 0),
        rot=files["bytes"].where(~files["kind"].isin(["live", "host"]), 0),
    )
    g = f.groupby("service", sort=False).agg(
        containers=("container", lambda s: len({x for x in s if x})),
        files=("path", lambda s: sum(1 for x in s if x)),
        live_bytes=("live", "sum"), rotated_bytes=("rot", "sum"), total_bytes=("bytes", "sum"),
        rotation=("rotation", lambda s: ", ".join(sorted({x for x in s if x})) or ""),
    ).reset_index()
    total = g["total_bytes"].sum()
    g["share_pct"] = (100.0 * g["total_bytes"] / total).round(1) if total else 0.0
    return g.sort_values("total_bytes", ascending=False, ignore_index=True)[cols]


def disk_chart(report: DiskReport) -> Any:
    """Stacked bars: live and rotated log bytes per service.

    Args:
        report: From :func:`disk_report`.

    Returns:
        A plotly figure.
    """
    import plotly.graph_objects as go

    s = report.services
    fig = go.Figure([
        go.Bar(name="live", x=s["service"], y=s["live_bytes"] / 1e6),
        go.Bar(name="rotated", x=s["service"], y=s["rotated_bytes"] / 1e6),
    ])
    fig.update_layout(barmode="stack", title=f"Log disk usage per service ({report.project})",
                      yaxis_title="MB", height=350, margin={"t": 50, "b": 40})
    return fig


# =============================================================================================
# 2. What is being written
# =============================================================================================

def analyse_logs(report: DiskReport, *, since_minutes: float = 1440,
                 now: dt.datetime | None = None, **kwargs: Any) -> LogAnalysis:
    """Analyse the container json-file logs of a disk report (live and rotated files).

    Args:
        report: From :func:`disk_report`.
        since_minutes: Only lines of the last N minutes count (0 = everything).
        now: The end of the window (default: now, UTC).
        **kwargs: Passed to :func:`opslib.logs.parse.analyse_files` (``batch_bytes``,
            ``top_n`` ...).

    Returns:
        A :class:`opslib.logs.parse.LogAnalysis`.

    Raises:
        BadParameter: A negative window.
    """
    if since_minutes < 0:
        raise BadParameter("since_minutes", since_minutes, "0 (everything) or more minutes")
    since = None
    if since_minutes:
        since = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(minutes=float(since_minutes))
    f = report.files
    f = f[f["accessible"] & f["kind"].isin(["live", "rotated", "rotated-gz"])]
    # Oldest first per service, so partial lines continue across files in order.
    f = f.assign(order=-f["index"].where(f["index"] > 0, 0)).sort_values(["service", "order"])
    return analyse_files(list(zip(f["service"], f["path"], strict=True)), since=since, **kwargs)


def volume_chart(analysis: LogAnalysis) -> Any:
    """Bytes written per minute and service (lines in the hover).

    Args:
        analysis: From :func:`analyse_logs`.

    Returns:
        A plotly figure.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    v = analysis.volume.to_pandas()
    for service, d in v.groupby("service", sort=True):
        fig.add_trace(go.Scatter(
            x=d["minute"], y=d["bytes"] / 1e3, name=str(service), mode="lines",
            stackgroup="bytes", customdata=d[["lines"]],
            hovertemplate="%{x}<br>%{y:.1f} kB, %{customdata[0]} lines<extra>%{fullData.name}"
                          "</extra>"))
    fig.update_layout(title="Log volume per minute", yaxis_title="kB / minute", height=350,
                      margin={"t": 50, "b": 40})
    return fig


def error_rate_chart(analysis: LogAnalysis) -> Any:
    """Share of error lines per minute and service.

    Args:
        analysis: From :func:`analyse_logs`.

    Returns:
        A plotly figure.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    v = analysis.volume.with_columns(
        rate=pl.when(pl.col("lines") > 0).then(100.0 * pl.col("errors") / pl.col("lines"))
        .otherwise(0.0)).to_pandas()
    for service, d in v.groupby("service", sort=True):
        fig.add_trace(go.Scatter(x=d["minute"], y=d["rate"], name=str(service),
                                 mode="lines+markers", customdata=d[["errors", "lines"]],
                                 hovertemplate="%{x}<br>%{y:.1f}% (%{customdata[0]} of "
                                               "%{customdata[1]})<extra>%{fullData.name}"
                                               "</extra>"))
    fig.update_layout(title="Error rate per minute", yaxis_title="% of lines", height=350,
                      margin={"t": 50, "b": 40})
    return fig


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


# =============================================================================================
# 4. Prevent recurrence
# =============================================================================================

@dataclass(frozen=True)
class PreventionFiles:
    """Files to commit so logs stay bounded.

    Attributes:
        override: Compose override with per-service json-file rotation options.
        daemon_json: ``daemon.json`` with default ``log-opts`` (for every new container).
        logrotate: logrotate configuration for host log directories.
        logrotate_check: Output of ``logrotate -d`` on it.
        compose_check: Services and their logging options as ``docker compose config`` renders
            them with the override (empty when not checked).
        logrotate_ok: ``True`` when ``logrotate -d`` accepted the file, ``None`` when it could not
            be checked (logrotate missing, or the check was not asked for).
        logrotate_detail: One sentence for the check: what was run, or why it was not.
    """

    override: Path
    daemon_json: Path
    logrotate: Path
    logrotate_check: str
    compose_check: dict[str, Any]
    logrotate_ok: bool | None = None
    logrotate_detail: str = ""


def _check_rotation(max_size: str, max_file: int) -> None:
    if not _SIZE_RE.match(str(max_size)):
        raise BadParameter("max_size", max_size, 'a size like "10m", "500k" or "1g"')
    if int(max_file) < 1:
        raise BadParameter("max_file", max_file, "an integer >= 1")


def _log_options(max_size: str, max_file: int, compress: bool) -> dict[str, str]:
    _check_rotation(max_size, max_file)
    return {"max-size": str(max_size), "max-file": str(int(max_file)),
            "compress": "true" if compress else "false"}


def compose_logging_override(services: Sequence[str], *, max_size: str = "10m",
                             max_file: int = 5, compress: bool = True) -> str:
    """A compose override giving every service json-file logs with rotation.

    Args:
        services: Service names.
        max_size: Rotate when the live file reaches this size.
        max_file: Files kept (live + rotated).
        compress: gzip rotated files.

    Returns:
        YAML text.
    """
    import yaml

    if not services:
        raise BadParameter("services", list(services), "at least one service")
    opts = _log_options(max_size, max_file, compress)
    doc = {"services": {s: {"logging": {"driver": "json-file", "options": dict(opts)}}
                        for s in services}}
    head = ("# Generated by opslib (log-cleanup runbook): bounded json-file logs per service.\n"
            "# Use: docker compose -f compose.yaml -f <this file> up -d\n")
    return head + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def daemon_json(*, max_size: str = "10m", max_file: int = 5, compress: bool = True,
                current: Mapping[str, Any] | None = None) -> str:
    """``/etc/docker/daemon.json`` with default json-file rotation for new containers.

    Args:
        max_size: See :func:`compose_logging_override`.
        max_file: See :func:`compose_logging_override`.
        compress: See :func:`compose_logging_override`.
        current: The existing daemon.json content, kept (only the log keys are set).

    Returns:
        JSON text (takes effect after a dockerd restart, for containers created afterwards).
    """
    doc = dict(current or {})
    doc["log-driver"] = "json-file"
    doc["log-opts"] = {**dict(doc.get("log-opts") or {}),
                       **_log_options(max_size, max_file, compress)}
    return json.dumps(doc, indent=2) + "\n"


def logrotate_config(dirs: Sequence[str | Path], *, rotate: int = 7,
                     project: str = "app") -> str:
    """A logrotate file for host application logs: daily, keep ``rotate``, compress.

    Uses ``copytruncate``, because applications keep their log open (logrotate copies, then
    truncates the file the application appends to). Without directories, a commented template
    for ``/var/log/<project>/*.log`` is produced.

    Args:
        dirs: Host log directories.
        rotate: Rotated files kept.
        project: Used in comments and the template path.

    Returns:
        The file's text.
    """
    if int(rotate) < 1:
        raise BadParameter("rotate", rotate, "an integer >= 1")
    body = (f"{{\n    daily\n    rotate {int(rotate)}\n    compress\n    missingok\n"
            "    notifempty\n    copytruncate\n}\n")
    head = (f"# Generated by opslib (log-cleanup runbook) for {project}.\n"
            f"# Install as /etc/logrotate.d/{project}; test with: logrotate -d <file>\n")
    if not dirs:
        return head + f"/var/log/{project}/*.log " + body
    return head + "".join(f"{Path(d).resolve()}/*.log " + body for d in dirs)


#: Where logrotate lives when it is not on PATH (cron's PATH often lacks /usr/sbin).
LOGROTATE_FALLBACK_PATHS: tuple[str, ...] = ("/usr/sbin/logrotate", "/sbin/logrotate")


def check_logrotate(path: str | Path) -> str:
    """Dry-run a logrotate file with ``logrotate -d`` (nothing is rotated).

    Args:
        path: The configuration file.

    Returns:
        logrotate's debug output.

    Raises:
        ToolMissing: logrotate is not installed.
        VerificationFailed: logrotate reports an error in the file.
    """
    exe = shutil.which("logrotate") or next(
        (p for p in LOGROTATE_FALLBACK_PATHS if os.path.exists(p)), None)
    if exe is None:
        raise ToolMissing("logrotate", "install it with 'apt-get install -y logrotate' "
                          "(Debian/Ubuntu) or your distribution's package")
    with tempfile.TemporaryDirectory(prefix="opslib-logrotate-") as tmp:
        proc = subprocess.run([exe, "-d", "-s", str(Path(tmp) / "state"), str(path)],
                              capture_output=True, text=True, timeout=60, check=False)
    out = (proc.stdout + proc.stderr).strip()
    errors = [line for line in out.splitlines() if line.lower().startswith("error")]
    if proc.returncode != 0 or errors:
        raise VerificationFailed("logrotate -d", str(path),
                                 "; ".join(errors) or f"exit {proc.returncode}: {out[-500:]}")
    return out


def check_compose_override(compose_files: Sequence[str | Path], override: str | Path, *,
                           project: str | None = None, cwd: str | Path | None = None
                           ) -> dict[str, Any]:
    """Render ``docker compose -f ... -f override config`` and check every service's logging.

    Args:
        compose_files: The project's compose files.
        override: The override from :func:`compose_logging_override`.
        project: Project name (``-p``).
        cwd: Working directory (the project's).

    Returns:
        ``{service: logging}`` as compose renders it.

    Raises:
        CommandFailed: compose rejects the files.
        BadInputFormat: compose printed no JSON model.
        VerificationFailed: A service lacks json-file options with max-size.
    """
    cfg = compose_config([*compose_files, override], project=project, cwd=cwd)
    logging = {name: svc.get("logging") or {} for name, svc in cfg.get("services", {}).items()}
    bad = [n for n, lg in logging.items()
           if lg.get("driver") != "json-file" or "max-size" not in (lg.get("options") or {})]
    if bad:
        raise VerificationFailed("compose config", str(override),
                                 f"services without json-file rotation: {bad}")
    return logging


def project_compose_files(client: Client, project: str) -> tuple[list[str], str]:
    """The compose files and working directory a project was started with (from its labels).

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.

    Returns:
        ``(files, working_dir)``.
    """
    files, workdir = compose_files_of(client, project)
    return [str(f) for f in files], workdir


def write_prevention_files(
    out_dir: str | Path,
    services: Sequence[str],
    *,
    host_log_dirs: str | Sequence[str | Path] = (),
    max_size: str = "10m",
    max_file: int = 5,
    compress: bool = True,
    rotate: int = 7,
    project: str = "app",
    compose_files: Sequence[str | Path] = (),
    workdir: str | Path | None = None,
    current_daemon_json: str | Path = "/etc/docker/daemon.json",
    check_logrotate_file: bool = True,
) -> PreventionFiles:
    """Write the compose override, daemon.json and logrotate file, and check them.

    Args:
        out_dir: Folder to write into (``prevent/`` inside it).
        services: Services of the project.
        host_log_dirs: Host log directories for the logrotate file (list or comma-separated).
        max_size: Rotation size.
        max_file: Files kept.
        compress: Compress rotated files.
        rotate: logrotate ``rotate`` count.
        project: Compose project name.
        compose_files: The project's compose files; when given, the override is checked with
            ``docker compose config``.
        workdir: The project's working directory.
        current_daemon_json: Existing daemon.json to merge (kept when readable).
        check_logrotate_file: Run ``logrotate -d``; without logrotate the check is "not run"
            (``logrotate_ok`` None) and says what to install.

    Returns:
        A :class:`PreventionFiles`.

    Raises:
        BadParameter: Bad rotation parameters.
    """
    folder = Path(out_dir) / "prevent"
    folder.mkdir(parents=True, exist_ok=True)
    override = folder / "compose.logging.override.yml"
    override.write_text(compose_logging_override(services, max_size=max_size,
                                                 max_file=max_file, compress=compress))
    current: dict[str, Any] = {}
    try:
        current = json.loads(Path(current_daemon_json).read_text())
    except (OSError, ValueError):
        current = {}
    dj = folder / "daemon.json"
    dj.write_text(daemon_json(max_size=max_size, max_file=max_file, compress=compress,
                              current=current))
    lr = folder / f"logrotate-{project}"
    lr.write_text(logrotate_config(_paths(host_log_dirs), rotate=rotate, project=project))
    lr.chmod(0o644)
    lr_out, lr_ok, lr_detail = "", None, "not asked for (check_logrotate_file=False)"
    if check_logrotate_file:
        try:
            lr_out, lr_ok = check_logrotate(lr), True
            lr_detail = f"logrotate -d accepts {lr.name}"
        except ToolMissing as exc:
            lr_detail = f"{lr.name} was not checked: {exc}"
    checked: dict[str, Any] = {}
    if compose_files:
        checked = check_compose_override(compose_files, override, project=project, cwd=workdir)
    return PreventionFiles(override, dj, lr, lr_out, checked, lr_ok, lr_detail)


def rotation_table(files: PreventionFiles) -> pd.DataFrame:
    """The logging options per service as ``docker compose config`` rendered the override.

    Args:
        files: From :func:`write_prevention_files`.

    Returns:
        service, driver, max-size, max-file, compress (empty when compose was not checked).
    """
    rows = [{"service": svc, "driver": lg.get("driver", ""),
             **{k: (lg.get("options") or {}).get(k, "") for k in ("max-size", "max-file",
                                                                   "compress")}}
            for svc, lg in sorted(files.compose_check.items())]
    return pd.DataFrame(rows, columns=["service", "driver", "max-size", "max-file", "compress"])


def threshold_detail(report: DiskReport, plan: pd.DataFrame | None = None, *,
                     applied: bool = False) -> str:
    """One sentence for the ``fs_below_threshold`` check.

    Args:
        report: The disk report measured after cleanup.
        plan: The plan (for the projection when it was not applied).
        applied: Whether the plan was applied.

    Returns:
        Which filesystems are above the threshold, and what the plan would free.
    """
    fs = report.filesystems
    if not len(fs):
        return "no filesystem measured"
    worst = fs.sort_values("used_pct", ascending=False).iloc[0]
    text = (f"highest use {worst['used_pct']:.1f}% on {worst['mount']} "
            f"(threshold {report.threshold_pct:g}%, {worst['free'] / 1e9:.1f} GB free)")
    over = fs[fs["over_threshold"]]
    if len(over):
        text += f"; over the threshold: {', '.join(over['mount'])}"
    if plan is not None and not applied and len(plan):
        freed = int(plan["bytes_freed"].sum())
        used = float(worst["used"]) - freed
        pct = 100.0 * used / (used + float(worst["free"]) + freed) if used > 0 else 0.0
        text += (f"; dry run: applying the plan would free {freed / 1e6:.1f} MB "
                 f"(about {pct:.1f}% used)")
    return text
