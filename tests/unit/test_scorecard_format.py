"""The terminal scorecard table built from v_scorecard rows."""

from __future__ import annotations

import pytest

from ragbench.scorecard import COLUMNS, cell, format_table

pytestmark = pytest.mark.unit

HEADERS = [h for h, _, _ in COLUMNS]


def row(**kw) -> dict:
    base = {"run_id": "manual__2026-11-27", "target": "local", "status": "succeeded", "failed_steps": [],
            "error": None, "completed": None, "requests": None, "valid": None}
    base.update({c: None for _, c, _ in COLUMNS if c is not None and c not in ("target", "status")})
    base.update(kw)
    return base


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.split(" | ")]


GOOD = row(target="local", completed=3, requests=5, ttft_p50_ms=250.0, ttft_p95_ms=362.5, e2e_p50_ms=1000.0,
           e2e_p95_ms=1000.0, tpot_p50_ms=125.0, output_tokens_per_s=2.75, requests_per_s=0.375,
           error_rate=0.4, east_west_gbps=18.75, ingest_chunks_per_s=24.0, valid=True)
FAILED = row(target="aws-eks", status="failed", failed_steps=["north_south", "east_west"],
             error="north_south on aws-eks failed: connect timeout", ingest_chunks_per_s=12.345)


def test_no_rows():
    assert format_table([]) == "(no results)"


def test_table_layout_and_values():
    lines = format_table([GOOD]).splitlines()
    assert lines[0] == "run manual__2026-11-27"
    assert cells(lines[1]) == HEADERS
    assert set(lines[2]) <= {"-", "+"}
    assert cells(lines[3]) == ["local", "succeeded", "3/5", "250.0", "362.5", "-", "1000.0", "1000.0", "125.00",
                               "2.8", "0.38", "40.0%", "18.75", "24.0", "-"]
    assert len(lines) == 4  # no notes for a valid, succeeded target
    assert len(lines[1]) == len(lines[3])  # columns padded to a common width


def test_failed_target_is_named_with_its_failed_steps_and_missing_values_are_dashes():
    lines = format_table([FAILED, GOOD]).splitlines()
    failed_cells = cells(lines[3])
    assert failed_cells[:3] == ["aws-eks", "failed", "0/0"]
    assert failed_cells[3:13] == ["-"] * 10  # no north-south, no east-west result
    assert failed_cells[13] == "12.3"  # the ingest step did succeed
    assert cells(lines[4])[0] == "local"
    assert lines[-1] == "aws-eks FAILED in north_south, east_west: north_south on aws-eks failed: connect timeout"


def test_failed_target_without_steps_or_error():
    out = format_table([row(target="gcp-gke", status="failed")])
    assert out.splitlines()[-1] == "gcp-gke FAILED in ?: "


def test_invalid_north_south_result_is_noted():
    out = format_table([{**GOOD, "valid": False}])
    assert out.splitlines()[-1] == "local: north-south result flagged invalid (the client fell behind)"


def test_zero_values_are_shown_not_dashed():
    out = format_table([row(completed=0, requests=4, error_rate=0.0, east_west_gbps=0.0)])
    c = cells(out.splitlines()[3])
    assert c[2] == "0/4"
    assert c[HEADERS.index("err rate")] == "0.0%"
    assert c[HEADERS.index("E-W Gbit/s")] == "0.00"


def test_cell_is_what_the_table_prints():
    printed = cells(format_table([GOOD]).splitlines()[3])
    assert printed == [cell(GOOD, c, f) for _, c, f in COLUMNS]
    assert cell(GOOD, "usd_per_hour", "{:.4f}") == "-"  # not priced
    assert cell({**GOOD, "usd_per_hour": 1.033}, "usd_per_hour", "{:.4f}") == "1.0330"


def test_ttft_cells_carry_their_interval_and_low_confidence_mark():
    r = {**GOOD, "ttft_p50_ms_lo": 240.04, "ttft_p50_ms_hi": 261.0, "ttft_p95_ms_lo": 340.0,
         "ttft_p95_ms_hi": 375.0, "low_confidence": ["ttft_p95_ms", "ttft_p99_ms"], "prefix_cache_hit_rate": 0.125}
    lines = format_table([r]).splitlines()
    c = cells(lines[3])
    assert c[HEADERS.index("TTFT p50 ms [95% CI]")] == "250.0 [240.0, 261.0]"
    assert c[HEADERS.index("TTFT p95 ms [95% CI]")] == "362.5 [340.0, 375.0]*"
    assert c[HEADERS.index("prefix hit")] == "12%"
    assert HEADERS.index("prefix hit") == HEADERS.index("TTFT p95 ms [95% CI]") + 1  # next to TTFT
    assert lines[-1].startswith("* low confidence: fewer than 10 samples beyond the percentile")


def test_status_and_operating_point_notes():
    swept = {**GOOD, "scenario": "sweep-concurrent-8", "operating_point": True, "no_operating_point": False}
    none = {**GOOD, "target": "aws-eks", "scenario": "sweep-concurrent-1", "operating_point": False,
            "no_operating_point": True}
    running = row(target="gcp-gke", status="running")
    lines = format_table([swept, none, running]).splitlines()
    assert lines[-3:] == ["local: sweep operating point sweep-concurrent-8",
                          "aws-eks: sweep: no level met the SLO (no operating point, not priced)",
                          "gcp-gke: still running (its results are not loaded yet)"]
