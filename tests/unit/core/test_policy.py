"""The policy file: defaults, the shipped example, and errors that name file and line."""

from pathlib import Path

import pytest

from smsflow.core.policy import (PolicyError, default_policy, load_policy, parse_policy_text,
                                 state_code)
from smsflow.core.quiet_hours import Window

REPO = Path(__file__).resolve().parents[3]


def test_default_policy_has_tcpa_window_and_fl_ok_md_rules():
    p = default_policy()
    assert p.quiet_hours["marketing"].windows == (Window(8 * 60, 21 * 60),)
    for code in ("FL", "OK", "MD"):
        rule = p.states[code]
        assert rule.hours.windows == (Window(8 * 60, 20 * 60),)
        assert [(c.window, c.max, c.on_cap) for c in rule.caps] == [(86400.0, 3, "defer")]
    assert p.states["TX"].hours.windows[1].days == frozenset({6})
    assert p.states["RI"].hours.skip_holidays and 6 not in p.states["RI"].hours.windows[0].days
    assert p.fallback_timezone == "America/New_York"
    assert p.senders and p.max_defer == 7 * 86400


def test_shipped_example_validates():
    p = load_policy(REPO / "deploy" / "policy.yaml")
    assert p.brand.name == "Acme Skincare"
    assert {s.type for s in p.senders} == {"short_code", "toll_free", "long_code"}
    assert [c.name for c in p.caps_for("marketing")] == ["marketing-daily", "marketing-weekly"]
    assert "KY" in p.states  # built-in states stay unless overridden


def test_sections_merge_with_defaults():
    p = parse_policy_text("""
states:
  FL: {}
  NY: {hours: {start: "10:00", end: "19:00", days: [mon, tue]}}
senders:
  - {number: "+14155550123", type: long_code, mps: 1, categories: [transactional]}
""")
    assert p.states["FL"].hours is None and p.states["FL"].caps == ()
    assert p.states["NY"].hours.windows == (Window(600, 1140, frozenset({0, 1})),)
    assert p.sender_for("marketing", "US", "+1") is None
    assert p.sender_for("transactional", "DE", "+49").number == "+14155550123"


def test_unquoted_times_and_dates_are_read_as_text():
    p = parse_policy_text("quiet_hours:\n  marketing: {start: 09:30, end: 21:00}\nholidays: [2026-12-25]\n")
    assert p.quiet_hours["marketing"].windows == (Window(570, 1260),)
    assert len(p.holidays) == 1


@pytest.mark.parametrize("text, line, fragment", [
    ("brand:\n  name: X\nfoo: 1\n", 3, "'foo' was unexpected"),
    ("brand:\n  name: X\n  phone: 1\n", 3, "brand: Additional properties"),
    ("caps:\n  - category: marketing\n    window: 24h\n    max: 0\n", 4, "caps/0/max"),
    ("caps:\n  - {category: promo, window: 24h, max: 3}\n", 2, "caps/0/category"),
    ("caps:\n  - {category: marketing, window: 1 day, max: 3}\n", 2, "caps/0/window"),
    ("fallback_timezone: Mars/Olympus\n", 1, "unknown time zone"),
    ("holidays: ['2026-02-30']\n", 1, "is not a date"),
    ("quiet_hours:\n  marketing:\n    start: '25:00'\n    end: '21:00'\n", 3, "quiet_hours/marketing"),
    ("senders:\n  - {number: '+1415', type: pager, mps: 1, categories: [marketing]}\n", 2, "senders/0"),
    ("states:\n  FL: [\n", 3, "YAML"),
])
def test_errors_name_file_and_line(tmp_path, text, line, fragment):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    err = info.value
    assert err.source == str(path) and err.line == line, str(err)
    assert fragment in str(err) and str(err).startswith(f"{path}:{line}:")


def test_missing_file_and_non_mapping():
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy("/nonexistent/policy.yaml")
    with pytest.raises(PolicyError, match="mapping"):
        parse_policy_text("- a\n- b\n")


@pytest.mark.parametrize("value, code", [("FL", "FL"), ("Florida", "FL"), ("Miami, FL", "FL"),
                                         ("new york", "NY"), ("Ontario", None), (None, None)])
def test_state_code(value, code):
    assert state_code(value) == code
