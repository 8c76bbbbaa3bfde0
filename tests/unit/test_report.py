"""The record/check contract between notebooks and the runner, exercised in a real kernel."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from opslib.report import RESULT_MIME, jsonable, output_dir, results_from_notebook


def test_jsonable_converts_common_types() -> None:
    df = pd.DataFrame({"a": [1, 2], "b": [0.5, float("nan")]})
    out = jsonable({"n": pd.Series([3]).iloc[0], "t": dt.datetime(2026, 1, 2, 3, 4),
                    "d": dt.timedelta(seconds=90), "p": Path("/x"), "df": df,
                    "inf": math.inf})
    assert out["n"] == 3 and isinstance(out["n"], int)
    assert out["t"] == "2026-01-02T03:04:00"
    assert out["d"] == 90.0
    assert out["p"] == "/x"
    assert out["df"] == [{"a": 1, "b": 0.5}, {"a": 2, "b": None}]
    assert out["inf"] is None


def _run(sources: list[str], tmp_path: Path) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    NotebookClient(nb, timeout=60, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


@pytest.mark.slow
def test_record_and_check_round_trip_through_a_kernel(tmp_path: Path) -> None:
    nb = _run([
        "from opslib import report",
        "report.record('disk_used', 123, unit='bytes')",
        "report.record('disk_used', 456, unit='bytes')",
        "report.record('dsn_shown', 'postgresql://u:hunter2x@h/db')",
        "report.check('fs_ok', False, 'used 91% > 80%', data=['/var'])",
        "report.check('healthy', True, 'all good')",
        "report.check('tool_check', None, 'frob is not installed')",
    ], tmp_path)
    res = results_from_notebook(nb)
    assert res["records"]["disk_used"] == 456
    assert res["units"]["disk_used"] == "bytes"
    assert [c["name"] for c in res["checks"]] == ["fs_ok", "healthy", "tool_check"]
    assert res["checks"][0] == {"name": "fs_ok", "ok": False, "detail": "used 91% > 80%",
                                "data": ["/var"], "status": "fail"}
    assert [c["status"] for c in res["checks"]] == ["fail", "pass", "not_run"]
    assert res["checks"][2]["ok"] is None
    # The displayed text never shows the password, even though the raw record keeps the value
    # the notebook passed (the runner redacts results.json as a whole).
    shown = "".join(o["data"].get("text/html", "") + o["data"].get("text/plain", "")
                    for c in nb.cells for o in c.get("outputs", []) if "data" in o)
    assert "hunter2x" not in shown
    assert any(RESULT_MIME in o.get("data", {}) for c in nb.cells for o in c["outputs"])


@pytest.mark.slow
def test_show_emits_plotly_and_html_without_plotlyjs(tmp_path: Path) -> None:
    nb = _run([
        "import plotly.graph_objects as go\nfrom opslib import report\n"
        "report.show(go.Figure(go.Bar(x=['a'], y=[1])))",
    ], tmp_path)
    data = nb.cells[0]["outputs"][0]["data"]
    assert "application/vnd.plotly.v1+json" in data
    assert "Plotly.newPlot" in data["text/html"]
    assert len(data["text/html"]) < 50_000  # no plotly.js bundle per figure


def test_output_dir_default_and_explicit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    d = output_dir("", "log-cleanup")
    assert d == tmp_path / "outputs" / "interactive" / "log-cleanup" and d.is_dir()
    explicit = output_dir(str(tmp_path / "run1"), "log-cleanup")
    assert explicit == tmp_path / "run1" and explicit.is_dir()
