"""``smsflow flows preview``: rendered steps, segments, cost, links and the gate's verdict."""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from smsflow.cli import main
from smsflow.core.records.base import decode, encode
from smsflow.core.records.customers import Profile
from smsflow.core.records.events import TrackEvent
from smsflow.flowqa.preview import FlowPreview, earliest_offsets
from smsflow.flowqa.pricing import PriceError, default_prices, load_prices
from smsflow.core.flows import load_file

REPO = Path(__file__).resolve().parents[3]
FLOWS = REPO / "flows"
POLICY = REPO / "deploy" / "policy.yaml"
EVENING_LA = "2026-11-28T19:45:00-08:00"


def preview(capsys, *args: str) -> tuple[int, FlowPreview | None, str]:
    code = main(["flows", "preview", *args, "--json"])
    out, err = capsys.readouterr()
    return code, decode(out, FlowPreview) if out.strip() else None, err


def step(p: FlowPreview, step_id: str):
    return next(s for s in p.steps if s.step_id == step_id)


def test_cart_flow_for_the_sample_customer(capsys):
    code, p, err = preview(capsys, str(FLOWS / "abandoned_checkout.yaml"), "--at", EVENING_LA,
                           "--policy", str(POLICY))
    assert code == 0, err
    assert [s.step_id for s in p.steps] == ["reminder", "social_proof", "incentive"]
    assert all(s.reached for s in p.steps)  # repeat buyer, discount share 0.5: gets the code
    reminder = step(p, "reminder")
    assert reminder.body.startswith("Ana, you left 1 item in your cart.")
    assert (reminder.encoding, reminder.segments) == ("GSM-7", 1)
    assert reminder.after_trigger == "30m"
    assert reminder.link_target == ("https://shop.example/checkout/ch_sample?utm_source=smsflow"
                                    "&utm_medium=sms&utm_campaign=abandoned_checkout"
                                    "&utm_content=reminder")
    assert reminder.link_short in reminder.body
    # 20:15 in Los Angeles is past the flow's 09:00-20:00 window: deferred to 09:00 next day
    assert (reminder.verdict, reminder.reason) == ("defer", "send_window")
    assert reminder.not_before == "2026-11-29T17:00:00Z"
    assert reminder.gate["zones"] == ["America/Los_Angeles"] and reminder.gate["state"] == "CA"
    # the sample's margin (65%) takes the +5 rule; the cart is under $100
    assert reminder.priority == 85 and [r.add for r in reminder.priority_rules] == [5]
    assert reminder.cost == {"long_code": "0.0113", "toll_free": "0.0108", "short_code": "0.0110"}
    social = step(p, "social_proof")
    assert social.verdict == "send" and social.sender == "12345"
    assert (social.sender_type, social.sender_cost) == ("short_code", "0.0110")
    assert step(p, "incentive").priority == 85  # the step's own priority, no rules
    assert p.path[0] == "wait_reminder: wait 30m" and p.path[-1] == "end (completed)"


def test_text_output_names_every_part(capsys):
    code = main(["flows", "preview", str(FLOWS / "abandoned_checkout.yaml"), "--at", EVENING_LA,
                 "--policy", str(POLICY)])
    out = capsys.readouterr().out
    assert code == 0
    for part in ("step reminder (line 39): sms at Sat 2026-11-28 20:15 America/Los_Angeles",
                 "encoding  GSM-7, 1 segment", "priority  85 (base 80; +5 profile.avg_margin gte 0.5)",
                 "cost      long_code $0.0113  toll_free $0.0108  short_code $0.0110",
                 "gate      deferred until Sun 2026-11-29 09:00 America/Los_Angeles: the flow's "
                 "send window", "gate      send now via 12345 (short_code, $0.0110)"):
        assert part in out, part


def test_a_missing_checkout_url_is_reported_at_its_template(capsys, tmp_path):
    event = tmp_path / "event.json"
    event.write_bytes(encode(TrackEvent(
        message_id="e1", user_id="c9", event="Checkout Started",
        timestamp="2026-11-28T10:00:00Z",
        properties={"checkout_id": "ch_1", "value": 120.0, "products": [{"name": "Serum"}]})))
    code, p, err = preview(capsys, str(FLOWS / "abandoned_checkout.yaml"), "--event", str(event),
                           "--at", EVENING_LA, "--policy", str(POLICY))
    assert code == 1
    lines = (FLOWS / "abandoned_checkout.yaml").read_text().splitlines()
    errors = err.splitlines()
    assert len(errors) == 3
    first = errors[0]
    assert first.startswith(f"{FLOWS / 'abandoned_checkout.yaml'}:45:17: step 'reminder': "
                            "cart.checkout_url is undefined")
    assert lines[44][16:20] == "cart"  # line 45, column 17
    assert "render_error" in " ".join(p.path)


def test_a_template_variable_unknown_to_the_engine_is_a_flow_error(capsys, tmp_path):
    flow = tmp_path / "f.yaml"
    flow.write_text(textwrap.dedent("""\
        id: f
        category: transactional
        trigger: {event: Order Shipped}
        steps:
          - id: s
            send:
              body: "Hi {{ customer.name }}"
        """))
    code = main(["flows", "preview", str(flow), "--policy", "defaults"])
    err = capsys.readouterr().err
    assert code == 1 and f"{flow}:7:20: undefined variable 'customer.name'" in err


