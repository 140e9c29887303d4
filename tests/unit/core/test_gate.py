"""The send-time gate: order of checks, exact deferral across DST and midnight, caps,
the number's own zones, and priority for a contested last cap slot."""

import random
from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec
import pytest
from phonenumbers import parse as parse_number
from phonenumbers import timezone as number_zones

from smsflow.core.gate import decide, rank, resolve_zones, window_end

CONTEST_SECONDS = 60.0  # the policy default (cap_contest_window)


def minute_end(now: float) -> float:
    return window_end(now, CONTEST_SECONDS)
from smsflow.core.phones import normalize
from smsflow.core.policy import build_policy, default_policy
from smsflow.core.quiet_hours import is_allowed, parse_schedule, zone
from smsflow.core.records.base import decode, encode
from smsflow.core.records.phones import PhoneInfo
from smsflow.core.records.sends import GateVerdict, SendCommand

from .builders import DAY, HOUR, ledger, pending, send, sent

NY, LA, UTC = ZoneInfo("America/New_York"), ZoneInfo("America/Los_Angeles"), ZoneInfo("UTC")
CHI, TOKYO = ZoneInfo("America/Chicago"), ZoneInfo("Asia/Tokyo")
POLICY = default_policy()
SUBSCRIBED = ledger("subscribed")
NEW_YORK = normalize("+12125550100")  # NY, America/New_York, no state rule


def at(tz, *args) -> float:
    return datetime(*args, tzinfo=tz).timestamp()


def gate(now, s=None, led=SUBSCRIBED, ph=None, tz=None, history=(), policy=POLICY, pending=(),
         contest=True) -> GateVerdict:
    return decide(s or send(), led, ph or NEW_YORK, tz, list(history), policy, now,
                  list(pending), contest=contest)


def no_zones(info: PhoneInfo) -> PhoneInfo:
    """The same number with no known zone (the numbering plan cannot place it)."""
    return msgspec.structs.replace(info, time_zones=[])


# ---------------------------------------------------------------- order of checks

def test_consent_first_even_for_transactional():
    v = gate(at(NY, 2026, 6, 3, 12), led=ledger("never"))
    assert (v.action, v.reason) == ("suppress", "no_consent")
    # at 03:00 (quiet hours would only defer it) an opted-out phone gets no transactional text
    v = gate(at(NY, 2026, 6, 3, 3), send("transactional"), led=ledger("unsubscribed"))
    assert (v.action, v.reason) == ("suppress", "opted_out")
    assert gate(at(NY, 2026, 6, 3, 12), led=None).reason == "no_consent"
    v = gate(at(NY, 2026, 6, 3, 12), led=ledger("pending"))
    assert (v.action, v.reason) == ("suppress", "consent_pending")


def test_unknown_category_cannot_cross_the_seam_and_the_gate_refuses_it_anyway():
    raw = encode(send()).replace(b'"marketing"', b'"promo"')
    with pytest.raises(msgspec.ValidationError):
        decode(raw, SendCommand)
    v = gate(at(NY, 2026, 6, 3, 12), send("promo"))
    assert (v.action, v.reason) == ("suppress", "unknown_category")


def test_missing_sender_is_dropped():
    p = build_policy({"senders": [{"number": "+14155550123", "type": "long_code", "mps": 1,
                                   "categories": ["transactional"]}]})
    v = gate(at(NY, 2026, 6, 3, 12), policy=p)
    assert (v.action, v.reason) == ("drop", "no_sender")


def test_already_sent_key_is_a_duplicate():
    now = at(NY, 2026, 6, 3, 12)
    v = gate(now, history=[sent(now - 60, "e1:s1")])
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
    boise = normalize("+12085550100")
    assert boise.time_zones == ["America/Boise", "America/Los_Angeles"]
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
    v = gate(now, ph=no_zones(NEW_YORK), policy=no_fallback)
    assert (v.action, v.reason) == ("suppress", "unknown_timezone")
    assert gate(now, send("transactional"), ph=no_zones(NEW_YORK), policy=no_fallback).action == "send"


def test_transactional_skips_quiet_hours_but_not_its_flow_window():
    night = at(NY, 2026, 6, 3, 3, 0)
    assert gate(night, send("transactional")).action == "send"
    window = {"start": "07:00", "end": "22:00"}
    v = gate(night, send("transactional", send_window=window))
    assert (v.reason, v.not_before) == ("send_window", at(NY, 2026, 6, 3, 7, 0))


