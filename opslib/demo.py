"""Everything that exists only for the demo stack (compose project ``shop`` in ``demo/``).

The library's domains take their inputs as arguments; the runbooks' defaults for the demo stack
live here: where its compose file is, how a runbook's ``compose_file`` parameter resolves
(relative to the repository root), the shop's application queries, the built-in k6/Locust
scenarios against its API, and its tenants.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from opslib.exceptions import BadParameter

__all__ = ["DEMO_COMPOSE", "REPO_ROOT", "default_compose_file", "resolve_compose_files"]


#: The repository root (the folder above the ``opslib`` package).
REPO_ROOT = Path(__file__).resolve().parents[1]

#: The demo stack's compose file, relative to :data:`REPO_ROOT`.
DEMO_COMPOSE = "demo/compose.yaml"


def default_compose_file() -> Path:
    """The demo stack's compose file, ``demo/compose.yaml`` at the repository root."""
    return REPO_ROOT / DEMO_COMPOSE


def resolve_compose_files(compose_file: str | Path | Sequence[str | Path] = "") -> list[Path]:
    """The compose files named by a runbook's ``compose_file`` parameter.

    Args:
        compose_file: A path, comma-separated paths (in a string) or a list; empty means
            :func:`default_compose_file`. ``~`` is expanded; relative paths are taken from the
            repository root (notebooks run from ``notebooks/``).

    Returns:
        Absolute paths, in order (later files override earlier ones).

    Raises:
        BadParameter: A file does not exist.
    """
    if isinstance(compose_file, Path):
        items = [str(compose_file)]
    elif isinstance(compose_file, str):
        items = [x.strip() for x in compose_file.split(",")]
    else:
        items = [str(x).strip() for x in compose_file]
    paths = [Path(x).expanduser() for x in items if x]
    paths = [p if p.is_absolute() else REPO_ROOT / p for p in paths] or [default_compose_file()]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise BadParameter("compose_file", compose_file,
                           "existing compose file(s) (relative paths are taken from the "
                           f"repository root {REPO_ROOT}; leave it empty for the demo stack); "
                           "not found: " + ", ".join(missing))
    return paths
