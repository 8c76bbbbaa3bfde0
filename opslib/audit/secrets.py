"""Secrets in environment variables, image history, Dockerfiles and .env files (fingerprints
only)."""

from __future__ import annotations

import math
import re
import shlex
import stat
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from opslib import engine as od
from opslib.audit.dockerfiles import _rel, project_dockerfiles
from opslib.audit.findings import _SEV_RANK, _findings_frame, _records, _row
from opslib.engine import Client
from opslib.exceptions import (
    EngineRefused,
    NotFound,
    OpslibError,
)
from opslib.redact import fingerprint, looks_secret_name, redact_text

__all__ = [
    "SECRET_COLUMNS",
    "env_file_findings",
    "history_assignments",
    "parse_dockerfile_assignments",
    "secret_reason",
    "secret_scan",
    "secrets_as_findings",
    "shannon_entropy",
]


SECRET_COLUMNS = [
    "id", "severity", "service", "container", "source", "name", "where", "reason", "fingerprint",
    "length", "shared_with",
]


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
