"""The global policy file: quiet hours, state rules, frequency caps, senders, brand.

The file is YAML checked against ``schemas/policy.schema.json``; every error names the
file and the line, because compliance staff edit it by hand. Sections left out take the
built-in defaults in :data:`DEFAULT_DOC` (``states`` merges with them by state code, so a
policy that names only its senders still gets the TCPA and FL/OK/MD rules).
"""

from __future__ import annotations

import json
import zlib
from typing import Any
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path

import jsonschema

from smsflow.core.caps import CapRule
from smsflow.core.flows.durations import parse_duration
from smsflow.core.flows.source import Source, Where
from smsflow.core.flows.source import parse as parse_yaml
from smsflow.core.quiet_hours import ALL_DAYS, Schedule, Window, parse_schedule, zone
from smsflow.paths import schema_path

SCHEMA_PATH = schema_path("policy.schema.json")
CATEGORIES = ("marketing", "transactional")
_WEEK = ["mon", "tue", "wed", "thu", "fri", "sat"]


def _hours(start: str, end: str, days: list[str] | None = None) -> list[dict[str, Any]]:
    return [{"start": start, "end": end, **({"days": days} if days else {})}]


_CAP3 = [{"window": "24h", "max": 3, "on_cap": "defer"}]

# Sources: shared/reference/compliance.md §1-2 (stricter value where sources disagree;
# vendor-sourced rows are marked "verify" there and should be confirmed by counsel).
DEFAULT_DOC: dict[str, Any] = {
    "version": 1,
    "brand": {"name": "smsflow demo", "help_contact": "support@example.com"},
    "fallback_timezone": "America/New_York",
    "max_defer": "7d",
    "cap_contest_window": "60s",
    "holidays": [],
    "quiet_hours": {"marketing": _hours("08:00", "21:00")},
    "states": {
        "FL": {"hours": _hours("08:00", "20:00"), "caps": _CAP3, "note": "FTSA, statute"},
        "OK": {"hours": _hours("08:00", "20:00"), "caps": _CAP3, "note": "OTSA, statute"},
        "MD": {"hours": _hours("08:00", "20:00"), "caps": _CAP3, "note": "Stop the Spam Calls Act"},
        "CT": {"hours": _hours("09:00", "20:00"), "note": "vendor, verify"},
        "TX": {"hours": _hours("09:00", "21:00", _WEEK) + _hours("12:00", "21:00", ["sun"]),
               "note": "vendor, verify"},
        "AL": {"hours": _hours("08:00", "20:00", _WEEK), "no_holidays": True, "note": "vendor, verify"},
        "LA": {"hours": _hours("08:00", "20:00", _WEEK), "no_holidays": True, "note": "vendor, verify"},
        "MS": {"hours": _hours("08:00", "20:00", _WEEK), "note": "vendor, verify"},
        "MA": {"hours": _hours("08:00", "20:00"), "note": "vendor, verify"},
        "NJ": {"hours": _hours("08:00", "20:00"), "note": "vendor, verify"},
        "WA": {"hours": _hours("08:00", "20:00"), "note": "vendor, verify"},
        "MI": {"hours": _hours("09:00", "21:00"), "note": "vendor, verify"},
        "MN": {"hours": _hours("09:00", "21:00"), "note": "vendor, verify"},
        "NM": {"hours": _hours("09:00", "21:00"), "note": "vendor, verify"},
        "NV": {"hours": _hours("09:00", "20:00"), "note": "vendor, verify"},
        "KY": {"hours": _hours("10:00", "21:00"), "note": "vendor, verify"},
        "PA": {"hours": _hours("08:00", "21:00", _WEEK[:5]) + _hours("08:00", "12:00", ["sat"]),
               "no_holidays": True, "note": "vendor, verify"},
        "RI": {"hours": _hours("09:00", "18:00", _WEEK[:5]) + _hours("10:00", "17:00", ["sat"]),
               "no_holidays": True, "note": "vendor, verify"},
    },
    "caps": [],
    "senders": [{"number": "+15005550006", "type": "long_code", "mps": 1,
                 "categories": list(CATEGORIES), "countries": ["US", "CA"]}],
}

