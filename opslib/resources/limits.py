"""The limits plan (a compose override) and its apply with health checks and rollback."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from opslib import engine as od
from opslib._plan import journal_path
from opslib.engine import (
    Client,
    compose,
    inspect_facts,
)
from opslib.exceptions import (
    CommandFailed,
    OpslibError,
    PlanError,
)
from opslib.journal import Journal
from opslib.redact import redact_text
from opslib.resources.state import _declared_from_service, compose_config, declared_resources
from opslib.resources.units import MIB, format_cpus, format_memory

__all__ = [
    "LimitsPlan",
    "apply_limits",
    "apply_outcome",
    "build_override",
    "plan_limits",
    "read_journal",
    "validate_override",
]


JOURNAL_NAME = "resources-journal.jsonl"
OVERRIDE_NAME = "compose.resources.override.yaml"


# ------------------------------------------------------------------------------------------------
# Plan: the override file
# ------------------------------------------------------------------------------------------------


def build_override(
    entries: Mapping[str, Mapping[str, Any]], base_model: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Build a compose override document setting ``deploy.resources`` for some services.

    Where the base file uses the short forms (``mem_limit``, ``mem_reservation``, ``cpus``), the
    override sets them to the same values, because compose refuses distinct values for the short
    and the ``deploy`` form.

    Args:
        entries: Service → ``{"memory_limit": bytes, "memory_reservation": bytes,
            "cpus": cores}`` (0 or missing = leave out).
        base_model: The base project's model (:func:`compose_config`), for the short forms.

    Returns:
        The override as a mapping (dump it with ``yaml.safe_dump``).
    """
    base_services = (base_model or {}).get("services") or {}
    services: dict[str, Any] = {}
    for name in sorted(entries):
        e = entries[name]
        limits: dict[str, str] = {}
        reservations: dict[str, str] = {}
        if e.get("cpus"):
            limits["cpus"] = format_cpus(float(e["cpus"]))
        if e.get("memory_limit"):
            limits["memory"] = format_memory(int(e["memory_limit"]))
        if e.get("memory_reservation"):
            reservations["memory"] = format_memory(int(e["memory_reservation"]))
        resources: dict[str, Any] = {}
        if limits:
            resources["limits"] = limits
        if reservations:
            resources["reservations"] = reservations
        if not resources:
            continue
        svc: dict[str, Any] = {"deploy": {"resources": resources}}
        base = base_services.get(name) or {}
        if base.get("mem_limit") and "memory" in limits:
            svc["mem_limit"] = limits["memory"]
        if base.get("mem_reservation") and "memory" in reservations:
            svc["mem_reservation"] = reservations["memory"]
        if base.get("cpus") and "cpus" in limits:
            svc["cpus"] = limits["cpus"]
        services[name] = svc
    return {"services": services}


def _dump_override(doc: Mapping[str, Any], project: str) -> str:
    head = (f"# Resource limits for compose project {project!r}, written by opslib "
            "(resource-tuning runbook).\n# Use it together with the project's compose file: "
            "docker compose -f <compose file> -f <this file> up -d\n")
    return head + yaml.safe_dump(dict(doc), sort_keys=True, default_flow_style=False)


@dataclass
class LimitsPlan:
    """What :func:`apply_limits` will do.

    Attributes:
        project: Compose project name.
        compose_files: The project's own compose file(s), never rewritten.
        override_path: The override file this plan writes (in the run's output folder).
        journal_path: The JSON-lines journal of applied actions.
        actions: One row per service to change: service, memory_limit, memory_reservation, cpus
            (targets), previous_* (live values), why.
        entries: Service → target resources (what the override sets).
        previous: Service → resources the service ran with before (for rollback).
        base_model: The base project's compose model.
        override_yaml: The override file's text.
    """

    project: str
    compose_files: list[Path]
    override_path: Path
    journal_path: Path
    actions: pd.DataFrame
    entries: dict[str, dict[str, Any]]
    previous: dict[str, dict[str, Any]]
    base_model: dict[str, Any] = field(default_factory=dict)
    override_yaml: str = ""

    @property
    def services(self) -> list[str]:
        """Services the plan changes, in apply order."""
        return list(self.entries)


