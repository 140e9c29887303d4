"""The consent ledger of one phone: typed changes applied with ``consent.apply``."""

import hashlib

import msgspec
import orjson
import pytest

from smsflow.core import consent
from smsflow.core.consent import (InvalidConsent, apply, inbound_change, link_change,
                                  linked_customers, may_send,
                                  provider_opt_out_change, reply_due, trait_change,
                                  unlink_change)
from smsflow.core.events import Rejection, decode as decode_event
from smsflow.core.records.base import decode, encode
from smsflow.core.records.events import SmsConsent
from smsflow.core.records.phones import (ConsentLedger, ConsentTraitChange, KeywordChange,
                                         LedgerEntry, LinkChange, PhoneUpdate)

from .builders import T0, at, inbound

CONSENT_TEXT = "Yes, text me offers. Msg & data rates may apply. Reply STOP to opt out."
DOI = ("popup",)


def subscribe(at_ts=T0, source="checkout", customer="c_1", text=CONSENT_TEXT):
    return trait_change(SmsConsent(status="subscribed", source=source, timestamp=at(at_ts),
                                   text=text), event_time=at_ts, customer_id=customer)


def unsubscribe(at_ts, source="preferences"):
    return trait_change(SmsConsent(status="unsubscribed", source=source, timestamp=at(at_ts)),
                        event_time=at_ts)


def status_change(status, at_ts, source="identify", customer="c_1"):
    return trait_change(SmsConsent(status=status, source=source), event_time=at_ts,
                        customer_id=customer)


def text_in(ledger, body, at_ts, **kw):
    change = inbound_change(inbound(body, at_ts, **kw), ledger)
    return change, *apply(ledger, change, now=at_ts)


def test_identify_subscription_on_a_new_phone():
    ledger, outcome = apply(None, subscribe(), now=T0 + 1)
    assert outcome == "opted_in"
    assert ledger.status == "subscribed"
    assert ledger.source == "checkout"
    assert ledger.timestamp == T0
    assert ledger.updated_at == T0 + 1
    assert ledger.text == CONSENT_TEXT
    assert ledger.text_hash == hashlib.sha256(CONSENT_TEXT.encode()).hexdigest()
    assert linked_customers(ledger) == ["c_1"]
    assert [e.kind for e in ledger.history] == ["link", "consent"]
    assert may_send(ledger, "marketing") == (True, "subscribed")


def test_iso_timestamps_are_read_as_utc_epoch_seconds():
    change = trait_change(SmsConsent(status="subscribed", timestamp="2025-11-28T10:00:00Z"),
                          event_time=0)
    assert change.timestamp == T0
    assert change.source == "identify"


def test_every_rfc3339_form_the_schema_allows_is_read():
    # event.schema.json's date-time is RFC 3339, which allows a lowercase "z" and "t"
    for text in ("2025-11-28T10:00:00Z", "2025-11-28T10:00:00+00:00", "2025-11-28t10:00:00Z",
                 "2025-11-28T10:00:00z", "2025-11-28T11:00:00.000+01:00"):
        change = trait_change(SmsConsent(status="subscribed", timestamp=text), event_time=0)
        assert change.timestamp == T0, text


def test_consent_without_its_own_timestamp_uses_the_event_time():
    change = trait_change(SmsConsent(status="unsubscribed"), event_time="2025-11-28T10:00:00")
    assert change.timestamp == T0
    assert trait_change(SmsConsent(status="unsubscribed"), event_time=T0).timestamp == T0


def identify_with(sms_consent) -> bytes:
    return orjson.dumps({"type": "identify", "messageId": "m1", "userId": "c1",
                         "traits": {"phone": "+14155550100", "sms_consent": sms_consent}})


@pytest.mark.parametrize("sms_consent, reason", [
    ({"status": "maybe", "timestamp": "2025-11-28T10:00:00Z"}, "schema_violation"),
    ({"timestamp": "2025-11-28T10:00:00Z"}, "schema_violation"),
    ("subscribed", "schema_violation"),
    ({"status": "subscribed", "timestamp": "yesterday"}, "bad_timestamp"),
])
def test_bad_trait_consent_is_rejected_with_a_reason(sms_consent, reason):
    # A bad consent trait never reaches the ledger: the identify is refused at decode time.
    result = decode_event(identify_with(sms_consent), received_at=T0)
    assert isinstance(result, Rejection) and result.reason == reason
    if reason == "schema_violation":
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(sms_consent, SmsConsent)  # no SmsConsent can hold it either
    else:  # a consent record built in code with an unreadable time is refused by trait_change
        with pytest.raises(InvalidConsent) as caught:
            trait_change(msgspec.convert(sms_consent, SmsConsent), event_time=T0)
        assert caught.value.reason == "bad_timestamp"


