"""opslib.backup against the demo stack: real pg_dump, pg_restore, scratch containers, Redis."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import papermill as pm
import pytest

from opslib import backup as bk
from opslib import engine as od
from opslib.exceptions import CommandFailed, VerificationFailed
from opslib.report import results_from_notebook

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "restore-drill.ipynb"


def drill_objects(client: Any, run_id: str = "") -> list[str]:
    """Names of scratch containers and networks left by drills (of one run, or any)."""
    label = f"{bk.DRILL_RUN_LABEL}={run_id}" if run_id else f"{bk.DRILL_LABEL}=1"
    flt = {"label": label}
    return ([c.name for c in client.containers.list(all=True, filters=flt)]
            + [n.name for n in client.networks.list(filters=flt)])


@pytest.fixture(scope="module")
def good_backup(docker_client: Any, shop: str, tmp_path_factory: pytest.TempPathFactory
                ) -> bk.Backup:
    """One real backup of the seeded shop database, shared by the tests of this module."""
    return bk.take_backup(docker_client, shop, backup_dir=tmp_path_factory.mktemp("backups"),
                          app_queries=bk.SHOP_APP_QUERIES)


def copy_backup(b: bk.Backup, folder: Path, name: str) -> Path:
    """Copy a backup and its manifest under a new name (drill records stay behind)."""
    folder.mkdir(parents=True, exist_ok=True)
    dst = folder / name
    shutil.copyfile(b.path, dst)
    shutil.copyfile(bk.manifest_path(b.path), bk.manifest_path(dst))
    return dst


def rewrite_manifest(path: Path, **changes: Any) -> None:
    m = json.loads(bk.manifest_path(path).read_text())
    m.update(changes)
    bk.manifest_path(path).write_text(json.dumps(m))


def test_backup_manifest_describes_the_seeded_data(good_backup: bk.Backup) -> None:
    m = good_backup.manifest
    path = good_backup.path
    assert path.name.startswith("shop-shop-") and path.suffix == ".dump"
    assert not list(path.parent.glob("*.partial")), "nothing unfinished left behind"
    assert path.read_bytes()[:5] == b"PGDMP", "custom-format archive"
    assert m["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert m["size_bytes"] == path.stat().st_size
    assert m["server_version"].startswith("15.") and m["database"] == "shop"
    assert m["compress_level"] == 1 and m["opslib_version"]
    assert m["tables"]["public.products"]["rows"] >= 90_000
    assert m["tables"]["public.orders"]["rows"] >= 90_000
    assert m["tables"]["public.tenants"]["rows"] == 3
    assert all(len(t["checksum"]) == 32 for t in m["tables"].values()), "all under 200k rows"
    assert m["tables"]["public.orders"]["pk"] == ["id"]
    assert m["catalog"]["indexes"] >= 11 and m["catalog"]["constraints"]["f"] >= 5
    assert "pgcrypto" in m["catalog"]["extensions"]
    answers = m["app_queries"]
    assert answers["product_search_by_name"]["rows"] == 50
    assert answers["sales_report_by_tenant_day"]["rows"] > 0
    assert answers["user_lookup_for_login"]["rows"] == 3
    assert m["started_at"] <= m["snapshot_time"] <= m["ended_at"]
    listed = bk.list_backups(path.parent).set_index("file")
    assert listed.loc[path.name, "manifest"] == "ok"


def watch_scratch(run_id: str, seen: list[dict[str, Any]], stop: threading.Event) -> None:
    """Record what the engine says about the drill's scratch container while it exists."""
    client = od.connect()
    try:
        while not stop.is_set() and not seen:
            for c in client.containers.list(filters={"label": f"{bk.DRILL_RUN_LABEL}={run_id}"}):
                nets = list(c.attrs["NetworkSettings"]["Networks"])
                seen.append({"attrs": c.attrs, "labels": c.labels,
                             "networks": [client.networks.get(n).attrs for n in nets]})
            time.sleep(0.1)
    finally:
        client.close()


