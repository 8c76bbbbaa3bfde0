"""Integration tests of the log cleanup runbook against a real Docker engine.

Read-only tests use the shared ``shop`` stack after sending it real traffic. Everything that
changes containers (recreate with rotation, truncate, a SIGKILL during apply) runs on throwaway
compose projects named ``opslib-test-logs-<random>`` whose one service writes numbered lines
(``<hostname> seq=<n>``), so every line can be accounted for: after cleanup, the archives plus
the live log hold each line of each container exactly once.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import logcorpus
import papermill as pm
import pytest
import yaml

from opslib import engine as od
from opslib import logs
from opslib.logs import _native
from opslib.logs.parse import analyse_files
from opslib.redact import MASK, redact_text
from opslib.report import results_from_notebook

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "debian:bookworm-slim"
SHOP_SERVICES = {"api", "cache", "db", "web"}

# Writes N numbered lines as fast as it can, then idles.
FIXED = ("seq 1 {n} | awk -v h=$$HOSTNAME '{{print h \" seq=\" $$1 \" \" "
         "\"padding-padding-padding-padding-padding-padding-padding\"}}'; exec sleep infinity")
# Writes numbered lines forever, ~1000 a second.
ENDLESS = ("i=0; while true; do i=$$((i+1)); echo \"$$HOSTNAME seq=$$i\"; "
           "if [ $$((i % 100)) -eq 0 ]; then sleep 0.1; fi; done")


def _compose_doc(command: str) -> dict[str, Any]:
    return {
        "services": {"writer": {"image": IMAGE, "init": True, "labels": {"opslib.test": "1"},
                                "stop_grace_period": "2s", "command": ["bash", "-c", command]}},
        "networks": {"default": {"labels": {"opslib.test": "1"}}},
    }


@pytest.fixture
def throwaway(docker_client: Any, tmp_path: Path) -> Iterator[Callable[[str], tuple[str, Path]]]:
    """Start throwaway projects (one ``writer`` service); ``down -v`` them at teardown."""
    made: list[tuple[str, Path]] = []

    def start(command: str) -> tuple[str, Path]:
        project = f"opslib-test-logs-{uuid.uuid4().hex[:8]}"
        base = tmp_path / f"{project}.yaml"
        base.write_text(yaml.safe_dump(_compose_doc(command), sort_keys=False))
        made.append((project, base))
        od.compose(["up", "-d", "--pull", "never"], project=project, files=[base], timeout=180)
        return project, base

    yield start
    for project, base in made:
        od.compose(["down", "-v", "--remove-orphans", "-t", "1"], project=project,
                   files=[base], check=False, timeout=180)


def _container(client: Any, project: str) -> Any:
    return od.service_container(client, project, "writer")


def _count_lines(path: str) -> int:
    with open(path, "rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def _wait_lines(path: str, n: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while _count_lines(path) < n:
        assert time.monotonic() < deadline, f"{path} never reached {n} lines"
        time.sleep(0.3)


def _seqs(lines: Iterator[bytes] | list[bytes]) -> dict[str, list[int]]:
    """hostname -> seq numbers, from json-file lines."""
    out: dict[str, list[int]] = {}
    for raw in lines:
        text = json.loads(raw)["log"]
        host, seq = text.split()[:2]
        out.setdefault(host, []).append(int(seq.removeprefix("seq=")))
    return out


def _archive_lines(folder: Path) -> list[bytes]:
    lines: list[bytes] = []
    for gz in sorted(folder.rglob("*.gz")):
        lines += gzip.decompress(gz.read_bytes()).splitlines(keepends=True)
    return lines


def _override(tmp_path: Path, project: str, base: Path) -> Path:
    files = logs.write_prevention_files(tmp_path / "prevent", ["writer"], max_size="10m",
                                        max_file=3, project=project, compose_files=[base])
    assert files.compose_check["writer"]["options"]["max-size"] == "10m"
    return files.override


# --- read-only, on the shop stack -------------------------------------------------------------

def _request(url: str, *, data: bytes | None = None, headers: dict[str, str] | None = None
             ) -> int:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_disk_report_and_analysis_of_shop_with_real_traffic(docker_client: Any, shop: str
                                                             ) -> None:
    token = "opslibTest" + uuid.uuid4().hex
    ok = [_request("http://127.0.0.1:8080/api/health") for _ in range(30)]
    assert ok.count(200) == 30
    unauthorised = [_request(f"http://127.0.0.1:8080/api/products?q=item{i}&limit=5")
                     for i in range(10)]
    assert unauthorised.count(401) == 10
    for user in ("alice", "bob", "carol", "dave", "erin"):
        body = json.dumps({"tenant": "acme", "username": user, "password": "wrong"}).encode()
        code = _request("http://127.0.0.1:8080/api/login", data=body,
                        headers={"Content-Type": "application/json",
                                 "Authorization": f"Basic {token}"})
        assert code == 401

    disk = logs.disk_report(docker_client, shop, threshold_pct=80.0)
    facts = od.inspect_facts(docker_client, shop)
    live = disk.files[disk.files["kind"] == "live"]
    shop_live = live[live["container"].isin(facts["container"])]
    assert set(shop_live["service"]) >= SHOP_SERVICES
    assert set(shop_live["path"]) == set(facts["log_path"])
    assert (shop_live["bytes"] > 0).all() and disk.log_bytes_used > 0
    assert len(disk.filesystems) >= 1 and 0 < disk.filesystems.iloc[0]["used_pct"] < 100

    analysis = logs.analyse_logs(disk, since_minutes=30)
    per = analysis.per_service().to_pandas().set_index("service")
    assert set(per.index) >= SHOP_SERVICES and (per.loc[list(SHOP_SERVICES), "bytes"] > 0).all()
    assert analysis.top_writer() in SHOP_SERVICES
    status = analysis.status.to_pandas()
    web = status[status["service"] == "web"].set_index("status_class")["lines"]
    assert web["2xx"] >= 30 and web["4xx"] >= 15
    top = analysis.top_messages.to_pandas()
    failed = top[(top["service"] == "api") & top["message"].str.startswith("login failed for")]
    assert failed["count"].sum() >= 5 and set(failed["level"]) == {"warning"}
    levels = analysis.levels.to_pandas()
    assert "warning" in set(levels[levels["service"] == "api"]["level"])

    # The planted secrets are in the raw logs, and nowhere in what the analysis shows.
    api_log = shop_live[shop_live["service"] == "api"].iloc[0]["path"]
    raw = [line for line in Path(api_log).read_bytes().splitlines() if token.encode() in line]
    assert len(raw) >= 5
    assert all(token not in redact_text(line.decode()) and MASK in redact_text(line.decode())
               for line in raw)
    dsn_password = "shop-demo-password"
    shown = json.dumps([analysis.top_messages.to_dicts(), analysis.malformed.to_dicts()])
    assert token not in shown and dsn_password not in shown


def test_generated_override_is_accepted_by_compose_config(docker_client: Any, shop: str,
                                                         tmp_path: Path) -> None:
    services = od.services(docker_client, shop)
    files = logs.write_prevention_files(tmp_path, services, project=shop,
                                        compose_files=[ROOT / "demo" / "compose.yaml"],
                                        workdir=ROOT / "demo")
    assert set(files.compose_check) == SHOP_SERVICES
    for lg in files.compose_check.values():
        assert lg == {"driver": "json-file",
                      "options": {"max-size": "10m", "max-file": "5", "compress": "true"}}
    proc = od.compose(["config", "--quiet"],
                      files=[ROOT / "demo" / "compose.yaml", files.override], cwd=ROOT / "demo")
    assert proc.returncode == 0
    assert "copytruncate" in files.logrotate.read_text() and files.logrotate_check


def test_notebook_dry_run_on_shop(docker_client: Any, shop: str, tmp_path: Path) -> None:
    before = od.inspect_facts(docker_client, shop).set_index("container")["id"]
    out_nb = tmp_path / "log-cleanup.out.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / "log-cleanup.ipynb"), str(out_nb),
                        parameters={"project": shop, "output_dir": str(tmp_path / "run"),
                                    "since_minutes": 60},
                        cwd=str(ROOT / "notebooks"), kernel_name="python3", progress_bar=False)
    r = results_from_notebook(out_nb)
    rec = r["records"]
    assert rec["log_bytes_used"] > 0
    assert rec["top_writer"] in SHOP_SERVICES
    assert rec["bytes_freed_planned"] > 0 and rec["bytes_freed_applied"] == 0
    assert 0 <= rec["error_rate"] <= 1 and rec["malformed_lines"] >= 0
    checks = {c["name"]: c for c in r["checks"]}
    assert "fs_below_threshold" in checks and "threshold" in checks["fs_below_threshold"]["detail"]
    run = tmp_path / "run"
    plan = logs.load_plan(run / "log-cleanup-plan.json")
    assert {"archive", "recreate-with-rotation"} <= set(plan["action"])
    assert (run / "prevent" / "compose.logging.override.yml").exists()
    assert not (run / "log-cleanup-journal.jsonl").exists()  # a dry run applies nothing
    after = od.inspect_facts(docker_client, shop).set_index("container")["id"]
    assert after.reindex(before.index).equals(before)


# --- JSON escapes, as dockerd itself writes them (issue #26) --------------------------------------

# Prints the corpus: one "stream repeat base64" record per line of $CORPUS.
PRINT_CORPUS = r"""
while read -r stream repeat b64; do
  line=$(printf '%s' "$b64" | base64 -d; printf x); line=${line%x}
  for ((i = 0; i < repeat; i++)); do
    if [ "$stream" = stderr ]; then printf '%s' "$line" >&2; else printf '%s' "$line"; fi
  done
