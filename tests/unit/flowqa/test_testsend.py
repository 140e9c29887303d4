"""``flows test-send``: what is sent, what is refused, and that its records count nowhere."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from smsflow.cli import main
from smsflow.core import consent as core_consent
from smsflow.core.flows import load_file
from smsflow.core.policy import load_policy
from smsflow.core.records.base import to_builtins
from smsflow.core.records.outcomes import Outcome
from smsflow.core.records.phones import KeywordChange
from smsflow.core.records.sends import PhoneState
from smsflow.flowqa import testsend as ts
from smsflow.flowqa.sample import sample_customer, sample_trigger
from smsflow.report.accounting import build_accounting
from smsflow.report.aggregate import aggregate
from smsflow.streams.settings import Settings

REPO = Path(__file__).resolve().parents[3]
CART = load_file(REPO / "flows" / "abandoned_checkout.yaml").flows[0]
POLICY = load_policy(REPO / "deploy" / "policy.yaml")
QA = "+14155550177"


def prepare(step: str = "reminder", state: PhoneState | None = None, **kw) -> ts.QASend:
    now = time.time()
    return ts.prepare(CART, step, QA, sample_customer(now), sample_trigger(CART, now), state,
                      Settings(), POLICY, **kw)


def test_the_step_is_rendered_for_the_qa_phone_with_a_test_key():
    test = prepare()
    c = test.command
    assert c.phone == QA and c.step_id == "reminder" and c.flow_id == "abandoned_checkout"
    assert c.idempotency_key.startswith("test:") and c.idempotency_key.endswith(":reminder")
    assert c.body.startswith("Ana, you left 1 item in your cart.") and c.link.short in c.body
    assert (test.sender, test.sender_type, test.segments) == ("12345", "short_code", 1)
    assert test.consent == "never (no record)"
    assert prepare().command.idempotency_key != c.idempotency_key  # every test is its own


def test_refused_to_an_opted_out_phone():
    stop = KeywordChange(keyword_kind="opt_out", keyword="STOP", source="keyword",
                         timestamp=time.time() - 60)
    ledger, _ = core_consent.apply(None, stop, now=time.time())
    with pytest.raises(ts.Refused, match=r"\+14155550177 has opted out \(STOP at "):
        prepare(state=PhoneState(ledger=ledger))


def test_refused_for_a_step_that_does_not_send_or_a_bad_phone():
    with pytest.raises(ts.Refused, match="no send step 'wait_reminder'.*reminder, social_proof, incentive"):
        prepare("wait_reminder")
    now = time.time()
    with pytest.raises(ts.Refused, match="not a textable phone"):
        ts.prepare(CART, "reminder", "12345", sample_customer(now), sample_trigger(CART, now),
                   None, Settings(), POLICY)
    with pytest.raises(ts.Refused, match="not a sender of the policy"):
        prepare(sender_number="+19999999999")


def test_its_records_count_in_no_report_and_no_accounting():
    test = prepare()
    sent = to_builtins(ts.outcome_record(test, "SM" + "1" * 32, "delivered"))
    link = ts.link_record(test)
    assert link is not None and link.customer_id == "" and link.idempotency_key is None
    click = to_builtins(Outcome(type="clicked", customer_id=link.customer_id,
                                flow_id=link.flow_id, step_id=link.step_id,
                                enrollment_id=link.enrollment_id,
                                idempotency_key=link.idempotency_key,
                                processing_time="2026-11-28T10:00:00Z"))
    assert sent["type"] == "test_sent" and sent["customer_id"] is None
    assert sent["details"]["test"] is True
    assert aggregate([sent, click]) == {}
    accounting = build_accounting([sent, click])
    assert accounting.ok and accounting.flows == []


def test_the_cli_refuses_before_connecting_for_a_bad_phone(capsys):
    code = main(["flows", "test-send", str(REPO / "flows" / "abandoned_checkout.yaml"),
                 "--step", "reminder", "--to", "not a phone", "-b", "127.0.0.1:1"])
    assert code == 1
    assert "refused: 'not a phone' is not a textable phone" in capsys.readouterr().err
