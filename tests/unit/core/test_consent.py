import hashlib

import orjson
import pytest

from smsflow.core import consent
from smsflow.core.consent import (InvalidConsent, apply, inbound_change, link_change,
                                  linked_customers, may_send, new_ledger,
                                  provider_opt_out_change, reply_due, trait_change,
                                  unlink_change)

T0 = 1_764_324_000.0  # 2025-11-28T10:00:00Z
CONSENT_TEXT = "Yes, text me offers. Msg & data rates may apply. Reply STOP to opt out."
DOI = ("popup",)


def subscribe(at=T0, source="checkout", customer="c_1", text=CONSENT_TEXT):
    return trait_change({"status": "subscribed", "source": source, "timestamp": at,
                         "text": text}, event_time=at, customer_id=customer)


def unsubscribe(at, source="preferences"):
    return trait_change({"status": "unsubscribed", "source": source, "timestamp": at},
                        event_time=at)


def inbound(body, at, opt_out_type=None, sid="SM1"):
    record = {"Body": body, "From": "+14155550100", "MessageSid": sid,
              "received_at": consent.iso(at)}
    if opt_out_type:
        record["OptOutType"] = opt_out_type
    return record


def text_in(ledger, body, at, **kw):
    change = inbound_change(inbound(body, at, **kw), ledger)
    return change, *apply(ledger, change, now=at)


def test_identify_subscription_on_a_new_phone():
    ledger, outcome = apply(None, subscribe(), now=T0 + 1)
    assert outcome == "opted_in"
    assert ledger["status"] == "subscribed"
    assert ledger["source"] == "checkout"
    assert ledger["timestamp"] == T0
    assert ledger["updated_at"] == T0 + 1
    assert ledger["text"] == CONSENT_TEXT
    assert ledger["text_hash"] == hashlib.sha256(CONSENT_TEXT.encode()).hexdigest()
    assert linked_customers(ledger) == ["c_1"]
    assert [e["kind"] for e in ledger["history"]] == ["link", "consent"]
    assert may_send(ledger, "marketing") == (True, "subscribed")


def test_iso_timestamps_are_read_as_utc_epoch_seconds():
    change = trait_change({"status": "subscribed", "timestamp": "2025-11-28T10:00:00Z"},
                          event_time=0)
    assert change["timestamp"] == T0
    assert change["source"] == "identify"


def test_consent_without_its_own_timestamp_uses_the_event_time():
    change = trait_change({"status": "unsubscribed"}, event_time="2025-11-28T10:00:00")
    assert change["timestamp"] == T0


@pytest.mark.parametrize("sms_consent, reason", [
    ({"status": "maybe", "timestamp": T0}, "invalid_consent_status"),
    ({"timestamp": T0}, "invalid_consent_status"),
    ("subscribed", "sms_consent_not_an_object"),
    ({"status": "subscribed", "timestamp": "yesterday"}, "bad_timestamp"),
])
def test_bad_trait_consent_is_rejected_with_a_reason(sms_consent, reason):
    with pytest.raises(InvalidConsent) as caught:
        trait_change(sms_consent, event_time=T0)
    assert caught.value.reason == reason


def test_repeated_identify_changes_nothing():
    ledger, _ = apply(None, subscribe(), now=T0)
    again, outcome = apply(ledger, subscribe(), now=T0 + 60)
    assert outcome is None
    assert again == ledger


def test_apply_does_not_modify_its_input():
    ledger, _ = apply(None, subscribe(), now=T0)
    snapshot = orjson.dumps(ledger)
    apply(ledger, unsubscribe(T0 + 10), now=T0 + 10)
    assert orjson.dumps(ledger) == snapshot


def test_older_event_does_not_overwrite_newer_consent_but_is_recorded():
    ledger, _ = apply(None, unsubscribe(T0 + 100), now=T0 + 100)
    ledger, outcome = apply(ledger, subscribe(at=T0), now=T0 + 200)
    assert outcome is None
    assert ledger["status"] == "unsubscribed"
    assert ledger["history"][-1]["result"] == "ignored_stale"
    assert ledger["history"][-1]["status"] == "subscribed"


def test_the_same_stale_event_is_recorded_once():
    ledger, _ = apply(None, unsubscribe(T0 + 100), now=T0 + 100)
    for now in (T0 + 200, T0 + 300, T0 + 400):
        ledger, _ = apply(ledger, subscribe(at=T0, customer=None), now=now)
    assert [e["result"] for e in ledger["history"]] == ["applied", "ignored_stale"]


@pytest.mark.parametrize("first, second", [("subscribe", "unsubscribe"),
                                           ("unsubscribe", "subscribe")])
