"""Everything that exists only for the demo stack (compose project ``shop`` in ``demo/``).

The library's domains take their inputs as arguments; the runbooks' defaults for the demo stack
live here: where its compose file is, how a runbook's ``compose_file`` parameter resolves
(relative to the repository root), the shop's application queries, the built-in k6/Locust
scenarios against its API, and its tenants.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from opslib.engine import Stack
from opslib.exceptions import BadParameter

__all__ = [
    "DEMO_API_URL",
    "DEMO_BASE_URL",
    "DEMO_COMPOSE",
    "DEMO_PASSWORD",
    "DEMO_PROJECT",
    "DEMO_SERVICES",
    "DEMO_TENANTS",
    "DEMO_USER",
    "K6_DEMO_SCRIPT",
    "LOCUST_DEMO_FILE",
    "REPO_ROOT",
    "SHOP_APP_QUERIES",
    "app_queries",
    "default_compose_file",
    "is_demo",
    "require_demo",
    "resolve_compose_files",
    "sample_k6_results",
    "sample_vuln_reports",
]


#: The repository root (the folder above the ``opslib`` package).
REPO_ROOT = Path(__file__).resolve().parents[1]

#: The demo stack's compose file, relative to :data:`REPO_ROOT`.
DEMO_COMPOSE = "demo/compose.yaml"


def default_compose_file() -> Path:
    """The demo stack's compose file, ``demo/compose.yaml`` at the repository root."""
    return REPO_ROOT / DEMO_COMPOSE


def resolve_compose_files(compose_file: str | Path | Sequence[str | Path] = "") -> list[Path]:
    """The compose files named by a runbook's ``compose_file`` parameter.

    Args:
        compose_file: A path, comma-separated paths (in a string) or a list; empty means
            :func:`default_compose_file`. ``~`` is expanded; relative paths are taken from the
            repository root (notebooks run from ``notebooks/``).

    Returns:
        Absolute paths, in order (later files override earlier ones).

    Raises:
        BadParameter: A file does not exist.
    """
    if isinstance(compose_file, Path):
        items = [str(compose_file)]
    elif isinstance(compose_file, str):
        items = [x.strip() for x in compose_file.split(",")]
    else:
        items = [str(x).strip() for x in compose_file]
    paths = [Path(x).expanduser() for x in items if x]
    paths = [p if p.is_absolute() else REPO_ROOT / p for p in paths] or [default_compose_file()]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise BadParameter("compose_file", compose_file,
                           "existing compose file(s) (relative paths are taken from the "
                           f"repository root {REPO_ROOT}; leave it empty for the demo stack); "
                           "not found: " + ", ".join(missing))
    return paths


#: The demo shop API through nginx (compose project ``shop``, service ``web``).
DEMO_API_URL = "http://127.0.0.1:8080/api"

#: The demo shop's tenants (slugs); the tenant isolation probe uses the first two.
DEMO_TENANTS: tuple[str, ...] = ("acme", "globex", "initech")
#: A user that exists in every demo tenant, and the demo password of all users.
DEMO_USER = "alice"
DEMO_PASSWORD = "demo"


#: The demo's sample data (``demo/samples/README.md``); it exists only in a checkout.
SAMPLES = REPO_ROOT / "demo" / "samples"


def _in_checkout(path: Path, what: str) -> Path:
    if not path.exists():
        raise BadParameter(what, "", f"an explicit path: the demo sample {path} exists only "
                           "in an opslib checkout")
    return path


def sample_vuln_reports() -> list[Path]:
    """The small trivy and grype reports of the demo images (``demo/samples/``).

    Raises:
        BadParameter: Not an opslib checkout (an installed wheel has no samples): pass reports.
    """
    folder = _in_checkout(SAMPLES, "vuln_reports")
    return sorted(folder.glob("*-shop-*.json"))


def sample_k6_results() -> Path:
    """The committed k6 NDJSON example run against the demo shop.

    Raises:
        BadParameter: Not an opslib checkout (an installed wheel has no samples): pass a source.
    """
    return _in_checkout(SAMPLES / "k6.ndjson", "source")


#: Application queries of the demo shop, answered at backup time and again after a restore. The
#: drill compares row count and an md5 of the answer. Keys are names, values one SELECT each.
SHOP_APP_QUERIES: dict[str, str] = {
    "product_search_by_name": (
        "SELECT p.id, p.sku, p.name, p.price_cents FROM products p "
        "JOIN tenants t ON t.id = p.tenant_id "
        "WHERE t.slug = (SELECT slug FROM tenants ORDER BY id LIMIT 1) "
        "AND p.name ILIKE '%widget%' ORDER BY p.name, p.id LIMIT 50"
    ),
    "sales_report_by_tenant_day": (
        "SELECT t.slug, date_trunc('day', o.created_at) AS day, count(*) AS orders, "
        "sum(o.quantity * o.unit_price_cents) AS revenue_cents "
        "FROM orders o JOIN tenants t ON t.id = o.tenant_id "
        "WHERE o.status IN ('paid', 'shipped') GROUP BY t.slug, day ORDER BY t.slug, day"
    ),
    "user_lookup_for_login": (
        "SELECT u.id, u.username, t.slug FROM users u JOIN tenants t ON t.id = u.tenant_id "
        "WHERE u.username = 'alice' ORDER BY t.slug"
    ),
}


