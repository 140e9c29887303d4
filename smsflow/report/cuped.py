"""Difference of two arms' means, plain and with CUPED, and what a sample can detect.

Pure statistics on per-customer values (a rate is the mean of 0/1 values), no records:

* :func:`difference` — Welch's t interval and test for mean(t) - mean(c) (scipy), and the
  relative lift mean(t)/mean(c) - 1 with a delta-method interval.
* :func:`cuped` — CUPED (Deng, Xu, Kohavi, Walker 2013): each value is adjusted by
  ``theta * (x - mean(x))`` for a pre-period covariate ``x`` that the treatment cannot
  have changed, with ``theta = cov(x, y) / var(x)`` over both arms pooled. The adjusted
  difference estimates the same effect with its variance multiplied by about
  ``1 - corr(x, y)^2``; both estimates are returned side by side with the reduction achieved.
* :func:`mde_proportion` / :func:`mde_mean` — the smallest effect the current arms detect
  with the given power at the given alpha (statsmodels' :class:`NormalIndPower`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.weightstats import DescrStatsW

from smsflow.report.stats import ALPHA, POWER, Interval


@dataclass(frozen=True)
class Estimate:
    """mean(t) - mean(c) with Welch's interval and p-value, and the relative lift."""

    n_t: int
    n_c: int
    mean_t: float
    mean_c: float
    diff: float
    diff_ci: Interval
    se: float               # standard error of diff, sqrt(s_t^2/n_t + s_c^2/n_c)
    p_value: float
    lift: float | None      # mean_t / mean_c - 1; None unless mean_c > 0
    lift_ci: Interval | None


@dataclass(frozen=True)
class CupedComparison:
    plain: Estimate
    cuped: Estimate
    theta: float
    correlation: float         # Pearson correlation of covariate and outcome, both arms pooled
    variance_reduction: float  # 1 - se(cuped)^2 / se(plain)^2: the share of variance removed

    @property
    def ci_width_ratio(self) -> float | None:
        """CUPED interval width over plain interval width (< 1: narrower)."""
        plain = self.plain.diff_ci[1] - self.plain.diff_ci[0]
        return None if plain <= 0 else (self.cuped.diff_ci[1] - self.cuped.diff_ci[0]) / plain


def _array(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=float)


def difference(y_t: Sequence[float], y_c: Sequence[float],
               alpha: float = ALPHA) -> Estimate | None:
    """Welch comparison of the means; None with fewer than two values in an arm."""
    t, c = _array(y_t), _array(y_c)
    if t.size < 2 or c.size < 2:
        return None
    mean_t, mean_c = float(t.mean()), float(c.mean())
    se_t, se_c = math.sqrt(t.var(ddof=1) / t.size), math.sqrt(c.var(ddof=1) / c.size)
    se, diff = math.hypot(se_t, se_c), mean_t - mean_c
    if se == 0.0:  # both arms constant: no t statistic exists, the difference is exact
        ci, p_value = (diff, diff), (1.0 if diff == 0 else 0.0)
    else:
        result = sps.ttest_ind(t, c, equal_var=False)
        interval = result.confidence_interval(confidence_level=1 - alpha)
        ci, p_value = (float(interval.low), float(interval.high)), float(result.pvalue)
    lift, lift_ci = relative_lift(mean_t, se_t, mean_c, se_c, alpha)
    return Estimate(int(t.size), int(c.size), mean_t, mean_c, diff, ci, se, p_value,
                    lift, lift_ci)


def relative_lift(mean_t: float, se_t: float, mean_c: float, se_c: float,
                  alpha: float = ALPHA) -> tuple[float | None, Interval | None]:
    """``mean_t / mean_c - 1`` with the delta-method interval of a ratio of independent
    means: var(r) = se_t^2 / m_c^2 + m_t^2 se_c^2 / m_c^4. None when ``mean_c <= 0``."""
    if not mean_c > 0:
        return None, None
    ratio = mean_t / mean_c
    se = math.sqrt(se_t ** 2 / mean_c ** 2 + mean_t ** 2 * se_c ** 2 / mean_c ** 4)
    z = float(sps.norm.ppf(1 - alpha / 2))
    return ratio - 1, (ratio - 1 - z * se, ratio - 1 + z * se)


