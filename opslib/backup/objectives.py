"""Measured recovery objectives (RTO/RPO) and the drill timeline."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from opslib.backup.drill import DrillResult
from opslib.backup.manifest import _utcnow, list_backups

__all__ = ["RecoveryObjectives", "recovery_objectives", "rto_statement", "timeline_figure"]


# --------------------------------------------------------------------------------------------
# RTO / RPO


@dataclass(frozen=True)
class RecoveryObjectives:
    """Measured RTO and RPO against their targets.

    Attributes:
        rto_s: Measured recovery time of this drill (``None`` if it did not verify).
        rpo_s: Age of the newest verified backup's data (``None`` if no backup is verified).
        rto_target_s: RTO target.
        rpo_target_s: RPO target.
        newest_verified: File name of the newest verified backup ("" if none).
    """

    rto_s: float | None
    rpo_s: float | None
    rto_target_s: float
    rpo_target_s: float
    newest_verified: str

    @property
    def rto_ok(self) -> bool:
        """RTO measured and within target."""
        return self.rto_s is not None and self.rto_s <= self.rto_target_s

    @property
    def rpo_ok(self) -> bool:
        """RPO known and within target."""
        return self.rpo_s is not None and self.rpo_s <= self.rpo_target_s

    @property
    def rto_detail(self) -> str:
        """Sentence for the RTO check."""
        if self.rto_s is None:
            return "RTO not measured: the drill did not verify a restore"
        return (f"restore procedure to verified database took {self.rto_s:.1f} s "
                f"(target {self.rto_target_s:g} s = {self.rto_target_s / 3600:g} h)")

    @property
    def rpo_detail(self) -> str:
        """Sentence for the RPO check."""
        if self.rpo_s is None:
            return "no verified backup: data loss on a disaster is unbounded; run a drill"
        return (f"newest verified backup {self.newest_verified} holds data "
                f"{self.rpo_s / 60:.1f} min old (target {self.rpo_target_s / 60:g} min)")

    def table(self) -> pd.DataFrame:
        """Metric, measured, target, ok."""
        return pd.DataFrame([
            {"metric": "RTO (s)", "measured": self.rto_s, "target": self.rto_target_s,
             "ok": self.rto_ok, "detail": self.rto_detail},
            {"metric": "RPO (s)", "measured": self.rpo_s, "target": self.rpo_target_s,
             "ok": self.rpo_ok, "detail": self.rpo_detail},
        ])


def recovery_objectives(
    drill: DrillResult | None,
    backup_dir: str | Path,
    *,
    rto_target_s: float = 14400,
    rpo_target_s: float = 3600,
    now: dt.datetime | None = None,
) -> RecoveryObjectives:
    """Measured RTO (this drill) and RPO (age of the newest verified backup) vs. targets.

    Args:
        drill: This run's drill (``None`` when it did not run).
        backup_dir: Folder with the backups (for the newest verified one).
        rto_target_s: RTO target (the checklist: < 4 h).
        rpo_target_s: RPO target (the checklist: < 1 h).
        now: Reference time (default now, UTC).

    Returns:
        A :class:`RecoveryObjectives`.
    """
    now = now or _utcnow()
    df = list_backups(backup_dir, now=now)
    verified = df[df["verified"] & (df["kind"] == "postgres")] if len(df) else df
    rpo_s: float | None = None
    newest = ""
    if len(verified):
        top = verified.iloc[0]
        rpo_s = round(float((now - top["created_at"]).total_seconds()), 1)
        newest = str(top["file"])
    return RecoveryObjectives(drill.rto_s if drill else None, rpo_s, float(rto_target_s),
                              float(rpo_target_s), newest)


def rto_statement(drill: DrillResult | None, rto_target_s: float = 14400) -> str:
    """A markdown line for the playbook: the RTO this drill measured.

    Args:
        drill: This run's drill.
        rto_target_s: RTO target.

    Returns:
        Markdown text.
    """
    if drill is None or drill.rto_s is None:
        return ("**Estimated recovery time: unknown** -- this drill did not verify a restore "
                f"(target {rto_target_s / 3600:g} h). Fix the failed check first.")
    restore = drill.phase_seconds("restore")
    return (f"**Estimated recovery time (measured by drill {drill.run_id}): {drill.rto_s:.0f} s "
            f"({drill.rto_s / 60:.1f} min)** from a verified backup to a verified database, of "
            f"which pg_restore -j {drill.restore_jobs} took {restore:.0f} s; target "
            f"{rto_target_s / 3600:g} h. Add the time to detect the incident and to repoint the "
            "application.")


def timeline_figure(drill: DrillResult | None) -> Any:
    """Gantt-like chart of the drill's phases, with the measured RTO span.

    Args:
        drill: The drill (``None`` gives an empty chart that says so).

    Returns:
        A plotly Figure.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    if drill is None or not len(drill.phases):
        fig.update_layout(title="No drill ran", height=200)
        return fig
    ph = drill.phases
    t0 = ph["started_at"].min()
    offsets = [(s - t0).total_seconds() for s in ph["started_at"]]
    colours = ["#1a7f37" if ok else "#cf222e" for ok in ph["ok"]]
    fig.add_trace(go.Bar(
        y=ph["phase"], x=ph["seconds"], base=offsets, orientation="h", marker_color=colours,
        text=[f"{s:.1f} s" for s in ph["seconds"]], textposition="auto",
        hovertext=[str(d) for d in ph["detail"]], name="phase",
    ))
    if drill.rto_s is not None:
        fig.add_vline(x=drill.rto_s, line_dash="dash", line_color="#0969da",
                      annotation_text=f"RTO {drill.rto_s:.1f} s")
    verdict = "verified" if drill.verified else f"FAILED ({drill.failed_check})"
    fig.update_layout(
        title=f"Restore drill {drill.run_id}: {verdict}", height=320,
        xaxis_title="seconds since drill start", showlegend=False, margin={"t": 50, "b": 40},
    )
    fig.update_yaxes(autorange="reversed")
    return fig
