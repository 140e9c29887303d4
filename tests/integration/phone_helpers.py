"""Shared helpers for the phone-side integration tests (consent, gate, dispatcher)."""

from __future__ import annotations

import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path

import orjson

from smsflow.clock import iso
from smsflow.core.records.base import to_builtins
from smsflow.core.records.events import IdentifyEvent
from smsflow.core.records.sends import PhoneState, SendCommand
from tests.integration.harness import Stack, wait_for
from tests.integration.zones import daytime_zone

HERE = Path(__file__).parent
OUR_NUMBER = "+18005550199"


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def identify(cid, phone, *, at=None, status="subscribed", consent_at=None, mid=None,
             source="checkout", tz=None, consent=None):
    at = time.time() - 60 if at is None else at
    traits = {"first_name": cid.upper(), "phone": phone, "country": "US",
              "timezone": tz or daytime_zone()}
    if consent is not None:
        traits["sms_consent"] = consent
    elif status:
        traits["sms_consent"] = {"status": status, "source": source,
                                 "timestamp": iso(consent_at if consent_at is not None else at),
                                 "text": "Yes, text me offers. Reply STOP to opt out."}
    return IdentifyEvent(message_id=mid or f"id-{cid}-{phone}-{at}", user_id=cid,
                         timestamp=iso(at), traits=traits)


def send_cmd(phone, key, *, customer, category="marketing", priority=50, body=None, tz=None,
             media=()):
    """A send command as the flow engine writes it, for ``smsflow.sends``."""
    enrollment, _, step = key.rpartition(":")
    return SendCommand(idempotency_key=key, customer_id=customer, phone=phone,
                       flow_id="direct_test", enrollment_id=enrollment, step_id=step,
                       variant="treatment", category=category, priority=priority,
                       channel="mms" if media else "sms",
                       body=f"TestShop: offer {key}" if body is None else body,
                       media_urls=list(media), timezone=tz or daytime_zone(), country="US",
                       created_at=iso(time.time()), attempt=0)


def phone_key(value: bytes) -> bytes | None:
    """Key for phone-side topics: the E.164 phone inside the record (None for garbage)."""
    try:
        record = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict):
        return None
    phone = record.get("phone") or record.get("From")
    return str(phone).encode() if phone else None


def produce_sends(stack: Stack, sends) -> None:
    stack.produce("sends", sends, key=phone_key)


def ledger(stack: Stack, phone: str) -> dict:
    """The phone's consent ledger as plain data ({} when the phone is unknown)."""
    state = stack.state("phones", PhoneState).get(phone)
    return to_builtins(state.ledger) if state is not None else {}


def wait_ledger(stack: Stack, phone: str, check, message: str, timeout: float = 30) -> dict:
    return wait_for(lambda: (lambda led: led if led and check(led) else None)(ledger(stack, phone)),
                    timeout=timeout, message=message)


def subscribe(stack: Stack, pairs) -> None:
    stack.produce_events([identify(cid, phone) for cid, phone in pairs])
    for cid, phone in pairs:
        wait_ledger(stack, phone, lambda led, cid=cid: led["status"] == "subscribed"
                    and led["customers"].get(cid, {}).get("linked"), f"{phone} subscribed")


def keyed(stack: Stack, type_: str, key: str) -> list[dict]:
    return [o for o in stack.outcomes(type_) if o.get("idempotency_key") == key]


def wait_keyed(stack: Stack, type_: str, key: str, n: int = 1, timeout: float = 30) -> list[dict]:
    return wait_for(lambda: (lambda o: o if len(o) >= n else None)(keyed(stack, type_, key)),
                    timeout=timeout, message=f"{n} {type_} outcome(s) for {key}")


def texts_by_ref(stack: Stack, phone: str) -> Counter:
    return Counter(t["ref"] for t in stack.texts(phone))


def post_form(url: str, params: dict, signature: str | None) -> int:
    """POST a form like Twilio does; returns the HTTP status."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    req = urllib.request.Request(url, data=urllib.parse.urlencode(params).encode(), headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def module_stack(bootstrap: str, root: Path, policy: str):
    """A stack (sandbox, webhooks, one worker) shared by a test module."""
    stack = Stack(bootstrap, root, SMSFLOW_FLOWS_DIR=HERE / "flows",
                  SMSFLOW_POLICY=HERE / policy, SMSFLOW_TICK_INTERVAL=0.2)
    try:
        stack.start_twilio()
        stack.start_worker()
        yield stack
    finally:
        stack.stop()
