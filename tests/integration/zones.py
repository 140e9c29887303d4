"""Time zones where it is day or night right now, so quiet-hours tests never flake."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


def zone_at_local_hour(target: int) -> str:
    """An ``Etc/GMT±N`` zone whose local hour is closest to ``target`` now."""
    best, best_gap = "UTC", 99
    for offset in range(-12, 15):
        name = "UTC" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"
        hour = datetime.now(ZoneInfo(name)).hour
        gap = min(abs(hour - target), 24 - abs(hour - target))
        if gap < best_gap:
            best, best_gap = name, gap
    return best


def daytime_zone() -> str:
    return zone_at_local_hour(13)


def night_zone() -> str:
    return zone_at_local_hour(2)
