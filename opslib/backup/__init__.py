"""Backups and restore drills: PostgreSQL dumps with manifests, Redis snapshots, retention.

A backup nobody has restored is a hope, not a backup. This module takes backups of a compose
project's database, restores them into a throw-away container and proves they are complete.

* :func:`take_backup` streams ``pg_dump -Fc`` out of the ``db`` container into
  ``<backup_dir>/<project>-<database>-<UTC ts>.dump`` (written as ``.partial``, renamed when
  complete) and writes ``<file>.manifest.json`` beside it: sha256, size, server version, per-table
  exact row counts and content checksums, catalog counts (constraints, indexes) and the answers of
  a few application queries -- all taken in the *same snapshot* as the dump (a transaction holds
  ``pg_export_snapshot()`` open and ``pg_dump --snapshot`` uses it).
* :func:`run_drill` verifies a backup's checksum, starts a scratch container from the production
  image (own internal network, no published ports, labelled ``opslib.drill=1``), restores with
  ``pg_restore -j`` and compares the restored database with the manifest. Every phase is timed;
  the verdict is kept beside the backup (``<file>.drill.json``). The scratch container is removed
  in a ``finally``; :func:`cleanup_scratch` removes leftovers of crashed drills.
* :func:`redis_persistence` / :func:`snapshot_redis` check and copy the cache's persistence.
* :func:`plan_retention` / :func:`apply_retention` prune old backups (plan, then apply, with a
  journal) and never delete the newest verified backup.
"""

from __future__ import annotations

from opslib.backup.drill import DrillResult, drill_history, load_drill, new_run_id, run_drill
from opslib.backup.manifest import (
    DRILL_LABEL,
    DRILL_RUN_LABEL,
    MANIFEST_FORMAT,
    Backup,
    list_backups,
    load_manifest,
    manifest_path,
    manifest_tables,
    resolve_backup_dir,
    sha256_file,
    verified_count,
    verify_backup_file,
    without_paths,
)
from opslib.backup.objectives import (
    RecoveryObjectives,
    recovery_objectives,
    rto_statement,
    timeline_figure,
)
from opslib.backup.playbook import dr_playbook
from opslib.backup.postgres import PgTarget, discover_postgres, take_backup
from opslib.backup.redis import persistence_checks, redis_persistence, snapshot_redis
from opslib.backup.retention import apply_retention, deletes_planned, plan_retention
from opslib.backup.scratch import cleanup_scratch
from opslib.demo import SHOP_APP_QUERIES

__all__ = [
    "DRILL_LABEL",
    "DRILL_RUN_LABEL",
    "MANIFEST_FORMAT",
    "SHOP_APP_QUERIES",
    "Backup",
    "DrillResult",
    "PgTarget",
    "RecoveryObjectives",
    "apply_retention",
    "cleanup_scratch",
    "deletes_planned",
    "discover_postgres",
    "dr_playbook",
    "drill_history",
    "list_backups",
    "load_drill",
    "load_manifest",
    "manifest_path",
    "manifest_tables",
    "new_run_id",
    "persistence_checks",
    "plan_retention",
    "recovery_objectives",
    "redis_persistence",
    "resolve_backup_dir",
    "rto_statement",
    "run_drill",
    "sha256_file",
    "snapshot_redis",
    "take_backup",
    "timeline_figure",
    "verified_count",
    "verify_backup_file",
    "without_paths",
]
