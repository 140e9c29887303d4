"""The send-time gate: order of checks, exact deferral across DST and midnight, caps."""

import random
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from smsflow.core.gate import decide, resolve_zones
from smsflow.core.policy import build_policy, default_policy
from smsflow.core.quiet_hours import is_allowed, parse_schedule, zone

NY, LA, UTC = ZoneInfo("America/New_York"), ZoneInfo("America/Los_Angeles"), ZoneInfo("UTC")
POLICY = default_policy()
HOUR, DAY = 3600.0, 86400.0


def at(tz, *args) -> float:
    return datetime(*args, tzinfo=tz).timestamp()


def send(category="marketing", key="e1:s1", priority=0, send_window=None):
    return {"idempotency_key": key, "category": category, "priority": priority,
            "send_window": send_window, "phone": "+12125550100", "country": "US"}


def phone(zones=("America/New_York",), state=None, e164="+12125550100"):
    return {"e164": e164, "country": "US", "state": state, "timezones": list(zones)}


def gate(now, s=None, ok=True, ph=None, tz=None, history=(), policy=POLICY, pending=()):
    return decide(s or send(), ok, ph or phone(), tz, list(history), policy, now, pending)


# ---------------------------------------------------------------- order of checks

def test_consent_first_even_for_transactional():
    assert gate(at(NY, 2026, 6, 3, 12), ok=False).action == "suppress"
    v = gate(at(NY, 2026, 6, 3, 3), send("transactional"), ok=False)
    assert (v.action, v.reason) == ("suppress", "no_consent")


def test_unknown_category_and_missing_sender_are_dropped():
    assert gate(at(NY, 2026, 6, 3, 12), send("promo")).reason == "unknown_category"
    p = build_policy({"senders": [{"number": "+14155550123", "type": "long_code", "mps": 1,
                                   "categories": ["transactional"]}]})
    v = gate(at(NY, 2026, 6, 3, 12), policy=p)
    assert (v.action, v.reason) == ("drop", "no_sender")


def test_already_sent_key_is_a_duplicate():
    now = at(NY, 2026, 6, 3, 12)
    v = gate(now, history=[{"t": now - 60, "category": "marketing", "idempotency_key": "e1:s1"}])
    assert (v.action, v.reason) == ("suppress", "duplicate")


def test_marketing_inside_window_is_sent_with_a_sender():
    v = gate(at(NY, 2026, 6, 3, 12))
    assert (v.action, v.sender, v.not_before) == ("send", "+15005550006", None)
    assert v.details["zones"] == ["America/New_York"] and v.details["tz_source"] == "number"


# ---------------------------------------------------------------- quiet hours

@pytest.mark.parametrize("now, expected", [
    (at(NY, 2026, 6, 3, 7, 0), at(NY, 2026, 6, 3, 8, 0)),  # early morning
    (at(NY, 2026, 6, 3, 21, 0), at(NY, 2026, 6, 4, 8, 0)),  # the end is exclusive
    (at(NY, 2026, 6, 3, 23, 59, 30), at(NY, 2026, 6, 4, 8, 0)),  # across midnight
    (at(NY, 2026, 12, 31, 22, 0), at(NY, 2027, 1, 1, 8, 0)),  # across the year
])
def test_outside_quiet_hours_defers_to_the_next_allowed_minute(now, expected):
    v = gate(now)
    assert (v.action, v.reason, v.not_before) == ("defer", "quiet_hours", expected)


def test_deferral_is_exact_across_dst_changes():
    # Spring forward (2026-03-08 02:00 EST -> 03:00 EDT): 08:00 EDT is 12:00 UTC, not 13:00.
    v = gate(at(UTC, 2026, 3, 8, 6, 30))  # 01:30 EST
    assert v.not_before == at(UTC, 2026, 3, 8, 12, 0)
    v = gate(at(NY, 2026, 3, 7, 21, 30))  # the evening before, still EST
    assert v.not_before == at(UTC, 2026, 3, 8, 12, 0)
    # Fall back (2026-11-01 02:00 EDT -> 01:00 EST): 08:00 EST is 13:00 UTC.
    v = gate(at(UTC, 2026, 11, 1, 5, 30))  # 01:30 EDT, the first of two 01:30s
    assert v.not_before == at(UTC, 2026, 11, 1, 13, 0)
    v = gate(at(UTC, 2026, 11, 1, 6, 30))  # 01:30 EST, the second
    assert v.not_before == at(UTC, 2026, 11, 1, 13, 0)


