"""Memory and CPU quantities: parse, format and round them the way compose writes them."""

from __future__ import annotations

import math
import re

from opslib.exceptions import (
    BadParameter,
)

__all__ = [
    "MIB",
    "format_cpus",
    "format_memory",
    "parse_cpus",
    "parse_memory",
    "round_cpus",
    "round_memory",
]


KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


# ------------------------------------------------------------------------------------------------
# Units
# ------------------------------------------------------------------------------------------------

_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?)(b?)\s*$", re.IGNORECASE)
_MEM_MULT = {"": 1, "k": KIB, "m": MIB, "g": GIB, "t": GIB * 1024, "p": GIB * 1024 * 1024}


def parse_memory(value: str | float | None) -> int:
    """Parse a memory size as docker and compose write it into bytes.

    Units are binary like docker's (``k``/``m``/``g``/``t``/``p``, optionally followed by ``i``
    and/or ``b``, any case): ``"512m"``, ``"2G"``, ``"1gb"``, ``"256MiB"``, ``"1.5g"``; a bare
    number (or numeric string) is bytes.

    Args:
        value: The size (``None`` or ``""`` means no limit).

    Returns:
        Bytes; 0 for no limit.

    Raises:
        BadParameter: The value is not a size.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0
    if isinstance(value, bool):
        raise BadParameter("memory", value, "a size such as 512M, 2G or a number of bytes")
    if isinstance(value, int | float):
        if value < 0 or math.isnan(value):
            raise BadParameter("memory", value, "a size >= 0")
        return int(value)
    m = _MEM_RE.match(str(value))
    if not m:
        raise BadParameter("memory", value, "a size such as 512M, 2G, 256MiB or a number of bytes")
    number, unit, binary, _byte = m.groups()
    if binary and not unit:  # "5i" / "5ib" are not sizes
        raise BadParameter("memory", value, "a size such as 512M, 2G, 256MiB or a number of bytes")
    return math.ceil(float(number) * _MEM_MULT[unit.lower()])


def format_memory(n: float) -> str:
    """Write bytes the way a compose file would (``"2G"``, ``"384M"``, ``"1536k"``).

    Args:
        n: Bytes.

    Returns:
        The shortest exact form in G, M or k; plain bytes otherwise; ``"none"`` for 0.
    """
    b = int(n)
    if b <= 0:
        return "none"
    for unit, mult in (("G", GIB), ("M", MIB), ("k", KIB)):
        if b % mult == 0:
            return f"{b // mult}{unit}"
    return str(b)


def parse_cpus(value: str | float | None) -> float:
    """Parse a CPU limit (``"1.5"``, ``0.5``) into cores.

    Args:
        value: The limit (``None``/``""``/0 means none).

    Returns:
        Cores as a float; 0.0 for no limit.

    Raises:
        BadParameter: Not a non-negative number.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0.0
    try:
        cpus = float(value)
    except (TypeError, ValueError) as exc:
        raise BadParameter("cpus", value, "a number of cores such as 0.5 or 2") from exc
    if cpus < 0 or math.isnan(cpus):
        raise BadParameter("cpus", value, "a number of cores >= 0")
    return cpus


def format_cpus(cpus: float) -> str:
    """Write cores for a compose file (``"1.0"``, ``"0.75"``).

    Args:
        cpus: Cores.

    Returns:
        The value with at most two decimals; ``"none"`` for 0.
    """
    if cpus <= 0:
        return "none"
    text = f"{cpus:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def round_memory(n: float) -> int:
    """Round a memory size up to a sane unit.

    Steps: 16 MiB below 128 MiB, 32 MiB below 512 MiB, 128 MiB below 2 GiB, 512 MiB above.

    Args:
        n: Bytes.

    Returns:
        The rounded size in bytes (at least 16 MiB).
    """
    n = max(float(n), 1.0)
    step = 16 * MIB if n <= 128 * MIB else 32 * MIB if n <= 512 * MIB else (
        128 * MIB if n <= 2 * GIB else 512 * MIB
    )
    return int(math.ceil(n / step) * step)


def round_cpus(cpus: float, step: float = 0.25) -> float:
    """Round cores up to a multiple of ``step`` (0.25 cores by default).

    Args:
        cpus: Cores.
        step: Granularity.

    Returns:
        The rounded value (at least ``step``).
    """
    return max(step, math.ceil(round(cpus / step, 6)) * step)
