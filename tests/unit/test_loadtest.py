"""Load-test analysis against real tool output (fixtures made by k6 and Locust, see
tests/fixtures/loadtest/make_fixtures.py) and a hand-written JMeter JTL in JMeter's format."""

from __future__ import annotations

import csv
import gzip
import json
import math
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest

from opslib import loadtest as lt
from opslib.exceptions import BadInputFormat, BadParameter

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "loadtest"
K6 = Path(__file__).resolve().parents[2] / "demo" / "samples" / "k6.ndjson"
K6_GZ = FIX / "k6.ndjson.gz"
K6_SUMMARY = FIX / "k6-summary.json"
LOCUST = FIX / "locust_stats.csv"
JTL = FIX / "jmeter.jtl"
TREND_STATS = ("count", "avg", "min", "med", "max", "p(90)", "p(95)", "p(99)")
COLUMN = {"p(90)": "p90", "p(95)": "p95", "p(99)": "p99"}


def close(a: float, b: float) -> bool:
    """Equal up to float formatting (k6 writes full float64 precision)."""
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)


def k6_p(values: list[float], pct: float) -> float:
    """k6's TrendSink.P, transcribed: sort, i = pct*(n-1), interpolate floor/ceil."""
    vs = sorted(values)
    if len(vs) == 1:
        return vs[0]
    i = pct * (len(vs) - 1)
    j, k = vs[math.floor(i)], vs[math.ceil(i)]
    return j + (k - j) * (i - math.floor(i))


@pytest.fixture(scope="module")
def k6() -> lt.LoadTestData:
    return lt.read_k6_ndjson(K6)


@pytest.fixture(scope="module")
def k6_export() -> dict[str, Any]:
    return json.loads(K6_SUMMARY.read_text())["metrics"]


# --- k6: the same numbers as k6's own summary export ----------------------------------------


def test_k6_overall_trend_stats_equal_summary_export(k6: lt.LoadTestData,
                                                     k6_export: dict[str, Any]) -> None:
    row = lt.summarize(k6).filter(pl.col("name") == lt.OVERALL).row(0, named=True)
    exported = k6_export["http_req_duration"]
    for stat in TREND_STATS:
        assert close(row[COLUMN.get(stat, stat)], exported[stat]), stat
    assert row["count"] == k6_export["http_reqs"]["count"]


@pytest.mark.parametrize("name", ["products", "sales_report"])
def test_k6_per_name_stats_equal_submetric_export(k6: lt.LoadTestData,
                                                  k6_export: dict[str, Any], name: str) -> None:
    row = lt.summarize(k6).filter(pl.col("name") == name).row(0, named=True)
    exported = k6_export[f"http_req_duration{{name:{name}}}"]
    for stat in TREND_STATS:
        assert close(row[COLUMN.get(stat, stat)], exported[stat]), stat


def test_k6_error_rate_has_http_req_failed_semantics(k6: lt.LoadTestData,
                                                     k6_export: dict[str, Any]) -> None:
    failed = k6_export["http_req_failed"]
    row = lt.summarize(k6).row(0, named=True)
    assert row["errors"] == failed["passes"]  # k6 counts failed requests as Rate "passes"
    assert close(row["error_rate"], failed["value"])
    assert k6.failed_points == (failed["passes"], failed["passes"] + failed["fails"])
    sub = k6_export["http_req_failed{name:create_order}"]
    order = lt.summarize(k6).filter(pl.col("name") == "create_order").row(0, named=True)
    assert close(order["error_rate"], sub["value"])


def test_k6_threshold_verdicts_equal_k6(k6: lt.LoadTestData) -> None:
    summary = lt.read_k6_summary(K6_SUMMARY)
    spec = {metric: list(exprs) for metric, exprs in summary.thresholds.items()}
    assert sum(len(v) for v in spec.values()) >= 10
    for data in (k6, summary):
        verdicts = lt.evaluate_thresholds(data, spec)
        got = {row["threshold"]: row["ok"] for row in verdicts.iter_rows(named=True)}
        want = {f"{m}:{e}": ok for m, exprs in summary.thresholds.items()
                for e, ok in exprs.items()}
        assert got == want, data.source
        assert set(verdicts["status"]) <= {"pass", "fail"}
    assert False in want.values() and True in want.values()


