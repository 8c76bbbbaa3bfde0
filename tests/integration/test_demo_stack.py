"""The demo stack (demo/compose.yaml, project "shop"): health, API behaviour, data, logs, and the
planted "current status" state the runbooks are meant to find."""

from __future__ import annotations

import importlib.util
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from opslib.engine import exec_in_container, exec_in_service, inspect_facts, service_container

pytestmark = pytest.mark.docker

API = "http://127.0.0.1:8000"
WEB = "http://127.0.0.1:8080"
SERVICES = {"db", "cache", "api", "web"}
LOG_FIELDS = {
    "time",
    "level",
    "msg",
    "request_id",
    "method",
    "path",
    "status",
    "latency_ms",
    "tenant",
}
NGINX_FIELDS = {
    "time",
    "remote_addr",
    "request_method",
    "request_uri",
    "status",
    "body_bytes_sent",
    "request_time",
    "upstream_response_time",
    "http_user_agent",
    "request_id",
}

# The same HTTP helper the demo traffic uses (scripts/demo_stack.py), loaded from its file.
_spec = importlib.util.spec_from_file_location(
    "demo_stack", Path(__file__).resolve().parents[2] / "scripts" / "demo_stack.py")
assert _spec is not None and _spec.loader is not None
demo_stack = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(demo_stack)
http = demo_stack.http


def login(tenant: str, username: str, password: str = "demo", base: str = API) -> str:
    status, body = http(
        "POST", f"{base}/login", {"tenant": tenant, "username": username, "password": password}
    )
    assert status == 200, body
    assert isinstance(body["token"], str) and len(body["token"]) >= 20
    return str(body["token"])


def psql_scalar(client: Any, sql: str) -> int:
    res = exec_in_service(
        client, "shop", "db", ["psql", "-X", "-tA", "-U", "shop", "-d", "shop", "-c", sql]
    )
    return int(res.stdout.strip())


def container_log_lines(
    client: Any, service: str, *, stdout: bool = True, stderr: bool = False
) -> list[str]:
    container = service_container(client, "shop", service)
    raw = container.logs(stdout=stdout, stderr=stderr).decode("utf-8", "replace")
    return [ln for ln in raw.splitlines() if ln.strip()]


def test_all_four_services_running_and_healthy(docker_client: Any, shop: str) -> None:
    facts = inspect_facts(docker_client, shop)
    assert set(facts["service"]) == SERVICES
    for row in facts.to_dict("records"):
        assert row["state"] == "running", row
        assert row["health"] == "healthy", row
        assert row["healthcheck"] is True, row
        assert row["restart_policy"] == "unless-stopped", row


@pytest.mark.parametrize("base", [API, f"{WEB}/api"], ids=["direct", "via-nginx"])
def test_health_and_ready(shop: str, base: str) -> None:
    status, body = http("GET", f"{base}/health")
    assert status == 200 and body["status"] == "ok"
    status, body = http("GET", f"{base}/ready")
    assert status == 200, body
    assert body["checks"] == {"db": "ok", "cache": "ok"}


def test_frontend_served_by_nginx(shop: str) -> None:
    status, page = http("GET", f"{WEB}/")
    assert status == 200 and '<script src="app.js">' in page
    status, js = http("GET", f"{WEB}/app.js")
    assert status == 200 and "/api" in js


def test_login_ok_and_wrong_password_401(shop: str) -> None:
    login("globex", "bob", base=f"{WEB}/api")
    status, body = http(
        "POST", f"{API}/login", {"tenant": "globex", "username": "bob", "password": "wrong"}
    )
    assert status == 401 and body["error"] == "invalid credentials"
    status, _ = http("POST", f"{API}/login", {"tenant": "globex", "username": "bob"})
    assert status == 400
    status, _ = http("GET", f"{API}/products?q=widget")
    assert status == 401
    status, _ = http("GET", f"{API}/products?q=widget", token="not-a-real-token")
    assert status == 401


def test_product_search_is_scoped_to_the_callers_tenant(shop: str) -> None:
    for tenant, user in (("acme", "alice"), ("initech", "ivan")):
        token = login(tenant, user)
        status, body = http("GET", f"{API}/products?q=widget&limit=25", token=token)
        assert status == 200, body
        assert body["count"] == len(body["items"]) == 25
        for item in body["items"]:
            assert item["sku"].startswith(tenant.upper() + "-"), item
            assert "widget" in item["name"].lower()
        # The same search again is answered from the cache, with the same items.
        status, again = http("GET", f"{API}/products?q=widget&limit=25", token=token)
        assert status == 200 and again["cached"] is True and again["items"] == body["items"]