def test_failed_backup_leaves_no_file(docker_client: Any, shop: str, tmp_path: Path) -> None:
    with pytest.raises(CommandFailed) as info:
        bk.take_backup(docker_client, shop, backup_dir=tmp_path, database="no_such_db")
    assert "no_such_db" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_drill_restores_verifies_and_cleans_up(docker_client: Any, shop: str,
                                               good_backup: bk.Backup,
                                               test_labels: dict[str, str]) -> None:
    run_id = bk.new_run_id()
    seen: list[dict[str, Any]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=watch_scratch, args=(run_id, seen, stop), daemon=True)
    watcher.start()
    try:
        result = bk.run_drill(docker_client, shop, backup_dir=good_backup.path.parent,
                              run_id=run_id, labels=test_labels, restore_jobs=2)
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert result.verified and result.backup == good_backup.path
    # The scratch container as the engine saw it: production's image, no published ports, only
    # its own internal network, labelled for cleanup.
    assert seen, "the scratch container was never seen running"
    attrs = seen[0]["attrs"]
    assert seen[0]["labels"][bk.DRILL_LABEL] == "1"
    assert seen[0]["labels"][bk.DRILL_RUN_LABEL] == run_id
    assert not attrs["HostConfig"].get("PortBindings") and not attrs["HostConfig"][
        "PublishAllPorts"]
    assert [n["Name"] for n in seen[0]["networks"]] == [f"opslib-drill-{run_id}"]
    assert seen[0]["networks"][0]["Internal"] is True
    assert list(result.phases["phase"]) == ["verify_checksum", "start_scratch", "copy",
                                            "restore", "verify", "cleanup"]
    assert result.phases["ok"].all()
    assert result.checks["ok"].all()
    checked = set(zip(result.checks["check"], result.checks["object"], strict=True))
    for table in ("public.products", "public.orders", "public.users", "public.tenants"):
        assert ("row_count", table) in checked and ("content_checksum", table) in checked
    assert {"copy_sha256", "restore", "constraints", "indexes", "app_query"} <= set(
        result.checks["check"])
    prod = docker_client.containers.get("shop-db-1")
    assert result.image == prod.attrs["Image"], "same image as production"
    assert result.rto_s is not None and result.rto_s > 0
    assert drill_objects(docker_client, run_id) == []
    listed = bk.list_backups(good_backup.path.parent).set_index("file")
    assert listed.loc[good_backup.path.name, "last_drill"] == "passed"
    assert bool(listed.loc[good_backup.path.name, "verified"])
    again = bk.load_drill(good_backup.path.parent, run_id)
    assert again is not None and again.verified and again.rto_s == result.rto_s


