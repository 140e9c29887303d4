"""Settings from the environment."""

import pytest

from smsflow.streams.settings import Settings, broker_host_port


def test_env_overrides_and_topic_names(monkeypatch):
    monkeypatch.setenv("SMSFLOW_TOPIC_PREFIX", "shop.")
    monkeypatch.setenv("SMSFLOW_PARTITIONS", "12")
    monkeypatch.setenv("SMSFLOW_BROKER", "kafka://a:9092,kafka://b:9092")
    s = Settings.from_env()
    assert s.topic("events") == "shop.events"
    assert s.partitions == 12
    assert s.bootstrap == "a:9092,b:9092"


def test_real_twilio_credentials_leave_the_sandbox(monkeypatch):
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "1" * 32)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "secret")
    monkeypatch.delenv("SMSFLOW_TWILIO_BASE_URL", raising=False)
    s = Settings.from_env()
    assert s.twilio_base_url is None
    assert s.twilio_account_sid.startswith("AC1")


def test_bad_numbers_name_the_variable(monkeypatch):
    monkeypatch.setenv("SMSFLOW_PARTITIONS", "eight")
    with pytest.raises(ValueError, match="SMSFLOW_PARTITIONS"):
        Settings.from_env()


def test_broker_scheme_is_stripped():
    assert broker_host_port("kafka://127.0.0.1:9092") == "127.0.0.1:9092"
