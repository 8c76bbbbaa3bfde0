"""Self-contained HTML: one report per run and ``outputs/index.html`` over every run.

``report.html`` = a header (runbook, target, parameters, times, status, version, host), what needs
attention first (the failing cell or timed-out cell, failed checks), the checks and recorded values,
then the executed notebook exported by nbconvert (``basic`` template, code hidden unless asked).
plotly.js is embedded once per report, from the installed plotly package, so figures draw offline.
Figures a notebook displayed the plain plotly way (``fig.show()``: only the plotly mimetype, which
nbconvert would drop silently) are turned into ``text/html`` divs before the export; scripts that
embed or load plotly.js inside outputs are removed (the page has it once).

``index.html`` lists every run under an outputs folder newest first, with a sparkline per runbook
and numeric record across runs (inline SVG: no JavaScript needed).
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import html
import json
import os
import re
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from opslib.runbook.report import FAIL, NOT_RUN, PASS, PLOTLY_MIME, RESULT_MIME, check_status

__all__ = ["STATUS_COLOURS", "load_runs", "render_index", "render_report", "render_scorecards",
           "sparkline", "write_index", "write_report"]

_CHECK_CLASS = {PASS: "pass", FAIL: "fail", NOT_RUN: "notrun"}
_CHECK_MARK = {PASS: "PASS", FAIL: "FAIL", NOT_RUN: "NOT RUN"}
STATUS_COLOURS = {"passed": "#1a7f37", "check_failed": "#9a6700", "error": "#cf222e",
                  "timeout": "#8250df", "kernel_died": "#8250df", "interrupted": "#59636e"}
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.IGNORECASE | re.DOTALL)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_E = html.escape

_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg2:#f6f8fa}
body{font:14px/1.45 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:var(--fg);
margin:0 auto;max-width:1200px;padding:16px 24px}
h1{font-size:22px;margin:8px 0}h2{font-size:17px;border-bottom:1px solid var(--line);
padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid var(--line);padding:3px 8px;
text-align:left;vertical-align:top}th{background:var(--bg2)}
.badge{display:inline-block;color:#fff;border-radius:12px;padding:2px 10px;font-weight:600}
.meta td:first-child{color:var(--muted);white-space:nowrap}
.alert{border:1px solid;border-left-width:6px;border-radius:6px;padding:8px 12px;margin:10px 0}
pre{background:var(--bg2);padding:8px;overflow-x:auto;font-size:12.5px;margin:4px 0}
.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}.notrun{color:#6e7781;font-weight:600}
.prompt,.input_prompt,.output_prompt{display:none}
.cell{margin:6px 0}.output_subarea{overflow-x:auto;max-width:100%}
.output_stderr pre{background:#fff5f5}
.output_error pre{background:#ffebe9}
table.dataframe,table.opslib-table{font-size:12.5px}
.text_cell_render{margin-top:10px}
a{color:#0969da}.muted{color:var(--muted)}
svg.spark{vertical-align:middle}
.stars{color:#bf8700;font-size:16px;letter-spacing:1px}
"""


@functools.lru_cache(maxsize=1)
def _plotlyjs() -> str:
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


@functools.lru_cache(maxsize=2)
def _exporter(show_code: bool) -> Any:
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="basic", exclude_input=not show_code,
                        exclude_input_prompt=True, exclude_output_prompt=True)


def _figure_div(fig: Any) -> str:
    import plotly.io as pio

    return str(pio.to_html(fig, include_plotlyjs=False, full_html=False, validate=False,
                           config={"responsive": True}))


def _strip_plotly_scripts(text: str) -> str:
    """Remove scripts that embed plotly.js or load it from a CDN (the page embeds it once)."""
    def keep(m: re.Match[str]) -> str:
        attrs, body = m.group(1), m.group(2)
        if "src=" in attrs and "plot" in attrs.lower():
            return ""
        if len(body) > 200_000 and "plotly" in body.lower():
            return ""
        return m.group(0)

    return _SCRIPT.sub(keep, text)


def prepare_notebook(nb: Any, show_code: bool = False) -> Any:
    """A copy of the notebook ready for nbconvert: every figure as a ``text/html`` div."""
    out_nb = copy.deepcopy(nb)
    cells = []
    for cell in out_nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if not show_code and "injected-parameters" in tags:
            continue
        for out in cell.get("outputs", []):
            data = out.get("data")
            if not data:
                continue
            if PLOTLY_MIME in data and "text/html" not in data:
                data["text/html"] = _figure_div(data[PLOTLY_MIME])
            elif "text/html" in data and isinstance(data["text/html"], str | list):
                text = "".join(data["text/html"])
                if "<script" in text.lower():
                    data["text/html"] = _strip_plotly_scripts(text)
            if _WIDGET_MIME in data:
                del data[_WIDGET_MIME]
                data["text/html"] = ('<div class="muted">(interactive control: open the '
                                     "notebook in JupyterLab to use it)</div>")
            data.pop(RESULT_MIME, None)
            data.pop(PLOTLY_MIME, None)
        cells.append(cell)
    out_nb.cells = cells
    out_nb.metadata.pop("widgets", None)
    return out_nb


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _badge(status: str) -> str:
    colour = STATUS_COLOURS.get(status, "#59636e")
    return f'<span class="badge" style="background:{colour}">{_E(status)}</span>'