def test_repeated_identify_changes_nothing():
    ledger, _ = apply(None, subscribe(), now=T0)
    again, outcome = apply(ledger, subscribe(), now=T0 + 60)
    assert outcome is None
    assert again == ledger


def test_apply_does_not_modify_its_input():
    ledger, _ = apply(None, subscribe(), now=T0)
    snapshot = encode(ledger)
    apply(ledger, unsubscribe(T0 + 10), now=T0 + 10)
    apply(ledger, link_change("c_9", timestamp=T0 + 10), now=T0 + 10)
    assert encode(ledger) == snapshot


def test_older_event_does_not_overwrite_newer_consent_but_is_recorded():
    ledger, _ = apply(None, unsubscribe(T0 + 100), now=T0 + 100)
    ledger, outcome = apply(ledger, subscribe(at_ts=T0), now=T0 + 200)
    assert outcome is None
    assert ledger.status == "unsubscribed"
    assert ledger.history[-1].result == "ignored_stale"
    assert ledger.history[-1].status == "subscribed"


def test_the_same_stale_event_is_recorded_once():
    ledger, _ = apply(None, unsubscribe(T0 + 100), now=T0 + 100)
    for now in (T0 + 200, T0 + 300, T0 + 400):
        ledger, _ = apply(ledger, subscribe(at_ts=T0, customer=None), now=now)
    assert [e.result for e in ledger.history] == ["applied", "ignored_stale"]


@pytest.mark.parametrize("first, second", [("subscribe", "unsubscribe"),
                                           ("unsubscribe", "subscribe")])
def test_at_equal_times_opt_out_wins(first, second):
    changes = {"subscribe": subscribe(at_ts=T0), "unsubscribe": unsubscribe(T0)}
    ledger, _ = apply(None, changes[first], now=T0)
    ledger, _ = apply(ledger, changes[second], now=T0)
    assert ledger.status == "unsubscribed"


def test_newer_subscription_after_opt_out_resubscribes():
    ledger, _ = apply(None, unsubscribe(T0), now=T0)
    ledger, outcome = apply(ledger, subscribe(at_ts=T0 + 3600), now=T0 + 3600)
    assert (ledger.status, outcome) == ("subscribed", "opted_in")


def test_keyword_stop_is_effective_immediately_and_always_confirmed():
    ledger, _ = apply(None, subscribe(at_ts=T0), now=T0)
    change, ledger, outcome = text_in(ledger, "STOP", T0 + 10)
    assert (ledger.status, ledger.source, ledger.keyword) == ("unsubscribed", "keyword", "STOP")
    assert outcome == "opted_out" and reply_due(change, outcome)
    assert ledger.text == "STOP"
    assert ledger.history[-1].message_sid == "SM1"
    # a second STOP is a new keyword event: one more confirmation, same state
    change, ledger, outcome = text_in(ledger, "stop", T0 + 20, sid="SM2")
    assert outcome == "opted_out" and reply_due(change, outcome)
    assert may_send(ledger, "transactional") == (False, "opted_out")


def test_keyword_opt_out_wins_even_with_an_older_receive_time():
    # the producer's clock ran ahead: consent stamped later than the STOP's receive time
    ledger, _ = apply(None, subscribe(at_ts=T0 + 500), now=T0)
    _, ledger, outcome = text_in(ledger, "please stop texting me", T0 + 100)
    assert (ledger.status, outcome) == ("unsubscribed", "opted_out")
    assert ledger.timestamp == T0 + 500  # never moves back...
    assert ledger.history[-1].at == T0 + 100  # ...the history keeps the real time
    ledger, outcome = apply(ledger, subscribe(at_ts=T0 + 400), now=T0 + 600)
    assert (ledger.status, outcome) == ("unsubscribed", None)


def test_start_opts_back_in():
    ledger, _ = apply(None, unsubscribe(T0), now=T0)
    change, ledger, outcome = text_in(ledger, "START", T0 + 60)
    assert (ledger.status, ledger.source, outcome) == ("subscribed", "keyword", "opted_in")
    assert reply_due(change, outcome)


