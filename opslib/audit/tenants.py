"""The tenant isolation probe against the local API."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

import pandas as pd

from opslib import demo
from opslib.exceptions import (
    BadParameter,
    CommandFailed,
)

__all__ = ["tenant_isolation_probe"]


# --------------------------------------------------------------------------------------------
# Tenant isolation probe
# --------------------------------------------------------------------------------------------

_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _check_local_url(api_url: str) -> str:
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or (parts.hostname or "") not in _LOCAL_HOSTS:
        raise BadParameter("api_url", api_url, "an http(s) URL on 127.0.0.1 or localhost (the "
                           "probe only talks to the local demo stack)")
    return api_url.rstrip("/")


def tenant_isolation_probe(
    api_url: str = demo.DEMO_API_URL,
    *,
    tenant_a: str = demo.DEMO_TENANTS[0],
    tenant_b: str = demo.DEMO_TENANTS[1],
    username: str = demo.DEMO_USER,
    password: str = demo.DEMO_PASSWORD,
    timeout: float = 10,
) -> pd.DataFrame:
    """Ask the API, as a user of tenant A, for tenant B's resources; every ask must be refused.

    Logs in as ``tenant_a/username`` and ``tenant_b/username``; as B finds a product and creates
    one order (the only write); then as A: reads B's order (must be 403/404), orders B's product
    (must be 403/404), searches products (must return none of B's), and calls without a token
    (must be 401). A control read of the order as B must succeed, so a 404 means isolation and
    not a broken endpoint. About 10 requests, all to the local API.

    Args:
        api_url: Base URL of the API (only 127.0.0.1/localhost).
        tenant_a: The tenant that probes.
        tenant_b: The tenant whose data must stay invisible.
        username: User name in both tenants.
        password: Their password (never shown).
        timeout: Seconds per request.

    Returns:
        One row per probe: probe, request, expected, got, ok.

    Raises:
        BadParameter: ``api_url`` is not a local http(s) URL.
        CommandFailed: A login failed or the API is unreachable (the probe cannot run).
    """
    import requests

    base = _check_local_url(api_url)
    sess = requests.Session()
    rows: list[dict[str, Any]] = []

    def call(method: str, path: str, token: str | None = None, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            return sess.request(method, base + path, json=body, headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            raise CommandFailed([method, base + path], -1, str(exc)) from exc

    def login(tenant: str) -> str:
        r = call("POST", "/login", body={"tenant": tenant, "username": username,
                                         "password": password})
        if r.status_code != 200:
            raise CommandFailed(["POST", base + "/login", f"{tenant}/{username}"], r.status_code,
                                f"login failed with HTTP {r.status_code}; is the demo stack "
                                "seeded (scripts/demo_stack.py up)?")
        return str(r.json()["token"])

    def probe(name: str, req: str, expected: str, got: int, ok: bool, note: str = "") -> None:
        rows.append({"probe": name, "request": req, "expected": expected,
                     "got": f"HTTP {got}" + (f" ({note})" if note else ""), "ok": bool(ok)})

    tok_a, tok_b = login(tenant_a), login(tenant_b)
    rb = call("GET", "/products?limit=100", tok_b)
    items_b = rb.json().get("items", []) if rb.status_code == 200 else []
    if not items_b:
        raise CommandFailed(["GET", base + "/products"], rb.status_code,
                            f"tenant {tenant_b} has no products to probe with")
    ids_b = {int(i["id"]) for i in items_b}
    product_b = items_b[0]
    ro = call("POST", "/orders", tok_b, {"product_id": int(product_b["id"]), "quantity": 1})
    if ro.status_code != 201:
        raise CommandFailed(["POST", base + "/orders"], ro.status_code,
                            f"could not create an order as {tenant_b}")
    order_b = int(ro.json()["id"])
    rc = call("GET", f"/orders/{order_b}", tok_b)
    probe("control: owner reads its order", f"GET /orders/{order_b} as {tenant_b}", "200",
          rc.status_code, rc.status_code == 200)
    r = call("GET", f"/orders/{order_b}", tok_a)
    probe("read other tenant's order", f"GET /orders/{order_b} as {tenant_a}", "403 or 404",
          r.status_code, r.status_code in (403, 404))
    r = call("POST", "/orders", tok_a, {"product_id": int(product_b["id"]), "quantity": 1})
    probe("order other tenant's product", f"POST /orders product {product_b['id']} as "
          f"{tenant_a}", "403 or 404", r.status_code, r.status_code in (403, 404))
    ra = call("GET", "/products?limit=100", tok_a)
    ids_a = {int(i["id"]) for i in ra.json().get("items", [])} if ra.status_code == 200 else set()
    leaked = sorted(ids_a & ids_b)
    probe("product list holds only own products", f"GET /products?limit=100 as {tenant_a}",
          f"200 without {tenant_b}'s products", ra.status_code,
          ra.status_code == 200 and bool(ids_a) and not leaked,
          f"{len(ids_a)} products, {len(leaked)} of {tenant_b}'s")
    q = str(product_b.get("name") or "")[:40]
    rs = call("GET", f"/products?q={quote(q)}&limit=100", tok_a)
    found = {int(i["id"]) for i in rs.json().get("items", [])} if rs.status_code == 200 else set()
    probe("search for other tenant's product name", f"GET /products?q=<{tenant_b} product "
          f"name> as {tenant_a}", f"200 without {tenant_b}'s products", rs.status_code,
          rs.status_code == 200 and not (found & ids_b), f"{len(found & ids_b)} of {tenant_b}'s")
    r = call("GET", f"/orders/{order_b}")
    probe("no token", f"GET /orders/{order_b} without token", "401", r.status_code,
          r.status_code == 401)
    r = call("GET", f"/orders/{order_b}", "opslib-probe-invalid-token")
    probe("forged token", f"GET /orders/{order_b} with a made-up token", "401", r.status_code,
          r.status_code == 401)
    return pd.DataFrame(rows, columns=["probe", "request", "expected", "got", "ok"])
