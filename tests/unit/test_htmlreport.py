"""HTML reports and the run index: figures really drawn offline, plotly.js once, size bounds."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import nbformat
import plotly.graph_objects as go
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from plotly.offline import get_plotlyjs

from opslib.report import PLOTLY_MIME
from opslib.runbook import htmlreport, runner

ROOT = Path(__file__).resolve().parents[2]
NB = ROOT / "tests" / "notebooks"
PLOTLYJS = get_plotlyjs()
SIGNATURE = PLOTLYJS[:120]  # the licence header at the top of plotly.min.js
RESULTS = {"runbook": "demo", "title": "Demo", "status": "passed", "exit_code": 0,
           "exit_reason": "ok", "run_id": "r1", "parameters": {"project": "shop"}}


def _fig(title: str) -> go.Figure:
    return go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2]), layout={"title": title})


def _notebook(*outputs: dict[str, Any]) -> Any:
    nb = new_notebook()
    nb.cells.append(new_markdown_cell("# Demo\nA demo."))
    cell = new_code_cell("fig.show()")
    cell.outputs = [new_output("display_data", data=d) for d in outputs]
    nb.cells.append(cell)
    return nb


def test_plotly_mimetype_only_outputs_become_divs_nbconvert_keeps() -> None:
    fig = _fig("plain show")
    nb = _notebook({PLOTLY_MIME: json.loads(fig.to_json())})
    page = htmlreport.render_report(nb, RESULTS)
    assert page.count('class="plotly-graph-div"') == 1
    assert "plain show" in page and page.count(SIGNATURE) == 1


def test_report_show_html_is_kept_and_plotlyjs_embedded_once() -> None:
    divs = [{PLOTLY_MIME: json.loads(_fig(f"f{i}").to_json()),
             "text/html": _fig(f"f{i}").to_html(full_html=False, include_plotlyjs=False),
             "text/plain": "<plotly figure>"} for i in range(3)]
    page = htmlreport.render_report(_notebook(*divs), RESULTS)
    assert page.count('class="plotly-graph-div"') == 3
    assert page.count(SIGNATURE) == 1


def test_outputs_that_embed_or_load_plotlyjs_are_stripped() -> None:
    fig = _fig("embedded")
    embedded = {"text/html": fig.to_html(full_html=False, include_plotlyjs=True)}
    cdn = {"text/html": fig.to_html(full_html=False, include_plotlyjs="cdn")}
    page = htmlreport.render_report(_notebook(embedded, cdn), RESULTS)
    assert page.count(SIGNATURE) == 1  # only the page's own copy
    assert 'src="https://cdn.plot.ly' not in page
    assert page.count('class="plotly-graph-div"') == 2


def test_report_without_figures_has_no_plotlyjs_and_code_hidden() -> None:
    nb = _notebook({"text/plain": "hello"})
    page = htmlreport.render_report(nb, RESULTS)
    assert SIGNATURE not in page and "hello" in page
    assert "fig.show()" not in page
    shown = htmlreport.render_report(nb, RESULTS, show_code=True)
    assert 'class="highlight' in shown and '<span class="n">show</span>' in shown


def test_header_has_target_parameters_times_status_version_host() -> None:
    results = {**RESULTS, "status": "check_failed", "exit_code": 2, "engine": "tcp://x:2375",
               "project": "shop", "started": "2024-01-01T00:00:00+00:00",
               "finished": "2024-01-01T00:00:09+00:00", "duration_s": 9.0,
               "opslib_version": "0.1.0", "host": "ops-1", "parameters": {"keep_days": 7},
               "failed_checks": [{"name": "disk", "ok": False, "detail": "93% > 80%"}]}
    page = htmlreport.render_report(_notebook({"text/plain": "x"}), results)
    for text in ("tcp://x:2375", "shop", "keep_days", "2024-01-01T00:00:09", "9.0 s", "0.1.0",
                 "ops-1", htmlreport.STATUS_COLOURS["check_failed"], "93% &gt; 80%"):
        assert text in page, text


def _write_run(root: Path, runbook: str, stamp: str, status: str, records: dict[str, Any]) -> None:
    run = root / runbook / f"{stamp}-00000000"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({
        "runbook": runbook, "status": status, "exit_code": 0, "duration_s": 2.0,
        "started": f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:00:00+00:00",
        "records": records, "units": {"used_bytes": "bytes"}}))


def test_index_lists_runs_newest_first_with_trends(tmp_path: Path) -> None:
    for i, used in enumerate([100, 300, 200]):
        _write_run(tmp_path, "log-cleanup", f"2024010{i + 1}T100000Z", "passed",
                   {"used_bytes": used, "note": "text"})
    _write_run(tmp_path, "restore-drill", "20240105T100000Z", "timeout", {"rto_s": 12.5})
    (tmp_path / "broken" / "x").mkdir(parents=True)
    (tmp_path / "broken" / "x" / "results.json").write_text("{not json")
    page = htmlreport.write_index(tmp_path).read_text()
    rows = [page.index(f"2024010{d}T10") for d in (5, 3, 2, 1)]
    assert rows == sorted(rows)  # newest first
    assert page.count('<svg class="spark"') == 2  # used_bytes and rto_s; text is not trended
    assert "last 200 bytes" in page and "min 100 · max 300 · 3 runs" in page
    assert htmlreport.STATUS_COLOURS["timeout"] in page
    assert "log-cleanup/20240103T100000Z-00000000/report.html" in page


def test_sparkline_scales_points() -> None:
    svg = htmlreport.sparkline([0.0, 10.0], width=100, height=20)
    assert 'points="0.0,17.0 100.0,3.0"' in svg


def _report_for(tmp_path: Path, n: int, plain: bool) -> Path:
    res = runner.run_runbook(NB / "figures.ipynb", {"n_figures": n, "plain_show": plain},
                             outputs_dir=tmp_path)
    assert res.exit_code == 0, res.exit_reason
    return res.report_path


@pytest.mark.slow
def test_report_size_is_plotlyjs_plus_half_a_megabyte_for_1_or_10_figures(tmp_path: Path) -> None:
    limit = len(PLOTLYJS.encode()) + 512 * 1024
    for n in (1, 10):
        page = _report_for(tmp_path, n, plain=False).read_text()
        assert page.count('class="plotly-graph-div"') == n
        assert page.count(SIGNATURE) == 1
        assert len(page.encode()) <= limit, (n, len(page.encode()), limit)


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:  # install it (root on Debian) rather than skip; fail if that is impossible
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "host-tools.sh"), "test"],
                              capture_output=True, text=True, timeout=900, check=False)
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if exe is None:
            pytest.fail(f"chromium is missing and host-tools.sh test failed:\n{proc.stderr}")
    return exe


@pytest.mark.slow
def test_figures_are_drawn_offline_in_headless_chromium(tmp_path: Path) -> None:
    report = _report_for(tmp_path / "outputs", 1, plain=True)  # report.show + plain fig.show()
    page = report.read_text()
    assert 'src="http' not in page  # nothing to fetch: plotly.js is inline
    exe = _chromium()
    proc = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--proxy-server=http://127.0.0.1:9",
         "--virtual-time-budget=10000", "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=180, check=False)
    dom = proc.stdout
    assert proc.returncode == 0 and "</html>" in dom, proc.stderr[-2000:]
    chunks = dom.split('class="plotly-graph-div')[1:]
    assert len(chunks) == 2  # both figures are in the page
    for chunk in chunks:  # and plotly.js drew each one: its SVG sits inside the figure's div
        assert 'class="main-svg"' in chunk
        assert "plot-container plotly" in chunk
    assert "plain fig.show" in dom and "opslib figure 0" in dom


def test_export_failure_still_writes_header_and_summary(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = "not a list of cells"  # nbconvert cannot render this
    path = htmlreport.write_report(nb, {**RESULTS, "status": "error", "failing_cell": {
        "cell_index": 3, "ename": "ValueError", "evalue": "boom", "source": "x"}},
        tmp_path / "report.html")
    page = path.read_text()
    assert "could not be rendered" in page and 'id="failing-cell"' in page and "boom" in page
