"""shop api: a small multi-tenant JSON API (Flask on gunicorn, PostgreSQL, Redis).

Demo code for opslib's runbooks. Some problems are PLANTED on purpose and must stay:
the full DATABASE_URL (with its password) is logged at startup, and a failed login logs the
Authorization header it received.

Endpoints: GET /health, GET /ready, GET /metrics, POST /login, GET /products?q=&limit=,
POST /orders, GET /orders/<id>, GET /reports/sales?days=.
"""

import datetime
import decimal
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
import traceback
import uuid
from contextlib import contextmanager
from functools import wraps

import psycopg2
import psycopg2.extras
import psycopg2.pool
import redis

from jsonlog import JsonFormatter
from flask import Flask, g, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from werkzeug.exceptions import HTTPException

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://shop@localhost:5432/shop")
REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
SECRET_KEY = os.environ.get("API_SECRET_KEY", "dev-only-secret")
TOKEN_TTL = 3600
SEARCH_TTL = int(os.environ.get("SEARCH_CACHE_TTL", "30"))
DB_POOL_MAX = int(os.environ.get("DB_POOL_MAX", "8"))

# --- logging: one JSON object per line on stdout ------------------------------------------

log = logging.getLogger("shop.api")
log.setLevel(logging.INFO)
log.propagate = False
_handler = logging.StreamHandler(sys.stdout)
_handler.setFormatter(JsonFormatter())
log.addHandler(_handler)

# --- metrics -------------------------------------------------------------------------------

REQUESTS = Counter("http_requests_total", "HTTP requests handled",
                   ["endpoint", "method", "status"])
