"""The statistics of the regression check: pure functions over arrays, no database.

Each function decides whether one quantity of a run is worse than its baseline, and says why. A
quantity is flagged only when the change is both *significant* (a one-sided test against the
baseline, at level ``alpha``) and *large* (its effect size beyond a minimum). The test alone would
flag tiny real shifts once samples are large; the effect size alone flags noise (a p95 of 32
requests moves by 20% between identical runs). Definitions and the reasons for each choice:
docs/metrics.md, "Regressions". benchmarks/regression_false_alarm.py runs these same functions on
simulated histories.

- :func:`latency_shift`: raw per-request values (TTFT, TPOT, E2E) of the run against the pooled
  raw values of the baseline runs. Mann-Whitney U, one-sided (the run's values larger), and the
  relative shift of the percentile itself (linear interpolation, as the scorecard computes it).
- :func:`per_run_change`: one figure per run (output tokens/s, East-West Gbit/s) against the
  baseline runs' figures: a one-sided t prediction interval for a new run on the log scale (exact
  for log-normal run-to-run noise, and made for a handful of points), and the relative change from
  the baseline's geometric mean.
- :func:`error_rate_rise`: an exact one-sided binomial test of the run's errors against the
  baseline's pooled error rate, that rate taken as at least ``ERROR_RATE_FLOOR``, and a rise of
  more than ``ERROR_RATE_MIN_RISE_PP`` percentage points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.01  # one-sided significance level of every test
MIN_REQUESTS = 20  # fewer measured values in the run: no latency comparison (a p95 of 19 is its max)
ERROR_RATE_FLOOR = 0.005  # a baseline with fewer errors is taken to err at 0.5%, not at 0%
ERROR_RATE_MIN_RISE_PP = 1.0  # the error rate must rise by more than this many percentage points


@dataclass(frozen=True)
class Decision:
    test: str  # mann_whitney_u | t_prediction_interval | binomial
    value: float  # this run's figure
    baseline_value: float  # the baseline's figure, computed the same way
    change_pct: float | None  # (value - baseline_value) / baseline_value x 100; None from a baseline of 0
    effect_size: float  # compared with min_effect, in effect_unit ("worse" is positive)
    effect_unit: str  # pct: relative change in percent | pp: percentage points
    min_effect: float
    p_value: float  # one-sided, for "worse"
    alpha: float
    direction: str  # worse | better | same
    flagged: bool
    reason: str


def _direction(value: float, baseline: float, higher_is_better: bool) -> str:
    if value == baseline:
        return "same"
    return "better" if (value > baseline) == higher_is_better else "worse"


def _change_pct(value: float, baseline: float) -> float | None:
    if baseline == 0:
        return 0.0 if value == 0 else None
    return (value - baseline) / abs(baseline) * 100.0


def _verdict(significant: bool, large: bool, effect: str, p_value: float, alpha: float,
             minimum: str) -> tuple[bool, str]:
    sig = f"p={p_value:.2g} {'<' if significant else '>='} {alpha:g}"
    if significant and large:
        return True, f"worse by {effect} (beyond {minimum}) and significant ({sig})"
    if significant:
        return False, f"significant ({sig}) but worse by only {effect} (within {minimum})"
    if large:
        return False, f"worse by {effect} (beyond {minimum}) but not significant ({sig}): noise"
    return False, f"not significant ({sig}), change {effect} within {minimum}"


def latency_shift(current: Sequence[float], baseline: Sequence[float], percentile: float,
                  threshold_pct: float, alpha: float = ALPHA) -> Decision:
    """Is the run's ``percentile`` of a latency (higher is worse) worse than the pooled baseline's?

    Mann-Whitney U asks whether the run's values are stochastically larger than the baseline's
    (ties and sizes handled by scipy's normal approximation with continuity correction); the effect
    size is the relative shift of the percentile, and must exceed ``threshold_pct``.
    """
    x = np.asarray(current, dtype=float)
    y = np.asarray(baseline, dtype=float)
    if x.size < MIN_REQUESTS or y.size < MIN_REQUESTS:
        raise ValueError(f"at least {MIN_REQUESTS} values on each side are needed")
    value = float(np.percentile(x, percentile))
    base = float(np.percentile(y, percentile))
    p_value = float(stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic").pvalue)
    change = _change_pct(value, base)
    effect = math.inf if change is None else change
    direction = _direction(value, base, higher_is_better=False)
    if direction == "better":
        return Decision("mann_whitney_u", value, base, change, effect, "pct", threshold_pct, p_value, alpha,
                        direction, False, f"better: p{percentile:g} {effect:+.1f}%")
    flagged, reason = _verdict(p_value < alpha, effect > threshold_pct, f"{effect:+.1f}% at p{percentile:g}",
                               p_value, alpha, f"{threshold_pct:g}%")
    return Decision("mann_whitney_u", value, base, change, effect, "pct", threshold_pct, p_value, alpha,
                    direction, flagged, reason)


def per_run_change(current: float, baseline: Sequence[float], higher_is_better: bool, threshold_pct: float,
                   alpha: float = ALPHA) -> Decision:
    """Is one run's figure (tokens/s, Gbit/s) worse than the baseline runs' figures?

    On the log scale, a new run from the baseline's distribution lies beyond
    ``mean -/+ t(1 - alpha, n - 1) x s x sqrt(1 + 1/n)`` with probability ``alpha`` (the one-sided
    prediction interval): its p-value is that of the prediction t statistic. Needs 2 or more
    positive baseline figures; the effect size is the change from their geometric mean.
    """
    logs = np.log(np.asarray(baseline, dtype=float))
    n = logs.size
    if n < 2 or current <= 0 or not np.all(np.isfinite(logs)):
        raise ValueError("a positive figure and at least 2 positive baseline figures are needed")
    mean, sd = float(logs.mean()), float(logs.std(ddof=1))
    base = math.exp(mean)
    worse_sign = -1.0 if higher_is_better else 1.0
    shift = worse_sign * (math.log(current) - mean)  # > 0: worse
    if sd == 0:
        p_value = 0.0 if shift > 0 else 1.0
    else:
        t_stat = shift / (sd * math.sqrt(1 + 1 / n))
        p_value = float(stats.t.sf(t_stat, n - 1))
    change = _change_pct(current, base)
    effect = worse_sign * change
    direction = _direction(current, base, higher_is_better)
    if direction == "better":
        return Decision("t_prediction_interval", current, base, change, effect, "pct", threshold_pct, p_value,
                        alpha, direction, False, f"better: {change:+.1f}%")
    flagged, reason = _verdict(p_value < alpha, effect > threshold_pct, f"{change:+.1f}%", p_value, alpha,
                               f"{threshold_pct:g}%")
    return Decision("t_prediction_interval", current, base, change, effect, "pct", threshold_pct, p_value, alpha,
                    direction, flagged, reason)


def error_rate_rise(errors: int, requests: int, baseline_errors: int, baseline_requests: int,
                    alpha: float = ALPHA, floor_rate: float = ERROR_RATE_FLOOR,
                    min_rise_pp: float = ERROR_RATE_MIN_RISE_PP) -> Decision:
    """Did the run's error rate rise above the baseline's pooled rate?

    Exact one-sided binomial test of ``errors`` of ``requests`` against the pooled baseline rate,
    that rate taken as at least ``floor_rate`` (a baseline that happened to see no errors does not
    prove a rate of 0, which would make any single error infinitely unlikely); the rise must also
    be more than ``min_rise_pp`` percentage points.
    """
    if requests < 1 or baseline_requests < 1 or not 0 <= errors <= requests \
            or not 0 <= baseline_errors <= baseline_requests:
        raise ValueError("error counts between 0 and a positive number of requests are needed")
    rate, base = errors / requests, baseline_errors / baseline_requests
    tested = max(base, floor_rate)
    p_value = float(stats.binomtest(errors, requests, tested, alternative="greater").pvalue)
    rise_pp = (rate - base) * 100.0
    direction = _direction(rate, base, higher_is_better=False)
    change = _change_pct(rate, base)
    if direction != "worse":
        return Decision("binomial", rate, base, change, rise_pp, "pp", min_rise_pp, p_value, alpha, direction, False,
                        f"{direction}: {errors} of {requests} failed ({rise_pp:+.2f} pp)")
    flagged, reason = _verdict(p_value < alpha, rise_pp > min_rise_pp,
                               f"{rise_pp:+.2f} pp ({errors} of {requests} failed, tested against "
                               f"{tested:.2%})", p_value, alpha, f"{min_rise_pp:g} pp")
    return Decision("binomial", rate, base, change, rise_pp, "pp", min_rise_pp, p_value, alpha, direction, flagged,
                    reason)
