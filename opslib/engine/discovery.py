"""What a compose project is made of, found once from the engine: services, roles, health, ports.

Every runbook parameter that names a service, a compose file or an endpoint defaults to ``auto``
and is resolved here, from the project's own containers (their compose labels and inspect data),
never from the demo's names. :func:`discover` reads the project; :meth:`Stack.pick` turns an
``auto`` (or a named) service into one service of a role, with an error that lists the services,
their detected roles and the parameter to set when the role is missing or ambiguous.

Roles: ``postgres``, ``redis``, ``nginx``, ``http`` (an application speaking HTTP) and ``other``,
scored from the image name, the command, the exposed ports and the environment variable names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from opslib.engine.client import CONFIG_FILES_LABEL, SERVICE_LABEL, WORKDIR_LABEL, Client
from opslib.engine.containers import project_containers
from opslib.exceptions import BadParameter, RoleNotFound, ServiceNotFound

__all__ = [
    "AUTO",
    "HEALTH_STATES",
    "ROLES",
    "PublishedPort",
    "ServiceInfo",
    "Stack",
    "compose_files_param",
    "detect_role",
    "discover",
    "health_state",
    "worst_health",
]

#: The parameter value that means "find it from the project".
AUTO = "auto"
ROLES = ("postgres", "redis", "nginx", "http", "other")
#: What :func:`health_state` can say of a container.
HEALTH_STATES = ("healthy", "unhealthy", "starting", "no healthcheck", "not running")

_HTTP_PORTS = {80, 443, 3000, 4000, 5000, 8000, 8008, 8080, 8081, 8443, 8888, 9000}
_HTTP_WORDS = ("gunicorn", "uvicorn", "hypercorn", "daphne", "waitress", "flask", "django",
               "node", "npm", "next", "express", "rails", "puma", "http.server", "caddy",
               "httpd", "apache", "traefik", "envoy", "haproxy", "java", "dotnet", "php-fpm")
#: (role, words in image/command, ports, environment variable prefixes)
_SIGNS: tuple[tuple[str, tuple[str, ...], frozenset[int], tuple[str, ...]], ...] = (
    ("postgres", ("postgres", "postgis", "timescale", "pg_ctl", "pgvector"),
     frozenset({5432}), ("POSTGRES_", "PGDATA", "PGUSER", "PGPASSWORD")),
    ("redis", ("redis", "valkey", "keydb"), frozenset({6379}), ("REDIS_",)),
    ("nginx", ("nginx", "openresty"), frozenset(), ("NGINX_",)),
)


@dataclass(frozen=True)
class PublishedPort:
    """A container port published on the host.

    Attributes:
        host_ip: Host address (``0.0.0.0`` = every interface).
        host_port: Port on the host.
        container_port: Port inside the container.
        protocol: ``tcp`` or ``udp``.
    """

    host_ip: str
    host_port: int
    container_port: int
    protocol: str = "tcp"

    def url(self, scheme: str = "http") -> str:
        """A URL reaching this port from the engine's host (loopback when published everywhere)."""
        host = self.host_ip if self.host_ip not in ("", "0.0.0.0", "::") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"{scheme}://{host}:{self.host_port}"


