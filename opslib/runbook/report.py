"""Helpers notebooks call to show and record what a runbook found.

``record(name, value)`` and ``check(name, ok, detail)`` display the value for the person reading
the notebook and also attach it, machine-readable, to the cell output under the
:data:`RESULT_MIME` mimetype. The runner (``opslib run``) collects them from the executed notebook
into ``results.json``; tests that run a notebook with plain papermill read them back with
:func:`results_from_notebook`. Nothing depends on files or environment variables, so a notebook
behaves the same in JupyterLab, under papermill and under ``opslib run``.

``show(fig)`` displays a plotly figure so that it is drawn both in JupyterLab (plotly mimetype)
and in the exported HTML report (a ``text/html`` div; the report embeds plotly.js once).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from opslib.engine import Client
from opslib.redact import redact_text

__all__ = [
    "FAIL",
    "NOT_RUN",
    "PASS",
    "PLOTLY_MIME",
    "RESULT_MIME",
    "apply_button",
    "apply_plan",
    "check",
    "check_status",
    "jsonable",
    "not_run",
    "output_dir",
    "record",
    "record_checks",
    "results_from_notebook",
    "show",
    "table",
]

RESULT_MIME = "application/vnd.opslib.result+json"
PLOTLY_MIME = "application/vnd.plotly.v1+json"


def jsonable(value: Any) -> Any:
    """Convert a value into plain JSON types (numpy/pandas scalars, dates, paths, frames).

    Args:
        value: Any value a notebook may record.

    Returns:
        A value ``json.dumps`` accepts; NaN and infinities become ``None``.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    if isinstance(value, _dt.datetime | _dt.date):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and hasattr(value, "columns"):  # pandas DataFrame
        return jsonable(to_dict(orient="records"))
    item = getattr(value, "item", None)  # numpy / pandas scalar
    if callable(item):
        try:
            return jsonable(item())
        except (TypeError, ValueError):
            pass
    return str(value)


def _display(bundle: dict[str, Any]) -> None:
    try:
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython ships with ipykernel
        return
    display(bundle, raw=True)


def record(name: str, value: Any, *, unit: str = "", display: bool = True) -> None:
    """Record a named result of this runbook and show it.

    Args:
        name: A stable identifier (``"log_bytes_used"``); later runs are trended by it.
        value: A JSON-able value (numbers, strings, lists, dicts, DataFrames).
        unit: Optional unit shown next to the value (``"bytes"``, ``"s"``).
        display: Show it in the notebook (the machine-readable part is always attached).

    Returns nothing on purpose: a returned value would be echoed again (unredacted) when
    ``record`` is the last line of a cell.
    """
    payload = {"kind": "record", "name": name, "value": jsonable(value), "unit": unit}
    text = redact_text(f"{name} = {_short(payload['value'])}{' ' + unit if unit else ''}")
    bundle: dict[str, Any] = {RESULT_MIME: payload, "text/plain": text}
    if display:
        bundle["text/html"] = (
            f'<div class="opslib-record"><code>{html.escape(name)}</code> = '
            f"<b>{html.escape(redact_text(_short(payload['value'])))}</b>"
            f"{' ' + html.escape(unit) if unit else ''}</div>"
        )
    _display(bundle)


#: The three outcomes of a check (``status`` in results.json).
PASS, FAIL, NOT_RUN = "pass", "fail", "not_run"
_MARKS = {PASS: ("PASS", "#1a7f37"), FAIL: ("FAIL", "#cf222e"), NOT_RUN: ("NOT RUN", "#6e7781")}


