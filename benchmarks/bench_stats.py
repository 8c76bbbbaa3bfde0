"""Benchmark concurrent vs. sequential container stats sampling.

Starts N idle containers (``debian:bookworm-slim`` running ``sleep infinity``, labelled
``opslib.test=1``) for N = 1, 5, 20, then times in the same run, each ``--repeat`` times:

* sequential: ``opslib.engine.container_stats`` on each container, one after the other (what a
  naive loop does; the reference),
* concurrent: ``opslib.engine.snapshot_stats`` (one thread per container), the way
  ``opslib.engine.sample_stats`` reads a project.

One reading takes one to two seconds whatever the container (the engine waits for its next
collection cycle and reports the previous one too), so the sequential time grows with N and the
concurrent time should not. Other test sessions on a shared engine may remove ``opslib.test``
containers at any time: a repetition that loses a container recreates it and is timed again.
Prints the median wall time per N, the sequential/concurrent ratio
and concurrent(N)/concurrent(1); goal: concurrent sampling of 20 containers takes at most
1.5x one container's. The containers are removed at the end (also on Ctrl-C).

Usage: ``.venv/bin/python benchmarks/bench_stats.py [--sizes 1,5,20] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import sys
import time
import uuid
from typing import Any

from opslib.engine import connect, container_stats, snapshot_stats
from opslib.exceptions import ContainerNotFound

IMAGE = "debian:bookworm-slim"
LABELS = {"opslib.test": "1", "opslib.bench": "stats"}


class _Lost(Exception):
    """A container of ours stopped while it was being read."""


def _start(client: Any, n: int, prefix: str) -> list[Any]:
    """Start n labelled idle containers named ``<prefix>-<i>`` and wait until they run."""
    made = [client.containers.run(IMAGE, ["sleep", "infinity"], name=f"{prefix}-{i}",
                                  labels=LABELS, detach=True, init=True) for i in range(n)]
    deadline = time.monotonic() + 60
    for c in made:
        while c.status != "running" and time.monotonic() < deadline:
            time.sleep(0.2)
            c.reload()
    return made


def _remove_ours(client: Any, tag: str) -> None:
    for c in client.containers.list(all=True, filters={"label": "opslib.bench=stats"}):
        if c.name.startswith(f"opslib-bench-stats-{tag}-"):
            # may already be in removal by another session's cleanup
            with contextlib.suppress(Exception):
                c.remove(force=True)


def _timed(fn: Any, *args: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def _sequential(client: Any, containers: list[Any]) -> list[dict[str, Any]]:
    return [container_stats(client, c) for c in containers]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,5,20", help="numbers of containers (comma-separated)")
    ap.add_argument("--repeat", type=int, default=3, help="timings per size and method")
    args = ap.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    client = connect()
    tag = uuid.uuid4().hex[:6]
    generation = 0
    containers = _start(client, max(sizes), f"opslib-bench-stats-{tag}-{generation}")
    results: dict[int, dict[str, float]] = {}
    try:
        container_stats(client, containers[0])  # warm up the connection and the engine
        for n in sizes:
            conc: list[float] = []
            seq: list[float] = []
            attempts = 0
            while len(conc) < args.repeat:
                subset = containers[:n]
                try:
                    t_conc, df = _timed(snapshot_stats, client, subset)
                    if len(df) != n or not df["mem_limit_bytes"].gt(0).all():
                        raise _Lost("a container stopped during the reading")
                    t_seq, _ = _timed(_sequential, client, subset)
                except (ContainerNotFound, _Lost) as exc:
                    attempts += 1
                    if attempts > 10:
                        raise
                    print(f"  (N={n}: {exc}; recreating and timing again)", file=sys.stderr)
                    _remove_ours(client, tag)
                    generation += 1
                    containers = _start(client, max(sizes),
                                        f"opslib-bench-stats-{tag}-{generation}")
                    continue
                conc.append(t_conc)
                seq.append(t_seq)
            results[n] = {"concurrent": statistics.median(conc),
                          "sequential": statistics.median(seq),
                          "concurrent_min": min(conc), "concurrent_max": max(conc)}
    finally:
        _remove_ours(client, tag)
        client.close()

    base = results[min(sizes)]["concurrent"]
    print(f"{'N':>3} {'sequential s':>13} {'concurrent s':>13} {'(min..max)':>13} "
          f"{'seq/conc':>9} {'conc(N)/conc(1)':>16}")
    for n in sizes:
        r = results[n]
        print(f"{n:>3} {r['sequential']:>13.2f} {r['concurrent']:>13.2f} "
              f"{r['concurrent_min']:>6.2f}..{r['concurrent_max']:<6.2f} "
              f"{r['sequential'] / r['concurrent']:>9.1f} {r['concurrent'] / base:>16.2f}")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {rss_mb:.0f} MiB")
    biggest = max(sizes)
    ratio = results[biggest]["concurrent"] / base
    ok = ratio <= 1.5
    print(f"goal: concurrent sampling of {biggest} containers <= 1.5x one container's: "
          f"{ratio:.2f}x -> {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
