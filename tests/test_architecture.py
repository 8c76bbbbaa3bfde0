"""The layers of docs/architecture.md, checked on the imports of every opslib module (ast)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "opslib"
DOMAINS = ("audit", "backup", "logs", "resources", "loadtest", "overview", "scorecard")
#: Modules every layer may import; they import no domain, no runbook and no docker-py.
BASE = ("exceptions", "redact", "journal", "_plan", "demo", "engine")
MAX_LINES = 800


def _module(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


MODULES = {_module(p): p for p in sorted(PKG.rglob("*.py"))}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _is_docker_py(name: str) -> bool:
    return name == "docker" or name.startswith("docker.")


def _is_runbook(name: str) -> bool:
    return name in ("opslib.runbook", "opslib.report") or name.startswith(
        ("opslib.runbook.", "opslib.report."))


def test_the_layers_are_all_there() -> None:
    layers = {_layer(m) for m in MODULES}
    assert set(DOMAINS) | set(BASE) | {"runbook"} <= layers


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_the_engine_imports_docker_py(module: str) -> None:
    if _layer(module) == "engine":
        return
    bad = sorted(n for n in _imports(MODULES[module]) if _is_docker_py(n))
    assert not bad, f"{module} imports docker-py ({bad}); call an opslib.engine function"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) in DOMAINS))
def test_domains_do_not_import_the_runbook_layer(module: str) -> None:
    bad = sorted(n for n in _imports(MODULES[module]) if _is_runbook(n))
    assert not bad, (f"{module} imports {bad}: domains return frames/figures/checks; the "
                     "notebook records them with opslib.report")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) in BASE))
def test_base_modules_import_no_domain_and_no_runbook(module: str) -> None:
    bad = sorted(n for n in _imports(MODULES[module])
                 if _is_runbook(n) or any(n == f"opslib.{d}" or n.startswith(f"opslib.{d}.")
                                          for d in DOMAINS))
    assert not bad, f"{module} imports {bad}"


def test_engine_does_not_know_the_demo() -> None:
    for module, path in MODULES.items():
        if _layer(module) == "engine":
            text = path.read_text()
            assert "opslib.demo" not in _imports(path), module
            assert "REPO_ROOT" not in text and "demo/compose.yaml" not in text, module


def test_product_code_reads_no_test_fixtures() -> None:
    for module, path in MODULES.items():
        assert '"tests"' not in path.read_text(), f"{module} reads tests/"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_over_the_size_limit(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines (split it by concern)"
