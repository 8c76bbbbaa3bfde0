#!/usr/bin/env python3
"""Build, start, seed and check the demo Docker Compose stack ("shop") the runbooks operate on.

Usage::

    python scripts/demo_stack.py up        # build + start + wait healthy + seed + traffic
    python scripts/demo_stack.py status    # services and health; non-zero unless all healthy
    python scripts/demo_stack.py seed      # load the demo data (idempotent)
    python scripts/demo_stack.py down [--volumes]

``up`` is idempotent and fast when the stack is already up and seeded (compose's build cache,
the seed skips itself). On success it touches ``/tmp/shop-ready`` (removed while the stack
is not healthy, on failure and by ``down``). Standard library only.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "demo" / "compose.yaml"
PROJECT = "shop"
SERVICES = ("db", "cache", "api", "web")
READY_FILE = Path("/tmp/shop-ready")
LOCK_FILE = Path("/tmp/shop-demo-stack.lock")
WAIT_TIMEOUT = 600  # seconds for all services to become healthy
UP_TIMEOUT = 1800  # seconds for the whole `compose up` (build included)
WEB = "http://127.0.0.1:8080"
API = "http://127.0.0.1:8000"
SHARE = "/usr/local/share/shop"  # schema.sql and seed.sql inside the db image
USER_AGENT = "opslib-demo-traffic/1.0"

# Failures of `compose up` that a `down` (volumes kept) and one more `up` can fix: leftovers of
# earlier runs such as containers attached to a removed network or name conflicts.
RETRYABLE = (
    "network",
    "no such container",
    "conflict",
    "already in use",
    "not found",
    "is not running",
    "marked for removal",
)


class StackError(Exception):
    """The stack could not be brought to the requested state."""


def log(msg: str) -> None:
    print(f"demo_stack: {msg}", flush=True)


def compose_cmd(*args: str) -> list[str]:
    return ["docker", "compose", "-f", str(COMPOSE_FILE), "-p", PROJECT, *args]


def run(
    cmd: Sequence[str], *, timeout: float = 120, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output; raise StackError when it fails (with ``check``)."""
    try:
        proc = subprocess.run(
            list(cmd),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}") from exc
    except FileNotFoundError as exc:
        raise StackError(f"command not found: {cmd[0]}") from exc
    if check and proc.returncode != 0:
        out = (proc.stderr.strip() or proc.stdout.strip())[-3000:]
        raise StackError(f"`{' '.join(cmd)}` exited {proc.returncode}:\n{out}")
    return proc


def stream(cmd: Sequence[str], *, timeout: float) -> tuple[int, list[str]]:
    """Run a command with its output passed through line by line; keep the last lines."""
    tail: collections.deque[str] = collections.deque(maxlen=60)
    deadline = time.monotonic() + timeout
    proc = subprocess.Popen(
        list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, cwd=ROOT
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            tail.append(line.rstrip("\n"))
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(list(cmd), timeout)
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.wait()
        raise StackError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}") from exc
    return rc, list(tail)


@contextlib.contextmanager
def stack_lock() -> Iterator[None]:
    """Serialise up/seed/down of concurrent callers (tests, make demo, other engineers)."""
    with LOCK_FILE.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"another demo_stack run holds {LOCK_FILE}; waiting for it")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def preflight() -> None:
    if shutil.which("docker") is None:
        raise StackError("the docker CLI is not installed (run scripts/docker-engine.sh)")
    if not COMPOSE_FILE.is_file():
        raise StackError(f"missing {COMPOSE_FILE}")
    proc = run(["docker", "compose", "version"], check=False, timeout=30)
    if proc.returncode != 0:
        raise StackError(
            "`docker compose` (v2 plugin) does not work: "
            + (proc.stderr.strip() or proc.stdout.strip())
        )
    proc = run(["docker", "info", "--format", "{{.ServerVersion}}"], check=False, timeout=30)
    if proc.returncode != 0:
        raise StackError(
            "no Docker engine answers (run scripts/docker-engine.sh): "
            + (proc.stderr.strip() or proc.stdout.strip())[-500:]
        )