@dataclass(frozen=True)
class ServiceInfo:
    """One service of a compose project as the engine runs it.

    Attributes:
        name: The compose service name.
        containers: Its container names (replicas), sorted.
        image: Image reference of the first container.
        role: The detected role (:data:`ROLES`).
        role_evidence: Why that role (``"image 'ledger/postgres:test', port 5432"``).
        state: Container state of the first container (running, exited ...).
        health: :func:`health_state` of the worst container.
        healthcheck: The healthcheck test as one string ("" = none).
        exposed: Ports the image or compose file exposes (container side).
        published: Ports published on the host.
        env_names: Names (never values) of the environment variables.
        command: Entrypoint and command as one string.
        volumes: Names of the named volumes mounted in its first container.
    """

    name: str
    containers: tuple[str, ...]
    image: str
    role: str
    role_evidence: str
    state: str
    health: str
    healthcheck: str
    exposed: tuple[int, ...]
    published: tuple[PublishedPort, ...]
    env_names: tuple[str, ...]
    command: str
    volumes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stack:
    """A discovered compose project.

    Attributes:
        project: The compose project name.
        services: Its services, sorted by name.
        compose_files: The compose files it was started with (host paths, from the labels).
        working_dir: Its working directory on the engine's host ("" when unknown).
        env: Per service, the environment of its first container (for roles' own settings
            such as ``POSTGRES_USER``; never displayed).
    """

    project: str
    services: tuple[ServiceInfo, ...]
    compose_files: tuple[str, ...]
    working_dir: str
    env: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False)

    @property
    def names(self) -> list[str]:
        """The service names."""
        return [s.name for s in self.services]

    def service(self, name: str) -> ServiceInfo:
        """The service called ``name``.

        Raises:
            ServiceNotFound: No such service in the project.
        """
        for s in self.services:
            if s.name == name:
                return s
        raise ServiceNotFound(self.project, name, self.names)

    def of_role(self, role: str) -> list[ServiceInfo]:
        """The services detected as ``role``."""
        return [s for s in self.services if s.role == role]

    def pick(self, role: str, value: str = AUTO, *, param: str) -> str:
        """The service a runbook should use for ``role``: the named one, or the only one found.

        Args:
            role: One of :data:`ROLES`.
            value: The runbook parameter's value: ``"auto"`` (or "") to discover, else a name.
            param: The parameter's name, for the error message.

        Returns:
            A service name of this project.

        Raises:
            ServiceNotFound: The named service does not exist.
            RoleNotFound: ``auto`` found no service of the role, or several.
        """
        if role not in ROLES:
            raise BadParameter("role", role, "one of " + ", ".join(ROLES))
        if value and value != AUTO:
            self.service(value)  # raises with the list when it does not exist
            return value
        found = self.of_role(role)
        if len(found) == 1:
            return found[0].name
        why = (f"no service looks like {role}" if not found else
               f"{len(found)} services look like {role} ({', '.join(s.name for s in found)})")
        raise RoleNotFound(self.project, role, why, self._roles_text(), param=param)

    def maybe(self, role: str, value: str = AUTO, *, param: str) -> str | None:
        """Like :meth:`pick`, but ``None`` when ``auto`` finds no service of the role.

        A named service that does not exist, or several candidates, still raise.
        """
        if (not value or value == AUTO) and not self.of_role(role):
            return None
        return self.pick(role, value, param=param)

    def http_endpoint(self, value: str = AUTO, *, prefer: Sequence[str] = ("nginx", "http")
                      ) -> str | None:
        """A base URL of the project's own HTTP entry point, published on the host.

        Args:
            value: ``"auto"`` to discover; a URL is returned as given.
            prefer: Roles tried in order (the reverse proxy first: it is what users reach).

        Returns:
            ``http://host:port`` or ``None`` when no service of those roles publishes a port.
        """
        if value and value != AUTO:
            return value
        for role in prefer:
            for s in self.of_role(role):
                tcp = [p for p in s.published if p.protocol == "tcp"]
                web = [p for p in tcp if p.container_port in _HTTP_PORTS] or tcp
                if web:
                    return web[0].url()
        return None

    def table(self) -> pd.DataFrame:
        """One row per service: role, evidence, state, health, healthcheck, ports, image."""
        rows = [{"service": s.name, "role": s.role, "detected_from": s.role_evidence,
                 "containers": len(s.containers), "state": s.state, "health": s.health,
                 "healthcheck": s.healthcheck or "(none)",
                 "published": ", ".join(f"{p.host_ip or '*'}:{p.host_port}->{p.container_port}"
                                        for p in s.published) or "(none)",
                 "image": s.image} for s in self.services]
        return pd.DataFrame(rows, columns=["service", "role", "detected_from", "containers",
                                           "state", "health", "healthcheck", "published",
                                           "image"])

    def _roles_text(self) -> str:
        return ", ".join(f"{s.name} ({s.role})" for s in self.services) or "(no services)"


