"""Unit tests of the log analysis and cleanup (opslib.logs.parse, opslib.logs) on generated files.

No Docker engine: json-file logs are written here exactly as Docker's json-file driver writes them
(one JSON object per line, lines longer than 16 KB split into partial entries without a trailing
newline), and cleanup plans are built from hand-made disk reports.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import logcorpus
import numpy as np
import pandas as pd
import polars as pl
import pytest
import yaml

from opslib import logs
from opslib.exceptions import BadParameter, PlanError, ToolMissing, VerificationFailed
from opslib.logs import _native
from opslib.logs import aggregate as lpa
from opslib.logs import archive as logs_archive
from opslib.logs import cleanup as logs_cleanup
from opslib.logs import disk as logs_disk
from opslib.logs import fields as lpf
from opslib.logs import prevention as logs_prevention
from opslib.logs import reader as lpr
from opslib.logs.parse import DockerLogReader, analyse_files, classify, mask_messages
from opslib.redact import MASK

ROOT = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
DSN_PASSWORD = "s3cr3t-dsn-pw"
BASIC = "YWxpY2U6d3JvbmdwYXNz"
BEARER = "tok_9f8e7d6c5b4a3f2e1d0c"


def ts(seconds: float) -> str:
    t = T0 + dt.timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}123Z"


def entries(text: str, stream: str = "stdout", when: float = 0.0) -> list[str]:
    """Encode one logged line the way Docker's json-file driver does (16 KB chunks)."""
    out = []
    for i in range(0, len(text), 16384):
        out.append(json.dumps({"log": text[i:i + 16384], "stream": stream, "time": ts(when)},
                              separators=(",", ":")) + "\n")
    return out


def write_log(path: Path, lines: Iterable[str]) -> Path:
    path.write_text("".join(lines), encoding="utf-8")
    return path


def app_line(level: str, msg: str, status: int | None = None, **extra: object) -> str:
    return json.dumps({"time": "2024-05-01T12:00:00.000Z", "level": level, "msg": msg,
                       "request_id": "a" * 32, "status": status, **extra}) + "\n"


def nginx_line(status: int, uri: str = "/api/products?q=chair&limit=20") -> str:
    return json.dumps({"time": "2024-05-01T12:00:00+00:00", "remote_addr": "172.18.0.1",
                       "request_method": "GET", "request_uri": uri, "status": status,
                       "request_time": 0.012}, separators=(",", ":")) + "\n"


