"""Bootstrap 95% intervals for the headline North-South figures, from the raw request records.

The loader calls :func:`headline_intervals` once per scenario (docs/metrics.md, "Uncertainty").

**Percentiles** (TTFT p50/p95, TPOT p50, E2E p95): the percentile bootstrap, i.e. the 2.5th and
97.5th percentiles of the figure over resamples of the measured successful requests drawn with
replacement. It is sampled exactly without building the resamples: a resample of n values from
sorted data ``x`` is ``x[floor(n * U_i)]`` for n uniforms ``U_i``, a non-decreasing map, so its
k-th smallest value is ``x[floor(n * U_(k))]`` where ``U_(k)`` ~ Beta(k, n - k + 1), and the next
order statistic is ``U_(k) + (1 - U_(k)) * Beta(1, n - k)``. A percentile interpolated between
two order statistics (numpy's default, as in ``workload.bench.metrics.percentile``) needs just
those two, so a resample costs O(1) after one sort, whatever n is: 100k records cost a sort.

**Output tokens/s**: the scenario's output tokens over its wall time. Resampled: the measured
requests (failed ones count 0 tokens) drawn with replacement, their tokens summed, divided by the
same wall time (the duration is the schedule's, not a per-request quantity). Token counts take few
distinct values, so a resample is one multinomial draw over the distinct counts.

**Low confidence**: a percentile with fewer than ``MIN_TAIL`` samples beyond it (on its smaller
side: n x min(q, 1 - q) < 10) is marked low-confidence: p50 from fewer than 20 values, p90 from
fewer than 100, p95 from fewer than 200, p99 from fewer than 1,000. Its interval is still computed
and stored; the bootstrap cannot see a tail it has too few points of, so it is too narrow there.

The random generator is seeded with a fixed value: loading the same document twice stores the same
intervals (a reload changes nothing).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 4000
MIN_TAIL = 10
SEED = 20261127

# (summary key, column of ns_summaries, percentile): the percentiles given an interval
HEADLINE_PERCENTILES = (
    ("ttft_ms", "ttft_p50_ms", 50), ("ttft_ms", "ttft_p95_ms", 95),
    ("tpot_ms", "tpot_p50_ms", 50), ("e2e_ms", "e2e_p95_ms", 95),
)
# every percentile column of ns_summaries checked for low confidence
CHECKED_PERCENTILES = tuple((key, f"{key[:-3]}_p{p}_ms", p)
                            for key in ("ttft_ms", "e2e_ms", "tpot_ms", "itl_ms") for p in (50, 90, 95, 99))


def low_confidence(n: int, q: float) -> bool:
    """True when fewer than MIN_TAIL of n samples lie beyond the q-th percentile (on its smaller side)."""
    return n * min(q, 100 - q) / 100 < MIN_TAIL


def min_samples(q: float) -> int:
    """The fewest samples for which the q-th percentile is not low-confidence."""
    return math.ceil(MIN_TAIL * 100 / min(q, 100 - q) - 1e-9)


def percentile_interval(values: Sequence[float] | np.ndarray, q: float, rng: np.random.Generator,
                        resamples: int = RESAMPLES) -> tuple[float, float] | None:
    """Percentile-bootstrap interval of the q-th percentile (linear interpolation); None without values."""
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0:
        return None
    if n == 1:
        return float(x[0]), float(x[0])
    pos = (n - 1) * q / 100
    k = math.floor(pos)  # 0-based: the resample's sorted values k and k + 1 are interpolated
    frac = pos - k
    u1 = rng.beta(k + 1, n - k, size=resamples)  # U_(k+1) of n uniforms
    i1 = np.minimum((n * u1).astype(np.int64), n - 1)
    est = x[i1]
    if frac > 0:
        u2 = u1 + (1 - u1) * rng.beta(1, n - k - 1, size=resamples)
        i2 = np.minimum((n * u2).astype(np.int64), n - 1)
        est = est + frac * (x[i2] - est)
    alpha = (1 - CONFIDENCE) / 2
    lo, hi = np.quantile(est, [alpha, 1 - alpha])
    return float(lo), float(hi)


def throughput_interval(tokens: Sequence[int] | np.ndarray, wall_time_s: float, rng: np.random.Generator,
                        resamples: int = RESAMPLES) -> tuple[float, float] | None:
    """Interval of sum(tokens) / wall_time_s over resamples of the requests (tokens: one per measured
    request, 0 for a failed one)."""
    t = np.asarray(tokens, dtype=float)
    n = len(t)
    if n == 0 or not wall_time_s or wall_time_s <= 0:
        return None
    distinct, counts = np.unique(t, return_counts=True)
    draws = rng.multinomial(n, counts / n, size=resamples)
    sums = draws @ distinct / wall_time_s
    alpha = (1 - CONFIDENCE) / 2
    lo, hi = np.quantile(sums, [alpha, 1 - alpha])
    return float(lo), float(hi)


def headline_intervals(ttft_ms: Iterable[float], tpot_ms: Iterable[float | None], e2e_ms: Iterable[float],
                       tokens: Iterable[int], wall_time_s: float) -> dict[str, float | None]:
    """``{<column>_lo: .., <column>_hi: ..}`` for ttft_p50_ms, ttft_p95_ms, tpot_p50_ms, e2e_p95_ms and
    output_tokens_per_s. ttft/tpot/e2e: the measured successful requests' values; tokens: every
    measured request's output tokens (0 when it failed)."""
    rng = np.random.default_rng(SEED)
    samples = {"ttft_ms": [v for v in ttft_ms if v is not None], "tpot_ms": [v for v in tpot_ms if v is not None],
               "e2e_ms": [v for v in e2e_ms if v is not None]}
    out: dict[str, float | None] = {}
    for key, column, q in HEADLINE_PERCENTILES:
        interval = percentile_interval(samples[key], q, rng)
        out[f"{column}_lo"], out[f"{column}_hi"] = interval or (None, None)
    interval = throughput_interval(list(tokens), wall_time_s, rng)
    out["output_tokens_per_s_lo"], out["output_tokens_per_s_hi"] = interval or (None, None)
    return out


def low_confidence_columns(summary: dict) -> list[str]:
    """The ns_summaries percentile columns of a summary that are low-confidence (by their sample count)."""
    flagged = []
    for key, column, q in CHECKED_PERCENTILES:
        dist = summary.get(key) or {}
        n = dist.get("count") or 0
        if n and low_confidence(n, q):
            flagged.append(column)
    return flagged
