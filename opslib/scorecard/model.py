"""Compute the 5-star scorecard from the run history (every run's results.json).

For each rule, the evidence is taken from the **newest decisive** run of its runbook for the
project: the newest run in which the check passed or failed (a check that did not run does not
overwrite an older verdict) or in which the record exists. Evidence older than the freshness
window (default 30 days) is **expired**: it stops counting, and a met rule shows when its proof
expires. A category none of whose runbooks has run for the project is *not assessed*: no stars,
no guess.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from opslib.exceptions import BadParameter
from opslib.scorecard.rules import CATEGORIES, DEFAULT_RULES, RISK_WEIGHTS, Evidence, Rule

__all__ = ["DEFAULT_FRESHNESS_DAYS", "SCORECARD_RUNBOOK", "CategoryScore", "RuleResult",
           "Scorecard", "compute_scorecard", "load_history", "project_of", "projects_in",
           "scorecard_trend", "stars_text"]

DEFAULT_FRESHNESS_DAYS = 30.0
#: The scorecard's own runs are never evidence.
SCORECARD_RUNBOOK = "scorecard"
MET, FAILED, EXPIRED, NOT_RUN, NO_EVIDENCE = "met", "failed", "expired", "not_run", "no_evidence"


def _when(run: Mapping[str, Any]) -> dt.datetime | None:
    text = str(run.get("finished") or run.get("started") or "")
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def project_of(run: Mapping[str, Any]) -> str:
    """The compose project a run looked at (its ``project`` field; empty when it has none)."""
    return str(run.get("project") or "")


def load_history(outputs_dir: str | Path) -> list[dict[str, Any]]:
    """Every ``<outputs>/<runbook>/<run>/results.json``, newest first.

    Unreadable files and the scorecard's own runs are skipped. Each run gets ``_rel`` (its folder
    relative to ``outputs_dir``, for links) and ``_when`` (its finish time, aware UTC).

    Args:
        outputs_dir: The run folders' root (``outputs/``).
    """
    root = Path(outputs_dir)
    runs = []
    for path in root.glob("*/*/results.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict) or "runbook" not in data:
            continue
        when = _when(data)
        if when is None or data["runbook"] == SCORECARD_RUNBOOK:
            continue
        data["_rel"] = path.parent.relative_to(root).as_posix()
        data["_when"] = when
        runs.append(data)
    runs.sort(key=lambda r: (r["_when"], r["_rel"]), reverse=True)
    return runs


def projects_in(runs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The projects the runs looked at, most recently run first."""
    seen: dict[str, None] = {}
    for r in runs:
        if project_of(r):
            seen.setdefault(project_of(r), None)
    return list(seen)


@dataclass(frozen=True)
class RuleResult:
    """A rule and what the history says about it.

    Attributes:
        rule: The rule.
        status: ``met``, ``failed``, ``expired``, ``not_run`` (its check could not run) or
            ``no_evidence`` (its runbook never ran for this project, or wrote no such result).
        detail: What was found (the check's detail, the record's value, the age).
        run: Folder of the run that decided (relative to outputs), or ``""``.
        when: When that run finished.
        expires: When a met rule stops counting (``when`` + the freshness window).
    """

    rule: Rule
    status: str
    detail: str = ""
    run: str = ""
    when: dt.datetime | None = None
    expires: dt.datetime | None = None

    @property
    def met(self) -> bool:
        """Whether the rule counts now."""
        return self.status == MET


@dataclass(frozen=True)
class CategoryScore:
    """The stars of one category.

    Attributes:
        key: Category key (``backup``).
        label: Its label (``Backup/DR``).
        stars: 0-5, or ``None`` when not assessed.
        results: The category's rule results, by star then rule.
        max_stars: The highest star any rule of the category gives (what can be earned today).
    """

    key: str
    label: str
    stars: int | None
    results: tuple[RuleResult, ...]
    max_stars: int

    @property
    def assessed(self) -> bool:
        """Whether any evidence exists for this category."""
        return self.stars is not None

    @property
    def expires(self) -> dt.datetime | None:
        """When the first proof counted in the stars expires (the stars drop then)."""
        counted = [r.expires for r in self.results
                   if r.met and r.rule.stars <= (self.stars or 0) and r.expires]
        return min(counted) if counted else None

    @property
    def next_missing(self) -> list[RuleResult]:
        """The unmet rules of the next star (what to do to earn it)."""
        nxt = (self.stars or 0) + 1
        return [r for r in self.results if r.rule.stars == nxt and not r.met]