# --- status --------------------------------------------------------------------------------


def service_rows() -> dict[str, dict[str, Any]]:
    """`compose ps -a` as {service: row} (State, Health, Image, Publishers...)."""
    proc = run(compose_cmd("ps", "-a", "--format", "json"), timeout=60)
    text = proc.stdout.strip()
    if not text:
        return {}
    if text.startswith("["):
        items = json.loads(text)
    else:
        items = [json.loads(line) for line in text.splitlines() if line.strip()]
    rows: dict[str, dict[str, Any]] = {}
    for item in items:
        rows.setdefault(item.get("Service", ""), item)
    return rows


def describe(rows: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
    """One line per expected service, and the services that are not running + healthy."""
    lines, bad = [], []
    for svc in SERVICES:
        row = rows.get(svc)
        if row is None:
            lines.append(f"  {svc:<6} missing")
            bad.append(svc)
            continue
        state, health = row.get("State", "?"), row.get("Health", "") or "no healthcheck"
        ports = ", ".join(
            f"{p.get('URL')}:{p.get('PublishedPort')}->{p.get('TargetPort')}"
            for p in row.get("Publishers") or []
            if p.get("PublishedPort")
        )
        lines.append(
            f"  {svc:<6} {state:<9} {health:<10} {row.get('Image', ''):<16} "
            f"{row.get('Name', ''):<14} {ports}"
        )
        if state != "running" or health != "healthy":
            bad.append(svc)
    return lines, bad


def diagnostics(services: Sequence[str]) -> str:
    parts = []
    for svc in services:
        proc = run(compose_cmd("logs", "--no-color", "--tail", "25", svc), check=False, timeout=60)
        parts.append(f"--- last log lines of {svc} ---\n{(proc.stdout + proc.stderr).strip()}")
    return "\n".join(parts)


def cmd_status(_: argparse.Namespace) -> int:
    preflight()
    rows = service_rows()
    lines, bad = describe(rows)
    print(f"project {PROJECT} ({COMPOSE_FILE.relative_to(ROOT)}):")
    print("\n".join(lines))
    if bad:
        print(f"NOT HEALTHY: {', '.join(bad)}", file=sys.stderr)
        return 1
    print("all services healthy")
    return 0


# --- seed ----------------------------------------------------------------------------------

ENSURE_SQL = """\
SELECT format('CREATE ROLE shop LOGIN PASSWORD %L', :'pw')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop') \\gexec
SELECT 'CREATE DATABASE shop OWNER shop'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'shop') \\gexec
\\c shop
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
"""


def db_exec(
    args: Sequence[str],
    *,
    input: str | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    return run(compose_cmd("exec", "-T", "db", *args), input=input, timeout=timeout)


def shop_psql(sql_file: str, *, timeout: float, quiet: bool = False
              ) -> subprocess.CompletedProcess[str]:
    """Run an SQL file in the db container as the shop role (stop at the first error);
    ``quiet`` hides NOTICEs."""
    env = ["env", "PGOPTIONS=-c client_min_messages=warning"] if quiet else []
    return db_exec([*env, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", "shop", "-d", "shop",
                    "-f", sql_file], timeout=timeout)


def seed() -> None:
    """Make sure role, database and schema exist (leftover volumes), then load the data."""
    t0 = time.monotonic()
    rows = service_rows()
    db = rows.get("db")
    if db is None or db.get("State") != "running":
        raise StackError("the db service is not running; run `demo_stack.py up` first")
    # Role, database, extensions, schema: all no-ops on a healthy volume.
    db_exec(
        [
            "sh",
            "-c",
            'psql -X -q -v ON_ERROR_STOP=1 -U postgres -d postgres -v pw="$POSTGRES_PASSWORD"',
        ],
        input=ENSURE_SQL,
        timeout=60,
    )
    shop_psql(f"{SHARE}/schema.sql", timeout=120, quiet=True)
    proc = shop_psql(f"{SHARE}/seed.sql", timeout=600)
    notices = [
        ln.split("NOTICE:", 1)[1].strip() for ln in proc.stderr.splitlines() if "NOTICE:" in ln
    ]
    for n in notices:
        log(n)
    counts = db_exec(
        [
            "psql",
            "-X",
            "-q",
            "-tA",
            "-F",
            " ",
            "-U",
            "shop",
            "-d",
            "shop",
            "-c",
            "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM users), "
            "(SELECT count(*) FROM products), (SELECT count(*) FROM orders)",
        ],
        timeout=60,
    ).stdout.split()
    tenants, users, products, orders = (int(x) for x in counts)
    log(
        f"data: {tenants} tenants, {users} users, {products} products, {orders} orders "
        f"({time.monotonic() - t0:.1f} s)"
    )
    if tenants < 3 or products < 90_000 or orders < 90_000:
        raise StackError(
            "the demo data is incomplete after seeding "
            f"({tenants} tenants, {products} products, {orders} orders)"
        )


def cmd_seed(_: argparse.Namespace) -> int:
    preflight()
    with stack_lock():
        seed()
    return 0


# --- traffic -------------------------------------------------------------------------------

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def http(
    method: str,
    url: str,
    body: Any = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("User-Agent", USER_AGENT)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with _OPENER.open(req, timeout=30) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            status, last = http("GET", url)
            if status == 200:
                return
        except OSError as exc:
            last = exc
        time.sleep(1)
    raise StackError(f"{url} did not answer 200 within {timeout:.0f} s (last: {last})")


def send_traffic() -> None:
    """A few dozen real requests (mostly through nginx) so the logs and metrics have content."""
    t0 = time.monotonic()
    wait_ready(f"{WEB}/api/ready")
    sent = 0
    problems: list[str] = []

    def call(method: str, url: str, expect: int, **kw: Any) -> Any:
        nonlocal sent
        status, body = http(method, url, **kw)
        sent += 1
        if status != expect:
            problems.append(f"{method} {url} -> {status} (expected {expect}): {str(body)[:200]}")
        return body

    call("GET", f"{WEB}/", 200)
    call("GET", f"{WEB}/app.js", 200)
    tokens: dict[str, str] = {}
    for tenant, user in (("acme", "alice"), ("globex", "bob"), ("initech", "carol")):
        body = call(
            "POST",
            f"{WEB}/api/login",
            200,
            body={"tenant": tenant, "username": user, "password": "demo"},
        )
        if isinstance(body, dict) and body.get("token"):
            tokens[tenant] = body["token"]
    if len(tokens) != 3:
        raise StackError("demo logins failed:\n" + "\n".join(problems))
    # A failed login that also carries a bearer token (the api logs that header: planted).
    call(
        "POST",
        f"{WEB}/api/login",
        401,
        token=tokens["acme"],
        body={"tenant": "acme", "username": "bob", "password": "not-the-password"},
    )
    first_product: dict[str, int] = {}
    for tenant, token in tokens.items():
        for q in ("widget", "lamp", "pro", "widget", "silver keyboard", "no-such-thing"):
            body = call(
                "GET", f"{WEB}/api/products?q={urllib.parse.quote(q)}&limit=10", 200, token=token
            )
            items = body.get("items") if isinstance(body, dict) else None
            if items and tenant not in first_product:
                first_product[tenant] = items[0]["id"]
        call("GET", f"{WEB}/api/reports/sales?days=30", 200, token=token)
    order = call(
        "POST",
        f"{WEB}/api/orders",
        201,
        token=tokens["acme"],
        body={"product_id": first_product.get("acme", 1), "quantity": 2},
    )
    if isinstance(order, dict) and "id" in order:
        call("GET", f"{WEB}/api/orders/{order['id']}", 200, token=tokens["acme"])
        # Tenant isolation: globex must not see acme's order, nor order acme's product.
        call("GET", f"{WEB}/api/orders/{order['id']}", 404, token=tokens["globex"])
        call(
            "POST",
            f"{WEB}/api/orders",
            404,
            token=tokens["globex"],
            body={"product_id": order["product_id"], "quantity": 1},
        )
    call("GET", f"{WEB}/api/orders/1", 401)  # no token
    call("GET", f"{WEB}/api/no-such-endpoint", 404)
    call("GET", f"{API}/health", 200)
    call("GET", f"{API}/ready", 200)
    call("GET", f"{API}/products?q=gadget&limit=5", 200, token=tokens["initech"])
    call("GET", f"{API}/metrics", 200)
    if problems:
        raise StackError("unexpected answers from the demo stack:\n" + "\n".join(problems))
    log(
        f"traffic: {sent} requests to {WEB} and {API}, all answered as expected "
        f"({time.monotonic() - t0:.1f} s)"
    )


# --- up / down -----------------------------------------------------------------------------


def compose_up() -> None:
    cmd = compose_cmd(
        "up", "-d", "--build", "--remove-orphans", "--wait", "--wait-timeout", str(WAIT_TIMEOUT)
    )
    for attempt in (1, 2):
        log(f"$ {' '.join(cmd)}")
        rc, tail = stream(cmd, timeout=UP_TIMEOUT)
        if rc == 0:
            return
        text = "\n".join(tail).lower()
        build_failed = "failed to solve" in text or "failed to build" in text
        if attempt == 1 and not build_failed and any(w in text for w in RETRYABLE):
            log(
                "compose up failed on leftovers of an earlier run; "
                "removing the old containers (volumes kept) and trying once more"
            )
            run(compose_cmd("down", "--remove-orphans"), check=False, timeout=300)
            continue
        rows = service_rows()
        lines, bad = describe(rows)
        raise StackError(
            f"`docker compose up` exited {rc}.\n"
            + "\n".join(lines)
            + "\n"
            + diagnostics(bad or list(SERVICES))
        )


def cmd_up(_: argparse.Namespace) -> int:
    t0 = time.monotonic()
    preflight()
    with stack_lock():
        # The ready file stays while an already healthy stack is re-checked (a warm `up` must not
        # make it blink for whoever waits on it); it goes when the stack is not healthy or `up`
        # fails, and comes back when `up` succeeds.
        if describe(service_rows())[1]:
            READY_FILE.unlink(missing_ok=True)
        try:
            compose_up()
            log(f"all services healthy after {time.monotonic() - t0:.1f} s")
            seed()
            send_traffic()
            lines, bad = describe(service_rows())
            print("\n".join(lines), flush=True)
            if bad:
                raise StackError(
                    f"not healthy after start-up: {', '.join(bad)}\n" + diagnostics(bad)
                )
        except BaseException:
            READY_FILE.unlink(missing_ok=True)
            raise
        READY_FILE.touch()
    log(
        f"shop is up in {time.monotonic() - t0:.1f} s: web {WEB}/  api {API}/  "
        f"db 127.0.0.1:15432  cache 127.0.0.1:16379  (ready file {READY_FILE})"
    )
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    preflight()
    with stack_lock():
        READY_FILE.unlink(missing_ok=True)
        cmd = compose_cmd("down", "--remove-orphans")
        if args.volumes:
            cmd.append("--volumes")
        log(f"$ {' '.join(cmd)}")
        rc, _ = stream(cmd, timeout=600)
        if rc != 0:
            raise StackError(f"`docker compose down` exited {rc}")
    log("stack removed" + (" with its volumes" if args.volumes else " (volumes kept)"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="build, start, wait healthy, seed, send some traffic")
    sub.add_parser("status", help="print services and health; non-zero unless all healthy")
    sub.add_parser("seed", help="load the demo data (idempotent)")
    down = sub.add_parser("down", help="stop and remove the stack (volumes kept)")
    down.add_argument("--volumes", action="store_true", help="also remove the named volumes")
    args = parser.parse_args(argv)
    handler = {"up": cmd_up, "status": cmd_status, "seed": cmd_seed, "down": cmd_down}
    os.chdir(ROOT)
    try:
        return handler[args.command](args)
    except StackError as exc:
        print(f"demo_stack: ERROR: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("demo_stack: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
