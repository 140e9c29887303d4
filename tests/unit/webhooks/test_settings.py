"""Webhook-server settings from the environment: safe defaults, one folder per replica."""

from pathlib import Path

import pytest

from smsflow.cli import build_parser, main
from smsflow.streams.settings import Settings
from smsflow.webhooks.settings import WebhookSettings


def test_defaults_bind_loopback_and_live_under_the_data_dir(monkeypatch):
    for name in ("SMSFLOW_WEBHOOK_HOST", "SMSFLOW_WEBHOOK_DIR", "SMSFLOW_WEBHOOK_SPOOL_DIR"):
        monkeypatch.delenv(name, raising=False)
    ws = WebhookSettings.from_env(Settings(data_dir=Path("/data"), app_id="shop"))
    assert ws.host == "127.0.0.1"
    assert ws.state_dir == Path("/data/webhooks-shop")
    assert ws.spool == Path("/data/webhooks-shop/spool")
    assert (ws.max_body_bytes, ws.spool_max_bytes) == (64 * 1024, 256 * 1024 * 1024)
    assert build_parser().parse_args(["webhooks"]).host is None  # --host does not override


def test_every_setting_is_read_from_the_environment(monkeypatch):
    env = {"SMSFLOW_WEBHOOK_HOST": "0.0.0.0", "SMSFLOW_WEBHOOK_DIR": "/s",
           "SMSFLOW_WEBHOOK_SPOOL_DIR": "/spool", "SMSFLOW_WEBHOOK_SPOOL_MAX_BYTES": "1000",
           "SMSFLOW_WEBHOOK_MAX_BODY_BYTES": "2000", "SMSFLOW_WEBHOOK_MAX_FIELDS": "9",
           "SMSFLOW_WEBHOOK_REPLAY_WINDOW": "77", "SMSFLOW_WEBHOOK_LINK_WAIT": "0.5",
           "SMSFLOW_WEBHOOK_DELIVERY_TIMEOUT_MS": "3000", "SMSFLOW_WEBHOOK_RETRY_MAX": "4"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ws = WebhookSettings.from_env(Settings())
    assert ws == WebhookSettings(host="0.0.0.0", state_dir=Path("/s"), spool_dir=Path("/spool"),
                                 spool_max_bytes=1000, max_body_bytes=2000, max_fields=9,
                                 replay_window=77, link_wait=0.5, delivery_timeout_ms=3000,
                                 retry_max=4.0)


def test_a_bad_number_is_one_line_and_exit_code_2(monkeypatch, capsys):
    monkeypatch.setenv("SMSFLOW_WEBHOOK_SPOOL_MAX_BYTES", "lots")
    assert main(["webhooks"]) == 2
    err = capsys.readouterr().err
    assert "SMSFLOW_WEBHOOK_SPOOL_MAX_BYTES" in err and err.count("\n") == 1


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit):
        main(["webhooks", "--help"])
    assert "--host" in capsys.readouterr().out