@dataclass(frozen=True)
class Scorecard:
    """The scorecard of one project at one time.

    Attributes:
        project: The compose project.
        as_of: The time it was computed for (runs after it are ignored).
        freshness_days: The freshness window.
        categories: One score per checklist category, in the checklist's order.
        runs_used: How many runs of this project were read.
    """

    project: str
    as_of: dt.datetime
    freshness_days: float
    categories: tuple[CategoryScore, ...]
    runs_used: int = 0

    def category(self, key: str) -> CategoryScore:
        """The score of category ``key``."""
        for c in self.categories:
            if c.key == key:
                return c
        raise BadParameter("category", key, "a scorecard category", list(CATEGORIES))

    @property
    def assessed(self) -> list[CategoryScore]:
        """The categories with evidence."""
        return [c for c in self.categories if c.assessed]

    @property
    def overall(self) -> int | None:
        """The mean of the assessed categories' stars, rounded half up (None: none assessed)."""
        stars = [c.stars for c in self.assessed if c.stars is not None]
        return math.floor(sum(stars) / len(stars) + 0.5) if stars else None

    def below(self, min_stars: int) -> list[CategoryScore]:
        """Categories under ``min_stars``; a category not assessed is below any minimum > 0."""
        return [c for c in self.categories if (c.stars or 0) < min_stars]

    def table(self) -> pd.DataFrame:
        """One row per category: stars, rules met, what the next star needs, expiry."""
        rows = []
        for c in self.categories:
            met = sum(r.met for r in c.results)
            rows.append({
                "category": c.label,
                "stars": stars_text(c.stars),
                "rules met": f"{met} of {len(c.results)}",
                "next star needs": _next_text(c),
                "stars valid until": c.expires.strftime("%Y-%m-%d %H:%M") if c.expires else "",
            })
        return pd.DataFrame(rows)

    def rules_table(self) -> pd.DataFrame:
        """One row per rule: category, star, kind, risk, status, evidence, run, expiry."""
        rows = []
        for c in self.categories:
            for r in c.results:
                rows.append({
                    "category": c.label, "star": r.rule.stars, "rule": r.rule.title,
                    "kind": r.rule.kind, "risk": r.rule.risk, "status": r.status,
                    "evidence": "; ".join(e.describe() for e in r.rule.evidence),
                    "found": r.detail, "run": r.run,
                    "expires": r.expires.strftime("%Y-%m-%d %H:%M") if r.expires else "",
                    "remediation": "" if r.met else r.rule.remediation,
                })
        return pd.DataFrame(rows)

    def risk_score(self) -> float | None:
        """Risk-weighted share of met rules among assessed categories, 0-100 (None: none)."""
        rules = [r for c in self.assessed for r in c.results]
        total = sum(RISK_WEIGHTS[r.rule.risk] for r in rules)
        if not total:
            return None
        return round(100 * sum(RISK_WEIGHTS[r.rule.risk] for r in rules if r.met) / total, 1)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (for results.json and ``opslib scorecard --json``)."""
        return {
            "project": self.project, "as_of": self.as_of.isoformat(timespec="seconds"),
            "freshness_days": self.freshness_days, "overall": self.overall,
            "assessed": len(self.assessed), "risk_score": self.risk_score(),
            "categories": {c.key: {
                "label": c.label, "stars": c.stars,
                "expires": c.expires.isoformat(timespec="seconds") if c.expires else None,
                "rules": [{"id": r.rule.id, "star": r.rule.stars, "kind": r.rule.kind,
                           "status": r.status, "run": r.run, "detail": r.detail}
                          for r in c.results]} for c in self.categories},
        }


def _next_text(c: CategoryScore) -> str:
    if not c.results:
        return "no opslib runbook assesses this category yet"
    if not c.assessed:
        return "run " + ", ".join(sorted({e.runbook for r in c.results for e in r.rule.evidence}))
    if c.next_missing:
        return "; ".join(r.rule.title for r in c.next_missing)
    if (c.stars or 0) >= 5:
        return "(all five stars)"
    return f"(no rule gives star {(c.stars or 0) + 1} yet)"


def stars_text(stars: int | None) -> str:
    """``★★★☆☆`` for 3, ``not assessed`` for None."""
    if stars is None:
        return "not assessed"
    return "★" * stars + "☆" * (5 - stars)


def _match_checks(run: Mapping[str, Any], pattern: str) -> list[Mapping[str, Any]]:
    checks = [c for c in run.get("checks") or [] if isinstance(c, Mapping)]
    if any(ch in pattern for ch in "*?["):
        return [c for c in checks if fnmatch.fnmatchcase(str(c.get("name", "")), pattern)]
    return [c for c in checks if c.get("name") == pattern]


def _status(c: Mapping[str, Any]) -> str:
    status = c.get("status")
    if status in ("pass", "fail", "not_run"):
        return str(status)
    return "pass" if c.get("ok") else "fail"


def _compare(value: Any, op: str, target: Any) -> bool:
    if op == "present":
        return True
    if op == "empty":
        return value in ([], {}, "", None)
    if op == "nonempty":
        return value not in ([], {}, "", None)
    if op == "true":
        return value is True
    if isinstance(value, bool) or not isinstance(value, int | float):
        return op == "==" and value == target
    return bool({"==": value == target, "<=": value <= target, ">=": value >= target,
                 "<": value < target, ">": value > target}[op])


def _verdict(run: Mapping[str, Any], ev: Evidence) -> tuple[str, str] | None:
    """``(pass|fail|not_run, detail)`` of ``ev`` in ``run``; None: the run has no such result."""
    if ev.check is not None:
        found = _match_checks(run, ev.check)
        if not found:
            return None
        statuses = [_status(c) for c in found]
        detail = "; ".join(f"{c.get('name')}: {c.get('detail', '')}" for c in found)[:300]
        if "fail" in statuses:
            return "fail", detail
        if "not_run" in statuses:
            return "not_run", detail
        return "pass", detail
    records = run.get("records") or {}
    if ev.record not in records:
        return None
    value = records[ev.record]
    ok = _compare(value, ev.op, ev.value)
    return ("pass" if ok else "fail"), f"{ev.record} = {str(value)[:120]}"


@dataclass(frozen=True)
class _Found:
    status: str  # pass, fail, not_run, none
    detail: str = ""
    run: Mapping[str, Any] | None = None

    @property
    def when(self) -> dt.datetime:
        return self.run["_when"] if self.run is not None else dt.datetime.min.replace(tzinfo=dt.UTC)

    @property
    def rel(self) -> str:
        return str(self.run["_rel"]) if self.run is not None else ""


def _evaluate_one(ev: Evidence, runs: Sequence[Mapping[str, Any]]) -> _Found:
    """The newest decisive verdict on ``ev``; an older pass/fail beats a newer 'not run'."""
    not_run: _Found | None = None
    for run in runs:  # newest first
        if run.get("runbook") != ev.runbook:
            continue
        verdict = _verdict(run, ev)
        if verdict is None:
            continue
        if verdict[0] == "not_run":
            not_run = not_run or _Found("not_run", verdict[1], run)
            continue
        return _Found(verdict[0], verdict[1], run)
    return not_run or _Found("none")


def _evaluate(rule: Rule, runs: Sequence[Mapping[str, Any]], as_of: dt.datetime,
              window: dt.timedelta) -> RuleResult:
    found = [_evaluate_one(ev, runs) for ev in rule.evidence]
    for f, ev in zip(found, rule.evidence, strict=True):
        if f.status == "none":
            ran = any(r.get("runbook") == ev.runbook for r in runs)
            why = (f"{ev.runbook} ran but wrote no {ev.check or ev.record}" if ran
                   else f"{ev.runbook} has not run for this project")
            return RuleResult(rule, NO_EVIDENCE, why)
    failed = [f for f in found if f.status == "fail"]
    if failed:
        newest = max(failed, key=lambda f: f.when)
        return RuleResult(rule, FAILED, newest.detail, newest.rel, newest.when)
    rel = ", ".join(dict.fromkeys(f.rel for f in found))
    detail = " | ".join(f.detail for f in found)
    when = min(f.when for f in found)  # a rule is as old as its oldest piece of evidence
    if any(f.status == "not_run" for f in found):
        return RuleResult(rule, NOT_RUN, detail, rel, when)
    expires = when + window
    if expires <= as_of:
        age = (as_of - when).total_seconds() / 86400
        return RuleResult(rule, EXPIRED, f"proof is {age:.0f} days old (window "
                          f"{window.total_seconds() / 86400:g} days): {detail}", rel, when,
                          expires)
    return RuleResult(rule, MET, detail, rel, when, expires)


def compute_scorecard(
    runs: Iterable[Mapping[str, Any]],
    project: str,
    *,
    rules: Sequence[Rule] = DEFAULT_RULES,
    freshness_days: float = DEFAULT_FRESHNESS_DAYS,
    as_of: dt.datetime | None = None,
) -> Scorecard:
    """The scorecard of ``project`` from ``runs`` (as :func:`load_history` returns them).

    Args:
        runs: Runs of any projects and runbooks, with ``_when`` and ``_rel`` set.
        project: The compose project to score; runs of other projects are ignored.
        rules: The rule set (default :data:`~opslib.scorecard.rules.DEFAULT_RULES`).
        freshness_days: Evidence older than this stops counting.
        as_of: Score as of this time (default now); later runs are ignored (for trends).

    Raises:
        BadParameter: ``freshness_days`` is not positive, a rule names an unknown category or a
            star outside 1-5.
    """
    if isinstance(freshness_days, bool) or not isinstance(freshness_days, int | float) \
            or freshness_days <= 0:
        raise BadParameter("freshness_days", freshness_days, "a positive number of days")
    now = as_of or dt.datetime.now(dt.UTC)
    window = dt.timedelta(days=float(freshness_days))
    mine = sorted((r for r in runs if project_of(r) == project and r.get("_when") is not None
                   and r["_when"] <= now), key=lambda r: r["_when"], reverse=True)
    by_cat: dict[str, list[RuleResult]] = {k: [] for k in CATEGORIES}
    for rule in rules:
        if rule.category not in by_cat:
            raise BadParameter("rules", rule.id, "a rule of a known category", list(CATEGORIES))
        if not 1 <= rule.stars <= 5:
            raise BadParameter("rules", rule.id, "a rule giving 1 to 5 stars")
        by_cat[rule.category].append(_evaluate(rule, mine, now, window))
    ran = {str(r.get("runbook")) for r in mine}
    cats = []
    for key, results in by_cat.items():
        results.sort(key=lambda r: r.rule.stars)
        assessed = any(e.runbook in ran for r in results for e in r.rule.evidence)
        stars: int | None = None
        if assessed:
            stars = 0
            for n in range(1, 6):
                tier = [r for r in results if r.rule.stars == n]
                if not tier or not all(r.met for r in tier):
                    break
                stars = n
        cats.append(CategoryScore(key, CATEGORIES[key], stars, tuple(results),
                                  max((r.rule.stars for r in results), default=0)))
    return Scorecard(project, now, float(freshness_days), tuple(cats), len(mine))


def scorecard_trend(
    runs: Sequence[Mapping[str, Any]],
    project: str,
    *,
    rules: Sequence[Rule] = DEFAULT_RULES,
    freshness_days: float = DEFAULT_FRESHNESS_DAYS,
    max_points: int = 30,
) -> pd.DataFrame:
    """The scorecard recomputed as of each of the project's last ``max_points`` runs.

    Returns:
        One row per point, oldest first: ``as_of``, ``overall`` and one column per category key
        (stars, or NaN when not assessed then).
    """
    times = sorted({r["_when"] for r in runs if project_of(r) == project})[-max_points:]
    rows = []
    for t in times:
        card = compute_scorecard(runs, project, rules=rules, freshness_days=freshness_days,
                                 as_of=t)
        row: dict[str, Any] = {"as_of": t, "overall": card.overall}
        row.update({c.key: c.stars for c in card.categories})
        rows.append(row)
    return pd.DataFrame(rows, columns=["as_of", "overall", *CATEGORIES])
