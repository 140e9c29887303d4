"""Consent on the real broker: opt-out at send time, START, shared phones, stale identify,
forged webhooks, bad input to the DLQ, HELP and free-text revocations.

One stack (sandbox + webhooks + one worker) serves the whole module; every test uses its
own phones and customers. The policy caps marketing at 1 text per 8 s per phone, so a
second marketing send sits deferred long enough for a STOP to overtake it.
"""

from __future__ import annotations

import time

import orjson
import pytest
from twilio.request_validator import RequestValidator

from smsflow.kafka_io import read_topic
from tests.integration.harness import Stack, wait_for
from tests.integration.phone_helpers import (OUR_NUMBER, iso, identify, send_cmd, phone_key, produce_sends, ledger, wait_ledger, subscribe, keyed, post_form, module_stack)

pytestmark = pytest.mark.integration


# ----------------------------------------------------------------------------- helpers


def text_in(stack: Stack, phone: str, body: str) -> None:
    """Simulate a text from ``phone`` through the sandbox (signed post to the webhook)."""
    answer = stack.sandbox("/sandbox/inbound", {"from": phone, "to": OUR_NUMBER, "body": body})
    assert answer["webhook_status"] == 200, answer


def json_records(stack: Stack, role: str) -> list[dict]:
    """Records of a topic that decode as JSON objects (other tests put garbage there)."""
    out = []
    for _, value in read_topic(stack.topic(role), stack.bootstrap):
        try:
            record = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def of_customer(stack: Stack, type_: str, cid: str) -> list[dict]:
    return [o for o in stack.outcomes(type_) if o.get("customer_id") == cid]


def bodies(stack: Stack, phone: str) -> list[str]:
    return [t["body"] for t in sorted(stack.texts(phone), key=lambda t: t["date_created"])]


@pytest.fixture(scope="module")
def live(bootstrap, tmp_path_factory):
    yield from module_stack(bootstrap, tmp_path_factory.mktemp("consent"), "policy_consent.yaml")


# ------------------------------------------------------------------------------- tests


def test_stop_after_send_was_created_wins_at_send_time_and_start_restores(live):
    p, cid = "+14155550201", "cs1"
    subscribe(live, [(cid, p)])
    a, b = send_cmd(p, "cs1-e:a", customer=cid), send_cmd(p, "cs1-e:b", customer=cid)
    produce_sends(live, [a, b])
    wait_for(lambda: keyed(live, "sent", a.idempotency_key), message="first send sent")
    deferred = wait_for(lambda: [o for o in keyed(live, "deferred", b.idempotency_key)
                                 if o["reason"] == "frequency_cap"],
                        message="second send deferred by the cap")
    assert deferred[0]["details"]["until"]

    # the phone texts STOP while the second send is queued as a deferral
    text_in(live, p, "Stop")
    opted = wait_for(lambda: of_customer(live, "opted_out", cid), message="opted out")
    assert opted[0]["reason"] == "STOP"
    suppressed = wait_for(lambda: keyed(live, "suppressed", b.idempotency_key), timeout=30,
                          message="deferred send suppressed when due")
    assert suppressed[0]["reason"] == "opted_out"
    assert not keyed(live, "sent", b.idempotency_key)
    assert b.body not in bodies(live, p)

    # START restores marketing: a later send goes out
    text_in(live, p, "START")
    wait_for(lambda: of_customer(live, "opted_in", cid), message="opted back in")
    led = wait_ledger(live, p, lambda x: x["status"] == "subscribed", "subscribed again")
    assert (led["source"], led["keyword"]) == ("keyword", "START")
    keywords = [h.get("keyword") for h in led["history"] if h["kind"] == "keyword"]
    assert keywords == ["STOP", "START"]
    c = send_cmd(p, "cs1-e:c", customer=cid)
    produce_sends(live, [c])
    wait_for(lambda: keyed(live, "sent", c.idempotency_key), message="send after START")
    texts = wait_for(lambda: (lambda bs: bs if len(bs) >= 4 else None)(bodies(live, p)),
                     message="four texts")
    assert texts[0] == a.body
    assert "unsubscribed" in texts[1]
    assert "Subscribed to recurring" in texts[2]
    assert texts[3] == c.body
    assert len(texts) == 4