def test_at_equal_times_opt_out_wins(first, second):
    changes = {"subscribe": subscribe(at=T0), "unsubscribe": unsubscribe(T0)}
    ledger, _ = apply(None, changes[first], now=T0)
    ledger, _ = apply(ledger, changes[second], now=T0)
    assert ledger["status"] == "unsubscribed"


def test_newer_subscription_after_opt_out_resubscribes():
    ledger, _ = apply(None, unsubscribe(T0), now=T0)
    ledger, outcome = apply(ledger, subscribe(at=T0 + 3600), now=T0 + 3600)
    assert (ledger["status"], outcome) == ("subscribed", "opted_in")


def test_keyword_stop_is_effective_immediately_and_always_confirmed():
    ledger, _ = apply(None, subscribe(at=T0), now=T0)
    change, ledger, outcome = text_in(ledger, "STOP", T0 + 10)
    assert (ledger["status"], ledger["source"], ledger["keyword"]) == (
        "unsubscribed", "keyword", "STOP")
    assert outcome == "opted_out" and reply_due(change, outcome)
    assert ledger["text"] == "STOP"
    assert ledger["history"][-1]["message_sid"] == "SM1"
    # a second STOP is a new keyword event: one more confirmation, same state
    change, ledger, outcome = text_in(ledger, "stop", T0 + 20, sid="SM2")
    assert outcome == "opted_out" and reply_due(change, outcome)
    assert may_send(ledger, "transactional") == (False, "opted_out")


def test_keyword_opt_out_wins_even_with_an_older_receive_time():
    # the producer's clock ran ahead: consent stamped later than the STOP's receive time
    ledger, _ = apply(None, subscribe(at=T0 + 500), now=T0)
    _, ledger, outcome = text_in(ledger, "please stop texting me", T0 + 100)
    assert (ledger["status"], outcome) == ("unsubscribed", "opted_out")
    assert ledger["timestamp"] == T0 + 500  # never moves back...
    assert ledger["history"][-1]["at"] == T0 + 100  # ...the history keeps the real time
    ledger, outcome = apply(ledger, subscribe(at=T0 + 400), now=T0 + 600)
    assert (ledger["status"], outcome) == ("unsubscribed", None)


def test_start_opts_back_in():
    ledger, _ = apply(None, unsubscribe(T0), now=T0)
    change, ledger, outcome = text_in(ledger, "START", T0 + 60)
    assert (ledger["status"], ledger["source"], outcome) == ("subscribed", "keyword",
                                                             "opted_in")
    assert reply_due(change, outcome)


def test_start_older_than_current_consent_is_ignored():
    ledger, _ = apply(None, unsubscribe(T0 + 600), now=T0)
    _, ledger, outcome = text_in(ledger, "START", T0 + 60)
    assert (ledger["status"], outcome) == ("unsubscribed", None)
    assert ledger["history"][-1]["result"] == "ignored_stale"


def test_help_is_recorded_and_answered_without_changing_consent():
    ledger, _ = apply(None, subscribe(), now=T0)
    change, after, outcome = text_in(ledger, "HELP", T0 + 5)
    assert outcome == "help_requested" and reply_due(change, outcome)
    assert after["status"] == "subscribed" and after["timestamp"] == T0
    assert after["history"][-1]["result"] == "help"


def test_free_text_is_not_a_consent_change():
    assert inbound_change(inbound("where is my order?", T0), None) is None
    assert inbound_change(inbound("Y", T0), None) is None  # nothing pending


def test_double_opt_in_waits_for_y():
    ledger, outcome = apply(None, subscribe(source="popup"), now=T0,
                            double_opt_in_sources=DOI)
    assert outcome == "confirmation_requested" and reply_due(None, outcome)
    assert ledger["status"] == "never"
    assert ledger["pending"]["source"] == "popup"
    assert may_send(ledger, "marketing") == (False, "consent_pending")
    assert may_send(ledger, "transactional") == (True, "not_opted_out")
    # the identify is re-sent: no second confirmation request
    again, outcome = apply(ledger, subscribe(source="popup"), now=T0 + 30,
                           double_opt_in_sources=DOI)
    assert outcome is None and again == ledger
    change, ledger, outcome = text_in(ledger, "Y", T0 + 120)
    assert change["keyword_kind"] == "confirm"
    assert outcome == "opted_in" and reply_due(change, outcome)
    assert (ledger["status"], ledger["source"], ledger["keyword"]) == (
        "subscribed", "popup", "Y")
    assert ledger["text_hash"] == consent.text_hash(CONSENT_TEXT)
    assert ledger["pending"] is None
    assert may_send(ledger, "marketing") == (True, "subscribed")


def test_stop_while_pending_cancels_the_double_opt_in():
    ledger, _ = apply(None, subscribe(source="popup"), now=T0, double_opt_in_sources=DOI)
    _, ledger, outcome = text_in(ledger, "STOP", T0 + 60)
    assert outcome == "opted_out"
    assert ledger["pending"] is None
    assert inbound_change(inbound("Y", T0 + 90), ledger) is None


