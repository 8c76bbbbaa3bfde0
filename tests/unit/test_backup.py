"""opslib.backup without an engine: manifests, verification, listing, retention, drill records."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from opslib import backup as bk
from opslib.backup import drill as bk_drill
from opslib.backup import manifest as bk_manifest
from opslib.backup import postgres as bk_postgres
from opslib.backup import redis as bk_redis
from opslib.exceptions import (
    ApplyError,
    BackupNotFound,
    BadInputFormat,
    BadParameter,
    PlanError,
    VerificationFailed,
)

NOW = dt.datetime(2026, 11, 20, 12, 0, 0, tzinfo=dt.UTC)


def make_backup(
    folder: Path,
    age_h: float,
    *,
    source: str = "shop-shop",
    ext: str = ".dump",
    size: int = 4096,
    manifest: bool = True,
    drill: bool | None = None,
    tables: dict[str, Any] | None = None,
) -> Path:
    """A fake backup file (random-ish bytes) with a manifest and optionally a drill verdict."""
    created = NOW - dt.timedelta(hours=age_h)
    path = folder / f"{source}-{created.strftime('%Y%m%dT%H%M%SZ')}{ext}"
    data = hashlib.sha256(path.name.encode()).digest() * (size // 32)
    path.write_bytes(data)
    if manifest:
        bk.manifest_path(path).write_text(json.dumps({
            "format": bk.MANIFEST_FORMAT,
            "kind": "postgres" if ext == ".dump" else "redis",
            "source": "shop/db/shop" if ext == ".dump" else "shop/cache",
            "file": path.name, "database": "shop", "user": "shop",
            "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data),
            "started_at": created.isoformat(), "ended_at": created.isoformat(),
            "tables": tables or {},
        }))
    if drill is not None:
        end = created + dt.timedelta(minutes=5)
        result = bk.DrillResult(run_id=f"run-{path.stem}", backup=path, verified=drill,
                                started_at=created, ended_at=end)
        (folder / (path.name + ".drill.json")).write_text(
            json.dumps({"runs": [result.to_dict()]}))
    return path


# --------------------------------------------------------------------------------------------
# manifest and verification


def test_manifest_path_and_load(tmp_path: Path) -> None:
    p = make_backup(tmp_path, 1)
    assert bk.manifest_path(p).name == p.name + ".manifest.json"
    assert bk.load_manifest(p)["size_bytes"] == p.stat().st_size
    with pytest.raises(BackupNotFound):
        bk.load_manifest(tmp_path / "nothing.dump")
    bk.manifest_path(p).write_text("{not json")
    with pytest.raises(BadInputFormat) as info:
        bk.load_manifest(p)
    assert "manifest" in str(info.value)


def test_verify_accepts_intact_file(tmp_path: Path) -> None:
    p = make_backup(tmp_path, 1)
    assert bk.verify_backup_file(p)["sha256"] == hashlib.sha256(p.read_bytes()).hexdigest()


def test_verify_catches_one_flipped_byte(tmp_path: Path) -> None:
    p = make_backup(tmp_path, 1)
    raw = bytearray(p.read_bytes())
    raw[1234] ^= 0x01
    p.write_bytes(bytes(raw))
    with pytest.raises(VerificationFailed) as info:
        bk.verify_backup_file(p)
    assert info.value.check == "sha256"
    assert info.value.path == str(p)
    assert p.name in str(info.value) and "do not restore" in str(info.value)


def test_verify_catches_truncation(tmp_path: Path) -> None:
    p = make_backup(tmp_path, 1)
    p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(VerificationFailed) as info:
        bk.verify_backup_file(p)
    assert info.value.check == "size" and "truncated" in str(info.value)


def test_verify_without_manifest_or_checksum(tmp_path: Path) -> None:
    p = make_backup(tmp_path, 1, manifest=False)
    with pytest.raises(VerificationFailed) as info:
        bk.verify_backup_file(p)
    assert info.value.check == "manifest"
    bk.manifest_path(p).write_text(json.dumps({"size_bytes": p.stat().st_size}))
    with pytest.raises(VerificationFailed) as info:
        bk.verify_backup_file(p)
    assert info.value.check == "manifest" and "checksum unknown" in str(info.value)


def test_sha256_file_streams_in_chunks(tmp_path: Path) -> None:
    p = tmp_path / "f.bin"
    p.write_bytes(b"x" * 3_000_001)
    assert bk.sha256_file(p, chunk=4096) == hashlib.sha256(b"x" * 3_000_001).hexdigest()


def test_manifest_tables() -> None:
    df = bk.manifest_tables({"tables": {"public.a": {"rows": 3, "pk": ["id"], "checksum": "ab"},
                                        "public.b": {"rows": 9, "pk": [], "checksum": None}}})
    assert df.to_dict(orient="records") == [
        {"table": "public.a", "rows": 3, "primary_key": "id", "checksum": "ab"},
        {"table": "public.b", "rows": 9, "primary_key": "", "checksum": ""},
    ]


# --------------------------------------------------------------------------------------------
# listing


def test_list_backups_states_and_verdicts(tmp_path: Path) -> None:
    ok = make_backup(tmp_path, 1, drill=True)
    failed = make_backup(tmp_path, 2, drill=False)
    missing = make_backup(tmp_path, 3, manifest=False)
    unknown = make_backup(tmp_path, 4)
    bk.manifest_path(unknown).write_text(json.dumps({"size_bytes": 1}))
    short = make_backup(tmp_path, 5, drill=True)
    short.write_bytes(b"abc")
    partial = tmp_path / "shop-shop-20261120T115900Z.dump.partial"
    partial.write_bytes(b"PGDMP")
    (tmp_path / "notes.txt").write_text("not a backup")

    df = bk.list_backups(tmp_path, now=NOW).set_index("file")
    assert df.loc[ok.name, "manifest"] == "ok" and df.loc[ok.name, "last_drill"] == "passed"
    assert bool(df.loc[ok.name, "verified"]) is True
    assert df.loc[failed.name, "last_drill"] == "failed" and not df.loc[failed.name, "verified"]
    assert df.loc[missing.name, "manifest"] == "missing"
    assert df.loc[unknown.name, "manifest"] == "checksum unknown"
    assert df.loc[short.name, "manifest"] == "size mismatch"
    assert not df.loc[short.name, "verified"], "a changed file is not verified any more"
    assert df.loc[partial.name, "manifest"] == "partial"
    assert "notes.txt" not in df.index
    assert df.loc[ok.name, "age_h"] == pytest.approx(1.0)
    assert df.loc[missing.name, "age_h"] == pytest.approx(3.0)  # from the name, no manifest
    ordered = bk.list_backups(tmp_path, now=NOW)["file"].tolist()
    assert ordered[0] == partial.name and ordered[1] == ok.name


def test_list_backups_of_empty_or_missing_folder(tmp_path: Path) -> None:
    assert bk.list_backups(tmp_path).empty
    assert list(bk.list_backups(tmp_path / "nope").columns) == bk_manifest._LIST_COLUMNS


def test_resolve_backup_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert bk.resolve_backup_dir(str(tmp_path / "b"), "shop") == tmp_path / "b"
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert bk.resolve_backup_dir("", "shop") == tmp_path / "outputs" / "backups" / "shop"
    assert (tmp_path / "outputs" / "backups" / "shop").is_dir()


def test_pick_backup(tmp_path: Path) -> None:
    with pytest.raises(BackupNotFound):
        bk_manifest._pick_backup(tmp_path, "")
    older = make_backup(tmp_path, 5)
    newer = make_backup(tmp_path, 1)
    make_backup(tmp_path, 0.5, source="shop-cache", ext=".rdb")
    assert bk_manifest._pick_backup(tmp_path, "") == newer
    assert bk_manifest._pick_backup(tmp_path, older.name) == older
    assert bk_manifest._pick_backup(tmp_path, str(older)) == older
    with pytest.raises(BackupNotFound):
        bk_manifest._pick_backup(tmp_path, "no-such.dump")


# --------------------------------------------------------------------------------------------
# retention


def test_retention_never_deletes_newest_verified(tmp_path: Path) -> None:
    files = [make_backup(tmp_path, h, drill=(h == 30)) for h in (1, 10, 30, 100, 500)]
    plan = bk.plan_retention(tmp_path, keep_days=0, keep_min_count=0, now=NOW)
    by = plan.set_index("file")
    assert by.loc[files[2].name, "action"] == "keep"
    assert "newest verified" in str(by.loc[files[2].name, "why"])
    assert (plan["action"] == "delete").sum() == 4
    journal = tmp_path / "journal.jsonl"
    out = bk.apply_retention(plan, apply=True, journal=journal)
    assert set(out.loc[out["status"] == "deleted", "file"]) == {f.name for f in files} - {
        files[2].name}
    assert [p.name for p in sorted(tmp_path.glob("*.dump"))] == [files[2].name]
    assert bk.manifest_path(files[2]).exists()
    assert not any(bk.manifest_path(f).exists() for f in files if f != files[2])


def test_retention_by_count_and_age(tmp_path: Path) -> None:
    files = [make_backup(tmp_path, h) for h in (1, 10, 30, 100, 500)]
    plan = bk.plan_retention(tmp_path, keep_days=2, keep_min_count=2, now=NOW).set_index("file")
    why = plan["why"].astype(str)
    assert why[files[0].name].startswith("newest intact")  # none verified yet
    assert why[files[1].name].startswith("among the 2 newest")
    assert why[files[2].name].startswith("younger than 2 days")
    assert plan.loc[files[3].name, "action"] == "delete"
    assert plan.loc[files[4].name, "action"] == "delete"


def test_retention_groups_by_source_and_cleans_partials(tmp_path: Path) -> None:
    dumps = [make_backup(tmp_path, h, drill=True) for h in (1, 50)]
    rdbs = [make_backup(tmp_path, h, source="shop-cache", ext=".rdb") for h in (2, 60)]
    old_partial = tmp_path / "shop-shop-20261101T000000Z.dump.partial"
    old_partial.write_bytes(b"x")
    new_partial = tmp_path / (NOW.strftime("shop-shop-%Y%m%dT%H%M%SZ") + ".dump.partial")
    new_partial.write_bytes(b"x")
    plan = bk.plan_retention(tmp_path, keep_days=1, keep_min_count=0, now=NOW).set_index("file")
    assert plan.loc[dumps[0].name, "action"] == "keep"
    assert plan.loc[dumps[1].name, "action"] == "delete"
    assert plan.loc[rdbs[0].name, "action"] == "keep", "newest snapshot of the cache is kept"
    assert plan.loc[rdbs[1].name, "action"] == "delete"
    assert plan.loc[old_partial.name, "action"] == "delete"
    assert plan.loc[new_partial.name, "action"] == "keep"


def test_apply_retention_dry_run_journal_and_resume(tmp_path: Path) -> None:
    keep = make_backup(tmp_path, 1, drill=True)
    old = make_backup(tmp_path, 400, drill=False)
    plan = bk.plan_retention(tmp_path, keep_days=7, keep_min_count=1, now=NOW)
    journal = tmp_path / "out" / "retention.jsonl"
    dry = bk.apply_retention(plan, apply=False, journal=journal)
    assert dry.set_index("file").loc[old.name, "status"] == "would delete"
    assert old.exists() and not journal.exists()
    done = bk.apply_retention(plan, apply=True, journal=journal)
    assert done.set_index("file").loc[old.name, "status"] == "deleted"
    assert done.set_index("file").loc[keep.name, "status"] == "kept"
    assert not old.exists() and not (tmp_path / (old.name + ".drill.json")).exists()
    entries = [json.loads(x) for x in journal.read_text().splitlines()]
    assert [e["status"] for e in entries] == ["intent", "deleted"]
    again = bk.apply_retention(plan, apply=True, journal=journal)
    assert again.set_index("file").loc[old.name, "status"] == "already deleted"


def test_apply_retention_refuses_stale_plan(tmp_path: Path) -> None:
    newest = make_backup(tmp_path, 1, drill=False)
    make_backup(tmp_path, 2, drill=True)
    plan = bk.plan_retention(tmp_path, keep_days=0, keep_min_count=0, now=NOW)
    assert plan.set_index("file").loc[newest.name, "action"] == "delete"
    # Meanwhile a drill verified the newest backup: the plan must not delete it.
    result = bk.DrillResult(run_id="later", backup=newest, verified=True, started_at=NOW,
                            ended_at=NOW)
    bk_drill._write_drill_record(result)
    with pytest.raises(PlanError) as info:
        bk.apply_retention(plan, apply=True, journal=tmp_path / "j.jsonl")
    assert newest.name in str(info.value) and newest.exists()


def test_apply_retention_bad_plan_and_failed_delete(tmp_path: Path) -> None:
    with pytest.raises(PlanError):
        bk.apply_retention(pd.DataFrame({"file": ["x"]}), journal=tmp_path / "j.jsonl")
    make_backup(tmp_path, 1, drill=True)
    old = make_backup(tmp_path, 400)
    plan = bk.plan_retention(tmp_path, keep_days=1, keep_min_count=0, now=NOW)

    def refuse(path: Path) -> None:
        raise PermissionError(f"read-only: {path}")

    with pytest.raises(ApplyError) as info:
        bk.apply_retention(plan, apply=True, journal=tmp_path / "j.jsonl", remove=refuse)
    assert old.name in str(info.value) and old.exists()
    statuses = [json.loads(x)["status"] for x in (tmp_path / "j.jsonl").read_text().splitlines()]
    assert statuses == ["intent", "failed"]


def test_retention_parameters_are_checked(tmp_path: Path) -> None:
    with pytest.raises(BadParameter):
        bk.plan_retention(tmp_path, keep_days=-1, keep_min_count=1)
    with pytest.raises(BadParameter):
        bk.plan_retention(tmp_path, keep_days=1, keep_min_count=-2)


def test_take_backup_checks_parameters_before_touching_engine(tmp_path: Path) -> None:
    with pytest.raises(BadParameter) as info:
        bk.take_backup(None, "shop", backup_dir=tmp_path, compress_level=12)
    assert info.value.name == "compress_level"
    with pytest.raises(BadParameter):
        bk.run_drill(None, "shop", backup_dir=tmp_path, restore_jobs=0)


# --------------------------------------------------------------------------------------------
# drill building blocks


def test_tar_stream_is_a_valid_archive(tmp_path: Path) -> None:
    src = tmp_path / "a.dump"
    src.write_bytes(bytes(range(256)) * 4001)
    data = b"".join(bk_drill._tar_stream(src, "restore.dump", chunk=1000))
    assert len(data) % 512 == 0
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        member = tf.getmember("restore.dump")
        assert member.mode == 0o644 and member.size == src.stat().st_size
        extracted = tf.extractfile(member)
        assert extracted is not None and extracted.read() == src.read_bytes()


def test_iter_reader_streams_a_tar(tmp_path: Path) -> None:
    src = tmp_path / "dump.rdb"
    src.write_bytes(b"REDIS0010" + b"z" * 100_000)
    data = b"".join(bk_drill._tar_stream(src, "dump.rdb"))
    chunks = iter([data[i:i + 777] for i in range(0, len(data), 777)])
    reader = io.BufferedReader(bk_redis._IterReader(chunks))
    with tarfile.open(fileobj=reader, mode="r|") as tf:
        member = tf.next()
        assert member is not None
        f = tf.extractfile(member)
        assert f is not None and f.read() == src.read_bytes()


def test_sql_builders_quote_and_order() -> None:
    counts = bk_postgres._counts_sql(['public."it\'s"', "public.orders"])
    assert "'public.\"it''s\"'" in counts and "UNION ALL" in counts
    sums = bk_postgres._checksums_sql({"public.orders": ["id"], "public.log": []})
    assert "ORDER BY _opslib_row.id" in sums and "ORDER BY md5(_opslib_row::text)" in sums
    assert bk_postgres._counts_sql([]) == bk_postgres._checksums_sql({}) == "SELECT '{}'::json"
    assert "FROM (SELECT 1) AS _opslib_q" in bk_postgres._app_query_sql("SELECT 1;")


MANIFEST = {
    "tables": {"public.big": {"rows": 500, "checksum": "aaa"},
               "public.small": {"rows": 5, "checksum": "bbb"}},
    "catalog": {"constraints": {"p": 2, "f": 1}, "constraint_names": ["a", "b", "c"],
                "indexes": 3, "index_names": ["i1", "i2", "i3"], "sequences": 2,
                "extensions": ["plpgsql"]},
    "app_queries": {"search": {"sql": "SELECT 1", "rows": 1, "md5": "m"},
                    "broken": {"sql": "SELECT x", "error": "no such column"}},
}
RESTORED = {
    "counts": {"public.big": 500, "public.small": 5},
    "checksums": {"public.small": "bbb"},
    "catalog": {"constraints": {"p": 2, "f": 1}, "constraint_names": ["a", "b", "c"],
                "indexes": 3, "index_names": ["i1", "i2", "i3"], "invalid_indexes": 0,
                "sequences": 2, "extensions": ["plpgsql"]},
    "app_queries": {"search": {"rows": 1, "md5": "m"}},
}


def test_compare_all_equal() -> None:
    rows = bk_drill._compare(MANIFEST, RESTORED, checksum_max_rows=100)
    assert all(r["ok"] for r in rows), [r for r in rows if not r["ok"]]
    checked = {(r["check"], r["object"]) for r in rows}
    assert ("content_checksum", "public.small") in checked
    assert ("content_checksum", "public.big") not in checked, "too big for the limit"
    assert ("app_query", "search") in checked and ("app_query", "broken") not in checked


def test_compare_finds_differences() -> None:
    restored = json.loads(json.dumps(RESTORED))
    restored["counts"]["public.big"] = 499
    restored["checksums"]["public.small"] = "ccc"
    restored["catalog"]["index_names"] = ["i1", "i2"]
    restored["catalog"]["indexes"] = 2
    restored["catalog"]["constraints"] = {"p": 2}
    restored["app_queries"]["search"] = {"rows": 0, "md5": "x"}
    bad = {r["check"] for r in bk_drill._compare(MANIFEST, restored, 100) if not r["ok"]}
    assert bad == {"row_count", "content_checksum", "indexes", "constraints", "app_query"}
    del restored["counts"]["public.small"]
    bad_rows = [r for r in bk_drill._compare(MANIFEST, restored, 100) if not r["ok"]]
    assert ("tables_present", "public.small") in {(r["check"], r["object"]) for r in bad_rows}


def _phases(ok_verify: bool = True) -> pd.DataFrame:
    t0 = NOW
    rows = []
    for name, secs in (("verify_checksum", 1.0), ("start_scratch", 4.0), ("copy", 2.0),
                       ("restore", 10.0), ("verify", 3.0), ("cleanup", 1.0)):
        rows.append({"phase": name, "started_at": t0, "ended_at": t0 + dt.timedelta(seconds=secs),
                     "seconds": secs, "ok": ok_verify or name != "verify", "detail": ""})
        t0 += dt.timedelta(seconds=secs)
    df = pd.DataFrame(rows)
    df["started_at"] = pd.to_datetime(df["started_at"], utc=True)
    df["ended_at"] = pd.to_datetime(df["ended_at"], utc=True)
    return df


def test_drill_result_rto_and_round_trip(tmp_path: Path) -> None:
    r = bk.DrillResult(run_id="r1", backup=tmp_path / "x.dump", verified=True, phases=_phases(),
                       restore_jobs=2, started_at=NOW, ended_at=NOW)
    assert r.rto_s == pytest.approx(20.0), "checksum start to verify end, cleanup excluded"
    assert r.phase_seconds("restore") == 10.0 and r.phase_seconds("nope") is None
    back = bk.DrillResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back.rto_s == pytest.approx(20.0) and back.run_id == "r1" and back.verified
    assert "RTO 20.0 s" in back.summary
    failed = bk.DrillResult(run_id="r2", backup=tmp_path / "x.dump", verified=False,
                            phases=_phases(False), error="Check 'row_count' failed")
    assert failed.rto_s is None and failed.summary.startswith("Check 'row_count'")
    assert "unknown" in bk.rto_statement(failed)
    assert "20 s" in bk.rto_statement(r) and "pg_restore -j 2" in bk.rto_statement(r)


def test_load_drill_and_history(tmp_path: Path) -> None:
    a = make_backup(tmp_path, 3, drill=True)
    b = make_backup(tmp_path, 1, drill=False)
    assert bk.load_drill(tmp_path, f"run-{a.stem}") is not None
    latest = bk.load_drill(tmp_path)
    assert latest is not None and latest.backup == b and not latest.verified
    assert bk.load_drill(tmp_path, "unknown") is None
    hist = bk.drill_history(tmp_path)
    assert hist["backup"].tolist() == [b.name, a.name]


def test_recovery_objectives(tmp_path: Path) -> None:
    make_backup(tmp_path, 0.5, drill=True)
    make_backup(tmp_path, 0.1, drill=False)
    drill = bk.DrillResult(run_id="r", backup=tmp_path / "x", verified=True, phases=_phases())
    obj = bk.recovery_objectives(drill, tmp_path, rto_target_s=14400, rpo_target_s=3600, now=NOW)
    assert obj.rto_s == pytest.approx(20.0) and obj.rto_ok
    assert obj.rpo_s == pytest.approx(1800.0) and obj.rpo_ok
    late = bk.recovery_objectives(drill, tmp_path, rpo_target_s=600, now=NOW)
    assert not late.rpo_ok and "30.0 min" in late.rpo_detail
    none = bk.recovery_objectives(None, tmp_path / "empty", now=NOW)
    assert none.rto_s is None and none.rpo_s is None and not none.rto_ok and not none.rpo_ok
    assert list(obj.table()["metric"]) == ["RTO (s)", "RPO (s)"]


def test_timeline_figure() -> None:
    drill = bk.DrillResult(run_id="r", backup=Path("x.dump"), verified=True, phases=_phases())
    fig = bk.timeline_figure(drill)
    bar = fig.data[0]
    assert list(bar.y) == ["verify_checksum", "start_scratch", "copy", "restore", "verify",
                           "cleanup"]
    assert list(bar.base) == [0.0, 1.0, 5.0, 7.0, 17.0, 20.0]
    assert "verified" in fig.layout.title.text
    assert bk.timeline_figure(None).layout.title.text == "No drill ran"
