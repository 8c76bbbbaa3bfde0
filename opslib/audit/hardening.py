"""The hardening plan (compose override + seccomp profile) and its apply with rollback."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from opslib import engine as od
from opslib._plan import journal_path
from opslib.audit.findings import _records
from opslib.audit.runtime import _processes, writable_paths
from opslib.engine import Client
from opslib.exceptions import (
    ContainerNotFound,
    EngineRefused,
    NotFound,
    OpslibError,
    PlanError,
)
from opslib.journal import Journal
from opslib.redact import redact_text

__all__ = [
    "HardeningPlan",
    "apply_hardening",
    "plan_hardening",
    "seccomp_profile",
    "seccomp_profile_path",
    "write_hardening_files",
]


_SECCOMP_DIR = Path(__file__).resolve().parent / "seccomp"


# --------------------------------------------------------------------------------------------
# Seccomp profile
# --------------------------------------------------------------------------------------------


def seccomp_profile_path() -> Path:
    """The packaged seccomp profile (Docker's default allow-list minus io_uring and ptrace)."""
    return _SECCOMP_DIR / "opslib-default.json"


def seccomp_profile(extra_deny: Iterable[str] = ()) -> dict[str, Any]:
    """The opslib seccomp profile, optionally with more system calls removed from its allow-list.

    Args:
        extra_deny: System call names to remove from every allow rule.

    Returns:
        The profile as a dict (Docker's seccomp JSON format).
    """
    prof: dict[str, Any] = json.loads(seccomp_profile_path().read_text())
    deny = set(extra_deny)
    if deny:
        groups = []
        for g in prof["syscalls"]:
            if g.get("action") == "SCMP_ACT_ALLOW":
                names = [n for n in g["names"] if n not in deny]
                if not names:
                    continue
                g = {**g, "names": names}
            groups.append(g)
        prof["syscalls"] = groups
    return prof


# --------------------------------------------------------------------------------------------
# Hardening plan / apply
# --------------------------------------------------------------------------------------------

#: Non-root user to run an image's main process as, by process name; default ``nobody``.
NONROOT_USER_BY_PROCESS = {"nginx": "www-data", "httpd": "www-data", "apache2": "www-data",
                           "php-fpm": "www-data"}
#: Capabilities a root main process needs to drop privileges itself (when no user can be set).
#: nginx: verified on the demo web image (read-only rootfs, cap_drop ALL): without CHOWN it stops
#: with "chown(/var/lib/nginx/body) failed"; DAC_OVERRIDE is not needed; NET_BIND_SERVICE is kept
#: for engines that do not set net.ipv4.ip_unprivileged_port_start=0 (Docker < 20.10).
ROOT_CAPS_BY_PROCESS = {
    "nginx": ["CHOWN", "NET_BIND_SERVICE", "SETGID", "SETUID"],
    "postgres": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"],
    "redis-server": ["SETGID", "SETUID"],
}
_ACTION_COLUMNS = ["service", "setting", "value", "fixes", "reason"]


@dataclass
class HardeningPlan:
    """A compose override that hardens services, and why each setting is in it.

    Attributes:
        project: The compose project it was planned for.
        override: The override document (``{"services": {name: settings}}``).
        actions: One row per setting: service, setting, value, fixes (finding ids), reason.
        skipped: Settings not applied and why (service, setting, reason).
        seccomp_file: Where the seccomp profile will be written (referenced by the override).
    """

    project: str
    override: dict[str, Any]
    actions: pd.DataFrame
    skipped: pd.DataFrame
    seccomp_file: Path

    @property
    def services(self) -> list[str]:
        """Services the override changes."""
        return sorted((self.override.get("services") or {}).keys())

    def yaml(self) -> str:
        """The override as compose YAML."""
        return yaml.safe_dump(self.override, sort_keys=False, default_flow_style=False)

    def digest(self) -> str:
        """A short hash of the override (journal entries refer to it)."""
        return hashlib.sha256(self.yaml().encode()).hexdigest()[:12]


def _passwd_entry(client: Client, container: Any, user: str) -> tuple[int, int] | None:
    res = od.exec_in_container(client, container, ["sh", "-c", 'grep -E "^$1:" /etc/passwd',
                                                   "sh", user], check=False)
    for line in res.stdout.splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[2].isdigit() and parts[3].isdigit():
            return int(parts[2]), int(parts[3])
    return None


def _main_process(container: Any) -> str:
    procs = _processes(container)
    if procs:
        return procs[0][1]
    cmd = (container.attrs.get("Config") or {}).get("Cmd") or [""]
    return Path(str(cmd[0])).name


def _round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)


