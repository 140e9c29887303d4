"""Every metric the alert rules and the Grafana dashboard query is exported by a running
worker or webhook server (``deploy/prometheus/metrics.txt`` lists them), and the worker's
health endpoints say what they promise."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from smsflow.core.records.events import IdentifyEvent, TrackEvent
from tests.integration.harness import wait_for

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent


def exported(url: str) -> set[str]:
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        names.update(sample.name for sample in family.samples)
    return names


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_every_metric_of_the_rules_and_dashboard_is_exported(stack_factory):
    stack = stack_factory(SMSFLOW_FLOWS_DIR=HERE / "flows", SMSFLOW_POLICY=HERE / "policy.yaml",
                          SMSFLOW_TICK_INTERVAL=0.2)
    stack.start_twilio()
    worker = stack.start_worker()
    base = f"http://127.0.0.1:{worker.web_port}"
    assert status(f"{base}/livez") == 200 and status(f"{base}/readyz") == 200
    stack.produce_events([
        IdentifyEvent(message_id="m-1", user_id="mx", timestamp="2026-11-28T09:00:00Z",
                      traits={"phone": "+14155550199", "country": "US"}),
        TrackEvent(message_id="m-2", user_id="mx", event="Product Viewed",
                   timestamp="2026-11-28T09:01:00Z", properties={"product_id": "p"})])
    wait_for(lambda: "smsflow_agent_batch_seconds_count" in exported(f"{base}/metrics"),
             message="a batch measured")
    names = exported(f"{base}/metrics") | exported(f"{stack.webhook_url}/metrics")
    wanted = [line.strip() for line in (REPO / "deploy/prometheus/metrics.txt").read_text().splitlines()
              if line.strip()]
    missing = [name for name in wanted if name not in names]
    assert missing == [], f"queried by the rules or dashboard but not exported: {missing}"
    # no personal data on the worker's port: Faust's table views are off
    assert status(f"{base}/table/phones/") == 404
    assert status(f"{base}/table/customers/mx") == 404
