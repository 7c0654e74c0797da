"""The regression check's decisions on known samples (ragbench.regression_stats, no database).

Samples are deterministic: log-normal quantiles exp(mu + sigma x z((i + 0.5) / n)), so that a run
"with no change" has exactly the baseline's shape and the figures can be worked out by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from ragbench import regression_stats as rs


def lognormal(n: int, median: float = 100.0, sigma: float = 0.4) -> np.ndarray:
    z = stats.norm.ppf((np.arange(n) + 0.5) / n)
    return median * np.exp(sigma * z)


BASELINE = np.concatenate([lognormal(32)] * 7)  # 7 runs of 32 requests, all alike


def test_a_noisy_run_whose_p95_moved_by_chance_is_not_flagged():
    # The old check's case: two slow requests lift the p95 of 32 by more than the 10% threshold,
    # but the other 30 requests are exactly the baseline's: no evidence the service got slower.
    run = lognormal(32)
    run[-2:] *= 1.8
    d = rs.latency_shift(run, BASELINE, 95, threshold_pct=10)
    assert d.effect_size > 10  # the old rule (p95 vs the baseline's, 10%) would flag this
    assert d.p_value > rs.ALPHA
    assert (d.test, d.direction, d.flagged) == ("mann_whitney_u", "worse", False)
    assert "not significant" in d.reason and "noise" in d.reason


def test_a_clear_latency_regression_is_flagged():
    run, baseline = lognormal(256) * 1.3, np.concatenate([lognormal(256)] * 7)
    d = rs.latency_shift(run, baseline, 95, threshold_pct=10)
    assert d.flagged and d.direction == "worse"
    assert d.value == pytest.approx(np.percentile(run, 95))
    assert d.baseline_value == pytest.approx(np.percentile(baseline, 95))
    assert d.change_pct == pytest.approx((d.value / d.baseline_value - 1) * 100) and d.effect_size == d.change_pct
    assert 25 < d.change_pct < 31 and d.p_value < 1e-10
    assert d.reason.startswith("worse by +")


def test_a_significant_but_small_shift_is_not_flagged():
    d = rs.latency_shift(lognormal(2048, sigma=0.2) * 1.04, np.concatenate([lognormal(2048, sigma=0.2)] * 4), 95,
                         threshold_pct=10)
    assert d.p_value < rs.ALPHA and not d.flagged
    assert "but worse by only" in d.reason


def test_a_faster_run_is_better_and_never_flagged():
    d = rs.latency_shift(lognormal(64) * 0.5, BASELINE, 95, threshold_pct=10)
    assert (d.direction, d.flagged) == ("better", False) and d.p_value > 0.99


def test_latency_needs_enough_values():
    with pytest.raises(ValueError, match="at least 20"):
        rs.latency_shift(lognormal(19), BASELINE, 95, threshold_pct=10)


def test_per_run_figure_uses_a_t_prediction_interval_on_the_log_scale():
    baseline = [100.0, 101.0, 99.0, 100.5, 99.5, 100.2, 99.8]
    logs = np.log(baseline)
    n, mean, sd = len(logs), logs.mean(), logs.std(ddof=1)
    for value in (80.0, 92.0):
        d = rs.per_run_change(value, baseline, higher_is_better=True, threshold_pct=10)
        t = (mean - math.log(value)) / (sd * math.sqrt(1 + 1 / n))
        assert d.p_value == pytest.approx(stats.t.sf(t, n - 1))
        assert d.baseline_value == pytest.approx(math.exp(mean))
        assert d.test == "t_prediction_interval" and d.direction == "worse"
    assert rs.per_run_change(80.0, baseline, True, 10).flagged  # -20%: far outside the interval
    small = rs.per_run_change(92.0, baseline, True, 10)  # -8%: significant, yet within the threshold
    assert small.p_value < rs.ALPHA and not small.flagged


def test_per_run_figure_from_a_noisy_baseline_is_not_flagged():
    # tokens/s that swing +-20% from run to run: a 15% drop is within that spread
    d = rs.per_run_change(85.0, [100.0, 130.0, 80.0, 115.0, 90.0], higher_is_better=True, threshold_pct=10)
    assert d.effect_size > 10 and d.p_value > rs.ALPHA and not d.flagged


def test_per_run_direction_follows_the_quantity():
    assert rs.per_run_change(120.0, [100.0, 101.0, 99.0], higher_is_better=True, threshold_pct=10).direction \
        == "better"
    lower_is_better = rs.per_run_change(120.0, [100.0, 101.0, 99.0], higher_is_better=False, threshold_pct=10)
    assert (lower_is_better.direction, lower_is_better.flagged) == ("worse", True)


@pytest.mark.parametrize("requests", [32, 64, 256])
def test_one_error_against_a_baseline_without_errors_is_not_flagged(requests):
    d = rs.error_rate_rise(1, requests, 0, 7 * requests)
    assert (d.test, d.direction, d.flagged) == ("binomial", "worse", False)
    assert d.change_pct is None and d.baseline_value == 0.0
    # tested against the floor, not against 0 (which would make one error impossible: p = 0)
    assert d.p_value == pytest.approx(stats.binomtest(1, requests, rs.ERROR_RATE_FLOOR, alternative="greater").pvalue)


def test_a_clear_error_rise_is_flagged():
    d = rs.error_rate_rise(12, 256, 3, 1792)
    assert d.flagged and d.effect_unit == "pp"
    assert d.effect_size == pytest.approx((12 / 256 - 3 / 1792) * 100)


def test_a_significant_error_rise_below_the_absolute_floor_is_not_flagged():
    # 0.75% against a pooled 0.1% (tested as the 0.5% floor): significant with 20000 requests, but
    # less than one percentage point more
    d = rs.error_rate_rise(150, 20000, 20, 20000)
    assert d.p_value < rs.ALPHA and not d.flagged


def test_fewer_errors_are_better():
    assert rs.error_rate_rise(0, 64, 10, 448).direction == "better"
    assert rs.error_rate_rise(0, 64, 0, 448).direction == "same"
