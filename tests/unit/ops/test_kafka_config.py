"""smsflow.kafka_config: one place that turns the SMSFLOW_KAFKA_* settings into client
configuration for confluent-kafka, aiokafka and Faust."""

import ssl
import subprocess

import faust
import pytest
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from smsflow.kafka_admin import wanted_topics
from smsflow.kafka_config import (KafkaConfigError, aiokafka_kwargs, check, confluent_config,
                                  describe, faust_credentials)
from smsflow.streams.settings import Settings

SASL = dict(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username="svc-smsflow", kafka_sasl_password="s3cret")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed CA certificate and a client certificate/key pair (PEM)."""
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "client.key", folder / "client.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=smsflow-test", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return {"ca": str(cert), "cert": str(cert), "key": str(key)}


def test_plaintext_is_the_default_and_adds_nothing():
    settings = Settings(broker="kafka://k1:9092,kafka://k2:9092")
    assert confluent_config(settings) == {"bootstrap.servers": "k1:9092,k2:9092"}
    assert aiokafka_kwargs(settings) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings) is None
    assert describe(settings) == "k1:9092,k2:9092"


def test_sasl_ssl_for_every_client():
    settings = Settings(broker="kafka://pkc-1.aws.confluent.cloud:9092", **SASL)
    conf = confluent_config(settings, **{"group.id": "g"}, logger=None)
    assert conf == {"bootstrap.servers": "pkc-1.aws.confluent.cloud:9092",
                    "security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-512",
                    "sasl.username": "svc-smsflow", "sasl.password": "s3cret",
                    "group.id": "g", "logger": None}
    kwargs = aiokafka_kwargs(settings)
    assert {k: v for k, v in kwargs.items() if k != "ssl_context"} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc-smsflow", "sasl_plain_password": "s3cret"}
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    # What Faust hands to aiokafka for its consumer, producer and topic creation:
    auth = credentials_to_aiokafka_auth(credentials)
    assert {k: v for k, v in auth.items() if k != "ssl_context"} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc-smsflow", "sasl_plain_password": "s3cret"}
    assert isinstance(auth["ssl_context"], ssl.SSLContext)
    assert describe(settings) == "pkc-1.aws.confluent.cloud:9092 (SASL_SSL, SCRAM-SHA-512 as svc-smsflow)"
    assert "s3cret" not in repr(settings)


def test_sasl_plaintext_defaults_to_plain_and_has_no_tls():
    settings = Settings(kafka_security_protocol="sasl_plaintext", kafka_sasl_username="u",
                        kafka_sasl_password="p")
    assert confluent_config(settings)["sasl.mechanism"] == "PLAIN"
    assert "ssl_context" not in aiokafka_kwargs(settings)
    auth = credentials_to_aiokafka_auth(faust_credentials(settings))
    assert auth["security_protocol"] == "SASL_PLAINTEXT" and auth["sasl_mechanism"] == "PLAIN"
    assert auth["ssl_context"] is None


def test_mutual_tls_files(tls_files):
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=tls_files["ca"],
                        kafka_ssl_certfile=tls_files["cert"], kafka_ssl_keyfile=tls_files["key"])
    assert confluent_config(settings) == {
        "bootstrap.servers": "127.0.0.1:9092", "security.protocol": "ssl",
        "ssl.ca.location": tls_files["ca"], "ssl.certificate.location": tls_files["cert"],
        "ssl.key.location": tls_files["key"]}
    context = aiokafka_kwargs(settings)["ssl_context"]
    assert context.cert_store_stats()["x509_ca"] == 1  # our CA, not the system's
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SSLCredentials)
    assert credentials_to_aiokafka_auth(credentials)["security_protocol"] == "SSL"


@pytest.mark.parametrize("changes, message", [
    (dict(kafka_security_protocol="TLS"), "SMSFLOW_KAFKA_SECURITY_PROTOCOL must be one of"),
    (dict(kafka_security_protocol="SASL_SSL"), "needs SMSFLOW_KAFKA_SASL_USERNAME"),
    (dict(kafka_security_protocol="SASL_SSL", kafka_sasl_username="u", kafka_sasl_password="p",
          kafka_sasl_mechanism="GSSAPI"), "SMSFLOW_KAFKA_SASL_MECHANISM must be one of"),
    (dict(kafka_sasl_username="u", kafka_sasl_password="p"), "set SASL_SSL"),
    (dict(kafka_ssl_cafile="/etc/hostname"), "set SSL or SASL_SSL"),
    (dict(kafka_security_protocol="SSL", kafka_ssl_cafile="/no/such/ca.pem"), "no such file"),
    (dict(kafka_security_protocol="SSL", kafka_ssl_certfile="/etc/hostname"), "go together"),
    (dict(topic_replication=3, topic_min_insync=4), "SMSFLOW_TOPIC_MIN_INSYNC (4)"),
    (dict(topic_replication=0), "SMSFLOW_TOPIC_REPLICATION (0)"),
])
def test_inconsistent_settings_are_refused_with_the_variable_named(changes, message):
    settings = Settings(**changes)
    with pytest.raises(KafkaConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check(settings)
    with pytest.raises(KafkaConfigError):
        confluent_config(settings)
    with pytest.raises(KafkaConfigError):
        aiokafka_kwargs(settings)


def test_settings_read_from_the_environment(monkeypatch, tls_files):
    env = {"SMSFLOW_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "SMSFLOW_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
           "SMSFLOW_KAFKA_SASL_USERNAME": "alice", "SMSFLOW_KAFKA_SASL_PASSWORD": "pw",
           "SMSFLOW_KAFKA_SSL_CAFILE": tls_files["ca"], "SMSFLOW_TOPIC_REPLICATION": "3",
           "SMSFLOW_TOPIC_MIN_INSYNC": "2"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = Settings.from_env()
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism, s.kafka_sasl_username,
            s.kafka_sasl_password, s.kafka_ssl_cafile, s.topic_replication, s.topic_min_insync) == (
        "SASL_SSL", "SCRAM-SHA-256", "alice", "pw", tls_files["ca"], 3, 2)
    assert confluent_config(s)["ssl.ca.location"] == tls_files["ca"]
    for name in env:
        monkeypatch.delenv(name)
    d = Settings.from_env()
    assert (d.kafka_security_protocol, d.kafka_sasl_username, d.topic_replication,
            d.topic_min_insync) == ("PLAINTEXT", None, 1, 1)


def test_created_topics_get_min_insync_replicas():
    wanted = wanted_topics(Settings(topic_replication=3, topic_min_insync=2, partitions=12))
    assert wanted["smsflow.events"] == (12, {"min.insync.replicas": "2"})
    assert wanted["smsflow-phones-changelog"] == (
        12, {"cleanup.policy": "compact", "min.insync.replicas": "2"})
    assert all(config["min.insync.replicas"] == "2" for _, config in wanted.values())
