"""Container CPU/memory sampling, computed exactly like ``docker stats``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pandas as pd

from opslib.engine.client import SERVICE_LABEL, Client, engine_errors
from opslib.engine.containers import project_containers
from opslib.exceptions import (
    BadParameter,
    ContainerNotFound,
    OpslibError,
)

__all__ = [
    "STATS_COLUMNS",
    "container_stats",
    "cpu_percent",
    "mem_usage_no_cache",
    "parse_stats",
    "sample_stats",
    "snapshot_stats",
]


# --------------------------------------------------------------------------------------------
# Stats sampling (resource tuning, issue 5). Computed exactly as the ``docker stats`` CLI does
# (docker/cli cli/command/container/stats_helpers.go).
# --------------------------------------------------------------------------------------------

STATS_COLUMNS = [
    "time", "service", "container", "cpu_percent", "mem_usage_bytes", "mem_limit_bytes",
    "mem_percent", "net_rx_bytes", "net_tx_bytes", "blk_read_bytes", "blk_write_bytes", "pids",
    "cpu_periods", "cpu_throttled_periods", "cpu_throttled_time_ns",
]


def cpu_percent(cpu: Mapping[str, Any], precpu: Mapping[str, Any]) -> float:
    """CPU usage in percent of one CPU between two ``cpu_stats`` readings, as ``docker stats``.

    ``(container delta / system delta) × online CPUs × 100``: 100 % is one full core, so a
    container using two cores shows 200 %.

    Args:
        cpu: The later ``cpu_stats`` mapping of the stats API.
        precpu: The earlier one (the API's ``precpu_stats`` or a previous sample's ``cpu_stats``).

    Returns:
        The percentage; 0.0 when either delta is not positive (first reading, stopped container).
    """
    usage = cpu.get("cpu_usage") or {}
    pre_usage = precpu.get("cpu_usage") or {}
    cpu_delta = float(usage.get("total_usage") or 0) - float(pre_usage.get("total_usage") or 0)
    system_delta = float(cpu.get("system_cpu_usage") or 0) - float(
        precpu.get("system_cpu_usage") or 0
    )
    online = float(cpu.get("online_cpus") or 0)
    if online == 0.0:
        online = float(len(usage.get("percpu_usage") or []))
    if system_delta > 0.0 and cpu_delta > 0.0:
        return cpu_delta / system_delta * online * 100.0
    return 0.0


def mem_usage_no_cache(memory_stats: Mapping[str, Any]) -> int:
    """Memory usage without the reclaimable page cache, as ``docker stats`` shows it.

    cgroup v1: ``usage - total_inactive_file``; cgroup v2: ``usage - inactive_file``; the raw
    usage when the cache figure is missing or not smaller.

    Args:
        memory_stats: The ``memory_stats`` mapping of the stats API.

    Returns:
        Bytes in use.
    """
    usage = int(memory_stats.get("usage") or 0)
    stats = memory_stats.get("stats") or {}
    if "total_inactive_file" in stats and int(stats["total_inactive_file"]) < usage:
        return usage - int(stats["total_inactive_file"])
    inactive = int(stats.get("inactive_file") or 0)
    if inactive < usage:
        return usage - inactive
    return usage


def parse_stats(raw: Mapping[str, Any], precpu: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Turn one raw stats API document into the numbers ``docker stats`` prints.

    Args:
        raw: What ``GET /containers/{id}/stats?stream=false`` returned.
        precpu: The ``cpu_stats`` to compute CPU % against; default: the document's own
            ``precpu_stats`` (the daemon's previous reading, about one second earlier).

    Returns:
        ``time`` (UTC timestamp of the reading), ``container`` (name), ``cpu_percent``,
        ``mem_usage_bytes``, ``mem_limit_bytes``, ``mem_percent``, ``net_rx_bytes``,
        ``net_tx_bytes``, ``blk_read_bytes``, ``blk_write_bytes``, ``pids``, ``cpu_periods``,
        ``cpu_throttled_periods``, ``cpu_throttled_time_ns`` (cumulative CFS throttling counters),
        and ``running`` (False when the engine returned an empty reading).
    """
    cpu = raw.get("cpu_stats") or {}
    pre = precpu if precpu is not None else (raw.get("precpu_stats") or {})
    mem = raw.get("memory_stats") or {}
    mem_used = mem_usage_no_cache(mem)
    mem_limit = int(mem.get("limit") or 0)
    rx = tx = 0
    for net in (raw.get("networks") or {}).values():
        rx += int(net.get("rx_bytes") or 0)
        tx += int(net.get("tx_bytes") or 0)
    blk_read = blk_write = 0
    for entry in (raw.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(entry.get("op") or "")[:1].lower()
        if op == "r":
            blk_read += int(entry.get("value") or 0)
        elif op == "w":
            blk_write += int(entry.get("value") or 0)
    throttling = cpu.get("throttling_data") or {}
    running = bool(cpu.get("system_cpu_usage"))
    read = str(raw.get("read") or "")
    time = (pd.Timestamp(read) if running and read and not read.startswith("0001")
            else pd.Timestamp.now(tz="UTC"))
    if time.tzinfo is None:
        time = time.tz_localize("UTC")
    return {
        "time": time.tz_convert("UTC"),
        "container": str(raw.get("name") or "").lstrip("/"),
        "cpu_percent": cpu_percent(cpu, pre),
        "mem_usage_bytes": mem_used,
        "mem_limit_bytes": mem_limit,
        "mem_percent": mem_used / mem_limit * 100.0 if mem_limit else 0.0,
        "net_rx_bytes": rx,
        "net_tx_bytes": tx,
        "blk_read_bytes": blk_read,
        "blk_write_bytes": blk_write,
        "pids": int((raw.get("pids_stats") or {}).get("current") or 0),
        "cpu_periods": int(throttling.get("periods") or 0),
        "cpu_throttled_periods": int(throttling.get("throttled_periods") or 0),
        "cpu_throttled_time_ns": int(throttling.get("throttled_time") or 0),
        "running": running,
    }


class _PoolFullFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Connection pool is full" not in record.getMessage()


@contextlib.contextmanager
def _quiet_pool_warnings() -> Iterator[None]:
    # docker-py keeps 10 pooled connections; concurrent sampling of more containers opens extra
    # (cheap, local) connections and urllib3 warns when it closes them instead of pooling them.
    log = logging.getLogger("urllib3.connectionpool")
    flt = _PoolFullFilter()
    log.addFilter(flt)
    try:
        yield
    finally:
        log.removeFilter(flt)


def _raw_stats(client: Client, container: Any, *, one_shot: bool = False) -> dict[str, Any]:
    name = container if isinstance(container, str) else container.name
    ident = name if isinstance(container, str) else container.id
    with engine_errors(container=name):
        for attempt in range(3):
            try:
                raw: dict[str, Any] = client.api.stats(
                    ident, stream=False, one_shot=True if one_shot else None,
                )
                return raw
            except ValueError as exc:  # empty body: the container stopped during the request
                state = client.api.inspect_container(ident).get("State") or {}  # 404 if gone
                if not state.get("Running") or state.get("Dead"):
                    return {}  # reads as "not running", like the CLI's zeros
                if attempt == 2:
                    raise OpslibError(f"The engine sent no stats for {name} three times; "
                                      "check 'docker stats' and retry.") from exc
    return {}  # pragma: no cover - the loop always returns or raises


def _supports_one_shot(client: Client) -> bool:
    from docker.utils import version_gte

    return bool(version_gte(str(client.api._version), "1.41"))


def _service_of(container: Any) -> str:
    if isinstance(container, str):
        return ""
    return str((container.labels or {}).get(SERVICE_LABEL, ""))


def container_stats(client: Client, container: Any) -> dict[str, Any]:
    """One ``docker stats --no-stream`` reading of one container.

    Takes about one to two seconds: the engine waits for its next collection cycle so that it can
    report the previous CPU reading (``precpu_stats``) too.

    Args:
        client: A ``docker.DockerClient``.
        container: A container object or its name/id.

    Returns:
        The fields of :func:`parse_stats` plus ``service`` (compose service label, "" if none).
        A stopped container reads as zeros with ``running`` False, as in the CLI.

    Raises:
        ContainerNotFound: No such container.
    """
    row = parse_stats(_raw_stats(client, container))
    row["service"] = _service_of(container)
    if not row["container"]:
        row["container"] = container if isinstance(container, str) else container.name
    return row


def snapshot_stats(
    client: Client, containers: Sequence[Any], *, max_workers: int | None = None
) -> pd.DataFrame:
    """One :func:`container_stats` reading of each container, taken concurrently (threads).

    The engine answers every request after its next collection cycle, so reading 20 containers
    at once costs about as much wall time as reading one.

    Args:
        client: A ``docker.DockerClient``.
        containers: Container objects or names/ids.
        max_workers: Threads (default: one per container, at most 64).

    Returns:
        A DataFrame with :data:`STATS_COLUMNS`, one row per container.
    """
    from concurrent.futures import ThreadPoolExecutor

    if not containers:
        return pd.DataFrame(columns=STATS_COLUMNS)
    workers = max_workers or min(len(containers), 64)
    with _quiet_pool_warnings(), ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(pool.map(lambda c: container_stats(client, c), containers))
    return _stats_frame(rows)


def _stats_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows), columns=STATS_COLUMNS)
    if not df.empty:
        df["time"] = pd.to_datetime(df["time"], utc=True)
        df = df.sort_values(["service", "container", "time"], kind="stable").reset_index(drop=True)
    return df