def test_number_with_many_zones_is_solved_exactly():
    # A toll-free number is not textable (normalize refuses it) but spans every US zone:
    # the worst case for the solver. Its PhoneInfo is built with the record's constructor.
    zones = list(number_zones.time_zones_for_number(parse_number("+18005550100")))
    assert len(zones) > 5
    info = PhoneInfo(e164="+18005550100", country="US", time_zones=zones, state=None,
                     line_type="voip")
    rng = random.Random(7)
    for _ in range(30):
        now = at(UTC, 2026, 1, 1) + rng.uniform(0, 365 * DAY)
        v = gate(now, ph=info)
        assert v.action in ("send", "defer")
        t = v.not_before or now
        tzs = [zone(z) for z in zones]
        assert all(is_allowed(POLICY.quiet_hours["marketing"], z, t) for z in tzs)
        if v.action == "defer":  # one second earlier some zone is still outside the window
            assert not all(is_allowed(POLICY.quiet_hours["marketing"], z, t - 1) for z in tzs)


# ------------------------------------------- issue 9: the number's own zones (no profile zone)

def test_a_number_without_profile_zone_is_held_to_its_own_zone_not_the_fallback():
    """Issue 9: a +1415 number with no timezone trait got a marketing text at 05:00 PST
    because the gate fell back to America/New_York (08:00 there)."""
    sf = normalize("+14155550100")
    assert sf.time_zones == ["America/Los_Angeles"]
    now = at(LA, 2026, 12, 1, 5, 0)  # 08:00 in New York, the policy fallback
    v = gate(now, send(phone=sf.e164), ph=sf, tz=None)
    assert (v.action, v.reason, v.not_before) == ("defer", "quiet_hours", at(LA, 2026, 12, 1, 8, 0))
    assert (v.details["zones"], v.details["tz_source"]) == (["America/Los_Angeles"], "number")


def test_a_tokyo_number_is_held_to_tokyo_hours():
    """Issue 9: a Tokyo number was released at 22:00 JST (08:00 in New York)."""
    tokyo = normalize("+819012345678")
    assert tokyo.time_zones == ["Asia/Tokyo"]
    jp = build_policy({"senders": [{"number": "+15005550006", "type": "long_code", "mps": 1,
                                    "categories": ["marketing", "transactional"],
                                    "countries": ["US", "JP"]}]})
    now = at(TOKYO, 2026, 1, 15, 22, 0)
    assert datetime.fromtimestamp(now, NY).hour == 8
    v = gate(now, send(phone=tokyo.e164), ph=tokyo, policy=jp)
    assert (v.action, v.reason, v.not_before) == ("defer", "quiet_hours", at(TOKYO, 2026, 1, 16, 8, 0))
    assert v.details["tz_source"] == "number"


def test_a_number_with_two_zones_holds_to_the_strictest_window():
    panhandle = normalize("+18505550100")  # Florida: Eastern and Central time
    assert set(panhandle.time_zones) == {"America/New_York", "America/Chicago"}
    v = gate(at(NY, 2026, 6, 3, 8, 30), ph=panhandle)  # 07:30 in Chicago
    assert (v.action, v.not_before) == ("defer", at(CHI, 2026, 6, 3, 8, 0))
    v = gate(at(CHI, 2026, 6, 3, 19, 30), ph=panhandle)  # 20:30 in New York: FL ends at 20:00
    assert (v.action, v.reason) == ("defer", "state_hours")
    assert v.not_before == at(CHI, 2026, 6, 4, 8, 0)
    assert gate(at(CHI, 2026, 6, 3, 12, 0), ph=panhandle).action == "send"


def test_the_profile_zone_wins_over_the_number_zones_when_set():
    sf = normalize("+14155550100")
    now = at(LA, 2026, 12, 1, 5, 30)  # 08:30 in New York
    v = gate(now, send(phone=sf.e164), ph=sf, tz="America/New_York")
    assert (v.action, v.details["zones"], v.details["tz_source"]) == (
        "send", ["America/New_York"], "profile")
    v = gate(at(NY, 2026, 12, 1, 11, 0), send(phone=sf.e164), ph=normalize("+12125550100"),
             tz="America/Los_Angeles")  # a New York number, the customer lives in LA: 08:00 there
    assert v.action == "send"
    v = gate(at(NY, 2026, 12, 1, 10, 0), ph=NEW_YORK, tz="America/Los_Angeles")
    assert (v.action, v.not_before) == ("defer", at(LA, 2026, 12, 1, 8, 0))


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
    fl = normalize("+13055550100")
    assert fl.state == "FL"
    v = gate(at(NY, 2026, 6, 3, 20, 30), ph=fl)
    assert (v.reason, v.not_before, v.details["state"]) == ("state_hours", at(NY, 2026, 6, 4, 8), "FL")
    # a state stored by name (older records) is read the same way
    named = msgspec.structs.replace(NEW_YORK, state="Florida")
    assert gate(at(NY, 2026, 6, 3, 20, 30), ph=named).reason == "state_hours"
    assert gate(at(NY, 2026, 6, 3, 20, 30), send("transactional"), ph=fl).action == "send"