LATENCY = Histogram("http_request_duration_seconds", "HTTP request latency",
                    ["endpoint", "method"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
SEARCH_CACHE = Counter("product_search_cache_total", "Product search cache lookups", ["result"])
LOGINS = Counter("logins_total", "Login attempts", ["result"])
ORDERS = Counter("orders_created_total", "Orders created", ["tenant"])

# --- backends ------------------------------------------------------------------------------

cache = redis.Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2,
                             health_check_interval=30, decode_responses=True)

_pool = None
_pool_pid = None
_pool_lock = threading.Lock()


def _get_pool():
    """One connection pool per worker process (created lazily, after gunicorn's fork)."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        with _pool_lock:
            if _pool is None or _pool_pid != os.getpid():
                _pool = psycopg2.pool.ThreadedConnectionPool(
                    0, DB_POOL_MAX, DATABASE_URL, connect_timeout=3,
                    application_name="shop-api", options="-c statement_timeout=15000")
                _pool_pid = os.getpid()
    return _pool


@contextmanager
def db():
    """A cursor in a transaction: commit on success, rollback on error."""
    pool = _get_pool()
    conn = pool.getconn()
    broken = False
    try:
        with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            yield cur
    except (psycopg2.OperationalError, psycopg2.InterfaceError):
        broken = True
        raise
    finally:
        pool.putconn(conn, close=broken or bool(conn.closed))


def query(sql, params=(), one=False):
    """Run a read query; retried once on a dropped connection (e.g. after a db restart)."""
    for attempt in (1, 2):
        try:
            with db() as cur:
                cur.execute(sql, params)
                return cur.fetchone() if one else cur.fetchall()
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            if attempt == 2:
                raise
    return None


def _plain(value):
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def row_json(row):
    return {k: _plain(v) for k, v in dict(row).items()}


# --- app -----------------------------------------------------------------------------------

app = Flask(__name__)
app.config["SECRET_KEY"] = SECRET_KEY
app.json.sort_keys = False

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def error(status, message, **extra):
    return jsonify(error=message, **extra), status


@app.before_request
def _start_request():
    g.t0 = time.perf_counter()
    rid = request.headers.get("X-Request-ID", "")
    g.request_id = rid if _REQUEST_ID_RE.match(rid) else uuid.uuid4().hex
    g.tenant = None
    g.log_level = None
    g.log_msg = None
    g.log_fields = {}


@app.after_request
def _finish_request(resp):
    started = getattr(g, "t0", None)
    latency = time.perf_counter() - started if started is not None else 0.0
    endpoint = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
    status = resp.status_code
    REQUESTS.labels(endpoint, request.method, str(status)).inc()
    LATENCY.labels(endpoint, request.method).observe(latency)
    resp.headers["X-Request-ID"] = getattr(g, "request_id", "")
    level = getattr(g, "log_level", None) or (
        logging.ERROR if status >= 500 else logging.INFO)
    msg = getattr(g, "log_msg", None) or f"{request.method} {request.path} {status}"
    fields = {"query": request.query_string.decode("utf-8", "replace") or None,
              "client": request.headers.get("X-Real-IP") or request.remote_addr,
              "user_agent": request.headers.get("User-Agent")}
    fields.update(getattr(g, "log_fields", None) or {})
    log.log(level, msg, extra={
        "request_id": getattr(g, "request_id", None), "method": request.method,
        "path": request.path, "status": status, "latency_ms": round(latency * 1000, 2),
        "tenant": getattr(g, "tenant", None), "fields": fields})
    return resp


@app.errorhandler(HTTPException)
def _http_error(exc):
    return error(exc.code or 500, exc.description or exc.name)


@app.errorhandler(psycopg2.OperationalError)
def _db_down(exc):
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    g.log_msg = f"database unavailable: {detail}"
    return error(503, "database unavailable")


@app.errorhandler(redis.RedisError)
def _cache_down(exc):
    g.log_msg = f"cache unavailable: {type(exc).__name__}: {exc}"
    return error(503, "cache unavailable")


@app.errorhandler(Exception)
def _unhandled(exc):
    g.log_msg = f"unhandled error: {type(exc).__name__}: {exc}"
    g.log_fields = {**(getattr(g, "log_fields", None) or {}),
                    "exc": "".join(traceback.format_exception(exc))}
    return error(500, "internal server error")


# --- auth ----------------------------------------------------------------------------------

def _session_key(token):
    return "session:" + hmac.new(SECRET_KEY.encode(), token.encode(), hashlib.sha256).hexdigest()


def auth_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return error(401, "missing bearer token")
        raw = cache.get(_session_key(token))
        if not raw:
            return error(401, "invalid or expired token")
        g.session = json.loads(raw)
        g.tenant = g.session["tenant"]
        return view(*args, **kwargs)
    return wrapper


def _int_arg(name, default, low, high):
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if low <= value <= high else None


# --- endpoints -----------------------------------------------------------------------------

@app.get("/health")
def health():
    """Liveness: the process is up and serving."""
    return jsonify(status="ok")


@app.get("/ready")
def ready():
    """Readiness: PostgreSQL and Redis both answer; 503 names the failing dependency."""
    checks, failing = {}, []
    try:
        conn = psycopg2.connect(DATABASE_URL, connect_timeout=2, application_name="shop-ready")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()
        finally:
            conn.close()
        checks["db"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        checks["db"] = f"error: {type(exc).__name__}: {first}"
        failing.append("db")
    try:
        cache.ping()
        checks["cache"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["cache"] = f"error: {type(exc).__name__}: {exc}"
        failing.append("cache")
    if failing:
        g.log_msg = "not ready: " + ", ".join(failing) + " failing"
        return jsonify(status="not ready", failing=failing, checks=checks), 503
    return jsonify(status="ready", checks=checks)


@app.get("/metrics")
def metrics():
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}


@app.post("/login")
def login():
    body = request.get_json(silent=True) or {}
    tenant, username, password = (body.get(k) for k in ("tenant", "username", "password"))
    if not all(isinstance(v, str) and v for v in (tenant, username, password)):
        return error(400, "tenant, username and password are required")
    row = query(
        "SELECT u.id AS user_id, u.username, t.id AS tenant_id, t.slug AS tenant "
        "FROM users u JOIN tenants t ON t.id = u.tenant_id "
        "WHERE t.slug = %s AND u.username = %s AND u.password_hash = crypt(%s, u.password_hash)",
        (tenant, username, password), one=True)
    if row is None:
        LOGINS.labels("failure").inc()
        g.log_level = logging.WARNING
        g.log_msg = f"login failed for {tenant}/{username}"
        # PLANTED: the credentials header is written to the log as received.
        g.log_fields = {"authorization": request.headers.get("Authorization")}
        return error(401, "invalid credentials")
    session = row_json(row)
    token = secrets.token_urlsafe(32)
    cache.setex(_session_key(token), TOKEN_TTL, json.dumps(session))
    LOGINS.labels("success").inc()
    g.tenant = session["tenant"]
    g.log_msg = f"login ok for {tenant}/{username}"
    return jsonify(token=token, token_type="Bearer", expires_in=TOKEN_TTL,
                   tenant=session["tenant"], username=session["username"])


@app.get("/products")
@auth_required
def products():
    q = request.args.get("q", "").strip()[:100]
    limit = _int_arg("limit", 20, 1, 100)
    if limit is None:
        return error(400, "limit must be an integer between 1 and 100")
    tenant_id = g.session["tenant_id"]
    key = f"search:{tenant_id}:{limit}:{hashlib.sha1(q.encode()).hexdigest()}"
    try:
        hit = cache.get(key)
    except redis.RedisError:
        hit = None
    if hit is not None:
        SEARCH_CACHE.labels("hit").inc()
        items = json.loads(hit)
        return jsonify(q=q, count=len(items), cached=True, items=items)
    SEARCH_CACHE.labels("miss").inc()
    pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = query(
        "SELECT id, sku, name, price_cents, stock FROM products "
        "WHERE tenant_id = %s AND name ILIKE %s ORDER BY name, id LIMIT %s",
        (tenant_id, pattern, limit))
    items = [row_json(r) for r in rows]
    try:
        cache.setex(key, SEARCH_TTL, json.dumps(items))
    except redis.RedisError:
        pass
    return jsonify(q=q, count=len(items), cached=False, items=items)


@app.post("/orders")
@auth_required
def create_order():
    body = request.get_json(silent=True) or {}
    product_id, quantity = body.get("product_id"), body.get("quantity", 1)
    if not isinstance(product_id, int) or isinstance(product_id, bool) or product_id < 1:
        return error(400, "product_id must be a positive integer")
    if not isinstance(quantity, int) or isinstance(quantity, bool) or not 1 <= quantity <= 1000:
        return error(400, "quantity must be an integer between 1 and 1000")
    sess = g.session
    with db() as cur:
        cur.execute("SELECT id, price_cents FROM products WHERE id = %s AND tenant_id = %s",
                    (product_id, sess["tenant_id"]))
        product = cur.fetchone()
        if product is None:
            return error(404, "product not found")
        cur.execute(
            "INSERT INTO orders (tenant_id, user_id, product_id, quantity, unit_price_cents) "
            "VALUES (%s, %s, %s, %s, %s) "
            "RETURNING id, product_id, quantity, unit_price_cents, "
            "quantity * unit_price_cents AS total_cents, status, created_at",
            (sess["tenant_id"], sess["user_id"], product_id, quantity, product["price_cents"]))
        order = row_json(cur.fetchone())
    ORDERS.labels(sess["tenant"]).inc()
    g.log_msg = f"order {order['id']} created"
    return jsonify(order), 201


@app.get("/orders/<int:order_id>")
@auth_required
def get_order(order_id):
    row = query(
        "SELECT o.id, o.product_id, p.sku, p.name AS product_name, o.quantity, "
        "o.unit_price_cents, o.quantity * o.unit_price_cents AS total_cents, o.status, "
        "u.username, o.created_at "
        "FROM orders o JOIN products p ON p.id = o.product_id JOIN users u ON u.id = o.user_id "
        "WHERE o.id = %s AND o.tenant_id = %s",
        (order_id, g.session["tenant_id"]), one=True)
    if row is None:
        return error(404, "order not found")
    return jsonify(row_json(row))


@app.get("/reports/sales")
@auth_required
def sales_report():
    days = _int_arg("days", 30, 1, 366)
    if days is None:
        return error(400, "days must be an integer between 1 and 366")
    rows = query(
        "SELECT (date_trunc('day', created_at AT TIME ZONE 'UTC'))::date AS day, "
        "count(*) AS orders, sum(quantity)::bigint AS units, "
        "sum(quantity::bigint * unit_price_cents)::bigint AS revenue_cents "
        "FROM orders WHERE tenant_id = %s AND status <> 'refunded' "
        "AND created_at >= now() - make_interval(days => %s) "
        "GROUP BY 1 ORDER BY 1",
        (g.session["tenant_id"], days))
    out = [row_json(r) for r in rows]
    totals = {"orders": sum(r["orders"] for r in out), "units": sum(r["units"] for r in out),
              "revenue_cents": sum(r["revenue_cents"] for r in out)}
    return jsonify(tenant=g.tenant, days_requested=days, days=out, totals=totals)


# PLANTED: the full DSN, password included, goes to the log once at startup.
log.info(f"api starting: database={DATABASE_URL} redis={REDIS_URL} pid={os.getpid()}")
