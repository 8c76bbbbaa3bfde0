"""opslib.engine.discovery without an engine: roles, honest health, picking a service."""

from __future__ import annotations

import pytest

from opslib.engine import PublishedPort, ServiceInfo, Stack, detect_role, health_state
from opslib.exceptions import RoleNotFound, ServiceNotFound


@pytest.mark.parametrize(("image", "command", "ports", "env", "role"), [
    ("postgres:16", "docker-entrypoint.sh postgres", [5432], ["POSTGRES_PASSWORD"], "postgres"),
    ("acme/db:1", "shop-db-entrypoint", [5432], ["PGDATA"], "postgres"),
    ("bitnami/redis:7", "redis-server", [6379], [], "redis"),
    ("valkey/valkey:8", "valkey-server", [6379], [], "redis"),
    ("nginx:1.27", "nginx -g daemon off;", [80], [], "nginx"),
    ("acme/api:2", "gunicorn app:app", [8000], ["DATABASE_URL"], "http"),
    ("acme/backend:2", "python3 /srv/app.py", [9000], [], "http"),
    ("acme/worker:2", "celery -A app worker", [], ["REDIS_URL"], "other"),
    ("busybox", "sleep infinity", [], [], "other"),
])
def test_detect_role(image: str, command: str, ports: list[int], env: list[str],
                     role: str) -> None:
    got, why = detect_role(image, command, ports, env)
    assert got == role, why
    assert why


def _attrs(status: str, health: str | None, test: list[str] | None) -> dict[str, object]:
    state: dict[str, object] = {"Status": status}
    if health:
        state["Health"] = {"Status": health}
    return {"State": state, "Config": {"Healthcheck": {"Test": test} if test else None}}


def test_health_state_says_it_as_it_is() -> None:
    assert health_state(_attrs("running", "healthy", ["CMD", "true"])) == "healthy"
    assert health_state(_attrs("running", "unhealthy", ["CMD", "true"])) == "unhealthy"
    assert health_state(_attrs("running", "starting", ["CMD", "true"])) == "starting"
    assert health_state(_attrs("running", None, None)) == "no healthcheck"
    assert health_state(_attrs("running", None, ["NONE"])) == "no healthcheck"
    assert health_state(_attrs("exited", "healthy", ["CMD", "true"])) == "not running"


def _svc(name: str, role: str, ports: tuple[PublishedPort, ...] = ()) -> ServiceInfo:
    return ServiceInfo(name, (f"p-{name}-1",), f"img/{name}", role, "test", "running", "healthy",
                       "", (), ports, (), "")


def test_pick_auto_named_missing_and_ambiguous() -> None:
    stack = Stack("p", (_svc("pg", "postgres"), _svc("r1", "redis"), _svc("r2", "redis"),
                        _svc("edge", "nginx", (PublishedPort("127.0.0.1", 18080, 80),))),
                  (), "")
    assert stack.pick("postgres", "auto", param="db_service") == "pg"
    assert stack.pick("redis", "r2", param="cache_service") == "r2"
    with pytest.raises(RoleNotFound) as many:
        stack.pick("redis", "auto", param="cache_service")
    text = str(many.value)
    assert "2 services look like redis (r1, r2)" in text and "-p cache_service" in text
    assert "pg (postgres)" in text and "edge (nginx)" in text
    with pytest.raises(RoleNotFound, match="no service looks like http"):
        stack.pick("http", "auto", param="app_service")
    with pytest.raises(ServiceNotFound, match="Its services are: pg, r1, r2, edge"):
        stack.pick("postgres", "nope", param="db_service")
    assert stack.maybe("http", "auto", param="app_service") is None
    assert stack.http_endpoint() == "http://127.0.0.1:18080"
    assert stack.http_endpoint("http://127.0.0.1:9/x") == "http://127.0.0.1:9/x"
    assert PublishedPort("0.0.0.0", 8080, 80).url() == "http://127.0.0.1:8080"