def test_k6_reader_frame_shape(k6: lt.LoadTestData) -> None:
    req = k6.requests
    assert req is not None
    assert req.schema["time"] == pl.Datetime("us", "UTC")
    assert req.schema["status"] == pl.Int32 and req.schema["duration_ms"] == pl.Float64
    refused = req.filter(pl.col("name") == "refused").row(0, named=True)
    assert refused["status"] == 0 and not refused["ok"]
    assert "connection refused" in refused["message"] and refused["error_code"] == "1212"
    assert set(req["method"].unique()) == {"GET", "POST"}
    assert req.filter(~pl.col("ok"))["status"].sort().to_list() == [0, 404, 500]


def test_k6_gzip_and_small_blocks_give_the_same_frame(k6: lt.LoadTestData) -> None:
    assert k6.requests is not None
    assert lt.read_k6_ndjson(K6_GZ).requests.equals(k6.requests)  # type: ignore[union-attr]
    blocks = lt.read_k6_ndjson(K6_GZ, block_bytes=8192)  # ~120 blocks, lines straddle them
    assert blocks.requests is not None and blocks.requests.equals(k6.requests)
    assert lt.load_results(K6_GZ).source == "k6"


def test_k6_gzip_lines_longer_than_a_block(tmp_path: Path, k6: lt.LoadTestData) -> None:
    head = "".join(_lines()[:120])
    plain, packed = tmp_path / "head.ndjson", tmp_path / "head.ndjson.gz"
    plain.write_text(head)
    packed.write_bytes(gzip.compress(head.encode()))
    tiny = lt.read_k6_ndjson(packed, block_bytes=150)  # every line spans several blocks
    assert tiny.requests is not None
    assert tiny.requests.equals(lt.read_k6_ndjson(plain).requests)
    assert tiny.requests.height == head.count('"metric":"http_req_duration","type":"Point"')


def test_k6_times_with_offsets_become_utc(tmp_path: Path) -> None:
    line = json.loads(next(ln for ln in K6.read_text().splitlines()
                           if '"metric":"http_req_duration","type":"Point"' in ln))
    rows = []
    for stamp in ("2025-06-01T12:00:00.123456789+02:00", "2025-06-01T10:00:01Z",
                  "2025-06-01T03:00:02.5-07:00"):
        line["data"]["time"] = stamp
        rows.append(json.dumps(line, separators=(",", ":")))
    path = tmp_path / "tz.ndjson"
    path.write_text("\n".join(rows) + "\n")
    req = lt.read_k6_ndjson(path).requests
    assert req is not None
    assert [t.isoformat() for t in req["time"].to_list()] == [
        "2025-06-01T10:00:00.123456+00:00", "2025-06-01T10:00:01+00:00",
        "2025-06-01T10:00:02.500000+00:00"]


# --- k6: broken input -----------------------------------------------------------------------


def _lines() -> list[str]:
    return K6.read_text().splitlines(keepends=True)


def test_k6_truncated_last_line_names_file_and_line(tmp_path: Path, k6: lt.LoadTestData
                                                    ) -> None:
    lines = _lines()
    path = tmp_path / "cut.ndjson"
    path.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])
    with pytest.raises(BadInputFormat) as err:
        lt.read_k6_ndjson(path)
    assert err.value.line == len(lines) and err.value.path == str(path)
    assert f"{path}:{len(lines)}" in str(err.value) and "truncated" in str(err.value)
    assert "allow_truncated_tail=True" in str(err.value)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = lt.read_k6_ndjson(path, allow_truncated_tail=True)
    assert data.dropped_lines == 1 and any("dropped 1" in str(w.message) for w in caught)
    assert data.requests is not None and k6.requests is not None
    assert data.requests.height in (k6.requests.height, k6.requests.height - 1)


