"""Headless runs of runbook notebooks: the engine behind ``opslib run`` and its Python API.

A run resolves a runbook (``notebooks/<name>.ipynb`` or a path), validates the parameters against
the notebook's ``parameters`` cell *before* anything executes, executes it with papermill's
notebook client in its own folder ``outputs/<runbook>/<UTC stamp>-<id>/`` and writes there:

* ``notebook.ipynb`` - the executed notebook, secrets redacted;
* ``results.json`` - status, exit code and reason, parameters (redacted), timings, every value the
  notebook recorded with :func:`opslib.report.record` and every :func:`opslib.report.check`;
* ``report.html`` - the self-contained report (:mod:`opslib.runbook.htmlreport`).

Exit codes a scheduler can act on: 0 every check passed, 1 a cell raised, 2 a check failed, 3 the
run timed out or its kernel died. Secret parameters (by name, ``--secret NAME`` or ``env:VAR``
values) reach the kernel through its environment only; the injected-parameters cell reads them
from there, so no file the run writes ever holds them.
"""

from __future__ import annotations

import collections
import copy
import datetime as dt
import html
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NotebookExecutionManager
from papermill.translators import translate_parameters

from opslib.exceptions import BadParameter
from opslib.redact import MASK, looks_secret_name, redact_mapping, redact_text
from opslib.runbook.catalog import (
    ParamSpec,
    RunbookInfo,
    find_root,
    inspect_parameters,
    list_runbooks,
    resolve_runbook,
    validate_parameters,
)
from opslib.runbook.report import FAIL, NOT_RUN, check_status, results_from_notebook

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "ParamSpec",
    "RunResult",
    "RunbookInfo",
    "find_root",
    "inspect_parameters",
    "list_runbooks",
    "redact_notebook",
    "resolve_runbook",
    "run_runbook",
    "validate_parameters",
    "worst_exit_code",
]

EXIT_OK, EXIT_ERROR, EXIT_CHECK_FAILED, EXIT_TIMEOUT = 0, 1, 2, 3
#: Severity for ``--all``: timeout/dead kernel is worst, then a raised cell, then a failed check.
_SEVERITY = {EXIT_OK: 0, EXIT_CHECK_FAILED: 1, EXIT_ERROR: 2, EXIT_TIMEOUT: 3}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: Seconds between (redacted) saves of the notebook while it runs; the final save always happens.
AUTOSAVE_SECONDS = 30.0


def worst_exit_code(codes: Iterable[int]) -> int:
    """The exit code of several runs: 3 (timeout) > 1 (cell raised) > 2 (check failed) > 0."""
    return max(codes, key=lambda c: _SEVERITY.get(c, 4), default=EXIT_OK)


def _secret_variants(values: Iterable[Any]) -> list[str]:
    """Each secret as it may appear in outputs: raw, JSON-, HTML- and URL-escaped."""
    out: set[str] = set()
    for value in values:
        text = value if isinstance(value, str) else json.dumps(value)
        if len(text) < 3:
            continue
        js = json.dumps(text)[1:-1]
        out.update({text, js, html.escape(text), html.escape(text, quote=False),
                    urllib.parse.quote(text, safe=""), urllib.parse.quote_plus(text),
                    js.replace("<", "\\u003c").replace(">", "\\u003e").replace("/", "\\/")})
    return sorted(out, key=len, reverse=True)


# --------------------------------------------------------------------------- redaction


def _redact_str(text: str, secrets: Sequence[str], patterns: bool) -> str:
    if not patterns:
        for s in secrets:
            text = text.replace(s, MASK)
        return text
    red = redact_text(text, list(secrets))
    if "\x1b[" in red:  # a secret split by colour codes in a traceback: redact the plain text
        plain = _ANSI.sub("", red)
        if redact_text(plain, list(secrets)) != plain:
            red = redact_text(plain, list(secrets))
    return red


def _redact_tree(obj: Any, secrets: Sequence[str], patterns: bool) -> Any:
    if isinstance(obj, str):
        return _redact_str(obj, secrets, patterns)
    if isinstance(obj, Mapping):
        return type(obj)(  # type: ignore[call-arg]
            {k: _redact_tree(v, secrets, patterns) for k, v in obj.items()})
    if isinstance(obj, list):
        return [_redact_tree(v, secrets, patterns) for v in obj]
    return obj