def test_start_older_than_current_consent_is_ignored():
    ledger, _ = apply(None, unsubscribe(T0 + 600), now=T0)
    _, ledger, outcome = text_in(ledger, "START", T0 + 60)
    assert (ledger.status, outcome) == ("unsubscribed", None)
    assert ledger.history[-1].result == "ignored_stale"


def test_help_is_recorded_and_answered_without_changing_consent():
    ledger, _ = apply(None, subscribe(), now=T0)
    change, after, outcome = text_in(ledger, "HELP", T0 + 5)
    assert outcome == "help_requested" and reply_due(change, outcome)
    assert after.status == "subscribed" and after.timestamp == T0
    assert after.history[-1].result == "help"


def test_free_text_is_not_a_consent_change():
    assert inbound_change(inbound("where is my order?", T0), None) is None
    assert inbound_change(inbound("Y", T0), None) is None  # nothing pending
    assert inbound_change(inbound(None, T0), None) is None  # an MMS without text


def test_double_opt_in_waits_for_y():
    ledger, outcome = apply(None, subscribe(source="popup"), now=T0, double_opt_in_sources=DOI)
    assert outcome == "confirmation_requested" and reply_due(None, outcome)
    assert ledger.status == "never"
    assert ledger.pending is not None and ledger.pending.source == "popup"
    assert may_send(ledger, "marketing") == (False, "consent_pending")
    assert may_send(ledger, "transactional") == (True, "not_opted_out")
    # the identify is re-sent: no second confirmation request
    again, outcome = apply(ledger, subscribe(source="popup"), now=T0 + 30,
                           double_opt_in_sources=DOI)
    assert outcome is None and again == ledger
    change, ledger, outcome = text_in(ledger, "Y", T0 + 120)
    assert isinstance(change, KeywordChange) and change.keyword_kind == "confirm"
    assert outcome == "opted_in" and reply_due(change, outcome)
    assert (ledger.status, ledger.source, ledger.keyword) == ("subscribed", "popup", "Y")
    assert ledger.text_hash == consent.text_hash(CONSENT_TEXT)
    assert ledger.pending is None
    assert may_send(ledger, "marketing") == (True, "subscribed")


def test_stop_while_pending_cancels_the_double_opt_in():
    ledger, _ = apply(None, subscribe(source="popup"), now=T0, double_opt_in_sources=DOI)
    _, ledger, outcome = text_in(ledger, "STOP", T0 + 60)
    assert outcome == "opted_out"
    assert ledger.pending is None
    assert inbound_change(inbound("Y", T0 + 90), ledger) is None


def test_double_opt_in_is_skipped_for_an_already_subscribed_phone():
    ledger, _ = apply(None, subscribe(source="checkout"), now=T0)
    ledger, outcome = apply(ledger, subscribe(at_ts=T0 + 10, source="popup"), now=T0 + 10,
                            double_opt_in_sources=DOI)
    assert outcome is None
    assert (ledger.status, ledger.source, ledger.pending) == ("subscribed", "popup", None)


def test_provider_21610_opts_out_without_a_reply():
    ledger, _ = apply(None, subscribe(), now=T0)
    change = provider_opt_out_change(timestamp=T0 + 10, message_sid="SM9")
    ledger, outcome = apply(ledger, change, now=T0 + 11)
    assert (ledger.status, ledger.source, outcome) == ("unsubscribed", "provider", "opted_out")
    assert ledger.history[-1].error_code == "21610"
    assert not reply_due(change, outcome)
    _, outcome = apply(ledger, provider_opt_out_change(timestamp=T0 + 20), now=T0 + 20)
    assert outcome is None


def test_provider_matched_keyword_is_not_answered_twice():
    ledger, _ = apply(None, subscribe(), now=T0)
    change, ledger, outcome = text_in(ledger, "STOP", T0 + 5, opt_out_type="STOP")
    assert change.source == "provider_keyword"
    assert outcome == "opted_out" and not reply_due(change, outcome)


def test_consent_change_for_an_unsubscribed_phone_reports_no_new_opt_out():
    ledger, _ = apply(None, unsubscribe(T0), now=T0)
    _, outcome = apply(ledger, unsubscribe(T0 + 10, source="support"), now=T0 + 10)
    assert outcome is None


