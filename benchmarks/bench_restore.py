"""Benchmark: opslib's restore phase vs. a plain ``pg_restore -j N`` done by hand, same dump.

Prepares its input with ``opslib.backup.take_backup`` (a dump of the demo stack's seeded shop
database into a temporary folder under /tmp), then alternates, ``--repeat`` times:

* reference: a scratch container from the production db image started with ``docker run``, the
  dump copied in with ``docker cp``, an empty database, and ``docker exec ... pg_restore -j N``
  timed around the exec (the docker CLI, no opslib);
* opslib: ``opslib.backup.run_drill`` on the same dump; its ``restore`` phase is compared, and
  the full drill time (all phases, cleanup included) and the measured RTO are reported.

Prints medians, the ratio opslib/reference (goal <= 1.10x), backup throughput and peak RSS.
Needs the demo stack (``python scripts/demo_stack.py up``). Everything it creates is labelled
``opslib.test=1`` / ``opslib.bench=1`` and removed; the temporary folder is deleted.

Usage::

    .venv/bin/python benchmarks/bench_restore.py [--project shop] [--jobs 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from opslib import backup as bk
from opslib import engine as od
from opslib.exceptions import OpslibError

LABELS = {"opslib.test": "1", "opslib.bench": "1"}


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


class Vanished(Exception):
    """The scratch container was removed under us (another test session's label cleanup)."""


def plain_restore(image: str, dump: Path, database: str, owner: str, jobs: int) -> float:
    """Time ``pg_restore -j`` by hand in a fresh scratch container; returns seconds."""
    name = f"opslib-bench-{secrets.token_hex(4)}"
    label_args = [a for k, v in LABELS.items() for a in ("--label", f"{k}={v}")]
    try:
        docker("run", "-d", "--name", name, "--network", "none", *label_args,
               "-e", f"POSTGRES_PASSWORD={secrets.token_urlsafe(16)}", image)
        deadline = time.monotonic() + 180
        while docker("exec", name, "pg_isready", "-q", "-U", "postgres", check=False).returncode:
            if docker("inspect", name, check=False).returncode:
                raise Vanished(name)
            if time.monotonic() > deadline:
                raise SystemExit(f"{name}: not ready after 180 s")
            time.sleep(0.25)
        docker("exec", name, "psql", "-X", "-q", "-U", "postgres", "-d", "postgres",
               "-c", f'DROP DATABASE IF EXISTS "{database}"',
               "-c", f'CREATE DATABASE "{database}" OWNER "{owner}"')
        docker("cp", str(dump), f"{name}:/tmp/plain.dump")
        t0 = time.perf_counter()
        proc = docker("exec", name, "pg_restore", "-j", str(jobs), "-U", "postgres",
                      "-d", database, "/tmp/plain.dump", check=False)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            if docker("inspect", name, check=False).returncode:
                raise Vanished(name)
            raise SystemExit(f"plain pg_restore failed: {proc.stderr[-2000:]}")
        return seconds
    finally:
        docker("rm", "-f", "-v", name, check=False)


def wait_for_quiet(max_load: float, limit_s: float = 120.0) -> float:
    """Wait until the host's 1-minute load average is below ``max_load`` (bounded)."""
    deadline = time.monotonic() + limit_s
    while os.getloadavg()[0] >= max_load and time.monotonic() < deadline:
        time.sleep(2)
    return os.getloadavg()[0]


T = TypeVar("T")


def retry(fn: Callable[[], T], attempts: int = 6) -> T:
    """Run one measurement again when a concurrent session removed its scratch container."""
    for i in range(attempts):
        try:
            return fn()
        except (Vanished, OpslibError) as exc:
            if i == attempts - 1:
                raise
            print(f"  (measurement disturbed, repeated: {str(exc)[:120]})")
    raise AssertionError("unreachable")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--project", default="shop")
    parser.add_argument("--jobs", type=int, default=2, help="pg_restore -j")
    parser.add_argument("--repeat", type=int, default=5, help="measured pairs")
    parser.add_argument("--max-load", type=float, default=2.5,
                        help="wait (up to 2 min) for the 1-min load average to drop below this "
                        "before each pair; the host is shared")
    args = parser.parse_args()

    client = od.connect()
    work = Path(tempfile.mkdtemp(prefix="opslib-bench-restore-", dir="/tmp"))
    try:
        t0 = time.perf_counter()
        taken = bk.take_backup(client, args.project, backup_dir=work)
        backup_s = time.perf_counter() - t0
        size_mb = taken.size_bytes / 1e6
        rows = sum(t["rows"] for t in taken.manifest["tables"].values())
        image = str(client.containers.get(taken.manifest["container"]).attrs["Image"])
        print(f"dump: {taken.path.name}, {size_mb:.1f} MB, {rows} rows, -Z1; backup with "
              f"manifest took {backup_s:.2f} s ({size_mb / backup_s:.1f} MB/s, pg_dump + counts "
              "+ checksums in one snapshot)")

        plain: list[float] = []
        restore: list[float] = []
        drill_total: list[float] = []
        rto: list[float] = []
        for i in range(args.repeat):
            load = wait_for_quiet(args.max_load)
            # Alternate which goes first, so neither always follows the other's cleanup I/O.
            for which in (("plain", "opslib") if i % 2 == 0 else ("opslib", "plain")):
                if which == "plain":
                    plain.append(retry(lambda: plain_restore(
                        image, taken.path, taken.manifest["database"], taken.manifest["user"],
                        args.jobs)))
                    continue
                result = retry(lambda: bk.run_drill(
                    client, args.project, backup_dir=work, backup_file=taken.path.name,
                    restore_jobs=args.jobs, labels=LABELS))
                restore.append(result.phase_seconds("restore") or 0.0)
                drill_total.append(float(result.phases["seconds"].sum()))
                rto.append(result.rto_s or 0.0)
            print(f"  pair {i + 1} (load {load:.1f}): plain pg_restore {plain[-1]:.2f} s | "
                  f"opslib restore phase {restore[-1]:.2f} s (x{restore[-1] / plain[-1]:.2f}) | "
                  f"full drill {drill_total[-1]:.2f} s | RTO {rto[-1]:.2f} s")

        p, o = statistics.median(plain), statistics.median(restore)
        pairs = statistics.median(r / q for r, q in zip(restore, plain, strict=True))
        print(f"\nplain pg_restore -j {args.jobs} (docker exec): median {p:.2f} s, "
              f"min {min(plain):.2f} s")
        print(f"opslib restore phase:                median {o:.2f} s, min {min(restore):.2f} s")
        print(f"ratio opslib / plain: median of pairs {pairs:.3f}x, of medians {o / p:.3f}x, "
              f"of minima {min(restore) / min(plain):.3f}x (goal <= 1.10x)")
        print(f"full drill (checksum, scratch start, copy, restore, verify, cleanup): median "
              f"{statistics.median(drill_total):.2f} s; measured RTO median "
              f"{statistics.median(rto):.2f} s")
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of this process: {rss_mb:.0f} MB (dump {size_mb:.1f} MB streamed, "
              "never held whole)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
