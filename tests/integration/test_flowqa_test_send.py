"""``smsflow flows test-send`` through the sandbox on the real broker: the text is
recorded by the sandbox, a ``test_sent`` outcome is written and counted nowhere, the link
works without touching a profile, and a phone that opted out is refused."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from smsflow.core.records.base import decode
from smsflow.core.records.outcomes import Outcome
from smsflow.core.records.sends import PhoneState
from smsflow.report.accounting import build_accounting
from smsflow.report.aggregate import aggregate
from tests.integration.harness import wait_for
from tests.integration.phone_helpers import subscribe, wait_ledger

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
REPO = HERE.parents[1]
CART = REPO / "flows" / "abandoned_checkout.yaml"
POLICY = HERE / "policy.yaml"


def cli(args, env):
    return subprocess.run([sys.executable, "-m", "smsflow.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_test_send_through_the_sandbox(stack_factory):
    stack = stack_factory(SMSFLOW_FLOWS_DIR=HERE / "flows", SMSFLOW_POLICY=POLICY,
                          SMSFLOW_TICK_INTERVAL=0.2)
    stack.start_twilio()
    stack.start_worker()
    qa, stopped = "+14155550181", "+14155550182"
    subscribe(stack, [("qa_stop", stopped)])
    stack.sandbox("/sandbox/inbound", {"from": stopped, "to": "+18005550199", "body": "STOP"})
    wait_ledger(stack, stopped, lambda led: led["status"] == "unsubscribed", "STOP applied")
    wait_for(lambda: stack.texts(stopped), message="STOP confirmation")

    sent = cli(["flows", "test-send", str(CART), "--step", "reminder", "--to", "(415) 555-0181",
                "--policy", str(POLICY)], stack.env)
    assert sent.returncode == 0, sent.stderr
    [text] = stack.texts(qa)
    assert text["body"].startswith("Ana, you left 1 item in your cart. Pick up where you left off: ")
    assert text["from"] == "+18005550199"
    assert text["status_callback"] is None  # no receipts flow back into the outcomes
    sid = re.search(r"message   (SM\w+): (\w+)", sent.stdout)
    assert sid and sid.group(1) == text["sid"] and sid.group(2) == "delivered", sent.stdout

    tests = wait_for(lambda: stack.outcomes("test_sent"), message="test_sent outcome")
    [record] = tests
    outcome = decode(orjson.dumps(record), Outcome)
    assert outcome.message_sid == text["sid"] and outcome.customer_id is None
    assert outcome.flow_id == "abandoned_checkout" and outcome.step_id == "reminder"
    assert outcome.idempotency_key.startswith("test:") and outcome.segments == 1
    assert outcome.details["test"] is True and outcome.phone_masked == "+1********81"

    # the tracked link works on the device; the click belongs to no customer
    short = text["body"].rsplit(" ", 1)[-1]
    with pytest.raises(urllib.error.HTTPError) as redirect:
        urllib.request.build_opener(NoRedirect).open(short, timeout=10)
    assert redirect.value.code == 302
    assert redirect.value.headers["Location"].startswith(
        "https://shop.example/checkout/ch_sample?utm_source=smsflow&utm_medium=sms"
        "&utm_campaign=abandoned_checkout&utm_content=reminder")
    clicks = wait_for(lambda: stack.outcomes("clicked"), message="clicked outcome")
    assert [c["customer_id"] for c in clicks] == [""]
    assert not [e for e in stack.records("events") if e.get("event") == "SMS Link Clicked"]

    # never touching caps or a customer's history: the engine never saw the QA phone
    assert qa not in stack.state("phones", PhoneState)
    outcomes = stack.outcomes()
    assert not [o for o in outcomes if o["type"] in ("enrolled", "scheduled", "sent")
                and o["flow_id"] is not None]  # (the STOP confirmation is a sent reply)
    assert not [o for o in outcomes if o.get("phone_masked") == "+1********81"
                and o["type"] != "test_sent"]
    assert aggregate(outcomes) == {}
    assert build_accounting(outcomes).ok

    # refused to the phone that opted out, and nothing sent to it
    refused = cli(["flows", "test-send", str(CART), "--step", "reminder", "--to", stopped,
                   "--policy", str(POLICY)], stack.env)
    assert refused.returncode == 1
    assert f"smsflow flows test-send: refused: {stopped} has opted out (STOP at " in refused.stderr
    assert [t["body"] for t in stack.texts(stopped)] == [stack.texts(stopped)[0]["body"]]
    assert "unsubscribed" in stack.texts(stopped)[0]["body"]
    assert len(stack.outcomes("test_sent")) == 1