def test_texas_sunday_starts_at_noon_and_alabama_skips_holidays():
    tx = normalize("+12145550100")
    assert (tx.state, tx.time_zones) == ("TX", ["America/Chicago"])
    v = gate(at(CHI, 2026, 6, 7, 10, 0), ph=tx)  # Sunday
    assert v.not_before == at(CHI, 2026, 6, 7, 12, 0)
    al = normalize("+12055550100")
    assert (al.state, al.time_zones) == ("AL", ["America/Chicago"])
    p = build_policy({"holidays": ["2026-07-03"]})
    v = gate(at(CHI, 2026, 7, 3, 10, 0), ph=al, policy=p)  # holiday Friday
    assert v.not_before == at(CHI, 2026, 7, 4, 8, 0)  # Saturday


def test_state_cap_three_marketing_texts_per_rolling_day():
    fl = normalize("+13055550100")
    now = at(NY, 2026, 6, 3, 12)
    history = [sent(now - h * HOUR, f"k{h}") for h in (1, 5, 23)]
    v = gate(now, ph=fl, history=history)
    assert (v.action, v.reason, v.not_before) == ("defer", "state_cap", now + HOUR)
    assert v.details["rule"].startswith("state:FL")
    assert gate(now, ph=NEW_YORK, history=history).action == "send"
    transactional = [sent(now - h * HOUR, f"k{h}", "transactional") for h in (1, 5, 23)]
    assert gate(now, ph=fl, history=transactional).action == "send"


# ---------------------------------------------------------------- frequency caps

CAPPED = build_policy({"caps": [
    {"category": "marketing", "window": "24h", "max": 2, "on_cap": "defer"},
    {"category": "marketing", "window": "7d", "max": 4, "on_cap": "drop"},
]})


def hist(now, *hours_ago, category="marketing"):
    return [sent(now - h * HOUR, f"k{h}", category) for h in hours_ago]


def test_cap_defers_until_the_oldest_counted_send_leaves_the_window():
    now = at(NY, 2026, 6, 3, 12)
    v = gate(now, history=hist(now, 2, 20), policy=CAPPED)
    assert (v.action, v.reason, v.not_before) == ("defer", "frequency_cap", now + 4 * HOUR)
    assert gate(now, history=hist(now, 2, 25), policy=CAPPED, contest=False).action == "send"


def test_cap_with_drop_drops():
    now = at(NY, 2026, 6, 3, 12)
    v = gate(now, history=hist(now, 30, 50, 70, 90), policy=CAPPED)
    assert (v.action, v.reason, v.details["rule"]) == ("drop", "frequency_cap", "marketing:4/7d")


def test_transactional_skips_marketing_caps():
    now = at(NY, 2026, 6, 3, 12)
    assert gate(now, send("transactional"), history=hist(now, 1, 2, 3, 4), policy=CAPPED).action == "send"


def test_quiet_hours_and_cap_are_solved_together():
    now = at(NY, 2026, 6, 3, 22)  # quiet; the cap frees at 09:00 tomorrow, after 08:00
    history = [sent(at(NY, 2026, 6, 3, 9), "a"), sent(at(NY, 2026, 6, 3, 10), "b")]
    v = gate(now, history=history, policy=CAPPED)
    assert (v.reason, v.not_before) == ("quiet_hours", at(NY, 2026, 6, 4, 9))