done <<< "$CORPUS"
"""


@pytest.fixture(scope="module")
def dockerd_corpus(docker_client: Any, test_labels: dict[str, str],
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A throwaway container (labelled as the one service of a compose project of its own)
    prints the tricky corpus of tests/logcorpus.py to stdout and stderr; yields the project
    and a copy of the json-file log dockerd wrote (read from the host path ``LogPath``)."""
    records = logcorpus.corpus()
    spec = "\n".join(f"{stream} {repeat} {base64.b64encode(text).decode()}"
                      for stream, repeat, text in records)
    project = f"opslib-test-logs-{uuid.uuid4().hex[:8]}"
    labels = {**test_labels, od.PROJECT_LABEL: project, od.SERVICE_LABEL: "writer",
              od.NUMBER_LABEL: "1"}
    c = docker_client.containers.run(IMAGE, ["bash", "-c", PRINT_CORPUS], detach=True,
                                     environment={"CORPUS": spec}, labels=labels,
                                     name=f"{project}-writer-1", log_config={"type": "json-file"})
    try:
        assert c.wait(timeout=120)["StatusCode"] == 0, c.logs()[-2000:]
        c.reload()
        path = Path(c.attrs["LogPath"])
        want = sum(repeat for _, repeat, _ in records)
        deadline = time.monotonic() + 60
        while len(logcorpus.reference_lines(path)) < want:  # the last entries may lag the exit
            assert time.monotonic() < deadline, "dockerd never wrote the whole corpus"
            time.sleep(0.2)
        copy = tmp_path_factory.mktemp("dockerd") / "writer-json.log"
        copy.write_bytes(path.read_bytes())
        yield project, copy
    finally:
        c.remove(force=True, v=True)


