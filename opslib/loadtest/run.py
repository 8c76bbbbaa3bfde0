"""Bounded k6 and Locust runs against a local URL, with container stats sampled meanwhile."""

from __future__ import annotations

import datetime as _dt
import math
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from opslib.demo import K6_DEMO_SCRIPT, LOCUST_DEMO_FILE
from opslib.engine import Client
from opslib.exceptions import BadParameter, CommandFailed, OpslibError, ToolMissing
from opslib.redact import redact_text

__all__ = ["K6Run", "LocustRun", "run_k6", "run_locust"]


# --- running a load test ---------------------------------------------------------------------



_REQUESTS_PER_ITERATION = 4  # search, order, report, health (+ a login every 20 iterations)


@dataclass
class K6Run:
    """A finished k6 run.

    Attributes:
        ndjson_path: The ``--out json`` NDJSON file.
        summary_path: The ``--summary-export`` JSON file.
        exit_code: k6's exit status (0 ok, 99 = thresholds crossed).
        started: Start time (UTC).
        finished: End time (UTC).
        script_path: The script that ran.
        container_stats: Container stats sampled during the run (pandas), or ``None``.
        stats_error: Why sampling failed, when it did (the run itself is still valid).
    """

    ndjson_path: Path
    summary_path: Path
    exit_code: int
    started: _dt.datetime
    finished: _dt.datetime
    script_path: Path | None = None
    container_stats: Any = None
    stats_error: str | None = None


@dataclass
class LocustRun:
    """A finished Locust run.

    Attributes:
        csv_prefix: The ``--csv`` prefix (``<prefix>_stats.csv`` ...).
        exit_code: Locust's exit status (1 when any request failed).
        started: Start time (UTC).
        finished: End time (UTC).
        locustfile: The locustfile that ran.
        container_stats: Container stats sampled during the run (pandas), or ``None``.
        stats_error: Why sampling failed, when it did.
    """

    csv_prefix: Path
    exit_code: int
    started: _dt.datetime
    finished: _dt.datetime
    locustfile: Path | None = None
    container_stats: Any = None
    stats_error: str | None = None


def _check_target(base_url: str) -> None:
    parsed = urlparse(base_url)
    if parsed.scheme not in ("http", "https") or parsed.hostname not in (
        "127.0.0.1", "localhost", "::1"
    ):
        raise BadParameter("base_url", base_url, "an http(s) URL on 127.0.0.1/localhost (load "
                           "tests only target the local demo stack)")


def _tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    found = shutil.which(name) or (str(local) if local.exists() else None)
    if not found:
        raise ToolMissing(name, f"pip install {name} (into the same virtualenv as opslib)")
    return found


def _bounded(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadParameter(name, value, f"an integer between {low} and {high}")


class _Sampler:
    """Samples container stats in a background thread while a load test runs."""

    def __init__(self, client: Client | None, project: str | None, duration_s: float,
                 interval_s: float) -> None:
        self.result: Any = None
        self.error: str | None = None
        self.thread: threading.Thread | None = None
        if client is None or not project:
            return
        from opslib.engine import sample_stats

        def work() -> None:
            try:
                self.result = sample_stats(client, project, duration_s=duration_s,
                                           interval_s=interval_s)
            except OpslibError as exc:
                self.error = str(exc)
            except Exception as exc:  # reported with the run, never swallowed silently
                self.error = f"{type(exc).__name__}: {exc}"

        self.thread = threading.Thread(target=work, name="opslib-stats", daemon=True)
        self.thread.start()

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)
            if self.thread.is_alive():
                self.error = self.error or "stats sampling did not finish in time"


def _run_tool(cmd: list[str], timeout: float, env: Mapping[str, str]) -> int:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              check=False, env=dict(env))
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(cmd, -1, redact_text(f"timed out after {timeout:.0f} s")) from exc
    if proc.returncode not in (0, 1, 99):
        raise CommandFailed(cmd, proc.returncode, redact_text(proc.stderr or proc.stdout))
    return proc.returncode


