"""Bootstrap intervals of the headline figures (plugins/ragbench/intervals.py) against known truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from ragbench import intervals

pytestmark = pytest.mark.unit

MU, SIGMA = np.log(350.0), 0.4  # log-normal TTFT in ms: median 350 ms, a heavy right tail


def true_percentile(q: float) -> float:
    return float(np.exp(MU + SIGMA * norm.ppf(q / 100)))


def coverage(q: float, n: int, trials: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    truth, hits = true_percentile(q), 0
    for _ in range(trials):
        lo, hi = intervals.percentile_interval(rng.lognormal(MU, SIGMA, n), q, rng, resamples=2000)
        hits += lo <= truth <= hi
    return hits / trials


@pytest.mark.parametrize(("q", "n"), [(50, 32), (50, 200), (95, 200), (95, 1000)])
def test_the_interval_covers_the_true_percentile_about_95_percent_of_the_time(q, n):
    """400 independent runs drawn from a known log-normal: the share of 95% intervals that contain
    the true percentile. With 400 trials the share's standard error is sqrt(.95 x .05 / 400) = 1.1
    points; the percentile bootstrap is known to cover slightly less than nominal at small n. So
    [0.91, 0.985] (about -3.5 / +3 standard errors) accepts a correct interval and rejects one that
    is too narrow (e.g. a normal interval on the mean) or twice too wide (coverage ~ 0.997)."""
    assert 0.91 <= coverage(q, n, trials=400, seed=q * 10_000 + n) <= 0.985


def test_below_the_low_confidence_rule_the_tail_interval_is_too_narrow():
    """Why p95 from fewer than 200 requests is marked low-confidence: its bootstrap interval
    misses the true p95 far more often than 5% of the time (32 requests: about 1 in 5)."""
    assert intervals.low_confidence(32, 95)
    assert coverage(95, 32, trials=400, seed=7) < 0.88


def test_the_resampling_shortcut_is_the_bootstrap():
    """Sampling the order statistics directly gives the same distribution as building resamples."""
    rng = np.random.default_rng(3)
    x = rng.lognormal(MU, SIGMA, 50)
    brute = np.percentile(x[rng.integers(0, 50, (40_000, 50))], 95, axis=1)
    lo, hi = intervals.percentile_interval(x, 95, np.random.default_rng(4), resamples=40_000)
    b_lo, b_hi = np.quantile(brute, [0.025, 0.975])
    assert lo == pytest.approx(b_lo, rel=0.02) and hi == pytest.approx(b_hi, rel=0.02)


def test_throughput_resamples_requests_over_the_fixed_wall_time():
    rng = np.random.default_rng(5)
    tokens = rng.integers(0, 65, 300)  # some requests failed: 0 tokens
    lo, hi = intervals.throughput_interval(tokens, 30.0, np.random.default_rng(6), resamples=20_000)
    brute = tokens[rng.integers(0, 300, (20_000, 300))].sum(axis=1) / 30.0
    b_lo, b_hi = np.quantile(brute, [0.025, 0.975])
    assert lo == pytest.approx(b_lo, rel=0.01) and hi == pytest.approx(b_hi, rel=0.01)
    assert lo < tokens.sum() / 30.0 < hi


def test_degenerate_inputs():
    rng = np.random.default_rng(0)
    assert intervals.percentile_interval([], 50, rng) is None
    assert intervals.percentile_interval([12.5], 95, rng) == (12.5, 12.5)
    assert intervals.percentile_interval([3.0] * 40, 95, rng) == (3.0, 3.0)
    assert intervals.throughput_interval([], 10.0, rng) is None
    assert intervals.throughput_interval([5, 5], 0.0, rng) is None
    out = intervals.headline_intervals([], [], [], [0, 0], 4.0)  # every request failed
    assert out["ttft_p95_ms_lo"] is None and out["output_tokens_per_s_lo"] == 0.0 == out["output_tokens_per_s_hi"]


def test_the_same_data_give_the_same_intervals():
    x = list(np.random.default_rng(1).lognormal(MU, SIGMA, 100))
    args = (x, x, x, [10] * 100, 5.0)
    assert intervals.headline_intervals(*args) == intervals.headline_intervals(*args)


@pytest.mark.parametrize(("q", "fewest"), [(50, 20), (90, 100), (95, 200), (99, 1000)])
def test_low_confidence_rule(q, fewest):
    assert intervals.min_samples(q) == fewest
    assert intervals.low_confidence(fewest - 1, q) and not intervals.low_confidence(fewest, q)


def test_low_confidence_columns_of_a_summary():
    summary = {"ttft_ms": {"count": 150}, "tpot_ms": {"count": 150}, "e2e_ms": {"count": 150},
               "itl_ms": {"count": 5000}}
    flagged = intervals.low_confidence_columns(summary)
    assert set(flagged) == {"ttft_p95_ms", "ttft_p99_ms", "tpot_p95_ms", "tpot_p99_ms", "e2e_p95_ms", "e2e_p99_ms"}
    assert intervals.low_confidence_columns({"ttft_ms": {"count": 0}}) == []  # no values: no figure to flag
