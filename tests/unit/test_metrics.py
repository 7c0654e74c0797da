"""Per-request figures (records.py) and run-level metrics (metrics.py), checked against hand-computed values.

Timestamps are chosen as binary fractions (multiples of 1/8 s) so that most derived figures are exact;
``pytest.approx`` is still used wherever a division is involved.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workload.bench.metrics import SLO, distribution, percentile, summarize as summarize_model
from workload.bench.records import ERROR_CODES, RequestRecord
from workload.bench.summary import Distribution, NorthSouthSummary

pytestmark = pytest.mark.unit


def summarize(*args, **kwargs) -> dict:
    """The summary as the step document stores it (``model_dump(mode="json")``)."""
    return summarize_model(*args, **kwargs).model_dump(mode="json")

approx = pytest.approx


def rec(index: int, **kw) -> RequestRecord:
    return RequestRecord(index=index, scenario="s", prompt_id=f"q{index}", prompt_chars=10, **kw)


# --------------------------------------------------------------------------- RequestRecord


def test_derived_figures_with_token_events_as_n_out():
    r = rec(0, t_scheduled=1.875, t_sent=2.0, t_first_byte=2.125, t_first_token=2.25,
            token_times=[2.25, 2.5, 3.0, 3.25], t_end=3.5, output_tokens_source="token_events")
    assert r.ok
    assert r.ttft_ms == 250.0  # (2.25 - 2.0) s
    assert r.e2e_ms == 1500.0  # (3.5 - 2.0) s
    assert r.n_out == 4  # no server count: the number of token events
    assert r.tpot_ms == approx(1250 / 3)  # (1500 - 250) / (4 - 1) = 416.67
    assert r.itl_ms == [250.0, 500.0, 250.0]  # gaps 2.25->2.5->3.0->3.25
    assert r.schedule_lag_ms == 125.0  # 2.0 - 1.875
    assert r.ttft_from_schedule_ms == 375.0  # 2.25 - 1.875


def test_server_token_count_wins_over_token_events():
    r = rec(0, t_sent=2.0, t_first_token=2.25, token_times=[2.25, 2.5, 3.0, 3.25], t_end=3.5,
            output_tokens=6, output_tokens_source="server_usage")
    assert r.n_out == 6
    assert r.tpot_ms == 250.0  # (1500 - 250) / (6 - 1)
    assert r.itl_ms == [250.0, 500.0, 250.0]  # ITL is always from the events


def test_figures_undefined_without_timestamps():
    r = rec(0)
    assert (r.ttft_ms, r.e2e_ms, r.tpot_ms, r.schedule_lag_ms, r.ttft_from_schedule_ms) == (None,) * 5
    assert r.itl_ms == []
    assert r.n_out == 0
    assert not r.ok  # not finished


def test_tpot_needs_two_output_tokens():
    one = rec(0, t_sent=0.0, t_first_token=0.5, token_times=[0.5], t_end=1.0)
    assert one.ttft_ms == 500.0 and one.e2e_ms == 1000.0
    assert one.tpot_ms is None  # N_out - 1 = 0
    assert one.itl_ms == []
    zero = rec(1, t_sent=0.0, t_first_token=0.5, t_end=1.0, output_tokens=0)
    assert zero.tpot_ms is None


def test_closed_loop_record_has_no_schedule_figures():
    r = rec(0, t_sent=1.0, t_first_token=1.5, t_end=2.0)
    assert r.schedule_lag_ms is None
    assert r.ttft_from_schedule_ms is None
    assert r.ttft_ms == 500.0


def test_fail_keeps_the_first_cause_and_end_time():
    r = rec(0, t_sent=1.0)
    r.fail("first_token_timeout", "no first token in time", 61.0)
    r.fail("stream_incomplete", "later", 70.0)
    assert r.error_code == "first_token_timeout"
    assert r.error_message == "no first token in time"
    assert r.t_end == 61.0
    assert not r.ok
    assert r.e2e_ms == 60000.0


def test_fail_keeps_an_existing_end_time_and_truncates_the_message():
    r = rec(0, t_sent=1.0, t_end=2.0)
    r.fail("server_error", "x" * 600, 5.0)
    assert r.t_end == 2.0
    assert r.error_message == "x" * 500
    assert not r.ok


def test_error_codes_are_the_documented_ones():
    assert set(ERROR_CODES) == {"connect_timeout", "first_token_timeout", "total_timeout", "connect_error",
                                "http_error", "stream_incomplete", "malformed_event", "server_error",
                                "client_error"}


def test_to_dict_from_dict_round_trip_through_json():
    r = rec(3, warmup=True, t_scheduled=0.5, t_sent=0.625, t_first_token=0.75, token_times=[0.75, 0.875],
            t_end=1.0, http_status=200, request_id="req-3", output_tokens=2, output_tokens_source="server_usage",
            server_timings={"ttft_ms": 12.5})
    back = RequestRecord.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r
    assert back.tpot_ms == r.tpot_ms == 250.0  # (375 - 125) / (2 - 1)


# --------------------------------------------------------------------------- percentile / distribution


@pytest.mark.parametrize(("q", "expected"), [
    (0, 1.0), (50, 2.5), (90, 3.7), (95, 3.85), (99, 3.97), (100, 4.0),
    # position = (n - 1) * q / 100 = 3q/100; value = s[lo] + (s[hi] - s[lo]) * frac
])
def test_percentile_linear_interpolation(q, expected):
    assert percentile([4, 2, 1, 3], q) == approx(expected)


@pytest.mark.parametrize("q", [0, 50, 90, 95, 99, 100])
def test_percentile_of_one_value(q):
    assert percentile([10], q) == 10


def test_percentile_of_two_values():
    # [0, 100]: position = q/100 -> the value is q itself
    assert percentile([100, 0], 50) == 50
    assert percentile([100, 0], 90) == approx(90)
    assert percentile([100, 0], 99) == approx(99)


def test_percentile_of_no_values_raises():
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


@settings(max_examples=200, deadline=None, database=None)
@given(values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50),
       q=st.sampled_from([0, 1, 25, 50, 90, 95, 99, 99.9, 100]))
def test_percentile_matches_numpy_default(values, q):
    np = pytest.importorskip("numpy")
    assert percentile(values, q) == approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-6)


def test_distribution_ignores_none_values():
    d = distribution([None, 3, 1, None, 2])
    # sorted [1, 2, 3]: position 2q/100 -> p90 = 2 + 0.8, p95 = 2 + 0.9, p99 = 2 + 0.98
    assert d == {"count": 3, "mean": 2.0, "min": 1, "max": 3, "p50": 2.0,
                 "p90": approx(2.8), "p95": approx(2.9), "p99": approx(2.98)}


def test_distribution_of_nothing():
    assert distribution([None, None]) == {"count": 0, "mean": None, "min": None, "max": None,
                                          "p50": None, "p90": None, "p95": None, "p99": None}
    assert distribution([])["count"] == 0


# --------------------------------------------------------------------------- SLO


def ok_record(ttft_s: float, e2e_s: float, n_out: int) -> RequestRecord:
    return rec(0, t_sent=0.0, t_first_token=ttft_s, token_times=[ttft_s], t_end=e2e_s, output_tokens=n_out,
               output_tokens_source="server_usage")


def test_slo_met_by_checks_every_limit_inclusively():
    r = ok_record(0.25, 1.25, 5)  # ttft 250, e2e 1250, tpot (1250 - 250) / 4 = 250
    assert SLO().met_by(r)  # no limits
    assert SLO(ttft_ms=250, tpot_ms=250, e2e_ms=1250).met_by(r)  # limits are inclusive
    assert not SLO(ttft_ms=249).met_by(r)
    assert not SLO(tpot_ms=249).met_by(r)
    assert not SLO(e2e_ms=1249).met_by(r)
    assert not SLO(ttft_ms=1000, tpot_ms=1000, e2e_ms=1000).met_by(r)  # one limit missed is enough


def test_slo_not_met_when_a_limited_figure_is_undefined():
    r = ok_record(0.25, 1.25, 1)  # one token: TPOT undefined
    assert r.tpot_ms is None
    assert SLO(ttft_ms=1000).met_by(r)
    assert not SLO(tpot_ms=1000).met_by(r)


def test_slo_never_met_by_a_failed_request():
    r = ok_record(0.25, 1.25, 5)
    r.error_code = "server_error"
    assert not SLO().met_by(r)


# --------------------------------------------------------------------------- summarize


def scenario_records() -> list[RequestRecord]:
    return [
        # warm-up: must not count anywhere (it would add 2 tokens and a 125 ms TTFT)
        rec(0, warmup=True, t_sent=0.0, t_first_token=0.125, token_times=[0.125, 0.25], t_end=0.25,
            output_tokens=2, output_tokens_source="server_usage"),
        # A: ttft 125, e2e 625, N_out 5 (server), tpot (625 - 125) / 4 = 125, itl [125] * 4
        rec(1, t_sent=1.0, t_first_token=1.125, token_times=[1.125, 1.25, 1.375, 1.5, 1.625], t_end=1.625,
            output_tokens=5, output_tokens_source="server_usage"),
        # B: ttft 375, e2e 1000, N_out 3 (token events), tpot (1000 - 375) / 2 = 312.5, itl [125, 250]
        rec(2, t_sent=2.0, t_first_token=2.375, token_times=[2.375, 2.5, 2.75], t_end=3.0,
            output_tokens_source="token_events"),
        # C: failed with an error event after one token
        rec(3, t_sent=3.0, t_first_token=3.25, token_times=[3.25], t_end=3.5, error_code="server_error",
            server_error_code="llm_unavailable", error_message="llm_unavailable: vLLM is down"),
        # D: never connected
        rec(4, t_sent=4.0, t_end=4.0625, error_code="connect_error", error_message="ConnectError"),
        # E: ttft 250, e2e 1000, N_out 10 (server), tpot (1000 - 250) / 9 = 83.33, itl [250]
        rec(5, t_sent=5.0, t_first_token=5.25, token_times=[5.25, 5.5], t_end=6.0, output_tokens=10,
            output_tokens_source="server_usage"),
    ]


def test_summarize_counts_and_rates():
    s = summarize(scenario_records(), wall_time_s=8.0, slo=SLO(ttft_ms=300, tpot_ms=200))
    assert s["requests"] == 5  # warm-up excluded
    assert s["completed"] == 3  # A, B, E
    assert s["errored"] == 2  # C, D: counted, not dropped
    assert s["error_rate"] == approx(0.4)  # 2 / (3 + 2)
    assert s["errors_by_code"] == {"server_error": 1, "connect_error": 1}
    assert s["wall_time_s"] == 8.0
    assert s["output_tokens"] == 18  # 5 + 3 + 10 (ok requests only; C's token does not count)
    assert s["output_tokens_per_s"] == approx(2.25)  # 18 / 8
    assert s["requests_per_s"] == approx(0.375)  # 3 completed / 8
    assert s["token_count_sources"] == {"server_usage": 2, "token_events": 1}
    assert s["achieved_rate_rps"] == approx(0.625)  # 5 sent / 8
    assert s["offered_rate_rps"] is None


def test_summarize_latency_distributions():
    s = summarize(scenario_records(), wall_time_s=8.0)
    # TTFT of ok requests: sorted [125, 250, 375]; position 2q/100
    assert s["ttft_ms"] == {"count": 3, "mean": approx(250.0), "min": approx(125.0), "max": approx(375.0),
                            "p50": approx(250.0), "p90": approx(350.0), "p95": approx(362.5), "p99": approx(372.5)}
    # E2E: sorted [625, 1000, 1000]
    assert s["e2e_ms"] == {"count": 3, "mean": approx(875.0), "min": approx(625.0), "max": approx(1000.0),
                           "p50": approx(1000.0), "p90": approx(1000.0), "p95": approx(1000.0),
                           "p99": approx(1000.0)}
    # TPOT: sorted [83.33, 125, 312.5]; p90 = 125 + (312.5 - 125) * 0.8 = 275
    tpot = s["tpot_ms"]
    assert tpot["count"] == 3
    assert tpot["p50"] == approx(125.0)
    assert tpot["p90"] == approx(275.0)
    assert tpot["mean"] == approx((125 + 312.5 + 750 / 9) / 3)  # 173.61
    assert tpot["min"] == approx(750 / 9)
    # ITL pooled over ok requests: [125]*4 + [125, 250] + [250] -> sorted [125 x5, 250 x2]
    itl = s["itl_ms"]
    assert itl["count"] == 7
    assert itl["mean"] == approx(1125 / 7)  # 160.71
    assert itl["p50"] == approx(125.0)  # position 3
    assert itl["p90"] == approx(250.0)  # position 5.4, between two 250s
    assert itl["min"] == approx(125.0) and itl["max"] == approx(250.0)
    # closed loop: nothing scheduled
    assert s["ttft_from_schedule_ms"]["count"] == 0
    assert s["schedule_lag_ms"]["count"] == 0


def test_summarize_slo_attainment_and_goodput():
    s = summarize(scenario_records(), wall_time_s=8.0, slo=SLO(ttft_ms=300, tpot_ms=200))
    # A (125/125) and E (250/83.3) meet both; B's TTFT 375 > 300; C and D failed
    assert s["slo"] == {"ttft_ms": 300, "tpot_ms": 200, "e2e_ms": None}
    assert s["slo_attainment"] == approx(0.4)  # 2 / 5 (denominator includes failures)
    assert s["goodput_rps"] == approx(0.25)  # 2 / 8 s
    s = summarize(scenario_records(), wall_time_s=8.0, slo=SLO(e2e_ms=1000))
    assert s["slo_attainment"] == approx(0.6)  # A 625, B 1000, E 1000 all <= 1000
    s = summarize(scenario_records(), wall_time_s=8.0)  # no limits: every ok request
    assert s["slo_attainment"] == approx(0.6)
    assert s["goodput_rps"] == approx(0.375)


def test_summarize_closed_loop_is_valid():
    s = summarize(scenario_records(), wall_time_s=8.0)
    assert s["valid"] is True
    assert s["invalid_reason"] is None


def test_summarize_is_json_serializable():
    s = summarize(scenario_records(), wall_time_s=8.0, slo=SLO(ttft_ms=300), offered_rate_rps=0.5)
    assert json.loads(json.dumps(s)) == s


def test_summarize_all_failed():
    records = [rec(0, t_sent=0.0, t_end=1.0, error_code="http_error"),
               rec(1, t_sent=1.0, t_end=61.0, error_code="first_token_timeout")]
    s = summarize(records, wall_time_s=4.0)
    assert (s["requests"], s["completed"], s["errored"]) == (2, 0, 2)
    assert s["error_rate"] == 1.0
    assert s["errors_by_code"] == {"http_error": 1, "first_token_timeout": 1}
    assert s["output_tokens"] == 0
    assert s["output_tokens_per_s"] == 0.0
    assert s["requests_per_s"] == 0.0
    assert s["slo_attainment"] == 0.0
    assert s["goodput_rps"] == 0.0
    assert s["ttft_ms"]["count"] == 0 and s["ttft_ms"]["p50"] is None


def test_summarize_no_records():
    s = summarize([], wall_time_s=0.0)
    assert (s["requests"], s["completed"], s["errored"]) == (0, 0, 0)
    assert s["error_rate"] == 0.0
    assert s["output_tokens_per_s"] == 0.0 and s["requests_per_s"] == 0.0
    assert s["slo_attainment"] == 0.0 and s["goodput_rps"] == 0.0
    assert s["achieved_rate_rps"] == 0.0
    assert s["valid"] is True


def test_summarize_only_warmups_counts_nothing():
    records = [rec(0, warmup=True, t_sent=0.0, t_first_token=0.5, token_times=[0.5], t_end=1.0, output_tokens=1)]
    s = summarize(records, wall_time_s=1.0)
    assert s["requests"] == 0 and s["output_tokens"] == 0 and s["ttft_ms"]["count"] == 0


# --------------------------------------------------------------------------- validity (open loop)


def open_loop(n: int, lag_s: float = 0.0, interval_s: float = 1.0) -> list[RequestRecord]:
    out = []
    for i in range(n):
        t = i * interval_s
        out.append(rec(i, t_scheduled=t, t_sent=t + lag_s, t_first_token=t + lag_s + 0.25,
                       token_times=[t + lag_s + 0.25, t + lag_s + 0.5], t_end=t + lag_s + 0.5, output_tokens=2))
    return out


def test_valid_when_the_client_keeps_up():
    s = summarize(open_loop(10), wall_time_s=10.0, offered_rate_rps=1.0)
    assert s["achieved_rate_rps"] == 1.0  # 10 / 10
    assert s["schedule_lag_ms"]["p99"] == 0.0
    assert (s["valid"], s["invalid_reason"]) == (True, None)
    v = s["validity"]
    assert (v["mode"], v["valid"], v["invalid_reason"]) == ("open_loop", True, None)
    assert v["mean_scheduled_gap_ms"] == approx(1000.0)
    assert v["scheduled_rate_rps"] == approx(1.0) and v["achieved_send_rate_rps"] == approx(1.0)
    assert v["send_rate_ratio"] == approx(1.0)
    assert v["schedule_lag_p99_limit_ms"] == approx(100.0)  # 10% of the 1 s mean gap


def poisson_schedule(seed: int, rate: float, n: int) -> list[float]:
    """The send times the open loop schedules for a seed (the shard plan's arrival schedule)."""
    from workload.bench.shards import arrival_schedule
    from workload.bench.strategies import PoissonStrategy, StopConditions

    due, _ = arrival_schedule(PoissonStrategy(rate_rps=rate, seed=seed), StopConditions(max_requests=n))
    return due


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_client_that_kept_its_random_schedule_is_valid(seed):
    # Poisson 4 req/s, 32 requests, each sent a few ms late and answered in 700 ms. Seeds 2 and 3
    # span 8.1 and 8.6 s: against the nominal rate over a window ending at the last answer they
    # looked 0.91 and 0.86 "achieved" and were marked invalid, although the client kept time.
    lags = [0.0004, 0.0034, 0.0012, 0.0096]
    records = []
    for i, t in enumerate(poisson_schedule(seed, 4.0, 32)):
        sent = t + lags[i % 4]
        records.append(rec(i, t_scheduled=t, t_sent=sent, t_first_token=sent + 0.2,
                           token_times=[sent + 0.2, sent + 0.7], t_end=sent + 0.7, output_tokens=2))
    wall = records[-1].t_end
    s = summarize(records, wall_time_s=wall, offered_rate_rps=4.0)
    assert s["schedule_lag_ms"]["p99"] == approx(9.6, abs=0.01)
    assert (s["valid"], s["invalid_reason"]) == (True, None)
    assert s["validity"]["send_rate_ratio"] == approx(1.0, abs=0.005)


def test_the_nominal_rate_is_not_the_yardstick():
    s = summarize(open_loop(10), wall_time_s=10.0, offered_rate_rps=1.1)
    assert s["achieved_rate_rps"] == 1.0  # kept as a figure: requests / wall time
    assert s["validity"]["scheduled_rate_rps"] == approx(1.0)  # what the random schedule asked for
    assert s["valid"] is True


def test_invalid_when_the_client_sent_slower_than_its_schedule():
    # 200 requests 100 ms apart; the last one left 2 s late. p99 of the lag is still 0 (one late
    # request in 200), but the client took 21.9 s to send what was scheduled over 19.9 s.
    records = open_loop(200, interval_s=0.1)
    records[-1].t_sent += 2.0
    s = summarize(records, wall_time_s=22.0, offered_rate_rps=10.0)
    v = s["validity"]
    assert v["schedule_lag_p99_ms"] == approx(0.0)
    assert v["send_rate_ratio"] == approx(19.9 / 21.9)
    assert s["valid"] is False
    assert s["invalid_reason"] == "sent at 0.909 of the scheduled rate over the scheduled window < 0.95"


def test_invalid_when_p99_schedule_lag_is_long_against_the_gap():
    records = open_loop(10)
    records[9].t_sent += 0.125  # one request sent 125 ms late, with a 1 s mean gap
    s = summarize(records, wall_time_s=10.0, offered_rate_rps=1.0)
    # lags sorted [0 x9, 125]: position 9 * 0.99 = 8.91 -> 0 + 125 * 0.91 = 113.75
    assert s["schedule_lag_ms"]["p99"] == approx(113.75)
    assert s["validity"]["schedule_lag_p99_share_of_gap"] == approx(0.11375)
    assert s["valid"] is False
    assert s["invalid_reason"] == "p99 schedule lag 113.8 ms (0.11 of the mean gap) > 100.0 ms"


def test_the_same_lag_is_fine_with_long_gaps_and_not_with_short_ones():
    slow = open_loop(10, lag_s=0.05)  # 50 ms late, 1 s apart: 5% of the gap
    assert summarize(slow, wall_time_s=10.0, offered_rate_rps=1.0)["valid"] is True
    fast = open_loop(10, lag_s=0.05, interval_s=0.1)  # 50 ms late, 100 ms apart: half the gap
    s = summarize(fast, wall_time_s=1.0, offered_rate_rps=10.0)
    assert s["valid"] is False
    assert s["invalid_reason"] == "p99 schedule lag 50.0 ms (0.50 of the mean gap) > 10.0 ms"


def test_lag_up_to_the_floor_is_valid_at_any_rate():
    records = open_loop(10, lag_s=0.0099, interval_s=0.01)  # 9.9 ms late, 10 ms apart: under the 10 ms floor
    assert summarize(records, wall_time_s=0.2, offered_rate_rps=100.0)["valid"] is True
    records = open_loop(10, lag_s=0.0105, interval_s=0.01)
    s = summarize(records, wall_time_s=0.2, offered_rate_rps=100.0)
    assert s["valid"] is False
    assert s["invalid_reason"] == "p99 schedule lag 10.5 ms (1.05 of the mean gap) > 10.0 ms"


def test_failed_requests_count_as_sent_for_the_schedule():
    records = open_loop(10)
    for r in records[:5]:
        r.error_code = "http_error"
    s = summarize(records, wall_time_s=10.0, offered_rate_rps=1.0)
    assert s["achieved_rate_rps"] == 1.0  # 10 sent / 10 s, although only 5 completed
    assert s["requests_per_s"] == 0.5
    assert s["validity"]["requests"] == 10 and s["validity"]["send_rate_ratio"] == approx(1.0)
    assert s["valid"] is True


def closed_loop(concurrency: int, per_worker: int, gap_s: float) -> list[RequestRecord]:
    """Each worker sends a 1 s request, waits ``gap_s`` (the client's own delay), sends the next."""
    out = []
    for w in range(concurrency):
        t = 0.0
        for _ in range(per_worker):
            out.append(rec(len(out), t_sent=t, t_first_token=t + 0.25, token_times=[t + 0.25, t + 1.0],
                           t_end=t + 1.0, output_tokens=2))
            t += 1.0 + gap_s
    return out


def test_closed_loop_that_kept_its_concurrency_is_valid():
    s = summarize(closed_loop(2, 4, 0.0), wall_time_s=4.0, concurrency=2)
    v = s["validity"]
    assert (v["mode"], v["valid"]) == ("closed_loop", True)
    assert v["mean_in_flight"] == approx(2.0) and v["in_flight_ratio"] == approx(1.0)
    assert v["issuing_window_s"] == approx(3.0)
    assert v["refill_delay_p50_ms"] == approx(0.0) and v["refill_delay_p99_ms"] == approx(0.0)


def test_closed_loop_slow_to_send_the_next_request_is_invalid():
    # 0.25 s of every 1.25 s a worker's slot is empty: 0.8 of the concurrency in flight
    s = summarize(closed_loop(2, 4, 0.25), wall_time_s=5.0, concurrency=2)
    assert s["validity"]["in_flight_ratio"] == approx(0.8)
    assert s["valid"] is False
    assert s["validity"]["refill_delay_p99_ms"] == approx(250.0)
    assert s["invalid_reason"] == ("kept 1.60 requests in flight of the configured 2 (0.800 < 0.95; "
                                   "p99 refill delay 250.0 ms > 10.0 ms)")


def test_closed_loop_whose_requests_fail_at_once_is_not_the_clients_fault():
    # Every request is refused within 2 ms and the client sends the next 0.5 ms later: slots are
    # empty a fifth of the time, but the client refilled each one at once.
    records, t = [], 0.0
    for i in range(10):
        records.append(rec(i, t_sent=t, t_end=t + 0.002, error_code="connect_error"))
        t += 0.0025
    s = summarize(records, wall_time_s=0.025, concurrency=1)
    assert s["validity"]["in_flight_ratio"] == approx(0.8 * 9 / 9, abs=0.02)
    assert s["validity"]["refill_delay_p99_ms"] == approx(0.5)
    assert s["valid"] is True


def test_closed_loop_without_a_concurrency_is_not_judged():
    s = summarize(closed_loop(2, 4, 0.25), wall_time_s=5.0)
    assert s["validity"] == {"mode": "none", "valid": True, "invalid_reason": None}


def test_warmup_lag_does_not_make_a_run_invalid():
    records = open_loop(10)
    records.append(rec(99, warmup=True, t_scheduled=0.0, t_sent=5.0, t_end=6.0))  # 5 s late, but warm-up
    s = summarize(records, wall_time_s=10.0, offered_rate_rps=1.0)
    assert s["schedule_lag_ms"]["count"] == 10
    assert s["valid"] is True


def test_ttft_from_schedule_includes_client_queueing():
    records = open_loop(4, lag_s=0.125)
    s = summarize(records, wall_time_s=4.0, offered_rate_rps=1.0)
    assert s["ttft_ms"]["p50"] == approx(250.0)  # from the actual send
    assert s["ttft_from_schedule_ms"]["p50"] == approx(375.0)  # 125 ms queueing + 250 ms
    assert s["schedule_lag_ms"]["p50"] == approx(125.0)
    assert s["valid"] is False  # 125 ms lag


# --------------------------------------------------------------------------- the typed summary

# Every key a summary had before it was typed: the loader, the report and the views read them.
KEYS_READ_DOWNSTREAM = {
    "requests", "completed", "errored", "error_rate", "errors_by_code", "wall_time_s", "output_tokens",
    "output_tokens_per_s", "requests_per_s", "token_count_sources", "ttft_ms", "ttft_from_schedule_ms", "e2e_ms",
    "tpot_ms", "itl_ms", "slo", "slo_attainment", "goodput_rps", "schedule_lag_ms", "client_minus_server_ttft_ms",
    "tcp_connect", "offered_rate_rps", "achieved_rate_rps", "ttft_p50_minus_rtt_ms", "valid", "invalid_reason",
    "stopped_by", "meets_slo_target",
}


def test_summarize_returns_the_typed_summary_and_keeps_every_key():
    model = summarize_model(scenario_records(), wall_time_s=8.0, slo=SLO(ttft_ms=300), offered_rate_rps=0.5)
    assert isinstance(model, NorthSouthSummary)
    assert isinstance(model.ttft_ms, Distribution) and model.ttft_ms.count == 3
    doc = model.model_dump(mode="json")
    assert KEYS_READ_DOWNSTREAM <= set(doc)
    assert {"validity", "tokens_per_event", "cache"} <= set(doc)
    assert set(doc["ttft_ms"]) == {"count", "mean", "min", "max", "p50", "p90", "p95", "p99"}
    assert set(doc["tcp_connect"]) >= {"before_load_ms", "before_load_errors", "before_load_samples_ms",
                                       "during_run_ms"}
    assert NorthSouthSummary.model_validate(doc) == model  # the stored form reads back as the same summary


def test_the_validity_section_is_typed_by_mode():
    closed = summarize_model(scenario_records(), wall_time_s=8.0, concurrency=1).validity
    opened = summarize_model(open_loop(4), wall_time_s=4.0, offered_rate_rps=1.0).validity
    assert (closed.mode, opened.mode) == ("closed_loop", "open_loop")
    assert opened.rules.lag_p99_floor_ms == 10.0
