"""The scorecard from run histories of different ages: ladder, freshness, evidence, CLI, index."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from opslib import scorecard
from opslib.exceptions import BadParameter
from opslib.runbook import cli, htmlreport
from opslib.scorecard import Evidence, Rule

NOW = dt.datetime(2026, 12, 8, 12, 0, tzinfo=dt.UTC)


def write_run(root: Path, runbook: str, project: str, age_days: float,
              checks: dict[str, str | bool | None] | None = None,
              records: dict[str, Any] | None = None, now: dt.datetime = NOW) -> str:
    """A results.json as opslib run writes it, finished ``age_days`` before ``now``."""
    when = now - dt.timedelta(days=age_days)
    run_id = when.strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
    folder = root / runbook / run_id
    folder.mkdir(parents=True)
    rows = []
    for name, verdict in (checks or {}).items():
        status = {True: "pass", False: "fail", None: "not_run"}.get(verdict, verdict)  # type: ignore[call-overload]
        rows.append({"name": name, "ok": None if status == "not_run" else status == "pass",
                     "status": status, "detail": f"{name} said {status}"})
    (folder / "results.json").write_text(json.dumps({
        "schema": 1, "runbook": runbook, "run_id": run_id, "project": project,
        "status": "passed", "exit_code": 0, "started": when.isoformat(),
        "finished": when.isoformat(), "checks": rows, "records": records or {}}))
    return f"{runbook}/{run_id}"


RULES = (
    Rule("backup.exists", "backup", 1, "a backup exists", "configured", "critical", "w", "r",
         (Evidence("restore-drill", record="backups_total", op=">=", value=1),)),
    Rule("backup.verified", "backup", 2, "restore verified", "proven", "critical", "w", "r",
         (Evidence("restore-drill", check="drill_verified"),)),
    Rule("backup.objectives", "backup", 3, "rto and rpo", "proven", "high", "w", "r",
         (Evidence("restore-drill", check="rto_within_target"),
          Evidence("restore-drill", check="rpo_within_target"))),
    Rule("performance.slos", "performance", 1, "slos met", "proven", "high", "w", "r",
         (Evidence("load-test-analysis", check="slo *"),)),
)


def card(root: Path, project: str = "shop", **kw: Any) -> scorecard.Scorecard:
    return scorecard.compute_scorecard(scorecard.load_history(root), project, rules=RULES,
                                       as_of=NOW, **kw)


def test_stars_are_a_ladder_of_fresh_evidence(tmp_path: Path) -> None:
    write_run(tmp_path, "restore-drill", "shop", 2, {"drill_verified": True,
              "rto_within_target": True, "rpo_within_target": False}, {"backups_total": 3})
    c = card(tmp_path).category("backup")
    assert c.stars == 2
    assert [r.status for r in c.results] == ["met", "met", "failed"]
    assert c.next_missing[0].rule.id == "backup.objectives"
    assert c.expires == NOW - dt.timedelta(days=2) + dt.timedelta(days=30)


def test_a_proof_older_than_the_window_stops_counting(tmp_path: Path) -> None:
    write_run(tmp_path, "restore-drill", "shop", 40, {"drill_verified": True,
              "rto_within_target": True, "rpo_within_target": True}, {"backups_total": 1})
    assert card(tmp_path).category("backup").stars == 0
    assert {r.status for r in card(tmp_path).category("backup").results} == {"expired"}
    assert card(tmp_path, freshness_days=60).category("backup").stars == 3
    # a fresh run of only the backup record brings star 1 back, the drills stay expired
    write_run(tmp_path, "restore-drill", "shop", 1, {}, {"backups_total": 1})
    c = card(tmp_path).category("backup")
    assert c.stars == 1 and c.results[1].status == "expired"


def test_the_newest_decisive_run_wins_and_not_run_does_not_overwrite(tmp_path: Path) -> None:
    write_run(tmp_path, "restore-drill", "shop", 5, {"drill_verified": True}, {"backups_total": 1})
    write_run(tmp_path, "restore-drill", "shop", 3, {"drill_verified": None})
    assert card(tmp_path).category("backup").results[1].status == "met"
    write_run(tmp_path, "restore-drill", "shop", 1, {"drill_verified": False})
    res = card(tmp_path).category("backup").results[1]
    assert res.status == "failed" and "drill_verified said fail" in res.detail
    # only not-run evidence: the rule is not run, not met
    other = tmp_path / "o"
    write_run(other, "restore-drill", "shop", 1, {"drill_verified": None}, {"backups_total": 1})
    assert card(other).category("backup").results[1].status == "not_run"


def test_a_pattern_needs_every_matching_check_to_pass(tmp_path: Path) -> None:
    write_run(tmp_path, "load-test-analysis", "shop", 1,
              {"slo p(95)<500": True, "slo rate<0.01": False})
    assert card(tmp_path).category("performance").stars == 0
    write_run(tmp_path, "load-test-analysis", "shop", 0.5,
              {"slo p(95)<500": True, "slo rate<0.01": True})
    assert card(tmp_path).category("performance").stars == 1


def test_no_evidence_is_not_assessed_and_other_projects_never_count(tmp_path: Path) -> None:
    write_run(tmp_path, "restore-drill", "ledger", 1, {"drill_verified": True,
              "rto_within_target": True, "rpo_within_target": True}, {"backups_total": 1})
    shop = card(tmp_path, "shop")
    assert all(c.stars is None for c in shop.categories) and shop.overall is None
    assert card(tmp_path, "ledger").category("backup").stars == 3
    assert card(tmp_path, "ledger").category("performance").stars is None
    checks = scorecard.category_checks(shop, 0)
    assert set(checks["ok"]) == {None}
    assert "no run of restore-drill for project 'shop'" in " ".join(checks["detail"])
    assert set(scorecard.category_checks(shop, 1)["ok"]) == {False}


def test_a_later_run_is_ignored_as_of_an_earlier_time(tmp_path: Path) -> None:
    write_run(tmp_path, "restore-drill", "shop", 10, {"drill_verified": False},
              {"backups_total": 1})
    write_run(tmp_path, "restore-drill", "shop", 1, {"drill_verified": True})
    runs = scorecard.load_history(tmp_path)
    then = scorecard.compute_scorecard(runs, "shop", rules=RULES,
                                       as_of=NOW - dt.timedelta(days=5))
    assert then.category("backup").stars == 1
    trend = scorecard.scorecard_trend(runs, "shop", rules=RULES)
    assert trend["backup"].tolist() == [1, 2]


def test_default_rules_are_consistent() -> None:
    ids = [r.id for r in scorecard.DEFAULT_RULES]
    assert len(ids) == len(set(ids))
    for r in scorecard.DEFAULT_RULES:
        assert r.category in scorecard.CATEGORIES and 1 <= r.stars <= 5 and r.evidence
        assert r.kind in ("configured", "proven") and r.risk in scorecard.RISK_WEIGHTS
        assert r.why and r.remediation
    with pytest.raises(ValueError):
        Evidence("x")
    with pytest.raises(BadParameter):
        scorecard.compute_scorecard([], "shop", freshness_days=0)
    with pytest.raises(BadParameter):
        scorecard.category_checks(scorecard.compute_scorecard([], "shop"), 6)


def test_cli_gates_on_min_stars(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_run(tmp_path, "restore-drill", "shop", 0.01, {"drill_verified": True,
              "rto_within_target": True, "rpo_within_target": True,
              "redis_persistence_ok": True}, {"backups_total": 1}, now=dt.datetime.now(dt.UTC))
    assert cli.main(["scorecard", "--outputs", str(tmp_path), "--project", "shop"]) == 0
    out = capsys.readouterr().out
    assert "Backup/DR" in out and "★★★☆☆" in out and "not assessed" in out
    # not-assessed categories are below any minimum
    assert cli.main(["scorecard", "--outputs", str(tmp_path), "--min-stars", "1"]) == 2
    assert "Monitoring is not assessed, below 1 stars" in capsys.readouterr().err
    assert cli.main(["scorecard", "--outputs", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["categories"]["backup"]["stars"] == 3 and data["project"] == "shop"
    assert cli.main(["scorecard", "--outputs", str(tmp_path), "--min-stars", "9"]) == 1


def test_the_index_opens_with_the_scorecard(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    rel = write_run(tmp_path, "restore-drill", "shop", 3, {"drill_verified": True},
                    {"backups_total": 1}, now=now)
    write_run(tmp_path, "restore-drill", "shop", 0.5, {"drill_verified": True},
              {"backups_total": 1}, now=now)
    page = htmlreport.write_index(tmp_path).read_text()
    assert page.index("<h2>Scorecard</h2>") < page.index("<h2>Runs, newest first</h2>")
    head = page[page.index("<h2>Scorecard</h2>"):page.index("<h2>Runs")]
    assert "shop: overall" in head and "Backup/DR" in head and "★★☆☆☆" in head
    assert "not assessed" in head and 'class="spark"' in head
    assert rel.split("/")[0] in head
