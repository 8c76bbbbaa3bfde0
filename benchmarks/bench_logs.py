"""Benchmark opslib's json-file log analysis against polars' NDJSON reader and ``wc -l``.

Generates Docker json-file logs in /tmp for four services (api: JSON app lines like demo/api,
web: nginx JSON access lines like demo/web, db: PostgreSQL text, cache: Redis text; with some
>16 KB lines split into partial entries and stderr lines; no malformed lines, because polars'
NDJSON reader stops at the first one), escaped as dockerd escapes them (``<``, ``>`` and ``&`` as
``\u003c``, ``\u003e``, ``\u0026``: query strings with ``&`` in web and api lines, some api
messages with ``<...>``; the share of such lines is printed), then, for each size, times in the
same run:

* ``wc -l`` over the files (the I/O floor),
* the reference: ``polars.scan_ndjson`` per file with the same per-service / per-minute
  aggregation (lines, bytes, errors from the level field, HTTP status or keywords),
* ``opslib.logs.parse.analyse_files`` (which also joins partial lines, accounts malformed lines,
  classifies levels and status classes and groups masked messages) with its native scanner
  (``opslib/logs/_logscan.c``), and again without it (``OPSLIB_NATIVE=0``: the numpy and polars
  regex path of machines without a C compiler),

each in its own subprocess so its peak RSS is measured. Prints MB/s, the ratio opslib/reference
and opslib's peak RSS; deletes the generated files at the end.

Usage: ``.venv/bin/python benchmarks/bench_logs.py [--sizes 0.25,1] [--repeat 2] [--keep]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARES = {"api": 0.42, "web": 0.38, "db": 0.12, "cache": 0.08}
PATHS = ["/products", "/orders", "/login", "/reports/sales", "/health", "/ready", "/metrics"]
TENANTS = ["acme", "globex", "initech"]
USERS = ["alice", "bob", "carol", "dave", "erin"]


def _ts(base: float, i: int, step_ms: float) -> str:
    t = base + i * step_ms / 1000.0
    sec = int(t)
    ns = int((t - sec) * 1e9) + (i * 7919) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{ns:09d}Z"


def _envelope(log: str, stream: str, ts: str) -> str:
    """A json-file entry as dockerd writes it (Go's HTML-safe JSON escapes < > &)."""
    esc = (log.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
           .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))
    return f'{{"log":"{esc}","stream":"{stream}","time":"{ts}"}}\n'


def _api_line(rnd: random.Random, ts: str) -> str:
    path = rnd.choice(PATHS)
    r = rnd.random()
    status = 200 if r < 0.9 else (404 if r < 0.95 else (401 if r < 0.98 else 500))
    level = "error" if status >= 500 else ("warning" if status == 401 else "info")
    if path == "/orders" and status == 200 and rnd.random() < 0.3:
        msg = f"order {rnd.randint(1, 10**6)} created"
    elif status == 401:
        msg = f"login failed for {rnd.choice(TENANTS)}/{rnd.choice(USERS)}"
    elif status == 500:
        msg = (f"database unavailable: connection to server at \\\"db\\\" "
               f"(172.18.0.{rnd.randint(2, 9)}), port 5432 failed")
    elif r < 0.05:  # a query string: & in the URL
        path = f"/products?q=item{rnd.randint(1, 500)}&page={rnd.randint(1, 9)}"
        msg = f"GET {path} {status}"
    elif r < 0.06:
        msg = f"rejected <img src=x onerror=alert({rnd.randint(1, 99)})> in review & comment"
    else:
        msg = f"GET {path} {status}"
    rid = f"{rnd.getrandbits(128):032x}"
    return (f'{{"time": "{ts[:23]}Z", "level": "{level}", "msg": "{msg}", "request_id": "{rid}", '
            f'"method": "GET", "path": "{path}", "status": {status}, '
            f'"latency_ms": {rnd.random() * 80:.2f}, "tenant": "{rnd.choice(TENANTS)}", '
            f'"query": null, "client": "172.18.0.{rnd.randint(2, 250)}", '
            f'"user_agent": "k6/0.50.0 (https://k6.io/)"}}\n')