def redact_notebook(nb: Any, secrets: Sequence[str] = ()) -> Any:
    """A copy of an executed notebook that is safe to save.

    Outputs go through :func:`opslib.redact.redact_text` (patterns and the literal ``secrets``);
    sources and metadata only have the literal secrets masked (code stays readable).
    """
    red = copy.deepcopy(nb)
    red.metadata = _redact_tree(red.metadata, secrets, False)
    for cell in red.cells:
        cell.source = _redact_str(cell.source, secrets, False)
        cell.metadata = _redact_tree(cell.metadata, secrets, False)
        if "outputs" in cell:
            cell.outputs = [_redact_tree(o, secrets, True) for o in cell.outputs]
        if "attachments" in cell:
            cell.attachments = _redact_tree(cell.attachments, secrets, False)
    return red


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- execution


class _Manager(NotebookExecutionManager):  # type: ignore[misc]
    """papermill's execution manager, saving (redacted, throttled) instead of after every cell."""

    def __init__(self, nb: Any, save: Callable[[Any], None], every: float) -> None:
        super().__init__(nb, output_path=None, progress_bar=False, autosave_cell_every=every)
        self._save_fn, self._every = save, every
        self.last_save_time: dt.datetime = self.now()

    def save(self, **kwargs: Any) -> None:
        if kwargs.get("nb") is not None:
            self.nb = kwargs["nb"]
        now = self.now()
        if (now - self.last_save_time).total_seconds() >= self._every:
            self._save_fn(self.nb)
            self.last_save_time = now


