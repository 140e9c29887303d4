import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportion_effectsize,
)
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from smsflow.report.stats import (
    compare_means,
    compare_proportions,
    power_check,
    required_sample_size,
    two_sided_p,
    wilson,
)


def test_wilson_matches_statsmodels_and_newcombes_published_example():
    # Newcombe (1998), Statistics in Medicine 17:857, 81/263 -> 0.2553 to 0.3662.
    assert wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson(7, 40) == pytest.approx(proportion_confint(7, 40, method="wilson"))
    assert wilson(0, 0) == (0.0, 1.0)


def test_difference_uses_newcombes_hybrid_score_interval():
    # Newcombe (1998) 17:873, example (a): 56/70 vs 48/80, method 10 -> 0.0524 to 0.3339.
    result = compare_proportions(56, 70, 48, 80)
    assert result.diff == pytest.approx(0.2)
    assert result.diff_ci == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert result.diff_ci == pytest.approx(
        confint_proportions_2indep(56, 70, 48, 80, method="newcomb", compare="diff"))
    assert result.ci_t == pytest.approx(proportion_confint(56, 70, method="wilson"))


def test_relative_lift_interval_is_katz_log_interval():
    result = compare_proportions(160, 1000, 100, 1000)
    ratio = 0.16 / 0.10
    se = math.sqrt(1 / 160 - 1 / 1000 + 1 / 100 - 1 / 1000)
    z = sps.norm.ppf(0.975)
    assert result.lift == pytest.approx(ratio - 1)
    assert result.lift_ci == pytest.approx((ratio * math.exp(-z * se) - 1,
                                            ratio * math.exp(z * se) - 1), rel=1e-9)


def test_z_test_p_value_equals_the_uncorrected_chi_square_test():
    result = compare_proportions(160, 1000, 100, 1000)
    table = [[160, 840], [100, 900]]
    assert result.test == "z"
    assert result.p_value == pytest.approx(sps.chi2_contingency(table, correction=False).pvalue)


def test_small_counts_switch_to_fishers_exact_test():
    p_value, test = two_sided_p(3, 20, 0, 18)
    assert test == "fisher"
    assert p_value == pytest.approx(sps.fisher_exact([[3, 17], [0, 18]]).pvalue)


def test_zero_control_conversions_leave_the_relative_lift_undefined():
    result = compare_proportions(3, 20, 0, 18)
    assert result.lift is None and result.lift_ci is None
    assert result.diff_ci[0] < result.diff < result.diff_ci[1]


def test_zero_treatment_conversions_keep_a_finite_relative_interval():
    result = compare_proportions(0, 50, 5, 50)
    assert result.lift == -1.0
    assert all(math.isfinite(x) for x in result.lift_ci)


def test_compare_proportions_refuses_an_empty_arm():
    with pytest.raises(ValueError):
        compare_proportions(1, 10, 0, 0)


def test_revenue_comparison_is_welchs_t_test():
    rng = np.random.default_rng(7)
    t = np.where(rng.random(400) < 0.16, rng.gamma(2.0, 40.0, 400), 0.0)
    c = np.where(rng.random(90) < 0.10, rng.gamma(2.0, 40.0, 90), 0.0)
    result = compare_means(list(t), list(c))
    reference = sps.ttest_ind(t, c, equal_var=False)
    assert result.p_value == pytest.approx(reference.pvalue)
    assert result.diff == pytest.approx(t.mean() - c.mean())
    independent = CompareMeans(DescrStatsW(t), DescrStatsW(c)).tconfint_diff(usevar="unequal")
    assert result.diff_ci == pytest.approx(independent)


def test_revenue_comparison_needs_two_customers_per_arm_and_survives_zero_variance():
    assert compare_means([1.0], [1.0, 2.0]) is None
    flat = compare_means([0.0, 0.0, 0.0], [0.0, 0.0])
    assert flat.diff == 0 and flat.p_value == 1.0


def test_required_sample_size_matches_statsmodels_and_the_textbook_formula():
    n_t, n_c = required_sample_size(0.16, 0.10)
    h = proportion_effectsize(0.16, 0.10)
    reference = NormalIndPower().solve_power(effect_size=h, alpha=0.05, power=0.8, ratio=1.0)
    assert n_t == n_c == math.ceil(reference)
    # Classic two-proportion formula (pooled variance under H0), e.g. Fleiss ch. 4.
    z_a, z_b, p_bar = sps.norm.ppf(0.975), sps.norm.ppf(0.8), 0.13
    classic = (z_a * math.sqrt(2 * p_bar * (1 - p_bar))
               + z_b * math.sqrt(0.16 * 0.84 + 0.10 * 0.90)) ** 2 / 0.06 ** 2
    assert n_t == pytest.approx(classic, rel=0.02)
    n_t9, n_c9 = required_sample_size(0.16, 0.10, ratio=1 / 9)  # a 10% holdout
    assert n_c9 == math.ceil(n_t9 / 9) and n_t9 > n_t
    assert required_sample_size(0.1, 0.1) is None


def test_power_check_flags_a_small_sample_with_a_plain_warning():
    small = power_check(16, 100, 10, 100)
    assert small.underpowered
    assert small.more_t == small.needed_t - 100 > 0
    assert "inconclusive" in small.warning and f"{small.needed_t:,}" in small.warning
    big = power_check(1600, 10_000, 1000, 10_000)
    assert not big.underpowered and big.warning is None and big.more_t == 0


def test_power_check_without_any_observed_difference_or_arm():
    flat = power_check(10, 100, 10, 100)
    assert flat.underpowered and flat.needed_t is None and "no difference" in flat.warning.lower()
    assert power_check(10, 100, 0, 0).underpowered