def test_double_opt_in_is_skipped_for_an_already_subscribed_phone():
    ledger, _ = apply(None, subscribe(source="checkout"), now=T0)
    ledger, outcome = apply(ledger, subscribe(at=T0 + 10, source="popup"), now=T0 + 10,
                            double_opt_in_sources=DOI)
    assert outcome is None
    assert (ledger["status"], ledger["source"], ledger["pending"]) == (
        "subscribed", "popup", None)


def test_provider_21610_opts_out_without_a_reply():
    ledger, _ = apply(None, subscribe(), now=T0)
    change = provider_opt_out_change(timestamp=T0 + 10, message_sid="SM9")
    ledger, outcome = apply(ledger, change, now=T0 + 11)
    assert (ledger["status"], ledger["source"], outcome) == ("unsubscribed", "provider",
                                                             "opted_out")
    assert ledger["history"][-1]["error_code"] == "21610"
    assert not reply_due(change, outcome)
    _, outcome = apply(ledger, provider_opt_out_change(timestamp=T0 + 20), now=T0 + 20)
    assert outcome is None


def test_provider_matched_keyword_is_not_answered_twice():
    ledger, _ = apply(None, subscribe(), now=T0)
    change, ledger, outcome = text_in(ledger, "STOP", T0 + 5, opt_out_type="STOP")
    assert change["source"] == "provider_keyword"
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
    ledger = None if status is None else {**new_ledger(), "status": status}
    assert may_send(ledger, category) == expected


def test_a_phone_moves_to_another_customer():
    ledger, _ = apply(None, subscribe(customer="c_1"), now=T0)
    ledger, _ = apply(ledger, link_change("c_2", timestamp=T0 + 10), now=T0 + 10)
    assert linked_customers(ledger) == ["c_1", "c_2"]
    ledger, outcome = apply(ledger, unlink_change("c_1", timestamp=T0 + 20), now=T0 + 20)
    assert outcome is None
    assert linked_customers(ledger) == ["c_2"]
    assert ledger["history"][-1] == {"kind": "unlink", "at": T0 + 20,
                                     "recorded_at": T0 + 20, "result": "applied",
                                     "customer_id": "c_1"}


def test_late_link_does_not_undo_a_newer_unlink():
    ledger, _ = apply(None, unlink_change("c_1", timestamp=T0 + 20), now=T0 + 20)
    ledger, _ = apply(ledger, link_change("c_1", timestamp=T0 + 10), now=T0 + 30)
    assert linked_customers(ledger) == []
    assert ledger["history"] == []


def test_link_without_customer_is_rejected():
    with pytest.raises(InvalidConsent) as caught:
        apply(None, {"kind": "link", "timestamp": T0}, now=T0)
    assert caught.value.reason == "missing_customer_id"


@pytest.mark.parametrize("change, reason", [
    ({"kind": "teleport", "timestamp": T0}, "unknown_change_kind"),
    ({"kind": "consent", "status": "subscribed"}, "missing_timestamp"),
    ({"kind": "consent", "status": "gone", "timestamp": T0}, "invalid_consent_status"),
])
def test_invalid_changes(change, reason):
    with pytest.raises(InvalidConsent) as caught:
        apply(None, change, now=T0)
    assert caught.value.reason == reason


def test_history_is_bounded_and_counts_what_it_dropped():
    ledger, _ = apply(None, subscribe(), now=T0)  # 2 entries: link + consent
    for i in range(250):
        _, ledger, _ = text_in(ledger, "HELP", T0 + i + 1, sid=f"SM{i}")
    assert len(ledger["history"]) == consent.HISTORY_LIMIT
    assert ledger["history_dropped"] == 252 - consent.HISTORY_LIMIT
    assert ledger["history"][-1]["message_sid"] == "SM249"


def test_long_text_is_clipped_but_hashed_whole():
    text = "x" * 5000
    ledger, _ = apply(None, subscribe(text=text), now=T0)
    assert len(ledger["text"]) == consent.TEXT_LIMIT
    assert ledger["text_hash"] == hashlib.sha256(text.encode()).hexdigest()


def test_ledger_round_trips_through_json():
    ledger, _ = apply(None, subscribe(source="popup"), now=T0, double_opt_in_sources=DOI)
    _, ledger, _ = text_in(ledger, "YES", T0 + 5)
    _, ledger, _ = text_in(ledger, "STOP", T0 + 9)
    assert orjson.loads(orjson.dumps(ledger)) == ledger


def test_iso_formats_utc():
    assert consent.iso(T0) == "2025-11-28T10:00:00Z"
    assert consent.iso(None) is None
