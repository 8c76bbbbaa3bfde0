"""Load-test analysis: the same numbers as k6/Locust/JMeter, SLO thresholds, run comparison.

Read results with :func:`load_results` (k6 ``--out json`` NDJSON plain/gzip, k6
``--summary-export``, Locust ``--csv``, JMeter CSV JTL; see :mod:`~opslib.loadtest.k6` and
:mod:`~opslib.loadtest.readers`), then:

- :func:`summarize` — per request name and overall: count, errors, error rate, throughput,
  avg/min/med/max/p(90)/p(95)/p(99) computed exactly as k6's Trend sink does (sort, then
  interpolate linearly between the closest ranks: ``i = p·(n−1)``,
  ``v[⌊i⌋] + (v[⌈i⌉]−v[⌊i⌋])·(i−⌊i⌋)``);
  error rate with k6's ``http_req_failed`` semantics;
- :func:`over_time`, :func:`error_breakdown` and the ``chart_*`` plotly figures;
- :func:`parse_thresholds` / :func:`evaluate_thresholds` — k6 threshold syntax
  (``p(95)<500``, ``rate<0.01``, ``count>100``, ``http_req_duration{name:login}:p(99)<800``)
  evaluated with k6's semantics on any source;
- :func:`compare_runs` — baseline vs candidate with a regression verdict;
- :func:`run_k6` / :func:`run_locust` — a bounded run against the demo stack on 127.0.0.1, with
  the stack's container stats sampled meanwhile (:func:`opslib.engine.sample_stats`), and
  :func:`find_bottleneck` / :func:`chart_latency_vs_resources` to put latency next to CPU/memory.
"""

from __future__ import annotations

from opslib.demo import DEMO_BASE_URL
from opslib.loadtest.analysis import (
    EXAMPLE_SOURCE,
    Comparison,
    compare_runs,
    error_breakdown,
    k6_percentile,
    no_results_reason,
    not_run_checks,
    over_time,
    resolve_source,
    summarize,
    total_errors,
)
from opslib.loadtest.charts import (
    Bottleneck,
    chart_latency_distribution,
    chart_latency_over_time,
    chart_latency_vs_resources,
    chart_throughput_errors,
    find_bottleneck,
)
from opslib.loadtest.data import OVERALL, STATS_COLUMNS, LoadTestData
from opslib.loadtest.k6 import read_k6_ndjson, read_k6_summary
from opslib.loadtest.readers import load_results, read_jmeter_jtl, read_locust_csv
from opslib.loadtest.run import K6Run, LocustRun, run_k6, run_locust
from opslib.loadtest.thresholds import Threshold, evaluate_thresholds, parse_thresholds

__all__ = [
    "DEMO_BASE_URL",
    "EXAMPLE_SOURCE",
    "OVERALL",
    "STATS_COLUMNS",
    "Bottleneck",
    "Comparison",
    "K6Run",
    "LoadTestData",
    "LocustRun",
    "Threshold",
    "chart_latency_distribution",
    "chart_latency_over_time",
    "chart_latency_vs_resources",
    "chart_throughput_errors",
    "compare_runs",
    "error_breakdown",
    "evaluate_thresholds",
    "find_bottleneck",
    "k6_percentile",
    "load_results",
    "no_results_reason",
    "not_run_checks",
    "over_time",
    "parse_thresholds",
    "read_jmeter_jtl",
    "read_k6_ndjson",
    "read_k6_summary",
    "read_locust_csv",
    "resolve_source",
    "run_k6",
    "run_locust",
    "summarize",
    "total_errors",
]