@pytest.mark.parametrize("status, category, expected", [
    (None, "marketing", (False, "no_consent")),
    (None, "transactional", (True, "not_opted_out")),
    ("never", "marketing", (False, "no_consent")),
    ("subscribed", "marketing", (True, "subscribed")),
    ("subscribed", "transactional", (True, "not_opted_out")),
    ("unsubscribed", "marketing", (False, "opted_out")),
    ("unsubscribed", "transactional", (False, "opted_out")),
    ("subscribed", "promo", (False, "unknown_category")),
])
def test_may_send(status, category, expected):
    ledger = None if status is None else ConsentLedger(status=status)
    assert may_send(ledger, category) == expected


def test_a_phone_moves_to_another_customer():
    ledger, _ = apply(None, subscribe(customer="c_1"), now=T0)
    ledger, _ = apply(ledger, link_change("c_2", timestamp=T0 + 10), now=T0 + 10)
    assert linked_customers(ledger) == ["c_1", "c_2"]
    ledger, outcome = apply(ledger, unlink_change("c_1", timestamp=T0 + 20), now=T0 + 20)
    assert outcome is None
    assert linked_customers(ledger) == ["c_2"]
    assert ledger.history[-1] == LedgerEntry(kind="unlink", at=T0 + 20, recorded_at=T0 + 20,
                                             result="applied", customer_id="c_1")


def test_late_link_does_not_undo_a_newer_unlink():
    ledger, _ = apply(None, unlink_change("c_1", timestamp=T0 + 20), now=T0 + 20)
    ledger, _ = apply(ledger, link_change("c_1", timestamp=T0 + 10), now=T0 + 30)
    assert linked_customers(ledger) == []
    assert ledger.history == []


def test_link_without_customer_is_rejected():
    with pytest.raises(InvalidConsent) as caught:
        apply(None, LinkChange(customer_id="", timestamp=T0), now=T0)
    assert caught.value.reason == "missing_customer_id"


@pytest.mark.parametrize("change", [
    {"kind": "teleport", "timestamp": T0},                           # unknown change kind
    {"kind": "consent", "status": "subscribed", "source": "x"},      # no timestamp
    {"kind": "consent", "status": "gone", "source": "x", "timestamp": T0},  # unknown status
    {"kind": "consent", "status": "pending", "source": "x", "timestamp": T0},  # not a ledger status
    {"kind": "link", "timestamp": T0},                               # no customer
])
def test_invalid_changes_cannot_cross_the_phone_updates_seam(change):
    raw = orjson.dumps({"phone": "+14155550100", "change": change})
    with pytest.raises(msgspec.ValidationError):
        decode(raw, PhoneUpdate)


def test_every_change_kind_round_trips_the_phone_updates_topic():
    changes = [subscribe(), status_change("pending", T0), status_change("never", T0),
               inbound_change(inbound("STOP", T0), None),
               provider_opt_out_change(timestamp=T0, message_sid="SM1"),
               link_change("c_1", timestamp=T0), unlink_change("c_1", timestamp=T0)]
    for change in changes:
        update = PhoneUpdate(phone="+14155550100", change=change)
        assert decode(encode(update), PhoneUpdate) == update


def test_history_is_bounded_and_counts_what_it_dropped():
    ledger, _ = apply(None, subscribe(), now=T0)  # 2 entries: link + consent
    for i in range(250):
        _, ledger, _ = text_in(ledger, "HELP", T0 + i + 1, sid=f"SM{i}")
    assert len(ledger.history) == consent.HISTORY_LIMIT
    assert ledger.history_dropped == 252 - consent.HISTORY_LIMIT
    assert ledger.history[-1].message_sid == "SM249"


def test_long_text_is_clipped_but_hashed_whole():
    text = "x" * 5000
    ledger, _ = apply(None, subscribe(text=text), now=T0)
    assert len(ledger.text) == consent.TEXT_LIMIT
    assert ledger.text_hash == hashlib.sha256(text.encode()).hexdigest()


def test_ledger_round_trips_through_json():
    ledger, _ = apply(None, subscribe(source="popup"), now=T0, double_opt_in_sources=DOI)
    _, ledger, _ = text_in(ledger, "YES", T0 + 5)
    _, ledger, _ = text_in(ledger, "STOP", T0 + 9)
    assert decode(encode(ledger), ConsentLedger) == ledger
    assert orjson.loads(encode(ledger))["history"][-1]["keyword"] == "STOP"


def test_iso_formats_utc():
    assert consent.iso(T0) == "2025-11-28T10:00:00Z"
    assert consent.iso(None) is None


# ------------------------------------------------- issue 9: statuses `pending` and `never`

