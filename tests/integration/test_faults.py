"""The faults quality bar: the broker restarted, a worker SIGKILLed and Twilio answering
429/500 or timing out, all in one run — afterwards every due message was sent exactly once
and every send recorded. Runs on a private broker (it gets restarted)."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from smsflow.broker import Broker, free_port
from tests.integration.harness import wait_for
from tests.integration.test_flows_timers import (flow_outcomes, identify, phone, texts_by_phone,
                                                 timer_stack, track)

pytestmark = pytest.mark.integration
CUSTOMERS = 120


def test_broker_restart_worker_kill_and_twilio_faults(tmp_path):
    broker = Broker(port=free_port(), controller_port=free_port(), run_dir=tmp_path / "kafka")
    broker.start()
    # a third of the creates fail: 429, 500 (nothing created) or a timeout after the
    # message was created (ambiguous: the dispatcher must look it up, not resend)
    try:
        stack = timer_stack(broker.bootstrap, tmp_path / "faults", fault_rate=0.3,
                            faults="429,500,timeout", timeout_hold=12)
    except BaseException:
        broker.stop()
        raise
    try:
        worker = stack.start_worker("w0")
        customers = {f"fx{i:03d}": phone(8000 + i) for i in range(CUSTOMERS)}
        stack.produce_events([identify(c, p, "America/Los_Angeles", consent=False)
                              for c, p in customers.items()]
                             + [track(c, f"fx-{c}", "Crash Check") for c in customers])
        wait_for(lambda: len(flow_outcomes(stack, "tt_crash", "scheduled")) >= CUSTOMERS,
                 timeout=60, message="timers scheduled")

        broker.stop()            # the broker goes away while every timer is pending
        time.sleep(3)
        broker.start()
        time.sleep(4)            # texts start flowing through the faults...
        worker.kill()            # ...and the worker dies mid-run
        stack.start_worker("w0")

        wait_for(lambda: len({t["to"] for t in stack.texts()} & set(customers.values())) >= CUSTOMERS,
                 timeout=240, interval=2.0, message="every customer texted")
        stack.sandbox("/sandbox/config", {"fault_rate": 0.0})
        # a text created just before a held timeout is recorded only after its lookup
        # (client timeout + a 5-10 s reconciliation wait): wait for every record, not a guess
        wait_for(lambda: len({o["idempotency_key"] for o in flow_outcomes(stack, "tt_crash", "sent")})
                 >= CUSTOMERS, timeout=120, interval=2.0, message="every send recorded")
        time.sleep(10)           # let late retries and reconciliations show any duplicate
        by_phone = texts_by_phone(stack)
        assert all(len(by_phone[p]) == 1 for p in customers.values()), \
            [p for p in customers.values() if len(by_phone.get(p, [])) != 1][:5]
        sent = Counter(o["idempotency_key"] for o in flow_outcomes(stack, "tt_crash", "sent"))
        assert len(sent) == CUSTOMERS, f"{len(sent)} sends recorded for {CUSTOMERS} texts"
        faults = stack.sandbox("/sandbox/stats")["counts"]
        assert sum(v for k, v in faults.items() if k.startswith(("error_", "fault_", "timeout"))) > 0, faults
    finally:
        stack.stop()
        broker.stop()
