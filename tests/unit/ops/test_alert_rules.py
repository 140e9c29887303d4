"""Alert rules, their Kubernetes copy, the Grafana dashboard and the metric contract.

promtool (built by `make setup` into deploy/.cache/bin) checks the rules and runs their unit
tests (deploy/prometheus/alerts.test.yml), and parses every dashboard query. A missing
promtool is a failure, not a skip: `make setup` installs it.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
PROM = REPO / "deploy" / "prometheus"
RULES = PROM / "alerts.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "smsflow-dashboard.json"
K8S_RULE = REPO / "deploy" / "k8s" / "prometheusrule.yaml"
METRICS = PROM / "metrics.txt"

# The names the worker and the webhook server export (the contract with the runtime).
WORKER_METRICS = {
    "smsflow_events_in_total", "smsflow_outcomes_total", "smsflow_gate_verdicts_total",
    "smsflow_sends_total", "smsflow_provider_errors_total", "smsflow_provider_latency_seconds",
    "smsflow_provider_auth_failures_total", "smsflow_sender_paused", "smsflow_dlq_total",
    "smsflow_timers_pending", "smsflow_timer_lateness_seconds", "smsflow_timers_emitted_total",
    "smsflow_ratelimit_wait_seconds_total", "smsflow_consumer_lag", "smsflow_rebalances_total",
    "smsflow_recovery_remaining_records", "smsflow_worker_ready", "smsflow_batch_failures_total",
    "smsflow_agent_events_total", "smsflow_agent_batch_seconds", "smsflow_dispatch_backlog",
}
WEBHOOK_METRICS = {
    "smsflow_webhook_requests_total", "smsflow_webhook_rejected_total",
    "smsflow_webhook_spool_records", "smsflow_webhook_spool_bytes",
    "smsflow_webhook_publish_failures_total", "smsflow_webhook_kafka_up",
    "smsflow_webhook_clicks_total",
}
# prometheus-client's process collector, exported by both
PROCESS_METRICS = {"process_resident_memory_bytes", "process_cpu_seconds_total"}
HISTOGRAMS = {"smsflow_provider_latency_seconds", "smsflow_timer_lateness_seconds",
              "smsflow_agent_batch_seconds"}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = os.environ.get("PROMTOOL") or shutil.which("promtool", path=str(REPO / "deploy" / ".cache" / "bin")) \
        or shutil.which("promtool")
    if not found:
        pytest.fail("promtool not found: `make setup` builds it into deploy/.cache/bin "
                    "(or set PROMTOOL=/path/to/promtool)")
    return found


def run(cmd, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def rule_groups() -> list[dict]:
    return yaml.safe_load(RULES.read_text())["groups"]


def alerts() -> list[dict]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(f"{p['id']}{t['refId']}", t["expr"]) for p in panels for t in p.get("targets", [])]


METRIC_NAME = re.compile(r"\b((?:smsflow|process)_[a-z0-9_]+)\b")


def referenced(exprs) -> set[str]:
    names = set()
    for expr in exprs:
        for name in METRIC_NAME.findall(expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            names.add(base if base in HISTOGRAMS else name)
    return names


def test_promtool_checks_the_rules(promtool):
    result = run([promtool, "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass(promtool):
    result = run([promtool, "test", "rules", "alerts.test.yml"], cwd=PROM)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_can_fail(promtool, tmp_path):
    """Loosen one threshold: the unit tests must notice."""
    (tmp_path / "alerts.yml").write_text(RULES.read_text().replace(
        "sum(smsflow_dispatch_backlog) > 0", "sum(smsflow_dispatch_backlog) > 10"))
    shutil.copy(PROM / "alerts.test.yml", tmp_path)
    result = run([promtool, "test", "rules", "alerts.test.yml"], cwd=tmp_path)
    assert result.returncode != 0 and "SmsflowNoSendsWhileDue" in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_case():
    tests = yaml.safe_load((PROM / "alerts.test.yml").read_text())["tests"]
    checks = [c for t in tests for c in t["alert_rule_test"]]
    names = {a["alert"] for a in alerts()}
    assert {c["alertname"] for c in checks if c["exp_alerts"]} == names
    assert {c["alertname"] for c in checks if not c["exp_alerts"]} == names


def test_the_issue_s_alerts_exist_with_severity_and_runbook():
    by_name = {a["alert"]: a for a in alerts()}
    wanted = {"SmsflowConsumerLagGrowing", "SmsflowDeadLetterRate", "SmsflowProviderErrorRate",
              "SmsflowProviderAuthFailure", "SmsflowSenderPaused", "SmsflowTimersLate",
              "SmsflowNoSendsWhileDue", "SmsflowWorkerNotReady", "SmsflowWebhookSpoolGrowing",
              "SmsflowWebhookKafkaDown", "SmsflowBatchFailures"}
    assert wanted <= set(by_name)
    readme = (REPO / "deploy" / "README.md").read_text()
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", readme, re.M)}
    for alert in by_name.values():
        assert alert["labels"]["severity"] in ("critical", "warning"), alert["alert"]
        assert {"summary", "description", "runbook"} <= set(alert["annotations"])
        anchor = alert["annotations"]["runbook"].split("#")[1]
        assert anchor in anchors, f"{alert['alert']}: no section #{anchor} in deploy/README.md"


def test_kubernetes_prometheusrule_has_the_same_rules():
    docs = [d for d in yaml.safe_load_all(K8S_RULE.read_text()) if d]
    (rule,) = docs
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == rule_groups(), \
        "out of date: make prometheusrule (deploy/prometheus/to_prometheusrule.py)"


def test_every_dashboard_query_parses(promtool, tmp_path):
    """promtool parses PromQL in rule files: turn each panel query into a recording rule."""
    substitutions = {"$__rate_interval": "5m", "$job": "smsflow-worker", "$instance": ".*",
                     "$webhook_job": "smsflow-webhooks"}
    rules = []
    for ref, expr in dashboard_queries():
        for variable, value in substitutions.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"panel {ref}: unknown variable in {expr}"
        rules.append({"record": f"dashboard:panel_{ref}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_layout():
    board = json.loads(DASHBOARD.read_text())
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panel {p['title']!r} overlaps another"
                cells.add((x, y))
    variables = {v["name"] for v in board["templating"]["list"]}
    used = set(re.findall(r"\$(\w+)", " ".join(e for _, e in dashboard_queries())))
    assert used - {"__rate_interval"} <= variables


def test_rules_and_dashboard_use_only_exported_metrics():
    """No panel or rule queries a metric nobody exports (the old dashboard had two)."""
    exported = WORKER_METRICS | WEBHOOK_METRICS | PROCESS_METRICS
    used = referenced([a["expr"] for a in alerts()] + [e for _, e in dashboard_queries()])
    assert used <= exported, used - exported
    assert WORKER_METRICS | WEBHOOK_METRICS <= used, "contract metrics nobody looks at"


def test_metrics_txt_lists_every_referenced_metric():
    listed = METRICS.read_text().split()
    assert listed == sorted(set(listed))
    used = referenced([a["expr"] for a in alerts()] + [e for _, e in dashboard_queries()])
    assert set(listed) == used
