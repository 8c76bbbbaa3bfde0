"""The ``opslib`` command (run, list, report, schedule), in-process and as a console script."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from opslib.exceptions import BadParameter
from opslib.runbook import schedule
from opslib.runbook.cli import main

ROOT = Path(__file__).resolve().parents[2]
NB = ROOT / "tests" / "notebooks"
BIN = Path(sys.executable).parent


def _opslib(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "opslib"), *args], capture_output=True, text=True,
                          timeout=300, check=False, cwd=ROOT, env=env)


def test_list_shows_descriptions_and_typed_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--notebooks", str(NB)]) == 0
    out = capsys.readouterr().out
    assert "failed_check             Runs to the end but one check fails." in out
    assert "    threshold: int = 80  # percent" in out
    assert '    tags: list = ["a", "b"]  # a list' in out
    assert "    seconds: float = 60.0  # how long to sleep" in out
    assert "changeme" not in out  # the default of db_password is masked


def test_run_prints_one_line_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "ok", "--notebooks", str(NB), "--outputs", str(tmp_path), "-p", "count",
                 "2", "--project", "prod", "--docker-url", "unix:///tmp/none.sock"])
    assert code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("ok ") and "passed" in line and "exit=0" in line
    report = Path(line.split()[-1])
    assert report.is_file() and report.parent.parent == tmp_path / "ok"
    data = json.loads((report.parent / "results.json").read_text())
    assert data["parameters"]["project"] == "prod"
    assert data["engine"] == "unix:///tmp/none.sock" and data["project"] == "prod"
    assert data["records"]["count_doubled"] == 4


def test_unknown_parameter_exits_1_and_runs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "ok", "--notebooks", str(NB), "--outputs", str(tmp_path), "-p", "cuont",
                 "3"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Bad parameter 'cuont'" in err and "count: int = 3  # how many items" in err
    assert "Nothing was run." in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_mistyped_parameter_exits_1_as_a_console_script(tmp_path: Path) -> None:
    proc = _opslib("run", str(NB / "ok.ipynb"), "--outputs", str(tmp_path), "-p", "enabled",
                   "perhaps")
    assert proc.returncode == 1
    assert "expected a bool: true/false, yes/no, 1/0" in proc.stderr
    assert "enabled: bool = True" in proc.stderr and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_timeout_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "sleeps", "--notebooks", str(NB), "--outputs", str(tmp_path),
                 "--timeout", "8", "-p", "seconds", "300"])
    captured = capsys.readouterr()
    assert code == 3
    assert "timeout" in captured.out and "exit=3" in captured.out
    assert "timed out after 8 s in cell" in captured.err
    report = Path(captured.out.split()[-1])
    assert json.loads((report.parent / "results.json").read_text())["exit_code"] == 3


def test_unknown_runbook_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "nope", "--notebooks", str(NB)]) == 1
    assert "No runbook named 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_all_runs_every_runbook_and_exits_with_the_worst_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    books = tmp_path / "notebooks"
    books.mkdir()
    for name in ("ok", "failed_check", "raises"):
        shutil.copy(NB / f"{name}.ipynb", books / f"{name}.ipynb")
    outputs = tmp_path / "outputs"
    code = main(["run", "--all", "--notebooks", str(books), "--outputs", str(outputs),
                 "--project", "demo", "-p", "threshold", "99"])
    out = capsys.readouterr().out.splitlines()
    assert code == 1  # a raised cell (1) is worse than a failed check (2)
    assert [ln.split()[0] for ln in out] == ["failed_check", "ok", "raises"]
    assert [ln.split()[2] for ln in out] == ["exit=0", "exit=0", "exit=1"]  # threshold 99 passes
    index = (outputs / "index.html").read_text()
    assert index.count("/report.html") == 3


def test_all_validates_every_runbook_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    books = tmp_path / "notebooks"
    books.mkdir()
    for name in ("ok", "failed_check"):
        shutil.copy(NB / f"{name}.ipynb", books / f"{name}.ipynb")
    code = main(["run", "--all", "--notebooks", str(books), "--outputs", str(tmp_path / "o"),
                 "-p", "threshold", "high"])
    assert code == 1 and "expected an int" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_secret_from_cli_and_env_reaches_no_file_and_no_output(tmp_path: Path) -> None:
    planted = {"db": "S3cr3t-Pl4nted-db-4410", "note": "S3cr3t-Pl4nted-note-5521",
               "token": "S3cr3t-Pl4nted-token-6632"}
    env = {**os.environ, "OPSLIB_TEST_TOKEN": planted["token"]}
    proc = _opslib("run", str(NB / "secret.ipynb"), "--outputs", str(tmp_path), "--show-code",
                   "-p", "db_password", planted["db"], "-p", "note", planted["note"],
                   "--secret", "note", "-p", "api_token", "env:OPSLIB_TEST_TOKEN", env=env)
    assert proc.returncode == 1, proc.stderr
    assert "login failed for ***REDACTED***" in proc.stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 4
    for blob in [p.read_bytes() for p in files] + [proc.stdout.encode(), proc.stderr.encode()]:
        for value in planted.values():
            assert value.encode() not in blob


@pytest.mark.slow
def test_concurrent_runs_get_their_own_folders(tmp_path: Path) -> None:
    procs = [subprocess.Popen([str(BIN / "opslib"), "run", str(NB / "ok.ipynb"), "--outputs",
                               str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=ROOT) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = sorted((tmp_path / "ok").iterdir())
    assert len(runs) == 2
    for run in runs:
        data = json.loads((run / "results.json").read_text())
        assert data["status"] == "passed" and data["parameters"]["output_dir"] == str(run)
    assert (tmp_path / "index.html").read_text().count("/report.html") == 2


def test_report_rebuilds_the_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "log-cleanup" / "20240101T000000Z-abcdef12"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({
        "runbook": "log-cleanup", "status": "passed", "exit_code": 0, "duration_s": 1.5,
        "started": "2024-01-01T00:00:00+00:00", "records": {"freed_bytes": 10}}))
    assert main(["report", "--outputs", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "index.html")
    assert "log-cleanup/20240101T000000Z-abcdef12/report.html" in (
        tmp_path / "index.html").read_text()


def test_python_dash_m_opslib_works() -> None:
    proc = subprocess.run([sys.executable, "-m", "opslib", "list", "--notebooks", str(NB)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and "sleeps" in proc.stdout


# ------------------------------------------------------------------ schedule / notify


def test_schedule_prints_crontab_and_systemd_units(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["schedule", "failed_check", "--notebooks", str(NB), "--every", "30m", "-p",
                 "threshold", "90", "--notify", "json://127.0.0.1:9/hook"])
    out = capsys.readouterr().out
    assert code == 0
    cron = next(ln for ln in out.splitlines() if ln.startswith("*/30 * * * * "))
    opslib_bin = str(BIN / "opslib")
    assert f"{opslib_bin} run {NB / 'failed_check.ipynb'}" in cron
    assert f"--outputs {ROOT / 'outputs'}" in cron and "-p threshold 90" in cron
    assert "--notify json://127.0.0.1:9/hook" in cron and "--timeout 1740" in cron
    assert "[Service]\nType=oneshot\n" in out and f"ExecStart={opslib_bin} run " in out
    assert "OnCalendar=*-*-* *:00/30:00\nPersistent=true\nUnit=opslib-failed_check.service" in out
    assert "WantedBy=timers.target" in out


def test_schedule_refuses_literal_secrets_and_bad_intervals(
    capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schedule", "secret", "--notebooks", str(NB), "--every", "1h", "-p",
                 "db_password", "hunter22"]) == 1
    err = capsys.readouterr().err
    assert "env:VARIABLE" in err and "hunter22" not in err
    assert main(["schedule", "secret", "--notebooks", str(NB), "--every", "1h", "-p",
                 "db_password", "env:DB_PASSWORD"]) == 0
    assert "-p db_password env:DB_PASSWORD" in capsys.readouterr().out
    assert main(["schedule", "ok", "--notebooks", str(NB), "--every", "7m"]) == 1
    assert "interval like" in capsys.readouterr().err


@pytest.mark.parametrize("text,cron,calendar", [
    ("1m", "* * * * *", "*-*-* *:*:00"), ("15m", "*/15 * * * *", "*-*-* *:00/15:00"),
    ("60m", "0 * * * *", "*-*-* *:00:00"), ("6h", "0 */6 * * *", "*-*-* 00/6:00:00"),
    ("1d", "0 0 * * *", "*-*-* 00:00:00"), ("3d", "0 0 */3 * *", "*-*-01/3 00:00:00"),
])
def test_intervals(text: str, cron: str, calendar: str) -> None:
    interval = schedule.parse_every(text)
    assert (interval.cron, interval.on_calendar) == (cron, calendar)


@pytest.mark.parametrize("text", ["", "1w", "7m", "5h", "0m", "40d", "h1"])
def test_bad_intervals(text: str) -> None:
    with pytest.raises(BadParameter):
        schedule.parse_every(text)


class _Hook(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def hook() -> Iterator[str]:
    _Hook.received = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"json://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_notify_posts_on_failure_only(
    tmp_path: Path, hook: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "failed_check", "--notebooks", str(NB), "--outputs", str(tmp_path),
                 "--notify", hook]) == 2
    assert len(_Hook.received) == 1
    msg = _Hook.received[0]
    assert msg["title"] == "opslib: failed_check check_failed"
    assert "exit code 2" in msg["message"] and "Failed checks: below_threshold" in msg["message"]
    assert "report.html" in msg["message"]
    assert main(["run", "ok", "--notebooks", str(NB), "--outputs", str(tmp_path),
                 "--notify", hook]) == 0
    assert len(_Hook.received) == 1  # a passing run sends nothing
    capsys.readouterr()


def test_bad_notify_url_is_refused_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "ok", "--notebooks", str(NB), "--outputs", str(tmp_path),
                 "--notify", "definitely not a url"]) == 1
    assert "apprise URL" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
