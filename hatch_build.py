"""Hatch build hook: compile the native log scanner (``opslib/logs/_logscan.c``) at install time.

* Wheel: the library is compiled into a temporary folder and added to the wheel as
  ``opslib/logs/_logscan.so`` (the wheel is then platform-specific).
* Editable install (``pip install -e .``): the package is imported from the source tree, so the
  library is compiled next to its source, ``opslib/logs/_logscan.so`` (git-ignored).

Next to it goes ``_logscan.so.sha256``, the hash of the C source it was built from, so the
loader (:mod:`opslib.logs._native`) uses exactly the file this install built and notices when
the source changed since. Without a C compiler (``$CC``, else ``cc``), with ``OPSLIB_NATIVE=0``
or when compiling fails, the install goes on without the library (with a warning) and the log
analysis uses its numpy/polars path.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("opslib") / "logs" / "_logscan.c"
LIBRARY = "_logscan.so"
FLAGS = ["-O2", "-shared", "-fPIC", "-std=c99"]


class LogScanBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Compiles ``_logscan.c`` for wheel and editable builds."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return  # the sdist ships the C source; its wheel build compiles it
        if os.environ.get("OPSLIB_NATIVE", "1") == "0":
            self.app.display_info("OPSLIB_NATIVE=0: not building the native log scanner")
            return
        source = Path(self.root) / SOURCE
        cc = os.environ.get("CC") or "cc"
        if shutil.which(cc) is None:
            self.app.display_warning(f"no C compiler ({cc}): opslib installs without the native "
                                     "log scanner; log analysis uses the polars path")
            return
        if version == "editable":
            folder = source.parent
        else:
            folder = Path(tempfile.mkdtemp(prefix="opslib-logscan-"))
        target = folder / LIBRARY
        tmp = folder / (LIBRARY + ".tmp")
        try:
            subprocess.run([cc, *FLAGS, "-o", str(tmp), str(source)], check=True,
                           capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            tmp.unlink(missing_ok=True)
            detail = str(getattr(exc, "stderr", "") or exc).strip()[-500:]
            self.app.display_warning(f"cannot build the native log scanner ({detail}); "
                                     "opslib installs without it")
            return
        os.replace(tmp, target)
        digest = folder / (LIBRARY + ".sha256")
        digest.write_text(hashlib.sha256(source.read_bytes()).hexdigest() + "\n")
        if version != "editable":
            build_data["force_include"][str(target)] = str(SOURCE.with_name(LIBRARY))
            build_data["force_include"][str(digest)] = str(SOURCE.with_name(LIBRARY + ".sha256"))
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