def test_tenant_cannot_read_another_tenants_order(shop: str) -> None:
    acme, globex = login("acme", "alice"), login("globex", "bob")
    status, found = http("GET", f"{API}/products?q=lamp&limit=1", token=acme)
    assert status == 200 and found["items"], found
    product_id = found["items"][0]["id"]
    status, order = http(
        "POST", f"{WEB}/api/orders", {"product_id": product_id, "quantity": 3}, token=acme
    )
    assert status == 201, order
    assert order["quantity"] == 3 and order["product_id"] == product_id

    status, mine = http("GET", f"{API}/orders/{order['id']}", token=acme)
    assert status == 200 and mine["id"] == order["id"] and mine["username"] == "alice"
    for base in (API, f"{WEB}/api"):
        status, body = http("GET", f"{base}/orders/{order['id']}", token=globex)
        assert status == 404, body
    # Nor can globex order acme's product.
    status, _ = http(
        "POST", f"{API}/orders", {"product_id": product_id, "quantity": 1}, token=globex
    )
    assert status == 404


def test_sales_report_groups_by_day(shop: str) -> None:
    token = login("initech", "carol")
    status, body = http("GET", f"{API}/reports/sales?days=30", token=token)
    assert status == 200, body
    assert body["tenant"] == "initech"
    days = body["days"]
    assert 28 <= len(days) <= 31
    assert [d["day"] for d in days] == sorted({d["day"] for d in days})
    assert body["totals"]["orders"] == sum(d["orders"] for d in days) > 1000
    assert all(d["revenue_cents"] > 0 and d["units"] >= d["orders"] for d in days)


def test_seeded_data(docker_client: Any, shop: str) -> None:
    assert psql_scalar(docker_client, "select count(*) from tenants") == 3
    assert psql_scalar(docker_client, "select count(*) from users") >= 30
    assert psql_scalar(docker_client, "select count(*) from products") >= 90_000
    assert psql_scalar(docker_client, "select count(*) from orders") >= 90_000
    # Orders spread over the last 60 days, and each order's product belongs to its tenant.
    assert (
        psql_scalar(
            docker_client,
            "select count(distinct created_at::date) from orders "
            "where created_at > now() - interval '61 days'",
        )
        >= 59
    )
    assert (
        psql_scalar(
            docker_client,
            "select count(*) from orders o join products p "
            "on p.id = o.product_id where p.tenant_id <> o.tenant_id",
        )
        == 0
    )
    # The backup tools are in the db image.
    for tool in ("pg_dump", "pg_restore", "psql"):
        res = exec_in_service(docker_client, "shop", "db", [tool, "--version"])
        assert "15." in res.stdout


def test_metrics_expose_request_counter_and_latency_histogram(shop: str) -> None:
    http("GET", f"{API}/health")
    status, text = http("GET", f"{API}/metrics")
    assert status == 200
    assert "# TYPE http_requests_total counter" in text
    assert 'http_requests_total{endpoint="/health",method="GET",status="200"}' in text
    assert "# TYPE http_request_duration_seconds histogram" in text
    assert "http_request_duration_seconds_bucket{" in text


def test_api_logs_are_json_lines(docker_client: Any, shop: str) -> None:
    marker = uuid.uuid4().hex
    http("GET", f"{API}/health", headers={"X-Request-ID": marker})
    # A failed login carrying an Authorization header: the api logs it at warning (planted).
    bearer = f"Bearer leaked-{marker}"
    http(
        "POST",
        f"{API}/login",
        {"tenant": "acme", "username": "bob", "password": "nope"},
        headers={"Authorization": bearer},
    )
    time.sleep(0.5)
    lines = container_log_lines(docker_client, "api", stdout=True, stderr=True)
    records = [json.loads(ln) for ln in lines]  # every line is one JSON object
    for rec in records:
        assert {"time", "level", "msg"} <= rec.keys(), rec
        assert rec["level"] in ("info", "warning", "error"), rec
        assert rec["time"].endswith("Z") and "T" in rec["time"], rec
    requests = [r for r in records if r.get("path")]
    assert requests and all(r.keys() >= LOG_FIELDS for r in requests)
    mine = [r for r in requests if r["request_id"] == marker]
    assert len(mine) == 1
    assert mine[0]["path"] == "/health" and mine[0]["status"] == 200
    assert isinstance(mine[0]["latency_ms"], (int, float))
    failed = [r for r in requests if r.get("authorization") == bearer]
    assert len(failed) == 1 and failed[0]["level"] == "warning" and failed[0]["status"] == 401
    # Planted: the startup line carries the full DSN, password included.
    assert any("postgresql://shop:shop-demo-password@db:5432/shop" in r["msg"] for r in records)
    assert all(r["level"] == "error" for r in requests if r["status"] >= 500)


