"""Treatment-versus-control statistics for a holdout, from scipy and statsmodels.

Conversion is compared as two independent proportions (Wilson interval per arm, Newcombe
interval for the difference, Katz log interval for the ratio, z test or Fisher's exact test
for small counts); revenue per enrolled customer with Welch's t test, since the arms differ
in size and variance (a 10% holdout is small). The power check answers the analyst's real
question: is the sample big enough to believe the observed lift?
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportion_effectsize,
    proportions_ztest,
)

ALPHA = 0.05
POWER = 0.80
MIN_EXPECTED_CELL = 5  # Cochran's rule: below this the z test's normal approximation is poor

Interval = tuple[float, float]


@dataclass(frozen=True)
class ProportionComparison:
    """Conversion rates of both arms, their difference and ratio, with intervals."""

    rate_t: float
    rate_c: float
    ci_t: Interval
    ci_c: Interval
    diff: float            # absolute lift, rate_t - rate_c
    diff_ci: Interval      # Newcombe (hybrid score)
    lift: float | None     # relative lift, rate_t / rate_c - 1 (None when control is 0)
    lift_ci: Interval | None
    p_value: float
    test: str              # "z" or "fisher"


@dataclass(frozen=True)
class MeanComparison:
    """Welch comparison of a per-customer metric (revenue per enrolled customer)."""

    mean_t: float
    mean_c: float
    diff: float
    diff_ci: Interval
    p_value: float


@dataclass(frozen=True)
class PowerCheck:
    """Sample size needed per arm to detect the observed lift, at the current allocation."""

    needed_t: int | None   # None: no lift observed, no finite sample detects it
    needed_c: int | None
    more_t: int | None     # still needed beyond what each arm has
    more_c: int | None
    underpowered: bool
    warning: str | None


def wilson(successes: int, n: int, alpha: float = ALPHA) -> Interval:
    """Wilson score interval; (0, 1) for an empty arm, since nothing is known."""
    if n <= 0:
        return (0.0, 1.0)
    low, high = proportion_confint(successes, n, alpha=alpha, method="wilson")
    p = successes / n
    # Floating point can put a bound a hair on the wrong side of the estimate (2.8e-17 > 0
    # for zero successes); charts then see negative error bars.
    return (max(0.0, min(float(low), p)), min(1.0, max(float(high), p)))


def compare_proportions(x_t: int, n_t: int, x_c: int, n_c: int,
                        alpha: float = ALPHA) -> ProportionComparison:
    """Compare conversion ``x_t/n_t`` (treatment) with ``x_c/n_c`` (control); both n > 0."""
    if n_t <= 0 or n_c <= 0:
        raise ValueError("both arms need at least one enrolled customer")
    rate_t, rate_c = x_t / n_t, x_c / n_c
    diff_ci = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="newcomb",
                                         compare="diff", alpha=alpha)
    lift = lift_ci = None
    if x_c > 0:
        lift = rate_t / rate_c - 1.0
        # Katz log interval; with a zero treatment count its 0.5-adjusted variant stays finite.
        method = "log" if x_t > 0 else "log-adjusted"
        low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method=method,
                                               compare="ratio", alpha=alpha)
        lift_ci = (float(low) - 1.0, float(high) - 1.0)
    p_value, test = two_sided_p(x_t, n_t, x_c, n_c)
    return ProportionComparison(rate_t, rate_c, wilson(x_t, n_t, alpha), wilson(x_c, n_c, alpha),
                                rate_t - rate_c, (float(diff_ci[0]), float(diff_ci[1])),
                                lift, lift_ci, p_value, test)


def two_sided_p(x_t: int, n_t: int, x_c: int, n_c: int) -> tuple[float, str]:
    """Pooled two-proportion z test, or Fisher's exact test when an expected cell is small."""
    total_x, total_n = x_t + x_c, n_t + n_c
    expected = [n * total_x / total_n for n in (n_t, n_c)]
    expected += [n * (total_n - total_x) / total_n for n in (n_t, n_c)]
    if min(expected) < MIN_EXPECTED_CELL:
        table = [[x_t, n_t - x_t], [x_c, n_c - x_c]]
        return float(sps.fisher_exact(table, alternative="two-sided").pvalue), "fisher"
    _, p_value = proportions_ztest([x_t, x_c], [n_t, n_c])
    return float(p_value), "z"


def compare_means(values_t: Sequence[float], values_c: Sequence[float],
                  alpha: float = ALPHA) -> MeanComparison | None:
    """Welch's t test and interval for mean(t) - mean(c); None with fewer than 2 per arm."""
    if len(values_t) < 2 or len(values_c) < 2:
        return None
    mean_t, mean_c = float(sum(values_t) / len(values_t)), float(sum(values_c) / len(values_c))
    if _constant(values_t) and _constant(values_c):  # zero variance: no t statistic exists
        same = mean_t == mean_c
        return MeanComparison(mean_t, mean_c, mean_t - mean_c, (mean_t - mean_c,) * 2,
                              1.0 if same else 0.0)
    result = sps.ttest_ind(values_t, values_c, equal_var=False)
    ci = result.confidence_interval(confidence_level=1 - alpha)
    return MeanComparison(mean_t, mean_c, mean_t - mean_c, (float(ci.low), float(ci.high)),
                          float(result.pvalue))


def _constant(values: Sequence[float]) -> bool:
    return min(values) == max(values)


def required_sample_size(p_t: float, p_c: float, ratio: float = 1.0, alpha: float = ALPHA,
                         power: float = POWER) -> tuple[int, int] | None:
    """Customers per arm (treatment, control = ratio x treatment) for a two-sided test to
    detect ``p_t`` vs ``p_c`` (Cohen's h); None when there is no difference to detect."""
    effect = abs(proportion_effectsize(p_t, p_c))
    if effect == 0 or not math.isfinite(effect) or ratio <= 0:
        return None
    n_t = NormalIndPower().solve_power(effect_size=effect, alpha=alpha, power=power,
                                       ratio=ratio, alternative="two-sided")
    return math.ceil(n_t), math.ceil(n_t * ratio)


def power_check(x_t: int, n_t: int, x_c: int, n_c: int, alpha: float = ALPHA,
                power: float = POWER) -> PowerCheck:
    """Is each arm big enough to detect the observed lift at ``power``? With a plain warning."""
    if n_t <= 0 or n_c <= 0:
        return PowerCheck(None, None, None, None, True,
                          "One arm has no enrolled customers: nothing can be compared yet.")
    needed = required_sample_size(x_t / n_t, x_c / n_c, n_c / n_t, alpha, power)
    if needed is None:
        return PowerCheck(None, None, None, None, True,
                          "No difference between the arms was observed, so no sample size can "
                          "confirm one; the result is inconclusive, not a proof of no effect.")
    more_t, more_c = max(0, needed[0] - n_t), max(0, needed[1] - n_c)
    if not (more_t or more_c):
        return PowerCheck(*needed, 0, 0, False, None)
    warning = (f"Too few customers to trust this lift: detecting it at {power:.0%} power needs "
               f"about {needed[0]:,} treatment and {needed[1]:,} control customers "
               f"({more_t:,} and {more_c:,} more). Treat the result as inconclusive.")
    return PowerCheck(*needed, more_t, more_c, True, warning)
