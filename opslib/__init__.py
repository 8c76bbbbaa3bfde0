"""opslib: Jupyter runbooks for operating a Docker Compose stack.

The public surface is small: the exception tree, the report helpers notebooks call, and the
version. Domain helpers live in their own modules (``opslib.engine``, ``opslib.logs``,
``opslib.resources``, ``opslib.backup``, ``opslib.loadtest``, ``opslib.audit``) and are imported
from there.
"""

from __future__ import annotations

from opslib.exceptions import OpslibError
from opslib.runbook.report import check, record, show, table

__version__ = "0.1.0"

__all__ = ["OpslibError", "__version__", "check", "record", "show", "table"]
