"""The sweep's bookkeeping: which scenario is the SLO operating point (the headline)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workload.bench.northsouth import NorthSouthConfig, SweepStrategy, _mark_headline

pytestmark = pytest.mark.unit


def scenario(concurrency: int, attainment: float, goodput: float, meets: bool, valid: bool = True) -> dict:
    return {"scenario": f"sweep-concurrent-{concurrency}", "strategy": {"type": "concurrent", "concurrency": concurrency},
            "summary": {"slo_attainment": attainment, "goodput_rps": goodput, "output_tokens_per_s": goodput * 32,
                        "ttft_ms": {"p95": 100.0 * concurrency}, "meets_slo_target": meets, "valid": valid}}


def sweep_config(target: float = 0.95) -> NorthSouthConfig:
    return NorthSouthConfig(strategy=SweepStrategy(levels=[1, 2, 4, 8], slo_attainment_target=target))


def test_operating_point_is_the_highest_level_meeting_the_target():
    out = {"scenarios": [scenario(1, 1.0, 1.0, True), scenario(2, 0.97, 1.9, True), scenario(4, 0.96, 3.6, True),
                         scenario(8, 0.50, 2.0, False)]}
    _mark_headline(out, sweep_config())
    assert [s["headline"] for s in out["scenarios"]] == [False, False, True, False]
    assert [s["operating_point"] for s in out["scenarios"]] == [False, False, True, False]
    assert out["sweep"]["operating_point_concurrency"] == 4
    assert out["sweep"]["levels_run"] == [1, 2, 4, 8]
    assert [p["goodput_rps"] for p in out["sweep"]["curve"]] == [1.0, 1.9, 3.6, 2.0]


def test_no_level_meets_the_target():
    out = {"scenarios": [scenario(1, 0.5, 0.5, False)]}
    _mark_headline(out, sweep_config())
    assert out["scenarios"][0]["headline"] is True  # the lowest level still feeds the scorecard
    assert out["scenarios"][0]["operating_point"] is False  # but it is not an operating point
    assert out["sweep"]["operating_point_concurrency"] is None


def test_an_invalid_level_is_never_the_operating_point():
    # Level 4 met the target but the client could not keep 4 in flight: its figures are not the
    # service's, so the operating point is the highest *valid* level meeting the target.
    out = {"scenarios": [scenario(1, 1.0, 1.0, True), scenario(2, 0.97, 1.9, True),
                         scenario(4, 0.96, 3.6, True, valid=False), scenario(8, 0.5, 2.0, False)]}
    _mark_headline(out, sweep_config())
    assert [s["operating_point"] for s in out["scenarios"]] == [False, True, False, False]
    assert [s["headline"] for s in out["scenarios"]] == [False, True, False, False]
    assert out["sweep"]["operating_point_concurrency"] == 2


def test_a_higher_level_meeting_the_target_after_a_miss_is_the_operating_point():
    config = NorthSouthConfig(strategy=SweepStrategy(levels=[1, 2, 4], stop_after_misses=2))
    out = {"scenarios": [scenario(1, 1.0, 1.0, True), scenario(2, 0.9, 1.8, False), scenario(4, 0.96, 3.6, True)]}
    _mark_headline(out, config)
    assert [s["operating_point"] for s in out["scenarios"]] == [False, False, True]
    assert out["sweep"]["operating_point_concurrency"] == 4


def test_the_target_decides_the_operating_point():
    out = {"scenarios": [scenario(1, 1.0, 1.0, True), scenario(2, 0.92, 1.9, True), scenario(4, 0.85, 3.6, True)]}
    for s, meets in zip(out["scenarios"], (True, True, False)):
        s["summary"]["meets_slo_target"] = meets  # as run_north_south sets it for a 0.9 target
    _mark_headline(out, sweep_config(target=0.9))
    assert out["sweep"]["operating_point_concurrency"] == 2 and out["sweep"]["slo_attainment_target"] == 0.9


def test_single_scenario_is_the_headline():
    out = {"scenarios": [scenario(4, 0.1, 0.1, False)]}
    _mark_headline(out, NorthSouthConfig())
    assert out["scenarios"][0]["headline"] is True and "sweep" not in out
    assert out["scenarios"][0]["operating_point"] is None  # no sweep: no operating point either way


@pytest.mark.parametrize("levels", [[], [0, 1], [4, 2], [1, 1]])
def test_sweep_levels_must_increase(levels):
    with pytest.raises(ValidationError, match="levels must be distinct positive"):
        SweepStrategy(levels=levels)