def check(name: str, ok: bool | None, detail: str = "", *, data: Any = None) -> None:
    """Record a check: passed, failed, or not run. A failed check makes ``opslib run`` exit 2.

    Args:
        name: A stable identifier (``"fs_below_threshold"``).
        ok: ``True`` passed, ``False`` failed, ``None`` could not run (a tool is missing, no
            input was given): the detail must say why and what to do; the exit code is unaffected.
        detail: One sentence saying what was compared (shown, and kept in results.json).
        data: Optional JSON-able evidence (e.g. the failing objects).

    Returns nothing, so the verdict is not echoed twice as a cell result.
    """
    status = NOT_RUN if ok is None else PASS if bool(ok) else FAIL
    detail = redact_text(detail)
    payload = {"kind": "check", "name": name, "ok": None if ok is None else bool(ok),
               "status": status, "detail": detail, "data": jsonable(data)}
    mark, colour = _MARKS[status]
    bundle = {
        RESULT_MIME: payload,
        "text/plain": f"[{mark}] {name}: {detail}",
        "text/html": (
            f'<div class="opslib-check opslib-check-{status.replace("_", "-")}" '
            f'style="border-left:4px solid {colour};padding:2px 8px;margin:2px 0">'
            f'<b style="color:{colour}">{mark}</b> <code>{html.escape(name)}</code> '
            f"{html.escape(detail)}</div>"
        ),
    }
    _display(bundle)


def not_run(name: str, reason: str) -> None:
    """Record that a check could not run, and why (shorthand for ``check(name, None, reason)``).

    Args:
        name: The check's identifier, the same as when it runs.
        reason: Why it did not run and what to do, e.g. "logrotate is not installed: apt-get
            install logrotate".
    """
    check(name, None, reason)


def check_status(c: Mapping[str, Any]) -> str:
    """The outcome of a collected check: ``pass``, ``fail`` or ``not_run``.

    Checks recorded before the ``status`` field existed have only ``ok`` (true or false).

    Args:
        c: One entry of ``results_from_notebook(...)["checks"]``.
    """
    status = c.get("status")
    if status in (PASS, FAIL, NOT_RUN):
        return str(status)
    return PASS if c.get("ok") else FAIL


def record_checks(checks: Any, **records: Any) -> Any:
    """Record a domain's checks frame (name, ok, detail) and named values, in that order.

    Domains compute their verdicts as a frame and never import this module; the notebook hands
    the frame here, one :func:`check` per row (``ok`` None is "not run").

    Args:
        checks: A DataFrame with columns name, ok, detail.
        **records: Values to :func:`record` first (name = keyword).

    Returns:
        ``checks``, unchanged.
    """
    for name, value in records.items():
        record(name, value)
    for name, ok, detail in checks[["name", "ok", "detail"]].itertuples(index=False):
        check(str(name), None if ok is None else bool(ok), str(detail))
    return checks


def show(fig: Any) -> None:
    """Display a plotly figure so it is drawn in JupyterLab and in the HTML report.

    The output carries the plotly mimetype (JupyterLab renders it) and a ``text/html`` div
    without plotly.js (the report template embeds plotly.js once for all figures).

    Args:
        fig: A ``plotly.graph_objects.Figure``.
    """
    fig_json = json.loads(fig.to_json())
    div = fig.to_html(full_html=False, include_plotlyjs=False, config={"responsive": True})
    _display({PLOTLY_MIME: fig_json, "text/html": div, "text/plain": "<plotly figure>"})


def table(df: Any, *, max_rows: int = 50, caption: str = "") -> None:
    """Display a DataFrame (pandas or polars) as a compact, redacted HTML table.

    Args:
        df: The frame.
        max_rows: Rows shown; the rest are counted in a footer.
        caption: Optional caption above the table.
    """
    if hasattr(df, "to_pandas") and not hasattr(df, "to_html"):
        df = df.to_pandas()
    n = len(df)
    shown = df.head(max_rows)
    body = redact_text(shown.to_html(index=False, border=0, classes="opslib-table", na_rep=""))
    foot = f"<div><i>{n - max_rows} more rows not shown</i></div>" if n > max_rows else ""
    cap = f"<div><b>{html.escape(caption)}</b></div>" if caption else ""
    _display({"text/html": cap + body + foot,
              "text/plain": redact_text(shown.to_string(index=False))})