def cuped_theta(y: Sequence[float], x: Sequence[float]) -> float:
    """cov(x, y) / var(x), the slope of y on x; 0 when x does not vary."""
    y_, x_ = _array(y), _array(x)
    if x_.size < 2:
        return 0.0
    var_x = float(x_.var(ddof=1))
    if var_x <= 0:
        return 0.0
    return float(np.cov(x_, y_, ddof=1)[0, 1] / var_x)


def cuped(y_t: Sequence[float], x_t: Sequence[float], y_c: Sequence[float],
          x_c: Sequence[float], alpha: float = ALPHA) -> CupedComparison | None:
    """Plain and CUPED-adjusted comparison of outcome ``y`` with pre-period covariate ``x``
    (same order as ``y`` in each arm). None with fewer than two customers in an arm."""
    if len(x_t) != len(y_t) or len(x_c) != len(y_c):
        raise ValueError("each customer needs one covariate value")
    plain = difference(y_t, y_c, alpha)
    if plain is None:
        return None
    y = np.concatenate([_array(y_t), _array(y_c)])
    x = np.concatenate([_array(x_t), _array(x_c)])
    theta, x_bar = cuped_theta(y, x), float(x.mean())
    adjusted = difference(_array(y_t) - theta * (_array(x_t) - x_bar),
                          _array(y_c) - theta * (_array(x_c) - x_bar), alpha)
    assert adjusted is not None  # same sizes as plain
    correlation = 0.0
    if x.std() > 0 and y.std() > 0:
        correlation = float(np.corrcoef(x, y)[0, 1])
    reduction = 1.0 - (adjusted.se / plain.se) ** 2 if plain.se > 0 else 0.0
    return CupedComparison(plain, adjusted, theta, correlation, reduction)


def mean_interval(values: Sequence[float], alpha: float = ALPHA) -> Interval | None:
    """Student t interval of one arm's mean; None with fewer than two values."""
    data = _array(values)
    if data.size < 2:
        return None
    if float(data.min()) == float(data.max()):
        return (float(data[0]), float(data[0]))
    low, high = DescrStatsW(data).tconfint_mean(alpha=alpha)
    return (float(low), float(high))


def _effect_size(n_t: int, n_c: int, alpha: float, power: float) -> float | None:
    """Standardised effect (Cohen's d or h) detectable with ``power`` by a two-sided
    z test at ``alpha`` with ``n_t`` and ``n_c`` customers."""
    if n_t < 2 or n_c < 2:
        return None
    try:
        effect = NormalIndPower().solve_power(effect_size=None, nobs1=n_t, alpha=alpha,
                                              power=power, ratio=n_c / n_t,
                                              alternative="two-sided")
    except (ValueError, RuntimeError):
        return None
    effect = float(np.asarray(effect).item())
    return effect if math.isfinite(effect) and effect > 0 else None


def mde_proportion(n_t: int, n_c: int, p_c: float, alpha: float = ALPHA,
                   power: float = POWER) -> float | None:
    """Smallest absolute increase over the control rate ``p_c`` that the arms detect:
    Cohen's h from :class:`NormalIndPower`, turned back into a rate."""
    h = _effect_size(n_t, n_c, alpha, power)
    if h is None or not 0 <= p_c < 1:
        return None
    angle = math.asin(math.sqrt(p_c)) + h / 2
    p_t = 1.0 if angle >= math.pi / 2 else math.sin(angle) ** 2
    return p_t - p_c


def mde_mean(n_t: int, n_c: int, sd: float, alpha: float = ALPHA,
             power: float = POWER) -> float | None:
    """Smallest difference of means the arms detect, for a per-customer standard
    deviation ``sd`` (Cohen's d from :class:`NormalIndPower` times ``sd``)."""
    d = _effect_size(n_t, n_c, alpha, power)
    return None if d is None or not sd > 0 else d * sd