def test_every_candidate_zone_of_the_number_must_allow_the_send():
    boise = phone(("America/Boise", "America/Los_Angeles"), e164="+12085550100")
    assert gate(at(UTC, 2026, 6, 15, 15, 0), ph=boise).action == "send"  # 09:00 MDT, 08:00 PDT
    v = gate(at(UTC, 2026, 6, 15, 14, 30), ph=boise)  # 08:30 MDT but 07:30 PDT
    assert v.not_before == at(UTC, 2026, 6, 15, 15, 0)
    v = gate(at(UTC, 2026, 6, 16, 3, 30), ph=boise)  # 21:30 MDT, 20:30 PDT
    assert v.not_before == at(UTC, 2026, 6, 16, 15, 0)
    assert v.details["zones"] == ["America/Boise", "America/Los_Angeles"]


def test_profile_zone_wins_then_number_then_fallback():
    now = at(LA, 2026, 6, 3, 7, 0)  # 10:00 in New York
    assert gate(now, tz="America/Los_Angeles").action == "defer"
    assert gate(now, tz="Not/AZone").action == "send"  # invalid profile zone is ignored
    assert resolve_zones(None, ["Etc/Unknown"], "America/Chicago") == (["America/Chicago"], "fallback")
    assert resolve_zones(None, [], None) == ([], "none")
    no_fallback = build_policy({"fallback_timezone": None})
    v = gate(now, ph=phone(()), policy=no_fallback)
    assert (v.action, v.reason) == ("suppress", "unknown_timezone")
    assert gate(now, send("transactional"), ph=phone(()), policy=no_fallback).action == "send"


def test_transactional_skips_quiet_hours_but_not_its_flow_window():
    night = at(NY, 2026, 6, 3, 3, 0)
    assert gate(night, send("transactional")).action == "send"
    window = {"start": "07:00", "end": "22:00"}
    v = gate(night, send("transactional", send_window=window))
    assert (v.reason, v.not_before) == ("send_window", at(NY, 2026, 6, 3, 7, 0))


def test_toll_free_number_with_many_zones_is_solved_exactly():
    from phonenumbers import parse, timezone
    zones = timezone.time_zones_for_number(parse("+18005550100"))
    rng = random.Random(7)
    for _ in range(30):
        now = at(UTC, 2026, 1, 1) + rng.uniform(0, 365 * DAY)
        v = gate(now, ph=phone(zones, e164="+18005550100"))
        assert v.action in ("send", "defer")
        t = v.not_before or now
        tzs = [zone(z) for z in zones]
        assert all(is_allowed(POLICY.quiet_hours["marketing"], z, t) for z in tzs)
        if v.action == "defer":  # one second earlier some zone is still outside the window
            assert not all(is_allowed(POLICY.quiet_hours["marketing"], z, t - 1) for z in tzs)


# ---------------------------------------------------------------- flow send window

def test_send_window_days_and_windows_past_midnight():
    weekdays = {"start": "10:00", "end": "12:00", "days": ["mon", "tue", "wed", "thu", "fri"]}
    v = gate(at(NY, 2026, 6, 6, 11, 0), send(send_window=weekdays))  # a Saturday
    assert (v.reason, v.not_before) == ("send_window", at(NY, 2026, 6, 8, 10, 0))
    late = {"start": "20:00", "end": "02:00", "days": ["fri"]}
    s = send("transactional", send_window=late)
    assert gate(at(NY, 2026, 6, 6, 1, 0), s).action == "send"  # Saturday 01:00 is Friday's window
    assert gate(at(NY, 2026, 6, 6, 2, 0), s).not_before == at(NY, 2026, 6, 12, 20, 0)


def test_quiet_hours_reason_comes_before_send_window():
    v = gate(at(NY, 2026, 6, 3, 6, 0), send(send_window={"start": "09:00", "end": "10:00"}))
    assert (v.reason, v.not_before) == ("quiet_hours", at(NY, 2026, 6, 3, 9, 0))


# ---------------------------------------------------------------- state rules

def test_florida_hours_end_at_eight_pm():
    fl = phone(state="FL", e164="+13055550100")
    v = gate(at(NY, 2026, 6, 3, 20, 30), ph=fl)
    assert (v.reason, v.not_before, v.details["state"]) == ("state_hours", at(NY, 2026, 6, 4, 8), "FL")
    assert gate(at(NY, 2026, 6, 3, 20, 30), ph=phone(state="Florida")).reason == "state_hours"
    assert gate(at(NY, 2026, 6, 3, 20, 30), send("transactional"), ph=fl).action == "send"


def test_texas_sunday_starts_at_noon_and_alabama_skips_holidays():
    tx = phone(("America/Chicago",), state="TX")
    v = gate(at(ZoneInfo("America/Chicago"), 2026, 6, 7, 10, 0), ph=tx)  # Sunday
    assert v.not_before == at(ZoneInfo("America/Chicago"), 2026, 6, 7, 12, 0)
    al = phone(("America/Chicago",), state="AL")
    p = build_policy({"holidays": ["2026-07-03"]})
    v = gate(at(ZoneInfo("America/Chicago"), 2026, 7, 3, 10, 0), ph=al, policy=p)  # holiday Friday
    assert v.not_before == at(ZoneInfo("America/Chicago"), 2026, 7, 4, 8, 0)  # Saturday


