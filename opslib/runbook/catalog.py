"""Runbooks on disk: where they are, what they say about themselves, and their parameters.

A runbook is ``notebooks/<name>.ipynb``: its first markdown cell gives the title and a one-line
description, its one ``parameters`` cell declares typed defaults. :func:`validate_parameters` checks
and converts values (CLI strings included) against those defaults *before* anything runs, which
papermill itself does not do (it only warns about unknown names).
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from papermill.inspection import inspect_notebook

from opslib.exceptions import BadParameter, RunbookNotFound
from opslib.redact import MASK, looks_secret_name

__all__ = ["ENV_PREFIX", "ParamSpec", "RunbookInfo", "find_root", "inspect_parameters",
           "list_runbooks", "resolve_runbook", "runbook_info", "validate_parameters"]

#: A parameter value ``env:VAR`` is read from the environment variable VAR (and is a secret).
ENV_PREFIX = "env:"
_TRUE, _FALSE = {"true", "1", "yes", "y", "on"}, {"false", "0", "no", "n", "off"}
_TYPES = {"int", "float", "bool", "str", "list", "dict"}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a runbook, as declared in its ``parameters`` cell.

    Attributes:
        name: Variable name.
        type: ``int``, ``float``, ``bool``, ``str``, ``list``, ``dict`` or ``any``.
        default: The default value (a Python value; the source text when it is not a literal).
        default_src: The default as written in the cell.
        help: The comment after the assignment.
    """

    name: str
    type: str
    default: Any
    default_src: str
    help: str = ""

    @property
    def secret(self) -> bool:
        """Whether the name says the value is a secret."""
        return looks_secret_name(self.name)

    def describe(self) -> str:
        """``name: type = default  # help``, the default masked for secret names."""
        default = MASK if self.secret and self.default not in ("", None) else self.default_src
        return f"{self.name}: {self.type} = {default}" + (f"  # {self.help}" if self.help else "")


@dataclass(frozen=True)
class RunbookInfo:
    """A runbook notebook: name, title, one-line description and parameters."""

    name: str
    path: Path
    title: str
    description: str
    params: list[ParamSpec] = field(default_factory=list)


def find_root(start: Path | None = None) -> Path:
    """The repository root: the nearest folder (from ``start``/cwd upwards) holding ``notebooks/``
    and ``pyproject.toml`` or ``.git``; else the folder above the installed package; else cwd."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "notebooks").is_dir() and any(
            (folder / m).exists() for m in ("pyproject.toml", ".git")
        ):
            return folder
    package_root = Path(__file__).resolve().parents[2]
    return package_root if (package_root / "notebooks").is_dir() else here


def list_runbooks(notebooks_dir: Path | None = None) -> list[RunbookInfo]:
    """Every runbook in ``notebooks_dir`` (default ``<root>/notebooks``), sorted by name."""
    folder = Path(notebooks_dir) if notebooks_dir else find_root() / "notebooks"
    paths = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith((".", "_")))
    return [runbook_info(p) for p in paths]


def resolve_runbook(name_or_path: str | Path, notebooks_dir: Path | None = None) -> Path:
    """Turn ``log-cleanup`` (a name in notebooks/) or a path to an ``.ipynb`` into a path.

    Raises:
        RunbookNotFound: Neither exists; the message lists the available runbooks.
    """
    text = str(name_or_path)
    folder = Path(notebooks_dir) if notebooks_dir else find_root() / "notebooks"
    candidate = Path(text)
    if text.endswith(".ipynb") or os.sep in text:
        if candidate.is_file():
            return candidate.resolve()
    elif (folder / f"{text}.ipynb").is_file():
        return (folder / f"{text}.ipynb").resolve()
    available = sorted(p.stem for p in folder.glob("*.ipynb")) if folder.is_dir() else []
    raise RunbookNotFound(text, available)


def runbook_info(path: Path) -> RunbookInfo:
    """Title, description (first line after the title in the first markdown cell), parameters."""
    nb = nbformat.read(path, as_version=4)
    title, description = path.stem, ""
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = [ln.strip() for ln in cell.source.splitlines() if ln.strip()]
        if lines and lines[0].startswith("#"):
            title = lines.pop(0).lstrip("#").strip()
        description = lines[0] if lines else ""
        break
    return RunbookInfo(path.stem, path, title, description, inspect_parameters(path))


def inspect_parameters(path: Path) -> list[ParamSpec]:
    """The parameters of a notebook, typed from their annotation or their default literal.

    The ``parameters`` cell is parsed with :mod:`ast` (papermill's ``inspect_notebook`` skips any
    line holding two ``=``, e.g. a comment like ``# empty = default socket``, and only types
    annotated parameters); papermill's inspection is the fallback for cells that do not parse.
    """
    nb = nbformat.read(path, as_version=4)
    cell = next((c for c in nb.cells
                 if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])), None)
    if cell is None:
        return []
    try:
        found = _parse_parameters(cell.source)
    except SyntaxError:
        found = [(n, str(p.get("inferred_type_name", "None")), str(p["default"]),
                  str(p.get("help") or "")) for n, p in inspect_notebook(str(path)).items()]
    specs = []
    for name, annotation, src, comment in found:
        try:
            default: Any = ast.literal_eval(src)
            kind = type(default).__name__
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            default, kind = src, "any"
        annotated = annotation.split("[")[0].strip().lower()
        if annotated in _TYPES:
            kind = annotated
        elif kind in ("tuple", "set"):
            kind = "list"
        elif kind not in _TYPES:
            kind = "any"
        specs.append(ParamSpec(name, kind, default, src, comment))
    return specs


def _parse_parameters(source: str) -> list[tuple[str, str, str, str]]:
    """(name, annotation, default source, trailing comment) of each top-level assignment."""
    lines = source.splitlines()
    out = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, annotation = node.targets[0], ""
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, annotation = node.target, ast.unparse(node.annotation)
        else:
            continue
        if not isinstance(target, ast.Name) or node.value is None:
            continue
        src = ast.get_source_segment(source, node.value) or ast.unparse(node.value)
        last = lines[(node.end_lineno or node.lineno) - 1][node.end_col_offset or 0:]
        comment = last.split("#", 1)[1].strip() if "#" in last else ""
        out.append((target.id, annotation, src, comment))
    return out


# --------------------------------------------------------------------------- parameters


def _convert(spec: ParamSpec, value: Any) -> Any:
    """Convert a CLI string (or check a Python value) to the parameter's type; ValueError if not."""
    kind = spec.type
    if not isinstance(value, str):
        ok = {
            "bool": isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, int | float) and not isinstance(value, bool),
            "list": isinstance(value, list | tuple),
            "dict": isinstance(value, Mapping),
            "str": False,
            "any": True,
        }[kind]
        if not ok:
            raise ValueError(kind)
        return float(value) if kind == "float" else list(value) if kind == "list" else value
    if kind == "str":
        return value
    if kind == "bool":
        low = value.strip().lower()
        if low in _TRUE | _FALSE:
            return low in _TRUE
        raise ValueError(kind)
    if kind == "int":
        return int(value.strip())
    if kind == "float":
        return float(value.strip())
    if kind in ("list", "dict"):
        parsed = json.loads(value)
        if not isinstance(parsed, list if kind == "list" else dict):
            raise ValueError(kind)
        return parsed
    try:  # "any": JSON when it parses, else the string itself
        return json.loads(value)
    except ValueError:
        return value


