"""Server histogram math: differences of two scrapes, mean and interpolated quantiles."""

from __future__ import annotations

import math
import random

import pytest

from workload.telemetry.histograms import difference, quantile, server_histograms, summarize

pytestmark = pytest.mark.unit

INF = math.inf


def cumulative(values: list[float], bounds: list[float]) -> list[tuple[float, float]]:
    return [(b, float(sum(v <= b for v in values))) for b in [*bounds, INF]]


def test_quantile_interpolates_inside_the_bucket():
    buckets = [(0.1, 2.0), (0.5, 5.0), (INF, 6.0)]
    # rank 3 of 6 lies 1/3 of the way through the (0.1, 0.5] bucket
    assert quantile(buckets, 0.5) == pytest.approx(0.1 + 0.4 / 3)
    # rank 1 of 6 in the first bucket, whose lower bound is 0
    assert quantile(buckets, 1 / 6) == pytest.approx(0.05)
    # in the +Inf bucket: the highest finite bound, as histogram_quantile does
    assert quantile(buckets, 0.99) == 0.5


def test_quantile_skips_empty_buckets_and_handles_no_data():
    assert quantile([(0.1, 0.0), (0.2, 0.0), (0.4, 4.0), (INF, 4.0)], 0.5) == pytest.approx(0.3)
    assert quantile([(0.1, 0.0), (INF, 0.0)], 0.5) is None
    assert quantile([], 0.5) is None


def test_quantile_is_close_to_the_exact_quantile_with_fine_buckets():
    rng = random.Random(7)
    values = [rng.expovariate(20) for _ in range(5000)]  # mean 50 ms
    bounds = [i / 200 for i in range(1, 200)]  # 5 ms buckets up to ~1 s
    buckets = cumulative(values, bounds)
    ordered = sorted(values)
    for q in (0.5, 0.9, 0.95, 0.99):
        exact = ordered[int(q * len(ordered)) - 1]
        assert quantile(buckets, q) == pytest.approx(exact, abs=0.005), q


def test_difference_keeps_only_what_happened_in_between():
    before = {"buckets": [(0.1, 3.0), (1.0, 4.0), (INF, 4.0)], "sum": 0.5, "count": 4.0}
    after = {"buckets": [(0.1, 5.0), (1.0, 9.0), (INF, 10.0)], "sum": 4.5, "count": 10.0}
    diff = difference(before, after)
    assert diff == {"buckets": [(0.1, 2.0), (1.0, 5.0), (INF, 6.0)], "sum": 4.0, "count": 6.0}


def test_difference_after_a_server_restart_or_other_buckets_keeps_after():
    after = {"buckets": [(0.1, 1.0), (INF, 2.0)], "sum": 0.3, "count": 2.0}
    restarted_from = {"buckets": [(0.1, 5.0), (INF, 9.0)], "sum": 3.0, "count": 9.0}
    assert difference(restarted_from, after) == after
    other_bounds = {"buckets": [(0.2, 0.0), (INF, 1.0)], "sum": 0.1, "count": 1.0}
    assert difference(other_bounds, after) == after
    assert difference(None, after) == after


def test_summarize_reports_mean_and_quantiles_in_ms():
    row = summarize("vllm:time_to_first_token_seconds",
                    {"buckets": [(0.01, 1.0), (0.02, 3.0), (INF, 4.0)], "sum": 0.07, "count": 4.0})
    assert row["mean_ms"] == pytest.approx(17.5)
    assert row["p50_ms"] == pytest.approx(15.0)  # rank 2: halfway through (10, 20] ms
    assert row["p99_ms"] == pytest.approx(20.0)  # +Inf bucket
    assert row["buckets"] == [[0.01, 1.0], [0.02, 3.0], ["+Inf", 4.0]]
    assert row["count"] == 4.0 and row["unit"] == "seconds"
    empty = summarize("x", {"buckets": [(0.01, 0.0), (INF, 0.0)], "sum": 0.0, "count": 0.0})
    assert empty["mean_ms"] is None and empty["p95_ms"] is None


def test_server_histograms_uses_the_older_itl_name_when_the_newer_is_absent():
    h = {"buckets": [(0.01, 2.0), (INF, 2.0)], "sum": 0.01, "count": 2.0}
    out = server_histograms({}, {"vllm:time_per_output_token_seconds": h, "vllm:time_to_first_token_seconds": h,
                                 "vllm:unrelated_seconds": h})
    assert set(out) == {"itl", "ttft"}
    assert out["itl"]["metric"] == "vllm:time_per_output_token_seconds"
