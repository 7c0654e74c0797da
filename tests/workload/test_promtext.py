"""Reading a server's own histograms from Prometheus text (vLLM's /metrics layout)."""

from __future__ import annotations

import pytest

from workload.bench import promtext

pytestmark = pytest.mark.unit

BEFORE = """\
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="tiny"} 0.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="tiny"} 4.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="tiny"} 4.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="tiny"} 0.1
vllm:prompt_tokens_total{engine="0",model_name="tiny"} 556.0
vllm:prompt_tokens_total{engine="1",model_name="tiny"} 44.0
odd_label{path="a}b \\" c"} 7
gauge_nan NaN
"""

AFTER = """\
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="tiny"} 8.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="tiny"} 8.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="tiny"} 0.3
vllm:prompt_tokens_total{engine="0",model_name="tiny"} 1112.0
vllm:prompt_tokens_total{engine="1",model_name="tiny"} 44.0
"""


def test_totals_sum_label_sets_and_skip_buckets_comments_and_nan():
    t = promtext.totals(BEFORE)
    assert t == {"vllm:time_to_first_token_seconds_count": 4.0, "vllm:time_to_first_token_seconds_sum": 0.1,
                 "vllm:prompt_tokens_total": 600.0, "odd_label": 7.0}


def test_histogram_mean_between_two_scrapes():
    before, after = promtext.totals(BEFORE), promtext.totals(AFTER)
    mean, n = promtext.histogram_mean(before, after, "vllm:time_to_first_token_seconds")
    assert n == 4
    assert mean == pytest.approx(0.05)  # (0.3 - 0.1) / (8 - 4)
    assert promtext.delta(before, after, "vllm:prompt_tokens_total") == 556.0


def test_histogram_without_new_observations_has_no_mean():
    t = promtext.totals(BEFORE)
    assert promtext.histogram_mean(t, t, "vllm:time_to_first_token_seconds") == (None, 0)
    assert promtext.histogram_mean({}, {}, "missing") == (None, 0)


@pytest.mark.parametrize("text", ['x{a="1" 3', "lonely_name", 'x{a="1"}'])
def test_malformed_lines_raise(text):
    with pytest.raises(ValueError):
        promtext.totals(text)
