"""Benchmark: plain papermill vs ``opslib.runbook.runner.run_runbook`` on the same small notebook.

Both run in this one process, interleaved (papermill, opslib, papermill, ...) after one warm-up run
each, so imports and caches are paid outside the timings. opslib does more per run (parameter
validation, redaction, results.json, report.html with plotly.js, index.html): the goal is a mean
time at most 1.2x papermill's. Then the report size for 1 and 10 figures is compared with the goal
"plotly.js + 0.5 MB".

    .venv/bin/python benchmarks/bench_runner.py [--runs 5] [--notebook tests/notebooks/ok.ipynb]

Everything is written under a temporary folder in /tmp and removed at the end.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import papermill as pm
from plotly.offline import get_plotlyjs

from opslib.runbook.runner import run_runbook

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "notebooks"


def _papermill(notebook: Path, out_dir: Path, i: int) -> float:
    t0 = time.perf_counter()
    pm.execute_notebook(str(notebook), str(out_dir / f"pm-{i}.ipynb"),
                        parameters={"output_dir": str(out_dir)}, progress_bar=False,
                        cwd=str(notebook.parent))
    return time.perf_counter() - t0


def _opslib(notebook: Path, outputs: Path) -> float:
    t0 = time.perf_counter()
    res = run_runbook(notebook, {}, outputs_dir=outputs)
    elapsed = time.perf_counter() - t0
    if res.exit_code != 0:
        raise SystemExit(f"benchmark notebook failed: {res.exit_reason}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each (default 5)")
    parser.add_argument("--notebook", type=Path, default=FIXTURES / "ok.ipynb")
    args = parser.parse_args()
    logging.getLogger("papermill").setLevel(logging.ERROR)  # its per-run INFO/WARNING lines
    work = Path(tempfile.mkdtemp(prefix="opslib-bench-", dir="/tmp"))
    try:
        outputs = work / "outputs"
        _papermill(args.notebook, work, -1)  # warm-up: imports, kernelspec lookup
        _opslib(args.notebook, outputs)
        pm_times, ops_times = [], []
        for i in range(args.runs):
            pm_times.append(_papermill(args.notebook, work, i))
            ops_times.append(_opslib(args.notebook, outputs))
        pm_mean, ops_mean = statistics.mean(pm_times), statistics.mean(ops_times)
        ratio = ops_mean / pm_mean
        print(f"notebook: {args.notebook.name}, {args.runs} timed runs each (after 1 warm-up)")
        print(f"plain papermill : mean {pm_mean:.3f} s  (min {min(pm_times):.3f}, "
              f"max {max(pm_times):.3f})")
        print(f"opslib runner   : mean {ops_mean:.3f} s  (min {min(ops_times):.3f}, "
              f"max {max(ops_times):.3f})")
        print(f"ratio opslib/papermill: {ratio:.2f}x  (goal <= 1.20x: "
              f"{'met' if ratio <= 1.2 else 'NOT met'})")

        plotly_bytes = len(get_plotlyjs().encode())
        limit = plotly_bytes + 512 * 1024
        print(f"plotly.js embedded once: {plotly_bytes / 1e6:.2f} MB; report size limit "
              f"{limit / 1e6:.2f} MB")
        for n in (1, 10):
            res = run_runbook(FIXTURES / "figures.ipynb", {"n_figures": n, "plain_show": False},
                              outputs_dir=outputs)
            size = res.report_path.stat().st_size
            print(f"report with {n:>2} figure(s): {size / 1e6:.3f} MB = plotly.js + "
                  f"{(size - plotly_bytes) / 1e3:.0f} kB ({'within' if size <= limit else 'OVER'}"
                  " the limit)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
