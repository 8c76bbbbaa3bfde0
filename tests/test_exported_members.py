"""Fails when the public surface of opslib changes by accident (add names here on purpose)."""

from __future__ import annotations

import opslib


def test_public_names() -> None:
    assert opslib.__all__ == sorted(opslib.__all__)
    assert set(opslib.__all__) == {"OpslibError", "__version__", "check", "record", "show",
                                   "table"}
    for name in opslib.__all__:
        assert hasattr(opslib, name)
