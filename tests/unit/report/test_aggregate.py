import random
from decimal import Decimal

import jsonschema
import pytest

from smsflow.core.attribution import DAY, HOUR
from smsflow.report import build_report
from smsflow.report.aggregate import aggregate
from smsflow.report.money import UNKNOWN_CURRENCY
from tests.unit.report.outcomes import (
    T0,
    VALIDATOR,
    clicked,
    converted,
    enrolled,
    receipt,
    sent,
    would_send,
)


def arm_stream(variant: str, n: int, converters: int, clickers: int = 0, revenue: float = 50.0,
               prefix: str = "") -> list[dict]:
    """``n`` enrolled customers of one arm; the first ``converters`` buy within a day."""
    records = []
    for i in range(n):
        cid = f"{prefix}{variant[0]}{i}"
        t = T0 + i
        records.append(enrolled(cid, t, variant))
        if variant == "treatment":
            records += [sent(cid, t + HOUR), receipt("delivered", cid, t + HOUR + 5)]
            if i < clickers:
                records.append(clicked(cid, t + 2 * HOUR))
        else:
            records.append(would_send(cid, t + HOUR))
        if i < converters:
            records.append(converted(cid, t + 3 * HOUR, revenue))
    return records


def test_counts_unique_customers_per_flow_and_variant():
    records = arm_stream("treatment", 1000, 160, clickers=300) + arm_stream("control", 1000, 100)
    records.append(converted("t0", T0 + 4 * HOUR, 50.0, order="o_t0"))  # same order again
    arms = aggregate(records)["cart"]
    assert list(arms) == ["treatment", "control"]
    t, c = arms["treatment"], arms["control"]
    assert t.funnel() == {"enrolled": 1000, "sent": 1000, "delivered": 1000, "clicked": 300,
                          "converted": 160}
    assert c.funnel() == {"enrolled": 1000, "sent": 1000, "delivered": 0, "clicked": 0,
                          "converted": 100}
    assert t.conversion_rate == 0.16 and c.conversion_rate == 0.10
    assert t.revenue == {"USD": Decimal("8000.0")}
    assert t.revenue_per_enrolled == {"USD": Decimal("8")}
    assert len(t.revenue_values("USD")) == 1000 and t.currencies == ["USD"]
    assert t.attributed_conversions == 160 and c.attributed_conversions == 0
    assert t.attributed_revenue == {"USD": Decimal("8000.0")}


def test_interval_covers_a_known_lift_drawn_at_random():
    rng, records = random.Random(11), []
    truth = {"treatment": 0.16, "control": 0.10}
    for variant, rate in truth.items():
        for i in range(3000):
            cid = f"{variant}{i}"
            records.append(enrolled(cid, T0, variant))
            if rng.random() < rate:
                records.append(converted(cid, T0 + HOUR, 40.0))
    report = build_report(records)
    [flow] = report.flows
    low, high = flow.conversion.diff_ci
    assert low < 0.06 < high and low > 0  # covers the truth and excludes no effect
    lift_low, lift_high = flow.conversion.lift_ci
    assert lift_low < 0.6 < lift_high
    assert flow.revenue["USD"].diff_ci[0] < 0.06 * 40 < flow.revenue["USD"].diff_ci[1]
    assert not flow.power.underpowered


def test_small_holdout_is_reported_as_underpowered():
    records = arm_stream("treatment", 90, 15) + arm_stream("control", 10, 1)
    [flow] = build_report(records).flows
    assert flow.power.underpowered and flow.conversion.test == "fisher"


def test_conversions_outside_the_goal_window_or_before_enrollment_do_not_count():
    records = [enrolled("a", T0, "control"), converted("a", T0 - 1, 10.0, order="early"),
               converted("a", T0 + 6 * DAY, 10.0, order="late"),
               enrolled("b", T0, "control"), converted("b", T0 + DAY, 10.0)]
    arm = aggregate(records)["cart"]["control"]
    assert arm.enrolled == 2 and arm.converted == 1 and arm.revenue == {"USD": Decimal("10.0")}


def test_funnel_revenue_is_exact_and_per_currency_never_summed_across():
    records = [enrolled(f"t{i}", T0, "treatment") for i in range(4)]
    records += [enrolled(f"c{i}", T0, "control") for i in range(4)]
    records += [converted("t0", T0 + HOUR, 0.1, order="a"), converted("t1", T0 + HOUR, 0.2),
                dict(converted("t2", T0 + HOUR, 19.99), currency="EUR"),
                dict(converted("t3", T0 + HOUR, 5.0), currency=None),
                converted("c0", T0 + HOUR, 0.1), dict(converted("c1", T0 + HOUR, 9.0),
                                                      currency="EUR")]
    [flow] = build_report(records).flows
    t = flow.treatment
    assert t.revenue == {"EUR": Decimal("19.99"), "USD": Decimal("0.3"),
                         UNKNOWN_CURRENCY: Decimal("5.0")}
    assert t.revenue_per_enrolled["USD"] == Decimal("0.075")
    assert list(flow.revenue) == ["EUR", "USD", UNKNOWN_CURRENCY]
    assert flow.revenue["EUR"].mean_t == pytest.approx(19.99 / 4)
    assert flow.revenue["EUR"].mean_c == pytest.approx(9.0 / 4)


def test_flow_filter_and_flows_without_holdout():
    records = arm_stream("treatment", 5, 1) + [enrolled("x", T0, "treatment", flow="ship")]
    assert list(aggregate(records, flow_id="ship")) == ["ship"]
    [cart, ship] = build_report(records).flows
    assert cart.conversion is None and cart.power is None  # no control arm: no comparison


def test_records_without_customer_or_type_are_ignored():
    records = arm_stream("control", 3, 1) + [{"type": "rejected", "customer_id": None},
                                             {"customer_id": "zz"}, {"customer_id": [1]},
                                             {"customer_id": "zz", "type": ["enrolled"]}]
    report = build_report(records)
    assert report.records == len(records) and report.flows[0].arms["control"].enrolled == 3


def test_the_synthetic_records_follow_the_outcome_schema():
    records = arm_stream("treatment", 3, 1, clickers=1) + arm_stream("control", 3, 1)
    records.append(receipt("failed", "t1", T0))
    for record in records:
        VALIDATOR.validate(record)
    texted_control = dict(sent("c9", T0), variant="control")
    for bad in (dict(records[0], variant="holdout"), texted_control,
                dict(records[0], extra_field=1), dict(records[0], type="bounced")):
        with pytest.raises(jsonschema.ValidationError):
            VALIDATOR.validate(bad)
