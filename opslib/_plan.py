"""The one plan/apply protocol of the runbooks that change a system.

A ``plan_*`` function builds a plan (a dataclass or a DataFrame) that the notebook shows first;
the matching ``apply_*`` function has one signature::

    apply_x(plan, *, client=None, journal=None, apply=False, **options) -> pd.DataFrame

* ``apply=False`` (the default) changes nothing and returns what ``apply=True`` would do;
* ``journal`` is the JSON-lines journal of applied actions: a file, or the run's folder (the
  journal is then ``<runbook>-journal.jsonl`` in it, and files the apply writes go there too).
  Every applied action is appended before and after it runs, so a rerun after a crash resumes;
* ``client`` is the Docker client, for the applies that touch containers;
* a step that leaves a service unhealthy is rolled back (where the domain can) and the result
  row says so.

The notebooks call :func:`opslib.runbook.report.apply_plan`, which runs the apply now when the
runbook's ``apply`` parameter is true and otherwise shows the dry run and an Apply button.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, TypeVar

import pandas as pd

from opslib.engine import Client
from opslib.exceptions import PlanError

__all__ = ["ApplyFunction", "journal_path", "plan_size"]

PlanT_contra = TypeVar("PlanT_contra", contravariant=True)


class ApplyFunction(Protocol[PlanT_contra]):
    """The signature every ``apply_*`` function has (extra options are keyword-only)."""

    def __call__(
        self,
        plan: PlanT_contra,
        /,
        *,
        client: Client | None = None,
        journal: str | Path | None = None,
        apply: bool = False,
    ) -> pd.DataFrame: ...


def journal_path(journal: str | Path | None, name: str, *, what: str) -> Path:
    """The journal file a ``journal`` argument names.

    Args:
        journal: A ``.jsonl`` file, or a folder (the run's output folder).
        name: The journal's file name inside a folder (``log-cleanup-journal.jsonl``).
        what: The apply function, for the error message.

    Returns:
        The journal file's path (its folder is not created here).

    Raises:
        PlanError: No journal was given.
    """
    if journal is None or not str(journal):
        raise PlanError(f"{what} needs journal=... (the run's output folder or a .jsonl file); "
                        "every applied action is journaled so that a rerun resumes.")
    path = Path(journal).expanduser()
    return path if path.suffix == ".jsonl" else path / name


def plan_size(plan: Any) -> int:
    """How many things a plan would change: rows of a frame, else its ``services``."""
    if isinstance(plan, pd.DataFrame):
        return len(plan)
    return len(getattr(plan, "services", ()) or ())
