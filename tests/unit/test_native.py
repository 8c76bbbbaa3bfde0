"""The native log scanner is the library the install built (hatch_build.py), or none."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from opslib.logs import _native


def test_the_loaded_scanner_is_the_installed_library() -> None:
    if _native.installed() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but the install built no native log scanner (is cc installed?)")
        pytest.skip("the install built no native scanner (no C compiler)")
    sc = _native.scanner()
    assert sc is not None and Path(sc.path) == _native.INSTALLED
    built_from = _native.INSTALLED_SHA256.read_text().strip()
    assert built_from == hashlib.sha256(_native.SOURCE.read_bytes()).hexdigest()


def test_a_stale_or_missing_library_is_not_loaded(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "_logscan.so"
    monkeypatch.setattr(_native, "INSTALLED", lib)
    monkeypatch.setattr(_native, "INSTALLED_SHA256", tmp_path / "_logscan.so.sha256")
    assert _native.installed() is None and _native.library() is None  # nothing installed
    lib.write_bytes(b"\x7fELF")
    (tmp_path / "_logscan.so.sha256").write_text("0" * 64 + "\n")
    assert _native.installed() is None  # built from another source: never loaded
    (tmp_path / "_logscan.so.sha256").write_text(
        hashlib.sha256(_native.SOURCE.read_bytes()).hexdigest() + "\n")
    assert _native.installed() == lib