def plan_limits(
    recommendations: pd.DataFrame,
    state: pd.DataFrame,
    *,
    project: str,
    compose_file: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    include_lower: bool = False,
    services: Sequence[str] | None = None,
) -> LimitsPlan:
    """Plan the limits to apply and write the proposed override file (nothing is changed yet).

    A service is in the plan when one of its recommendations is ``set`` or ``raise`` (or
    ``lower`` with ``include_lower``). Its override entry is complete: resources that keep their
    current value are written with that value, so the entry says everything about the service.

    Args:
        recommendations: A frame from :func:`recommend` (edit values before planning if needed).
        state: A frame from :func:`current_state` (the live values, kept for rollback).
        project: Compose project name.
        compose_file: The project's compose file, or its files in merge order.
        out_dir: The run's output folder; the override and the journal are written there.
        include_lower: Also lower limits that are more than twice the recommendation.
        services: Only these services (default: every service that needs a change).

    Returns:
        The plan; its ``override_path`` holds the proposed override.

    Raises:
        PlanError: A named service has no recommendation, or a target is invalid
            (reservation above limit).
    """
    base_files = [Path(f).resolve() for f in ([compose_file] if isinstance(compose_file, str | Path)
                                              else compose_file)]
    model = compose_config(base_files, project)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wanted = {"set", "raise"} | ({"lower"} if include_lower else set())
    recs = {str(r["service"]): r for r in recommendations.to_dict("records")}
    if services is not None:
        missing = [s for s in services if s not in recs]
        if missing:
            raise PlanError(f"No recommendation for service(s) {', '.join(missing)}; "
                            f"recommendations exist for {', '.join(recs) or 'no service'}.")
        chosen = list(services)
    else:
        chosen = [s for s, r in recs.items()
                  if r["memory_limit_action"] in wanted or r["cpus_action"] in wanted]
    entries: dict[str, dict[str, Any]] = {}
    previous: dict[str, dict[str, Any]] = {}
    rows = []
    for svc in chosen:
        r = recs[svc]
        mem_change = services is not None or r["memory_limit_action"] in wanted
        cpu_change = services is not None or r["cpus_action"] in wanted
        cur = {"memory_limit": int(r["current_memory_limit"]),
               "memory_reservation": int(r["current_memory_reservation"]),
               "cpus": float(r["current_cpus"])}
        target = {
            "memory_limit": int(r["memory_limit"]) if mem_change or not cur["memory_limit"]
            else cur["memory_limit"],
            "memory_reservation": int(r["memory_reservation"])
            if mem_change or not cur["memory_reservation"] else cur["memory_reservation"],
            "cpus": float(r["cpus"]) if cpu_change or not cur["cpus"] else cur["cpus"],
        }
        if target["memory_reservation"] > target["memory_limit"] > 0:
            raise PlanError(f"Service {svc}: memory reservation "
                            f"{format_memory(target['memory_reservation'])} is above its limit "
                            f"{format_memory(target['memory_limit'])}; lower the reservation.")
        if 0 < target["memory_limit"] < 6 * MIB:
            raise PlanError(f"Service {svc}: docker refuses memory limits below 6M.")
        live = state[state["service"] == svc]
        if len(live):
            cur = {"memory_limit": int(live["memory_limit"].iloc[0]),
                   "memory_reservation": int(live["memory_reservation"].iloc[0]),
                   "cpus": float(live["cpus"].iloc[0])}
        entries[svc] = target
        previous[svc] = cur
        why = []
        if mem_change:
            why.append(f"memory: {r['memory_limit_why']}")
            why.append(f"reservation: {r['memory_reservation_why']}")
        if cpu_change:
            why.append(f"cpus: {r['cpus_why']}")
        rows.append({
            "service": svc,
            "memory_limit": format_memory(target["memory_limit"]),
            "previous_memory_limit": format_memory(cur["memory_limit"]),
            "memory_reservation": format_memory(target["memory_reservation"]),
            "previous_memory_reservation": format_memory(cur["memory_reservation"]),
            "cpus": format_cpus(target["cpus"]),
            "previous_cpus": format_cpus(cur["cpus"]),
            "why": " | ".join(why),
        })
    actions = pd.DataFrame(rows, columns=[
        "service", "memory_limit", "previous_memory_limit", "memory_reservation",
        "previous_memory_reservation", "cpus", "previous_cpus", "why"])
    plan = LimitsPlan(project=project, compose_files=base_files,
                      override_path=out / OVERRIDE_NAME, journal_path=out / JOURNAL_NAME,
                      actions=actions, entries=entries, previous=previous, base_model=model)
    plan.override_yaml = _write_override(plan, entries)
    return plan


def _write_override(plan: LimitsPlan, entries: Mapping[str, Mapping[str, Any]]) -> str:
    text = _dump_override(build_override(entries, plan.base_model), plan.project)
    tmp = plan.override_path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(plan.override_path)
    return text


