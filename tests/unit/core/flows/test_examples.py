"""The example flows in flows/ validate, and the CLI reports like a compiler."""

from __future__ import annotations

from pathlib import Path

from smsflow.cli import main
from smsflow.core.flows import FlowEngine, holdout, load_dir

from .conftest import DAY, T0, checkout, event, only_timer, profile

FLOWS = Path(__file__).resolve().parents[4] / "flows"
EXPECTED = {"abandoned_checkout", "back_in_stock", "shipping_updates", "post_delivery_cross_sell",
            "reactivation", "post_quiz"}


def _engine() -> FlowEngine:
    result = load_dir(FLOWS)
    assert result.ok, [str(e) for e in result.errors]
    return FlowEngine(result.flows, link_base_url="https://sms.example", link_secret="s")


def test_example_flows_all_validate():
    result = load_dir(FLOWS)
    assert result.ok, [str(e) for e in result.errors]
    assert {f.id for f in result.flows} >= EXPECTED


def test_abandoned_checkout_example_end_to_end():
    engine = _engine()
    cid = next(f"c{i}" for i in range(100)
               if holdout.assign("abandoned_checkout", f"c{i}", 0.1) == "treatment")
    prof = profile(cid)
    fx = engine.on_event(None, prof, checkout(T0, customer=cid), T0)
    sends = []
    for _ in range(3):
        timer = only_timer(fx)
        fx = engine.on_timer(fx.state, prof, timer, timer.due)
        sends += fx.sends
    assert [s.step_id for s in sends] == ["reminder", "social_proof", "incentive"]
    assert sends[0].body.startswith("Ana, you left 1 item in your cart.")
    assert "Moisturizer" in sends[1].body
    assert {s.customer_id for s in sends} == {cid} and all(s.link for s in sends)


def test_cross_sell_waits_for_delivery_then_days():
    engine = _engine()
    prof = profile("c_x", purchase_status="first_time")
    placed = event("Order Placed", T0, "o1", "c_x", order_id="o1", value=50.0,
                   products=[{"product_id": "sku_1", "name": "Serum", "category": "skincare"}])
    fx = engine.on_event(None, prof, placed, T0)
    timeouts = [t for t in fx.timers_set.values() if t.flow_id == "post_delivery_cross_sell"]
    assert [t.kind for t in timeouts] == ["timeout"]
    fx = engine.on_event(fx.state, prof, event("Order Delivered", T0 + 2 * DAY, "d1", "c_x",
                                               order_id="o1"), T0 + 2 * DAY)
    [wait] = [t for t in fx.timers_set.values() if t.flow_id == "post_delivery_cross_sell"]
    assert wait.kind == "wait" and wait.due == T0 + 5 * DAY


def test_cli_validate_ok(capsys):
    assert main(["flows", "validate", str(FLOWS)]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def test_cli_validate_reports_errors(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("id: x\ncategory: promo\ntrigger: {event: A}\n"
                                       "steps:\n  - id: a\n    wait: {duration: 3x}\n")
    assert main(["flows", "validate", str(tmp_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == [f"{tmp_path}/bad.yaml:2:11: 'promo' is not one of: marketing, transactional",
                       f"{tmp_path}/bad.yaml:6:22: bad duration '3x' (use e.g. 45s, 30m, 2h, 3d, 1w or 1h30m)"]


def test_cli_show_prints_the_step_graph(capsys):
    assert main(["flows", "show", str(FLOWS / "abandoned_checkout.yaml")]) == 0
    out = capsys.readouterr().out
    assert "wait_reminder" in out and "wait 30m  -> reminder" in out
    assert "else -> (end)" in out and "Order Placed (same checkout_id)" in out