@pytest.fixture(params=["native", "numpy"])
def scanner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the native scanner (built from opslib/logs/_logscan.c) and without it (the
    numpy and polars regex path of machines without a C compiler)."""
    if request.param == "numpy":
        monkeypatch.setattr(_native, "scanner", lambda: None)
    else:
        _require_native()
    return str(request.param)


def _require_native() -> None:
    """Skip without the native scanner (a laptop without a C compiler); fail under CI=true."""
    if _native.scanner() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but the native log scanner cannot be built (is cc installed?)")
        pytest.skip("no C compiler: the native log scanner is not built")


# --- parser ------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_bytes", [4096, 20_000, 4 << 20])
def test_partial_entries_of_a_long_line_are_joined(tmp_path: Path, batch_bytes: int,
                                                   scanner: str) -> None:
    big = "X" * 40_000 + " end\n"  # > 16 KB: Docker writes it as 3 partial entries
    chunks = entries(big, when=1)
    assert len(chunks) == 3 and not json.loads(chunks[0])["log"].endswith("\n")
    lines = [*entries("before\n"), chunks[0], *entries("stderr between\n", "stderr", 1.5),
             chunks[1], chunks[2], *entries("after\n", when=2)]
    path = write_log(tmp_path / "c-json.log", lines)
    reader = DockerLogReader(path, batch_bytes=batch_bytes)
    got = pl.concat(list(reader.batches())).sort("line")
    assert got["log"].to_list() == ["before\n", big, "stderr between\n", "after\n"]
    joined = got.filter(pl.col("log") == big).row(0, named=True)
    assert joined["entries"] == 3 and joined["line"] == 2 and joined["stream"] == "stdout"
    assert joined["nbytes"] == sum(len(c) for c in chunks)
    assert reader.stats.entries == 6 and reader.stats.lines == 4
    assert reader.stats.partial_entries == 2 and reader.stats.malformed == 0
    assert reader.stats.bytes_read == path.stat().st_size


def test_partial_line_at_end_of_file_is_kept(tmp_path: Path) -> None:
    chunk = entries("Y" * 20_000 + "\n")[0]  # only the first 16 KB chunk made it to disk
    path = write_log(tmp_path / "c-json.log", [*entries("ok\n"), chunk])
    reader = DockerLogReader(path, batch_bytes=4096)
    got = pl.concat(list(reader.batches()))
    assert got["log"].to_list() == ["ok\n", "Y" * 16384]
    assert reader.stats.lines == 2 and reader.stats.partial_entries == 1


def test_malformed_lines_are_counted_with_positions_and_never_fatal(tmp_path: Path,
                                                                     scanner: str) -> None:
    good = entries("good 1\n")
    bad = [
        "this is not json\n",
        '{"log":"cut in the midd\n',
        "\n",
        '{"log":"no time field\\n","stream":"stdout"}\n',
        "[1, 2, 3]\n",
    ]
    hole = "\0" * 512 + entries("after the hole\n")[0]
    lines = [*good, *bad, hole, *entries("good 2\n")]
    path = write_log(tmp_path / "c-json.log", lines)
    offsets = [sum(len(x.encode()) for x in lines[:i]) for i in range(len(lines))]
    for batch_bytes in (4096, 1 << 20):
        reader = DockerLogReader(path, batch_bytes=batch_bytes)
        got = pl.concat(list(reader.batches()))
        assert got["log"].to_list() == ["good 1\n", "after the hole\n", "good 2\n"]
        st = reader.stats
        assert st.malformed == 6
        by_line = {m.line: m for m in st.examples}
        assert sorted(by_line) == [2, 3, 4, 5, 6, 7]
        for m in st.examples:
            assert m.offset == offsets[m.line - 1]
        assert by_line[2].reason.startswith("not JSON")
        assert by_line[4].reason == "empty line"
        assert "log" in by_line[5].reason and "time" in by_line[5].reason
        assert "not an object" in by_line[6].reason
        assert by_line[7].reason.startswith("NUL-filled hole") and by_line[7].length == 512
        assert by_line[7].snippet.startswith("\\0×512")


def test_invalid_utf8_and_gzip_rotated_files(tmp_path: Path, scanner: str) -> None:
    raw = b"".join(e.encode() for e in entries("one\n")) + \
        b'{"log":"bad \xff byte\\n","stream":"stdout","time":"2024-05-01T12:00:01Z"}\n'
    gz = tmp_path / "c-json.log.1.gz"
    with gzip.open(gz, "wb") as fh:
        fh.write(raw)
    reader = DockerLogReader(gz)
    got = pl.concat(list(reader.batches()))
    assert got["log"].to_list() == ["one\n", "bad \ufffd byte\n"]
    assert reader.stats.malformed == 0 and reader.stats.bytes_read == len(raw)


def test_non_ascii_text_attrs_and_escapes_are_cut_exactly(tmp_path: Path, scanner: str) -> None:
    text = 'café ünïcödé 日本 "quoted" \\ back\tslash\n'
    lines = [json.dumps({"log": text, "stream": "stderr", "time": "2024-05-01T12:00:00.5Z"},
                        ensure_ascii=False, separators=(",", ":")) + "\n",
             '{"log":"with attrs ü\\n","stream":"stdout","attrs":{"tag":"ä"},'
             '"time":"2024-05-01T12:00:01.123456789Z"}\n',
             *entries("plain\n", when=2)]
    path = write_log(tmp_path / "c-json.log", lines)
    for decode in (True, False):
        reader = DockerLogReader(path, decode=decode)
        got = pl.concat(list(reader.batches()))
        assert got["time"].to_list() == ["2024-05-01T12:00:00.5Z",
                                         "2024-05-01T12:00:01.123456789Z", ts(2)]
        assert got["stream"].to_list() == ["stderr", "stdout", "stdout"]
        expected = [text, "with attrs ü\n", "plain\n"]
        if not decode:
            expected = [json.dumps(t, ensure_ascii=False)[1:-1] for t in expected]
        assert got["log"].to_list() == expected
        assert reader.stats.malformed == 0


def test_oversized_line_without_newline_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                   ) -> None:
    monkeypatch.setattr(lpr, "MAX_LINE_BYTES", 50_000)  # where the reader reads it
    path = tmp_path / "c-json.log"
    path.write_bytes(entries("a\n")[0].encode() + b"\0" * 200_000 + b"\n"
                     + entries("b\n")[0].encode())
    reader = DockerLogReader(path, batch_bytes=8192)
    got = pl.concat(list(reader.batches()))
    assert got["log"].to_list() == ["a\n", "b\n"]
    assert reader.stats.malformed == 1
    assert reader.stats.examples[0].line == 2 and reader.stats.examples[0].length == 200_000


# --- classification, masking, redaction ---------------------------------------------------------

def test_classify_levels_status_classes_and_keywords() -> None:
    df = pl.DataFrame({"log": [
        app_line("info", "GET /products 200", 200),
        app_line("warning", "login failed for acme/bob", 401),
        app_line("error", "unhandled error: boom", 500),
        app_line("CRITICAL", "disk on fire"),
        nginx_line(200), nginx_line(304), nginx_line(404), nginx_line(502),
        "2024-05-01 12:00:00.123 UTC [42] ERROR:  duplicate key value\n",
        "1:M 01 May 2024 12:00:00.000 # WARNING overcommit_memory is set to 0\n",
        "plain informational line\n",
        '{"no": "level or status", "detail": "fatal problem"}\n',
    ]})
    c = classify(df)
    got = dict(zip(c["log"].to_list(), zip(c["level"].to_list(), c["status_class"].to_list(),
                                           c["message"].to_list(), strict=True), strict=True))
    assert [got[x][0] for x in df["log"]] == [
        "info", "warning", "error", "error", "info", "info", "warning", "error",
        "error", "warning", "info", "error"]
    assert [got[x][1] for x in df["log"][:8]] == [
        "2xx", "4xx", "5xx", None, "2xx", "3xx", "4xx", "5xx"]
    assert got[df["log"][0]][2] == "GET /products 200"
    assert got[df["log"][4]][2] == "GET /api/products?q=chair&limit=20"
    assert got[df["log"][8]][2].endswith("ERROR:  duplicate key value")


def test_masking_collapses_variable_parts() -> None:
    variants = [
        "2024-05-01T12:00:00.123Z req 3f2a9c1e-7b7d-4c55-9a10-0c5a2b9d8e11 from 10.0.0.12:5432 "
        "id=0x1f took 15 ms hash 9f86d081884c7d65 at 12:00:01",
        "2025-12-31T23:59:59Z req 00000000-0000-4000-8000-000000000000 from 192.168.1.1:80 "
        "id=0xdeadbeef took 1234 ms hash abcdef0123456789 at 23:59:59",
    ]
    masked = mask_messages(pl.Series(variants)).to_list()
    assert masked[0] == masked[1]
    for token in ("<ts>", "<uuid>", "<ip>", "<hex>", "<n>", "<time>"):
        assert token in masked[0]
    assert mask_messages(pl.Series(["GET /orders/4711?tenant=acme&page=2"])).to_list() == [
        "GET /orders/<n>?tenant=<v>&page=<v>"]


def test_analysis_groups_masked_messages_and_redacts_secrets(tmp_path: Path) -> None:
    lines: list[str] = []
    lines += entries(app_line("info", f"api starting: database=postgresql://shop:{DSN_PASSWORD}"
                                      "@db:5432/shop pid=1"))
    for i in range(30):
        lines += entries(app_line("info", f"order {1000 + i} created", 201), when=i)
    for i in range(5):
        lines += entries(app_line("warning", "login failed for acme/bob", 401,
                                  authorization=f"Basic {BASIC}"), when=30 + i)
    lines += entries(f"worker 7 got Authorization: Bearer {BEARER} from 10.1.2.3\n", "stderr", 40)
    lines += ['{"log":"broken \\"authorization\\": \\"Bearer ' + BEARER + '\n']
    api = write_log(tmp_path / "api-json.log", lines)
    a = analyse_files([("api", api)])
    top = a.top_messages.to_pandas()
    orders = top[top["message"] == "order <n> created"]
    assert len(orders) == 1 and orders.iloc[0]["count"] == 30
    assert orders.iloc[0]["status_class"] == "2xx" and orders.iloc[0]["level"] == "info"
    shown = json.dumps(top.to_dict(orient="records")) + json.dumps(
        a.malformed.to_dicts())
    for secret in (DSN_PASSWORD, BASIC, BEARER):
        assert secret not in shown
    assert MASK in shown
    assert a.malformed_count == 1 and a.malformed["line"].to_list() == [38]
    assert top["message"].str.contains("api starting: database=postgresql://shop:").any()


def test_volume_levels_error_rate_and_window(tmp_path: Path) -> None:
    lines: list[str] = []
    for i in range(120):  # two minutes, one line a second; every 4th line is a 5xx
        lines += entries(nginx_line(502 if i % 4 == 0 else 200), when=i)
    web = write_log(tmp_path / "web-json.log", lines)
    db = write_log(tmp_path / "db-json.log",
                   [e for i in range(10) for e in entries(f"LOG: checkpoint {i}\n", "stderr", i)])
    a = analyse_files([("web", web), ("db", db)])
    vol = a.volume.filter(pl.col("service") == "web")
    assert vol["lines"].to_list() == [60, 60] and vol["errors"].to_list() == [15, 15]
    assert int(vol["bytes"].sum()) == web.stat().st_size
    assert a.error_rate == pytest.approx(30 / 130)
    assert a.top_writer() == "web"
    status = dict(a.status.filter(pl.col("service") == "web").select(
        "status_class", "lines").iter_rows())
    assert status == {"2xx": 90, "5xx": 30}
    assert a.per_service().filter(pl.col("service") == "db")["errors"].item() == 0
    recent = analyse_files([("web", web)], since=T0 + dt.timedelta(seconds=60))
    assert recent.total_lines == 60
    assert recent.files["lines"].item() == 120 and recent.files["in_window"].item() == 60


# --- disk, plan, apply, journal ------------------------------------------------------------------

def file_row(service: str, path: Path, kind: str, *, container: str = "", cid: str = "",
             opts: dict[str, str] | None = None, index: int = 0, state: str = "running",
             compose_files: str = "/x/compose.yaml") -> dict[str, object]:
    return {"service": service, "container": container, "container_id": cid, "state": state,
            "log_driver": "json-file" if cid else "", "log_opts": opts or {},
            "rotation": logs_disk._rotation_text(opts or {}), "compose_files": compose_files,
            "workdir": "/x", "path": str(path), "kind": kind, "index": index,
            "bytes": path.stat().st_size,
            "mtime": dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC),
            "accessible": True}


def report_of(rows: list[dict[str, object]]) -> logs.DiskReport:
    files = pd.DataFrame(rows, columns=logs_disk._FILE_COLUMNS)
    fs = logs.filesystem_usage(files["path"], 80.0)
    return logs.DiskReport("proj", files, logs_disk._service_summary(files), fs, 80.0)


def make_log(path: Path, n: int, prefix: str = "line") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_log(path, [e for i in range(n) for e in entries(f"{prefix} {i}\n", when=i)])


def test_filesystem_usage_and_host_files(tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    for name in ("app.log", "app.log.1", "app.log.2.gz", "app-20240501", "other.log.old"):
        (host / name).write_text("x\n")
    f = logs.host_log_files([host])
    kinds = dict(zip(f["path"].map(lambda p: Path(p).name), f["kind"], strict=True))
    assert kinds == {"app.log": "host", "app.log.1": "host-rotated",
                     "app.log.2.gz": "host-rotated", "app-20240501": "host-rotated",
                     "other.log.old": "host-rotated"}
    fs = logs.filesystem_usage([host / "app.log"], 80.0, {str(host / "app.log"): 2})
    row = fs.iloc[0]
    assert 0 < row["used_pct"] < 100 and row["free"] > 0 and row["log_bytes"] == 2
    assert row["over_threshold"] == (row["used_pct"] > 80)
    tiny = logs.filesystem_usage([host], 0.001)
    assert bool(tiny.iloc[0]["over_threshold"])
    with pytest.raises(BadParameter):
        logs.filesystem_usage([host], 0)
    with pytest.raises(BadParameter):
        logs.host_log_files([tmp_path / "missing"])


def test_truncate_safety_reads_descriptor_flags(tmp_path: Path) -> None:
    path = make_log(tmp_path / "c-json.log", 3)
    assert logs.truncate_safety(str(path), os.getpid()).safe  # nobody writes it
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        s = logs.truncate_safety(str(path), os.getpid())
        assert s.safe and "O_APPEND" in s.reason and s.flags
    finally:
        os.close(fd)
    fd = os.open(path, os.O_WRONLY)
    try:
        s = logs.truncate_safety(str(path), os.getpid())
        assert not s.safe and "without O_APPEND" in s.reason
    finally:
        os.close(fd)


def test_plan_building(tmp_path: Path) -> None:
    live = make_log(tmp_path / "c1" / "c1-json.log", 50)
    rot_live = make_log(tmp_path / "c2" / "c2-json.log", 5)
    rot1 = make_log(tmp_path / "c2" / "c2-json.log.1", 20)
    rot2 = make_log(tmp_path / "c2" / "c2-json.log.2", 20)
    host = tmp_path / "host"
    make_log(host / "app.log", 3)
    host_rot = make_log(host / "app.log.1", 30)
    opts = {"max-size": "1m", "max-file": "3"}
    report = report_of([
        file_row("api", live, "live", container="p-api-1", cid="c1"),
        file_row("web", rot_live, "live", container="p-web-1", cid="c2", opts=opts),
        file_row("web", rot1, "rotated", container="p-web-1", cid="c2", opts=opts, index=1),
        file_row("web", rot2, "rotated", container="p-web-1", cid="c2", opts=opts, index=2),
        *[r for r in logs.host_log_files([host]).to_dict(orient="records")],
    ])
    override = tmp_path / "override.yml"
    override.write_text("services: {}\n")
    out = tmp_path / "runs" / "run1"
    old_dir = tmp_path / "runs" / "run0" / "archive" / "api"
    old_dir.mkdir(parents=True)
    (old_dir / "old.log.abc.0000000000000.gz").write_bytes(gzip.compress(b"old\n"))
    (old_dir / "old.log.abc.0000000000000.gz.json").write_text(json.dumps(
        {"kind": "opslib-log-archive", "source": "/gone", "service": "api", "start": 0,
         "end": 4, "created": "2020-01-01T00:00:00+00:00"}))

    plan = logs.plan_cleanup(report, out_dir=out, override=override, retention_days=14)
    assert list(plan.columns[:8]) == logs.PLAN_COLUMNS
    acts = list(zip(plan["action"], plan["service"], plan["file"].map(
        lambda p: Path(p).name), strict=True))
    assert acts == [
        ("archive", "api", "c1-json.log"),
        ("recreate-with-rotation", "api", "c1-json.log"),
        ("compress-rotated", "web", "c2-json.log.1"),
        ("compress-rotated", "web", "c2-json.log.2"),
        ("compress-rotated", f"host:{host}", "app.log.1"),
        ("delete-archive", "api", "old.log.abc.0000000000000.gz"),
    ]
    assert plan["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert plan.iloc[0]["bytes_freed"] == 0 and plan.iloc[0]["risk"] == "none"
    assert plan.iloc[1]["bytes_freed"] == live.stat().st_size
    assert plan.iloc[4]["target"] == str(host_rot) + ".gz"
    assert all(plan["why"].str.len() > 20)

    trunc = logs.plan_cleanup(report, out_dir=out, override=override, allow_truncate=True,
                              services=["api"])
    assert trunc["action"].tolist() == ["archive", "truncate", "delete-archive"]
    assert "no daemon descriptor" in trunc.iloc[1]["why"] and trunc.iloc[1]["risk"] == "high"

    no_override = logs.plan_cleanup(report, out_dir=out, services=["api"], retention_days=10**6)
    assert no_override["action"].tolist() == ["archive", "note"]
    with pytest.raises(PlanError):
        logs.plan_cleanup(report, out_dir=out, override=tmp_path / "nope.yml")
    with pytest.raises(BadParameter):
        logs.plan_cleanup(report, out_dir=out, services=["nope"])

    saved = logs.save_plan(plan, out / "plan.json")
    again = logs.load_plan(saved)
    assert again[logs.PLAN_COLUMNS].astype(str).equals(plan[logs.PLAN_COLUMNS].astype(str))


def archived_lines(archive: Path) -> list[bytes]:
    segs = []
    for m in sorted(archive.rglob("*.gz.json")):
        meta = json.loads(m.read_text())
        segs.append((meta["start"], gzip.decompress(m.with_suffix("").read_bytes())))
    return [line for _, data in sorted(segs) for line in data.splitlines(keepends=True)]


def test_apply_archive_compress_delete_and_journal_resume(tmp_path: Path) -> None:
    live = make_log(tmp_path / "c1" / "c1-json.log", 2000)
    host = tmp_path / "host"
    make_log(host / "app.log", 1)
    host_rot = make_log(host / "app.log.1", 500)
    host_content = host_rot.read_bytes()
    report = report_of([file_row("api", live, "live", container="p-api-1", cid="c1"),
                        *logs.host_log_files([host]).to_dict(orient="records")])
    out = tmp_path / "run"
    old_archive = tmp_path / "earlier" / "archive" / "api" / "x-json.log.abc.0000000000000.gz"
    old_archive.parent.mkdir(parents=True)
    old_archive.write_bytes(gzip.compress(b"old line\n"))
    Path(str(old_archive) + ".json").write_text(json.dumps(
        {"kind": "opslib-log-archive", "source": "/gone/x-json.log", "service": "api",
         "start": 0, "end": 9, "created": "2020-01-01T00:00:00+00:00"}))
    plan = logs.plan_cleanup(report, out_dir=out, allow_truncate=False, recreate=False,
                             retention_days=14)
    assert plan["action"].tolist() == ["archive", "compress-rotated", "delete-archive"]

    dry = logs.apply_cleanup(plan, journal=out, apply=False)
    assert set(dry["status"]) == {"dry-run"} and not (out / "archive").exists()

    # A crash mid-archive: a torn .part file and a journal that says "start" only.
    part_dir = out / "archive" / "api"
    part_dir.mkdir(parents=True)
    (part_dir / "junk.gz.part").write_bytes(b"\x1f\x8b torn")
    journal = out / "log-cleanup-journal.jsonl"
    journal.write_text(json.dumps({"id": plan.iloc[0]["id"], "event": "start"}) + "\n{\"torn")

    res = logs.apply_cleanup(plan, journal=out, apply=True)
    assert res["status"].tolist() == ["done", "done", "done"]
    assert archived_lines(out / "archive") == live.read_bytes().splitlines(keepends=True)
    assert not host_rot.exists()
    assert gzip.decompress(Path(str(host_rot) + ".gz").read_bytes()) == host_content
    assert res.iloc[1]["bytes_freed"] > 0
    assert not old_archive.exists() and not Path(str(old_archive) + ".json").exists()
    assert res.iloc[2]["bytes_freed"] > 0

    # Rerun of the same plan: nothing redone.
    again = logs.apply_cleanup(plan, journal=out, apply=True)
    assert again["status"].tolist() == ["already done"] * 3
    assert len(list((out / "archive").rglob("*.gz"))) == 1

    # The log grows; a new run archives only the new lines (no duplicate, no loss).
    with open(live, "a") as fh:
        for i in range(2000, 2300):
            fh.write(entries(f"line {i}\n", when=i)[0])
    plan2 = logs.plan_cleanup(report_of([file_row("api", live, "live", container="p-api-1",
                                                  cid="c1")]),
                              out_dir=tmp_path / "run2", recreate=False)
    assert plan2.iloc[0]["bytes"] < 300 * 200  # only the new part
    logs.apply_cleanup(plan2, journal=tmp_path / "run2", apply=True)
    assert archived_lines(tmp_path) == live.read_bytes().splitlines(keepends=True)
    events = [e["event"] for e in logs.read_journal(journal)]
    assert events.count("done") == 3 and "start" in events


def test_apply_detects_a_corrupt_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    live = make_log(tmp_path / "c1" / "c1-json.log", 100)
    plan = logs.plan_cleanup(report_of([file_row("api", live, "live", container="p", cid="c1")]),
                             out_dir=tmp_path / "run", recreate=False)

    def bad_digest(path: Path) -> tuple[str, int, int]:
        return ("0" * 64, 0, 0)

    for module in (logs_archive, logs_cleanup):  # both verify archives with it
        monkeypatch.setattr(module, "_gz_digest", bad_digest)
    with pytest.raises(VerificationFailed):
        logs.apply_cleanup(plan, journal=tmp_path / "run", apply=True)
    assert not list((tmp_path / "run" / "archive").rglob("*.gz"))
    events = logs.read_journal(tmp_path / "run" / "log-cleanup-journal.jsonl")
    assert [e["event"] for e in events] == ["start", "failed"]


APPLY_SCRIPT = """
import sys
from opslib import logs
plan = logs.load_plan(sys.argv[1])
logs.apply_cleanup(plan, journal=sys.argv[2], apply=True, compresslevel=9)
"""


def test_sigkill_during_apply_then_rerun_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    live = tmp_path / "c1" / "c1-json.log"
    live.parent.mkdir()
    with open(live, "w") as fh:  # ~60 MB of varied lines: archiving at level 9 takes seconds
        for k in range(60):
            fh.write("".join(entries(f"line {k * 4000 + i} {os.urandom(80).hex()}\n",
                                     when=k)[0] for i in range(4000)))
    before = live.read_bytes().splitlines(keepends=True)
    out = tmp_path / "run"
    plan = logs.plan_cleanup(report_of([file_row("api", live, "live", container="p", cid="c1")]),
                             out_dir=out, recreate=False)
    plan_file = logs.save_plan(plan, out / "plan.json")
    cmd = [sys.executable, "-c", APPLY_SCRIPT, str(plan_file), str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    deadline = time.monotonic() + 120
    while not list((out / "archive").rglob("*.part")) and proc.poll() is None:
        assert time.monotonic() < deadline, "apply never started archiving"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert list((out / "archive").rglob("*.part"))  # killed mid-write
    assert not list((out / "archive").rglob("*.gz"))
    subprocess.run(cmd, cwd=ROOT, check=True)
    assert archived_lines(out / "archive") == before
    assert live.read_bytes().splitlines(keepends=True) == before


# --- prevention files ----------------------------------------------------------------------------

def test_missing_logrotate_makes_its_check_not_run_instead_of_crashing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(logs_prevention, "LOGROTATE_FALLBACK_PATHS", ())
    with pytest.raises(ToolMissing):
        logs.check_logrotate(tmp_path / "nothing")
    files = logs.write_prevention_files(tmp_path / "out", ["api"], project="shop")
    assert files.logrotate.is_file() and files.override.is_file()
    assert files.logrotate_ok is None and files.logrotate_check == ""
    assert "apt-get install -y logrotate" in files.logrotate_detail


def test_generated_override_daemon_json_and_logrotate(tmp_path: Path) -> None:
    host = tmp_path / "applogs"
    host.mkdir()
    (host / "app.log").write_text("hello\n")
    current = tmp_path / "daemon.json"
    current.write_text(json.dumps({"data-root": "/srv/docker", "log-opts": {"labels": "a"}}))
    files = logs.write_prevention_files(tmp_path / "out", ["api", "web"], host_log_dirs=[host],
                                        max_size="20m", max_file=3, project="shop",
                                        current_daemon_json=current)
    doc = yaml.safe_load(files.override.read_text())
    assert doc["services"]["api"]["logging"] == {
        "driver": "json-file", "options": {"max-size": "20m", "max-file": "3", "compress": "true"}}
    assert set(doc["services"]) == {"api", "web"}
    dj = json.loads(files.daemon_json.read_text())
    assert dj["data-root"] == "/srv/docker" and dj["log-driver"] == "json-file"
    assert dj["log-opts"] == {"labels": "a", "max-size": "20m", "max-file": "3",
                              "compress": "true"}
    text = files.logrotate.read_text()
    for word in ("daily", "rotate 7", "compress", "missingok", "notifempty", "copytruncate"):
        assert f"    {word}\n" in text
    assert f"{host.resolve()}/*.log {{" in text
    assert "app.log" in files.logrotate_check  # logrotate -d looked at the file
    assert files.logrotate_ok is True and "logrotate -d accepts" in files.logrotate_detail
    assert "/var/log/shop/*.log" in logs.logrotate_config([], project="shop")
    with pytest.raises(BadParameter):
        logs.compose_logging_override(["api"], max_size="ten megs")
    with pytest.raises(BadParameter):
        logs.daemon_json(max_file=0)


def test_logrotate_check_rejects_a_broken_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken"
    bad.write_text("/var/log/x/*.log {\n    daily\n    rotate seven\n}\n")
    with pytest.raises(VerificationFailed):
        logs.check_logrotate(bad)


# --- the streaming analysis against a line-by-line reference ----------------------------------

def _mixed_log(path: Path, seed: int) -> Path:
    """A json-file log mixing everything the parser must cope with, in random order: JSON app
    and nginx lines, plain text with keywords, escapes, non-ASCII, ``attrs``, long lines split
    into partial entries on one stream while the other stream writes in between, and malformed
    lines (not JSON, cut, empty, NUL hole)."""
    import random

    rnd = random.Random(seed)
    out: list[str] = []
    pending: list[str] = []  # partial entries of a long stdout line, written over time
    for i in range(1500):
        when = i * 0.2  # five minutes
        kind = rnd.random()
        stream = "stderr" if rnd.random() < 0.3 else "stdout"
        if pending and stream == "stdout":
            out.append(pending.pop(0))  # the next chunk of the long line
            continue
        if kind < 0.3:
            level = rnd.choice(["info", "INFO", "warning", "error", "debug", "critical"])
            status = rnd.choice([200, 201, 404, 500, None])
            out += entries(app_line(level, f"order {rnd.randint(1, 9999)} for user "
                                           f"{rnd.randint(1, 50)} \"quoted\" \\ tab\t", status),
                           stream, when)
        elif kind < 0.55:
            out += entries(nginx_line(rnd.choice([200, 200, 301, 404, 502]),
                                      f"/api/orders/{rnd.randint(1, 500)}"), stream, when)
        elif kind < 0.75:
            word = rnd.choice(["ERROR", "WARNING", "LOG", "FATAL", "info"])
            out += entries(f"2024-05-01 12:00:{i % 60:02d} UTC [{rnd.randint(1, 99)}] {word}:  "
                           f"chèckpoint {i} ✓\n", stream, when)
        elif kind < 0.8 and not pending:
            chunks = entries(f"long {i} " + "Z" * rnd.randint(17_000, 40_000)
                             + rnd.choice([" ERROR\n", " fine\n"]), "stdout", when)
            out.append(chunks[0])
            pending = chunks[1:]
        elif kind < 0.84:
            out.append(json.dumps({"log": f"with attrs {i}\n", "stream": stream,
                                   "attrs": {"tag": "x"}, "time": ts(when)},
                                  separators=(",", ":")) + "\n")
        elif kind < 0.85:  # no stream at all (not written by Docker, but valid enough)
            out.append(json.dumps({"time": ts(when), "log": f"streamless {i}\n"}) + "\n")
        elif kind < 0.9:
            out.append(rnd.choice(["not json at all\n", '{"log":"cut in the mid\n', "\n",
                                   "\0" * 64 + "\n"]))
        else:
            out += entries(f"plain line {i} from 10.0.{i % 7}.{i % 251}\n", stream, when)
    out += pending
    return write_log(path, out)


def _reference(path: Path) -> dict[str, object]:
    """Counts made line by line with json.loads and classify() on whole frames."""
    lines: list[dict[str, object]] = []
    open_: dict[str, dict[str, object]] = {}
    malformed = []
    with path.open("rb") as fh:
        for no, raw in enumerate(fh, start=1):
            try:
                obj = json.loads(raw)
                assert isinstance(obj, dict) and "log" in obj and "time" in obj
            except (ValueError, AssertionError):
                malformed.append(no)
                continue
            stream = obj.get("stream") or ""
            cur = open_.pop(stream, None)
            if cur is None:
                cur = {"time": obj["time"], "log": "", "nbytes": 0}
            cur["log"] = str(cur["log"]) + obj["log"]
            cur["nbytes"] = int(str(cur["nbytes"])) + len(raw)
            if obj["log"].endswith("\n"):
                lines.append(cur)
            else:
                open_[stream] = cur
    lines += open_.values()
    c = classify(pl.DataFrame(lines, schema={"time": pl.String, "log": pl.String,
                                             "nbytes": pl.Int64}))
    per_minute = (c.group_by(minute=pl.col("time").str.slice(0, 16))
                  .agg(lines=pl.len(), bytes=pl.col("nbytes").sum(),
                       errors=(pl.col("level") == "error").sum()).sort("minute"))
    return {"per_minute": per_minute.rows(), "malformed": malformed,
            "levels": dict(c.group_by("level").len().iter_rows()),
            "status": dict(c.drop_nulls("status_class").group_by("status_class").len()
                           .iter_rows())}


@pytest.mark.parametrize("seed", [1, 2])
def test_analysis_matches_a_line_by_line_reference_for_any_batching(tmp_path: Path, seed: int,
                                                                     scanner: str) -> None:
    path = _mixed_log(tmp_path / "svc-json.log", seed)
    ref = _reference(path)
    assert len(ref["malformed"]) > 10  # type: ignore[arg-type]
    results = []
    for batch_bytes, workers in [(4096, 0), (4096, 3), (50_000, 1), (4 << 20, 2)]:
        a = analyse_files([("svc", path)], batch_bytes=batch_bytes, workers=workers)
        vol = a.volume.with_columns(pl.col("minute").dt.strftime("%Y-%m-%dT%H:%M"))
        got = {
            "per_minute": vol.select("minute", "lines", "bytes", "errors").sort("minute").rows(),
            "malformed": a.malformed["line"].sort().to_list(),
            "levels": dict(a.levels.select("level", "lines").iter_rows()),
            "status": dict(a.status.select("status_class", "lines").iter_rows()),
        }
        assert got == ref, (batch_bytes, workers)
        f = a.files.row(0, named=True)
        assert f["bytes_read"] == path.stat().st_size and f["partial_entries"] > 5
        assert f["lines"] == sum(r[1] for r in ref["per_minute"])  # type: ignore[attr-defined]
        results.append(a.top_messages.sort("count", "message", descending=True)
                       .select("level", "status_class", "message", "count", "bytes").rows())
    assert all(r == results[0] for r in results[1:])


# --- JSON escapes: messages as a JSON decoder reads them (issue #26) ---------------------------

def _corpus_log(path: Path) -> Path:
    """The tricky corpus of tests/logcorpus.py, encoded as dockerd encodes it."""
    out: list[str] = []
    for i, (stream, repeat, text) in enumerate(logcorpus.corpus()):
        out += logcorpus.dockerd_entries(text, stream, ts(i)) * repeat
    return write_log(path, out)


@pytest.mark.parametrize("batch_bytes", [4096, 50_000, 4 << 20])
def test_escaped_messages_match_the_json_decoder(tmp_path: Path, batch_bytes: int,
                                                 scanner: str) -> None:
    path = _corpus_log(tmp_path / "api-json.log")
    raw = path.read_text()
    assert "\\u003cimg src=x" in raw and "q=a\\u0026page=2" in raw  # as dockerd writes them
    ref = logcorpus.reference_lines(path)
    assert sum(x["entries"] > 1 for x in ref) == 2  # the long lines were split
    # The reader's decoded text, and level, status class and message of each line.
    logcorpus.assert_reader_matches(path, ref, batch_bytes)
    # And the aggregates of the whole analysis.
    for workers in (0, 2):
        a = analyse_files([("api", path)], batch_bytes=batch_bytes, workers=workers, top_n=500)
        logcorpus.assert_matches(a, ref)


def test_the_native_scanner_decodes_each_line_like_the_json_decoder(tmp_path: Path) -> None:
    _require_native()
    path = _corpus_log(tmp_path / "api-json.log")
    ref = [x for x in logcorpus.reference_lines(path) if x["entries"] == 1]
    data = path.read_bytes()
    parsed = lpr._parse_batch(data, len(data), 0, fields=True)
    assert parsed.fields is not None and parsed.entries.height == data.count(b"\n")
    rows = [x["first"] for x in ref]
    messages = parsed.fields["message"].gather(rows).to_list()
    assert messages == [x["message"] for x in ref]
    assert parsed.fields["key"].gather(rows).to_list() == [
        "".join("0" if ch in "0123456789" else ch for ch in x["message"]) for x in ref]
    assert len(ref) > 3200 and any("🚀" in m for m in messages)


def test_issue_26_examples_read_as_the_application_wrote_them(tmp_path: Path,
                                                               scanner: str) -> None:
    lines: list[str] = []
    for i in range(3000):
        lines += logcorpus.dockerd_entries((logcorpus.IMG + "\n").encode(), "stdout", ts(i / 100))
    for i in range(200):
        lines += logcorpus.dockerd_entries((logcorpus.SEARCH + "\n").encode(), "stdout", ts(i))
    lines += logcorpus.dockerd_entries((logcorpus.SCRIPT + "\n").encode(), "stderr", ts(1))
    path = write_log(tmp_path / "api-json.log", lines)
    top = analyse_files([("api", path)]).top_messages
    rows = {r["message"]: (r["level"], r["count"], r["example"]) for r in top.iter_rows(named=True)}
    assert rows == {
        "<img src=x onerror=alert(document.domain)> boom":
            ("error", 3000, "<img src=x onerror=alert(document.domain)> boom"),
        "upstream failed for /search?q=<v>&page=<v>":
            ("error", 200, "upstream failed for /search?q=a&page=2"),
        "<script>alert(<n>)</script> plain error":
            ("error", 1, "<script>alert(4242)</script> plain error"),
    }


def test_json_unescape_decodes_like_the_json_decoder() -> None:
    valid = ['\\u003cb\\u003e \\u0026amp;', 'say \\"hi\\" C:\\\\temp', '\\n\\t\\r\\b\\f\\/',
             '\\ud83d\\ude80 \\uD834\\uDD1E', 'caf\\u00e9 日本', "no escape", "", '\\u0000']
    got = lpf._json_unescape(pl.Series(valid)).to_list()
    assert got == [json.loads(f'"{v}"') for v in valid]
    assert got[3] == "🚀 𝄞"
    # Not JSON: lone surrogates become U+FFFD, a backslash that starts no escape stays.
    odd = ['lone \\ud800 high', 'lone \\udc00', '\\ud800\\u0041', 'bad \\x and \\u12', 'end \\',
           "raw\ttab \\u003c"]
    want = ["lone \ufffd high", "lone \ufffd", "\ufffdA", "bad \\x and \\u12", "end \\",
            "raw\ttab <"]
    assert lpf._json_unescape(pl.Series(odd)).to_list() == want
    assert [lpf._unescape_text(v) for v in valid + odd] == [*got, *want]
    # Twice: the envelope, then the inner JSON string.
    assert lpf._json_unescape(pl.Series(['a \\\\\\"b\\\\\\" \\\\u00e9 \\u0026']), 2).to_list() == [
        'a "b" é &']


# --- the native scanner against the regexes ------------------------------------------------------

_KEYS = ['"level"', '"severity"', '"loglevel"', '"status"', '"upstream_status"', '"msg"',
         '"message"', '"method"', '"request_method"', '"uri"', '"request_uri"', '"path"', '"x"']
_SEPS = [":", " : ", ": ", ":  ", " :", ""]
_VALUES = ['"info"', '"ERROR"', '"Warn"', '"informational"', '"GET"', '"get"', "200", '"404"',
           "5000", '"20x"', "503,", "301}", '"a\\"b"', '"a\\\\b"', '"tab\\t"', '"line\\n"',
           '"é漢字 ✓"', '"' + "é" * 320 + '"', '""', '"\\""', '"order 12 at 10.0.0.7"', "null",
           # \u escapes of the application's JSON, and < > & (which dockerd escapes in turn)
           '"\\u003cb\\u003e 4\\u00262"', '"caf\\u00e9 \\ud83d\\ude80 \\uD834\\uDD1E"',
           '"lone \\ud800"', '"\\u12 bad \\x"', '"<img src=x> & 7"', '"q=a&page=2"',
           '"\\\\u0041"', '"🚀 \\/ 𝄞"']
_OTHER = [", ", "{", "}", " ERROR ", "Traceback", "\\", '\\"', '"', "<", "&", "\\u0026", "\\u00"]


def _fuzz_lines(seed: int, count: int) -> list[str]:
    """Log lines of JSON-ish pieces in random order: mostly key, separator, value (keys inside
    values, escaped quotes and backslashes, keys without values, multi-byte text, long values),
    with stray pieces in between, and some plain text."""
    import random

    rnd = random.Random(seed)
    out = []
    for _ in range(count):
        pieces = []
        for _ in range(rnd.randint(0, 8)):
            if rnd.random() < 0.7:
                pieces += [rnd.choice(_KEYS), rnd.choice(_SEPS), rnd.choice(_VALUES), ","]
            else:
                pieces.append(rnd.choice(_OTHER + _VALUES))
        text = ("{" if rnd.random() < 0.8 else "") + "".join(pieces)
        out.append(text + rnd.choice(["\n", "\r\n", "", "\\\n"]))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_native_scanner_finds_the_same_fields_as_the_regexes(seed: int) -> None:
    _require_native()
    texts = _fuzz_lines(seed, 5000)
    raw = "".join(logcorpus.dockerd_json(t, "stdout", ts(i))
                  for i, t in enumerate(texts))  # as dockerd writes them: < > & as \u003c ...
    data = raw.encode()
    parsed = lpr._parse_batch(data, len(data), 0, fields=True)
    assert parsed.fields is not None and parsed.fields.height == len(texts)
    native = pl.concat([parsed.entries, parsed.fields], how="horizontal")
    # The regex path, line by line: the same columns.
    e = parsed.entries.with_row_index("i")
    js, tx = e.filter(pl.col("log").str.starts_with("{")), \
        e.filter(~pl.col("log").str.starts_with("{"))
    parts = [lpf._json_fields(js, True, per_line=False), lpf._text_fields(tx, True, defer=True)]
    ref = pl.concat([p.select("i", *(pl.col(c) if c in p.columns else pl.lit(None, pl.String)
                                     .alias(c) for c in ("_lv", "_status")),
                              "level", "message") for p in parts]).sort("i")
    short = lpa._short_col(ref["message"])
    ref = ref.with_columns(short, key=lpf._zero_digits(short), _kw=pl.col("level").is_not_null())
    got = native.select("_lv", "_status", "message", "key", "_kw")
    want = ref.select("_lv", "_status", "message", "key", "_kw")
    for col in got.columns:
        bad = [(i, texts[i], got[col][i], want[col][i]) for i in range(len(texts))
               if got[col][i] != want[col][i]]
        assert not bad, (col, bad[:3])
    # Enough of each case was produced to mean something.
    assert got["_lv"].drop_nulls().len() > 200 and got["_status"].drop_nulls().len() > 100
    assert got["_kw"].sum() > 200 and (got["message"].str.len_chars() == 300).sum() > 20
    # And the batch aggregates are the same with and without the scanner's columns.
    agg = [lpa._aggregate(f).groups for f in (native, parsed.entries)]
    assert agg[0] is not None and agg[1] is not None
    keys = ["minute", "_lv", "_status", "level", "key"]
    assert agg[0].sort(keys).select(*keys, "count", "bytes").equals(
        agg[1].sort(keys).select(*keys, "count", "bytes"))


def test_native_scanner_build_cache_and_fallbacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    _require_native()
    monkeypatch.setenv("OPSLIB_CACHE_DIR", str(tmp_path / "cache"))
    built = _native.build()
    assert built is not None and built.parent == tmp_path / "cache"
    stamp = built.stat().st_mtime_ns
    assert _native.build() == built and built.stat().st_mtime_ns == stamp  # cached, not rebuilt
    sc = _native.Scanner(built)
    line = b'{"log":"{\\"level\\":\\"warn\\",\\"msg\\":\\"disk 91%\\"}\\n",' \
        b'"stream":"stderr","time":"2024-05-01T12:00:00.123456789Z"}\n'
    buf = np.frombuffer(line + bytes(16), dtype=np.uint8)
    cut = sc.cut(buf, len(line))
    assert cut.rest == 0 and cut.stream.tolist() == [1] and cut.complete.tolist() == [True]
    found = sc.scan(buf, cut.log_s, cut.log_e, 300)
    assert found.message.to_pylist() == ["disk 91%"] and found.key.to_pylist() == ["disk 00%"]
    with pytest.raises(ValueError):
        sc.scan(buf, cut.log_s, cut.log_e + 10_000, 300)  # spans outside the buffer
    # No compiler, a failing compiler, or switched off: None, and the regex path is used.
    monkeypatch.setenv("OPSLIB_CACHE_DIR", str(tmp_path / "other"))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    assert _native.build() is None
    monkeypatch.setenv("CC", "false")
    with caplog.at_level("WARNING", logger="opslib.logs._native"):
        assert _native.build() is None
    assert "cannot build the native log scanner" in caplog.text
    assert not list((tmp_path / "other").glob("*"))  # no half-written library left behind
    monkeypatch.setenv("OPSLIB_NATIVE", "0")
    _native.scanner.cache_clear()
    try:
        assert _native.scanner() is None
    finally:
        _native.scanner.cache_clear()