def test_k6_last_line_without_newline_but_complete_is_kept(tmp_path: Path,
                                                           k6: lt.LoadTestData) -> None:
    path = tmp_path / "nonl.ndjson"
    path.write_text(K6.read_text().rstrip("\n"))
    data = lt.read_k6_ndjson(path)
    assert data.dropped_lines == 0 and data.requests is not None and k6.requests is not None
    assert data.requests.height == k6.requests.height


@pytest.mark.parametrize(("gz", "block"), [(False, 16 << 20), (True, 8192), (True, 16 << 20)])
def test_k6_garbage_line_in_the_middle(tmp_path: Path, gz: bool, block: int) -> None:
    lines = _lines()
    lines.insert(1500, "this is not json\n")
    path = tmp_path / ("garbage.ndjson.gz" if gz else "garbage.ndjson")
    payload = "".join(lines).encode()
    path.write_bytes(gzip.compress(payload) if gz else payload)
    with pytest.raises(BadInputFormat) as err:
        lt.read_k6_ndjson(path, block_bytes=block)
    assert err.value.line == 1501 and "not a JSON line" in str(err.value)
    with pytest.raises(BadInputFormat):  # only a *final* partial line may be dropped
        lt.read_k6_ndjson(path, allow_truncated_tail=True)


@pytest.mark.parametrize("gz", [False, True])
def test_k6_truncated_last_line_that_looks_closed(tmp_path: Path, gz: bool,
                                                  k6: lt.LoadTestData) -> None:
    lines = _lines()
    last = lines[-1].rstrip("\n")
    assert '"metric":"vus"' in last or '"metric":"vus_max"' in last or last.endswith("}}}")
    payload = ("".join(lines[:-1]) + last[:-2]).encode()  # ends with "}" but is incomplete
    path = tmp_path / ("closed.ndjson.gz" if gz else "closed.ndjson")
    path.write_bytes(gzip.compress(payload) if gz else payload)
    with pytest.raises(BadInputFormat) as err:
        lt.read_k6_ndjson(path, block_bytes=65536)
    assert err.value.line == len(lines) and "truncated" in str(err.value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = lt.read_k6_ndjson(path, allow_truncated_tail=True, block_bytes=65536)
    assert data.dropped_lines == 1 and data.requests is not None and k6.requests is not None
    assert data.requests.equals(k6.requests)


def test_k6_wrong_files(tmp_path: Path) -> None:
    with pytest.raises(BadInputFormat) as err:
        lt.read_k6_ndjson(LOCUST)
    assert err.value.line == 1 and err.value.path == str(LOCUST)
    with pytest.raises(BadInputFormat) as err:
        lt.read_k6_ndjson(K6_SUMMARY)  # a pretty-printed JSON document, not NDJSON
    assert err.value.line == 1
    only_metrics = tmp_path / "empty.ndjson"
    only_metrics.write_text("".join(ln for ln in _lines() if '"type":"Metric"' in ln))
    with pytest.raises(BadInputFormat, match="no http_req_duration points"):
        lt.read_k6_ndjson(only_metrics)
    json_list = tmp_path / "list.ndjson"
    json_list.write_text('{"hello": "world"}\n')
    with pytest.raises(BadInputFormat, match=r"no 'type'/'data'|no http_req_duration"):
        lt.read_k6_ndjson(json_list)
    with pytest.raises(BadParameter):
        lt.read_k6_ndjson(tmp_path / "missing.ndjson")


def test_k6_bad_point_values_are_located(tmp_path: Path) -> None:
    lines = _lines()
    idx = next(i for i, ln in enumerate(lines)
               if '"metric":"http_req_duration","type":"Point"' in ln and i > 100)
    obj = json.loads(lines[idx])
    obj["data"]["time"] = "yesterday"
    lines[idx] = json.dumps(obj, separators=(",", ":")) + "\n"
    path = tmp_path / "badtime.ndjson"
    path.write_text("".join(lines))
    with pytest.raises(BadInputFormat) as err:
        lt.read_k6_ndjson(path)
    assert err.value.line == idx + 1 and "time" in str(err.value)


def test_k6_invalid_json_inside_a_point_line(tmp_path: Path) -> None:
    lines = _lines()
    idx = next(i for i, ln in enumerate(lines)
               if '"metric":"http_req_duration","type":"Point"' in ln and i > 200)
    lines[idx] = lines[idx].replace('"value":', '"value" ', 1)  # still {...}, not JSON
    path = tmp_path / "badjson.ndjson"
    path.write_text("".join(lines))
    with pytest.raises(BadInputFormat) as err:
        lt.read_k6_ndjson(path)
    assert err.value.line == idx + 1 and "not a JSON line" in str(err.value)


def test_k6_truncated_gzip(tmp_path: Path, k6: lt.LoadTestData) -> None:
    raw = K6_GZ.read_bytes()
    path = tmp_path / "cut.ndjson.gz"
    path.write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(BadInputFormat) as err:
        lt.read_k6_ndjson(path)
    assert "gzip stream ends early" in str(err.value) and err.value.line is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = lt.read_k6_ndjson(path, allow_truncated_tail=True)
    assert data.requests is not None and k6.requests is not None
    assert 0 < data.requests.height < k6.requests.height
    assert data.requests.equals(k6.requests.head(data.requests.height))


def test_k6_ok_without_expected_response_tag_uses_http_req_failed(tmp_path: Path,
                                                                   k6: lt.LoadTestData) -> None:
    # --system-tags without expected_response: k6 still writes http_req_failed points.
    out = []
    for ln in _lines():
        obj = json.loads(ln)
        if obj["type"] == "Point" and isinstance(obj["data"].get("tags"), dict):
            obj["data"]["tags"].pop("expected_response", None)
        out.append(json.dumps(obj, separators=(",", ":")) + "\n")
    path = tmp_path / "notag.ndjson"
    path.write_text("".join(out))
    data = lt.read_k6_ndjson(path)
    assert data.requests is not None and k6.requests is not None
    assert data.requests["ok"].to_list() == k6.requests["ok"].to_list()


# --- k6 summary export ----------------------------------------------------------------------


def test_k6_summary_reader(k6_export: dict[str, Any]) -> None:
    data = lt.load_results(K6_SUMMARY)
    assert data.source == "k6-summary" and data.requests is None
    row = lt.summarize(data).row(0, named=True)
    assert row["name"] == lt.OVERALL and row["count"] == k6_export["http_reqs"]["count"]
    assert close(row["p95"], k6_export["http_req_duration"]["p(95)"])
    assert close(row["rps"], k6_export["http_reqs"]["rate"])
    # k6 writes "true" for a FAILED threshold in --summary-export; we normalise to passed.
    assert data.thresholds["http_req_duration"]["p(90)<20"] is (
        not k6_export["http_req_duration"]["thresholds"]["p(90)<20"])
    verdict = lt.evaluate_thresholds(data, "p(99.9)<100").row(0, named=True)
    assert verdict["status"] == "unavailable" and "--summary-trend-stats" in verdict["detail"]


def test_k6_summary_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text('{\n  "metrics": {\n    "http_reqs": {"count": 3,\n')
    with pytest.raises(BadInputFormat) as err:
        lt.read_k6_summary(path)
    assert err.value.line == 4 and str(path) in str(err.value)
    path.write_text('{"root_group": {}}')
    with pytest.raises(BadInputFormat, match="no 'metrics' object"):
        lt.read_k6_summary(path)


# --- Locust ---------------------------------------------------------------------------------


def test_locust_numbers_equal_its_stats_csv() -> None:
    data = lt.read_locust_csv(FIX / "locust")  # the --csv prefix
    summary = lt.summarize(data)
    with LOCUST.open() as fh:
        rows = list(csv.DictReader(fh))
    assert summary.height == len(rows)
    for r in rows:
        name = lt.OVERALL if r["Name"] == "Aggregated" else r["Name"]
        got = summary.filter(pl.col("name") == name).row(0, named=True)
        assert got["count"] == int(r["Request Count"])
        assert got["errors"] == int(r["Failure Count"])
        assert close(got["avg"], float(r["Average Response Time"]))
        assert close(got["min"], float(r["Min Response Time"]))
        assert close(got["max"], float(r["Max Response Time"]))
        assert close(got["med"], float(r["Median Response Time"]))
        assert close(got["p90"], float(r["90%"])) and close(got["p95"], float(r["95%"]))
        assert close(got["p99"], float(r["99%"]))
        assert close(got["rps"], float(r["Requests/s"]))
    assert lt.load_results(FIX).source == "locust"
    assert lt.load_results(FIX / "locust_failures.csv").source == "locust"


def test_locust_history_and_failures() -> None:
    data = lt.read_locust_csv(LOCUST)
    assert data.history is not None and data.failures is not None
    assert data.history.schema["time"] == pl.Datetime("us", "UTC")
    with (FIX / "locust_failures.csv").open() as fh:
        occurrences = sum(int(r["Occurrences"]) for r in csv.DictReader(fh))
    breakdown = lt.error_breakdown(data)
    assert breakdown["count"].sum() == occurrences
    assert set(breakdown["status"].drop_nulls()) <= {404, 500, 503}
    series = lt.over_time(data)
    assert series.height > 0 and series["rps"].max() > 0  # type: ignore[operator]


def test_locust_thresholds_and_unavailable_aggregations() -> None:
    data = lt.read_locust_csv(LOCUST)
    overall = lt.summarize(data).row(0, named=True)
    res = lt.evaluate_thresholds(
        data, "p(95)<500,p(99.9)<5000,count>10,rate<0.5,p(97)<100,"
              "http_req_duration{name:login}:avg<1000,http_req_duration{method:GET}:avg<1")
    by = {r["threshold"]: r for r in res.iter_rows(named=True)}
    assert by["p(95)<500"]["ok"] and by["p(95)<500"]["value"] == overall["p95"]
    assert by["p(99.9)<5000"]["status"] == "pass"
    assert by["count>10"]["value"] == overall["count"]
    assert close(by["rate<0.5"]["value"], overall["error_rate"])
    assert by["p(97)<100"]["status"] == "unavailable" and not by["p(97)<100"]["ok"]
    assert "p(95)" in by["p(97)<100"]["detail"]  # says which percentiles Locust has
    assert by["http_req_duration{name:login}:avg<1000"]["status"] == "pass"
    assert by["http_req_duration{method:GET}:avg<1"]["status"] == "unavailable"


def test_locust_truncated_stats(tmp_path: Path) -> None:
    text = LOCUST.read_text().splitlines(keepends=True)
    path = tmp_path / "run_stats.csv"
    path.write_text("".join(text[:-1]) + text[-1][:30])
    with pytest.raises(BadInputFormat) as err:
        lt.read_locust_csv(path)
    assert err.value.line == len(text) and str(path) in str(err.value)
    bad = tmp_path / "other_stats.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(BadInputFormat, match="missing columns"):
        lt.read_locust_csv(bad)


# --- JMeter ---------------------------------------------------------------------------------


def test_jmeter_jtl_parsed() -> None:
    data = lt.load_results(JTL)
    assert data.source == "jmeter" and data.requests is not None
    req = data.requests
    with JTL.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert req.height == len(rows) == 30
    assert req["time"][0].isoformat() == "2025-11-26T18:00:00.012000+00:00"
    assert req["duration_ms"].to_list() == [float(r["elapsed"]) for r in rows]
    assert req["ok"].to_list() == [r["success"] == "true" for r in rows]
    assert "search products, page 2" in req["name"].to_list()  # quoted label with a comma
    conn = req.filter(pl.col("response_code").str.starts_with("Non HTTP")).row(0, named=True)
    assert conn["status"] == 0 and "Connection refused" in conn["message"]
    assertion = req.filter(pl.col("status") == 500).row(0, named=True)
    assert assertion["message"].startswith("Test failed: code expected to equal")
    summary = lt.summarize(data)
    logins = [float(r["elapsed"]) for r in rows if r["label"] == "login"]
    got = summary.filter(pl.col("name") == "login").row(0, named=True)
    assert got["count"] == len(logins)
    for col, pct in (("med", 0.5), ("p90", 0.9), ("p95", 0.95), ("p99", 0.99)):
        assert close(got[col], k6_p(logins, pct))
    overall = summary.row(0, named=True)
    assert overall["errors"] == 4 and close(overall["error_rate"], 4 / 30)


def test_jmeter_broken_files(tmp_path: Path) -> None:
    lines = JTL.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.jtl"
    cut.write_text("".join(lines[:-1]) + lines[-1][:20])
    with pytest.raises(BadInputFormat) as err:
        lt.read_jmeter_jtl(cut)
    assert str(cut) in str(err.value) and "truncated" in str(err.value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert lt.read_jmeter_jtl(cut, allow_truncated_tail=True).dropped_lines == 1
    xml = tmp_path / "r.jtl"
    xml.write_text('<?xml version="1.0"?>\n<testResults version="1.2">\n')
    with pytest.raises(BadInputFormat, match="XML JTL"):
        lt.read_jmeter_jtl(xml)
    nohead = tmp_path / "nohead.jtl"
    nohead.write_text("".join(lines[1:]))
    with pytest.raises(BadInputFormat, match="missing JTL columns"):
        lt.read_jmeter_jtl(nohead)
    dates = tmp_path / "dates.csv"
    dates.write_text(lines[0] + lines[1].replace("1764180000012", "2025/11/26 18:00:00.012"))
    with pytest.raises(BadInputFormat, match="epoch milliseconds") as err:
        lt.read_jmeter_jtl(dates)
    assert err.value.line == 2


def test_load_results_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("hello\n")
    with pytest.raises(BadInputFormat, match="unknown results format"):
        lt.load_results(path)
    with pytest.raises(BadParameter):
        lt.load_results(tmp_path / "nothing-here")


# --- thresholds -----------------------------------------------------------------------------


def test_parse_thresholds_k6_syntax() -> None:
    got = lt.parse_thresholds("p(95)<500, p(99)<=800,avg<200,med<150,max<2000,rate<0.01,"
                              "count>100, p(99.9) < 1e3 ,min>=0,avg===10,avg!=3,avg==4")
    assert [(t.metric, t.method, t.operator, t.value) for t in got] == [
        ("http_req_duration", "p(95)", "<", 500), ("http_req_duration", "p(99)", "<=", 800),
        ("http_req_duration", "avg", "<", 200), ("http_req_duration", "med", "<", 150),
        ("http_req_duration", "max", "<", 2000), ("http_req_failed", "rate", "<", 0.01),
        ("http_reqs", "count", ">", 100), ("http_req_duration", "p(99.9)", "<", 1000),
        ("http_req_duration", "min", ">=", 0), ("http_req_duration", "avg", "===", 10),
        ("http_req_duration", "avg", "!=", 3), ("http_req_duration", "avg", "==", 4)]
    scoped = lt.parse_thresholds("http_req_duration{name:login,method:POST}:p(99)<800,"
                                 "http_reqs:rate>5")
    assert scoped[0].key == "http_req_duration{name:login,method:POST}"
    assert scoped[0].tags == (("name", "login"), ("method", "POST"))
    assert scoped[1].metric == "http_reqs" and scoped[1].method == "rate"
    mapping = lt.parse_thresholds({"http_req_failed{name:x}": ["rate<0.05"],
                                   "http_req_duration": "p(90)<9"})
    assert [t.key for t in mapping] == ["http_req_failed{name:x}", "http_req_duration"]
    assert lt.parse_thresholds(["p(95)<1", " "])[0].expression == "p(95)<1"
    assert lt.parse_thresholds("") == []


@pytest.mark.parametrize("bad", [
    "p95<500", "p(95)<", "avg 200", "value<1", "rate<abc", "p(101)<5", "p(x)<5", "avg<<3",
    "http_req_duration:count<5", "http_req_failed:avg<3", "http_req_waiting:avg<3",
    "http_req_duration{name}:avg<3", "latency<5", "<5",
])
def test_invalid_threshold_syntax(bad: str) -> None:
    with pytest.raises(BadParameter) as err:
        lt.parse_thresholds(bad)
    assert err.value.name == "thresholds" and "k6 threshold syntax" in str(err.value)


def test_thresholds_on_tag_subsets(k6: lt.LoadTestData) -> None:
    res = lt.evaluate_thresholds(k6, "http_req_duration{method:POST}:max>0,"
                                     "http_req_failed{status:500}:rate==1,"
                                     "http_req_duration{name:nope}:avg<1,"
                                     "http_req_duration{color:red}:avg<1,http_reqs:rate>1")
    assert res["status"].to_list() == ["pass", "pass", "unavailable", "unavailable", "pass"]
    assert "estimated" in res["detail"][4]


# --- k6 percentile, analysis helpers --------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 10, 101, 1000])
def test_k6_percentile_matches_k6_formula(n: int) -> None:
    rng = random.Random(n)
    values = [round(rng.lognormvariate(3, 1), 6) for _ in range(n)]
    frame = pl.DataFrame({"d": values}).sort("d")
    for pct in (0.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0):
        got = frame.select(lt.k6_percentile("d", pct)).item()
        assert got == k6_p(values, pct / 100), (n, pct)


def test_over_time_and_breakdown_add_up(k6: lt.LoadTestData) -> None:
    series = lt.over_time(k6, "1s")
    summary = lt.summarize(k6).row(0, named=True)
    assert series["requests"].sum() == summary["count"]
    assert series["errors"].sum() == summary["errors"]
    per_name = lt.over_time(k6, "2s", by_name=True)
    assert per_name["requests"].sum() == summary["count"] and per_name["name"].n_unique() > 3
    breakdown = lt.error_breakdown(k6)
    assert breakdown["count"].sum() == summary["errors"]
    assert "dial: connection refused" in breakdown["message"].to_list()
    assert "HTTP 404" in breakdown["message"].to_list()
    with pytest.raises(BadParameter):
        lt.over_time(k6, "soon")


def test_charts(k6: lt.LoadTestData) -> None:
    series = lt.over_time(k6, "1s")
    assert len(lt.chart_latency_over_time(series).data) == 2
    assert len(lt.chart_throughput_errors(series).data) == 2
    hist = lt.chart_latency_distribution(k6)
    assert sum(sum(t.y) for t in hist.data) == k6.requests.height  # type: ignore[union-attr]
    curve = lt.chart_latency_distribution(lt.read_locust_csv(LOCUST))
    assert len(curve.data) == 7
    stats = pd.DataFrame({
        "time": pd.to_datetime([series["time"][0], series["time"][1]] * 2, utc=True),
        "service": ["api", "api", "db", "db"], "container": ["a", "a", "d", "d"],
        "cpu_percent": [80.0, 120.0, 10.0, 20.0],
        "mem_usage_bytes": [100 << 20, 110 << 20, 300 << 20, 310 << 20],
        "mem_percent": [10.0, 11.0, 60.0, 62.0]})
    fig = lt.chart_latency_vs_resources(series, stats)
    assert len(fig.data) == 5
    neck = lt.find_bottleneck(lt.summarize(k6), stats)
    assert neck.cpu_service == "api" and neck.cpu_max == 120.0 and neck.cpu_mean == 100.0
    assert neck.memory_service == "db" and neck.memory_percent_max == 62.0
    assert neck.slowest_name == "sales_report" and "api" in neck.text
    assert lt.find_bottleneck(lt.summarize(k6)).cpu_service is None


# --- compare runs ---------------------------------------------------------------------------


def _variant(data: lt.LoadTestData, **changes: Any) -> lt.LoadTestData:
    assert data.requests is not None
    req = data.requests
    if "slower" in changes:
        name, factor = changes["slower"]
        req = req.with_columns(pl.when(pl.col("name") == name)
                               .then(pl.col("duration_ms") * factor)
                               .otherwise(pl.col("duration_ms")).alias("duration_ms"))
    if "fail" in changes:
        name = changes["fail"]
        req = req.with_columns((pl.col("ok") & (pl.col("name") != name)).alias("ok"))
    if "drop" in changes:
        req = req.filter(pl.col("name") != changes["drop"])
    return lt.LoadTestData(source="k6", path=data.path, requests=req)


def test_compare_runs_verdicts(k6: lt.LoadTestData) -> None:
    same = lt.compare_runs(k6, k6)
    assert not same.regression and set(same.table["verdict"]) == {"ok"}
    assert same.table["p95_delta_ms"].abs().max() == 0
    slower = lt.compare_runs(k6, _variant(k6, slower=("sales_report", 1.5)))
    assert slower.regression and "sales_report" in slower.regressions
    row = slower.table.filter(pl.col("name") == "sales_report").row(0, named=True)
    assert close(row["p95_delta_pct"], 50.0) and close(row["p95_cand"], row["p95_base"] * 1.5)
    assert slower.table.filter(pl.col("name") == "login")["verdict"][0] == "ok"
    tolerant = lt.compare_runs(k6, _variant(k6, slower=("sales_report", 1.5)),
                               p95_increase_pct=60)
    assert not tolerant.regression
    failing = lt.compare_runs(k6, _variant(k6, fail="health"))
    health = failing.table.filter(pl.col("name") == "health").row(0, named=True)
    assert health["verdict"] == "regression" and close(health["error_rate_delta_pp"], 100.0)
    better = lt.compare_runs(_variant(k6, slower=("login", 2.0)), k6)
    assert better.table.filter(pl.col("name") == "login")["verdict"][0] == "improvement"
    gone = lt.compare_runs(k6, _variant(k6, drop="products"))
    assert gone.table.filter(pl.col("name") == "products")["verdict"][0] == "gone"
    new = lt.compare_runs(_variant(k6, drop="products"), k6)
    assert new.table.filter(pl.col("name") == "products")["verdict"][0] == "new"
    few = lt.compare_runs(k6, k6, min_count=5)
    assert few.table.filter(pl.col("name") == "missing")["verdict"][0] == "too few requests"
    assert few.table["name"][0] == lt.OVERALL
    with pytest.raises(BadParameter):
        lt.compare_runs(k6, k6, p95_increase_pct=-1)


def test_compare_across_tools(k6: lt.LoadTestData) -> None:
    res = lt.compare_runs(lt.read_k6_summary(K6_SUMMARY), k6)
    overall = res.table.row(0, named=True)
    assert overall["verdict"] == "ok" and overall["p95_delta_ms"] == pytest.approx(0, abs=1e-9)


# --- running (argument checks only; real runs are integration tests) ------------------------


@pytest.mark.parametrize("url", ["http://example.com/api", "http://10.0.0.5:8080",
                                 "ftp://127.0.0.1/", "http://192.168.1.1"])
def test_run_refuses_non_local_targets(tmp_path: Path, url: str) -> None:
    with pytest.raises(BadParameter, match=r"127\.0\.0\.1"):
        lt.run_k6(url, out_dir=tmp_path)
    with pytest.raises(BadParameter, match=r"127\.0\.0\.1"):
        lt.run_locust(url, out_dir=tmp_path)


def test_run_bounds(tmp_path: Path) -> None:
    with pytest.raises(BadParameter):
        lt.run_k6(lt.DEMO_BASE_URL, vus=0, out_dir=tmp_path)
    with pytest.raises(BadParameter):
        lt.run_k6(lt.DEMO_BASE_URL, duration_s=100000, out_dir=tmp_path)


def test_resolve_source(tmp_path: Path) -> None:
    assert lt.resolve_source("example") == K6
    with pytest.raises(BadParameter):
        lt.resolve_source("")  # nothing given is not the example: the check is not run
    assert lt.resolve_source("tests/fixtures/loadtest/jmeter.jtl") == JTL
    with pytest.raises(BadParameter):
        lt.resolve_source(tmp_path / "nope.ndjson")
    copy = tmp_path / "k6.ndjson.gz"
    shutil.copy(K6_GZ, copy)
    assert lt.resolve_source(str(copy)) == copy
    with gzip.open(copy) as fh:
        assert fh.read(1) == b"{"