@pytest.fixture(params=["native", "numpy"])
def scanner(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both scanner paths (see the fixture of the same name in tests/unit/test_logs.py)."""
    if request.param == "numpy":
        monkeypatch.setattr(_native, "scanner", lambda: None)
    elif _native.scanner() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but the native log scanner cannot be built (is cc installed?)")
        pytest.skip(_native.describe())
    return str(request.param)


def test_dockerd_written_corpus_matches_the_stdlib_json_decoder(
        dockerd_corpus: tuple[str, Path], scanner: str) -> None:
    _, path = dockerd_corpus
    raw = path.read_bytes()
    # What dockerd made of the corpus: Go's HTML-safe escapes, long lines in partial entries.
    assert b"\\u003cimg src=x onerror=alert(document.domain)\\u003e boom" in raw
    assert b"q=a\\u0026page=2" in raw and b"\\ufffd" in raw
    ref = logcorpus.reference_lines(path)
    assert len(ref) == sum(repeat for _, repeat, _ in logcorpus.corpus())
    assert sum(x["entries"] > 1 for x in ref) == 2
    for batch_bytes in (4096, 1 << 20):
        logcorpus.assert_reader_matches(path, ref, batch_bytes)
        a = analyse_files([("writer", path)], batch_bytes=batch_bytes, top_n=500)
        logcorpus.assert_matches(a, ref)
        assert a.malformed_count == 0 and a.files["partial_entries"].item() >= 2


def test_report_shows_escaped_messages_as_written(docker_client: Any,
                                                  dockerd_corpus: tuple[str, Path],
                                                  scanner: str) -> None:
    """The log-cleanup runbook's path (disk report of the project, then analyse_logs): the top
    messages read as the application printed them."""
    project, copy = dockerd_corpus
    disk = logs.disk_report(docker_client, project)
    live = disk.files[disk.files["kind"] == "live"]
    assert Path(live.iloc[0]["path"]).read_bytes() == copy.read_bytes()
    a = logs.analyse_logs(disk, since_minutes=0, top_n=500)
    logcorpus.assert_matches(a, logcorpus.reference_lines(copy))
    top = {r["message"]: r for r in a.top_messages.iter_rows(named=True)}
    img = top["<img src=x onerror=alert(document.domain)> boom"]
    assert (img["level"], img["count"]) == ("error", 3000)
    assert img["example"] == "<img src=x onerror=alert(document.domain)> boom"
    assert top["upstream failed for /search?q=<v>&page=<v>"]["example"] == (
        "upstream failed for /search?q=a&page=2")
    assert top["<script>alert(<n>)</script> plain error"]["example"] == (
        "<script>alert(4242)</script> plain error")
    assert "" not in top


# --- changing containers: throwaway projects ---------------------------------------------------

def test_plan_apply_recreate_with_rotation_is_idempotent(
        docker_client: Any, throwaway: Callable[[str], tuple[str, Path]], tmp_path: Path) -> None:
    n = 3000
    project, base = throwaway(FIXED.format(n=n))
    old = _container(docker_client, project)
    _wait_lines(old.attrs["LogPath"], n)
    old_host = old.attrs["Config"]["Hostname"]
    override = _override(tmp_path, project, base)
    out = tmp_path / "run"
    disk = logs.disk_report(docker_client, project)
    plan = logs.plan_cleanup(disk, out_dir=out, override=override)
    assert plan["action"].tolist() == ["archive", "recreate-with-rotation"]

    res = logs.apply_cleanup(plan, client=docker_client, journal=out, apply=True)
    assert res["status"].tolist() == ["done", "done", "verified"]
    assert res.iloc[1]["bytes_freed"] > 0
    new = _container(docker_client, project)
    assert new.id != old.id
    opts = od.inspect_facts(docker_client, project).iloc[0]["log_opts"]
    assert opts == {"max-size": "10m", "max-file": "3", "compress": "true"}
    assert not Path(old.attrs["LogPath"]).exists()
    assert sorted(_seqs(_archive_lines(out / "archive"))[old_host]) == list(range(1, n + 1))
    logs.verify_docker_logs(docker_client, new)
    assert new.logs(tail=1)  # docker logs reads the new log

    again = logs.apply_cleanup(plan, client=docker_client, journal=out, apply=True)
    assert again["status"].tolist() == ["already done", "already done", "verified"]
    assert _container(docker_client, project).id == new.id
    assert len(list((out / "archive").rglob("*.gz"))) == 1
    replanned = logs.plan_cleanup(logs.disk_report(docker_client, project), out_dir=out,
                                  override=override)
    assert not {"archive", "recreate-with-rotation", "truncate"} & set(replanned["action"])


APPLY = """
import sys
from opslib import engine as od, logs
logs.apply_cleanup(logs.load_plan(sys.argv[1]), client=od.connect(), journal=sys.argv[2],
                   apply=True, compresslevel=9)
"""


def test_sigkill_during_apply_then_rerun_keeps_every_line_once(
        docker_client: Any, throwaway: Callable[[str], tuple[str, Path]], tmp_path: Path) -> None:
    n = 400_000  # ~60 MB of json-file: archiving it at gzip level 9 takes seconds
    project, base = throwaway(FIXED.format(n=n))
    old = _container(docker_client, project)
    _wait_lines(old.attrs["LogPath"], n)
    old_host = old.attrs["Config"]["Hostname"]
    before = _count_lines(old.attrs["LogPath"])
    override = _override(tmp_path, project, base)
    out = tmp_path / "run"
    plan = logs.plan_cleanup(logs.disk_report(docker_client, project), out_dir=out,
                             override=override)
    plan_file = logs.save_plan(plan, out / "plan.json")
    cmd = [sys.executable, "-c", APPLY, str(plan_file), str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT)
    deadline = time.monotonic() + 300
    while not list((out / "archive").rglob("*.part")) and proc.poll() is None:
        assert time.monotonic() < deadline, "apply never started archiving"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not list((out / "archive").rglob("*.gz"))  # killed before the first archive landed
    assert _container(docker_client, project).id == old.id  # nothing recreated yet

    subprocess.run(cmd, cwd=ROOT, check=True, timeout=600)
    new = _container(docker_client, project)
    assert new.id != old.id
    archived = _seqs(_archive_lines(out / "archive"))
    assert sorted(archived[old_host]) == list(range(1, n + 1))  # no line lost, none twice
    assert sum(len(v) for v in archived.values()) == before == n
    live = _seqs(Path(new.attrs["LogPath"]).read_bytes().splitlines())
    assert old_host not in live
    events = [(e["action"], e["event"]) for e in
              logs.read_journal(out / "log-cleanup-journal.jsonl")]
    assert events.count(("archive", "start")) == 2 and ("archive", "done") in events
    assert ("recreate-with-rotation", "done") in events
    logs.verify_docker_logs(docker_client, new)


def test_truncate_only_with_o_append_and_loses_no_line(
        docker_client: Any, throwaway: Callable[[str], tuple[str, Path]], tmp_path: Path) -> None:
    project, _ = throwaway(ENDLESS)
    c = _container(docker_client, project)
    path = c.attrs["LogPath"]
    host = c.attrs["Config"]["Hostname"]
    _wait_lines(path, 2000)
    safety = logs.truncate_safety(path)
    assert safety.safe and "O_APPEND" in safety.reason
    out = tmp_path / "run"
    plan = logs.plan_cleanup(logs.disk_report(docker_client, project), out_dir=out,
                             allow_truncate=True)
    assert plan["action"].tolist() == ["archive", "truncate"]
    res = logs.apply_cleanup(plan, client=docker_client, journal=out, apply=True)
    assert res["status"].tolist() == ["done", "done", "verified"]
    assert res.iloc[1]["bytes_freed"] > 0
    assert _container(docker_client, project).id == c.id  # no restart
    _wait_lines(path, 300)  # the writer goes on, into the truncated file
    with open(path, "rb") as fh:
        assert fh.read(1) == b"{"  # no NUL-filled hole
    logs.verify_docker_logs(docker_client, c)
    c.stop(timeout=5)  # the live file is final now
    seqs = _seqs(_archive_lines(out / "archive") + Path(path).read_bytes().splitlines())[host]
    assert sorted(seqs) == list(range(1, max(seqs) + 1))  # archive + live: each line once
    assert max(seqs) > 2300
