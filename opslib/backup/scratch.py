"""The drill's scratch containers and networks: removal with retries, cleanup of leftovers."""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from opslib import engine as eng
from opslib.backup.manifest import DRILL_LABEL, DRILL_RUN_LABEL, _parse_time, _utcnow
from opslib.engine import (
    Client,
)
from opslib.exceptions import (
    EngineRefused,
    EngineUnreachable,
)
from opslib.redact import redact_text

__all__ = ["cleanup_scratch"]


def _remove_with_retry(what: str, remove: Callable[[], None], attempts: int = 5
                       ) -> tuple[bool, str]:
    """Remove one object; retried because a busy engine can refuse or time out once.

    Returns:
        ``(removed, note)``: the note tells about failed attempts.
    """
    errors: list[str] = []
    for i in range(attempts):
        try:
            remove()  # gone already counts as removed
        except (EngineRefused, EngineUnreachable) as exc:  # busy, removal in progress, timeout
            errors.append(f"{type(exc).__name__}: {redact_text(str(exc))[:200]}")
            time.sleep(0.5 * (i + 1))
            continue
        note = f" (after {len(errors)} failed attempts: {errors[-1]})" if errors else ""
        return True, what + note
    return False, f"{what}: {errors[-1]}"


def _remove_scratch(scratch: Any, network: Any) -> str:
    done: list[str] = []
    errors: list[str] = []
    if scratch is not None:
        ok, note = _remove_with_retry(f"container {scratch.name}",
                                      functools.partial(eng.remove_container, scratch))
        (done if ok else errors).append(note)
    if network is not None:
        ok, note = _remove_with_retry(f"network {network.name}",
                                      functools.partial(eng.remove_network, network))
        (done if ok else errors).append(note)
    text = "removed " + ", ".join(done) if done else "nothing to remove"
    if errors:
        text += "; NOT removed (run cleanup_scratch): " + "; ".join(errors)
    return text


def cleanup_scratch(client: Client, *, older_than_s: float = 0.0) -> pd.DataFrame:
    """Remove scratch containers and networks of earlier drills (label ``opslib.drill=1``).

    A drill removes its own scratch objects in a ``finally``; this catches what a killed kernel
    or a crashed host left behind.

    Args:
        client: A ``docker.DockerClient``.
        older_than_s: Only remove objects created more than this many seconds ago (use it when
            a drill may be running concurrently on the same engine).

    Returns:
        Columns kind, name, run, created, removed, detail (one row per object found).
    """
    def created_at(attrs: Mapping[str, Any]) -> dt.datetime | None:
        return _parse_time(str(attrs.get("Created", ""))[:26].rstrip("Z") + "+00:00")

    def young(created: dt.datetime | None) -> bool:
        return bool(older_than_s and created
                    and (now - created).total_seconds() < older_than_s)

    rows = []
    label = f"{DRILL_LABEL}=1"
    now = _utcnow()
    containers = eng.labeled_containers(client, label)
    networks = eng.labeled_networks(client, label)
    for c in containers:
        created = created_at(c.attrs)
        if young(created):
            continue
        ok, note = _remove_with_retry(f"container {c.name}",
                                      functools.partial(eng.remove_container, c))
        rows.append({"kind": "container", "name": c.name,
                     "run": c.labels.get(DRILL_RUN_LABEL, ""), "created": created,
                     "removed": ok, "detail": note})
    for n in networks:
        if not eng.reload_network(n):
            continue  # removed meanwhile
        created = created_at(n.attrs)
        if young(created) or n.attrs.get("Containers"):
            continue  # a drill that is running right now
        ok, note = _remove_with_retry(f"network {n.name}",
                                      functools.partial(eng.remove_network, n))
        rows.append({"kind": "network", "name": n.name,
                     "run": (n.attrs.get("Labels") or {}).get(DRILL_RUN_LABEL, ""),
                     "created": created, "removed": ok, "detail": note})
    return pd.DataFrame(rows, columns=["kind", "name", "run", "created", "removed", "detail"])
