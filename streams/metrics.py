"""Every Prometheus metric the worker exports, in one place (names are a contract:
``deploy/prometheus/alerts.yml`` and the Grafana dashboard query them, and a test starts a
worker and checks each name listed in ``deploy/prometheus/metrics.txt`` is exported).

Labels stay low-cardinality: reasons and event names come from closed sets (anything
else is counted as ``other``), never a customer, phone or message id.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter("smsflow_events_in_total", "Producer events ingested, by type and event",
                    ["type", "event"])
OUTCOMES = Counter("smsflow_outcomes_total", "Outcome records written, by type and reason",
                   ["type", "reason"])
GATE_VERDICTS = Counter("smsflow_gate_verdicts_total", "Compliance gate verdicts",
                        ["action", "reason"])
SENDS = Counter("smsflow_sends_total", "Provider sends by sender and status", ["sender", "status"])
PROVIDER_ERRORS = Counter("smsflow_provider_errors_total", "Provider errors by sender and code",
                          ["sender", "code"])
PROVIDER_LATENCY = Histogram("smsflow_provider_latency_seconds", "Provider create-call latency",
                             ["sender"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
AUTH_FAILURES = Counter("smsflow_provider_auth_failures_total",
                        "Provider answers 401/403 (credentials)", ["sender"])
SENDER_PAUSED = Gauge("smsflow_sender_paused", "1 while a sender is paused (bad credentials)",
                      ["sender"])
DLQ = Counter("smsflow_dlq_total", "Records dead-lettered, by reason and stage", ["reason", "stage"])
TIMERS_PENDING = Gauge("smsflow_timers_pending", "Timers stored on this worker's partitions",
                       ["table"])
TIMER_LATENESS = Histogram("smsflow_timer_lateness_seconds", "Emit time minus due time", ["table"],
                           buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
TIMERS_EMITTED = Counter("smsflow_timers_emitted_total", "Due timers emitted by the ticker", ["table"])
RATELIMIT_WAIT = Counter("smsflow_ratelimit_wait_seconds_total",
                         "Seconds sends waited for their sender's rate limit", ["sender"])
CONSUMER_LAG = Gauge("smsflow_consumer_lag", "Records not yet processed", ["topic", "partition"])
REBALANCES = Counter("smsflow_rebalances_total", "Consumer-group rebalances seen by this worker")
RECOVERY_REMAINING = Gauge("smsflow_recovery_remaining_records",
                           "Changelog records still to restore before processing")
RECOVERY_SECONDS = Gauge("smsflow_recovery_last_seconds", "Duration of the last state restore")
WORKER_READY = Gauge("smsflow_worker_ready", "1 when partitions are assigned and state recovered")
BATCH_FAILURES = Counter("smsflow_batch_failures_total", "Batch stages that failed and were retried",
                         ["agent", "stage"])
AGENT_EVENTS = Counter("smsflow_agent_events_total", "Records processed by agent", ["agent"])
BATCH_SECONDS = Histogram("smsflow_agent_batch_seconds", "Time to process and commit one batch",
                          ["agent"], buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
DISPATCH_BACKLOG = Gauge("smsflow_dispatch_backlog", "Sends queued in the dispatcher, not yet sent")
PRODUCE_RETRIES = Counter("smsflow_produce_retries_total", "Records produced again after a failure",
                          ["what"])
REKEYED = Counter("smsflow_rekeyed_total", "Input records forwarded to their key's home partition",
                  ["topic"])

KNOWN_EVENTS = frozenset({
    "Product Viewed", "Added to Cart", "Checkout Started", "Order Placed", "Order Shipped",
    "Order Delivered", "Refund Initiated", "Back In Stock Requested", "Back In Stock",
    "SMS Link Clicked"})


def event_label(name: str | None) -> str:
    return name if name in KNOWN_EVENTS else ("" if name is None else "other")


def reason_label(reason: str | None) -> str:
    """Reasons are short codes; keep only the code part of "code:detail" and bound length."""
    if not reason:
        return ""
    return reason.split(":", 1)[0][:40]