_EXAMPLES = {"int": "an int, e.g. 3", "float": "a float, e.g. 0.5",
             "bool": "a bool: true/false, yes/no, 1/0", "list": 'a JSON list, e.g. ["a", "b"]',
             "dict": 'a JSON object, e.g. {"a": 1}', "str": "a string", "any": "any value"}


def validate_parameters(
    specs: Sequence[ParamSpec],
    given: Mapping[str, Any] | None,
    secrets: Iterable[str] = (),
    *,
    notebook: str = "the notebook",
) -> tuple[dict[str, Any], set[str]]:
    """Check and convert parameters before a run.

    Args:
        specs: The notebook's parameters (:func:`inspect_parameters`).
        given: Name -> value (CLI strings are converted; ``env:VAR`` reads the environment).
        secrets: Extra parameter names whose values are secret (``--secret NAME``).
        notebook: Name used in messages.

    Returns:
        (converted values, names whose values are secret: by name, by ``secrets``, or from env).

    Raises:
        BadParameter: Unknown name, value that does not convert, unset environment variable; the
            message lists every valid parameter with its type and default.
    """
    by_name = {s.name: s for s in specs}
    valid = [s.describe() for s in specs] or ["(this notebook has no parameters cell)"]
    secret_names = {n for n in secrets}
    for name in secret_names - by_name.keys():
        raise BadParameter(name, "--secret", f"a parameter of {notebook}", valid)
    values: dict[str, Any] = {}
    for name, raw in (given or {}).items():
        spec = by_name.get(name)
        shown = MASK if looks_secret_name(name) or name in secret_names else raw
        if spec is None:
            raise BadParameter(name, shown, f"a parameter of {notebook}", valid)
        if isinstance(raw, str) and raw.startswith(ENV_PREFIX):
            var = raw[len(ENV_PREFIX):]
            if var not in os.environ:
                raise BadParameter(name, raw, f"environment variable {var} to be set", valid)
            raw = os.environ[var]
            secret_names.add(name)
        try:
            values[name] = _convert(spec, raw)
        except (ValueError, TypeError):
            shown = MASK if spec.secret or name in secret_names else raw
            raise BadParameter(name, shown, _EXAMPLES[spec.type], valid) from None
        if spec.secret:
            secret_names.add(name)
    return values, secret_names