def _header(results: dict[str, Any]) -> str:
    params = results.get("parameters", {})
    prow = "".join(f"<tr><td><code>{_E(k)}</code></td><td><code>{_E(_short(v))}</code></td></tr>"
                   for k, v in params.items()) or '<tr><td colspan="2">(none)</td></tr>'
    rows = [
        ("Status", f"{_badge(results.get('status', '?'))} exit code "
                   f"<b>{results.get('exit_code')}</b> — "
                   f"{_E(str(results.get('exit_reason', '')))}"),
        ("Target", f"engine <code>{_E(str(results.get('engine', '')))}</code>, compose project "
                   f"<code>{_E(str(results.get('project', '')))}</code>"),
        ("Started", _E(str(results.get("started", "")))),
        ("Finished", _E(str(results.get("finished", "")))),
        ("Duration", f"{float(results.get('duration_s') or 0):.1f} s"
                     + (f" (timeout {results['timeout_s']:g} s)" if results.get("timeout_s")
                        else "")),
        ("Host", _E(str(results.get("host", "")))),
        ("opslib", _E(str(results.get("opslib_version", "")))
                   + f" (Python {_E(str(results.get('python', '')))})"),
        ("Run", f"<code>{_E(str(results.get('run_id', '')))}</code> · "
                '<a href="notebook.ipynb">notebook.ipynb</a> · '
                '<a href="results.json">results.json</a> · '
                '<a href="../../index.html">all runs</a>'),
    ]
    meta = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows)
    return (f"<h1>{_E(str(results.get('runbook', '')))} — {_E(str(results.get('title', '')))}"
            f"</h1>\n<table class=\"meta\">{meta}</table>\n"
            f"<details open><summary>Parameters</summary><table>{prow}</table></details>")


def _attention(results: dict[str, Any]) -> str:
    parts = []
    colour = STATUS_COLOURS.get(str(results.get("status")), "#59636e")
    failing = results.get("failing_cell")
    if failing:
        tb = "\n".join(_ANSI.sub("", str(x)) for x in failing.get("traceback") or [])[-6000:]
        head = (f"Cell {failing.get('cell_index')} raised <code>{_E(str(failing.get('ename')))}"
                f"</code>: {_E(str(failing.get('evalue')))}"
                if results.get("status") == "error"
                else f"{_E(str(results.get('exit_reason', '')))}")
        parts.append(
            f'<div class="alert" id="failing-cell" style="border-color:{colour}">'
            f"<b>{head}</b>" + (f"<pre>{_E(tb)}</pre>" if tb else "")
            + f"<details><summary>Cell source</summary><pre>{_E(str(failing.get('source', '')))}"
            "</pre></details></div>")
    failed = results.get("failed_checks") or []
    if failed:
        items = "".join(
            f"<li><code>{_E(str(c.get('name')))}</code>: {_E(str(c.get('detail', '')))}"
            + (f" <span class=\"muted\">{_E(_short(c.get('data'), 300))}</span>"
               if c.get("data") is not None else "") + "</li>" for c in failed)
        parts.append(f'<div class="alert" id="failed-checks" style="border-color:#cf222e">'
                     f"<b>{len(failed)} check(s) failed</b><ul>{items}</ul></div>")
    checks = results.get("checks") or []
    skipped = [c for c in checks if check_status(c) == NOT_RUN]
    if skipped:
        items = "".join(f"<li><code>{_E(str(c.get('name')))}</code>: {_E(str(c.get('detail', '')))}"
                        "</li>" for c in skipped)
        parts.append(f'<div class="alert" id="not-run-checks" style="border-color:#6e7781">'
                     f"<b>{len(skipped)} check(s) not run</b> (neither passed nor failed: "
                     f"what they check is unknown)<ul>{items}</ul></div>")
    if checks:
        rows = "".join(
            f"<tr><td class=\"{_CHECK_CLASS[check_status(c)]}\">"
            f"{_CHECK_MARK[check_status(c)]}</td><td><code>{_E(str(c.get('name')))}</code>"
            f"</td><td>{_E(str(c.get('detail', '')))}</td></tr>" for c in checks)
        parts.append(f"<h2>Checks</h2><table><tr><th></th><th>check</th><th>detail</th></tr>"
                     f"{rows}</table>")
    records = results.get("records") or {}
    units = results.get("units") or {}
    if records:
        rows = "".join(f"<tr><td><code>{_E(k)}</code></td><td>{_E(_short(v, 300))}</td>"
                       f"<td>{_E(str(units.get(k, '')))}</td></tr>" for k, v in records.items())
        parts.append("<h2>Recorded values</h2><table><tr><th>name</th><th>value</th>"
                     f"<th>unit</th></tr>{rows}</table>")
    return "\n".join(parts)


