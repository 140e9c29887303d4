"""Static checks of what runs smsflow: the compose file (no Docker engine here, so no
`docker compose config`: the YAML, its references and its settings are checked instead),
the Prometheus configuration and the Kubernetes manifests."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
DEPLOY_README = (REPO / "deploy" / "README.md").read_text()
SOURCES = "\n".join(p.read_text() for d in ("smsflow", "streams", "agents")
                    for p in (REPO / d).rglob("*.py"))


def documented() -> set[str]:
    """Variables in the deploy/README.md environment table."""
    section = DEPLOY_README.split("## Environment variables", 1)[1]
    return set(re.findall(r"^\| `(SMSFLOW_[A-Z0-9_]+)`", section, re.M))


def test_compose_starts_the_whole_stack_by_default():
    services = COMPOSE["services"]
    assert {"kafka", "topics", "worker", "webhooks", "sandbox", "prometheus", "grafana"} <= set(services)
    assert not [name for name, s in services.items() if s.get("profiles")]
    for name, service in services.items():
        assert service.get("image") or service.get("build"), name
        depends = service.get("depends_on", [])
        for dependency in (depends if isinstance(depends, list) else depends.keys()):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for config in service.get("configs", []):
            assert config["source"] in COMPOSE["configs"], name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).is_file(), f"{name}: {source} missing"
            elif ":" in volume:
                assert source in COMPOSE["volumes"], f"{name}: volume {source} not declared"


def test_compose_uses_the_documented_settings():
    env = COMPOSE["x-smsflow-env"]
    names = set(env) | {k for s in COMPOSE["services"].values()
                        for k in (s.get("environment") or {}) if k.startswith("SMSFLOW_")}
    assert names <= documented(), names - documented()
    security = {"SMSFLOW_KAFKA_SECURITY_PROTOCOL", "SMSFLOW_KAFKA_SASL_MECHANISM",
                "SMSFLOW_KAFKA_SASL_USERNAME", "SMSFLOW_KAFKA_SASL_PASSWORD",
                "SMSFLOW_KAFKA_SSL_CAFILE", "SMSFLOW_KAFKA_SSL_CERTFILE",
                "SMSFLOW_KAFKA_SSL_KEYFILE", "SMSFLOW_TOPIC_REPLICATION", "SMSFLOW_TOPIC_MIN_INSYNC"}
    assert security <= set(env)
    for name in security | {"SMSFLOW_BROKER"}:  # overridable from the shell or .env
        assert env[name].startswith("${" + name), name
    # every smsflow service gets the shared settings
    for name in ("topics", "worker", "webhooks"):
        assert set(env) <= set(COMPOSE["services"][name]["environment"]), name


def test_every_documented_variable_is_read_by_the_code():
    for name in documented():
        assert f'"{name}"' in SOURCES, f"{name} is documented but nothing reads it"


def test_kubernetes_env_uses_documented_settings():
    text = (REPO / "deploy" / "k8s" / "smsflow.env").read_text()
    keys = set(re.findall(r"^#? ?(SMSFLOW_[A-Z0-9_]+)=", text, re.M))
    secret = yaml.safe_load((REPO / "deploy" / "k8s" / "secret.example.yaml").read_text())
    keys |= set(secret["stringData"])
    assert {"SMSFLOW_KAFKA_SECURITY_PROTOCOL", "SMSFLOW_KAFKA_SASL_PASSWORD",
            "SMSFLOW_TOPIC_REPLICATION", "SMSFLOW_TOPIC_MIN_INSYNC"} <= keys
    assert keys <= documented(), keys - documented()
    # credentials belong in the Secret, never in the ConfigMap's env file
    assert not re.search(r"^SMSFLOW_KAFKA_SASL_(USERNAME|PASSWORD)=", text, re.M)


def test_kustomization_resources_exist_and_parse():
    kustomization = yaml.safe_load((REPO / "deploy" / "k8s" / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        docs = [d for d in yaml.safe_load_all((REPO / "deploy" / "k8s" / resource).read_text()) if d]
        assert docs and all("kind" in d and "apiVersion" in d for d in docs), resource
    # needs the Prometheus Operator's CRD: applied on its own (see the file)
    assert "prometheusrule.yaml" not in kustomization["resources"]
    for generator in kustomization["configMapGenerator"]:
        for item in generator.get("files", []) + generator.get("envs", []):
            path = item.split("=")[-1]
            assert (REPO / "deploy" / "k8s" / path).resolve().is_file(), path


@pytest.mark.parametrize("component, port", [("worker-statefulset.yaml", "6066"),
                                             ("webhooks.yaml", "8080")])
def test_pods_are_scraped(component, port):
    docs = [d for d in yaml.safe_load_all((REPO / "deploy" / "k8s" / component).read_text()) if d]
    workload = next(d for d in docs if d["kind"] in ("StatefulSet", "Deployment"))
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == port
    assert annotations["prometheus.io/path"] == "/metrics"


def test_prometheus_config_scrapes_workers_and_webhooks_and_loads_the_rules():
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["smsflow-worker"]["dns_sd_configs"][0]["names"] == ["worker"]
    assert jobs["smsflow-webhooks"]["dns_sd_configs"][0] == {
        "names": ["webhooks"], "type": "A", "port": 8080, "refresh_interval": "15s"}
    assert config["rule_files"] == ["alerts.yml"]
    mounts = COMPOSE["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in mounts
    # the dashboard's default job variables are these job names
    board = (REPO / "deploy" / "grafana" / "smsflow-dashboard.json").read_text()
    assert '"query": "smsflow-worker"' in board and '"query": "smsflow-webhooks"' in board


def test_promtool_accepts_the_prometheus_config():
    promtool = os.environ.get("PROMTOOL") or shutil.which(
        "promtool", path=str(REPO / "deploy" / ".cache" / "bin")) or shutil.which("promtool")
    assert promtool, "promtool not found: make setup"
    result = subprocess.run([promtool, "check", "config", "prometheus.yml"],
                            cwd=REPO / "deploy" / "prometheus", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