def test_nginx_access_log_is_json(docker_client: Any, shop: str) -> None:
    marker = uuid.uuid4().hex
    http("GET", f"{WEB}/?probe={marker}")
    http("GET", f"{WEB}/api/health?probe={marker}")
    time.sleep(0.5)
    records = [json.loads(ln) for ln in container_log_lines(docker_client, "web")]
    assert records and all(r.keys() >= NGINX_FIELDS for r in records)
    mine = {r["request_uri"]: r for r in records if marker in r["request_uri"]}
    assert mine[f"/?probe={marker}"]["status"] == 200
    proxied = mine[f"/api/health?probe={marker}"]
    assert proxied["status"] == 200 and proxied["upstream_response_time"] not in ("", "-")
    assert len(proxied["request_id"]) == 32


def test_planted_current_status(docker_client: Any, shop: str) -> None:
    rows = inspect_facts(docker_client, shop).to_dict("records")
    facts: dict[str, dict[Any, Any]] = {str(r["service"]): r for r in rows}
    db, cache, api, web = facts["db"], facts["cache"], facts["api"], facts["web"]
    # Resource limits on api and web only.
    assert db["memory_limit"] == 0 and cache["memory_limit"] == 0
    assert db["cpus"] == 0 and cache["cpus"] == 0
    assert api["memory_limit"] == 1024**3 and api["cpus"] == 1.5
    assert web["memory_limit"] == 256 * 1024**2 and web["cpus"] == 1.0
    # Users: api as root (planted); db and cache not.
    assert api["runs_as_root"] is True
    assert db["user"] == "postgres" and cache["user"] == "redis"
    assert db["runs_as_root"] is False and cache["runs_as_root"] is False
    for row in rows:
        # No read-only root filesystems, default json-file logging without rotation.
        assert row["read_only"] is False, row["service"]
        assert row["log_driver"] == "json-file" and row["log_opts"] == {}, row["service"]
        # Ports published on 127.0.0.1 only.
        assert row["ports"] and all(p.startswith("127.0.0.1:") for p in row["ports"])
    for svc, port in (("web", "8080"), ("api", "8000"), ("db", "15432"), ("cache", "16379")):
        assert any(p.startswith(f"127.0.0.1:{port}->") for p in facts[svc]["ports"])
    # Explicit tags, web on :latest.
    assert (db["image"], cache["image"], api["image"]) == (
        "shop/db:1.0",
        "shop/cache:1.0",
        "shop/api:1.0",
    )
    assert web["image"] == "shop/web:latest"
    # The api's secrets are plain environment variables.
    env = service_container(docker_client, shop, "api").attrs["Config"]["Env"]
    assert "DATABASE_URL=postgresql://shop:shop-demo-password@db:5432/shop" in env
    assert any(e.startswith("API_SECRET_KEY=") for e in env)
    # The persistent data sits in the named volumes.
    assert any(m.endswith(":/var/lib/postgresql/data") for m in db["mounts"])
    assert any(m.endswith(":/data") for m in cache["mounts"])


def test_redis_appendonly_enabled(docker_client: Any, shop: str) -> None:
    res = exec_in_service(
        docker_client, shop, "cache", ["redis-cli", "config", "get", "appendonly"]
    )
    assert res.stdout.split() == ["appendonly", "yes"]


def test_ready_names_the_failing_dependency(
    docker_client: Any, shop: str, test_labels: dict[str, str]
) -> None:
    """A second api container (same image, shop network) whose cache is unreachable: /ready
    must answer 503 naming "cache" while /health stays 200. The shared stack is untouched."""
    api = service_container(docker_client, shop, "api")
    network = next(iter(api.attrs["NetworkSettings"]["Networks"]))
    env = {
        "DATABASE_URL": "postgresql://shop:shop-demo-password@db:5432/shop",
        "REDIS_URL": "redis://no-such-cache.invalid:6379/0",
        "API_SECRET_KEY": "test",
        "GUNICORN_WORKERS": "1",
    }
    probe = docker_client.containers.run(
        api.image.id,
        detach=True,
        environment=env,
        network=network,
        labels=test_labels,
        name=f"opslib-test-api-{uuid.uuid4().hex[:8]}",
    )
    fetch = (
        "import json, urllib.request, urllib.error\n"
        "def get(p):\n"
        "    try:\n"
        "        r = urllib.request.urlopen('http://127.0.0.1:8000' + p, timeout=10)\n"
        "        return r.status, json.load(r)\n"
        "    except urllib.error.HTTPError as e:\n"
        "        return e.code, json.load(e)\n"
        "print(json.dumps([get('/health'), get('/ready')]))\n"
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            res = exec_in_container(docker_client, probe, ["python3", "-c", fetch], check=False)
            if res.exit_code == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert res.exit_code == 0, res.stderr
        (health_status, _), (ready_status, ready) = json.loads(res.stdout)
        assert health_status == 200
        assert ready_status == 503
        assert ready["failing"] == ["cache"]
        assert ready["checks"]["db"] == "ok" and ready["checks"]["cache"].startswith("error")
    finally:
        probe.remove(force=True)
