import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from smsflow.report.cuped import (
    cuped,
    cuped_theta,
    difference,
    mde_mean,
    mde_proportion,
    mean_interval,
    relative_lift,
)


def correlated(n: int, rho: float, effect: float, seed: int):
    """Outcome y = effect x treated + e, covariate x with corr(x, y | arm) = rho."""
    rng = np.random.default_rng(seed)
    x = rng.normal(10.0, 2.0, n)
    noise = rng.normal(0.0, 2.0, n)
    y = 5.0 + rho * (x - 10.0) + math.sqrt(1 - rho ** 2) * noise
    treated = rng.random(n) < 0.5
    y = y + effect * treated
    return y[treated], x[treated], y[~treated], x[~treated]


def test_plain_difference_is_welch_as_scipy_and_statsmodels_compute_it():
    y_t, _, y_c, _ = correlated(900, 0.0, 0.3, seed=1)
    e = difference(y_t, y_c)
    reference = sps.ttest_ind(y_t, y_c, equal_var=False)
    assert e.diff == pytest.approx(y_t.mean() - y_c.mean())
    assert e.p_value == pytest.approx(reference.pvalue)
    assert e.diff_ci == pytest.approx(
        CompareMeans(DescrStatsW(y_t), DescrStatsW(y_c)).tconfint_diff(usevar="unequal"))
    assert e.se == pytest.approx(math.sqrt(y_t.var(ddof=1) / y_t.size
                                           + y_c.var(ddof=1) / y_c.size))


def test_relative_lift_uses_the_delta_method_for_a_ratio_of_means():
    lift, (low, high) = relative_lift(0.16, 0.01, 0.10, 0.008)
    se = math.sqrt(0.01 ** 2 / 0.10 ** 2 + 0.16 ** 2 * 0.008 ** 2 / 0.10 ** 4)
    z = sps.norm.ppf(0.975)
    assert lift == pytest.approx(0.6)
    assert (low, high) == pytest.approx((0.6 - z * se, 0.6 + z * se))
    assert relative_lift(0.1, 0.01, 0.0, 0.01) == (None, None)


def test_small_or_constant_arms():
    assert difference([1.0], [1.0, 2.0]) is None and cuped([1.0], [0.0], [1.0, 2.0], [0, 1]) is None
    flat = difference([0.0, 0.0], [1.0, 1.0, 1.0])
    assert flat.diff == -1.0 and flat.diff_ci == (-1.0, -1.0) and flat.p_value == 0.0
    with pytest.raises(ValueError):
        cuped([1.0, 2.0], [1.0], [1.0, 2.0], [1.0, 2.0])


def test_theta_is_the_ols_slope_and_cuped_is_the_plain_estimate_minus_theta_times_the_gap():
    y_t, x_t, y_c, x_c = correlated(4000, 0.7, 0.25, seed=2)
    y, x = np.concatenate([y_t, y_c]), np.concatenate([x_t, x_c])
    slope = sm.OLS(y, sm.add_constant(x)).fit().params[1]
    assert cuped_theta(y, x) == pytest.approx(slope)
    c = cuped(y_t, x_t, y_c, x_c)
    assert c.theta == pytest.approx(slope)
    assert c.plain.diff == pytest.approx(y_t.mean() - y_c.mean())
    assert c.cuped.diff == pytest.approx(c.plain.diff - c.theta * (x_t.mean() - x_c.mean()))
    # the adjusted means keep the overall level, so the relative lift stays meaningful
    assert (c.cuped.mean_t * y_t.size + c.cuped.mean_c * y_c.size) / y.size == pytest.approx(
        y.mean())


def test_cuped_agrees_with_regression_adjustment_and_removes_rho_squared_of_the_variance():
    rho = 0.6
    y_t, x_t, y_c, x_c = correlated(40_000, rho, 0.05, seed=3)
    c = cuped(y_t, x_t, y_c, x_c)
    # ANCOVA y ~ 1 + treated + x with HC2 errors: the textbook regression estimator
    y = np.concatenate([y_t, y_c])
    design = np.column_stack([np.ones(y.size), np.r_[np.ones(y_t.size), np.zeros(y_c.size)],
                              np.concatenate([x_t, x_c])])
    fit = sm.OLS(y, design).fit(cov_type="HC2")
    assert abs(c.cuped.diff - fit.params[1]) < 0.02 * c.cuped.se
    assert c.cuped.se == pytest.approx(fit.bse[1], rel=0.01)
    # the plain HC2 standard error of a difference of means is Welch's
    plain_fit = sm.OLS(y, design[:, :2]).fit(cov_type="HC2")
    assert c.plain.se == pytest.approx(plain_fit.bse[1], rel=1e-9)
    assert c.correlation == pytest.approx(rho, abs=0.02)
    assert c.variance_reduction == pytest.approx(rho ** 2, abs=0.02)
    assert c.ci_width_ratio == pytest.approx(math.sqrt(1 - rho ** 2), abs=0.02)
    assert c.cuped.diff_ci[0] < 0.05 < c.cuped.diff_ci[1]


def test_a_useless_covariate_changes_nothing_that_matters():
    y_t, _, y_c, _ = correlated(5000, 0.0, 0.1, seed=4)
    rng = np.random.default_rng(5)
    c = cuped(y_t, rng.normal(size=y_t.size), y_c, rng.normal(size=y_c.size))
    assert abs(c.variance_reduction) < 0.01 and abs(c.cuped.diff - c.plain.diff) < 0.1 * c.plain.se
    constant = cuped(y_t, np.ones(y_t.size), y_c, np.ones(y_c.size))
    assert constant.theta == 0.0 and constant.cuped == constant.plain
    assert constant.variance_reduction == 0.0


def test_mean_interval_is_the_student_t_interval():
    values = [0.0, 0.0, 12.5, 40.0, 0.0, 7.25]
    assert mean_interval(values) == pytest.approx(
        sps.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=sps.sem(values)))
    assert mean_interval([3.0]) is None and mean_interval([2.0, 2.0]) == (2.0, 2.0)


def test_mde_of_a_proportion_has_the_required_power_and_matches_the_textbook_formula():
    n_t, n_c, p_c = 6000, 700, 0.24
    mde = mde_proportion(n_t, n_c, p_c)
    h = proportion_effectsize(p_c + mde, p_c)
    assert NormalIndPower().power(h, nobs1=n_t, alpha=0.05, ratio=n_c / n_t) == pytest.approx(
        0.8, abs=1e-4)
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert h == pytest.approx(z * math.sqrt(1 / n_t + 1 / n_c), rel=1e-3)
    assert mde_proportion(n_t * 4, n_c * 4, p_c) == pytest.approx(mde / 2, rel=0.05)
    assert mde_proportion(1, 700, p_c) is None and mde_proportion(100, 100, 1.0) is None
    assert mde_proportion(100, 100, 0.0) > 0


def test_mde_of_a_mean_is_cohens_d_times_the_standard_deviation():
    mde = mde_mean(2000, 500, sd=30.0)
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    assert mde == pytest.approx(30.0 * z * math.sqrt(1 / 2000 + 1 / 500), rel=1e-3)
    assert NormalIndPower().power(mde / 30.0, nobs1=2000, alpha=0.05, ratio=0.25) == \
        pytest.approx(0.8, abs=1e-4)
    assert mde_mean(2000, 500, sd=0.0) is None
