"""The optional native field scanner of :mod:`opslib.logs.parse` (``_logscan.c``).

The C file is compiled when opslib is installed (the hatch build hook ``hatch_build.py``, for
wheels and editable installs) into ``_logscan.so`` next to this module, with
``_logscan.so.sha256`` naming the source it was built from; :func:`scanner` loads exactly that
file with :mod:`ctypes` (which releases the GIL during each call, so worker threads scan in
parallel).

Without a compiler at install time, or with ``OPSLIB_NATIVE=0``, :func:`scanner` returns None and
the analysis uses numpy and polars regexes instead: the same results, 1.3 to 1.8 times slower.

One fallback remains from the first-use build: in an editable checkout whose ``_logscan.c``
changed after the install, the installed library is stale; then the current source is compiled
into a cache folder (``$OPSLIB_CACHE_DIR``, else ``$XDG_CACHE_HOME/opslib``, else
``~/.cache/opslib``), named by a hash of the source and the compiler command, until the next
``pip install -e .``.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("_logscan.c")
#: What the install built (hatch_build.py), and the hash of the source it was built from.
INSTALLED = Path(__file__).with_name("_logscan.so")
INSTALLED_SHA256 = INSTALLED.with_name(INSTALLED.name + ".sha256")
_FLAGS = ["-O2", "-shared", "-fPIC", "-std=c99"]


def cache_dir() -> Path:
    """Where compiled scanners are kept."""
    if os.environ.get("OPSLIB_CACHE_DIR"):
        return Path(os.environ["OPSLIB_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "opslib"


def _library_path(cc: str) -> Path:
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join([cc, *_FLAGS]).encode()).hexdigest()
    return cache_dir() / f"logscan-{digest[:16]}.so"


def installed() -> Path | None:
    """The library the install built, when it is there and built from the current source."""
    if not INSTALLED.is_file():
        return None
    if not SOURCE.is_file():
        return INSTALLED  # an installed package without its source: nothing to compare
    try:
        built_from = INSTALLED_SHA256.read_text().strip()
    except OSError:
        return None
    return INSTALLED if built_from == hashlib.sha256(SOURCE.read_bytes()).hexdigest() else None


def library() -> Path | None:
    """The scanner library to load: the installed one, or (only when it is stale) a cache build.

    Returns:
        Its path, or None when the install built none (no compiler then: the polars path).
    """
    found = installed()
    if found is not None:
        return found
    if INSTALLED.is_file():  # the source changed since the install (an editable checkout)
        log.info("%s is older than %s: building the current source into %s",
                 INSTALLED.name, SOURCE.name, cache_dir())
        return build()
    return None


def build() -> Path | None:
    """Compile the current source into the cache if it is not there yet (the stale-install
    fallback of :func:`library`); its path, or None without a compiler (or when compiling
    fails: logged as a warning)."""
    cc = os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        log.info("no C compiler (%s): log analysis uses the polars regex path", cc)
        return None
    target = _library_path(cc)
    if target.exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            subprocess.run([cc, *_FLAGS, "-o", tmp, str(SOURCE)], check=True,
                           capture_output=True, text=True, timeout=120)
            os.replace(tmp, target)  # atomic: concurrent builders each install a whole file
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        log.warning("cannot build the native log scanner (%s); using the polars regex path",
                    str(detail).strip()[-500:])
        return None
    return target


class Cut(NamedTuple):
    """The json-file envelopes of a batch's lines (see :meth:`Scanner.cut`)."""

    starts: np.ndarray  #: where each line starts (int64)
    log_s: np.ndarray  #: start of the log value, -1 for lines without the usual shape
    log_e: np.ndarray  #: end of the log value (-1 likewise)
    time_s: np.ndarray  #: start of the time (-1 likewise)
    views: np.ndarray  #: (3, n, 16) uint8: time, stream and log as arrow string views
    stream: np.ndarray  #: 1 for stderr, else 0 (uint8)
    complete: np.ndarray  #: the log value ends with an escaped newline (bool)
    rest: int  #: lines without the usual shape


class Scanned(NamedTuple):
    """The classification fields of lines (see :meth:`Scanner.scan`)."""

    views: np.ndarray  #: (2, n, 16) uint8: level and status fields as arrow string views
    valid: np.ndarray  #: (2, n) bool: whether each was found
    message: pa.LargeStringArray  #: the message, decoded and cut to max_chars characters
    key: pa.LargeStringArray  #: the message with its ASCII digits made 0 (the grouping key)
    keywords: np.ndarray  #: whether the line's level must come from keywords of the line


def _function(lib: ctypes.CDLL, name: str, args: str) -> Any:
    """``lib.name`` returning int64, taking pointers (``p``) and int64 values (``i``)."""
    fn = getattr(lib, name)
    fn.restype = ctypes.c_int64
    fn.argtypes = [ctypes.c_void_p if a == "p" else ctypes.c_int64 for a in args]
    return fn