def test_stop_on_shared_phone_covers_every_customer(live):
    p = "+14155550202"
    subscribe(live, [("sh1", p), ("sh2", p)])
    text_in(live, p, "UNSUBSCRIBE")
    for cid in ("sh1", "sh2"):
        wait_for(lambda cid=cid: of_customer(live, "opted_out", cid), message=f"{cid} opted out")
    sends = [send_cmd(p, "sh1-e:m", customer="sh1"), send_cmd(p, "sh2-e:m", customer="sh2"),
             send_cmd(p, "sh2-e:t", customer="sh2", category="transactional")]
    produce_sends(live, sends)
    for s in sends:
        got = wait_for(lambda s=s: keyed(live, "suppressed", s.idempotency_key),
                       message=f"{s.idempotency_key} suppressed")
        assert got[0]["reason"] == "opted_out"
    texts = wait_for(lambda: bodies(live, p), message="STOP confirmation")
    time.sleep(1.0)
    texts = bodies(live, p)
    assert len(texts) == 1 and "unsubscribed" in texts[0], texts
    assert len(of_customer(live, "opted_out", "sh1")) == 1
    assert len(of_customer(live, "opted_out", "sh2")) == 1


def test_older_identify_does_not_resubscribe(live):
    p, now = "+14155550203", time.time()
    live.produce_events([identify("st1", p, at=now - 300, mid="st1-a")])
    wait_ledger(live, p, lambda x: x["status"] == "subscribed", "subscribed")
    live.produce_events([identify("st1", p, at=now - 100, status="unsubscribed",
                                  source="preference_center", mid="st1-b")])
    wait_ledger(live, p, lambda x: x["status"] == "unsubscribed", "unsubscribed by identify")
    live.produce_events([
        # late and out of order: both older than the unsubscribe
        identify("st1", p, at=now - 200, mid="st1-c"),
        identify("st2", p, at=now - 200, mid="st2-a"),
    ])
    led = wait_ledger(live, p, lambda x: x["customers"].get("st2", {}).get("linked")
                      and any(h["result"] == "ignored_stale" for h in x["history"]),
                      "stale consent recorded")
    assert led["status"] == "unsubscribed"
    assert led["source"] == "preference_center"
    consent_history = [(h["status"], h["result"]) for h in led["history"] if h["kind"] == "consent"]
    assert consent_history == [("subscribed", "applied"), ("unsubscribed", "applied"),
                               ("subscribed", "ignored_stale")]
    stale = next(h for h in led["history"] if h["result"] == "ignored_stale")
    assert stale["customer_id"] == "st2" and stale["text_hash"]

    # a STOP now, then an identify whose consent is older than the STOP: still out
    p2 = "+14155550213"
    subscribe(live, [("st3", p2)])
    text_in(live, p2, "quit")
    wait_ledger(live, p2, lambda x: x["status"] == "unsubscribed", "STOP applied")
    live.produce_events([identify("st3", p2, at=time.time(), consent_at=time.time() - 30,
                                  mid="st3-late")])
    led2 = wait_ledger(live, p2, lambda x: any(h["result"] == "ignored_stale"
                                               for h in x["history"]), "stale after STOP")
    assert led2["status"] == "unsubscribed" and led2["keyword"] == "QUIT"
    produce_sends(live, [send_cmd(p, "st1-e:m", customer="st1"),
                         send_cmd(p2, "st3-e:m", customer="st3")])
    for key in ("st1-e:m", "st3-e:m"):
        got = wait_for(lambda key=key: keyed(live, "suppressed", key), message=f"{key} suppressed")
        assert got[0]["reason"] == "opted_out"


def test_forged_inbound_webhook_is_refused(live):
    p = "+14155550204"
    subscribe(live, [("fg1", p)])
    url = f"{live.webhook_url}/twilio/inbound"
    validator = RequestValidator(live.settings.twilio_auth_token)
    forged = {"MessageSid": "SMforged0000000000000000000000001", "From": p, "To": OUR_NUMBER,
              "Body": "STOP", "AccountSid": live.settings.twilio_account_sid}
    assert post_form(url, forged, None) == 403
    assert post_form(url, forged, "bm90IGEgc2lnbmF0dXJl") == 403
    # signed for other parameters (a replayed signature on a tampered body)
    tampered_sig = validator.compute_signature(url, {**forged, "Body": "hello"})
    assert post_form(url, forged, tampered_sig) == 403
    wrong_key = RequestValidator("not-the-token").compute_signature(url, forged)
    assert post_form(url, forged, wrong_key) == 403

    genuine = {**forged, "MessageSid": "SMgenuine000000000000000000000001", "Body": "hello there"}
    assert post_form(url, genuine, validator.compute_signature(url, genuine)) == 200
    inbound = wait_for(lambda: [r for r in json_records(live, "inbound")
                                if r.get("MessageSid") == genuine["MessageSid"]],
                       message="signed post published")
    assert inbound[0]["Body"] == "hello there"
    assert not [r for r in json_records(live, "inbound") if r.get("MessageSid") == forged["MessageSid"]]
    wait_for(lambda: of_customer(live, "replied", "fg1"), message="free text processed")
    assert ledger(live, p)["status"] == "subscribed"
    assert not of_customer(live, "opted_out", "fg1")


