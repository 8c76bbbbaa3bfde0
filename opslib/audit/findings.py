"""The shared shape of audit findings: severities, columns, the CIS check catalogue."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = [
    "CIS_CHECKS",
    "FINDING_COLUMNS",
    "SEVERITIES",
    "CisCheck",
    "cis_coverage",
    "findings_of",
]


SEVERITIES: tuple[str, ...] = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFO")
_SEV_RANK = {s: i for i, s in enumerate(SEVERITIES)}

FINDING_COLUMNS = [
    "source", "id", "cis_legacy", "title", "severity", "service", "container", "evidence", "why",
    "fix",
]


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


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in r.items()} for r in df.to_dict(orient="records")]


def _findings_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(list(rows), columns=FINDING_COLUMNS)
    if not len(df):
        return df
    df["_r"] = df["severity"].map(lambda s: _SEV_RANK.get(str(s), len(SEVERITIES)))
    return (df.sort_values(["_r", "source", "service", "id"], kind="stable")
            .drop(columns="_r").reset_index(drop=True))


def findings_of(findings: pd.DataFrame, source: str) -> pd.DataFrame:
    """The findings of one category (``runtime``, ``secrets``, ``dockerfile``, ``vulns``)."""
    return findings[findings["source"] == source]
