"""The report against a simulated population with a known answer (issue 14 item 4).

:class:`RepeatPurchaseSimulator` gives every customer a purchase history before and after
enrolling, a configured true uplift of +5 points in the 30-day repeat-purchase rate, and
closed-form repeat rates and revenue at any horizon. The report, reading only the outcome
records, must recover it: the true effect inside its 95% intervals (plain and CUPED),
CUPED's intervals narrower, the per-arm rates at 30/60/90 days consistent with the truth,
only closed windows counted, money exact per currency, repeated records counted once.

Each 95% interval misses the truth for about one seed in twenty; the many secondary
checks (per-arm rates and revenue, 60/90-day uplifts) use 99.9% bounds (3.29 standard
errors) so that the test fails for a wrong report, not for an unlucky draw. The seeds
are fixed; both pass the primary 95% checks, as did seeds 3 to 5 when this was written.
"""

from decimal import Decimal

import pytest

from smsflow.demo.simulator import DAY, RepeatPurchaseSimulator
from smsflow.report import build_report
from smsflow.report.lasting import ENROLLED_RECORD

Z999 = 3.29  # two-sided 99.9%


def within(value: float, ci: tuple[float, float]) -> bool:
    return ci[0] <= value <= ci[1]


@pytest.fixture(scope="module", params=[1, 2])
def case(request):
    sim = RepeatPurchaseSimulator(12_000, seed=request.param)
    report = build_report(sim.outcomes(), as_of=sim.as_of)
    [flow] = report.lasting.flows
    return sim, report, flow


def test_the_true_30_day_uplift_is_inside_both_intervals_and_cuped_is_narrower(case):
    sim, _, flow = case
    h30 = flow.horizons[0]
    assert h30.days == 30 and sim.repeat_uplift(30) == pytest.approx(0.05)
    c = h30.repeat
    assert within(0.05, c.plain.diff_ci) and within(0.05, c.cuped.diff_ci)
    assert c.plain.diff_ci[0] > 0 and c.cuped.diff_ci[0] > 0  # 6,000 per arm see +5 points
    assert c.ci_width_ratio < 0.95 and c.variance_reduction > 0.1
    true_relative = sim.repeat_rate("treatment", 30) / sim.repeat_rate("control", 30) - 1
    assert within(true_relative, c.plain.lift_ci) and within(true_relative, c.cuped.lift_ci)
    for currency in ("USD", "EUR"):
        r = h30.revenue[currency]
        truth = sim.revenue_uplift(30, currency)
        assert within(truth, r.cuped.diff_ci) and within(truth, r.plain.diff_ci), currency
        # pre-enrollment spend predicts later spend: a real reduction, not a rounding one
        assert r.variance_reduction > 0.2 and r.ci_width_ratio < 0.9, currency


def test_every_horizon_is_consistent_with_the_truth(case):
    sim, _, flow = case
    for h in flow.horizons:
        for variant, arm in h.arms.items():
            truth = sim.repeat_rate(variant, h.days)
            se = (truth * (1 - truth) / arm.closed) ** 0.5
            assert abs(arm.rate - truth) < Z999 * se, (h.days, variant)
            for currency, revenue in arm.revenue.items():
                expected = sim.revenue_per_customer(variant, h.days, currency)
                half = (revenue.ci[1] - revenue.ci[0]) / 2
                assert abs(float(revenue.per_customer) - expected) < half * Z999 / 1.96
        for c in (h.repeat, *h.revenue.values()):
            assert c.cuped.se < c.plain.se
        assert abs(h.repeat.cuped.diff - sim.repeat_uplift(h.days)) < Z999 * h.repeat.cuped.se
        for currency, c in h.revenue.items():
            assert abs(c.cuped.diff - sim.revenue_uplift(h.days, currency)) < Z999 * c.cuped.se


def test_only_customers_whose_window_closed_count(case):
    sim, _, flow = case
    for h in flow.horizons:
        for variant, arm in h.arms.items():
            members = [s for s in sim.shoppers if s.variant == variant]
            closed = [s for s in members if s.enrolled_at + h.days * DAY <= sim.as_of]
            assert (arm.enrolled, arm.closed) == (len(members), len(closed))
    h30, h60, h90 = flow.horizons
    assert h30.arms["control"].closed == h30.arms["control"].enrolled
    assert h90.arms["control"].closed < h60.arms["control"].closed < h60.arms["control"].enrolled


def test_money_is_exact_per_currency_and_repeated_records_count_once(case):
    sim, report, flow = case
    h30 = flow.horizons[0]
    for variant, arm in h30.arms.items():
        for currency in ("USD", "EUR"):
            expected = sum((Decimal(repr(value)) for s in sim.shoppers
                            if s.variant == variant and s.currency == currency
                            for t, value in s.orders
                            if s.enrolled_at < t <= s.enrolled_at + 30 * DAY), Decimal(0))
            assert arm.revenue[currency].total == expected
    assert report.duplicates > 0
    assert flow.multi_enrolled == sum(s.reenrolled_at is not None for s in sim.shoppers)
    assert flow.covariate_sources == {ENROLLED_RECORD: len(sim.shoppers)}
    assert report.accounting.ok  # every enrollment completed, every send sent or held out


def test_derived_history_gives_the_same_answer_as_the_declared_one():
    declared = RepeatPurchaseSimulator(3000, seed=9)
    derived = RepeatPurchaseSimulator(3000, seed=9, declare_history=False)
    a = build_report(declared.outcomes(), as_of=declared.as_of).lasting.flows[0]
    b = build_report(derived.outcomes(), as_of=derived.as_of).lasting.flows[0]
    for x, y in zip(a.horizons, b.horizons):
        assert x.repeat == y.repeat and x.revenue == y.revenue
    assert b.covariate_sources != a.covariate_sources


def test_a_small_holdout_is_told_what_it_can_detect():
    sim = RepeatPurchaseSimulator(3000, seed=4, holdout=0.1, enroll_days=20, tail_days=35)
    flow = build_report(sim.outcomes(), as_of=sim.as_of).lasting.flows[0]
    power = flow.power
    assert power.underpowered and power.n_c < 400
    assert power.mde > sim.repeat_uplift(30)  # +5 points is below what it can see
    assert any("too few controls for its minimum detectable effect" in n for n in flow.notes)