def test_state_cap_three_marketing_texts_per_rolling_day():
    fl = phone(state="FL")
    now = at(NY, 2026, 6, 3, 12)
    history = [{"t": now - h * HOUR, "category": "marketing", "idempotency_key": f"k{h}"}
               for h in (1, 5, 23)]
    v = gate(now, ph=fl, history=history)
    assert (v.action, v.reason, v.not_before) == ("defer", "state_cap", now + HOUR)
    assert v.details["rule"].startswith("state:FL")
    assert gate(now, ph=phone(state="NY"), history=history).action == "send"
    transactional = [{**h, "category": "transactional"} for h in history]
    assert gate(now, ph=fl, history=transactional).action == "send"


# ---------------------------------------------------------------- frequency caps

CAPPED = build_policy({"caps": [
    {"category": "marketing", "window": "24h", "max": 2, "on_cap": "defer"},
    {"category": "marketing", "window": "7d", "max": 4, "on_cap": "drop"},
]})


def hist(now, *hours_ago, category="marketing"):
    return [{"t": now - h * HOUR, "category": category, "idempotency_key": f"k{h}"} for h in hours_ago]


def test_cap_defers_until_the_oldest_counted_send_leaves_the_window():
    now = at(NY, 2026, 6, 3, 12)
    v = gate(now, history=hist(now, 2, 20), policy=CAPPED)
    assert (v.action, v.reason, v.not_before) == ("defer", "frequency_cap", now + 4 * HOUR)
    assert gate(now, history=hist(now, 2, 25), policy=CAPPED).action == "send"


def test_cap_with_drop_drops():
    now = at(NY, 2026, 6, 3, 12)
    v = gate(now, history=hist(now, 30, 50, 70, 90), policy=CAPPED)
    assert (v.action, v.reason, v.details["rule"]) == ("drop", "frequency_cap", "marketing:4/7d")


def test_transactional_skips_marketing_caps():
    now = at(NY, 2026, 6, 3, 12)
    assert gate(now, send("transactional"), history=hist(now, 1, 2, 3, 4), policy=CAPPED).action == "send"


def test_quiet_hours_and_cap_are_solved_together():
    now = at(NY, 2026, 6, 3, 22)  # quiet; the cap frees at 09:00 tomorrow, after 08:00
    history = [{"t": at(NY, 2026, 6, 3, 9), "category": "marketing", "idempotency_key": "a"},
               {"t": at(NY, 2026, 6, 3, 10), "category": "marketing", "idempotency_key": "b"}]
    v = gate(now, history=history, policy=CAPPED)
    assert (v.reason, v.not_before) == ("quiet_hours", at(NY, 2026, 6, 4, 9))


def test_higher_priority_due_send_takes_the_last_slot():
    now = at(NY, 2026, 6, 3, 12)
    history = hist(now, 5)  # one of two daily slots used
    rival = {"idempotency_key": "x:1", "category": "marketing", "priority": 10, "not_before": now - 1}
    v = gate(now, send(priority=1), history=history, policy=CAPPED, pending=[rival])
    # The slot frees at 07:00 tomorrow (oldest + 24 h), still quiet hours: 08:00.
    assert (v.action, v.reason, v.not_before) == ("defer", "frequency_cap", at(NY, 2026, 6, 4, 8))
    assert gate(now, send(priority=20), history=history, policy=CAPPED, pending=[rival]).action == "send"
    later = {**rival, "not_before": now + HOUR}  # not due yet: no claim on the slot
    assert gate(now, send(priority=1), history=history, policy=CAPPED, pending=[later]).action == "send"
    tie = {**rival, "priority": 1}  # equal priority: the smaller key goes first
    assert gate(now, send(priority=1, key="a:1"), history=history, policy=CAPPED, pending=[tie]).action == "send"
    assert gate(now, send(priority=1, key="z:1"), history=history, policy=CAPPED, pending=[tie]).action == "defer"


def test_no_allowed_window_within_max_defer_is_suppressed():
    pa = phone(state="PA")  # Pennsylvania: no Sunday sends
    v = gate(at(NY, 2026, 6, 3, 12), send(send_window={"start": "10:00", "end": "11:00", "days": ["sun"]}), ph=pa)
    assert (v.action, v.reason) == ("suppress", "no_allowed_window")


def test_schedule_parsing_rejects_bad_times():
    with pytest.raises(ValueError):
        parse_schedule({"start": "8am", "end": "21:00"})
    with pytest.raises(ValueError):
        parse_schedule({"start": "08:00", "end": "21:00", "days": ["funday"]})