class _Client(PapermillNotebookClient):  # type: ignore[misc]
    """papermill's client with a whole-run deadline; records which cell timed out or died."""

    def setup_deadline(self, deadline: float | None) -> None:
        self.opslib_deadline = deadline
        self.opslib_cell: int | None = None
        self.opslib_stderr: collections.deque[str] = collections.deque(maxlen=30)
        if deadline is not None:
            self.timeout_func = lambda cell: max(deadline - time.monotonic(), 0.001)

    def start_new_kernel(self, **kwargs: Any) -> None:
        """Start the kernel with its stderr piped: kept (last lines) to explain a dead kernel."""
        super().start_new_kernel(stderr=subprocess.PIPE, **kwargs)
        stream = getattr(getattr(getattr(self.km, "provisioner", None), "process", None),
                         "stderr", None)
        if stream is not None:
            threading.Thread(target=self._drain, args=(stream,), daemon=True).start()

    def _drain(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if line and "without encryption" not in line:
                self.opslib_stderr.append(line)

    def papermill_execute_cells(self) -> None:
        for index, cell in enumerate(self.nb.cells):
            self.opslib_cell = index
            try:
                self.nb_man.cell_start(cell, index)
                self.execute_cell(cell, index)
            except CellExecutionError as exc:
                self.nb_man.cell_exception(self.nb.cells[index], cell_index=index, exception=exc)
                break
            except (CellTimeoutError, DeadKernelError):
                self.nb_man.cell_exception(self.nb.cells[index], cell_index=index)
                self.shutdown_kernel = "immediate"  # the cell is still running: no graceful wait
                raise
            finally:
                self.nb_man.cell_complete(self.nb.cells[index], cell_index=index)
        self.opslib_cell = None


@dataclass
class RunResult:
    """What a run produced.

    Attributes:
        runbook: Runbook name.
        exit_code: 0 passed, 1 a cell raised, 2 a check failed, 3 timeout / dead kernel.
        status: ``passed``, ``error``, ``check_failed``, ``timeout``, ``kernel_died`` or
            ``interrupted``.
        exit_reason: One sentence saying why (redacted).
        run_dir: The run's own folder.
        report_path: ``report.html`` in it.
        results: The content of ``results.json``.
    """

    runbook: str
    exit_code: int
    status: str
    exit_reason: str
    run_dir: Path
    report_path: Path
    results: dict[str, Any]

    @property
    def duration_s(self) -> float:
        """Wall time of the run in seconds."""
        return float(self.results.get("duration_s", 0.0))


def new_run_dir(outputs_dir: Path, runbook: str, started: dt.datetime) -> Path:
    """Create ``<outputs>/<runbook>/<YYYYmmddTHHMMSSZ>-<id>/``; never shared by two runs."""
    parent = outputs_dir / runbook
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        folder = parent / f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        try:
            folder.mkdir()  # atomic: fails if another run took the name
            return folder
        except FileExistsError:
            continue


def _injected_cell(
    values: Mapping[str, Any], secret_names: set[str], kernel: str, language: str
) -> tuple[Any, dict[str, str]]:
    plain = {k: v for k, v in values.items() if k not in secret_names}
    source = translate_parameters(kernel, language, plain, "Parameters")
    env: dict[str, str] = {}
    secret = [k for k in values if k in secret_names]
    if secret:
        source += "import os as _opslib_os  # secret values come from the kernel environment\n"
        for name in secret:
            var = f"OPSLIB_SECRET_{name.upper()}"
            value = values[name]
            env[var] = value if isinstance(value, str) else json.dumps(value)
            read = f"_opslib_os.environ.pop({var!r})"
            if not isinstance(value, str):
                read = f"__import__('json').loads({read})"
            source += f"{name} = {read}  # secret, set by opslib run\n"
    cell = nbformat.v4.new_code_cell(source=source)
    cell.metadata["tags"] = ["injected-parameters"]
    return cell, env


def _first_error(nb: Any) -> dict[str, Any] | None:
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            if out.get("ename") == "SystemExit" and out.get("evalue") in ("", "0"):
                continue
            return {"cell_index": index, "execution_count": cell.get("execution_count"),
                    "ename": out.get("ename", ""), "evalue": out.get("evalue", ""),
                    "traceback": [_ANSI.sub("", ln) for ln in out.get("traceback", [])],
                    "source": cell.source}
        if cell.metadata.get("papermill", {}).get("exception") is True:
            return {"cell_index": index, "execution_count": cell.get("execution_count"),
                    "ename": "CellExecutionError", "evalue": "the cell failed without an error "
                    "output", "traceback": [], "source": cell.source}
    return None


def _mask_secret_records(records: Mapping[str, Any]) -> dict[str, Any]:
    """Text recorded under a secret-looking name is masked (numbers stay: they are trended)."""
    return {k: (MASK if looks_secret_name(k) and isinstance(v, str) and v else v)
            for k, v in records.items()}


def _effective(specs: Sequence[ParamSpec], values: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {s.name: s.default for s in specs}
    merged.update(values)
    return merged


@dataclass
class _Outcome:
    """How the execution ended, before the outputs are looked at."""

    status: str = "passed"
    code: int = EXIT_OK
    reason: str = ""
    cell: int | None = None
    interrupted: bool = False


def _parameterize(
    nb: Any, path: Path, run_dir: Path, values: Mapping[str, Any], secret_names: set[str],
    secret_values: Sequence[str], kernel: str, language: str,
) -> dict[str, str]:
    """Insert the injected-parameters cell and papermill's metadata; return the kernel's env."""
    cell, kernel_env = _injected_cell(values, secret_names, kernel, language)
    cells = [c for c in nb.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    at = next((i + 1 for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])), 0)
    nb.cells = [*cells[:at], cell, *cells[at:]]
    for c in nb.cells:
        c.metadata.setdefault("papermill", {})
    shown = redact_mapping({k: (MASK if k in secret_names else v) for k, v in values.items()},
                           list(secret_values))
    nb.metadata["papermill"] = {
        "default_parameters": {}, "parameters": shown, "environment_variables": {},
        "input_path": str(path), "output_path": str(run_dir / "notebook.ipynb")}
    return kernel_env


def _execute(
    nb: Any, path: Path, kernel: str, kernel_env: Mapping[str, str], timeout: float | None,
    deadline: float | None, save: Callable[[Any], None],
) -> _Outcome:
    """Execute with papermill's client in the notebook's folder; classify how it stopped."""
    out = _Outcome()
    manager = _Manager(nb, save, every=AUTOSAVE_SECONDS)
    manager.notebook_start()
    client = _Client(manager, kernel_name=kernel, log=_quiet_logger(),
                     startup_timeout=min(60.0, timeout or 60.0),
                     resources={"metadata": {"path": str(path.parent)}})
    client.setup_deadline(deadline)
    try:
        client.execute(env={**os.environ, **kernel_env}, cwd=str(path.parent))
    except CellTimeoutError:
        out.status, out.code = "timeout", EXIT_TIMEOUT
        out.reason = (f"timed out after {timeout:g} s" if timeout
                      else "timed out waiting for the kernel's output")
    except DeadKernelError:
        out.status, out.code, out.reason = "kernel_died", EXIT_TIMEOUT, "the kernel died"
        tail = list(client.opslib_stderr)[-3:]
        out.reason += f" (kernel stderr: {' | '.join(tail)})" if tail else ""
    except KeyboardInterrupt:  # write what we have, then let the caller stop
        out.status, out.code, out.reason = "interrupted", EXIT_TIMEOUT, "interrupted (Ctrl-C)"
        out.interrupted = True
    except Exception as exc:  # the kernel did not start or its connection broke: exit 3
        out.code = EXIT_TIMEOUT
        if deadline is not None and time.monotonic() >= deadline:
            out.status, out.reason = "timeout", f"timed out after {timeout:g} s"
        else:
            out.status = "kernel_died"
            out.reason = f"the kernel or its connection failed: {type(exc).__name__}: {exc}"
    finally:
        manager.notebook_complete()
    if out.code != EXIT_OK:
        out.cell = client.opslib_cell
        if out.cell is not None:
            out.reason += f" in cell {out.cell}"
    return out


def _classify(
    nb: Any, out: _Outcome, collected: Mapping[str, Any]
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Final status from the outputs: a raised cell (1) before a failed check (2)."""
    checks = collected["checks"]
    failed_checks = [c for c in checks if check_status(c) == FAIL]
    skipped = [str(c["name"]) for c in checks if check_status(c) == NOT_RUN]
    not_run = (f"; {len(skipped)} not run: " + ", ".join(skipped)) if skipped else ""
    failing = _first_error(nb) if out.code == EXIT_OK else None
    if failing is not None:
        out.status, out.code = "error", EXIT_ERROR
        out.reason = (f"cell {failing['cell_index']} raised {failing['ename']}: "
                      f"{failing['evalue']}")
    elif out.code == EXIT_OK and failed_checks:
        out.status, out.code = "check_failed", EXIT_CHECK_FAILED
        out.reason = (f"{len(failed_checks)} of {len(checks)} checks failed: "
                      + ", ".join(str(c["name"]) for c in failed_checks) + not_run)
    elif out.code == EXIT_OK:
        out.reason = f"ran to the end; {len(checks) - len(skipped)} checks passed" + not_run
    elif out.cell is not None:
        failing = {"cell_index": out.cell, "ename": out.status, "evalue": out.reason,
                   "execution_count": None, "traceback": [],
                   "source": nb.cells[out.cell].source}
    return failing, failed_checks


def run_runbook(
    name_or_path: str | Path,
    parameters: Mapping[str, Any] | None = None,
    *,
    outputs_dir: str | Path | None = None,
    timeout: float | None = None,
    secrets: Iterable[str] = (),
    show_code: bool = False,
    notebooks_dir: str | Path | None = None,
    kernel_name: str | None = None,
    rebuild_index: bool = True,
) -> RunResult:
    """Run one runbook headless and write notebook.ipynb, results.json and report.html.

    Args:
        name_or_path: A runbook name in ``notebooks/`` or a path to an ``.ipynb``.
        parameters: Name -> value; strings are converted to the declared type, ``"env:VAR"``
            reads the environment (and makes the value secret).
        outputs_dir: Root of the run folders (default ``<root>/outputs``).
        timeout: Limit of the whole run in seconds (kernel start included); ``None`` = no limit.
        secrets: Parameter names whose values are secret, in addition to secret-looking names.
        show_code: Show code cells in the report (hidden by default).
        notebooks_dir: Where runbook names are looked up (default ``<root>/notebooks``).
        kernel_name: Kernel to use instead of the notebook's kernelspec.
        rebuild_index: Rebuild ``<outputs>/index.html`` afterwards.

    Returns:
        The :class:`RunResult`; a failing runbook is a result (exit code 1-3), not an exception.

    Raises:
        RunbookNotFound: No such runbook.
        BadParameter: A parameter is unknown or does not convert; nothing was run.
    """
    from opslib import __version__
    from opslib.runbook import htmlreport

    path = resolve_runbook(name_or_path, Path(notebooks_dir) if notebooks_dir else None)
    name = path.stem
    specs = inspect_parameters(path)
    values, secret_names = validate_parameters(specs, parameters, secrets, notebook=path.name)
    if timeout is not None and timeout <= 0:
        raise BadParameter("timeout", timeout, "a positive number of seconds")
    nb = nbformat.read(path, as_version=4)
    kernel = kernel_name or nb.metadata.get("kernelspec", {}).get("name") or "python3"
    language = (nb.metadata.get("kernelspec", {}).get("language")
                or nb.metadata.get("language_info", {}).get("name") or "python")
    if secret_names and language.lower() != "python":
        raise BadParameter(sorted(secret_names)[0], MASK, "a Python notebook (secrets reach the "
                           "kernel as environment reads, implemented for Python kernels only)")
    outputs = Path(outputs_dir) if outputs_dir else find_root() / "outputs"
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    run_dir = new_run_dir(outputs, name, started)
    if "output_dir" in {s.name for s in specs} and "output_dir" not in values:
        values["output_dir"] = str(run_dir)
    secret_values = _secret_variants(values[n] for n in secret_names)
    kernel_env = _parameterize(nb, path, run_dir, values, secret_names, secret_values, kernel,
                               language)

    def save(current: Any) -> None:
        _write_atomic(run_dir / "notebook.ipynb",
                      nbformat.writes(redact_notebook(current, secret_values)))

    out = _execute(nb, path, kernel, kernel_env, timeout, t0 + timeout if timeout else None, save)
    finished = dt.datetime.now(dt.UTC)
    collected = results_from_notebook(nb)
    failing, failed_checks = _classify(nb, out, collected)
    nb.metadata["opslib"] = {"status": out.status, "exit_code": out.code, "run_id": run_dir.name}

    default_project = next((s.default for s in specs if s.name == "project"), "")
    raw_results: dict[str, Any] = {
        "schema": 1, "runbook": name, "title": runbook_title(nb, name), "notebook": str(path),
        "run_id": run_dir.name, "status": out.status, "exit_code": out.code,
        "exit_reason": out.reason, "failing_cell": failing, "failed_checks": failed_checks,
        "parameters": redact_mapping({k: (MASK if k in secret_names else v)
                                      for k, v in _effective(specs, values).items()},
                                     secret_values),
        "parameters_injected": sorted(values), "secret_parameters": sorted(secret_names),
        "started": started.isoformat(timespec="seconds"),
        "finished": finished.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - t0, 3), "timeout_s": timeout,
        "records": _mask_secret_records(collected["records"]), "units": collected["units"],
        "checks": collected["checks"], "opslib_version": __version__,
        "python": sys.version.split()[0], "host": socket.gethostname(),
        "engine": str(values.get("docker_url") or os.environ.get("DOCKER_HOST")
                      or "default socket (unix:///var/run/docker.sock)"),
        "project": values.get("project", default_project), "kernel": kernel,
        "show_code": show_code,
        "files": {"notebook": "notebook.ipynb", "report": "report.html",
                  "results": "results.json"},
    }
    results = _redact_tree(raw_results, secret_values, True)
    safe_nb = redact_notebook(nb, secret_values)
    _write_atomic(run_dir / "notebook.ipynb", nbformat.writes(safe_nb))
    _write_atomic(run_dir / "results.json", json.dumps(results, indent=2, default=str) + "\n")
    report_path = htmlreport.write_report(safe_nb, results, run_dir / "report.html",
                                          show_code=show_code)
    if rebuild_index:
        htmlreport.write_index(outputs)
    if out.interrupted:
        raise KeyboardInterrupt
    return RunResult(name, out.code, out.status, results["exit_reason"], run_dir, report_path,
                     results)


def runbook_title(nb: Any, default: str) -> str:
    """The ``# Title`` of the first markdown cell."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in str(cell.source).splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
            break
    return default


def _quiet_logger() -> Any:
    """nbclient logs timeouts and dead kernels itself; the run's result says it once, clearly."""
    import logging

    log = logging.getLogger("opslib.runbook.runner.kernel")
    log.propagate = False
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    return log