def _sample_one(
    client: Client,
    container: Any,
    start: float,
    interval_s: float,
    readings: int,
    rows: list[dict[str, Any]],
    tick: Any,
) -> None:
    import time as _time

    service = _service_of(container)

    def keep(raw: Mapping[str, Any], precpu: Mapping[str, Any] | None) -> bool:
        row = parse_stats(raw, precpu)
        if row["running"]:
            row["service"] = service
            row["container"] = row["container"] or container.name
            if precpu is None and not raw.get("precpu_stats", {}).get("system_cpu_usage"):
                row["cpu_percent"] = float("nan")  # nothing to diff against
            rows.append(row)
        tick()
        return bool(row["running"])

    try:
        if readings == 0:  # one reading, exactly like `docker stats --no-stream`
            keep(_raw_stats(client, container), None)
            return
        # A baseline now, then one reading at the end of each interval; CPU % of a reading is
        # the CLI's formula over the whole interval since the previous one. With a previous
        # reading to diff against, the engine need not wait for two cycles (one-shot).
        one_shot = _supports_one_shot(client)
        base = _raw_stats(client, container, one_shot=one_shot)
        previous = base.get("cpu_stats") if (base.get("cpu_stats") or {}).get(
            "system_cpu_usage") else None
        end = start + readings * interval_s + 1.0  # intervals < 1 s: stop on time anyway
        for k in range(1, readings + 1):
            delay = start + k * interval_s - _time.monotonic()
            if delay > 0:
                _time.sleep(delay)
            elif _time.monotonic() > end:
                break
            raw = _raw_stats(client, container, one_shot=one_shot)
            running = keep(raw, previous)
            previous = raw.get("cpu_stats") if running else None
    except ContainerNotFound:  # removed while we sampled: keep what we have
        return


