"""The lasting-effect section on hand-made outcome streams whose answers are known exactly."""

from decimal import Decimal

import pytest

from smsflow.report.cuped import mde_proportion
from smsflow.report.lasting import DAY, ENROLLED_RECORD, ORDERED_OUTCOMES, build_lasting
from smsflow.report.money import UNKNOWN_CURRENCY
from tests.unit.report.outcomes import T0, enrolled, history, ordered


def arm(lasting, days, variant, flow=0):
    [h] = [h for h in lasting.flows[flow].horizons if h.days == days]
    return h.arms[variant]


def test_only_closed_windows_count_and_the_counts_are_shown():
    records = [enrolled("a", T0, "control"), enrolled("b", T0 + 40 * DAY, "control"),
               ordered("a", T0 + 10 * DAY, 10.0), ordered("b", T0 + 41 * DAY, 10.0)]
    lasting = build_lasting(records, as_of=T0 + 75 * DAY)
    a30, a60, a90 = (arm(lasting, d, "control") for d in (30, 60, 90))
    assert (a30.enrolled, a30.closed, a30.repeaters) == (2, 2, 2)
    assert (a60.enrolled, a60.closed, a60.repeaters) == (2, 1, 1)  # b's 60 days still open
    assert (a90.closed, a90.rate, a90.rate_ci) == (0, None, None)
    [h90] = [h for h in lasting.flows[0].horizons if h.days == 90]
    assert h90.first_close == T0 + 90 * DAY


def test_the_window_is_open_at_enrollment_and_closed_at_n_days():
    records = [enrolled("a", T0, "control"), ordered("a", T0, 5.0, order="trigger"),
               ordered("a", T0 + 30 * DAY, 7.0, order="last-second"),
               enrolled("b", T0, "control"), ordered("b", T0 + 30 * DAY + 1, 9.0)]
    lasting = build_lasting(records, as_of=T0 + 100 * DAY)
    a30, a60 = arm(lasting, 30, "control"), arm(lasting, 60, "control")
    assert a30.repeaters == 1 and a30.revenue["USD"].total == Decimal("7.0")
    assert a60.repeaters == 2 and a60.revenue["USD"].total == Decimal("16.0")
    assert a60.revenue["USD"].per_customer == Decimal("8.0")


def test_a_customer_counts_once_per_arm_from_the_first_enrollment():
    records = [enrolled("a", T0 + 20 * DAY, "treatment", n=2),
               enrolled("a", T0, "treatment", n=1),          # earlier, written later
               ordered("a", T0 + 35 * DAY, 10.0),            # day 35 after the first
               enrolled("b", T0, "treatment")]
    lasting = build_lasting(records, as_of=T0 + 200 * DAY)
    assert arm(lasting, 30, "treatment").repeaters == 0
    assert arm(lasting, 60, "treatment").repeaters == 1
    assert arm(lasting, 30, "treatment").enrolled == 2
    flow = lasting.flows[0]
    assert flow.multi_enrolled == 1
    assert any("1 customers enrolled more than once" in n and "first enrollment" in n
               for n in flow.notes)


def test_money_is_exact_and_per_currency_never_mixed():
    records = [enrolled("a", T0, "control"), enrolled("b", T0, "control"),
               enrolled("c", T0, "control")]
    records += [ordered("a", T0 + DAY * (1 + i), 0.1, order=f"a{i}") for i in range(3)]
    records += [ordered("b", T0 + DAY, 19.99, currency="EUR"),
                ordered("c", T0 + DAY, 2.5, currency=None)]
    a30 = arm(build_lasting(records, as_of=T0 + 31 * DAY), 30, "control")
    assert set(a30.revenue) == {"USD", "EUR", UNKNOWN_CURRENCY}
    assert a30.revenue["USD"].total == Decimal("0.3")         # not 0.30000000000000004
    assert a30.revenue["EUR"].total == Decimal("19.99")
    assert a30.revenue[UNKNOWN_CURRENCY].total == Decimal("2.5")
    assert a30.revenue["USD"].per_customer == Decimal("0.1")  # over all 3 enrolled
    assert a30.repeaters == 3


def test_an_order_written_twice_counts_once_and_one_without_revenue_counts_for_repeat_only():
    records = [enrolled("a", T0, "control"), enrolled("b", T0, "control"),
               ordered("a", T0 + DAY, 12.0, order="o1"), ordered("a", T0 + DAY, 12.0, order="o1"),
               ordered("b", T0 + DAY, None, currency=None, order="o2")]
    lasting = build_lasting(records, as_of=T0 + 31 * DAY)
    a30 = arm(lasting, 30, "control")
    assert a30.repeaters == 2 and a30.revenue["USD"].total == Decimal("12.0")
    assert lasting.orders == 2
    assert any("1 orders without revenue" in n for n in lasting.flows[0].notes)