def render_report(nb: Any, results: dict[str, Any], *, show_code: bool = False) -> str:
    """The full ``report.html`` page for an executed (already redacted) notebook."""
    body, _ = _exporter(show_code).from_notebook_node(prepare_notebook(nb, show_code))
    return _page(results, body, show_code)


def _page(results: dict[str, Any], body: str, show_code: bool) -> str:
    plotly = ""
    if "Plotly.newPlot" in body or "plotly-graph-div" in body:
        plotly = f'<script type="text/javascript">{_plotlyjs()}</script>'
    pygments = ""
    if show_code:
        from pygments.formatters import HtmlFormatter  # type: ignore[import-untyped]

        pygments = str(HtmlFormatter().get_style_defs(".highlight"))
    title = " ".join(str(results.get(k, "")) for k in ("runbook", "status", "run_id"))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_E(title)}</title><style>{_CSS}{pygments}</style>{plotly}</head>\n<body>\n"
        f"{_header(results)}\n{_attention(results)}\n<h2>Notebook</h2>\n"
        f'<div class="notebook">{body}</div>\n</body></html>\n')


def write_report(nb: Any, results: dict[str, Any], path: Path, *, show_code: bool = False) -> Path:
    """Write ``report.html``; if the notebook cannot be exported, still write header and summary."""
    try:
        text = render_report(nb, results, show_code=show_code)
    except Exception as exc:  # a broken output must not cost the report of a failed run
        body = (f'<div class="alert" style="border-color:#cf222e">The notebook could not be '
                f"rendered ({_E(type(exc).__name__)}: {_E(str(exc))}); open notebook.ipynb."
                "</div>")
        text = _page(results, body, False)
    _write(path, text)
    return path


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- index