def health_state(attrs: Mapping[str, Any]) -> str:
    """What a container's health honestly is (:data:`HEALTH_STATES`).

    Args:
        attrs: The container's inspect data.

    Returns:
        ``not running`` unless running; then the healthcheck's status, or ``no healthcheck``.
    """
    state = attrs.get("State") or {}
    if state.get("Status") != "running":
        return "not running"
    health = (state.get("Health") or {}).get("Status")
    test = ((attrs.get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
    if not health or (test and test[0] == "NONE"):
        return "no healthcheck"
    return str(health) if health in ("healthy", "unhealthy", "starting") else "starting"


def detect_role(image: str, command: str, ports: Iterable[int], env_names: Iterable[str]
                ) -> tuple[str, str]:
    """Guess a service's role from what its container shows.

    Args:
        image: Image reference (``ledger/postgres:test``).
        command: Entrypoint and command as one string.
        ports: Exposed and published container ports.
        env_names: Environment variable names.

    Returns:
        ``(role, evidence)``: the role with most signs (image 3, command 2, port 2,
        environment 1), ``http`` for an HTTP server or HTTP port, else ``other``.
    """
    text_image = image.lower()
    text_cmd = command.lower()
    port_set = set(ports)
    names = [n.upper() for n in env_names]
    best: tuple[int, str, list[str]] = (0, "other", [])
    for role, words, role_ports, prefixes in _SIGNS:
        score, why = 0, list[str]()
        if any(w in text_image for w in words):
            score, why = score + 3, [*why, f"image {image!r}"]
        if any(w in text_cmd for w in words):
            score, why = score + 2, [*why, "command"]
        hit = sorted(port_set & role_ports)
        if hit:
            score, why = score + 2, [*why, "port " + ",".join(map(str, hit))]
        env = sorted({n for n in names for p in prefixes if n.startswith(p)})
        if env:
            score, why = score + 1, [*why, "env " + env[0]]
        if score > best[0]:
            best = (score, role, why)
    if best[0] >= 2:
        return best[1], ", ".join(best[2])
    http_cmd = [w for w in _HTTP_WORDS if re.search(rf"(^|[\s/]){re.escape(w)}\b", text_cmd)]
    http_ports = sorted(port_set & _HTTP_PORTS)
    if http_cmd or http_ports:
        why = ([f"command {http_cmd[0]}"] if http_cmd else []) + (
            ["port " + ",".join(map(str, http_ports))] if http_ports else [])
        return "http", ", ".join(why)
    return "other", "no sign of postgres, redis, nginx or HTTP"


def _ports(attrs: Mapping[str, Any]) -> tuple[tuple[int, ...], tuple[PublishedPort, ...]]:
    exposed: set[int] = set()
    for key in ((attrs.get("Config") or {}).get("ExposedPorts") or {}):
        port, _, _ = str(key).partition("/")
        if port.isdigit():
            exposed.add(int(port))
    published: list[PublishedPort] = []
    for key, binds in ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).items():
        port, _, proto = str(key).partition("/")
        if not port.isdigit():
            continue
        exposed.add(int(port))
        for b in binds or []:
            if str(b.get("HostPort", "")).isdigit():
                published.append(PublishedPort(str(b.get("HostIp") or ""), int(b["HostPort"]),
                                               int(port), proto or "tcp"))
    # One entry per host port (docker lists 0.0.0.0 and :: for the same binding).
    unique = {(p.host_port, p.protocol): p for p in sorted(published, key=lambda p: p.host_ip,
                                                           reverse=True)}
    return tuple(sorted(exposed)), tuple(sorted(unique.values(), key=lambda p: p.host_port))


def _env(attrs: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in (attrs.get("Config") or {}).get("Env") or []:
        name, _, value = str(item).partition("=")
        out[name] = value
    return out


#: Labels of opslib's own throwaway containers (restore drills), never part of a project.
_OPSLIB_SCRATCH = "opslib.drill"

_HEALTH_RANK = {h: i for i, h in enumerate(("not running", "unhealthy", "starting",
                                            "no healthcheck", "healthy"))}


def worst_health(states: Iterable[str]) -> str:
    """The worst of several :data:`HEALTH_STATES` (not running < unhealthy < starting < no
    healthcheck < healthy): a service is as healthy as its worst container."""
    return min(states, key=lambda h: _HEALTH_RANK.get(h, 0), default="not running")


def discover(client: Client, project: str) -> Stack:
    """Read a compose project from the engine: services, roles, health, ports, compose files.

    Args:
        client: A connected client (:func:`opslib.engine.connect`).
        project: The compose project name.

    Returns:
        The :class:`Stack`.

    Raises:
        ProjectNotFound: The project has no containers (the message lists the projects).
    """
    containers = [c for c in project_containers(client, project)
                  if not any(k.startswith(_OPSLIB_SCRATCH) for k in c.labels)]
    by_service: dict[str, list[Any]] = {}
    for c in containers:
        by_service.setdefault(str(c.labels.get(SERVICE_LABEL, c.name)), []).append(c)
    services: list[ServiceInfo] = []
    envs: dict[str, dict[str, str]] = {}
    files: list[str] = []
    workdir = ""
    for name in sorted(by_service):
        group = sorted(by_service[name], key=lambda c: str(c.name))
        attrs = group[0].attrs
        cfg = attrs.get("Config") or {}
        env = _env(attrs)
        exposed, published = _ports(attrs)
        command = " ".join(str(x) for x in [*(cfg.get("Entrypoint") or []),
                                            *(cfg.get("Cmd") or [])])
        image = str(cfg.get("Image") or "")
        role, why = detect_role(image, command, exposed, env)
        test = (cfg.get("Healthcheck") or {}).get("Test") or []
        check = "" if not test or test[0] == "NONE" else " ".join(str(t) for t in test[1:])
        health = worst_health(health_state(c.attrs) for c in group)
        services.append(ServiceInfo(
            name, tuple(str(c.name) for c in group), image, role, why,
            str((attrs.get("State") or {}).get("Status") or ""), health, check, exposed,
            published, tuple(sorted(env)), command,
            tuple(str(m.get("Name")) for m in attrs.get("Mounts") or []
                  if m.get("Type") == "volume" and m.get("Name"))))
        envs[name] = env
        labels = group[0].labels
        workdir = workdir or str(labels.get(WORKDIR_LABEL) or "")
        for f in str(labels.get(CONFIG_FILES_LABEL) or "").split(","):
            if f and f not in files:
                files.append(f)
    return Stack(project, tuple(services), tuple(files), workdir, envs)


def compose_files_param(value: str | Sequence[str | Path], stack: Stack) -> list[Path]:
    """Compose files from a runbook parameter: ``auto`` = the files the project was started with.

    Args:
        value: ``"auto"``/"" or comma-separated paths (or a list).
        stack: The discovered project.

    Returns:
        The files; relative names resolve against the project's working directory.

    Raises:
        BadParameter: No file is known, or one does not exist on this machine.
    """
    if isinstance(value, str):
        items = [] if value in ("", AUTO) else [v.strip() for v in value.split(",") if v.strip()]
    else:
        items = [str(v) for v in value]
    base = Path(stack.working_dir) if stack.working_dir else Path.cwd()
    paths = ([Path(f) for f in stack.compose_files] if not items else
             [p if p.is_absolute() else base / p for p in map(Path, items)])
    missing = [str(p) for p in paths if not p.is_file()]
    if not paths or missing:
        found = ", ".join(stack.compose_files) or "none recorded in its labels"
        raise BadParameter(
            "compose_file", value if isinstance(value, str) else ",".join(items),
            f"the compose file(s) of project {stack.project!r} readable here (the project was "
            f"started with: {found}; missing here: {', '.join(missing) or '-'}). On a remote "
            "engine, pass local copies: -p compose_file a.yaml,b.yaml")
    return paths
