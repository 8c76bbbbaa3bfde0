"""Backup retention: the plan and its apply."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from opslib._plan import journal_path
from opslib.backup.manifest import _check_int, _drill_path, _utcnow, list_backups, manifest_path
from opslib.engine import Client
from opslib.exceptions import (
    ApplyError,
    BadParameter,
    PlanError,
)
from opslib.journal import Journal

__all__ = ["apply_retention", "deletes_planned", "plan_retention"]


# --------------------------------------------------------------------------------------------
# retention

_PLAN_COLUMNS = ["file", "kind", "source", "created_at", "age_days", "manifest", "verified",
                 "action", "why", "path"]


def plan_retention(
    backup_dir: str | Path,
    *,
    keep_days: float,
    keep_min_count: int,
    now: dt.datetime | None = None,
    partial_grace_s: float = 3600.0,
) -> pd.DataFrame:
    """Plan which backups to keep and which to delete, by age and count.

    Per source (project/service/database), newest first: the newest verified backup is always
    kept (when none is verified, the newest with an intact manifest is kept instead); then the
    ``keep_min_count`` newest; then everything younger than ``keep_days``; the rest is deleted.
    Unfinished ``.partial`` files older than ``partial_grace_s`` are deleted.

    Args:
        backup_dir: The folder.
        keep_days: Keep backups younger than this many days.
        keep_min_count: Always keep this many newest backups per source.
        now: Reference time (default now, UTC).
        partial_grace_s: Age after which a ``.partial`` file is considered abandoned.

    Returns:
        Columns file, kind, source, created_at, age_days, manifest, verified, action
        (keep/delete), why, path -- nothing is changed (see :func:`apply_retention`).

    Raises:
        BadParameter: Negative ``keep_days`` or ``keep_min_count``.
    """
    if keep_days < 0:
        raise BadParameter("keep_days", keep_days, "a number of days >= 0")
    _check_int("keep_min_count", keep_min_count, 0)
    now = now or _utcnow()
    df = list_backups(backup_dir, now=now)
    rows = []
    for source, group in df.groupby("source", sort=True) if len(df) else []:
        done = group[group["manifest"] != "partial"]
        protected = ""
        verified = done[done["verified"]]
        if len(verified):
            protected, protect_why = str(verified.iloc[0]["file"]), \
                "newest verified backup: never deleted"
        else:
            intact = done[done["manifest"] == "ok"]
            if len(intact):
                protected, protect_why = str(intact.iloc[0]["file"]), \
                    "newest intact backup (none verified yet): never deleted"
        rank = 0
        for rec in group.to_dict(orient="records"):
            age_days = float(rec["age_s"]) / 86400
            if rec["manifest"] == "partial":
                stale = float(rec["age_s"]) > partial_grace_s
                action = "delete" if stale else "keep"
                why = ("unfinished .partial left by a crashed backup" if stale
                       else "unfinished .partial, may still be written")
            else:
                rank += 1
                if rec["file"] == protected:
                    action, why = "keep", protect_why
                elif rank <= keep_min_count:
                    action, why = "keep", f"among the {keep_min_count} newest of {source}"
                elif age_days <= keep_days:
                    action, why = "keep", f"younger than {keep_days:g} days"
                else:
                    action, why = "delete", (f"older than {keep_days:g} days and not among the "
                                             f"{keep_min_count} newest")
            rows.append({"file": rec["file"], "kind": rec["kind"], "source": source,
                         "created_at": rec["created_at"], "age_days": round(age_days, 2),
                         "manifest": rec["manifest"], "verified": bool(rec["verified"]),
                         "action": action, "why": why, "path": rec["path"]})
    plan = pd.DataFrame(rows, columns=_PLAN_COLUMNS)
    if len(plan):
        plan = plan.sort_values(["source", "created_at"], ascending=[True, False],
                                kind="stable").reset_index(drop=True)
    return plan


def apply_retention(
    plan: pd.DataFrame,
    *,
    client: Client | None = None,
    journal: str | Path | None = None,
    apply: bool = False,
    remove: Callable[[Path], None] | None = None,
) -> pd.DataFrame:
    """Delete the backups a retention plan marks ``delete`` (with their manifest and drill record).

    Before deleting, the folder is listed again: if a file marked ``delete`` is now the newest
    verified (or protected) backup of its source, the plan is stale and nothing is deleted. Each
    deletion is journalled (``intent`` then ``deleted``) so a rerun after a crash resumes.

    Args:
        plan: The frame from :func:`plan_retention` (shown to a person first).
        client: Not used (backups are files on this host); part of the one apply signature.
        journal: The JSON-lines journal file, or the run's output folder (then
            ``retention-journal.jsonl`` in it).
        apply: Really delete (``False`` = report what would be deleted).
        remove: How to delete one file (default ``Path.unlink``); for tests of failures.

    Returns:
        Columns file, action, status (``would delete``, ``deleted``, ``already deleted``,
        ``kept``), detail.

    Raises:
        PlanError: The plan lacks columns or is stale (it would delete a protected backup).
        ApplyError: A deletion failed (the journal says what was done).
    """
    missing = [c for c in ("file", "action", "path", "source") if c not in plan.columns]
    if missing:
        raise PlanError(f"not a retention plan: columns {missing} missing; build it with "
                        "opslib.backup.plan_retention")
    log = Journal(journal_path(journal, "retention-journal.jsonl", what="apply_retention"),
                  time_key="ts", timespec="microseconds")
    deletes = plan[plan["action"] == "delete"]
    folders = {str(Path(str(p)).parent) for p in deletes["path"]}
    protected: set[str] = set()
    for folder in folders:
        fresh = plan_retention(folder, keep_days=1e9, keep_min_count=0)
        protected |= {str(p) for p, why in zip(fresh["path"], fresh["why"], strict=True)
                      if "never deleted" in str(why)}
    stale = sorted(str(p) for p in deletes["path"] if str(p) in protected)
    if stale:
        raise PlanError(f"stale plan: it would delete {', '.join(Path(s).name for s in stale)}, "
                        "now the newest verified backup of its source; rebuild the plan")
    done = log.done_keys("file", status="deleted")
    unlink = remove or (lambda p: p.unlink(missing_ok=True))
    rows = []
    for rec in plan.to_dict(orient="records"):
        path = Path(str(rec["path"]))
        if rec["action"] != "delete":
            rows.append({"file": rec["file"], "action": rec["action"], "status": "kept",
                         "detail": rec.get("why", "")})
            continue
        targets = [path, manifest_path(path), _drill_path(path)]
        if not apply:
            rows.append({"file": rec["file"], "action": "delete", "status": "would delete",
                         "detail": ", ".join(t.name for t in targets if t.exists())})
            continue
        if str(path) in done and not any(t.exists() for t in targets):
            rows.append({"file": rec["file"], "action": "delete", "status": "already deleted",
                         "detail": "done by an earlier run (journal)"})
            continue
        log.append({"action": "delete", "file": str(path), "status": "intent"})
        try:
            for t in targets:
                if t.exists():
                    unlink(t)
        except OSError as exc:
            log.append({"action": "delete", "file": str(path), "status": "failed",
                        "error": str(exc)})
            raise ApplyError(f"delete {rec['file']}", str(exc)) from exc
        log.append({"action": "delete", "file": str(path), "status": "deleted"})
        rows.append({"file": rec["file"], "action": "delete", "status": "deleted",
                     "detail": ", ".join(t.name for t in targets)})
    return pd.DataFrame(rows, columns=["file", "action", "status", "detail"])


def deletes_planned(plan: pd.DataFrame) -> int:
    """How many backups a :func:`plan_retention` plan would delete."""
    return int((plan["action"] == "delete").sum()) if len(plan) else 0
