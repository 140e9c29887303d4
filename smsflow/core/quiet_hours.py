"""Local-time sending windows: "may we text now, and if not, when next?".

A :class:`Schedule` is a set of weekly windows in the recipient's wall-clock time
(quiet hours, a state's allowed hours, a flow's send window). Windows are turned into
UTC intervals per calendar day through :mod:`zoneinfo`, so DST changes and midnight
are handled by the time zone database, not by offset arithmetic. A wall time that does
not exist (the spring-forward gap) maps to the first instant after the gap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAYS = frozenset(range(7))
SEARCH_DAYS = 8  # how far one schedule looks ahead: one week plus a day


@dataclass(frozen=True)
class Window:
    """Allowed from ``start`` to ``end`` (minutes after local midnight) on ``days`` (0 = Monday).

    ``end <= start`` means the window runs past midnight into the next day; ``days``
    names the day the window starts on.
    """

    start: int
    end: int
    days: frozenset[int] = ALL_DAYS


@dataclass(frozen=True)
class Schedule:
    """Weekly windows; with ``skip_holidays`` no window opens on a policy holiday."""

    windows: tuple[Window, ...]
    skip_holidays: bool = False


def parse_hhmm(text: str) -> int:
    """``"08:30"`` -> 510 minutes; ``"24:00"`` is accepted (end of day)."""
    hours, sep, minutes = str(text).partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        raise ValueError(f"time {text!r} is not HH:MM")
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > 24 * 60:
        raise ValueError(f"time {text!r} is out of range")
    return value


def parse_day(value: str | int) -> int:
    """``"mon"``, ``"Monday"`` or ``0`` -> 0."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6:
        return value
    name = str(value).strip().lower()[:3]
    if name not in DAY_NAMES:
        raise ValueError(f"day {value!r} is not one of {', '.join(DAY_NAMES)}")
    return DAY_NAMES.index(name)


def parse_window(doc: Mapping[str, Any]) -> Window:
    """``{"start": "HH:MM", "end": "HH:MM", "days": [...]}`` (days default to every day)."""
    start, end = parse_hhmm(doc["start"]), parse_hhmm(doc["end"])
    if start == 24 * 60:
        raise ValueError("a window cannot start at 24:00")
    days = doc.get("days")
    return Window(start, end, frozenset(parse_day(d) for d in days) if days else ALL_DAYS)


def parse_schedule(doc: Mapping[str, Any] | Iterable[Mapping[str, Any]], skip_holidays: bool = False) -> Schedule:
    """One window mapping (a flow's ``send_window``) or a list of them (policy files)."""
    items = [doc] if isinstance(doc, Mapping) else list(doc)
    return Schedule(tuple(parse_window(item) for item in items), skip_holidays)


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo | None:
    """The IANA zone, or None for an unknown name (``Etc/Unknown`` included)."""
    if not name or name == "Etc/Unknown":
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "US" is a folder of the database
        return None


@lru_cache(maxsize=8192)
def _wall_to_epoch(day: date, minutes: int, tz: ZoneInfo) -> float:
    # Aware + timedelta is wall-clock arithmetic in Python; .timestamp() then applies
    # the offset valid at that wall time (fold=0: gap times land after the gap).
    # Cached: the gate asks about the same few days and zones over and over.
    return (datetime.combine(day, time(0), tzinfo=tz) + timedelta(minutes=minutes)).timestamp()


def day_intervals(schedule: Schedule, tz: ZoneInfo, day: date,
                  holidays: frozenset[date] = frozenset()) -> list[tuple[float, float]]:
    """UTC ``[start, end)`` intervals of the windows that open on local ``day``."""
    if schedule.skip_holidays and day in holidays:
        return []
    out = []
    for w in schedule.windows:
        if day.weekday() in w.days:
            end_day = day if w.end > w.start else day + timedelta(days=1)
            out.append((_wall_to_epoch(day, w.start, tz), _wall_to_epoch(end_day, w.end, tz)))
    return out


def next_allowed(schedule: Schedule, tz: ZoneInfo, t: float,
                 holidays: frozenset[date] = frozenset()) -> float | None:
    """Earliest instant >= ``t`` inside ``schedule`` in zone ``tz`` (None: none within a week).

    Days are scanned in order from the day before ``t`` (a window may run past midnight);
    windows of a later day open after those of an earlier one, so the first day with a
    usable window holds the answer.
    """
    first = datetime.fromtimestamp(t, tz).date() - timedelta(days=1)
    for offset in range(SEARCH_DAYS + 1):
        day = first + timedelta(days=offset)
        starts = [max(s, t) for s, e in day_intervals(schedule, tz, day, holidays) if e > t]
        if starts:
            return min(starts)
    return None


def is_allowed(schedule: Schedule, tz: ZoneInfo, t: float,
               holidays: frozenset[date] = frozenset()) -> bool:
    return next_allowed(schedule, tz, t, holidays) == t
