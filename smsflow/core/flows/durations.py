"""Durations ("45s", "30m", "2h", "3d", "1w", "1h30m") and timestamps for records.

Flow files state durations as short strings so marketers never count seconds; the
engine works in epoch seconds (floats, UTC) like :mod:`smsflow.clock`.
"""

from __future__ import annotations

import re
from smsflow.clock import iso as clock_iso

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?[smhdw])+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds in ``text``; ValueError with a plain message when it is not a duration."""
    if not isinstance(text, str) or not _WHOLE.match(text.strip()):
        raise ValueError(f"bad duration {text!r} (use e.g. 45s, 30m, 2h, 3d, 1w or 1h30m)")
    return float(sum(float(n) * UNITS[u] for n, u in _PART.findall(text)))


def format_duration(seconds: float) -> str:
    """A readable form in days and smaller units: 5400 -> '1h30m', 30 days -> '30d'."""
    rest, parts = int(round(seconds)), []
    for unit in ("d", "h", "m", "s"):
        count, rest = divmod(rest, UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def iso(ts: float | None) -> str | None:
    """ISO-8601 UTC with milliseconds and a Z, as the outcome and send records carry."""
    return clock_iso(ts, "milliseconds")