def test_malformed_input_goes_to_dlq_while_good_input_flows(live):
    now = time.time()
    bad_inbound, bad_identify, good_inbound, good_identify = [], [], [], []
    for i in range(100):
        kind = i % 5
        if kind == 0:
            bad_inbound.append(f'{{"From": "+1415", dlqtest-{i}'.encode())
        elif kind == 1:
            bad_inbound.append(f'["dlqtest-{i}"]'.encode())
        elif kind == 2:
            bad_inbound.append({"From": f"not-a-phone-dlqtest-{i}", "Body": "STOP",
                                "MessageSid": f"SMdlq{i}"})
        elif kind == 3:
            bad_inbound.append({"Body": f"STOP dlqtest-{i}", "MessageSid": f"SMdlq{i}"})
        else:
            bad_inbound.append(b"\xff\xfe dlqtest-" + str(i).encode())
    for i in range(100):
        kind = i % 5
        cid, mid, valid = f"dlqtest-c{i}", f"dlqtest-i{i}", f"+1415556{i:04d}"
        if kind == 0:
            bad_identify.append(identify(cid, "12", at=now, mid=mid))
        elif kind == 1:
            bad_identify.append(identify(cid, "+1 (415) 555-01", at=now, mid=mid))
        elif kind == 2:
            bad_identify.append(identify(cid, valid, at=now, mid=mid, consent="yes"))
        elif kind == 3:  # consent pending: the ledger asks for a "Y" (double opt-in)
            bad_identify.append(identify(cid, valid, at=now, mid=mid,
                                         consent={"status": "pending", "source": "checkout"}))
        else:
            bad_identify.append(identify(cid, valid, at=now, mid=mid,
                                         consent={"status": "subscribed",
                                                  "timestamp": "last tuesday"}))
    good_phones = [f"+1415557{i:04d}" for i in range(20)]
    for i, phone in enumerate(good_phones):
        good_identify.append(identify(f"good{i}", phone, at=now, mid=f"good-i{i}"))
        good_inbound.append({"MessageSid": f"SMgood{i:028d}", "From": phone, "To": OUR_NUMBER,
                             "Body": "what time do you open?", "received_at": iso(now)})
    # interleave: good records between the bad ones, on every partition
    events, inbound = [], []
    for i in range(100):
        events.append(bad_identify[i])
        inbound.append(bad_inbound[i])
        if i % 5 == 0:
            events.append(good_identify[i // 5])
            inbound.append(good_inbound[i // 5])
    live.produce_events(events)
    for i, phone in enumerate(good_phones):
        wait_ledger(live, phone, lambda x, i=i: x["status"] == "subscribed"
                    and x["customers"].get(f"good{i}", {}).get("linked"), f"good{i} linked")
    # the inbound texts after the links, so that each reply names its customer
    live.produce("inbound", inbound, key=lambda v: phone_key(v) or b"dlqtest")
    replied = wait_for(lambda: (lambda r: r if len(r) >= 20 else None)(
        [o for o in live.outcomes("replied") if (o["message_sid"] or "").startswith("SMgood")]),
        message="20 good inbound texts processed")
    assert sorted(o["customer_id"] for o in replied) == sorted(f"good{i}" for i in range(20))

    def ours():
        return [r for r in live.records("dlq") if "dlqtest" in (r.get("value") or "")
                or "dlqtest" in (r.get("key") or "")]
    dlq = wait_for(lambda: (lambda r: r if len(r) >= 180 else None)(ours()), timeout=30,
                   message="180 DLQ records")
    time.sleep(1.0)
    dlq = ours()
    assert len(dlq) == 180, len(dlq)
    by_stage: dict[str, dict[str, int]] = {}
    for r in dlq:
        by_stage.setdefault(r["stage"].split(".")[0], {}).setdefault(r["reason"], 0)
        by_stage[r["stage"].split(".")[0]][r["reason"]] += 1
    assert by_stage["phones"] == {"malformed_json": 60, "invalid_phone": 40}, by_stage
    assert by_stage["ingest"] == {"invalid_phone": 40, "schema_violation": 20,
                                  "bad_timestamp": 20}, by_stage
    # consent "pending" is a double opt-in request, never both applied and dead-lettered
    pending = {f"+1415556{i:04d}" for i in range(100) if i % 5 == 3}
    asked = wait_for(lambda: (lambda o: o if len(o) >= 20 else None)(
        [o for o in live.outcomes("confirmation_requested")
         if (o["customer_id"] or "").startswith("dlqtest-")]), message="20 confirmation requests")
    assert len(asked) == 20 and all(ledger(live, p)["pending"] for p in pending)
    assert all("sms_consent" in r["detail"] for r in dlq
               if r["reason"] in ("schema_violation", "bad_timestamp"))
    assert all(r["value"] and r["detail"] for r in dlq), "the payload and a reason are kept"
    assert not [r for r in live.records("dlq") if "good" in (r.get("value") or "")]


def test_help_gets_exactly_one_reply(live):
    p = "+14155550206"
    subscribe(live, [("hp1", p)])
    text_in(live, p, "Help!")
    wait_for(lambda: of_customer(live, "help_requested", "hp1"), message="help requested")
    texts = wait_for(lambda: bodies(live, p), message="help reply")
    assert len(texts) == 1 and "help@shop.example" in texts[0]
    assert "STOP" in texts[0] and "offer" not in texts[0]

    # Twilio retries a webhook (same MessageSid); a fresh HELP arrives twice in one batch:
    # replays change nothing, the fresh one is answered once
    original = next(r for r in json_records(live, "inbound") if r.get("From") == p)
    fresh = {**original, "MessageSid": "SMhelpagain00000000000000000001", "Body": "info"}
    live.produce("inbound", [original, fresh, fresh], key=phone_key)
    wait_for(lambda: len(bodies(live, p)) >= 2, message="reply to the fresh HELP")
    time.sleep(3.0)
    assert len(of_customer(live, "help_requested", "hp1")) == 2
    texts = bodies(live, p)
    assert len(texts) == 2, texts
    assert all("help@shop.example" in t for t in texts)
    assert ledger(live, p)["status"] == "subscribed"


def test_free_text_revocation_opts_out(live):
    p = "+14155550207"
    subscribe(live, [("rv1", p)])
    text_in(live, p, "cancel my order please")
    wait_for(lambda: of_customer(live, "replied", "rv1"), message="free text seen")
    assert ledger(live, p)["status"] == "subscribed"
    assert not of_customer(live, "opted_out", "rv1")

    text_in(live, p, "please stop texting me")
    opted = wait_for(lambda: of_customer(live, "opted_out", "rv1"), message="revocation")
    assert opted[0]["reason"] == "STOP TEXTING"
    led = ledger(live, p)
    assert led["status"] == "unsubscribed" and led["text"] == "please stop texting me"
    texts = wait_for(lambda: bodies(live, p), message="opt-out confirmation")
    produce_sends(live, [send_cmd(p, "rv1-e:m", customer="rv1")])
    got = wait_for(lambda: keyed(live, "suppressed", "rv1-e:m"), message="marketing suppressed")
    assert got[0]["reason"] == "opted_out"
    texts = bodies(live, p)
    assert len(texts) == 1 and "unsubscribed" in texts[0], texts


def test_stop_while_send_is_queued_for_retry_wins_at_dispatch(live):
    p, cid = "+14155550208", "rq1"
    subscribe(live, [(cid, p)])
    live.sandbox("/sandbox/config", {"fault_rate": 1.0, "faults": ["429"]})
    try:
        send = send_cmd(p, "rq1-e:m", customer=cid)
        produce_sends(live, [send])
        wait_for(lambda: keyed(live, "retried", send.idempotency_key),
                 message="send held by Twilio 429s")
        text_in(live, p, "stop")
        wait_for(lambda: of_customer(live, "opted_out", cid), message="opted out")
    finally:
        live.sandbox("/sandbox/config", {"fault_rate": 0.0, "faults": ["429", "500", "timeout",
                                                                       "30007"]})
    got = wait_for(lambda: keyed(live, "suppressed", send.idempotency_key), timeout=40,
                   message="queued retry suppressed at dispatch")
    assert got[0]["reason"] == "opted_out" and got[0]["details"]["stage"] == "dispatch"
    assert not keyed(live, "sent", send.idempotency_key)
    texts = wait_for(lambda: bodies(live, p), message="STOP confirmation after the storm")
    time.sleep(1.0)
    texts = bodies(live, p)
    assert len(texts) == 1 and "unsubscribed" in texts[0], texts
