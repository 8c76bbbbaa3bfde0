"""The disaster-recovery playbook of the restore drill, written for the project it ran on.

Four scenarios (database corruption, complete outage, data loss, ransomware), each with
detection, response, escalation and the recovery time this drill measured. Every command names
the discovered project's own services, database, owner, volume and compose files: a playbook
that shows the demo's commands for another stack would send an SRE down the wrong path.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from opslib.backup.postgres import PgTarget
from opslib.engine import Stack

__all__ = ["dr_playbook"]

@functools.cache
def _template() -> string.Template:
    """The playbook with ``$project``, ``$db``, ``$database`` ... placeholders (package data),
    read once, when a playbook is first asked for (not at import)."""
    return string.Template(Path(__file__).with_name("playbook.md").read_text())


def dr_playbook(stack: Stack, pg: PgTarget, *, cache: str | None,
                compose_files: Sequence[str | Path] = (), backup_dir: str | Path = "",
                manifest: Mapping[str, Any] | None = None) -> str:
    """The playbook as markdown, with the commands for this project.

    Args:
        stack: The discovered project.
        pg: Its PostgreSQL target (:func:`opslib.backup.discover_postgres`).
        cache: Its Redis service, or ``None``.
        compose_files: Its compose files (``-f`` arguments of the commands).
        backup_dir: Where its backups are kept.
        manifest: A backup manifest: its largest table is the one the row-count checks name.

    Returns:
        Markdown text.
    """
    tables = (manifest or {}).get("tables") or {}
    table = max(tables, key=lambda t: int((tables[t] or {}).get("rows") or 0)) if tables \
        else "<table>"
    writers = [s.name for s in stack.services if s.role in ("http", "nginx")]
    db = stack.service(pg.service)
    endpoint = stack.http_endpoint() or "the application's public URL"
    return _template().safe_substitute(
        project=stack.project,
        files=" ".join(f"-f {f}" for f in compose_files),
        db=pg.service, database=pg.database, user=pg.user,
        superuser=stack.env.get(pg.service, {}).get("POSTGRES_USER") or "postgres",
        table=table,
        writers=" ".join(writers) or "<application services>",
        volume=db.volumes[0] if db.volumes else f"<data volume of {pg.service}>",
        cache=cache or "<redis service>",
        endpoint=endpoint,
        health_check=f"curl -fsS {endpoint}/" if stack.http_endpoint() else
        "check the application's health endpoint",
        backup_dir=str(backup_dir) or "<backup dir>",
    )
