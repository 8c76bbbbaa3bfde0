"""The shared JSON-lines journal (opslib.journal)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from opslib.exceptions import BadInputFormat
from opslib.journal import Journal, latest_by


def test_append_adds_utc_time_first_and_reads_back(tmp_path: Path) -> None:
    j = Journal(tmp_path / "run" / "j.jsonl", time_key="time")
    assert j.entries() == [] and j.done_keys("file") == set()
    written = j.append({"file": "a", "status": "intent", "path": tmp_path})
    assert list(written) == ["time", "file", "status", "path"]
    assert dt.datetime.fromisoformat(written["time"]).utcoffset() == dt.timedelta(0)
    j.append({"file": "a", "status": "deleted"})
    lines = (tmp_path / "run" / "j.jsonl").read_text().splitlines()
    assert [json.loads(x)["status"] for x in lines] == ["intent", "deleted"]
    assert json.loads(lines[0])["path"] == str(tmp_path)  # non-JSON values as str()
    assert [e["status"] for e in j.entries()] == ["intent", "deleted"]


def test_done_keys_and_latest(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.jsonl")
    for svc, status in [("db", "applying"), ("db", "hardened"), ("api", "applying"),
                        ("api", "failed"), ("web", "skipped")]:
        j.append({"plan": "p1", "service": svc, "status": status})
    j.append({"plan": "p2", "service": "api", "status": "hardened"})
    assert j.done_keys("service", plan="p1", status="hardened") == {"db"}
    assert j.done_keys("service", status=("hardened", "skipped")) == {"db", "api", "web"}
    assert j.latest("service", plan="p1")["api"]["status"] == "failed"
    assert latest_by([{"id": 1, "event": "done"}, {"event": "done"}], "id", event="done") == {
        "1": {"id": 1, "event": "done"}}


def test_torn_last_line_is_skipped_and_cut_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text(json.dumps({"id": "a", "event": "start"}) + "\n" + '{"id": "a", "ev')
    j = Journal(path)
    assert [e["event"] for e in j.entries(strict=True)] == ["start"]
    j.append({"id": "a", "event": "done"})
    assert [e["event"] for e in j.entries(strict=True)] == ["start", "done"]
    assert path.read_text().count("\n") == 2


def test_whole_last_entry_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text(json.dumps({"id": "a", "event": "start"}))
    j = Journal(path)
    j.append({"id": "a", "event": "done"})
    assert [e["event"] for e in j.entries(strict=True)] == ["start", "done"]


def test_strict_read_rejects_a_corrupt_complete_line(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    path.write_text('{"id": 1}\n\n{broken\n[1, 2]\n{"id": 2}\n')
    assert [e["id"] for e in Journal(path).entries()] == [1, 2]
    with pytest.raises(BadInputFormat) as err:
        Journal(path).entries(strict=True)
    assert err.value.line == 3


APPENDER = """
import sys
from opslib.journal import Journal
j = Journal(sys.argv[1])
for i in range(100000):
    j.append({"id": i, "pad": "x" * 200})
    print(i, flush=True)
"""


def test_acknowledged_entries_survive_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", APPENDER, str(path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    acked = -1
    for line in proc.stdout:
        acked = int(line)
        if acked >= 50:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    ids = [e["id"] for e in Journal(path).entries()]
    assert ids == list(range(len(ids))) and len(ids) > acked
    Journal(path).append({"id": "after"})  # a rerun appends cleanly after the crash
    assert Journal(path).entries(strict=True)[-1]["id"] == "after"