US_STATES = {
    "alabama": "AL", "alaska": "AK", "arizona": "AZ", "arkansas": "AR", "california": "CA",
    "colorado": "CO", "connecticut": "CT", "delaware": "DE", "district of columbia": "DC",
    "florida": "FL", "georgia": "GA", "hawaii": "HI", "idaho": "ID", "illinois": "IL",
    "indiana": "IN", "iowa": "IA", "kansas": "KS", "kentucky": "KY", "louisiana": "LA",
    "maine": "ME", "maryland": "MD", "massachusetts": "MA", "michigan": "MI", "minnesota": "MN",
    "mississippi": "MS", "missouri": "MO", "montana": "MT", "nebraska": "NE", "nevada": "NV",
    "new hampshire": "NH", "new jersey": "NJ", "new mexico": "NM", "new york": "NY",
    "north carolina": "NC", "north dakota": "ND", "ohio": "OH", "oklahoma": "OK", "oregon": "OR",
    "pennsylvania": "PA", "rhode island": "RI", "south carolina": "SC", "south dakota": "SD",
    "tennessee": "TN", "texas": "TX", "utah": "UT", "vermont": "VT", "virginia": "VA",
    "washington": "WA", "west virginia": "WV", "wisconsin": "WI", "wyoming": "WY",
}


def state_code(value: str | None) -> str | None:
    """``"FL"``, ``"Florida"`` or geocoder-style ``"Miami, FL"`` -> ``"FL"``; else None."""
    if not value:
        return None
    text = str(value).strip()
    tail = text.rsplit(",", 1)[-1].strip()
    if len(tail) == 2 and tail.isalpha():
        return tail.upper()
    return US_STATES.get(text.lower())


class PolicyError(ValueError):
    """A policy file problem, located as ``file:line:column`` when it comes from a file."""

    def __init__(self, source: str, line: int | None, message: str, column: int | None = None) -> None:
        self.source, self.line, self.column, self.message = source, line, column, message
        where = ":".join(str(x) for x in (source, line, column) if x)
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Brand:
    name: str
    help_contact: str = ""


@dataclass(frozen=True)
class Sender:
    """A number (or short code / Messaging Service) and what it may carry."""

    number: str
    type: str
    mps: float
    categories: frozenset[str]
    countries: frozenset[str] = frozenset()

    def serves(self, category: str, country: str | None) -> bool:
        return category in self.categories and (not self.countries or country in self.countries)


@dataclass(frozen=True)
class StateRule:
    """A state's allowed hours and caps; both apply to marketing texts only."""

    code: str
    hours: Schedule | None = None
    caps: tuple[CapRule, ...] = ()


@dataclass(frozen=True)
class Policy:
    brand: Brand
    quiet_hours: Mapping[str, Schedule]
    states: Mapping[str, StateRule]
    caps: tuple[CapRule, ...]
    senders: tuple[Sender, ...]
    fallback_timezone: str | None
    holidays: frozenset[date] = frozenset()
    max_defer: float = 7 * 86400.0
    cap_contest_window: float = 60.0
    source: str = field(default="<default>", compare=False)

    def state_rule(self, state: str | None) -> StateRule | None:
        return self.states.get(state_code(state) or "")

    def caps_for(self, category: str) -> tuple[CapRule, ...]:
        return tuple(c for c in self.caps if c.category == category)

    def sender_for(self, category: str, country: str | None, phone: str) -> Sender | None:
        """A sticky sender: the same phone always gets the same number among those that fit.

        Sticky assignment keeps a conversation (and its STOP scope) on one number and
        spreads phones evenly when several senders serve one category.
        """
        fits = [s for s in self.senders if s.serves(category, country)]
        return fits[zlib.crc32(phone.encode()) % len(fits)] if fits else None


