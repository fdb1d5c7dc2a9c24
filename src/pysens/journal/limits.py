"""Sizes and ages as journalctl users write them: ``500M``, ``2G``, ``90d``, ``2w``, ``12h``.

Pure parsing (the daemon's configuration and ``sens journal vacuum`` share it). Sizes are bytes
with an optional K, M, G or T suffix, powers of 1024 as journald counts them (``KiB`` … and a
trailing ``B`` are accepted too). Ages are one or more number + unit pairs (``1d 12h``): ``s``,
``min`` (or ``m``), ``h``, ``d``, ``w``, ``month`` (30.44 days) and ``y`` (365.25 days), with
their long names (``days``, ``weeks`` …). A mistake raises :class:`LimitError` saying what is
accepted.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

__all__ = ["LimitError", "format_size", "parse_age", "parse_size"]


class LimitError(ValueError):
    """A size or an age that cannot be read; the message says what the forms are."""


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*", re.IGNORECASE)

_AGE_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
    "month": 2_629_800, "months": 2_629_800,
    "y": 31_557_600, "year": 31_557_600, "years": 31_557_600,
}
_AGE_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)", re.IGNORECASE)


def parse_size(value: str | int) -> int:
    """Bytes from ``500M``, ``1.5G``, ``4096`` (or an integer)."""
    if isinstance(value, bool):
        raise LimitError(f"a size must be like 500M or 2G, not {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise LimitError(f"a size must be positive, not {value}")
        return value
    m = _SIZE.fullmatch(value)
    if m is None:
        raise LimitError(f"{value!r} is not a size: give bytes with K, M, G or T (powers of "
                         "1024), like 500M or 2G")
    size = float(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]
    if size < 1 or not math.isfinite(size):
        raise LimitError(f"a size must be at least one byte, not {value!r}")
    return int(size)


def parse_age(value: str) -> timedelta:
    """An age from ``90d``, ``2w``, ``1d 12h``, ``30min``, ``6months``, ``1y``."""
    text = value.strip()
    parts = _AGE_PART.findall(text)
    if not parts or _AGE_PART.sub("", text).strip(" ,"):
        raise LimitError(f"{value!r} is not an age: give a number and a unit (s, min, h, d, w, "
                         "month, y), like 90d, 2w or 1d 12h")
    seconds = 0.0
    for number, unit in parts:
        factor = _AGE_UNITS.get(unit.lower())
        if factor is None:
            raise LimitError(f"{value!r}: unknown unit {unit!r}; the units are s, min, h, d, "
                             "w, month and y")
        seconds += float(number) * factor
    if seconds <= 0:
        raise LimitError(f"an age must be more than nothing, not {value!r}")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise LimitError(f"{value!r} is longer than any calendar") from None


def format_size(size: float) -> str:
    """``57.6M``, ``1.2G``, ``512B``: a size as journalctl prints one."""
    for unit in ("B", "K", "M", "G", "T"):
        if abs(size) < 1024 or unit == "T":
            return f"{size:.0f}B" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    raise AssertionError  # not reached
