"""The 5-star scorecard of the checklist, computed from the evidence of real runs.

Every star is a rule tied to a check or recorded value of a named runbook (``rules.py``); the
scorecard reads the run history (``outputs/*/*/results.json``) and counts a rule only while its
evidence is fresh. "Configured" and "proven by a drill" are separate rules.
"""

from opslib.scorecard.model import (
    DEFAULT_FRESHNESS_DAYS,
    SCORECARD_RUNBOOK,
    CategoryScore,
    RuleResult,
    Scorecard,
    compute_scorecard,
    load_history,
    project_of,
    projects_in,
    scorecard_trend,
    stars_text,
)
from opslib.scorecard.rules import CATEGORIES, DEFAULT_RULES, RISK_WEIGHTS, Evidence, Rule
from opslib.scorecard.views import category_checks, stars_figure, trend_figure

__all__ = [
    "CATEGORIES", "DEFAULT_FRESHNESS_DAYS", "DEFAULT_RULES", "RISK_WEIGHTS", "SCORECARD_RUNBOOK",
    "CategoryScore", "Evidence", "Rule", "RuleResult", "Scorecard", "category_checks",
    "compute_scorecard", "load_history", "project_of", "projects_in", "scorecard_trend",
    "stars_figure", "stars_text", "trend_figure",
]
