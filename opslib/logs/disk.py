"""Who fills the disk with container logs: log files, rotation settings, filesystem usage."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from opslib.engine import (
    CONFIG_FILES_LABEL,
    SERVICE_LABEL,
    WORKDIR_LABEL,
    Client,
    engine_errors,
    project_containers,
)
from opslib.exceptions import (
    BadParameter,
)

__all__ = [
    "DiskReport",
    "disk_chart",
    "disk_report",
    "filesystem_usage",
    "host_log_files",
    "log_files",
]


_ROTATED_RE = re.compile(r"\.(\d+)(\.gz)?$")
_HOST_ROTATED_RE = re.compile(r"(\.\d+|[-.]\d{8}(\d{2})?|\.old)(\.gz|\.xz|\.bz2|\.zst)?$")


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