def results_from_notebook(nb: Any) -> dict[str, Any]:
    """Collect recorded values and checks from an executed notebook.

    Args:
        nb: A notebook node (``nbformat``) or the path of an ``.ipynb`` file.

    Returns:
        ``{"records": {name: value}, "units": {name: unit},
        "checks": [{name, ok, status, detail, data}]}`` (status ``pass``/``fail``/``not_run``);
        a name recorded twice keeps its last value.
    """
    if isinstance(nb, str | Path):
        nb = json.loads(Path(nb).read_text())
    records: dict[str, Any] = {}
    units: dict[str, str] = {}
    checks: list[dict[str, Any]] = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            payload = out.get("data", {}).get(RESULT_MIME)
            if not payload:
                continue
            if isinstance(payload, str):
                payload = json.loads(payload)
            if payload.get("kind") == "record":
                records[payload["name"]] = payload.get("value")
                if payload.get("unit"):
                    units[payload["name"]] = payload["unit"]
            elif payload.get("kind") == "check":
                entry = {k: payload.get(k) for k in ("name", "ok", "detail", "data")}
                entry["status"] = check_status(payload)
                checks.append(entry)
    return {"records": records, "units": units, "checks": checks}


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def output_dir(path: str | Path, runbook: str) -> Path:
    """The folder where a runbook writes its artefacts (journals, generated files, backups...).

    ``opslib run`` passes each run's own folder as the notebook's ``output_dir`` parameter; an
    interactive run leaves it empty and gets ``outputs/interactive/<runbook>/``.

    Args:
        path: The notebook's ``output_dir`` parameter ("" when interactive).
        runbook: The runbook name, e.g. ``"log-cleanup"``.

    Returns:
        The folder, created if missing.
    """
    folder = Path(path) if str(path) else Path("outputs") / "interactive" / runbook
    if not folder.is_absolute() and not str(path):
        # Notebooks run with notebooks/ as the working directory; keep outputs at the repo root.
        here = Path.cwd()
        root = here.parent if here.name == "notebooks" else here
        folder = root / folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def apply_plan(
    action: Callable[..., Any],
    plan: Any,
    *,
    apply: bool,
    label: str,
    client: Client | None = None,
    journal: str | Path | None = None,
    caption: str = "",
    **options: Any,
) -> Any:
    """Apply a plan now when ``apply`` is true; otherwise show its dry run and an Apply button.

    The one "apply now or offer the Apply button" step of every runbook that changes a system:
    ``action`` is an ``apply_*`` function with the signature of
    :class:`opslib._plan.ApplyFunction`; it is called with ``apply`` as given (the dry run when
    false) and its frame is shown. A dry run of a non-empty plan adds the button, which calls the
    same function with ``apply=True``.

    Args:
        action: The domain's ``apply_*`` function.
        plan: The plan its ``plan_*`` function built (shown before this step).
        apply: The runbook's ``apply`` parameter.
        label: The button text, e.g. ``"Apply 3 actions"``.
        client: The Docker client, for applies that touch containers.
        journal: The run's output folder or journal file.
        caption: Caption of the shown frame (default: "Applied" / "Dry run: ...").
        **options: The apply function's own keyword options.

    Returns:
        What ``action`` returned (the applied or dry-run frame).
    """
    from opslib._plan import plan_size

    kwargs = {"client": client, "journal": journal, **options}
    result = action(plan, apply=apply, **kwargs)
    table(result, caption=caption or ("Applied" if apply else "Dry run: what Apply would do"))
    if not apply and plan_size(plan):
        apply_button(label, action, plan, apply=True, **kwargs)
    return result


def apply_button(
    label: str, action: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """Show an Apply button that runs ``action(*args, **kwargs)`` when a person clicks it.

    Used by runbooks after a plan is shown and ``apply=False``: headless runs never click, so
    nothing changes; in JupyterLab a person reviews the plan and clicks. The action's return value
    (a DataFrame or text) is displayed under the button.

    Args:
        label: Button text, e.g. ``"Apply 3 actions"``.
        action: The library function that applies the plan.
        *args: Positional arguments for ``action``.
        **kwargs: Keyword arguments for ``action``.

    Returns:
        The ``ipywidgets.VBox`` holding the button and its output area.
    """
    import ipywidgets as widgets
    from IPython.display import display

    button = widgets.Button(description=label, button_style="danger", icon="check")
    out = widgets.Output()

    def _on_click(_: Any) -> None:
        button.disabled = True
        with out:
            try:
                display(action(*args, **kwargs))
            except Exception as exc:  # shown to the person who clicked, never swallowed silently
                display({"text/plain": f"Apply failed: {exc}"}, raw=True)
                button.disabled = False

    button.on_click(_on_click)
    box = widgets.VBox([button, out])
    display(box)
    return box