def test_higher_priority_due_send_takes_the_last_slot():
    now = at(NY, 2026, 6, 3, 12)
    history = hist(now, 5)  # one of two daily slots used
    rival = pending("x:1", 10, now - 1)
    v = gate(now, send(priority=1), history=history, policy=CAPPED, pending=[rival])
    # The slot frees at 07:00 tomorrow (oldest + 24 h), still quiet hours: 08:00.
    assert (v.action, v.reason, v.not_before) == ("defer", "frequency_cap", at(NY, 2026, 6, 4, 8))
    kw = {"history": history, "policy": CAPPED, "contest": False}
    assert gate(now, send(priority=20), pending=[rival], **kw).action == "send"
    later = pending("x:1", 10, now + HOUR)  # not due yet: no claim on the slot
    assert gate(now, send(priority=1), pending=[later], **kw).action == "send"
    tie = pending("x:1", 1, now - 1)  # equal priority: the smaller key goes first
    assert gate(now, send(priority=1, key="a:1"), pending=[tie], **kw).action == "send"
    assert gate(now, send(priority=1, key="z:1"), pending=[tie], **kw).action == "defer"


# ------------------------------- issue 9: two sends due together under a cap (contested slot)

CAP1 = build_policy({"caps": [{"category": "marketing", "window": "24h", "max": 1,
                               "on_cap": "defer"}]})


def _arrive_then_decide(arrivals: list[SendCommand], now: float):
    """The phones agent's protocol in pure terms: each arrival is gated with the phone's
    pending sends; a ``park`` verdict waits for the end of the minute, where the parked
    sends are decided in ``gate.rank`` order with ``contest=False``."""
    history, refs, parked, first = [], [], [], []
    for s in arrivals:
        v = gate(now, s, history=history, policy=CAP1, pending=refs)
        first.append(v)
        if v.action == "park":
            parked.append(s)
            refs.append(pending(s.idempotency_key, s.priority, v.not_before, parked=True))
    decided_at = minute_end(now)
    refs = [r for r in refs if not r.parked]
    final = {}
    for s in sorted(parked, key=lambda s: rank(s.priority, s.idempotency_key)):
        v = gate(decided_at, s, history=history, policy=CAP1, pending=refs, contest=False)
        final[s.idempotency_key] = v
        if v.action == "send":
            history.append(sent(decided_at, s.idempotency_key, priority=s.priority))
    return first, final


@pytest.mark.parametrize("order", ["low_first", "high_first"])
def test_two_sends_due_in_one_minute_under_a_cap_of_one_go_by_priority(order):
    """Issue 9: with one slot left, whichever send reached the gate first took it."""
    now = at(NY, 2026, 6, 3, 12, 0, 20)
    high, low = send(key="en_a:s1", priority=90), send(key="en_b:s1", priority=10)
    arrivals = [low, high] if order == "low_first" else [high, low]
    first, final = _arrive_then_decide(arrivals, now)
    assert first[0].action == "park"  # the first arrival does not take the last slot
    assert (first[0].reason, first[0].not_before) == ("contested_cap", minute_end(now))
    assert first[0].details["rule"] == "marketing:1/24h"
    assert [v.action for v in first] == ["park", "park"]
    assert final["en_a:s1"].action == "send"
    loser = final["en_b:s1"]
    assert (loser.action, loser.reason) == ("defer", "frequency_cap")
    assert loser.not_before == minute_end(now) + DAY


def test_contested_slot_ties_go_to_the_smaller_key_and_free_slots_are_not_contested():
    now = at(NY, 2026, 6, 3, 12, 0, 20)
    _, final = _arrive_then_decide([send(key="z:1", priority=5), send(key="a:1", priority=5)], now)
    assert (final["a:1"].action, final["z:1"].action) == ("send", "defer")
    assert minute_end(now) - now == CONTEST_SECONDS - 20
    # two free slots: the first send is not the last slot, so it goes at once
    assert gate(now, history=[], policy=CAPPED).action == "send"
    assert gate(now, history=hist(now, 1), policy=CAPPED).action == "park"
    assert rank(90, "b") < rank(10, "a") and rank(5, "a") < rank(5, "b")


def test_no_allowed_window_within_max_defer_is_suppressed():
    pa = normalize("+12155550100")  # Pennsylvania: no Sunday sends
    assert pa.state == "PA"
    v = gate(at(NY, 2026, 6, 3, 12),
             send(send_window={"start": "10:00", "end": "11:00", "days": ["sun"]}), ph=pa)
    assert (v.action, v.reason) == ("suppress", "no_allowed_window")


def test_schedule_parsing_rejects_bad_times():
    with pytest.raises(ValueError):
        parse_schedule({"start": "8am", "end": "21:00"})
    with pytest.raises(ValueError):
        parse_schedule({"start": "08:00", "end": "21:00", "days": ["funday"]})