def load_runs(outputs_dir: Path) -> list[dict[str, Any]]:
    """Every ``<outputs>/<runbook>/<run>/results.json``, newest first (unreadable ones skipped)."""
    runs = []
    for path in Path(outputs_dir).glob("*/*/results.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or "runbook" not in data or "status" not in data:
            continue
        data["_rel"] = path.parent.relative_to(outputs_dir).as_posix()
        runs.append(data)
    runs.sort(key=lambda r: (str(r.get("started", "")), r["_rel"]), reverse=True)
    return runs


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def sparkline(values: list[float], width: int = 140, height: int = 28) -> str:
    """A small inline SVG line of ``values`` (oldest first), last point marked."""
    if not values:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    step = width / max(len(values) - 1, 1)
    pts = [(i * step if len(values) > 1 else width / 2,
            height - 3 - (v - lo) / span * (height - 6)) for i, v in enumerate(values)]
    poly = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
    x, y = pts[-1]
    return (f'<svg class="spark" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
            f'<polyline fill="none" stroke="#0969da" stroke-width="1.5" points="{poly}"/>'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#0969da"/></svg>')


def _fmt(value: Any, unit: str = "") -> str:
    if isinstance(value, float):
        value = f"{value:.4g}"
    return _short(value, 40) + (f" {unit}" if unit else "")


def _key_results(run: dict[str, Any], limit: int = 4) -> str:
    records = run.get("records") or {}
    units = run.get("units") or {}
    names = sorted(records, key=lambda k: _numeric(records[k]) is None)[:limit]
    return "<br>".join(f"<code>{_E(k)}</code> {_E(_fmt(records[k], units.get(k, '')))}"
                       for k in names)


def _stars_cell(stars: Any) -> str:
    if stars is None or (isinstance(stars, float) and stars != stars):
        return '<span class="muted">not assessed</span>'
    n = int(stars)
    return f'<span class="stars" title="{n} of 5">{"★" * n}{"☆" * (5 - n)}</span>'


def render_scorecards(outputs_dir: Path, *, max_points: int = 30) -> str:
    """The index's first section: each project's scorecard now, with its trend (sparklines)."""
    from opslib import scorecard

    history = scorecard.load_history(outputs_dir)
    parts = []
    for project in scorecard.projects_in(history):
        card = scorecard.compute_scorecard(history, project)
        trend = scorecard.scorecard_trend(history, project, max_points=max_points)
        rows = []
        for c in card.categories:
            vals = [float(v) for v in trend[c.key].tolist() if v is not None and v == v]
            evidence = sorted({r.run.split(", ")[0] for r in c.results if r.run})[:3]
            links = " · ".join(f'<a href="{_E(rel)}/report.html">{_E(rel.split("/")[0])}</a>'
                               for rel in evidence)
            nxt = "; ".join(r.rule.title for r in c.next_missing)
            rows.append(
                f"<tr><td>{_E(c.label)}</td><td>{_stars_cell(c.stars)}</td>"
                f"<td>{sparkline(vals, 100, 20) if len(vals) > 1 else ''}</td>"
                f"<td>{_E(nxt)}</td><td>{links}</td><td class=\"muted\">"
                f"{_E(c.expires.strftime('%Y-%m-%d') if c.expires else '')}</td></tr>")
        overall = [float(v) for v in trend["overall"].tolist() if v is not None and v == v]
        parts.append(
            f"<h3>{_E(project)}: overall {_stars_cell(card.overall)} "
            f"{sparkline(overall, 120, 22) if len(overall) > 1 else ''}"
            f' <span class="muted">({len(card.assessed)} of {len(card.categories)} categories '
            f"assessed, proofs count for {card.freshness_days:g} days)</span></h3>"
            "<table><tr><th>category</th><th>stars</th><th>trend</th><th>next star needs</th>"
            f"<th>evidence</th><th>valid until</th></tr>{''.join(rows)}</table>")
    if not parts:
        return "<h2>Scorecard</h2><p class=\"muted\">(no runs yet: not assessed)</p>\n"
    return "<h2>Scorecard</h2>\n" + "".join(parts) + "\n"


def render_index(runs: list[dict[str, Any]], *, max_points: int = 30,
                 scorecards: str = "") -> str:
    """The ``index.html`` page for ``runs`` (as returned by :func:`load_runs`).

    Args:
        runs: The runs, newest first.
        max_points: Points per sparkline.
        scorecards: HTML of the scorecard section, shown first (see :func:`render_scorecards`).
    """
    rows = []
    for r in runs:
        rel = _E(r["_rel"])
        rows.append(
            f"<tr><td>{_E(str(r.get('started', '')))}</td><td>{_E(str(r.get('runbook')))}</td>"
            f"<td>{_badge(str(r.get('status')))}</td><td>{_E(str(r.get('exit_code')))}</td>"
            f"<td>{float(r.get('duration_s') or 0):.1f} s</td><td>{_key_results(r)}</td>"
            f'<td><a href="{rel}/report.html">report</a> · <a href="{rel}/results.json">json</a>'
            f' · <a href="{rel}/notebook.ipynb">ipynb</a></td></tr>')
    series: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    units: dict[tuple[str, str], str] = {}
    for r in reversed(runs):  # oldest first
        for name, value in (r.get("records") or {}).items():
            num = _numeric(value)
            if num is not None:
                series[str(r["runbook"])][name].append(num)
                units[(str(r["runbook"]), name)] = (r.get("units") or {}).get(name, "")
    trends = []
    for runbook in sorted(series):
        lines = []
        for name, vals in sorted(series[runbook].items())[:12]:
            vals = vals[-max_points:]
            unit = units.get((runbook, name), "")
            lines.append(f"<tr><td><code>{_E(name)}</code></td><td>{sparkline(vals)}</td>"
                         f"<td>last {_E(_fmt(vals[-1], unit))}</td><td class=\"muted\">min "
                         f"{_E(_fmt(min(vals)))} · max {_E(_fmt(max(vals)))} · {len(vals)} runs"
                         "</td></tr>")
        trends.append(f"<h3>{_E(runbook)}</h3><table>{''.join(lines)}</table>")
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    counts: dict[str, int] = defaultdict(int)
    for r in runs:
        counts[str(r.get("status"))] += 1
    summary = " ".join(f"{_badge(s)} {n}" for s, n in sorted(counts.items()))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>opslib runs</title><style>{_CSS}</style></head>\n<body>\n"
        f"<h1>opslib runs</h1><p class=\"muted\">{len(runs)} runs · rebuilt {now}</p>"
        f"<p>{summary}</p>\n{scorecards}"
        "<h2>Runs, newest first</h2>\n<table><tr><th>started (UTC)</th><th>runbook</th>"
        "<th>status</th><th>exit</th><th>duration</th><th>key results</th><th>files</th></tr>"
        f"{''.join(rows)}</table>\n"
        f"<h2>Trends</h2>\n{''.join(trends) or '<p>(no numeric records)</p>'}\n</body></html>\n")


def write_index(outputs_dir: str | Path) -> Path:
    """Rebuild ``<outputs>/index.html`` from every run's results.json; returns its path."""
    root = Path(outputs_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "index.html"
    _write(path, render_index(load_runs(root), scorecards=render_scorecards(root)))
    return path
