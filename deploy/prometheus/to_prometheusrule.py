"""Write deploy/k8s/prometheusrule.yaml from deploy/prometheus/alerts.yml (one source of truth).

    .venv/bin/python deploy/prometheus/to_prometheusrule.py      # or: make prometheusrule

tests/unit/ops/test_alert_rules.py fails when the two differ.
"""

from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "alerts.yml"
TARGET = HERE.parent / "k8s" / "prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/alerts.yml by deploy/prometheus/to_prometheusrule.py
# (make prometheusrule): edit the rules there, not here.
#
# For the Prometheus Operator (kube-prometheus-stack, OpenShift monitoring...). Not listed in
# kustomization.yaml, because `kubectl apply` fails on clusters without the PrometheusRule
# CRD; apply it on its own:
#
#   kubectl apply -n smsflow -f deploy/k8s/prometheusrule.yaml
#
# Your Prometheus selects rules by label (kube-prometheus-stack: ruleSelector, often
# `release: <helm release name>`): add that label below if it differs.
"""


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render() -> str:
    groups = yaml.safe_load(SOURCE.read_text())["groups"]
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "smsflow", "namespace": "smsflow",
                     "labels": {"app.kubernetes.io/name": "smsflow",
                                "app.kubernetes.io/part-of": "smsflow",
                                "role": "alert-rules"}},
        "spec": {"groups": groups},
    }
    return HEADER + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=100,
                              allow_unicode=True)


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(HERE.parent.parent)}")
