"""CIS Docker Benchmark runtime checks of running containers and the engine."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from opslib import engine as od
from opslib.audit.findings import _findings_frame, _q, _records, _row, _snippet
from opslib.engine import Client
from opslib.exceptions import (
    ContainerNotFound,
    EngineRefused,
)

__all__ = [
    "EngineFacts",
    "container_findings",
    "engine_facts",
    "runtime_findings",
    "tmpfs_mounts_from_diff",
    "writable_paths",
]


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
