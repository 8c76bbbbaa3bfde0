"""Resource tuning against the real engine: stats vs. `docker stats`, overrides, apply, rollback.

Apply and rollback run on a THROWAWAY compose project (``opslib-test-res-<rand>``, a tiny compose
file of debian:bookworm-slim services), never on the shared ``shop`` services. The notebook runs
as a dry run on ``shop``.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import papermill as pm
import pytest
import yaml

from opslib import engine as od
from opslib import resources as res
from opslib.report import results_from_notebook

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
IMAGE = "debian:bookworm-slim"

_UNITS = {"B": 1, "KiB": 1024, "MiB": MIB, "GiB": 1024 * MIB, "kB": 1000, "MB": 1000**2,
          "GB": 1000**3}


def _cli_bytes(text: str) -> float:
    m = re.match(r"^\s*([\d.]+)\s*([A-Za-z]+)\s*$", text)
    assert m, text
    return float(m.group(1)) * _UNITS[m.group(2)]


def _docker_stats_cli(names: list[str]) -> dict[str, dict[str, Any]]:
    proc = subprocess.run(
        ["docker", "stats", "--no-stream", "--format", "{{json .}}", *names],
        capture_output=True, text=True, timeout=60, check=True)
    out = {}
    for line in proc.stdout.splitlines():
        d = json.loads(line)
        out[d["Name"]] = {"cpu": float(d["CPUPerc"].rstrip("%")),
                          "mem": _cli_bytes(d["MemUsage"].split("/")[0])}
    return out


class _CliStream:
    """`docker stats` (streaming, one line per container per second) read in a thread."""

    def __init__(self, names: list[str]) -> None:
        self.readings: dict[str, list[dict[str, float]]] = {n: [] for n in names}
        self.proc = subprocess.Popen(["docker", "stats", "--format", "{{json .}}", *names],
                                     stdout=subprocess.PIPE, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            for blob in re.findall(r"\{.*?\}", line):
                d = json.loads(blob)
                self.readings.setdefault(d["Name"], []).append(
                    {"cpu": float(d["CPUPerc"].rstrip("%")),
                     "mem": _cli_bytes(d["MemUsage"].split("/")[0])})

    def stop(self) -> dict[str, list[dict[str, float]]]:
        self.proc.kill()  # the CLI ignores SIGTERM while streaming
        self.proc.wait(timeout=30)
        self.thread.join(timeout=30)
        return self.readings


# --- sampling agrees with `docker stats` ------------------------------------------------------


@pytest.fixture
def loaded_containers(docker_client: Any, test_labels: dict[str, str]) -> Iterator[str]:
    """A fake compose project of two containers with a stable load: a busy loop capped at
    0.25 CPUs (low enough to be reached on a busy 2-core host), and a shell that holds ~48 MiB
    of memory."""
    project = f"opslib-test-res-{uuid.uuid4().hex[:6]}"
    made = []
    specs = {
        "busy": ["sh", "-c", "while :; do :; done"],
        "hog": ["sh", "-c", "head -c 50000000 /dev/zero > /dev/shm/hold; sleep infinity"],
    }
    try:
        for service, cmd in specs.items():
            labels = {**test_labels, od.PROJECT_LABEL: project, od.SERVICE_LABEL: service,
                      "com.docker.compose.container-number": "1",
                      "com.docker.compose.oneoff": "False"}
            made.append(docker_client.containers.run(
                IMAGE, cmd, name=f"{project}-{service}-1", labels=labels, detach=True,
                nano_cpus=250_000_000 if service == "busy" else None, init=True))
        # wait until the hog holds its memory steadily (checked, not slept)
        last = 0
        for _ in range(60):
            mem = od.container_stats(docker_client, made[1])["mem_usage_bytes"]
            if mem > 40 * MIB and abs(mem - last) < 256 * 1024:
                break
            last = mem
        yield project
    finally:
        for c in made:
            c.remove(force=True)


def test_sampled_stats_agree_with_docker_stats_cli(docker_client: Any,
                                                   loaded_containers: str) -> None:
    project = loaded_containers
    names = [c.name for c in od.project_containers(docker_client, project)]
    cli: dict[str, dict[str, Any]] = {}

    # 1. one snapshot and `docker stats --no-stream` at the same moment read the same cycles
    t = threading.Thread(target=lambda: cli.update(_docker_stats_cli(names)))
    t.start()
    snap = od.snapshot_stats(docker_client, names).set_index("container")
    t.join()
    # 2. sampling 2 x 2 s while the streaming CLI prints a reading per second; compare means,
    #    as the host is shared and a busy loop's CPU varies from second to second
    stream = _CliStream(names)
    samples = od.sample_stats(docker_client, project, duration_s=4, interval_s=2.0)
    during = stream.stop()

    assert list(samples.columns[:12]) == [
        "time", "service", "container", "cpu_percent", "mem_usage_bytes", "mem_limit_bytes",
        "mem_percent", "net_rx_bytes", "net_tx_bytes", "blk_read_bytes", "blk_write_bytes",
        "pids"]
    assert set(samples["service"]) == {"busy", "hog"}
    assert str(samples["time"].dt.tz) == "UTC"
    assert samples.groupby("container").size().min() == 2  # 4 s / 2 s
    busy = samples[samples["service"] == "busy"]
    hog = samples[samples["service"] == "hog"]
    busy_name, hog_name = busy["container"].iloc[0], hog["container"].iloc[0]

    # CPU: the busy loop (capped at 0.25 CPUs) is seen alike by the CLI and by opslib
    assert cli[busy_name]["cpu"] > 5
    assert abs(snap.loc[busy_name, "cpu_percent"] - cli[busy_name]["cpu"]) < 3
    cli_cpu = [r["cpu"] for r in during[busy_name][1:]]  # the first streamed frame reads 0 %
    assert len(cli_cpu) >= 3
    assert abs(busy["cpu_percent"].mean() - sum(cli_cpu) / len(cli_cpu)) < 8
    assert busy["cpu_percent"].max() < 25 + 5  # never above the cap (plus rounding noise)
    assert hog["cpu_percent"].max() < 5
    # memory: the same bytes as the CLI, within sampling noise (CLI rounds to 3-4 digits)
    cli_mem = [cli[hog_name]["mem"], *(r["mem"] for r in during[hog_name])]
    for value in [*hog["mem_usage_bytes"], snap.loc[hog_name, "mem_usage_bytes"]]:
        assert min(abs(value - m) for m in cli_mem) < 0.03 * cli[hog_name]["mem"] + MIB
    assert (hog["mem_usage_bytes"] > 40 * MIB).all()
    # the CPU cap shows up as CFS throttling
    assert busy["cpu_throttled_periods"].iloc[-1] > 0
    assert (hog["cpu_periods"] == 0).all()
    usage = res.usage_summary(samples).set_index("service")
    assert usage.loc["busy", "throttled_pct_window"] > 20
    assert pd.isna(usage.loc["hog", "throttled_pct_window"])


def test_concurrent_snapshot_of_many_containers(docker_client: Any,
                                                loaded_containers: str) -> None:
    ctrs = od.project_containers(docker_client, loaded_containers)
    df = od.snapshot_stats(docker_client, ctrs * 6)  # 12 concurrent reads
    assert len(df) == 12 and df["container"].nunique() == 2
    assert (df["mem_limit_bytes"] > 0).all()


# --- overrides pass `docker compose config` -------------------------------------------------


def _recs(state: pd.DataFrame, mem_mib: dict[str, float]) -> pd.DataFrame:
    rows = []
    for svc, m in mem_mib.items():
        t = pd.date_range("2026-01-01", periods=4, freq="2s", tz="UTC")
        rows.append(pd.DataFrame({
            "time": t, "service": svc, "container": f"{svc}-1", "cpu_percent": 5.0,
            "mem_usage_bytes": int(m * MIB), "cpu_periods": 0, "cpu_throttled_periods": 0}))
    usage = res.usage_summary(pd.concat(rows))
    return res.recommend(usage, state, host_cpus=2)


def test_generated_override_passes_compose_config(tmp_path: Path) -> None:
    base = tmp_path / "compose.yaml"
    base.write_text(yaml.safe_dump({"services": {
        "short": {"image": IMAGE, "mem_limit": "300m", "cpus": 0.5},
        "db": {"image": IMAGE, "deploy": {"resources": {"limits": {"memory": "64M"}}}},
        "plain": {"image": IMAGE},
    }}))
    project = f"opslib-test-res-{uuid.uuid4().hex[:6]}"
    state = pd.DataFrame([
        {"service": "short", "role": "other", "memory_limit": 300 * MIB,
         "memory_reservation": 0, "cpus": 0.5, "oom_killed": False},
        {"service": "db", "role": "postgres", "memory_limit": 64 * MIB,
         "memory_reservation": 0, "cpus": 0.0, "oom_killed": False},
        {"service": "plain", "role": "other", "memory_limit": 0, "memory_reservation": 0,
         "cpus": 0.0, "oom_killed": False},
    ])
    recs = _recs(state, {"short": 250, "db": 100, "plain": 10})
    plan = res.plan_limits(recs, state, project=project, compose_file=base,
                           out_dir=tmp_path / "out")
    assert plan.services == ["db", "plain", "short"]
    assert plan.override_path.parent == tmp_path / "out"
    assert base.read_text().count("mem_limit: 300m") == 1  # the user's file is untouched
    merged = res.validate_override(plan)
    for svc in plan.services:
        e = plan.entries[svc]
        assert merged[svc]["declared_memory_limit"] == e["memory_limit"]
        assert merged[svc]["declared_memory_reservation"] == e["memory_reservation"]
        assert merged[svc]["declared_cpus"] == pytest.approx(e["cpus"])
    assert plan.entries["db"]["memory_limit"] == 256 * MIB  # postgres floor
    assert plan.entries["short"]["memory_limit"] == 384 * MIB  # 250 × 1.5 = 375 -> 384M
    # and docker compose itself is happy with base + override
    proc = subprocess.run(["docker", "compose", "-p", project, "-f", str(base), "-f",
                           str(plan.override_path), "config", "--quiet"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    dry = res.apply_limits(plan)
    assert set(dry["status"]) == {"dry run"}
    assert not plan.journal_path.exists()  # a dry run journals nothing


def test_demo_compose_override_is_valid(tmp_path: Path) -> None:
    compose_file = res.resolve_compose_file("")
    model = res.compose_config(compose_file, "shop")
    declared = res.declared_resources(model).set_index("service")
    assert declared.loc["db", "declared_memory_limit"] == 0
    assert declared.loc["api", "declared_memory_limit"] > 0
    state = pd.DataFrame([{"service": s, "role": res.service_role(s),
                           "memory_limit": int(declared.loc[s, "declared_memory_limit"]),
                           "memory_reservation": 0,
                           "cpus": float(declared.loc[s, "declared_cpus"]), "oom_killed": False}
                          for s in declared.index])
    recs = _recs(state, {"db": 120, "cache": 5, "api": 80, "web": 5})
    plan = res.plan_limits(recs, state, project="shop", compose_file=compose_file,
                           out_dir=tmp_path)
    assert plan.services == ["cache", "db"]
    merged = res.validate_override(plan)
    assert merged["db"]["declared_memory_limit"] == 256 * MIB
    assert merged["cache"]["declared_memory_limit"] == 64 * MIB


# --- apply and rollback on a throwaway compose project ----------------------------------------

TINY = {
    "services": {
        "app": {
            "image": IMAGE, "init": True, "command": ["sleep", "infinity"],
            "labels": {"opslib.test": "1"}, "stop_grace_period": "1s",
            "healthcheck": {"test": ["CMD", "true"], "interval": "1s", "timeout": "3s",
                            "retries": 3, "start_period": "1s"},
        },
        "hog": {
            # holds ~48 MiB (in /dev/shm: no start-up peak above that) and is healthy only
            # after it got them; OOM-killed (and exits) under a smaller limit
            "image": IMAGE, "init": True, "labels": {"opslib.test": "1"},
            "command": ["sh", "-c", "set -e; head -c 50000000 /dev/zero > /dev/shm/hold; "
                        "touch /tmp/ready; sleep infinity"],
            "stop_grace_period": "1s",
            "healthcheck": {"test": ["CMD", "test", "-f", "/tmp/ready"], "interval": "1s",
                            "timeout": "3s", "retries": 3, "start_period": "1s"},
        },
    },
    "networks": {"default": {"labels": {"opslib.test": "1"}}},
}


@pytest.fixture
def tiny_project(docker_client: Any, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    project = f"opslib-test-res-{uuid.uuid4().hex[:8]}"
    base = tmp_path / "compose.yaml"
    base.write_text(yaml.safe_dump(TINY, sort_keys=False))
    try:
        od.compose(["up", "-d", "--wait", "--wait-timeout", "120"], project=project,
                   files=[base], timeout=180)
        yield project, base
    finally:
        od.compose(["down", "-v", "--remove-orphans", "-t", "1"], project=project, files=[base],
                   check=False, timeout=180)


def _facts(client: Any, project: str) -> pd.DataFrame:
    return od.inspect_facts(client, project).set_index("service")


def test_apply_sets_limits_and_keeps_services_healthy(
        docker_client: Any, tiny_project: tuple[str, Path], tmp_path: Path) -> None:
    project, base = tiny_project
    out = tmp_path / "run"
    state = res.current_state(docker_client, project, base)
    assert res.services_without_limits(state) == ["app", "hog"]
    samples = od.sample_stats(docker_client, project, duration_s=2, interval_s=1.0)
    recs = res.recommend(res.usage_summary(samples), state, host_cpus=res.host_cpus(docker_client))
    plan = res.plan_limits(recs, state, project=project, compose_file=base, out_dir=out)
    assert plan.services == ["app", "hog"]
    assert plan.entries["hog"]["memory_limit"] >= 64 * MIB  # 48 MiB × 1.5 -> 80M

    result = res.apply_limits(plan, client=docker_client, apply=True,
                              timeout_s=90).set_index("service")
    assert set(result["status"]) == {"applied"}, result["detail"].to_dict()
    facts = _facts(docker_client, project)
    for svc in ("app", "hog"):
        assert facts.loc[svc, "memory_limit"] == plan.entries[svc]["memory_limit"]
        assert facts.loc[svc, "memory_reservation"] == plan.entries[svc]["memory_reservation"]
        assert facts.loc[svc, "cpus"] == pytest.approx(plan.entries[svc]["cpus"])
        assert facts.loc[svc, "health"] == "healthy"
    after = res.current_state(docker_client, project, base, with_throttling=False)
    assert res.services_without_limits(after) == []
    journal = res.read_journal(out)
    assert set(journal.loc[journal["step"] == "verify", "status"]) == {"ok"}
    # the user's compose file was not touched; the override carries the limits
    assert "deploy" not in base.read_text()
    assert set(yaml.safe_load(plan.override_path.read_text())["services"]) == {"app", "hog"}
    # rerunning the same plan resumes: nothing is recreated
    ids = {c.name: c.id for c in od.project_containers(docker_client, project)}
    again = res.apply_limits(plan, client=docker_client, apply=True, timeout_s=90)
    assert set(again["status"]) == {"already applied"}
    assert {c.name: c.id for c in od.project_containers(docker_client, project)} == ids


def test_too_small_memory_limit_is_rolled_back(
        docker_client: Any, tiny_project: tuple[str, Path], tmp_path: Path) -> None:
    project, base = tiny_project
    state = res.current_state(docker_client, project, base, with_throttling=False)
    samples = od.sample_stats(docker_client, project, duration_s=0, interval_s=1.0)
    recs = res.recommend(res.usage_summary(samples), state, host_cpus=2)
    # deliberately too small for the ~48 MiB the hog holds
    recs.loc[recs["service"] == "hog", ["memory_limit", "memory_reservation"]] = [16 * MIB,
                                                                                    8 * MIB]
    plan = res.plan_limits(recs, state, project=project, compose_file=base,
                           out_dir=tmp_path / "run", services=["hog", "app"])
    result = res.apply_limits(plan, client=docker_client, apply=True,
                              timeout_s=60).set_index("service")
    assert result.loc["hog", "status"] == "rolled back", result.loc["hog", "detail"]
    assert "OOM" in result.loc["hog", "detail"] or "exited" in result.loc["hog", "detail"]
    assert result.loc["app", "status"] == "applied"
    facts = _facts(docker_client, project)
    assert facts.loc["hog", "memory_limit"] == 0  # back to its previous settings (none)
    assert facts.loc["hog", "state"] == "running" and facts.loc["hog", "health"] == "healthy"
    assert facts.loc["app", "memory_limit"] == plan.entries["app"]["memory_limit"]
    # the override no longer carries the failed entry, so a later `up` does not break it again
    assert set(yaml.safe_load(plan.override_path.read_text())["services"]) == {"app"}
    journal = res.read_journal(plan.journal_path)
    steps = list(zip(journal["service"], journal["step"], journal["status"], strict=True))
    assert ("hog", "verify", "failed") in steps and ("hog", "rollback", "ok") in steps


# --- the runbook ------------------------------------------------------------------------------


def test_notebook_dry_run_on_shop(docker_client: Any, shop: str, tmp_path: Path) -> None:
    before = _facts(docker_client, shop)
    out_nb = tmp_path / "resource-tuning.out.ipynb"
    pm.execute_notebook(
        str(ROOT / "notebooks" / "resource-tuning.ipynb"), str(out_nb),
        parameters={"project": shop, "output_dir": str(tmp_path / "run"), "duration_s": 4,
                    "interval_s": 2.0},
        cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False,
    )
    r = results_from_notebook(out_nb)
    rec = r["records"]
    assert {"db", "cache"} <= set(rec["services_without_limits_before"])
    assert "api" not in rec["services_without_limits_before"]
    assert rec["services_without_limits_after"] == rec["services_without_limits_before"]
    assert rec["apply_outcome"] == "dry run"
    limits = rec["recommended_limits"]
    assert set(limits) == {"api", "cache", "db", "web"}
    assert res.parse_memory(limits["db"]["memory_limit"]) >= 256 * MIB
    assert 0 < limits["db"]["cpus"] <= 2
    checks = {c["name"]: c for c in r["checks"]}
    assert checks["all_services_have_memory_limit"]["ok"] is False
    assert "db" in checks["all_services_have_memory_limit"]["detail"]
    assert (tmp_path / "run" / "compose.resources.override.yaml").exists()
    # a dry run changes nothing (compared per container: other sessions may add their own)
    after = od.inspect_facts(docker_client, shop).set_index("container")
    before_c = before.reset_index().set_index("container")
    for name in ("shop-db-1", "shop-cache-1", "shop-api-1", "shop-web-1"):
        assert after.loc[name, "id"] == before_c.loc[name, "id"]
        assert after.loc[name, "memory_limit"] == before_c.loc[name, "memory_limit"]