def population(declare: bool) -> list[dict]:
    """40 customers per arm; buyers before enrolling buy again; treatment buys more."""
    records = []
    for variant in ("treatment", "control"):
        for i in range(40):
            cid, t = f"{variant[0]}{i}", T0 + i * 3600
            loyal = i % 2 == 0
            before = [ordered(cid, t - (k + 1) * 10 * DAY, 30.0, order=f"{cid}-p{k}")
                      for k in range(3 if loyal else 0)]
            details = history(len(before), USD=str(30 * len(before))) if declare else {}
            records += before + [enrolled(cid, t, variant, details=details)]
            if loyal or (variant == "treatment" and i % 4 == 1):
                records.append(ordered(cid, t + 5 * DAY, 40.0 + i, order=f"{cid}-n"))
    return records


def test_cuped_covariates_from_the_enrolled_record_or_from_earlier_orders_agree():
    declared = build_lasting(population(True), as_of=T0 + 100 * DAY)
    derived = build_lasting(population(False), as_of=T0 + 100 * DAY)
    assert declared.flows[0].covariate_sources == {ENROLLED_RECORD: 80}
    assert derived.flows[0].covariate_sources == {ORDERED_OUTCOMES: 80}
    assert any("earlier `ordered` outcomes" in n for n in derived.flows[0].notes)
    for a, b in zip(declared.flows[0].horizons, derived.flows[0].horizons):
        assert a.repeat == b.repeat and a.revenue == b.revenue
    h30 = declared.flows[0].horizons[0]
    # history explains much of who buys again: CUPED removes variance in both metrics
    assert h30.repeat.variance_reduction > 0.3 and h30.revenue["USD"].variance_reduction > 0.3
    assert h30.repeat.plain.diff == pytest.approx(30 / 40 - 20 / 40)
    assert h30.repeat.cuped.diff_ci[1] - h30.repeat.cuped.diff_ci[0] < (
        h30.repeat.plain.diff_ci[1] - h30.repeat.plain.diff_ci[0])


def test_a_young_holdout_and_one_too_small_for_its_mde_are_noted():
    records = [enrolled(f"t{i}", T0 + i * 60, "treatment") for i in range(900)]
    records += [enrolled(f"c{i}", T0 + i * 600, "control") for i in range(100)]
    records += [ordered(f"t{i}", T0 + 2 * DAY, 20.0) for i in range(0, 900, 4)]
    records += [ordered(f"c{i}", T0 + 2 * DAY, 20.0) for i in range(0, 100, 5)]
    young = build_lasting(records, as_of=T0 + 10 * DAY, horizons=[3])
    [note] = [n for n in young.flows[0].notes if "holdout has run" in n]
    assert "10.0 days" in note and "at least 14 days" in note
    power = young.flows[0].power
    assert power.underpowered and (power.n_t, power.n_c) == (900, 100)
    expected = mde_proportion(900, 100, 0.20)
    assert power.mde == pytest.approx(expected)
    [mde_note] = [n for n in young.flows[0].notes if "minimum detectable effect" in n]
    assert f"{expected * 100:+.1f} pp" in mde_note and "80% power" in mde_note
    assert f"{power.needed_c:,} control" in mde_note
    old = build_lasting(records, as_of=T0 + 30 * DAY, horizons=[3], target_lift=2.0)
    assert not [n for n in old.flows[0].notes if "holdout has run" in n]
    assert not old.flows[0].power.underpowered  # a 200% lift is detectable with 100 controls
    assert old.flows[0].power.needed_c <= 100 and not [n for n in old.flows[0].notes if "minimum" in n]


def test_no_orders_in_the_data_is_said_plainly_and_flows_without_holdout_too():
    lasting = build_lasting([enrolled("a", T0, "treatment")], as_of=T0 + 100 * DAY)
    assert lasting.orders == 0 and "no `ordered` outcomes" in lasting.notes[0]
    assert "no control customers" in lasting.flows[0].notes[0]
    assert lasting.flows[0].power is None


def test_flow_filter_and_bad_records_never_crash():
    records = [enrolled("a", T0, "control"), enrolled("b", T0, "control", flow="other"),
               dict(enrolled("c", T0, "control"), variant=["control"]),
               dict(enrolled("d", T0, "control"), event_time="not a time", processing_time=None),
               dict(ordered("a", T0 + DAY, "abc"), details="oops"),
               dict(ordered("a", T0 + DAY, 3.0), customer_id=None),
               {"type": "ordered"}, {"type": None}, {}]
    lasting = build_lasting(records, as_of=T0 + 40 * DAY, flow_id="cart")
    assert [f.flow_id for f in lasting.flows] == ["cart"]
    a30 = arm(lasting, 30, "control")
    assert (a30.enrolled, a30.repeaters) == (1, 1)           # the order without a number
    assert a30.revenue == {}                                 # ... has no revenue
    with pytest.raises(ValueError):
        build_lasting(records, horizons=[0])