@pytest.mark.parametrize("damage", ["flipped_byte", "truncated"])
def test_damaged_backup_fails_the_drill(docker_client: Any, shop: str, good_backup: bk.Backup,
                                        tmp_path: Path, test_labels: dict[str, str],
                                        damage: str) -> None:
    path = copy_backup(good_backup, tmp_path, f"shop-shop-{damage}.dump")
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        if damage == "flipped_byte":
            fh.seek(size // 2)
            byte = fh.read(1)[0]
            fh.seek(size // 2)
            fh.write(bytes([byte ^ 0x01]))
        else:
            fh.truncate(size - 4096)
    run_id = bk.new_run_id()
    with pytest.raises(VerificationFailed) as info:
        bk.run_drill(docker_client, shop, backup_dir=tmp_path, run_id=run_id, labels=test_labels)
    assert info.value.check == ("sha256" if damage == "flipped_byte" else "size")
    assert info.value.path == str(path) and path.name in str(info.value)
    assert drill_objects(docker_client, run_id) == []
    record = bk.load_drill(tmp_path, run_id)
    assert record is not None and not record.verified and record.failed_check == info.value.check
    assert bk.list_backups(tmp_path).set_index("file").loc[path.name, "last_drill"] == "failed"


def test_failure_after_the_scratch_started_still_cleans_up(
        docker_client: Any, shop: str, good_backup: bk.Backup, tmp_path: Path,
        test_labels: dict[str, str]) -> None:
    # The file is intact but production had one more product at backup time than the restore.
    path = copy_backup(good_backup, tmp_path, "shop-shop-counts.dump")
    tables = json.loads(json.dumps(good_backup.manifest["tables"]))
    tables["public.products"]["rows"] += 1
    rewrite_manifest(path, tables=tables)
    run_id = bk.new_run_id()
    with pytest.raises(VerificationFailed) as info:
        bk.run_drill(docker_client, shop, backup_dir=tmp_path, run_id=run_id, labels=test_labels)
    assert info.value.check == "row_count" and "public.products" in str(info.value)
    record = bk.load_drill(tmp_path, run_id)
    assert record is not None
    assert {"start_scratch", "restore", "cleanup"} <= set(record.phases["phase"])
    assert "removed container opslib-drill-" in str(
        record.phases.set_index("phase").loc["cleanup", "detail"])
    assert drill_objects(docker_client, run_id) == []


def test_corruption_before_hashing_is_caught_by_restore_or_verify(
        docker_client: Any, shop: str, good_backup: bk.Backup, tmp_path: Path,
        test_labels: dict[str, str]) -> None:
    # Damage in the compressed table data, with a manifest that matches the damaged file (as if
    # pg_dump's output had been corrupted before it was hashed): the restore must not pass.
    path = copy_backup(good_backup, tmp_path, "shop-shop-baddata.dump")
    raw = bytearray(path.read_bytes())
    for offset in range(len(raw) // 3, len(raw) * 2 // 3, len(raw) // 40):
        raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))
    rewrite_manifest(path, sha256=hashlib.sha256(raw).hexdigest(), size_bytes=len(raw))
    run_id = bk.new_run_id()
    with pytest.raises(VerificationFailed) as info:
        bk.run_drill(docker_client, shop, backup_dir=tmp_path, run_id=run_id, labels=test_labels)
    assert info.value.check in {"restore", "row_count", "content_checksum", "app_query"}
    assert drill_objects(docker_client, run_id) == []


def test_cleanup_scratch_removes_leftovers_of_crashed_drills(
        docker_client: Any, shop: str, test_labels: dict[str, str]) -> None:
    run_id = "crashed-" + bk.new_run_id()
    labels = {**test_labels, bk.DRILL_LABEL: "1", bk.DRILL_RUN_LABEL: run_id}
    image = docker_client.containers.get("shop-db-1").attrs["Image"]
    net = docker_client.networks.create(f"opslib-drill-{run_id}", internal=True, labels=labels)
    docker_client.containers.create(image, entrypoint=["sleep", "300"], labels=labels,
                                    name=f"opslib-drill-{run_id}", network=net.name)
    assert len(drill_objects(docker_client, run_id)) == 2
    removed = bk.cleanup_scratch(docker_client)
    assert {("container", run_id), ("network", run_id)} <= set(
        zip(removed["kind"], removed["run"], strict=True))
    assert drill_objects(docker_client, run_id) == []


def test_retention_never_removes_the_newest_verified_backup(
        docker_client: Any, shop: str, tmp_path: Path, test_labels: dict[str, str]) -> None:
    verified = bk.take_backup(docker_client, shop, backup_dir=tmp_path)
    bk.run_drill(docker_client, shop, backup_dir=tmp_path, labels=test_labels)
    newer = bk.take_backup(docker_client, shop, backup_dir=tmp_path)  # not drilled
    plan = bk.plan_retention(tmp_path, keep_days=0, keep_min_count=0)
    actions = plan.set_index("file")["action"]
    assert actions[verified.path.name] == "keep" and actions[newer.path.name] == "delete"
    out = bk.apply_retention(plan, apply=True, journal=tmp_path / "journal.jsonl")
    assert set(out.loc[out["status"] == "deleted", "file"]) == {newer.path.name}
    assert verified.path.exists() and bk.manifest_path(verified.path).exists()
    assert not newer.path.exists()


def test_redis_persistence_and_snapshot(docker_client: Any, shop: str, tmp_path: Path) -> None:
    df = bk.redis_persistence(docker_client, shop).set_index("item")
    assert df.loc["appendonly", "value"] == "yes"
    assert df.loc["aof_enabled", "value"] == "1" and bool(df.loc["aof_enabled", "ok"])
    assert df.loc["aof_last_write_status", "value"] == "ok"
    assert df.loc["rdb_last_bgsave_status", "value"] == "ok"
    snap = bk.snapshot_redis(docker_client, shop, backup_dir=tmp_path)
    data = snap.path.read_bytes()
    assert data.startswith(b"REDIS") and snap.path.name.startswith("shop-cache-")
    assert snap.manifest["sha256"] == hashlib.sha256(data).hexdigest()
    assert snap.manifest["redis_version"].startswith("7.")
    assert bk.list_backups(tmp_path).set_index("file").loc[snap.path.name, "kind"] == "redis"


def test_notebook_drill_records_rto_and_rpo(docker_client: Any, shop: str,
                                            tmp_path: Path) -> None:
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out), cwd=str(ROOT / "notebooks"),
                        parameters={"project": shop, "backup_dir": str(tmp_path / "backups"),
                                    "output_dir": str(tmp_path), "demo_data": True},
                        kernel_name="python3", progress_bar=False)
    res = results_from_notebook(out)
    checks = {c["name"]: c for c in res["checks"]}
    assert checks["drill_verified"]["ok"], checks["drill_verified"]["detail"]
    assert (res["records"]["db_service"], res["records"]["database"]) == ("db", "shop")
    assert res["records"]["cache_service"] == "cache"
    assert checks["rto_within_target"]["ok"] and checks["rpo_within_target"]["ok"]
    assert checks["redis_aof_enabled"]["ok"]
    assert 0 < res["records"]["rto_s"] < 14400
    assert 0 <= res["records"]["rpo_s"] < 3600
    assert res["records"]["drill_checks_failed"] == 0
    assert res["units"]["rto_s"] == "s"
    assert drill_objects(docker_client) == []


def test_notebook_with_corrupt_backup_is_a_failed_check(docker_client: Any, shop: str,
                                                        good_backup: bk.Backup,
                                                        tmp_path: Path) -> None:
    folder = tmp_path / "backups"
    path = copy_backup(good_backup, folder, "shop-shop-corrupt.dump")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out), cwd=str(ROOT / "notebooks"),
                        parameters={"project": shop, "backup_dir": str(folder),
                                    "output_dir": str(tmp_path), "take_new_backup": False,
                                    "backup_file": path.name},
                        kernel_name="python3", progress_bar=False)
    res = results_from_notebook(out)
    checks = {c["name"]: c for c in res["checks"]}
    assert checks["drill_verified"]["ok"] is False
    assert "'sha256'" in checks["drill_verified"]["detail"]
    assert path.name in checks["drill_verified"]["detail"]
    assert checks["rto_within_target"]["ok"] is False and res["records"]["rto_s"] is None
    assert drill_objects(docker_client) == []
