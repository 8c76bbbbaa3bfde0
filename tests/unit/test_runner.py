"""The runner's Python API with real papermill and real kernels on tests/notebooks/ fixtures."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import nbformat
import pytest

from opslib.exceptions import BadParameter, RunbookNotFound
from opslib.redact import MASK
from opslib.report import results_from_notebook
from opslib.runbook import runner
from opslib.runbook.catalog import (
    find_root,
    inspect_parameters,
    resolve_runbook,
    validate_parameters,
)

ROOT = Path(__file__).resolve().parents[2]
NB = ROOT / "tests" / "notebooks"


def _nb(name: str) -> Path:
    return NB / f"{name}.ipynb"


def _run(name: str, tmp_path: Path, params: dict[str, Any] | None = None,
         **kw: Any) -> runner.RunResult:
    return runner.run_runbook(_nb(name), params, outputs_dir=tmp_path / "outputs", **kw)


# ------------------------------------------------------------------ parameters (no kernel)


def test_inspect_parameters_types_defaults_and_help() -> None:
    specs = {s.name: s for s in inspect_parameters(_nb("ok"))}
    assert {n: s.type for n, s in specs.items()} == {
        "project": "str", "docker_url": "str", "output_dir": "str", "count": "int",
        "ratio": "float", "enabled": "bool", "label": "str", "tags": "list", "limits": "dict"}
    assert specs["count"].default == 3 and specs["count"].help == "how many items"
    # papermill's own inspection drops this line (two '=' in it); ours keeps it
    assert specs["docker_url"].help == "empty = DOCKER_HOST / default socket"
    assert specs["tags"].default == ["a", "b"]


def test_validate_converts_cli_strings_to_declared_types(monkeypatch: pytest.MonkeyPatch) -> None:
    specs = inspect_parameters(_nb("ok"))
    monkeypatch.setenv("OPSLIB_TEST_LABEL", "from-env")
    values, secret = validate_parameters(specs, {
        "count": "7", "ratio": "2", "enabled": "no", "tags": '["x"]', "limits": '{"mem": 2}',
        "label": "env:OPSLIB_TEST_LABEL"})
    assert values == {"count": 7, "ratio": 2.0, "enabled": False, "tags": ["x"],
                      "limits": {"mem": 2}, "label": "from-env"}
    assert secret == {"label"}  # a value read from the environment is treated as a secret
    for text, expected in [("true", True), ("1", True), ("YES", True), ("off", False)]:
        assert validate_parameters(specs, {"enabled": text})[0]["enabled"] is expected
    # Python values through the API are checked too
    assert validate_parameters(specs, {"count": 4, "ratio": 1})[0] == {"count": 4, "ratio": 1.0}


@pytest.mark.parametrize("name,value,expected", [
    ("count", "3.5", "an int"), ("enabled", "maybe", "a bool"), ("tags", '{"a": 1}', "JSON list"),
    ("limits", "[1]", "JSON object"), ("ratio", "fast", "a float"), ("count", True, "an int"),
])
def test_mistyped_values_list_the_valid_parameters(name: str, value: Any, expected: str) -> None:
    with pytest.raises(BadParameter) as err:
        validate_parameters(inspect_parameters(_nb("ok")), {name: value}, notebook="ok.ipynb")
    msg = str(err.value)
    assert expected in msg and "count: int = 3" in msg and "tags: list = [" in msg


def test_unknown_parameter_and_secret_names_are_refused() -> None:
    specs = inspect_parameters(_nb("ok"))
    with pytest.raises(BadParameter, match=r"a parameter of ok\.ipynb") as err:
        validate_parameters(specs, {"cont": "3"}, notebook="ok.ipynb")
    assert "limits: dict" in str(err.value)
    with pytest.raises(BadParameter, match="'nope'"):
        validate_parameters(specs, {}, ["nope"])
    with pytest.raises(BadParameter, match="OPSLIB_SURELY_UNSET"):
        validate_parameters(specs, {"label": "env:OPSLIB_SURELY_UNSET"})


def test_secret_values_never_appear_in_validation_errors() -> None:
    specs = inspect_parameters(_nb("secret"))
    with pytest.raises(BadParameter) as err:
        validate_parameters(specs, {"db_passwrd": "hunter2-secret"})
    assert "hunter2-secret" not in str(err.value) and MASK in str(err.value)
    assert "db_password: str = " + MASK in str(err.value)  # secret defaults are masked too


def test_resolve_runbook_by_name_or_path() -> None:
    assert resolve_runbook("ok", NB) == _nb("ok")
    assert resolve_runbook(str(_nb("raises"))) == _nb("raises")
    with pytest.raises(RunbookNotFound) as err:
        resolve_runbook("no-such-runbook", NB)
    assert "failed_check" in str(err.value) and "opslib list" in str(err.value)
    assert find_root(NB) == ROOT


def test_worst_exit_code_ordering() -> None:
    assert runner.worst_exit_code([0, 2, 1]) == 1
    assert runner.worst_exit_code([2, 0]) == 2
    assert runner.worst_exit_code([1, 3, 2]) == 3
    assert runner.worst_exit_code([]) == 0


def test_run_folders_are_never_shared(tmp_path: Path) -> None:
    import datetime as dt

    same = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    made: list[Path] = []
    threads = [threading.Thread(target=lambda: made.append(runner.new_run_dir(tmp_path, "x", same)))
               for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 20
    assert all(p.name.startswith("20240102T030405Z-") for p in made)


def test_bad_parameter_runs_nothing(tmp_path: Path) -> None:
    with pytest.raises(BadParameter):
        _run("ok", tmp_path, {"count": "many"})
    assert not (tmp_path / "outputs").exists()


# ------------------------------------------------------------------ real runs


def test_successful_run_writes_notebook_results_and_report(tmp_path: Path) -> None:
    res = _run("ok", tmp_path, {"count": "5", "tags": '["x", "y", "z"]'})
    assert (res.exit_code, res.status) == (0, "passed")
    run_dir = res.run_dir
    assert run_dir.parent == tmp_path / "outputs" / "ok"
    assert {p.name for p in run_dir.iterdir()} >= {"notebook.ipynb", "report.html",
                                                    "results.json", "artefact.txt"}
    data = json.loads((run_dir / "results.json").read_text())
    assert data["records"] == {"count_doubled": 10, "ratio": 0.5, "label": "demo", "n_tags": 3}
    assert data["units"] == {"count_doubled": "items"}
    assert data["checks"][0]["name"] == "count_positive" and data["checks"][0]["ok"] is True
    assert data["parameters"]["count"] == 5 and data["parameters"]["label"] == "demo"
    assert data["parameters"]["output_dir"] == str(run_dir)  # the runner injected the run folder
    for key in ("started", "finished", "duration_s", "opslib_version", "host", "engine",
                "project", "exit_reason", "run_id"):
        assert data[key] not in (None, ""), key
    assert data["project"] == "shop" and data["failing_cell"] is None
    nb = nbformat.read(run_dir / "notebook.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "count = 5" in injected[0].source
    assert nb.metadata.papermill.parameters["count"] == 5
    assert results_from_notebook(nb)["records"]["count_doubled"] == 10
    assert (run_dir / "artefact.txt").read_text() == "enabled=True limits={'cpu': 1}"
    assert (tmp_path / "outputs" / "index.html").is_file()


def test_raised_cell_exits_1_with_the_error_at_the_top(tmp_path: Path) -> None:
    res = _run("raises", tmp_path)
    assert (res.exit_code, res.status) == (1, "error")
    failing = res.results["failing_cell"]
    assert failing["ename"] == "ValueError" and failing["evalue"] == "the disk is on fire"
    assert "raise ValueError" in failing["source"]
    assert res.results["records"] == {"before_error": 1}  # cells after the error did not run
    page = res.report_path.read_text()
    top = page.index('id="failing-cell"')
    assert top < page.index("<h2>Notebook</h2>")
    assert page.index("the disk is on fire") < page.index("<h2>Notebook</h2>")


def test_failed_check_exits_2_and_lists_the_check_first(tmp_path: Path) -> None:
    res = _run("failed_check", tmp_path)
    assert (res.exit_code, res.status) == (2, "check_failed")
    assert [c["name"] for c in res.results["failed_checks"]] == ["below_threshold"]
    assert res.results["failed_checks"][0]["data"] == {"used": 93.5}
    assert "below_threshold" in res.exit_reason
    page = res.report_path.read_text()
    assert page.index('id="failed-checks"') < page.index("<h2>Notebook</h2>")


def test_not_run_check_is_a_third_state_that_leaves_the_exit_code_alone(tmp_path: Path) -> None:
    res = _run("not_run", tmp_path)
    assert (res.exit_code, res.status) == (0, "passed")
    checks = {c["name"]: c for c in res.results["checks"]}
    assert checks["ran_ok"]["status"] == "pass" and checks["ran_ok"]["ok"] is True
    assert checks["needs_tool"]["status"] == "not_run" and checks["needs_tool"]["ok"] is None
    assert "apt-get install frobnicate" in checks["needs_tool"]["detail"]
    assert res.results["failed_checks"] == []
    assert "1 checks passed; 1 not run: needs_tool" in res.exit_reason
    page = res.report_path.read_text()
    assert page.index('id="not-run-checks"') < page.index("<h2>Notebook</h2>")
    assert "NOT RUN" in page and "frobnicate is not installed" in page
    data = json.loads((res.run_dir / "results.json").read_text())
    assert [c["status"] for c in data["checks"]] == ["pass", "not_run"]


def test_not_run_does_not_hide_a_failed_check(tmp_path: Path) -> None:
    from opslib.report import check_status

    res = _run("failed_check", tmp_path)
    assert [check_status(c) for c in res.results["checks"]] == ["fail", "pass"]
    assert res.exit_code == 2


@pytest.mark.slow
def test_timeout_exits_3_and_still_writes_the_report(tmp_path: Path) -> None:
    res = _run("sleeps", tmp_path, {"seconds": "120"}, timeout=8)
    assert (res.exit_code, res.status) == (3, "timeout")
    assert "timed out after 8 s in cell" in res.exit_reason
    data = json.loads((res.run_dir / "results.json").read_text())
    assert data["records"] == {"started": True}
    assert "time.sleep(seconds)" in data["failing_cell"]["source"]
    nb = nbformat.read(res.run_dir / "notebook.ipynb", as_version=4)
    # papermill alone would mark the hung cell and the ones after it "completed"
    index = data["failing_cell"]["cell_index"]
    assert nb.cells[index].metadata.papermill.status == "failed"
    assert nb.cells[-1].metadata.papermill.status == "pending"
    assert nb.metadata.opslib.status == "timeout"
    assert 'id="failing-cell"' in res.report_path.read_text()


@pytest.mark.slow
def test_dead_kernel_exits_3(tmp_path: Path) -> None:
    res = _run("dies", tmp_path)
    assert (res.exit_code, res.status) == (3, "kernel_died")
    assert res.results["records"] == {"before_death": 1}
    assert res.report_path.is_file()


@pytest.mark.slow
def test_secrets_never_reach_any_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {"db_password": "Pl4nted-DB-pass-7731", "note": "Pl4nted-note-8842",
               "api_token": "Pl4nted-token-9953"}
    monkeypatch.setenv("OPSLIB_TEST_TOKEN", secrets["api_token"])
    monkeypatch.setattr(runner, "AUTOSAVE_SECONDS", 0.0)  # save after every cell, as papermill
    written: list[str] = []
    real = runner._write_atomic

    def spy(path: Path, text: str) -> None:
        written.append(text)
        real(path, text)

    monkeypatch.setattr(runner, "_write_atomic", spy)
    res = _run("secret", tmp_path, {"db_password": secrets["db_password"],
                                    "note": secrets["note"], "api_token": "env:OPSLIB_TEST_TOKEN"},
               secrets=["note"], show_code=True)
    assert res.exit_code == 1  # the notebook raises with the secrets in the message
    assert len(written) > 5  # the progressive saves happened, each one redacted
    for text in written:
        assert not any(s in text for s in secrets.values())
    files = [p for p in (tmp_path / "outputs").rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"notebook.ipynb", "results.json", "report.html",
                                       "index.html"}
    for path in files:
        blob = path.read_bytes()
        for value in secrets.values():
            assert value.encode() not in blob, (path, value)
    nb = nbformat.read(res.run_dir / "notebook.ipynb", as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "environ.pop('OPSLIB_SECRET_DB_PASSWORD')" in injected.source
    assert nb.metadata.papermill.parameters["db_password"] == MASK
    assert res.results["parameters"]["note"] == MASK
    assert res.results["records"]["dsn"] == MASK
    # the kernel really received them: the error message had them (now masked) in it
    assert res.results["failing_cell"]["evalue"] == f"login failed for {MASK} / {MASK} / {MASK}"


def test_plain_papermill_runs_the_same_notebook(tmp_path: Path) -> None:
    import papermill as pm

    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(_nb("ok")), str(out),
                        parameters={"count": 4, "output_dir": str(tmp_path)},
                        progress_bar=False, cwd=str(NB))
    results = results_from_notebook(out)
    assert results["records"]["count_doubled"] == 8
    assert results["checks"][0]["ok"] is True
