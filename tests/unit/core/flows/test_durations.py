import pytest

from smsflow.core.flows.durations import format_duration, iso, parse_duration


@pytest.mark.parametrize("text,seconds", [
    ("45s", 45), ("30m", 1800), ("2h", 7200), ("3d", 259200), ("1w", 604800),
    ("1h30m", 5400), ("1.5h", 5400), ("0s", 0),
])
def test_parse(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "3", "3x", "h", "-1h", "1 h", "1h 30m", 30, None])
def test_parse_rejects_with_plain_message(bad):
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(bad)


def test_format_round_trips():
    for text in ("45s", "30m", "1h30m", "3d", "30d"):
        assert format_duration(parse_duration(text)) == text
    assert format_duration(0) == "0s"


def test_iso():
    assert iso(1_764_324_000.0) == "2025-11-28T10:00:00.000Z"
    assert iso(None) is None