def validate_override(plan: LimitsPlan) -> dict[str, Any]:
    """Check the plan's override with ``docker compose config`` and read back its resources.

    Args:
        plan: A plan from :func:`plan_limits`.

    Returns:
        Service → resources (as :func:`declared_resources` reads them) of the merged model, for
        the planned services.

    Raises:
        PlanError: ``docker compose`` rejects the base + override combination.
    """
    try:
        model = compose_config([*plan.compose_files, plan.override_path], plan.project)
    except CommandFailed as exc:
        raise PlanError(f"docker compose rejects the override {plan.override_path}: "
                        f"{exc.stderr.strip()[-500:]}") from exc
    declared = declared_resources(model).set_index("service")
    return {s: declared.loc[s].to_dict() for s in plan.services if s in declared.index}


# ------------------------------------------------------------------------------------------------
# Apply
# ------------------------------------------------------------------------------------------------


def _journal_file(path: Path) -> Journal:
    return Journal(path, time_key="time", timespec="seconds")


def _journal(plan: LimitsPlan, service: str, step: str, status: str, detail: str = "",
             **extra: Any) -> None:
    _journal_file(plan.journal_path).append(
        {"project": plan.project, "service": service, "step": step, "status": status,
         "detail": redact_text(detail), **extra})


def read_journal(path: str | Path) -> pd.DataFrame:
    """Read a resources journal (JSON lines) into a frame.

    Args:
        path: The journal file (or the run's output folder).

    Returns:
        One row per journalled step (empty when there is no journal yet).

    Raises:
        BadInputFormat: A complete line is not JSON (a torn last line, from a crash
            mid-write, is skipped).
    """
    p = Path(path)
    if p.is_dir():
        p = p / JOURNAL_NAME
    if not p.exists():
        return pd.DataFrame(columns=["time", "project", "service", "step", "status", "detail"])
    return pd.DataFrame(_journal_file(p).entries(strict=True))


def _live(client: Client, project: str, service: str) -> list[dict[str, Any]]:
    facts = inspect_facts(client, project)
    return [{str(k): v for k, v in r.items()}
            for r in facts[facts["service"] == service].to_dict("records")]


def _matches(row: Mapping[str, Any], target: Mapping[str, Any]) -> bool:
    return (int(row["memory_limit"]) == int(target.get("memory_limit") or 0)
            and int(row["memory_reservation"]) == int(target.get("memory_reservation") or 0)
            and abs(float(row["cpus"]) - float(target.get("cpus") or 0.0)) < 1e-6)


def _up(plan: LimitsPlan, service: str) -> None:
    compose(["up", "-d", "--no-deps", service], project=plan.project,
            files=[*plan.compose_files, plan.override_path])


def apply_limits(
    plan: LimitsPlan,
    *,
    client: Client | None = None,
    journal: str | Path | None = None,
    apply: bool = False,
    timeout_s: float = 180.0,
) -> pd.DataFrame:
    """Apply a plan: recreate each planned service with the override, verify, roll back failures.

    One service at a time: ``docker compose -p P -f base -f override up -d --no-deps S``; then
    inspect must show the new limits and the service must be running and healthy within
    ``timeout_s``. A service that is OOM-killed, exits, restarts, turns unhealthy or does not
    become healthy in time is rolled back: its entry is removed from the override (or set back to
    the entry it had before) and it is recreated with its previous settings. Services already
    running with their target limits are skipped, so rerunning after a crash resumes.

    Args:
        client: A ``docker.DockerClient``.
        plan: A plan from :func:`plan_limits` (show ``plan.actions`` first).
        client: A ``docker.DockerClient`` (needed with ``apply``).
        journal: The journal file or folder; default the plan's ``journal_path``.
        apply: Really change the system; otherwise return what would be done.
        timeout_s: Seconds each service has to become healthy.

    Returns:
        One row per planned service: service, status (``dry run``, ``applied``,
        ``already applied``, ``rolled back``, ``rollback failed``), detail, memory_limit,
        memory_reservation, cpus (the live values afterwards).

    Raises:
        PlanError: The plan is stale (the override file was removed), or ``apply`` without
            a client.
    """
    if journal is not None:
        plan = dataclasses.replace(plan, journal_path=journal_path(
            journal, JOURNAL_NAME, what="apply_limits"))
    cols = ["service", "status", "detail", "memory_limit", "memory_reservation", "cpus"]
    if not apply:
        files = " ".join(f"-f {f}" for f in [*plan.compose_files, plan.override_path])
        rows = [{"service": a["service"], "status": "dry run",
                 "detail": f"would run: docker compose -p {plan.project} {files} "
                           f"up -d --no-deps {a['service']}",
                 "memory_limit": a["memory_limit"], "memory_reservation": a["memory_reservation"],
                 "cpus": a["cpus"]}
                for a in plan.actions.to_dict("records")]
        return pd.DataFrame(rows, columns=cols)
    if client is None:
        raise PlanError("apply_limits(apply=True) needs the docker client (client=...).")
    if not plan.override_path.parent.exists():
        raise PlanError(f"The plan's folder {plan.override_path.parent} is gone; plan again.")
    in_effect = {k: dict(v) for k, v in plan.entries.items()}
    _write_override(plan, in_effect)
    _journal(plan, "*", "write_override", "done", str(plan.override_path),
             entries={k: v for k, v in plan.entries.items()})
    results = []
    for svc in plan.services:
        target = plan.entries[svc]
        before = _live(client, plan.project, svc)
        if before and all(_matches(r, target) for r in before) and od.wait_healthy(
                client, plan.project, svc, 0, restarts_before=int(before[0]["restart_count"]),
                settle_s=0)[0]:
            _journal(plan, svc, "apply", "skipped", "already running with the target limits")
            results.append(_result(client, plan, svc, "already applied",
                                   "already running with the target limits"))
            continue
        _journal(plan, svc, "up", "started", target=target)
        ok, detail = True, ""
        try:
            _up(plan, svc)
        except OpslibError as exc:
            ok, detail = False, f"docker compose up failed: {exc}"
        if ok:
            ok, detail = od.wait_healthy(client, plan.project, svc, timeout_s)
        if ok:
            live = _live(client, plan.project, svc)
            if not live or not all(_matches(r, target) for r in live):
                ok, detail = False, "inspect does not show the new limits"
        if ok:
            _journal(plan, svc, "verify", "ok", detail, target=target)
            results.append(_result(client, plan, svc, "applied", f"healthy: {detail}"))
            continue
        _journal(plan, svc, "verify", "failed", detail, target=target)
        results.append(_rollback(client, plan, svc, in_effect, detail, timeout_s))
    return pd.DataFrame(results, columns=cols)