def _web_line(rnd: random.Random, ts: str) -> str:
    path = rnd.choice(PATHS)
    uri = f"/api{path}" + (f"?q=item{rnd.randint(1, 500)}&limit=20" if path == "/products" else "")
    r = rnd.random()
    status = 200 if r < 0.88 else (304 if r < 0.93 else (404 if r < 0.98 else 502))
    rid = f"{rnd.getrandbits(128):032x}"
    return (f'{{"time":"{ts[:19]}+00:00","remote_addr":"172.18.0.1","request_method":"GET",'
            f'"request_uri":"{uri}","server_protocol":"HTTP/1.1","status":{status},'
            f'"body_bytes_sent":{rnd.randint(20, 9000)},"request_time":{rnd.random():.3f},'
            f'"upstream_response_time":"{rnd.random():.3f}","upstream_status":"{status}",'
            f'"http_user_agent":"k6/0.50.0 (https://k6.io/)","http_referer":"",'
            f'"request_id":"{rid}"}}\n')


def _db_line(rnd: random.Random, ts: str, i: int) -> str:
    r = rnd.random()
    t = ts[:10] + " " + ts[11:23] + " UTC"
    if r < 0.8:
        return (f"{t} [{rnd.randint(60, 900)}] LOG:  checkpoint complete: "
                f"wrote {rnd.randint(1, 900)} buffers\n")
    if r < 0.95:
        return (f"{t} [{rnd.randint(60, 900)}] ERROR:  duplicate key value violates unique "
                f'constraint "orders_pkey"\n')
    return f"{t} [{rnd.randint(60, 900)}] WARNING:  there is no transaction in progress\n"


def _cache_line(rnd: random.Random, ts: str, i: int) -> str:
    stamp = f"1:M {i % 28 + 1:02d} May 2024 12:{i % 60:02d}:{i % 60:02d}.{i % 1000:03d}"
    if rnd.random() < 0.9:
        return f"{stamp} * 100 changes in 300 seconds. Saving...\n"
    return f"{stamp} # WARNING Memory overcommit must be enabled!\n"


