"""Bounded real load runs (k6, Locust) against the demo stack, and the runbook under papermill."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import papermill
import polars as pl
import pytest

from opslib import loadtest as lt
from opslib.report import results_from_notebook

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "load-test-analysis.ipynb"
STATS = {"count": "count", "avg": "avg", "min": "min", "med": "med", "max": "max",
         "p(90)": "p90", "p(95)": "p95", "p(99)": "p99"}

pytestmark = pytest.mark.docker


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)


@pytest.fixture(scope="module")
def k6_run(docker_client: Any, shop: str, tmp_path_factory: pytest.TempPathFactory
           ) -> lt.K6Run:
    out = tmp_path_factory.mktemp("k6run")
    return lt.run_k6(lt.DEMO_BASE_URL, vus=5, duration_s=10, out_dir=out,
                     client=docker_client, project=shop)


def test_k6_run_numbers_equal_its_summary_export(k6_run: lt.K6Run) -> None:
    assert k6_run.exit_code in (0, 99)
    exported = json.loads(k6_run.summary_path.read_text())["metrics"]
    data = lt.load_results(k6_run.ndjson_path)
    summary = lt.summarize(data)
    overall = summary.row(0, named=True)
    assert overall["count"] == exported["http_reqs"]["count"] > 50
    for stat, col in STATS.items():
        assert close(overall[col], exported["http_req_duration"][stat]), stat
    failed = exported["http_req_failed"]
    assert overall["errors"] == failed["passes"]
    assert close(overall["error_rate"], failed["value"])
    names = set(summary["name"].to_list())
    assert {"product_search", "create_order", "sales_report", "health", "login"} <= names
    # The demo stack answers the built-in scenario: orders are created (201), searches work.
    req = data.requests
    assert req is not None
    statuses = req.group_by("name").agg(pl.col("status").mode().first())
    assert dict(statuses.iter_rows())["create_order"] == 201


def test_k6_run_samples_the_stack_and_names_a_bottleneck(k6_run: lt.K6Run) -> None:
    assert k6_run.stats_error is None
    stats = k6_run.container_stats
    assert stats is not None and len(stats) > 0
    assert {"api", "web", "db", "cache"} <= set(stats["service"])
    data = lt.load_results(k6_run.ndjson_path)
    neck = lt.find_bottleneck(lt.summarize(data), stats)
    assert neck.cpu_service in {"api", "web", "db", "cache"}
    assert neck.slowest_name is not None and neck.slowest_name in neck.text
    fig = lt.chart_latency_vs_resources(lt.over_time(data, "1s"), stats)
    assert len(fig.data) == 1 + 2 * 4


def test_k6_max_requests_bounds_the_run(shop: str, tmp_path: Path) -> None:
    run = lt.run_k6(lt.DEMO_BASE_URL, vus=2, duration_s=20, out_dir=tmp_path, max_requests=20)
    exported = json.loads(run.summary_path.read_text())["metrics"]
    assert exported["iterations"]["count"] == 5  # ceil(20 / 4 requests per iteration)
    assert lt.summarize(lt.load_results(run.ndjson_path)).row(0, named=True)["count"] <= 27


def test_locust_run_against_the_stack(docker_client: Any, shop: str, tmp_path: Path) -> None:
    run = lt.run_locust(lt.DEMO_BASE_URL, users=3, spawn_rate=3, duration_s=6,
                        out_dir=tmp_path, client=docker_client, project=shop)
    data = lt.read_locust_csv(run.csv_prefix)
    summary = lt.summarize(data)
    overall = summary.row(0, named=True)
    named = summary.filter(pl.col("name") != lt.OVERALL)
    assert overall["count"] == named["count"].sum() > 20
    assert {"product_search", "create_order", "sales_report", "health"} <= set(named["name"])
    assert run.container_stats is not None and len(run.container_stats) > 0
    verdict = lt.evaluate_thresholds(data, "p(95)<10000").row(0, named=True)
    assert verdict["status"] == "pass"


def test_notebook_runs_k6_and_records_its_numbers(shop: str, tmp_path: Path) -> None:
    out_nb = tmp_path / "out.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK), str(out_nb), cwd=str(ROOT / "notebooks"), kernel_name="python3",
        parameters={"run_k6": True, "k6_vus": 3, "k6_duration_s": 6,
                    "output_dir": str(tmp_path), "thresholds": "p(95)<5000,rate<0.5,count>1"},
        progress_bar=False,
    )
    results = results_from_notebook(out_nb)
    records = results["records"]
    exported = json.loads((tmp_path / "k6-summary.json").read_text())["metrics"]
    assert records["requests"] == exported["http_reqs"]["count"]
    assert close(records["p95_ms"], exported["http_req_duration"]["p(95)"])
    assert close(records["p99_ms"], exported["http_req_duration"]["p(99)"])
    assert close(records["error_rate"], exported["http_req_failed"]["value"])
    assert records["throughput_rps"] > 0 and "busiest service" in records["bottleneck"]
    checks = {c["name"]: c["ok"] for c in results["checks"]}
    assert checks == {"slo p(95)<5000": True, "slo rate<0.5": True, "slo count>1": True}


def test_notebook_default_run_and_baseline(tmp_path: Path) -> None:
    out_nb = tmp_path / "out.ipynb"
    fixture = ROOT / "tests" / "fixtures" / "loadtest"
    papermill.execute_notebook(
        str(NOTEBOOK), str(out_nb), cwd=str(ROOT / "notebooks"), kernel_name="python3",
        parameters={"output_dir": str(tmp_path), "source": "example",
                    "baseline": str(fixture / "k6-summary.json"),
                    "thresholds": "p(95)<500,rate<0.01,p(90)<20"},
        progress_bar=False,
    )
    results = results_from_notebook(out_nb)
    exported = json.loads((fixture / "k6-summary.json").read_text())["metrics"]
    assert results["records"]["requests"] == exported["http_reqs"]["count"]
    checks = {c["name"]: c["ok"] for c in results["checks"]}
    # k6 itself: p(95)<500 passed, rate<0.01 passed, p(90)<20 failed (fixture thresholds).
    assert checks == {"slo p(95)<500": True, "slo rate<0.01": True, "slo p(90)<20": False,
                      "no_regression_vs_baseline": True}