# ---------------------------------------------------------------- loading


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy YAML file; :class:`PolicyError` names file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(path), None, f"cannot read: {exc.strerror or exc}") from exc
    return parse_policy_text(text, str(path))


def parse_policy_text(text: str, path: str = "<policy>") -> Policy:
    """Parse YAML with the flow files' reader (YAML 1.2 scalars, node positions)."""
    source = parse_yaml(text, path)
    if source.errors:
        first = min(source.errors)
        raise PolicyError(path, first.line, first.message, first.column)
    if source.data is None:
        source.data = {}
    if not isinstance(source.data, dict):
        raise PolicyError(path, 1, "the policy file must be a mapping of sections", 1)
    return build_policy(source.data, source)


def default_policy() -> Policy:
    return build_policy({})


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))


def build_policy(doc: Mapping[str, Any], source: Source | None = None) -> Policy:
    """Validate a parsed policy document (``source`` locates errors) and build the Policy."""

    def fail(path: Where, message: str, key: bool = False) -> PolicyError:
        line, column = source.position(path, key=key) if source else (None, None)
        where = "/".join(map(str, path[:-1] if key else path)) or "(top level)"
        return PolicyError(source.path if source else "<policy>", line, f"{where}: {message}", column)

    error = jsonschema.exceptions.best_match(_validator().iter_errors(doc))
    if error is not None:
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties":  # point at the first unexpected key
            extra = sorted(set(error.instance) - set(error.schema.get("properties", {})), key=str)
            raise fail((*path, extra[0]), error.message, key=True)
        raise fail(path, error.message)

    merged = {**DEFAULT_DOC, **doc}
    merged["states"] = {**DEFAULT_DOC["states"], **doc.get("states", {})}
    merged["quiet_hours"] = {**DEFAULT_DOC["quiet_hours"], **doc.get("quiet_hours", {})}

    fallback = merged["fallback_timezone"]
    if fallback is not None and zone(fallback) is None:
        raise fail(("fallback_timezone",), f"unknown time zone {fallback!r}")
    holidays = set()
    for i, text in enumerate(merged["holidays"]):
        try:
            holidays.add(date.fromisoformat(text))
        except ValueError:
            raise fail(("holidays", i), f"{text!r} is not a date") from None

    def schedule(value: Any, path: Where, skip_holidays: bool = False) -> Schedule:
        try:
            return parse_schedule(value, skip_holidays)
        except ValueError as exc:
            raise fail(path, str(exc)) from None

    states = {}
    for code, rule in merged["states"].items():
        hours = rule.get("hours")
        skip = bool(rule.get("no_holidays"))
        caps = tuple(CapRule(f"state:{code}:{c['max']}/{c['window']}", "marketing",
                             parse_duration(c["window"]), c["max"], c.get("on_cap", "defer"))
                     for c in rule.get("caps", []))
        sched = (schedule(hours, ("states", code, "hours"), skip) if hours
                 else Schedule((Window(0, 24 * 60, ALL_DAYS),), True) if skip else None)
        states[code] = StateRule(code, sched, caps)

    caps = tuple(CapRule(c.get("name") or f"{c['category']}:{c['max']}/{c['window']}",
                         c["category"], parse_duration(c["window"]), c["max"],
                         c.get("on_cap", "defer")) for c in merged["caps"])
    senders = tuple(Sender(s["number"], s["type"], float(s["mps"]), frozenset(s["categories"]),
                           frozenset(s.get("countries", ()))) for s in merged["senders"])
    brand = merged["brand"]
    return Policy(
        brand=Brand(brand["name"], brand.get("help_contact", "")),
        quiet_hours={cat: schedule(v, ("quiet_hours", cat)) for cat, v in merged["quiet_hours"].items()},
        states=states, caps=caps, senders=senders, fallback_timezone=fallback,
        holidays=frozenset(holidays), max_defer=parse_duration(merged["max_defer"]),
        cap_contest_window=(parse_duration(merged["cap_contest_window"])
                            if merged["cap_contest_window"] else 0.0),
        source=source.path if source else "<default>",
    )
