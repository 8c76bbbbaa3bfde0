"""opslib.engine against the real engine and the demo stack."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import papermill as pm
import pytest

from opslib import engine as od
from opslib.exceptions import (
    CommandFailed,
    ContainerNotFound,
    EngineUnreachable,
    ProjectNotFound,
    ServiceNotFound,
)
from opslib.overview import stack_overview, unhealthy_services
from opslib.report import results_from_notebook

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]


def test_connect_to_unreachable_engine_is_typed_error(tmp_path: Path) -> None:
    with pytest.raises(EngineUnreachable) as info:
        od.connect(f"unix://{tmp_path}/nothing.sock", timeout=3)
    assert "nothing.sock" in str(info.value)


def test_project_services_and_containers(docker_client: Any, shop: str) -> None:
    assert od.services(docker_client, shop) == ["api", "cache", "db", "web"]
    assert shop in od.list_projects(docker_client)
    c = od.service_container(docker_client, shop, "db")
    assert c.labels[od.SERVICE_LABEL] == "db" and c.status == "running"


def test_unknown_project_and_service(docker_client: Any, shop: str) -> None:
    with pytest.raises(ProjectNotFound) as p:
        od.project_containers(docker_client, "no-such-project-" + uuid.uuid4().hex[:6])
    assert shop in p.value.available
    with pytest.raises(ServiceNotFound) as s:
        od.service_container(docker_client, shop, "dbx")
    assert s.value.available == ["api", "cache", "db", "web"]


def test_inspect_facts_reflect_demo_state(docker_client: Any, shop: str) -> None:
    facts = od.inspect_facts(docker_client, shop).set_index("service")
    assert facts.loc["db", "memory_limit"] == 0 and facts.loc["cache", "memory_limit"] == 0
    assert facts.loc["api", "memory_limit"] > 0 and facts.loc["api", "cpus"] > 0
    assert bool(facts.loc["api", "runs_as_root"]) is True
    assert not facts["read_only"].any()
    assert set(facts["health"]) == {"healthy"}
    assert facts.loc["web", "image"].endswith(":latest")
    assert all(p.startswith("127.0.0.1:") for ports in facts["ports"] for p in ports)
    assert facts.loc["api", "log_driver"] == "json-file"
    assert Path(facts.loc["api", "log_path"]).name.endswith("-json.log")


def test_exec_in_service_output_and_failure(docker_client: Any, shop: str) -> None:
    r = od.exec_in_service(docker_client, shop, "db",
                           ["psql", "-U", "shop", "-d", "shop", "-Atc", "select 40+2"])
    assert r.exit_code == 0 and r.stdout.strip() == "42"
    with pytest.raises(CommandFailed) as info:
        od.exec_in_service(docker_client, shop, "cache", ["sh", "-c", "echo nope >&2; exit 3"])
    assert info.value.exit_code == 3 and "nope" in info.value.stderr
    r = od.exec_in_service(docker_client, shop, "cache", ["sh", "-c", "exit 4"], check=False)
    assert r.exit_code == 4


def test_exec_to_file_streams_large_output(docker_client: Any, shop: str) -> None:
    buf = io.BytesIO()
    chunks: list[int] = []
    code, written, _ = od.exec_to_file(
        docker_client, od.service_container(docker_client, shop, "cache"),
        ["sh", "-c", "head -c 5000000 /dev/zero"], buf,
        chunk_callback=lambda b: chunks.append(len(b)),
    )
    assert code == 0 and written == 5_000_000 == len(buf.getvalue())
    assert len(chunks) > 1


def test_exec_in_missing_container(docker_client: Any) -> None:
    with pytest.raises(ContainerNotFound):
        od.exec_in_container(docker_client, "no-such-container-xyz", ["true"])


def test_stack_overview_orders_broken_first(docker_client: Any, shop: str) -> None:
    df = stack_overview(docker_client, shop)
    assert set(df["service"]) == {"api", "cache", "db", "web"}
    assert unhealthy_services(df) == []
    broken = df.copy()
    broken.loc[broken["service"] == "web", "health"] = "unhealthy"
    assert unhealthy_services(broken) == ["web"]


def test_stack_overview_notebook_under_plain_papermill(shop: str, tmp_path: Path) -> None:
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "stack-overview.ipynb"), str(out),
                        parameters={"project": shop}, cwd=str(ROOT / "notebooks"),
                        kernel_name="python3", progress_bar=False)
    res = results_from_notebook(out)
    assert res["records"]["services"] == 4
    assert res["records"]["unhealthy_services"] == []
    assert set(res["records"]["services_without_memory_limit"]) == {"cache", "db"}
    assert res["records"]["total_image_size_mb"] > 50
    assert res["checks"] == [{"name": "all_services_healthy", "ok": True,
                              "detail": "0 of 4 services not running/healthy: none",
                              "data": None, "status": "pass"},
                             {"name": "all_services_have_healthcheck", "ok": True,
                              "detail": "0 of 4 services have no healthcheck: none",
                              "data": None, "status": "pass"}]
    assert res["records"]["service_roles"] == {"api": "http", "cache": "redis", "db": "postgres",
                                               "web": "nginx"}
    assert res["records"]["health_states"] == dict.fromkeys(("api", "cache", "db", "web"),
                                                            "healthy")


def test_stack_overview_notebook_fails_loudly_on_unknown_project(tmp_path: Path,
                                                                 docker_client: Any) -> None:
    with pytest.raises(pm.PapermillExecutionError) as info:
        pm.execute_notebook(str(ROOT / "notebooks" / "stack-overview.ipynb"),
                            str(tmp_path / "out.ipynb"), parameters={"project": "nope-xyz"},
                            cwd=str(ROOT / "notebooks"), kernel_name="python3",
                            progress_bar=False)
    assert info.value.ename == "ProjectNotFound"
