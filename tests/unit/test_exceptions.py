from __future__ import annotations

import inspect

import opslib.exceptions as exc_mod
from opslib.exceptions import (
    BadInputFormat,
    BadParameter,
    CommandFailed,
    EngineUnreachable,
    OpslibError,
    ProjectNotFound,
    ServiceNotFound,
)


def test_every_exception_is_in_the_tree_and_exported() -> None:
    classes = {n for n, o in inspect.getmembers(exc_mod, inspect.isclass)
               if issubclass(o, Exception) and o.__module__ == exc_mod.__name__}
    assert classes == set(exc_mod.__all__)
    for name in classes:
        assert issubclass(getattr(exc_mod, name), OpslibError)
        assert name in (exc_mod.__doc__ or ""), f"{name} missing from the tree diagram"


def test_errors_carry_data_and_say_what_to_do() -> None:
    e = ServiceNotFound("shop", "dbx", ["api", "db"])
    assert (e.project, e.service, e.available) == ("shop", "dbx", ["api", "db"])
    assert "api, db" in str(e)
    p = ProjectNotFound("nope", [])
    assert "make demo" in str(p)
    u = EngineUnreachable(None, "connection refused")
    assert "docker-engine.sh" in str(u) and u.reason == "connection refused"
    b = BadInputFormat("/x/k6.json", "truncated JSON", line=42)
    assert str(b).startswith("/x/k6.json:42:") and b.line == 42
    bp = BadParameter("threshold", "abc", "a float", ["threshold: float = 80.0"])
    assert isinstance(bp, ValueError) and "threshold: float = 80.0" in str(bp)
    c = CommandFailed(["psql", "-c", "x"], 2, "boom", container="shop-db-1")
    assert c.exit_code == 2 and "shop-db-1" in str(c) and "boom" in str(c)
