"""Unit tests of the resource tuning maths: units, stats parsing, recommendations, overrides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

import opslib
from opslib import resources as res
from opslib.engine import cpu_percent, mem_usage_no_cache, parse_stats
from opslib.exceptions import BadInputFormat, BadParameter

MIB = 1024 * 1024
GIB = 1024 * MIB


# --- units ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("512m", 512 * MIB),
        ("512M", 512 * MIB),
        ("2G", 2 * GIB),
        ("1gb", GIB),
        ("256MiB", 256 * MIB),
        ("256mib", 256 * MIB),
        ("1.5g", 1536 * MIB),
        ("100k", 100 * 1024),
        ("64 MiB", 64 * MIB),
        ("1024", 1024),
        ("1048576b", MIB),
        (1024, 1024),
        (2.0, 2),
        ("", 0),
        (None, 0),
        ("1t", 1024 * GIB),
    ],
)
def test_parse_memory(text: Any, expected: int) -> None:
    assert res.parse_memory(text) == expected


@pytest.mark.parametrize("text", ["lots", "12x", "-5", "5i", "1.2.3g", "G", True])
def test_parse_memory_rejects_garbage(text: Any) -> None:
    with pytest.raises(BadParameter) as err:
        res.parse_memory(text)
    assert "512M" in str(err.value) or ">= 0" in str(err.value)


def test_format_memory_round_trips() -> None:
    for n in (2 * GIB, 384 * MIB, 1536 * MIB, 100 * 1024, 12345):
        assert res.parse_memory(res.format_memory(n)) == n
    assert res.format_memory(2 * GIB) == "2G"
    assert res.format_memory(1536 * MIB) == "1536M"
    assert res.format_memory(0) == "none"


def test_cpus_parse_and_format() -> None:
    assert res.parse_cpus("1.5") == 1.5
    assert res.parse_cpus(0.5) == 0.5
    assert res.parse_cpus("") == 0.0
    with pytest.raises(BadParameter):
        res.parse_cpus("two")
    with pytest.raises(BadParameter):
        res.parse_cpus(-1)
    assert res.format_cpus(1.0) == "1.0"
    assert res.format_cpus(0.75) == "0.75"
    assert res.format_cpus(2) == "2.0"
    assert res.format_cpus(0) == "none"


def test_rounding_steps() -> None:
    assert res.round_memory(7 * MIB) == 16 * MIB
    assert res.round_memory(100 * MIB) == 112 * MIB
    assert res.round_memory(175 * MIB) == 192 * MIB
    assert res.round_memory(600 * MIB) == 640 * MIB
    assert res.round_memory(2.1 * GIB) == int(2.5 * GIB)
    assert res.round_memory(192 * MIB) == 192 * MIB  # already on a step
    assert res.round_cpus(0.01) == 0.25
    assert res.round_cpus(0.5) == 0.5
    assert res.round_cpus(0.51) == 0.75
    assert res.round_cpus(1.6, step=0.5) == 2.0


# --- stats parsing (docker stats CLI maths) ---------------------------------------------------


def _raw(total: int, system: int, pre_total: int, pre_system: int, *, usage: int,
         stats: dict[str, int], limit: int = 8 * GIB, online: int = 2) -> dict[str, Any]:
    return {
        "read": "2026-01-02T03:04:05.123456789Z",
        "name": "/shop-db-1",
        "pids_stats": {"current": 7},
        "cpu_stats": {"cpu_usage": {"total_usage": total, "percpu_usage": [1, 2, 3, 4]},
                      "system_cpu_usage": system, "online_cpus": online,
                      "throttling_data": {"periods": 100, "throttled_periods": 25,
                                          "throttled_time": 5_000_000}},
        "precpu_stats": {"cpu_usage": {"total_usage": pre_total},
                         "system_cpu_usage": pre_system},
        "memory_stats": {"usage": usage, "limit": limit, "stats": stats},
        "networks": {"eth0": {"rx_bytes": 100, "tx_bytes": 10},
                     "eth1": {"rx_bytes": 5, "tx_bytes": 1}},
        "blkio_stats": {"io_service_bytes_recursive": [
            {"major": 8, "minor": 0, "op": "Read", "value": 4096},
            {"major": 8, "minor": 0, "op": "Write", "value": 1000},
            {"major": 8, "minor": 0, "op": "Sync", "value": 5096},
            {"major": 8, "minor": 0, "op": "Total", "value": 5096},
            {"major": 8, "minor": 16, "op": "read", "value": 4},
        ]},
    }


def test_cpu_percent_matches_cli_formula() -> None:
    # container used 0.5 s of CPU while the system (2 CPUs) accumulated 2 s: 50 % of one core
    raw = _raw(1_500_000_000, 12_000_000_000, 1_000_000_000, 10_000_000_000, usage=0, stats={})
    assert cpu_percent(raw["cpu_stats"], raw["precpu_stats"]) == pytest.approx(50.0)
    # online_cpus missing -> len(percpu_usage) (4 here)
    cpu = dict(raw["cpu_stats"], online_cpus=0)
    assert cpu_percent(cpu, raw["precpu_stats"]) == pytest.approx(100.0)
    # no positive delta -> 0
    assert cpu_percent(raw["cpu_stats"], raw["cpu_stats"]) == 0.0


def test_memory_without_cache_cgroup_v1_and_v2() -> None:
    v1 = {"usage": 100 * MIB, "stats": {"total_inactive_file": 30 * MIB, "inactive_file": 1}}
    assert mem_usage_no_cache(v1) == 70 * MIB
    v2 = {"usage": 100 * MIB, "stats": {"inactive_file": 40 * MIB}}
    assert mem_usage_no_cache(v2) == 60 * MIB
    # cache figure not smaller than usage -> raw usage
    assert mem_usage_no_cache({"usage": 10, "stats": {"total_inactive_file": 20}}) == 10
    assert mem_usage_no_cache({}) == 0


def test_parse_stats_all_fields() -> None:
    raw = _raw(1_500_000_000, 12_000_000_000, 1_000_000_000, 10_000_000_000,
               usage=300 * MIB, stats={"total_inactive_file": 44 * MIB}, limit=1 * GIB)
    row = parse_stats(raw)
    assert row["container"] == "shop-db-1"
    assert row["time"] == pd.Timestamp("2026-01-02T03:04:05.123456789Z")
    assert str(row["time"].tz) == "UTC"
    assert row["cpu_percent"] == pytest.approx(50.0)
    assert row["mem_usage_bytes"] == 256 * MIB
    assert row["mem_limit_bytes"] == GIB
    assert row["mem_percent"] == pytest.approx(25.0)
    assert (row["net_rx_bytes"], row["net_tx_bytes"]) == (105, 11)
    assert (row["blk_read_bytes"], row["blk_write_bytes"]) == (4100, 1000)  # Sync/Total skipped
    assert row["pids"] == 7
    assert (row["cpu_periods"], row["cpu_throttled_periods"]) == (100, 25)
    assert row["running"] is True
    # against an explicit previous reading instead of precpu_stats
    prev = {"cpu_usage": {"total_usage": 500_000_000}, "system_cpu_usage": 8_000_000_000}
    assert parse_stats(raw, prev)["cpu_percent"] == pytest.approx(50.0)


def test_parse_stats_of_stopped_container_reads_zero() -> None:
    row = parse_stats({"read": "0001-01-01T00:00:00Z", "name": "/x", "cpu_stats": {},
                       "memory_stats": {}})
    assert row["running"] is False
    assert row["cpu_percent"] == 0.0 and row["mem_usage_bytes"] == 0
    assert row["time"].year > 2000


# --- usage summary and recommendations ------------------------------------------------------


def _samples(service: str, mem_mib: list[float], cpu_pct: list[float],
             periods: tuple[int, int] = (0, 0), throttled: tuple[int, int] = (0, 0)
             ) -> pd.DataFrame:
    n = len(mem_mib)
    t = pd.date_range("2026-01-01", periods=n, freq="2s", tz="UTC")
    return pd.DataFrame({
        "time": t, "service": service, "container": f"p-{service}-1",
        "cpu_percent": cpu_pct, "mem_usage_bytes": [int(m * MIB) for m in mem_mib],
        "mem_limit_bytes": 8 * GIB, "mem_percent": 0.0, "net_rx_bytes": 0, "net_tx_bytes": 0,
        "blk_read_bytes": 0, "blk_write_bytes": 0, "pids": 1,
        "cpu_periods": pd.Series(range(n)).map(
            lambda i: periods[0] + (periods[1] - periods[0]) * i // max(1, n - 1)),
        "cpu_throttled_periods": pd.Series(range(n)).map(
            lambda i: throttled[0] + (throttled[1] - throttled[0]) * i // max(1, n - 1)),
        "cpu_throttled_time_ns": 0,
    })


def _state(rows: list[dict[str, Any]]) -> pd.DataFrame:
    base = {"memory_limit": 0, "memory_reservation": 0, "cpus": 0.0, "oom_killed": False,
            "restart_count": 0, "throttled_pct": float("nan"), "role": "other"}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_usage_summary_quantiles_and_throttling() -> None:
    s = pd.concat([
        _samples("api", [100, 110, 120, 130, 200], [10, 20, 30, 40, 150],
                 periods=(1000, 1100), throttled=(10, 60)),
        _samples("db", [300] * 5, [1] * 5),
    ])
    u = res.usage_summary(s).set_index("service")
    assert u.loc["api", "samples"] == 5
    assert u.loc["api", "mem_max"] == 200 * MIB
    assert u.loc["api", "mem_median"] == 120 * MIB
    assert u.loc["api", "cpu_max"] == pytest.approx(1.5)
    assert 1.0 < u.loc["api", "cpu_p99"] <= 1.5
    assert u.loc["api", "throttled_pct_window"] == pytest.approx(50.0)
    assert pd.isna(u.loc["db", "throttled_pct_window"])  # no CPU limit, no periods


def test_recommend_memory_with_headroom_floors_and_references() -> None:
    s = pd.concat([
        _samples("db", [100, 110, 116, 116], [2, 3, 4, 5]),        # postgres floor 256M
        _samples("cache", [4, 5, 5, 5], [0, 1, 1, 1]),            # floor 64M
        _samples("api", [300, 310, 320, 330], [20, 40, 60, 80]),  # 330 × 1.5 = 495 -> 512M
        _samples("web", [500, 600, 700, 800], [10, 10, 10, 10]),  # reference 512M too small
    ])
    state = _state([
        {"service": "db", "role": "postgres"},
        {"service": "cache", "role": "redis"},
        {"service": "api", "role": "other", "memory_limit": GIB, "cpus": 1.5},
        {"service": "web", "role": "frontend", "memory_limit": 256 * MIB, "cpus": 1.0},
    ])
    rec = res.recommend(res.usage_summary(s), state, headroom=1.5, host_cpus=2)
    r = rec.set_index("service")
    assert r.loc["db", "memory_limit"] == 256 * MIB
    assert "floor" in r.loc["db", "memory_limit_why"]
    assert r.loc["db", "memory_limit_action"] == "set"
    assert r.loc["db", "cpus"] == 1.0  # postgres CPU floor
    assert r.loc["cache", "memory_limit"] == 64 * MIB
    assert r.loc["cache", "cpus"] == 0.5
    assert r.loc["api", "memory_limit"] == 512 * MIB
    assert "× 1.5" in r.loc["api", "memory_limit_why"]
    assert r.loc["api", "memory_limit_action"] == "keep"  # 1G is not > 2 × 512M
    assert r.loc["api", "cpus"] == 1.25  # p99 ≈ 0.8 × 1.5 = 1.2 -> 1.25
    # web needs 800 MiB × 1.5 = 1.2 GiB; the 512M reference would starve it and is ignored
    assert r.loc["web", "memory_limit"] == 1280 * MIB
    assert "above the checklist reference" in r.loc["web", "memory_limit_why"]
    assert r.loc["web", "memory_limit_action"] == "raise"
    # reservations: p95 rounded up, never above the limit
    assert (rec["memory_reservation"] <= rec["memory_limit"]).all()
    assert r.loc["api", "memory_reservation"] == 352 * MIB  # p95 328.5 MiB -> 352M
    for col in ("memory_limit_why", "memory_reservation_why", "cpus_why"):
        assert rec[col].str.len().min() > 20


def test_recommend_caps_at_reference_and_host_cpus() -> None:
    # postgres using 1.5 GiB: × 1.5 = 2.25 GiB > reference 2G, which still leaves > 20 % headroom
    s = pd.concat([_samples("db", [1536] * 4, [150, 160, 170, 180]),
                   _samples("worker", [50] * 4, [190, 195, 199, 199])])
    state = _state([{"service": "db", "role": "postgres"},
                    {"service": "worker", "role": "other"}])
    r = res.recommend(res.usage_summary(s), state, headroom=1.5, host_cpus=2).set_index("service")
    assert r.loc["db", "memory_limit"] == 2 * GIB
    assert "checklist reference 2G" in r.loc["db", "memory_limit_why"]
    # the 1G reference reservation is below the observed p95 (1.5 GiB): the p95 wins
    assert r.loc["db", "memory_reservation"] == 1536 * MIB


def test_recommend_caps_cpus_at_host() -> None:
    s = _samples("worker", [50] * 4, [190, 195, 199, 199])
    state = _state([{"service": "worker", "role": "other"}])
    r = res.recommend(res.usage_summary(s), state, headroom=1.5, host_cpus=2).iloc[0]
    assert r["cpus"] == 2.0
    assert "host's 2 CPUs" in r["cpus_why"]


def test_recommend_reacts_to_oom_and_throttling() -> None:
    s = _samples("api", [60] * 4, [20, 25, 30, 30], periods=(0, 100), throttled=(0, 60))
    state = _state([{"service": "api", "memory_limit": 128 * MIB, "cpus": 0.5,
                     "oom_killed": True}])
    r = res.recommend(res.usage_summary(s), state, headroom=1.5, host_cpus=2).iloc[0]
    assert r["memory_limit"] == 192 * MIB  # OOM-killed at 128M -> 128M × 1.5
    assert "OOM-killed" in r["memory_limit_why"]
    assert r["cpus"] == 0.75 and "throttled" in r["cpus_why"]
    assert r["cpus_action"] == "raise"


def test_recommend_rejects_bad_headroom() -> None:
    with pytest.raises(BadParameter):
        res.recommend(pd.DataFrame(), _state([]), headroom=0.5)


def test_services_without_limits() -> None:
    state = _state([{"service": "db"}, {"service": "api", "memory_limit": GIB, "cpus": 1.0},
                    {"service": "web", "memory_limit": GIB}])
    assert res.services_without_limits(state) == ["db", "web"]
    assert res.services_without_limits(state, kind="memory") == ["db"]
    assert res.services_without_limits(state, kind="cpu") == ["db", "web"]


@pytest.mark.parametrize(("service", "image", "cmd", "role"), [
    ("db", "shop/db:1.0", "", "postgres"),
    ("store", "postgres:15", "", "postgres"),
    ("cache", "shop/cache:1.0", "", "redis"),
    ("kv", "x", "redis-server /etc/redis.conf", "redis"),
    ("web", "shop/web:latest", "", "frontend"),
    ("edge", "nginx:1.25", "", "frontend"),
    ("api", "shop/api:1.0", "gunicorn app", "other"),
])
def test_service_role(service: str, image: str, cmd: str, role: str) -> None:
    assert res.service_role(service, image, cmd) == role


# --- override generation ---------------------------------------------------------------------


def test_build_override_sets_deploy_resources() -> None:
    doc = res.build_override({
        "db": {"memory_limit": 384 * MIB, "memory_reservation": 128 * MIB, "cpus": 1.0},
        "cache": {"memory_limit": 64 * MIB, "memory_reservation": 0, "cpus": 0.5},
    })
    text = yaml.safe_dump(doc)
    back = yaml.safe_load(text)
    assert back["services"]["db"]["deploy"]["resources"] == {
        "limits": {"memory": "384M", "cpus": "1.0"}, "reservations": {"memory": "128M"}}
    assert back["services"]["cache"]["deploy"]["resources"] == {
        "limits": {"memory": "64M", "cpus": "0.5"}}
    assert "mem_limit" not in back["services"]["db"]


def test_build_override_keeps_short_forms_consistent() -> None:
    base = {"services": {"a": {"mem_limit": "314572800", "cpus": 0.5},
                         "b": {"mem_reservation": "1000"}}}
    doc = res.build_override({"a": {"memory_limit": 100 * MIB, "cpus": 1.0},
                              "b": {"memory_limit": 64 * MIB, "memory_reservation": 32 * MIB}},
                             base)
    assert doc["services"]["a"]["mem_limit"] == "100M"
    assert doc["services"]["a"]["cpus"] == "1.0"
    assert doc["services"]["b"]["mem_reservation"] == "32M"
    assert "mem_limit" not in doc["services"]["b"]


def test_build_override_skips_empty_entries() -> None:
    assert res.build_override({"x": {"memory_limit": 0, "cpus": 0}}) == {"services": {}}


def test_declared_resources_reads_both_forms() -> None:
    model = {"services": {
        "a": {"mem_limit": "314572800"},
        "b": {"deploy": {"resources": {"limits": {"cpus": 0.5, "memory": "536870912"},
                                       "reservations": {"memory": "268435456"}}}},
        "c": {},
    }}
    d = res.declared_resources(model).set_index("service")
    assert d.loc["a", "declared_memory_limit"] == 300 * MIB
    assert d.loc["b", "declared_memory_limit"] == 512 * MIB
    assert d.loc["b", "declared_memory_reservation"] == 256 * MIB
    assert d.loc["b", "declared_cpus"] == 0.5
    assert d.loc["c", "declared_memory_limit"] == 0


def test_resolve_compose_file(tmp_path: Path) -> None:
    assert res.resolve_compose_file("") == Path(opslib.__file__).resolve().parents[1] / \
        "demo" / "compose.yaml"
    f = tmp_path / "c.yaml"
    f.write_text("services: {}\n")
    assert res.resolve_compose_file(str(f)) == f
    with pytest.raises(BadParameter) as err:
        res.resolve_compose_file(str(tmp_path / "missing.yaml"))
    assert "compose_file" in str(err.value)


def test_read_journal(tmp_path: Path) -> None:
    assert res.read_journal(tmp_path).empty
    j = tmp_path / "resources-journal.jsonl"
    j.write_text(json.dumps({"service": "db", "step": "up", "status": "started"}) + "\n\n")
    assert res.read_journal(tmp_path)["service"].tolist() == ["db"]
    j.write_text("{broken\n")
    with pytest.raises(BadInputFormat) as err:
        res.read_journal(j)
    assert err.value.line == 1


def test_usage_figure_has_limit_lines() -> None:
    s = _samples("db", [100, 120], [5, 6])
    state = _state([{"service": "db", "role": "postgres"}])
    rec = res.recommend(res.usage_summary(s), state, host_cpus=2)
    fig = res.usage_figure(s, rec, resource="memory")
    texts = [a.text for a in fig.layout.annotations]
    assert any("recommended limit 256" in t for t in texts)
    assert not any("current limit" in t for t in texts)  # db has none
    fig = res.usage_figure(s, rec, resource="cpu")
    assert any("recommended limit 1.00" in a.text for a in fig.layout.annotations)
    with pytest.raises(BadParameter):
        res.usage_figure(s, rec, resource="disk")
