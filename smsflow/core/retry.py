"""What to do after a Twilio call or a delivery receipt: done, retry, reconcile, or stop.

One classifier serves both paths (create-time HTTP errors, mostly 2xxxx, and 3xxxx
``ErrorCode`` values in status callbacks), with the table of twilio.md §2.1. The
dangerous case is the *ambiguous* one: a timeout or 5xx after the request went out may
have created the message, and Twilio has no idempotency key, so the dispatcher must look
the message up ("reconcile") before sending again, or a customer gets it twice.

Pure: randomness (``rand`` in [0, 1)) and ``now`` are arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

RETRY, RETRY_SLOW, RETRY_LIMITED, WAIT = "retry", "retry_slow", "retry_limited", "wait"
OK, AMBIGUOUS, OPTED_OUT, BAD_NUMBER = "ok", "ambiguous", "opted_out", "bad_number"
CONTENT, CONFIG, REJECTED = "content", "config", "rejected"

CODES = {
    20429: RETRY,  # REST concurrency exceeded: the request was not processed
    21611: RETRY_SLOW, 30001: RETRY_SLOW,  # sender queue full / overflow
    30003: RETRY_LIMITED, 30008: RETRY_LIMITED,  # unreachable handset / unknown error
    30023: WAIT, 30450: WAIT,  # 10DLC T-Mobile daily cap / SMS-pumping block
    21610: OPTED_OUT, 30004: OPTED_OUT,  # STOP at the carrier / blocked (treated as opted out)
    21211: BAD_NUMBER, 21612: BAD_NUMBER, 21614: BAD_NUMBER, 30005: BAD_NUMBER, 30006: BAD_NUMBER,
    21617: CONTENT, 21658: CONTENT, 30007: CONTENT, 30019: CONTENT,
    21212: CONFIG, 21606: CONFIG, 21408: CONFIG, 30002: CONFIG, 30032: CONFIG, 30034: CONFIG,
    35114: CONFIG,
}
RETRYABLE = {RETRY, RETRY_SLOW, RETRY_LIMITED, WAIT}
PACIFIC = ZoneInfo("America/Los_Angeles")


@dataclass(frozen=True)
class Classification:
    """``kind`` is one of the constants above; flags say what else the caller must do."""

    kind: str
    code: int | None = None
    opt_out: bool = False  # record an opt-out in the consent ledger (21610, 30004)
    suppress_number: bool = False  # the number cannot receive texts
    alert: bool = False  # operators must fix configuration; retrying will not help


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base: float = 1.0  # first backoff, seconds
    cap: float = 300.0
    slow_base: float = 30.0  # sender queue full: give the queue time to drain
    limited_attempts: int = 3  # 30003 / 30008
    pumping_wait: float = 1800.0  # 30450 blocks last 15-30 min


@dataclass(frozen=True)
class RetryPlan:
    action: str  # done | retry | reconcile | stop
    delay: float = 0.0
    reason: str | None = None


def classify(http_status: int | None = None, error_code: int | None = None,
             failure: str | None = None) -> Classification:
    """Classify one outcome.

    ``failure`` is a transport failure: ``"connect"`` (nothing was sent: safe to retry),
    ``"timeout"`` or ``"disconnect"`` (the request may have been accepted: ambiguous).
    """
    if failure == "connect":
        return Classification(RETRY)
    if failure in ("timeout", "disconnect"):
        return Classification(AMBIGUOUS)
    kind = CODES.get(error_code) if error_code else None
    if kind is None:
        if http_status == 429:
            kind = RETRY
        elif http_status is not None and http_status >= 500:
            kind = AMBIGUOUS
        elif error_code or (http_status is not None and http_status >= 400):
            kind = REJECTED
        else:
            kind = OK
    return Classification(kind, error_code, opt_out=kind == OPTED_OUT,
                          suppress_number=kind == BAD_NUMBER, alert=kind == CONFIG)


def backoff(attempt: int, base: float, cap: float, rand: float) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, so retries spread
    out without ever collapsing to zero."""
    ceiling = float(min(cap, base * 2 ** max(0, attempt - 1)))
    return ceiling / 2 + rand * ceiling / 2


def _until_pacific_midnight(now: float) -> float:
    local = datetime.fromtimestamp(now, PACIFIC)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=PACIFIC)
    return midnight.timestamp() - now


def plan(c: Classification, attempt: int, rand: float, now: float,
         policy: RetryPolicy = RetryPolicy(), retry_after: float | None = None) -> RetryPlan:
    """The next step after ``attempt`` attempts (1 = the first call) ended as ``c``.

    ``reconcile`` means: wait ``delay``, look the message up (see
    :meth:`smsflow.twilio_client.TwilioSender.find_by_idempotency`), and send again
    only if it is not found.
    """
    if c.kind == OK:
        return RetryPlan("done")
    if c.kind not in RETRYABLE and c.kind != AMBIGUOUS:
        return RetryPlan("stop", reason=c.kind)
    limit = policy.limited_attempts if c.kind == RETRY_LIMITED else policy.max_attempts
    if attempt >= limit:
        return RetryPlan("stop", reason="max_attempts")
    if c.kind == WAIT:
        delay = _until_pacific_midnight(now) if c.code == 30023 else policy.pumping_wait
        delay += rand * 60
    else:
        base = policy.slow_base if c.kind == RETRY_SLOW else policy.base
        delay = backoff(attempt, base, policy.cap, rand)
    if retry_after:
        delay = max(delay, retry_after)
    return RetryPlan("reconcile" if c.kind == AMBIGUOUS else "retry", delay, c.kind)
