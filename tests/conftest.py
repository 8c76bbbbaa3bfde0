"""Shared fixtures: a real Docker engine and one session-scoped demo stack.

Docker tests request ``docker_client`` (or ``shop``). Without an engine they skip on a laptop and
FAIL when ``CI=true``. Everything a test creates itself is labelled ``opslib.test=1`` (use the
``test_labels`` fixture) and removed at the end of the session.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
PROJECT = "shop"
TEST_LABEL = "opslib.test"
SESSION_LABEL = "opslib.test.session"
SESSION = uuid.uuid4().hex[:12]
STALE_AFTER = dt.timedelta(hours=2)

# tests/notebooks/ holds runner fixtures that fail on purpose; nbval must not collect them.
collect_ignore_glob = ["notebooks/*", "fixtures/*"]


def _no_engine(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but no Docker engine: {reason}", pytrace=False)
    pytest.skip(f"no Docker engine: {reason}")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A connected docker-py client; skip (laptop) or fail (CI) without an engine."""
    from opslib.engine import connect
    from opslib.exceptions import EngineUnreachable

    try:
        client = connect()
    except EngineUnreachable as exc:
        _no_engine(str(exc))
    _remove_stale(client)
    yield client
    _remove_labelled(client, {"label": f"{SESSION_LABEL}={SESSION}"})
    client.close()


def _remove_labelled(client: Any, flt: dict[str, str]) -> None:
    for c in client.containers.list(all=True, filters=flt):
        c.remove(force=True, v=True)
    for n in client.networks.list(filters=flt):
        n.remove()
    for v in client.volumes.list(filters=flt):
        v.remove(force=True)


def _remove_stale(client: Any) -> None:
    """Remove leftovers of earlier, crashed test sessions (never those of a running session)."""
    now = dt.datetime.now(dt.UTC)
    for c in client.containers.list(all=True, filters={"label": f"{TEST_LABEL}=1"}):
        created = dt.datetime.fromisoformat(c.attrs["Created"][:26].rstrip("Z") + "+00:00")
        if now - created > STALE_AFTER:
            c.remove(force=True, v=True)


@pytest.fixture(scope="session")
def test_labels() -> dict[str, str]:
    """Labels to put on every container/network/volume a test creates, so teardown finds it."""
    return {TEST_LABEL: "1", SESSION_LABEL: SESSION}


@pytest.fixture(scope="session")
def shop(docker_client: Any) -> str:
    """The demo compose project, built, started, healthy and seeded (once per session).

    Returns:
        The compose project name (``"shop"``).
    """
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo_stack.py"), "up"],
        capture_output=True, text=True, timeout=1800, check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"demo stack did not come up:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return PROJECT
