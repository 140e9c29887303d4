"""The compliance gate: may this send go out now, later, or never?

Checks run in the order the product requires: consent -> category (and a sender for it)
-> quiet hours -> the flow's send window -> state rules -> frequency caps. The time-based
checks are solved together: the gate finds the earliest instant at which every window
holds in every candidate time zone and every cap has room, so a deferred send wakes up
once, at the right minute, instead of bouncing from one rule to the next. The reason
reported is the first rule (in the order above) that blocks sending *now*.

Pure: no Faust, no clock; ``now`` is an argument (epoch seconds, UTC).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from smsflow.core.caps import CapRule, free_at
from smsflow.core.policy import CATEGORIES, Policy, state_code
from smsflow.core.quiet_hours import Schedule, next_allowed, parse_schedule, zone

MAX_STEPS = 500  # fixed-point iterations; each one moves to a later window start or cap slot


@dataclass(frozen=True)
class Verdict:
    """``action`` is send | defer | drop | suppress; ``not_before`` is set for defer only."""

    action: str
    reason: str | None = None
    not_before: float | None = None
    sender: str | None = None
    details: Mapping = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"action": self.action, "reason": self.reason, "not_before": self.not_before,
                "sender": self.sender, "details": dict(self.details)}


def resolve_zones(profile_timezone: str | None, number_zones: Iterable[str] | None,
                  fallback: str | None) -> tuple[list[str], str]:
    """Zones whose local time must allow the send, and where they came from.

    Profile zone if valid; else every valid candidate zone of the number; else the
    policy fallback; else none (the caller cannot place the recipient in time).
    """
    if profile_timezone and zone(profile_timezone):
        return [profile_timezone], "profile"
    from_number = sorted({z for z in number_zones or () if zone(z)})
    if from_number:
        return from_number, "number"
    if fallback and zone(fallback):
        return [fallback], "fallback"
    return [], "none"


def _rank(s: Mapping) -> tuple[int, str]:
    """Higher priority first; among equals the smaller idempotency key, so exactly one wins."""
    return -int(s.get("priority") or 0), str(s.get("idempotency_key") or "")


def _ahead(other: Mapping, send: Mapping, now: float) -> bool:
    """Whether a pending send is due now and outranks ``send``."""
    due = float(other.get("not_before") or 0) <= now
    return due and _rank(other) < _rank(send)


def _send_times(history: Sequence[Mapping], pending: Sequence[Mapping], send: Mapping,
                now: float) -> dict[str, list[float]]:
    """Counted send times per category; outranking due sends count as if sent at ``now``.

    That is how "higher priority wins" a full cap: the lower-priority send sees the slot
    as taken and defers until it frees again.
    """
    times: dict[str, list[float]] = {}
    for h in history:
        times.setdefault(h.get("category"), []).append(float(h["t"]))
    for p in pending:
        if _ahead(p, send, now):
            times.setdefault(p.get("category"), []).append(now)
    return times


def _earliest(now: float, windows: list[tuple[str, Schedule]], zones: list[ZoneInfo],
              caps: list[tuple[str, CapRule]], times: dict[str, list[float]],
              policy: Policy) -> tuple[str, float | None, str | None, str | None]:
    """(outcome, t, reason, rule): outcome is "ok" (send at t), "drop" or "never"."""
    t, reason, rule_name = now, None, None
    for _ in range(MAX_STEPS):
        moved = False
        for name, schedule in windows:
            for tz in zones:
                nt = next_allowed(schedule, tz, t, policy.holidays)
                if nt is None:
                    return "never", None, reason or name, None
                if nt > t:
                    t, moved = nt, True
                    reason = reason or name
        for name, rule in caps:
            nt = free_at(rule, times.get(rule.category, ()), t)
            if nt > t:
                if rule.on_cap == "drop":
                    return "drop", None, name, rule.name
                t, moved = nt, True
                if reason is None:
                    reason, rule_name = name, rule.name
        if not moved:
            return "ok", t, reason, rule_name
        if t > now + policy.max_defer:
            break
    return "never", None, reason, rule_name


def decide(send: Mapping, ledger_status_ok: bool, phone_info: Mapping,
           profile_timezone: str | None, history: Sequence[Mapping], policy: Policy,
           now: float, pending: Sequence[Mapping] = ()) -> Verdict:
    """Decide one send command (see docs/DESIGN.md) for one phone at time ``now``.

    ``history``: this phone's recent sends ``{t, category, priority, idempotency_key}``.
    ``pending``: optional deferred sends for this phone ``{category, priority,
    idempotency_key, not_before}``; due ones with higher priority take cap slots first.
    """
    if not ledger_status_ok:
        return Verdict("suppress", "no_consent")
    category = send.get("category")
    if category not in CATEGORIES:
        return Verdict("drop", "unknown_category", details={"category": category})
    phone = phone_info.get("e164") or send.get("phone") or ""
    sender = policy.sender_for(category, phone_info.get("country") or send.get("country"), phone)
    if sender is None:
        return Verdict("drop", "no_sender", details={"category": category})
    key = send.get("idempotency_key")
    if key and any(h.get("idempotency_key") == key for h in history):
        return Verdict("suppress", "duplicate", sender=sender.number)

    marketing = category == "marketing"
    state = state_code(phone_info.get("state"))
    rule = policy.state_rule(state) if marketing else None
    windows: list[tuple[str, Schedule]] = []
    if marketing and "marketing" in policy.quiet_hours:
        windows.append(("quiet_hours", policy.quiet_hours["marketing"]))
    if send.get("send_window"):
        windows.append(("send_window", parse_schedule(send["send_window"])))
    if rule and rule.hours:
        windows.append(("state_hours", rule.hours))
    caps = [("state_cap", c) for c in (rule.caps if rule else ())]
    caps += [("frequency_cap", c) for c in policy.caps_for(category)]

    names, tz_source = resolve_zones(profile_timezone, phone_info.get("timezones"),
                                     policy.fallback_timezone)
    details = {"zones": names, "tz_source": tz_source, "state": state}
    if windows and not names:
        return Verdict("suppress", "unknown_timezone", sender=sender.number, details=details)

    times = _send_times(history, pending, send, now)
    outcome, t, reason, rule_name = _earliest(now, windows, [zone(n) for n in names], caps,
                                              times, policy)
    if rule_name:
        details["rule"] = rule_name
    if outcome == "drop":
        return Verdict("drop", reason, sender=sender.number, details=details)
    if outcome == "never" or t > now + policy.max_defer:
        details["blocked_by"] = reason
        return Verdict("suppress", "no_allowed_window", sender=sender.number, details=details)
    if t > now:
        return Verdict("defer", reason, not_before=t, sender=sender.number, details=details)
    return Verdict("send", None, sender=sender.number, details=details)