def test_pending_requests_a_confirmation_and_y_subscribes():
    """Issue 9: the schema allows `pending` but the consent module rejected it."""
    change = status_change("pending", T0, source="quiz")
    assert isinstance(change, ConsentTraitChange)
    assert (change.status, change.double_opt_in) == ("subscribed", True)
    ledger, outcome = apply(None, change, now=T0)  # no double_opt_in_sources configured
    assert outcome == "confirmation_requested" and reply_due(change, outcome)
    assert ledger.status == "never" and ledger.pending is not None
    assert ledger.pending.source == "quiz"
    assert ledger.history[-1].result == "pending_confirmation"
    assert may_send(ledger, "marketing") == (False, "consent_pending")
    _, ledger, outcome = text_in(ledger, "Y", T0 + 60)
    assert (ledger.status, outcome) == ("subscribed", "opted_in")


def test_pending_does_not_downgrade_an_existing_subscription():
    ledger, _ = apply(None, subscribe(at_ts=T0), now=T0)
    ledger, outcome = apply(ledger, status_change("pending", T0 + 60), now=T0 + 60)
    assert outcome is None
    assert (ledger.status, ledger.pending) == ("subscribed", None)


@pytest.mark.parametrize("before", ["subscribed", "unsubscribed"])
def test_never_does_not_change_an_existing_subscription_or_opt_out(before):
    """`never` (the shop has no consent) is recorded as `ignored_never`, status unchanged."""
    first = subscribe(at_ts=T0) if before == "subscribed" else unsubscribe(T0)
    ledger, _ = apply(None, first, now=T0)
    after, outcome = apply(ledger, status_change("never", T0 + 3600), now=T0 + 3600)
    assert outcome is None
    assert (after.status, after.timestamp, after.source) == (ledger.status, ledger.timestamp,
                                                             ledger.source)
    assert after.history[-1].result == "ignored_never"
    assert after.history[-1].status == "never"


def test_never_on_an_unknown_phone_links_the_customer_and_changes_nothing_else():
    ledger, outcome = apply(None, status_change("never", T0, customer="c_7"), now=T0)
    assert outcome is None
    assert ledger.status == "never" and linked_customers(ledger) == ["c_7"]
    assert [e.kind for e in ledger.history] == ["link"]
    assert may_send(ledger, "marketing") == (False, "no_consent")


def test_never_does_not_cancel_a_pending_double_opt_in():
    ledger, _ = apply(None, status_change("pending", T0), now=T0)
    after, outcome = apply(ledger, status_change("never", T0 + 10), now=T0 + 10)
    assert outcome is None and after.pending == ledger.pending
    assert after.history[-1].result == "ignored_never"


# ------------------------------------------ issue 9: replayed or reordered keywords

def test_stop_older_than_an_applied_start_does_not_undo_it():
    ledger, _ = apply(None, unsubscribe(T0), now=T0)
    _, ledger, outcome = text_in(ledger, "START", T0 + 100, sid="SM_start")
    assert (ledger.status, outcome) == ("subscribed", "opted_in")
    # a STOP sent before the START arrives late (webhook replay, reordering)
    change, after, outcome = text_in(ledger, "STOP", T0 + 50, sid="SM_stop")
    assert outcome is None and not reply_due(change, outcome)
    assert (after.status, after.keyword, after.timestamp) == ("subscribed", "START", T0 + 100)
    assert after.history[-1].result == "ignored_stale"
    assert after.history[-1].message_sid == "SM_stop"
    # the same STOP, sent after the START, opts out
    _, after, outcome = text_in(ledger, "STOP", T0 + 150, sid="SM_stop2")
    assert (after.status, outcome) == ("unsubscribed", "opted_out")


def test_stop_wins_over_later_stamped_shop_consent():
    # the shop's identify says "subscribed" with a timestamp after the STOP's receive time
    ledger, _ = apply(None, subscribe(at_ts=T0), now=T0)
    ledger, _ = apply(ledger, subscribe(at_ts=T0 + 900, source="checkout"), now=T0 + 5)
    _, after, outcome = text_in(ledger, "STOP", T0 + 100)
    assert (after.status, outcome) == ("unsubscribed", "opted_out")
    # and the shop re-sending that consent afterwards does not resubscribe the phone
    again, outcome = apply(after, subscribe(at_ts=T0 + 900, source="checkout"), now=T0 + 200)
    assert (again.status, outcome) == ("unsubscribed", None)