def sample_stats(
    client: Client,
    project: str,
    *,
    duration_s: float,
    interval_s: float = 1.0,
    progress: bool = False,
) -> pd.DataFrame:
    """Sample CPU, memory, network, block I/O and PIDs of every running container of a project.

    Every container is read in its own thread: a baseline reading at the start, then one at the
    end of each ``interval_s`` for ``duration_s`` seconds (``duration_s // interval_s``
    readings). Numbers are computed as ``docker stats`` does (CPU delta over system delta ×
    online CPUs, here over the whole interval since the previous reading; memory usage minus
    inactive file cache, cgroup v1 and v2). With ``duration_s < interval_s`` each container is
    read once, exactly as ``docker stats --no-stream`` (CPU over the engine's last second). The
    engine collects stats once a second, so readings land on its next cycle (up to ~1 s late) and
    an ``interval_s`` below 1 s samples as fast as the engine allows.

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.
        duration_s: How long to sample, in seconds.
        interval_s: Seconds between readings of one container.
        progress: Show a tqdm progress bar (``tqdm.auto``: a widget in Jupyter).

    Returns:
        A DataFrame with columns time (UTC), service, container, cpu_percent, mem_usage_bytes,
        mem_limit_bytes, mem_percent, net_rx_bytes, net_tx_bytes, blk_read_bytes,
        blk_write_bytes, pids, cpu_periods, cpu_throttled_periods, cpu_throttled_time_ns (the
        last three are cumulative CFS throttling counters), sorted by service, container, time.

    Raises:
        BadParameter: ``duration_s`` is negative or ``interval_s`` not positive.
        ProjectNotFound: The project has no running container.
    """
    import threading
    import time as _time
    from concurrent.futures import ThreadPoolExecutor


    if not duration_s >= 0:
        raise BadParameter("duration_s", duration_s, "a number of seconds >= 0")
    if not interval_s > 0:
        raise BadParameter("interval_s", interval_s, "a number of seconds > 0")
    containers = project_containers(client, project, include_stopped=False)
    readings = int(duration_s // interval_s) if duration_s >= interval_s else 0
    bar: Any = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=max(1, readings) * len(containers), desc=f"stats {project}",
                   unit="sample")
    lock = threading.Lock()

    def tick() -> None:
        if bar is not None:
            with lock:
                bar.update(1)

    rows: list[dict[str, Any]] = []
    start = _time.monotonic()
    try:
        workers = min(len(containers), 64)
        with _quiet_pool_warnings(), ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_sample_one, client, c, start, interval_s, readings, rows, tick)
                       for c in containers]
            for fut in futures:
                fut.result()
    finally:
        if bar is not None:
            bar.close()
    return _stats_frame(rows)
