"""The compliance gate: may this send go out now, later, or never?

Checks run in the order the product requires: consent -> category (and a sender for it)
-> quiet hours -> the flow's send window -> state rules -> frequency caps. The time-based
checks are solved together: the gate finds the earliest instant at which every window
holds in every candidate time zone and every cap has room, so a deferred send wakes up
once, at the right minute, instead of bouncing from one rule to the next. The reason
reported is the first rule (in the order above) that blocks sending *now*.

Priority under caps: sends for one phone that are due in the same minute (the policy's
``cap_contest_window``) take cap slots by priority, whatever order they arrive in. A send
that would take a cap's *last* slot is parked until the end of its window (verdict
``park``); the caller then decides every parked send of the phone together, highest
priority first (``contest=False``).

Pure: no Faust, no clock; ``now`` is an argument (epoch seconds, UTC).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from smsflow.core.caps import CapRule, free_at
from smsflow.core.consent import may_send
from smsflow.core.policy import CATEGORIES, Policy, state_code
from smsflow.core.quiet_hours import Schedule, next_allowed, parse_schedule, zone
from smsflow.core.records.phones import ConsentLedger, PhoneInfo
from smsflow.core.records.sends import DeferredRef, GateVerdict, SendCommand, SentRecord

MAX_STEPS = 500  # fixed-point iterations; each one moves to a later window start or cap slot


def resolve_zones(profile_timezone: str | None, number_zones: Iterable[str] | None,
                  fallback: str | None) -> tuple[list[str], str]:
    """Zones whose local time must allow the send, and where they came from.

    Profile zone if valid; else every valid candidate zone of the number (the window
    must hold in all of them); else the policy fallback; else none (the caller cannot
    place the recipient in time).
    """
    if profile_timezone and zone(profile_timezone):
        return [profile_timezone], "profile"
    from_number = sorted({z for z in number_zones or () if zone(z)})
    if from_number:
        return from_number, "number"
    if fallback and zone(fallback):
        return [fallback], "fallback"
    return [], "none"


def rank(priority: int, idempotency_key: str) -> tuple[int, str]:
    """Higher priority first; among equals the smaller idempotency key, so exactly one wins."""
    return -int(priority), idempotency_key


def _ahead(other: DeferredRef, send: SendCommand, now: float) -> bool:
    """Whether a pending send is due now and outranks ``send``."""
    return (other.not_before <= now and other.idempotency_key != send.idempotency_key
            and rank(other.priority, other.idempotency_key) < rank(send.priority, send.idempotency_key))


def _send_times(history: Sequence[SentRecord], pending: Sequence[DeferredRef], send: SendCommand,
                now: float) -> dict[str, list[float]]:
    """Counted send times per category; outranking due sends count as if sent at ``now``.

    That is how "higher priority wins" a full cap: the lower-priority send sees the slot
    as taken and defers until it frees again.
    """
    times: dict[str, list[float]] = {}
    for h in history:
        times.setdefault(h.category, []).append(h.t)
    for p in pending:
        if _ahead(p, send, now):
            times.setdefault(p.category, []).append(now)
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


def _last_slot(caps: list[tuple[str, CapRule]], times: dict[str, list[float]], now: float) -> str | None:
    """The name of a cap this send would fill up (its last free slot), if any."""
    for name, rule in caps:
        counted = sum(1 for x in times.get(rule.category, ()) if now - rule.window < x <= now)
        if counted == rule.max - 1:
            return rule.name or name
    return None


def decide(send: SendCommand, ledger: ConsentLedger | None, phone: PhoneInfo,
           profile_timezone: str | None, history: Sequence[SentRecord], policy: Policy,
           now: float, pending: Sequence[DeferredRef] = (), *, contest: bool = True) -> GateVerdict:
    """Decide one send command for one phone at time ``now``.

    ``history``: this phone's recent sends. ``pending``: sends of this phone waiting on a
    timer; due ones with higher priority take cap slots first. ``contest``: park a send
    that would take a cap's last slot until the end of the minute (see module docstring).
    """
    ok, why = may_send(ledger, send.category)
    if not ok:
        return GateVerdict(action="suppress", reason=why)
    category = send.category
    if category not in CATEGORIES:
        return GateVerdict(action="drop", reason="unknown_category", details={"category": category})
    sender = policy.sender_for(category, phone.country or send.country, phone.e164 or send.phone)
    if sender is None:
        return GateVerdict(action="drop", reason="no_sender", details={"category": category})
    key = send.idempotency_key
    if any(h.idempotency_key == key for h in history):
        return GateVerdict(action="suppress", reason="duplicate", sender=sender.number)

    marketing = category == "marketing"
    state = state_code(phone.state)
    rule = policy.state_rule(state) if marketing else None
    windows: list[tuple[str, Schedule]] = []
    if marketing and "marketing" in policy.quiet_hours:
        windows.append(("quiet_hours", policy.quiet_hours["marketing"]))
    if send.send_window is not None:
        spec = send.send_window
        windows.append(("send_window", parse_schedule(
            {"start": spec.start, "end": spec.end, **({"days": spec.days} if spec.days else {})})))
    if rule and rule.hours:
        windows.append(("state_hours", rule.hours))
    caps = [("state_cap", c) for c in (rule.caps if rule else ())]
    caps += [("frequency_cap", c) for c in policy.caps_for(category)]

    names, tz_source = resolve_zones(profile_timezone, phone.time_zones, policy.fallback_timezone)
    details: dict[str, Any] = {"zones": names, "tz_source": tz_source, "state": state}
    if windows and not names:
        return GateVerdict(action="suppress", reason="unknown_timezone", sender=sender.number,
                           details=details)

    times = _send_times(history, pending, send, now)
    outcome, t, reason, rule_name = _earliest(now, windows, [z for z in map(zone, names) if z],
                                              caps, times, policy)
    if rule_name:
        details["rule"] = rule_name
    if outcome == "drop":
        return GateVerdict(action="drop", reason=reason, sender=sender.number, details=details)
    if outcome == "never" or t is None or t > now + policy.max_defer:
        details["blocked_by"] = reason
        return GateVerdict(action="suppress", reason="no_allowed_window", sender=sender.number,
                           details=details)
    if t > now:
        return GateVerdict(action="defer", reason=reason, not_before=t, sender=sender.number,
                           details=details)
    window = policy.cap_contest_window
    contested = _last_slot(caps, times, now) if contest and window > 0 else None
    if contested is not None:
        details["rule"] = contested
        return GateVerdict(action="park", reason="contested_cap", sender=sender.number,
                           not_before=window_end(now, window), details=details)
    return GateVerdict(action="send", sender=sender.number, details=details)


def window_end(now: float, window: float) -> float:
    """The end of ``now``'s contest window: when parked sends of that window are decided."""
    return (now // window + 1) * window