class Scanner:
    """The functions of the compiled ``_logscan.c``. Each call releases the GIL."""

    def __init__(self, path: Path) -> None:
        self.path = path
        lib = ctypes.CDLL(str(path))
        self._count = _function(lib, "opslib_count_lines", "pi")
        self._cut = _function(lib, "opslib_cut_envelopes", "pii" + "p" * 7)
        self._scan = _function(lib, "opslib_scan_fields", "ppp" + "ii" + "p" * 6)

    def cut(self, buf: np.ndarray, size: int) -> Cut:
        """Cut the lines of ``buf[:size]`` and their usual json-file envelope
        ``{"log":"…","stream":"std…","time":"…"}``.

        Args:
            buf: The batch's bytes (uint8, C-contiguous), at least ``size`` long.
            size: Bytes of whole lines (the last may lack its newline).

        Returns:
            A :class:`Cut`.
        """
        _check(buf, size)
        n = int(self._count(buf.ctypes.data, size))
        starts, log_s, log_e, time_s = (np.empty(n, dtype=np.int64) for _ in range(4))
        views = np.empty((3, n, 16), dtype=np.uint8)
        stream, complete = np.empty(n, dtype=np.uint8), np.empty(n, dtype=np.uint8)
        rest = self._cut(buf.ctypes.data, size, n, starts.ctypes.data, log_s.ctypes.data,
                         log_e.ctypes.data, time_s.ctypes.data, views.ctypes.data,
                         stream.ctypes.data, complete.ctypes.data)
        return Cut(starts, log_s, log_e, time_s, views, stream, complete.view(np.bool_),
                   int(rest))

    def scan(self, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_chars: int
             ) -> Scanned:
        """Find the fields of the lines ``buf[starts[i]:ends[i]]`` (escaped log text).

        Args:
            buf: The batch's bytes (uint8, C-contiguous, valid UTF-8).
            starts: Start of each line's log text.
            ends: End of each line's log text, each within ``buf``.
            max_chars: Characters kept of each message.

        Returns:
            A :class:`Scanned`.
        """
        s = np.ascontiguousarray(starts, dtype=np.int64)
        e = np.ascontiguousarray(ends, dtype=np.int64)
        n = len(s)
        _check(buf, int(e.max()) if n else 0)
        if len(e) != n or (n and (int(s.min()) < 0 or bool((e < s).any()))):
            raise ValueError("bad line spans")
        room = int((e - s).sum()) + n + 1
        views = np.empty((2, n, 16), dtype=np.uint8)
        valid = np.empty((2, n), dtype=np.uint8)
        offsets = np.empty(n + 1, dtype=np.int64)
        msg, key = np.empty(room, dtype=np.uint8), np.empty(room, dtype=np.uint8)
        kw = np.empty(n, dtype=np.uint8)
        used = self._scan(buf.ctypes.data, s.ctypes.data, e.ctypes.data, n, max_chars,
                          views.ctypes.data, valid.ctypes.data, offsets.ctypes.data,
                          msg.ctypes.data, key.ctypes.data, kw.ctypes.data)
        off = pa.py_buffer(offsets)
        return Scanned(views, valid.view(np.bool_),
                       pa.LargeStringArray.from_buffers(n, off, pa.py_buffer(msg[:used])),
                       pa.LargeStringArray.from_buffers(n, off, pa.py_buffer(key[:used])),
                       kw.view(np.bool_))


def _check(buf: np.ndarray, need: int) -> None:
    if buf.dtype != np.uint8 or buf.ndim != 1 or not buf.flags.c_contiguous:
        raise ValueError("buf must be a C-contiguous 1-d uint8 array")
    if len(buf) < need:
        raise ValueError(f"buf holds {len(buf)} bytes, {need} needed")


def _switched_off() -> bool:
    return os.environ.get("OPSLIB_NATIVE", "1") == "0"


@functools.cache
def scanner() -> Scanner | None:
    """The native scanner the install built; None when disabled (``OPSLIB_NATIVE=0``) or
    unavailable (no compiler at install time)."""
    if _switched_off():
        return None
    path = library()
    if path is None:
        return None
    try:
        return Scanner(path)
    except OSError as exc:
        log.warning("cannot load %s (%s); using the polars regex path", path, exc)
        return None


def describe() -> str:
    """One line saying which log scanner the analysis uses."""
    sc = scanner()
    if sc is None:
        why = "OPSLIB_NATIVE=0" if _switched_off() else (
            "not built at install time: no C compiler, or the build failed")
        return f"log scanner: numpy/polars regexes ({why})"
    return f"log scanner: native ({sc.path})"


if __name__ == "__main__":  # `python -m opslib.logs._native` says which scanner runs
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(describe())