#: The demo shop API (the same as :data:`DEMO_API_URL`), the load tests' default target.
DEMO_BASE_URL = DEMO_API_URL


K6_DEMO_SCRIPT = """\
// Built-in opslib k6 scenario for the demo shop API (through nginx: BASE_URL=.../api).
import http from 'k6/http';
import { check, sleep } from 'k6';

const BASE = __ENV.BASE_URL;
const TENANT = __ENV.SHOP_TENANT || 'acme';
const USER = __ENV.SHOP_USER || 'alice';
const PASSWORD = __ENV.SHOP_PASSWORD || 'demo';
const TERMS = ['lamp', 'widget', 'chair', 'desk', 'gadget', 'red', 'pro'];
let token = '';

function login() {
  const res = http.post(`${BASE}/login`,
    JSON.stringify({ tenant: TENANT, username: USER, password: PASSWORD }),
    { headers: { 'Content-Type': 'application/json' }, tags: { name: 'login' } });
  check(res, { 'login 200': (r) => r.status === 200 });
  token = res.status === 200 ? res.json('token') : '';
}

export default function () {
  if (!token || __ITER % 20 === 0) {
    login();
  }
  const params = (name) => ({
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    tags: { name: name },
  });
  const term = TERMS[Math.floor(Math.random() * TERMS.length)];
  const search = http.get(`${BASE}/products?q=${term}&limit=20`, params('product_search'));
  check(search, { 'search 200': (r) => r.status === 200 });
  let productId = 1;
  if (search.status === 200) {
    const items = search.json('items') || [];
    if (items.length) {
      productId = items[Math.floor(Math.random() * items.length)].id;
    }
  }
  const order = http.post(`${BASE}/orders`, JSON.stringify({ product_id: productId, quantity: 1 }),
    params('create_order'));
  check(order, { 'order 201': (r) => r.status === 201 });
  http.get(`${BASE}/reports/sales?days=30`, params('sales_report'));
  http.get(`${BASE}/health`, { tags: { name: 'health' } });
  sleep(0.1);
}
"""


LOCUST_DEMO_FILE = """\
# Built-in opslib Locust scenario for the demo shop API (host: http://127.0.0.1:8080/api).
import os
import random

from locust import HttpUser, between, task

TERMS = ["lamp", "widget", "chair", "desk", "gadget", "red", "pro"]


class ShopUser(HttpUser):
    wait_time = between(0.05, 0.15)

    def on_start(self):
        self.login()

    def login(self):
        res = self.client.post("/login", json={
            "tenant": os.environ.get("SHOP_TENANT", "acme"),
            "username": os.environ.get("SHOP_USER", "alice"),
            "password": os.environ.get("SHOP_PASSWORD", "demo")}, name="login")
        token = res.json().get("token", "") if res.status_code == 200 else ""
        self.client.headers["Authorization"] = f"Bearer {token}"

    @task
    def flow(self):
        res = self.client.get(f"/products?q={random.choice(TERMS)}&limit=20",
                              name="product_search")
        items = res.json().get("items", []) if res.status_code == 200 else []
        product_id = random.choice(items)["id"] if items else 1
        self.client.post("/orders", json={"product_id": product_id, "quantity": 1},
                         name="create_order")
        self.client.get("/reports/sales?days=30", name="sales_report")
        self.client.get("/health", name="health")
"""


#: The demo's compose project and services (``demo/compose.yaml``).
DEMO_PROJECT = "shop"
DEMO_SERVICES = frozenset({"db", "cache", "api", "web"})


def is_demo(stack: Stack) -> bool:
    """Whether a discovered project is the demo stack: its project name and its four services.

    Args:
        stack: From :func:`opslib.engine.discover`.
    """
    return stack.project == DEMO_PROJECT and set(stack.names) == DEMO_SERVICES


def require_demo(stack: Stack, demo_data: bool, *, what: str, param: str = "demo_data") -> bool:
    """Check that ``demo_data`` is only asked for on the demo stack.

    The demo's sample data (its application queries, tenant logins, k6 scenario, example
    reports) describe the demo only: a report of another project must never show them.

    Args:
        stack: The discovered target.
        demo_data: The runbook's ``demo_data`` parameter.
        what: What the sample data is, for the error message.
        param: The runbook parameter that asked for it.

    Returns:
        ``demo_data``.

    Raises:
        BadParameter: ``demo_data`` is true for a project that is not the demo.
    """
    if demo_data and not is_demo(stack):
        raise BadParameter(param, demo_data,
                           f"false for project {stack.project!r}: the demo's {what} only "
                           f"describe the demo stack (project {DEMO_PROJECT!r})")
    return bool(demo_data)


def app_queries(stack: Stack, demo_data: bool) -> dict[str, str]:
    """The application queries the restore drill compares: the shop's on the demo with
    ``demo_data``, none otherwise."""
    return dict(SHOP_APP_QUERIES) if require_demo(stack, demo_data,
                                                  what="application queries") else {}
