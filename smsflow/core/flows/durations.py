"""Durations ("45s", "30m", "2h", "3d", "1w", "1h30m") and event timestamps.

Flow files state durations as short strings so marketers never count seconds; the
engine works in epoch seconds (floats, UTC) like :mod:`smsflow.clock`.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?[smhdw])+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds in ``text``; ValueError with a plain message when it is not a duration."""
    if not isinstance(text, str) or not _WHOLE.match(text.strip()):
        raise ValueError(f"bad duration {text!r} (use e.g. 45s, 30m, 2h, 3d, 1w or 1h30m)")
    return float(sum(float(n) * UNITS[u] for n, u in _PART.findall(text)))


def format_duration(seconds: float) -> str:
    """The shortest readable form: 5400 -> '1h30m'."""
    rest, parts = int(round(seconds)), []
    for unit in ("w", "d", "h", "m", "s"):
        count, rest = divmod(rest, UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_timestamp(value: object, default: float) -> float:
    """Epoch seconds of an ISO-8601 string or a number; ``default`` when absent or invalid."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return default
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.timestamp()
    return default


def iso(ts: float | None) -> str | None:
    """ISO-8601 UTC with milliseconds and a Z, as the outcome and send records carry."""
    if ts is None:
        return None
    text = datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")