def generate(folder: Path, total_bytes: int, seed: int = 7) -> tuple[dict[str, Path], float]:
    """Write one json-file log per service, ~total_bytes in all; return service -> path, and
    the share of entries with \\u003c, \\u003e or \\u0026 escapes."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    escaped = lines = 0
    base = time.mktime((2024, 5, 1, 0, 0, 0, 0, 0, 0))
    for service, share in SHARES.items():
        rnd = random.Random(f"{seed}-{service}")
        path = folder / f"{service}-json.log"
        target = int(total_bytes * share)
        size, i = 0, 0
        with open(path, "w", encoding="utf-8") as fh:
            buf: list[str] = []
            while size < target:
                ts = _ts(base, i, 4.0)
                if service == "api":
                    log, stream = _api_line(rnd, ts), "stdout"
                elif service == "web":
                    log, stream = _web_line(rnd, ts), "stdout"
                elif service == "db":
                    log, stream = _db_line(rnd, ts, i), "stderr"
                else:
                    log, stream = _cache_line(rnd, ts, i), "stdout"
                if i % 50_000 == 49_999:  # a >16 KB line, split like Docker does
                    big = json.dumps({"time": ts, "level": "error", "msg": "unhandled error",
                                      "exc": "Traceback " + "x" * 40_000}) + "\n"
                    for k in range(0, len(big), 16_384):
                        buf.append(_envelope(big[k:k + 16_384], stream, ts))
                else:
                    buf.append(_envelope(log, stream, ts))
                size += len(buf[-1])
                escaped += "\\u00" in buf[-1]
                lines += 1
                i += 1
                if len(buf) >= 20_000:
                    fh.write("".join(buf))
                    buf.clear()
            fh.write("".join(buf))
        out[service] = path
    return out, escaped / max(lines, 1)


REFERENCE = r'''
import sys, json, polars as pl
from opslib.logs.parse import ENVELOPE_SCHEMA
files = json.loads(sys.argv[1])
log = pl.col("log")
lv = log.str.extract(r'"level" ?: ?"([A-Za-z]+)"', 1)
st = log.str.extract(r'"status" ?: ?"?([1-5][0-9][0-9])', 1)
kw = log.str.contains(r"(?i)\b(?:error|fatal|panic|critical|exception)\b")
err = pl.when(lv.is_not_null()).then(lv == "error").when(st.is_not_null()).then(st >= "500") \
    .otherwise(kw)
out = []
for service, path in files:
    q = (pl.scan_ndjson(path, schema=ENVELOPE_SCHEMA, ignore_errors=True)
         .group_by(minute=pl.col("time").str.slice(0, 16))
         .agg(lines=pl.len(), bytes=log.str.len_bytes().sum(), errors=err.sum()))
    out.append(q.collect().with_columns(service=pl.lit(service)))
res = pl.concat(out)
print(json.dumps({"lines": int(res["lines"].sum()), "errors": int(res["errors"].sum())}))
'''

OPSLIB = r'''
import sys, json
from opslib.logs.parse import analyse_files
files = json.loads(sys.argv[1])
a = analyse_files([(s, p) for s, p in files])
print(json.dumps({"lines": a.total_lines, "errors": int(a.volume["errors"].sum()),
                  "malformed": a.malformed_count,
                  "partial": int(a.files["partial_entries"].sum())}))
'''


def _run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float, str]:
    """Run a command; return (wall seconds, CPU seconds, peak RSS in MB, stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(proc.pid, 0)  # outputs are a few bytes: no pipe can fill up
    elapsed = time.perf_counter() - t0
    out = proc.stdout.read() if proc.stdout else ""
    err = proc.stderr.read() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[:3]} failed:\n{err[-3000:]}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="0.25,1", help="GB of logs to generate, comma-separated")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each tool (best is kept)")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    args = ap.parse_args(argv)
    py = sys.executable
    scanner = subprocess.run([py, "-m", "opslib.logs._native"], capture_output=True, text=True,
                             check=True).stdout.strip()
    print(f"# opslib {scanner}")
    if "native (" not in scanner:
        print("# (no native scanner: both opslib rows run the regex path)")
    root = Path(tempfile.mkdtemp(prefix="opslib-bench-logs-", dir="/tmp"))
    print(f"{'size':>6} {'tool':<10} {'seconds':>8} {'MB/s':>8} {'CPU s':>7} {'MB/CPU-s':>9} "
          f"{'peak RSS MB':>12}  result")
    try:
        for gb in (float(x) for x in args.sizes.split(",")):
            t0 = time.perf_counter()
            files, share = generate(root / f"{gb:g}GB", int(gb * 1e9))
            total = sum(p.stat().st_size for p in files.values())
            print(f"# generated {total / 1e6:.0f} MB in {time.perf_counter() - t0:.0f} s "
                  f"({', '.join(f'{s}={p.stat().st_size / 1e6:.0f}MB' for s, p in files.items())}"
                  f"); {share:.1%} of entries hold \\u003c, \\u003e or \\u0026 escapes")
            spec = json.dumps([[s, str(p)] for s, p in files.items()])
            cmds = {
                "wc -l": ["wc", "-l", *map(str, files.values())],
                "reference": [py, "-c", REFERENCE, spec],
                "opslib": [py, "-c", OPSLIB, spec],
                "no C": [py, "-c", OPSLIB, spec],
            }
            envs = {"no C": {"OPSLIB_NATIVE": "0"}}
            best: dict[str, tuple[float, float, float, str]] = {}
            peak: dict[str, float] = {}
            for _ in range(args.repeat):  # interleaved, so all tools see the same machine load
                for name, cmd in cmds.items():
                    res = _run(cmd, envs.get(name))
                    peak[name] = max(peak.get(name, 0.0), res[2])
                    if name not in best or res[0] < best[name][0]:
                        best[name] = res
            for name, (secs, cpu, _, out) in best.items():
                shown = out.splitlines()[-1] if name == "wc -l" else out
                print(f"{gb:>5g}G {name:<10} {secs:>8.2f} {total / 1e6 / secs:>8.0f} "
                      f"{cpu:>7.2f} {total / 1e6 / max(cpu, 1e-9):>9.0f} {peak[name]:>12.0f}  "
                      f"{shown}")
            ratio = best["reference"][0] / best["opslib"][0]
            cpu_ratio = best["reference"][1] / best["opslib"][1]
            print(f"{gb:>5g}G opslib/reference throughput ratio = {ratio:.2f} "
                  f"(goal >= 1.0 at 1 GB; per CPU-second {cpu_ratio:.2f}); "
                  f"opslib peak RSS = {peak['opslib']:.0f} MB "
                  f"(goal < 300); without the C scanner: ratio "
                  f"{best['reference'][0] / best['no C'][0]:.2f}, peak RSS "
                  f"{peak['no C']:.0f} MB")
            if not args.keep:
                shutil.rmtree(root / f"{gb:g}GB", ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"# self peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