def plan_hardening(
    client: Client,
    project: str,
    *,
    seccomp_file: str | Path,
    services: Sequence[str] | None = None,
    memory_floor_mb: int = 512,
    pids_floor: int = 256,
) -> HardeningPlan:
    """Plan a compose override that hardens each running service where it is safe to.

    Per service: a non-root ``user`` when the container runs as root and the image has a fitting
    user (``www-data`` for nginx/httpd, else ``nobody``); ``read_only: true`` with ``tmpfs`` for
    the directories it writes (:func:`writable_paths`, owned by the service's user);
    ``cap_drop: [ALL]`` plus the capabilities a root main process needs to drop privileges;
    ``security_opt`` no-new-privileges and the opslib seccomp profile; ``pids_limit``, and a
    memory/CPU limit where none is set (from current usage, with floors). Nothing is changed.

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.
        seccomp_file: Absolute path where :func:`write_hardening_files` will write the seccomp
            profile (the override references it).
        services: Only these services (default: all running ones).
        memory_floor_mb: Smallest memory limit proposed.
        pids_floor: Smallest PIDs limit proposed.

    Returns:
        The :class:`HardeningPlan`.

    Raises:
        PlanError: A requested service has no running container.
        ProjectNotFound: The project has no containers.
    """
    seccomp = Path(seccomp_file).resolve()
    containers: dict[str, Any] = {}
    for c in od.project_containers(client, project, include_stopped=False):
        containers.setdefault(c.labels.get(od.SERVICE_LABEL, c.name), c)
    wanted = list(services) if services else sorted(containers)
    missing = [s for s in wanted if s not in containers]
    if missing:
        raise PlanError(f"No running container for service(s) {', '.join(missing)} of project "
                        f"{project!r}; start them first (docker compose up -d).")
    actions: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    override: dict[str, Any] = {"services": {}}
    for svc in wanted:
        c = containers[svc]
        od.reload(c)
        host = c.attrs.get("HostConfig") or {}
        cfg = c.attrs.get("Config") or {}
        spec: dict[str, Any] = {}

        def act(setting: str, value: Any, fixes: str, reason: str, *, _svc: str = svc,
                _spec: dict[str, Any] = spec) -> None:
            _spec[setting] = value
            actions.append({"service": _svc, "setting": setting,
                            "value": value if isinstance(value, str) else json.dumps(value),
                            "fixes": fixes, "reason": reason})

        proc = _main_process(c)
        run_uid: tuple[int, int] | None = None
        if od.runs_as_root(cfg.get("User")):
            candidate = NONROOT_USER_BY_PROCESS.get(proc, "nobody")
            entry = _passwd_entry(client, c, candidate)
            if entry:
                run_uid = entry
                act("user", f"{entry[0]}:{entry[1]}", "4.1",
                    f"main process {proc!r} runs as root; the image has user {candidate!r} "
                    f"(uid {entry[0]})")
            else:
                skipped.append({"service": svc, "setting": "user", "reason":
                                f"no {candidate!r} user in the image; add USER to the "
                                "Dockerfile"})
        # capabilities
        low_ports = sorted({int(str(p).split("/")[0]) for p in (cfg.get("ExposedPorts") or {})
                            if str(p).split("/")[0].isdigit() and int(str(p).split("/")[0])
                            < 1024})
        act("cap_drop", ["ALL"], "5.4", "drop Docker's 14 default capabilities")
        still_root = od.runs_as_root(cfg.get("User")) and run_uid is None
        if still_root:
            caps = list(ROOT_CAPS_BY_PROCESS.get(proc, []))
            if low_ports and "NET_BIND_SERVICE" not in caps:
                caps.append("NET_BIND_SERVICE")
            if caps:
                act("cap_add", sorted(caps), "5.4",
                    f"root process {proc!r} needs these to bind ports/drop privileges")
        elif low_ports:
            act("sysctls", {"net.ipv4.ip_unprivileged_port_start": "0"}, "4.1",
                f"non-root process binds port {low_ports[0]} < 1024 without NET_BIND_SERVICE")
        # read-only root filesystem
        if not host.get("ReadonlyRootfs"):
            wp = writable_paths(client, c)
            bad = wp[wp["reason"] == "cannot tmpfs"]
            if len(bad):
                skipped.append({"service": svc, "setting": "read_only", "reason":
                                "writes directly under /: " + ", ".join(bad["path"])})
            else:
                mounts = []
                for r in _records(wp):
                    opts = []
                    mode = r["mode"]
                    if run_uid is not None and mode != "1777":
                        opts += [f"uid={run_uid[0]}", f"gid={run_uid[1]}", "mode=0755"]
                    elif r["uid"] and r["uid"] != "0":
                        opts += [f"uid={r['uid']}", f"gid={r['gid']}", f"mode=0{mode}"]
                    elif mode:
                        opts.append(f"mode=0{mode}" if len(mode) == 3 else f"mode={mode}")
                    mounts.append(r["path"] + (":" + ",".join(opts) if opts else ""))
                act("read_only", True, "5.13", "root filesystem read-only")
                act("tmpfs", mounts, "5.13",
                    "writable scratch dirs: " + ", ".join(
                        f"{r['path']} ({r['reason']})" for r in _records(wp)))
        # security options
        act("security_opt", ["no-new-privileges:true", f"seccomp={seccomp}"], "5.26, 5.3",
            "no privilege gain through setuid binaries; opslib seccomp profile (Docker's default "
            "allow-list minus io_uring and ptrace)")
        # limits, as deploy.resources.limits: compose refuses pids_limit/mem_limit/cpus next
        # to a base file's deploy.resources.limits ("can't set distinct values")
        stats: dict[str, Any] = {}
        try:
            stats = od.one_shot_stats(c)
        except (ContainerNotFound, EngineRefused):  # stopped meanwhile: no current pid count
            stats = {}
        limits: dict[str, Any] = {}
        if host.get("PidsLimit") in (None, 0, -1):
            cur = int((stats.get("pids_stats") or {}).get("current") or 0)
            limits["pids"] = max(pids_floor, _round_up(cur * 4, 64))
            actions.append({"service": svc, "setting": "deploy.resources.limits.pids",
                            "value": str(limits["pids"]), "fixes": "5.29",
                            "reason": f"{cur} tasks now; 4x headroom, at least {pids_floor}"})
        if not int(host.get("Memory") or 0):
            usage = int((stats.get("memory_stats") or {}).get("usage") or 0)
            mb = max(memory_floor_mb, _round_up(usage * 3 / 2**20, 64))
            limits["memory"] = f"{mb}M"
            actions.append({"service": svc, "setting": "deploy.resources.limits.memory",
                            "value": f"{mb}M", "fixes": "5.11",
                            "reason": f"{usage / 2**20:.0f} MiB used now; 3x headroom, at least "
                                      f"{memory_floor_mb} MiB (refine with the resource-tuning "
                                      "runbook)"})
        if not int(host.get("NanoCpus") or 0) and not int(host.get("CpuQuota") or 0):
            limits["cpus"] = "1.0"
            actions.append({"service": svc, "setting": "deploy.resources.limits.cpus",
                            "value": "1.0", "fixes": "5.12", "reason": "one core at most"})
        if limits:
            spec["deploy"] = {"resources": {"limits": limits}}
        override["services"][svc] = spec
    return HardeningPlan(project, override, pd.DataFrame(actions, columns=_ACTION_COLUMNS),
                         pd.DataFrame(skipped, columns=["service", "setting", "reason"]),
                         seccomp)