def test_quiet_hours_and_state_rules_in_the_numbers_zones(capsys, tmp_path):
    """A Miami number without a profile time zone: FL's 08:00-20:00 rule in New York time."""
    profile = tmp_path / "p.json"
    profile.write_bytes(encode(Profile(customer_id="c_fl", traits={"first_name": "Flo"},
                                       phone="+13055550123", country="US",
                                       sms_consent_status="subscribed")))
    code, p, err = preview(capsys, str(FLOWS / "post_quiz.yaml"), "--profile", str(profile),
                           "--at", "2026-11-28T19:55:00-05:00", "--policy", str(POLICY))
    assert code == 0, err
    results = step(p, "results")
    assert results.channel == "mms" and results.media_urls == ["https://shop.example/img/routine.png"]
    assert (results.verdict, results.reason) == ("defer", "state_hours")
    assert results.gate["tz_source"] == "number" and results.gate["state"] == "FL"
    assert results.not_before_local == "Sun 2026-11-29 08:00 America/New_York"
    # MMS is billed per message, not per segment
    assert results.cost["long_code"] == str(default_prices().unit("mms", "long_code"))


def test_consent_decides_first(capsys):
    code, p, _ = preview(capsys, str(FLOWS / "abandoned_checkout.yaml"), "--at", EVENING_LA,
                         "--policy", str(POLICY), "--consent", "unsubscribed")
    assert code == 0
    assert {(s.verdict, s.reason) for s in p.steps} == {("suppress", "opted_out")}
    _, never, _ = preview(capsys, str(FLOWS / "shipping_updates.yaml"), "--at", EVENING_LA,
                          "--policy", str(POLICY), "--consent", "never")
    assert {s.verdict for s in never.steps} == {"send"}  # transactional: not opted out is enough


def test_earlier_steps_count_against_the_caps(capsys, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(textwrap.dedent("""\
        version: 1
        caps: [{name: one-a-week, category: marketing, window: 7d, max: 1, on_cap: drop}]
        senders: [{number: "+18005550199", type: toll_free, mps: 3,
                   categories: [marketing, transactional], countries: [US]}]
        """))
    code, p, _ = preview(capsys, str(FLOWS / "abandoned_checkout.yaml"),
                         "--at", "2026-11-28T10:00:00-08:00", "--policy", str(policy))
    assert code == 0
    assert [(s.verdict, s.reason) for s in p.steps] == [
        ("send", None), ("drop", "frequency_cap"), ("drop", "frequency_cap")]
    assert p.steps[0].sender_type == "toll_free" and p.steps[0].sender_cost == "0.0108"


def test_unicode_bodies_cost_more_segments(capsys, tmp_path):
    flow = tmp_path / "f.yaml"
    flow.write_text(textwrap.dedent("""\
        id: emoji
        category: transactional
        trigger: {event: Order Shipped}
        steps:
          - id: s
            send:
              body: "Your order {{ cart.order_id }} is on its way 🚚 — track it here, we will keep you posted at every step of the journey until it reaches your door"
        """))
    code, p, _ = preview(capsys, str(flow), "--policy", "defaults")
    assert code == 0
    [s] = p.steps
    assert (s.encoding, s.segments) == ("UCS-2", 2)  # 71-134 UCS-2 units
    assert Decimal(s.cost["long_code"]) == 2 * default_prices().unit("sms", "long_code")


def test_a_price_file_overrides_the_table(tmp_path, capsys):
    prices = tmp_path / "prices.yaml"
    prices.write_text("currency: EUR\nsms:\n  short_code: 0.02\n")
    table = load_prices(prices)
    assert table.currency == "EUR" and table.unit("sms", "short_code") == Decimal("0.02")
    assert table.unit("sms", "long_code") == default_prices().unit("sms", "long_code")
    code, p, _ = preview(capsys, str(FLOWS / "shipping_updates.yaml"), "--policy", str(POLICY),
                         "--prices", str(prices))
    assert code == 0 and p.currency == "EUR" and p.steps[0].cost["short_code"] == "0.02"
    prices.write_text("currency: EUR\nsms:\n  pager: 0.02\n")
    with pytest.raises(PriceError, match=r"prices.yaml:3: unknown sender type 'pager'"):
        load_prices(prices)


def test_unreached_steps_are_previewed_at_their_earliest_time(capsys):
    code, p, _ = preview(capsys, str(FLOWS / "back_in_stock.yaml"), "--at", EVENING_LA,
                         "--policy", str(POLICY))
    assert code == 0
    by_id = {s.step_id: s for s in p.steps}
    assert by_id["announce"].reached and by_id["reminder"].reached
    assert by_id["reminder"].after_trigger == "1d"
    offsets = earliest_offsets(load_file(FLOWS / "reactivation.yaml").flows[0])
    assert offsets["discount_offer"] == offsets["plain_nudge"] == 2 * 3600


def test_profile_files_are_profiles(tmp_path, capsys):
    bad = tmp_path / "p.json"
    bad.write_bytes(orjson.dumps({"customer_id": 5}))
    code = main(["flows", "preview", str(FLOWS / "shipping_updates.yaml"), "--profile", str(bad),
                 "--policy", "defaults"])
    assert code == 1 and "not a profile" in capsys.readouterr().err
