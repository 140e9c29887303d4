"""Phone masking, the log filter, and refusing to start against real Twilio with defaults."""

import logging
import subprocess
import sys

import pytest

from smsflow.cli import main
from smsflow.streams.settings import Settings
from smsflow.privacy import PhoneMaskFilter, mask_phone, mask_text, refusal

REAL = dict(twilio_base_url=None, twilio_auth_token="a" * 32, link_secret="s" * 32)


@pytest.mark.parametrize("raw, masked", [
    ("+14155550199", "+1********99"),
    ("+447700900123", "+44********23"),
    ("+33612345678", "+33*******78"),
    ("+8613800138000", "+86*********00"),
    ("+1 (415) 555-0199", "+1********99"),
    ("14155550199", "+1********99"),
    ("12345", "***"),
    ("", "***"),
    (None, "***"),
])
def test_mask_keeps_country_code_and_last_two_digits(raw, masked):
    assert mask_phone(raw) == masked


def test_mask_shows_at_most_the_country_code_and_two_digits():
    for phone in ("+14155550199", "+447700900123", "+61412345678", "+5511987654321"):
        shown = [c for c in mask_phone(phone) if c.isdigit()]
        assert len(shown) <= 2 + 3


def test_mask_text_masks_phones_but_not_dates_epochs_or_sids():
    text = "from +14155550199 via %2B447700900123 at 2025-11-28 t=1764324000 SMa1234567890"
    assert mask_text(text) == ("from +1********99 via +44********23 at 2025-11-28 "
                               "t=1764324000 SMa1234567890")


def test_log_filter_masks_phones_in_any_librarys_message(caplog):
    logger = logging.getLogger("some.library")
    handler_filter = PhoneMaskFilter()
    caplog.handler.addFilter(handler_filter)
    try:
        caplog.set_level(logging.INFO, logger="some.library")
        logger.info("POST /x?To=%s failed", "+14155550199")
    finally:
        caplog.handler.removeFilter(handler_filter)
    assert "+14155550199" not in caplog.text
    assert "+1********99" in caplog.text


def test_the_sandbox_may_use_the_public_defaults():
    assert refusal(Settings()) is None  # default base URL is the local sandbox


@pytest.mark.parametrize("changes, word", [
    (dict(twilio_auth_token="sandbox-token"), "auth token"),
    (dict(twilio_auth_token=""), "auth token"),
    (dict(twilio_auth_token="  "), "auth token"),
    (dict(link_secret="change-me"), "link secret"),
    (dict(link_secret=""), "link secret"),
    (dict(twilio_base_url="https://api.twilio.com", twilio_auth_token="sandbox-token"),
     "auth token"),
])
def test_real_twilio_with_a_default_secret_is_refused(changes, word):
    reason = refusal(Settings(**{**REAL, **changes}))
    assert reason is not None and word in reason
    assert "\n" not in reason


def test_real_twilio_with_real_secrets_starts():
    assert refusal(Settings(**REAL)) is None


def test_the_command_exits_2_with_one_line(monkeypatch, capsys):
    monkeypatch.setenv("SMSFLOW_TWILIO_ACCOUNT_SID", "AC" + "1" * 32)
    monkeypatch.setenv("SMSFLOW_TWILIO_AUTH_TOKEN", "a-real-looking-token")
    monkeypatch.delenv("SMSFLOW_TWILIO_BASE_URL", raising=False)
    monkeypatch.setenv("SMSFLOW_LINK_SECRET", "change-me")
    assert main(["webhooks"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "link secret" in err
    assert "a-real-looking-token" not in err


def test_the_process_exits_2_without_a_traceback(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "SMSFLOW_TWILIO_BASE_URL": "",
           "SMSFLOW_DATA_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "smsflow.cli", "webhooks"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "auth token" in result.stderr