def write_hardening_files(plan: HardeningPlan, out_dir: str | Path) -> dict[str, Path]:
    """Write the override (``hardening-override.yaml``) and the seccomp profile.

    Args:
        plan: The plan.
        out_dir: Folder for the override (the seccomp profile goes where the plan says).

    Returns:
        ``{"override": path, "seccomp": path}``.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    plan.seccomp_file.parent.mkdir(parents=True, exist_ok=True)
    plan.seccomp_file.write_text(json.dumps(seccomp_profile(), indent=2) + "\n")
    override = folder / "hardening-override.yaml"
    header = (f"# opslib security audit: hardening override for compose project {plan.project!r}"
              f" (plan {plan.digest()}).\n# Apply: docker compose -f <your compose file> -f "
              f"{override.name} up -d <service>\n")
    override.write_text(header + plan.yaml())
    return {"override": override, "seccomp": plan.seccomp_file}


def apply_hardening(
    plan: HardeningPlan,
    *,
    client: Client | None = None,
    journal: str | Path | None = None,
    apply: bool = False,
    base_files: Sequence[str | Path] = (),
    timeout: float = 120,
) -> pd.DataFrame:
    """Apply the hardening override service by service; roll back a service that is not healthy.

    For each service: ``docker compose -f base... -f override up -d --no-deps <service>``, wait
    until it is healthy (or running, without a health check) within ``timeout``; if it is not,
    recreate it from the base files (roll back) and say so. Every step is appended to the
    journal (``hardening-journal.jsonl`` in the run folder); a rerun of the same plan skips
    services the journal already records as hardened.

    Args:
        plan: From :func:`plan_hardening`.
        client: A ``docker.DockerClient`` (required when ``apply``).
        journal: The run's output folder (the override file goes there too) or the journal
            file (the override goes next to it).
        apply: False (default) only returns the plan; True changes the running services.
        base_files: The project's compose files (the override is added last).
        timeout: Seconds to wait for each service to become healthy.

    Returns:
        Per service: service, status (planned / hardened / rolled back / already hardened /
        failed), detail, seconds.

    Raises:
        PlanError: ``apply`` without a client, or no base compose file.
        ApplyError: Rolling a failed service back failed too (the journal says where it stopped).
    """
    from opslib.exceptions import ApplyError

    cols = ["service", "status", "detail", "seconds"]
    if not apply:
        return pd.DataFrame([{"service": s, "status": "planned", "detail": "; ".join(
            f"{a['setting']}={a['value']}" for a in _records(plan.actions)
            if a["service"] == s), "seconds": 0.0} for s in plan.services], columns=cols)
    if client is None:
        raise PlanError("apply_hardening(apply=True) needs the docker client (client=...).")
    if not base_files:
        raise PlanError("apply_hardening needs the project's compose files (base_files=...).")
    jpath = journal_path(journal, "hardening-journal.jsonl", what="apply_hardening")
    paths = write_hardening_files(plan, jpath.parent)
    log = Journal(jpath, time_key="ts",
                      timespec="seconds")
    digest = plan.digest()
    done = log.done_keys("service", plan=digest, status="hardened")
    base = [str(f) for f in base_files]
    check = od.compose(["config", "--quiet"], project=plan.project,
                       files=[*base, str(paths["override"])], check=False)
    if check.returncode != 0:
        raise PlanError("The compose files with the hardening override do not validate; "
                        f"nothing was changed: {redact_text(check.stderr.strip())[-500:]}")
    results = []
    for svc in plan.services:
        t0 = time.monotonic()
        if svc in done:
            results.append({"service": svc, "status": "already hardened",
                            "detail": f"journal {log.path.name} records plan {digest}",
                            "seconds": 0.0})
            continue
        step = {"project": plan.project, "plan": digest, "service": svc}
        log.append({**step, "status": "applying", "override": str(paths["override"])})
        try:
            od.compose(["up", "-d", "--no-deps", "--no-build", svc], project=plan.project,
                       files=[*base, str(paths["override"])], timeout=timeout + 60)
            ok, detail = od.wait_healthy(client, plan.project, svc, timeout)
        except OpslibError as exc:
            ok, detail = False, str(exc)
        if ok:
            log.append({**step, "status": "hardened", "detail": detail})
            results.append({"service": svc, "status": "hardened", "detail": detail,
                            "seconds": round(time.monotonic() - t0, 1)})
            continue
        logs = ""
        try:
            logs = od.container_logs(od.service_container(client, plan.project, svc), tail=15)
        except (NotFound, EngineRefused) as exc:  # no container left to read: say so instead
            logs = f"(no logs: {exc})"
        log.append({**step, "status": "failed", "detail": detail, "logs": redact_text(logs)})
        try:
            od.compose(["up", "-d", "--no-deps", "--no-build", "--force-recreate", svc],
                       project=plan.project, files=base, timeout=timeout + 60)
            rb_ok, rb_detail = od.wait_healthy(client, plan.project, svc, timeout)
        except OpslibError as exc:
            rb_ok, rb_detail = False, str(exc)
        log.append({**step, "status": "rolled back" if rb_ok else "rollback failed",
                        "detail": rb_detail})
        if not rb_ok:
            raise ApplyError(f"harden {svc}", f"service not healthy with the override ({detail}) "
                             f"and not healthy after rolling back ({rb_detail})")
        tail = redact_text(" | ".join(ln[:200] for ln in logs.strip().splitlines()[-3:]))
        results.append({"service": svc, "status": "rolled back",
                        "detail": f"not healthy with the override: {detail[:300]}; logs: {tail}; "
                                  "recreated from the base compose files",
                        "seconds": round(time.monotonic() - t0, 1)})
    return pd.DataFrame(results, columns=cols)
