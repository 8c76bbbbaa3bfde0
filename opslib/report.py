"""``from opslib import report`` for notebooks: the runbook report helpers.

The module moved to :mod:`opslib.runbook.report`; this name stays so every notebook reads the
same.
"""

from __future__ import annotations

from opslib.runbook.report import *  # noqa: F403
from opslib.runbook.report import __all__ as __all__
