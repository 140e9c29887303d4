"""Outcome classification (twilio.md §2.1) and the retry plan."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from smsflow.core import retry
from smsflow.core.retry import RetryPolicy, backoff, classify, plan

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=ZoneInfo("UTC")).timestamp()


@pytest.mark.parametrize("status, code, failure, kind", [
    (201, None, None, retry.OK),
    (429, 20429, None, retry.RETRY),
    (429, None, None, retry.RETRY),
    (400, 21611, None, retry.RETRY_SLOW),
    (None, 30001, None, retry.RETRY_SLOW),
    (None, 30003, None, retry.RETRY_LIMITED),
    (None, 30023, None, retry.WAIT),
    (500, None, None, retry.AMBIGUOUS),
    (503, 20500, None, retry.AMBIGUOUS),
    (None, None, "timeout", retry.AMBIGUOUS),
    (None, None, "disconnect", retry.AMBIGUOUS),
    (None, None, "connect", retry.RETRY),  # nothing left the machine: safe to resend
    (400, 21211, None, retry.BAD_NUMBER),
    (400, 21614, None, retry.BAD_NUMBER),
    (400, 21408, None, retry.CONFIG),
    (400, 21610, None, retry.OPTED_OUT),
    (None, 30007, None, retry.CONTENT),
    (400, 21999, None, retry.REJECTED),
    (None, 30099, None, retry.REJECTED),
])
def test_classify(status, code, failure, kind):
    assert classify(status, code, failure).kind == kind


def test_flags_tell_the_dispatcher_what_else_to_do():
    assert classify(400, 21610).opt_out and classify(None, 30004).opt_out
    assert classify(400, 21211).suppress_number
    assert classify(400, 21606).alert
    assert not classify(429, 20429).opt_out


def test_permanent_errors_are_never_retried():
    for code in (21211, 21614, 21408, 21610, 30007):
        assert plan(classify(400, code), attempt=1, rand=0.5, now=NOW).action == "stop"


def test_transient_errors_back_off_exponentially_with_bounded_attempts():
    c = classify(429, 20429)
    delays = [plan(c, attempt=a, rand=0.0, now=NOW).delay for a in range(1, 6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert plan(c, attempt=6, rand=0.0, now=NOW) == retry.RetryPlan("stop", reason="max_attempts")
    assert plan(classify(None, 30003), attempt=3, rand=0.0, now=NOW).action == "stop"
    assert plan(c, attempt=1, rand=0.0, now=NOW, retry_after=5).delay == 5


def test_jitter_stays_within_half_to_full_ceiling_and_is_capped():
    for rand in (0.0, 0.3, 0.999):
        assert 2.0 <= backoff(3, 1.0, 300.0, rand) < 4.0
    assert backoff(30, 1.0, 300.0, 0.999) < 300.0


def test_ambiguous_outcome_reconciles_before_any_resend():
    p = plan(classify(None, None, "timeout"), attempt=1, rand=0.5, now=NOW)
    assert p.action == "reconcile" and p.delay > 0
    assert plan(classify(500), attempt=1, rand=0.5, now=NOW).action == "reconcile"


def test_queue_full_waits_longer_and_daily_cap_waits_for_pacific_midnight():
    assert plan(classify(400, 21611), 1, 0.0, NOW).delay == RetryPolicy().slow_base / 2
    wait = plan(classify(None, 30023), 1, 0.0, NOW).delay
    midnight_pt = datetime(2026, 11, 29, 0, 0, tzinfo=ZoneInfo("America/Los_Angeles")).timestamp()
    assert NOW + wait == midnight_pt
    assert plan(classify(None, 30450), 1, 0.0, NOW).delay == RetryPolicy().pumping_wait
    assert plan(classify(201), 1, 0.0, NOW).action == "done"