def apply_outcome(result: pd.DataFrame) -> Any:
    """Summarise what :func:`apply_limits` returned, for ``report.record("apply_outcome", ...)``.

    Args:
        result: The frame :func:`apply_limits` returned.

    Returns:
        ``"nothing to apply"``, ``"dry run"``, or service → status (``applied``,
        ``already applied``, ``rolled back``, ``rollback failed``).
    """
    if result.empty:
        return "nothing to apply"
    if set(result["status"]) == {"dry run"}:
        return "dry run"
    return {str(s): str(st) for s, st in zip(result["service"], result["status"], strict=True)}


def _rollback(client: Client, plan: LimitsPlan, svc: str, in_effect: dict[str, dict[str, Any]],
              reason: str, timeout_s: float) -> dict[str, Any]:
    # Recreate from the base file alone, unless the service ran with other values than the base
    # file declares (e.g. it was started with an earlier override): then pin those live values.
    previous: dict[str, Any] | None = None
    declared = _declared_from_service((plan.base_model.get("services") or {}).get(svc) or {})
    prev_live = plan.previous.get(svc, {})
    same = (int(prev_live.get("memory_limit", 0)) == declared["declared_memory_limit"]
            and int(prev_live.get("memory_reservation", 0))
            == declared["declared_memory_reservation"]
            and abs(float(prev_live.get("cpus", 0.0)) - declared["declared_cpus"]) < 1e-6)
    if not same and any(prev_live.values()):
        previous = prev_live
    if previous is None:
        in_effect.pop(svc, None)
    else:
        in_effect[svc] = dict(previous)
    _write_override(plan, in_effect)
    _journal(plan, svc, "rollback", "started", reason, previous=previous or "compose file")
    try:
        _up(plan, svc)
        ok, detail = od.wait_healthy(client, plan.project, svc, timeout_s)
    except OpslibError as exc:
        ok, detail = False, str(exc)
    status = "rolled back" if ok else "rollback failed"
    _journal(plan, svc, "rollback", "ok" if ok else "failed", detail)
    msg = (f"new limits failed ({reason}); rolled back to the previous settings"
           + (f" and healthy again: {detail}" if ok else f" but still not healthy: {detail}"))
    return _result(client, plan, svc, status, msg)


def _result(client: Client, plan: LimitsPlan, svc: str, status: str, detail: str) -> dict[str, Any]:
    live = _live(client, plan.project, svc)
    r = live[0] if live else {"memory_limit": 0, "memory_reservation": 0, "cpus": 0.0}
    return {"service": svc, "status": status, "detail": redact_text(detail),
            "memory_limit": format_memory(int(r["memory_limit"])),
            "memory_reservation": format_memory(int(r["memory_reservation"])),
            "cpus": format_cpus(float(r["cpus"]))}