def run_k6(
    base_url: str,
    *,
    vus: int = 10,
    duration_s: int = 20,
    out_dir: Path,
    script: Path | None = None,
    max_requests: int | None = None,
    client: Client | None = None,
    project: str | None = None,
    stats_interval_s: float = 1.0,
) -> K6Run:
    """Run a bounded k6 load test against the local demo stack, sampling container stats.

    The built-in script (:data:`K6_DEMO_SCRIPT`) logs in (tenant acme, user alice, password
    demo; again every 20 iterations), searches products, creates an order, reads the sales
    report and calls health, with requests tagged by name. k6 writes NDJSON (``--out json``) and
    a summary export (with p(99) and count) into ``out_dir``.

    Args:
        base_url: API base URL on 127.0.0.1/localhost, e.g. ``http://127.0.0.1:8080/api``.
        vus: Virtual users (1..500).
        duration_s: Run length in seconds (1..1800).
        out_dir: Folder for the script, NDJSON and summary.
        script: A k6 script of your own (gets ``BASE_URL`` in ``__ENV``); default built-in.
        max_requests: Stop after about this many requests (k6 ``--iterations``).
        client: A docker client: sample the project's container stats during the run.
        project: The compose project to sample.
        stats_interval_s: Seconds between stats readings.

    Returns:
        A :class:`K6Run`.

    Raises:
        BadParameter: A non-local URL or out-of-range bounds.
        ToolMissing: k6 is not installed.
        CommandFailed: k6 failed (other than thresholds crossed) or timed out.
    """
    _check_target(base_url)
    _bounded("vus", vus, 1, 500)
    _bounded("duration_s", duration_s, 1, 1800)
    if max_requests is not None:
        _bounded("max_requests", max_requests, 1, 10_000_000)
    k6 = _tool("k6")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if script is None:
        script = out_dir / "k6-demo-script.js"
        script.write_text(K6_DEMO_SCRIPT)
    ndjson = out_dir / "k6.ndjson"
    summary = out_dir / "k6-summary.json"
    for p in (ndjson, summary):
        p.unlink(missing_ok=True)
    cmd = [k6, "run", "--quiet", "--no-usage-report", "--no-color", "--vus", str(vus),
           "--duration", f"{duration_s}s", "--out", f"json={ndjson}",
           "--summary-export", str(summary),
           "--summary-trend-stats", "avg,min,med,max,p(90),p(95),p(99),count",
           "-e", f"BASE_URL={base_url.rstrip('/')}"]
    if max_requests is not None:
        cmd += ["--iterations", str(max(1, math.ceil(max_requests / _REQUESTS_PER_ITERATION)))]
    cmd.append(str(script))
    env = {**os.environ, "K6_NO_USAGE_REPORT": "true"}
    sampler = _Sampler(client, project, duration_s + 2, stats_interval_s)
    started = _dt.datetime.now(_dt.UTC)
    code = _run_tool(cmd, duration_s + 120, env)
    finished = _dt.datetime.now(_dt.UTC)
    sampler.join(duration_s + 60)
    if not ndjson.exists() or not summary.exists():
        raise CommandFailed(cmd, code, "k6 wrote no results")
    return K6Run(ndjson_path=ndjson, summary_path=summary, exit_code=code, started=started,
                 finished=finished, script_path=script, container_stats=sampler.result,
                 stats_error=sampler.error)


def run_locust(
    base_url: str,
    *,
    users: int = 10,
    spawn_rate: float = 10.0,
    duration_s: int = 20,
    out_dir: Path,
    locustfile: Path | None = None,
    client: Client | None = None,
    project: str | None = None,
    stats_interval_s: float = 1.0,
) -> LocustRun:
    """Run a bounded headless Locust test against the local demo stack (like :func:`run_k6`).

    Args:
        base_url: API base URL on 127.0.0.1/localhost (Locust ``--host``).
        users: Concurrent users (1..500).
        spawn_rate: Users started per second.
        duration_s: Run length in seconds (1..1800).
        out_dir: Folder for the locustfile and CSVs (prefix ``locust``).
        locustfile: Your own locustfile; default :data:`LOCUST_DEMO_FILE`.
        client: A docker client: sample the project's container stats during the run.
        project: The compose project to sample.
        stats_interval_s: Seconds between stats readings.

    Returns:
        A :class:`LocustRun` (read it with :func:`read_locust_csv`).

    Raises:
        BadParameter: A non-local URL or out-of-range bounds.
        ToolMissing: locust is not installed.
        CommandFailed: Locust failed or timed out.
    """
    _check_target(base_url)
    _bounded("users", users, 1, 500)
    _bounded("duration_s", duration_s, 1, 1800)
    if not 0 < spawn_rate <= 500:
        raise BadParameter("spawn_rate", spawn_rate, "users per second in (0, 500]")
    locust = _tool("locust")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if locustfile is None:
        locustfile = out_dir / "locust_demo.py"
        locustfile.write_text(LOCUST_DEMO_FILE)
    prefix = out_dir / "locust"
    for p in out_dir.glob("locust_*.csv"):
        p.unlink()
    cmd = [locust, "-f", str(locustfile), "--headless", "-u", str(users), "-r", f"{spawn_rate:g}",
           "-t", f"{duration_s}s", "--host", base_url.rstrip("/"), "--csv", str(prefix),
           "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "5"]
    sampler = _Sampler(client, project, duration_s + 2, stats_interval_s)
    started = _dt.datetime.now(_dt.UTC)
    code = _run_tool(cmd, duration_s + 120, os.environ)
    finished = _dt.datetime.now(_dt.UTC)
    sampler.join(duration_s + 60)
    if not prefix.with_name("locust_stats.csv").exists():
        raise CommandFailed(cmd, code, "locust wrote no stats CSV")
    return LocustRun(csv_prefix=prefix, exit_code=code, started=started, finished=finished,
                     locustfile=locustfile, container_stats=sampler.result,
                     stats_error=sampler.error)
