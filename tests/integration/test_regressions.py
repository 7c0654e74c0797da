"""The regression check against a real PostgreSQL: planted histories, the rows it stores, the view.

Each planted run is one target run with a headline north-south summary, an East-West TCP row and a
price (the `local` provider at 2 $/hour), inserted directly so that every median can be worked out
by hand. Defaults: TTFT p95 400 ms, TPOT p50 20 ms, 100 output tok/s, error rate 0, 5 Gbit/s.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from ragbench import db, loader, regressions
from ragbench.errors import RagbenchError

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
STRATEGY = '{"type": "concurrent", "concurrency": 4}'
BASE = {"ttft_p95_ms": 400.0, "tpot_p50_ms": 20.0, "output_tokens_per_s": 100.0, "error_rate": 0.0,
        "east_west_gbps": 5.0}
VIEW_COLUMNS = ["run_id", "target", "started_at", "metric", "value", "baseline_median", "baseline_runs",
                "change_pct", "threshold_pct", "direction", "flagged"]


@pytest.fixture
def migrated(engine):
    db.migrate(engine)
    with engine.begin() as conn:  # 2 $/hour for the local provider
        conn.execute(sa.text("INSERT INTO cost_inputs (provider, as_of, component, unit, price_usd, quantity) "
                             "VALUES ('local', '2026-01-01', 'machine', 'usd_per_hour', 2, 1)"))
    return engine


def plant(engine, day: int, *, target: str = "local", status: str = "succeeded", valid: bool = True,
          strategy: str = STRATEGY, max_tokens: int = 64, wall_time_s: float = 100.0, **metrics) -> str:
    """One run of `target` on day `day` (days after T0); returns its run id."""
    m = {**BASE, **metrics}
    started = T0 + timedelta(days=day)
    run_id = f"scheduled__{started.isoformat()}"
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO runs (run_id, dag_id, started_at, params) VALUES (:r, 'rag_benchmark', "
                             ":s, CAST(:p AS jsonb)) ON CONFLICT DO NOTHING"),
                     {"r": run_id, "s": started, "p": f'{{"max_tokens": {max_tokens}}}'})
    trid = loader.upsert_target_run(engine, run_id, target, "local", "local", None, "ragbench/tiny-qwen2", {},
                                    started)
    loader.finish_target_run(engine, trid, [] if status == "succeeded" else ["deploy"],
                             None if status == "succeeded" else "deploy failed")
    requests, output_tokens = 100, int(m["output_tokens_per_s"] * wall_time_s)
    errored = round(m["error_rate"] * requests)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO ns_summaries (target_run_id, scenario, headline, started_at, strategy, requests, completed, "
            " errored, error_rate, wall_time_s, output_tokens, output_tokens_per_s, requests_per_s, ttft_p95_ms, "
            " tpot_p50_ms, valid, summary) VALUES (:id, 'concurrent-4', true, :s, CAST(:st AS jsonb), :req, :comp, "
            " :err, :rate, :wall, :out, :tps, 1.0, :ttft, :tpot, :valid, '{}')"),
            {"id": trid, "s": started, "st": strategy, "req": requests, "comp": requests - errored, "err": errored,
             "rate": m["error_rate"], "wall": wall_time_s, "out": output_tokens, "tps": m["output_tokens_per_s"],
             "ttft": m["ttft_p95_ms"], "tpot": m["tpot_p50_ms"], "valid": valid})
        conn.execute(sa.text(
            "INSERT INTO ew_results (target_run_id, probe, client_node, server_node, cross_node, path, samples, "
            " throughput_gbps, detail) VALUES (:id, 'tcp', 'a', 'b', true, 'netns-veth', 3, :g, '{}')"),
            {"id": trid, "g": m["east_west_gbps"]})
    return run_id


def plant_history(engine, days: int = 7, **metrics) -> None:
    for day in range(days):
        plant(engine, day, **metrics)


def rows(engine, run_id: str) -> dict[str, dict]:
    with engine.connect() as conn:
        found = conn.execute(sa.text("SELECT * FROM v_regressions WHERE run_id = :r"), {"r": run_id}).mappings()
        return {r["metric"]: dict(r) for r in found}


def test_the_view_has_exactly_the_panel_columns(migrated):
    with migrated.connect() as conn:
        result = conn.execute(sa.text("SELECT * FROM v_regressions LIMIT 0"))
        assert list(result.keys()) == VIEW_COLUMNS


def test_a_planted_regression_is_flagged(migrated, caplog):
    # TTFT p95 history 390..410 (median 400); the new run's 520 ms is 30% worse.
    for day, ttft in enumerate([390, 395, 400, 400, 405, 410, 398]):
        plant(migrated, day, ttft_p95_ms=ttft)
    run = plant(migrated, 10, ttft_p95_ms=520.0)
    with caplog.at_level(logging.INFO, logger="ragbench.regressions"):
        report = regressions.check_run(migrated, run)
        regressions.log_report(report)
    found = rows(migrated, run)
    ttft = found["ttft_p95_ms"]
    assert (ttft["value"], ttft["baseline_median"], ttft["baseline_runs"]) == (520.0, 400.0, 7)
    assert ttft["change_pct"] == pytest.approx(30.0)
    assert (ttft["direction"], ttft["flagged"], ttft["threshold_pct"]) == ("worse", True, 10.0)
    # everything else is as before: compared, not flagged
    assert set(found) == {m.column for m in regressions.METRICS}
    assert {m: (r["direction"], r["flagged"]) for m, r in found.items() if m != "ttft_p95_ms"} == {
        m: ("same", False) for m in found if m != "ttft_p95_ms"}
    assert [c.metric for c in report.flagged] == ["ttft_p95_ms"]
    flagged_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("REGRESSION")]
    assert flagged_lines == [f"REGRESSION local ttft_p95_ms: 520 vs median 400 of 7 earlier run(s) (+30.0%, worse, "
                             f"threshold 10%) in run {run}"]
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.getMessage().startswith("REGRESSION"))


def test_a_planted_improvement_is_not_flagged(migrated):
    plant_history(migrated)
    # TTFT down 25%, tokens/s up 50%, East-West up 20%: all better, nothing flagged.
    run = plant(migrated, 10, ttft_p95_ms=300.0, output_tokens_per_s=150.0, east_west_gbps=6.0)
    regressions.check_run(migrated, run)
    found = rows(migrated, run)
    assert found["ttft_p95_ms"]["direction"] == "better" and found["ttft_p95_ms"]["change_pct"] == pytest.approx(-25)
    assert found["output_tokens_per_s"]["direction"] == "better"
    assert found["output_tokens_per_s"]["change_pct"] == pytest.approx(50)
    # more tokens in the same wall time: the cost per token falls by a third (2 $/h x 100 s / tokens)
    assert found["usd_per_1m_output_tokens"]["direction"] == "better"
    assert found["usd_per_1m_output_tokens"]["change_pct"] == pytest.approx(-100 / 3)
    assert found["east_west_gbps"]["direction"] == "better"
    assert not any(r["flagged"] for r in found.values())


@pytest.mark.parametrize("metric,value,direction", [
    ("output_tokens_per_s", 80.0, "worse"),  # higher is better: fewer tokens/s is worse
    ("east_west_gbps", 4.0, "worse"),
    ("tpot_p50_ms", 25.0, "worse"),  # higher is worse
])
def test_direction_knows_which_way_is_worse(migrated, metric, value, direction):
    plant_history(migrated)
    run = plant(migrated, 10, **{metric: value})
    regressions.check_run(migrated, run)
    row = rows(migrated, run)[metric]
    assert (row["direction"], row["flagged"]) == (direction, True)


def test_the_threshold_decides(migrated):
    plant_history(migrated)
    run = plant(migrated, 10, ttft_p95_ms=420.0)  # 5% worse
    regressions.check_run(migrated, run)
    assert (rows(migrated, run)["ttft_p95_ms"]["direction"], rows(migrated, run)["ttft_p95_ms"]["flagged"]) == \
        ("worse", False)
    regressions.check_run(migrated, run, threshold_pct=4)  # checking again replaces the rows
    row = rows(migrated, run)["ttft_p95_ms"]
    assert (row["flagged"], row["threshold_pct"]) == (True, 4.0)
    with migrated.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM regression_checks")).scalar() == len(regressions.METRICS)


def test_an_error_rate_rising_from_zero_is_flagged_without_a_percentage(migrated):
    plant_history(migrated)
    run = plant(migrated, 10, error_rate=0.02)
    regressions.check_run(migrated, run)
    row = rows(migrated, run)["error_rate"]
    assert (row["change_pct"], row["direction"], row["flagged"]) == (None, "worse", True)


def test_the_baseline_is_the_last_n_valid_comparable_runs(migrated):
    for day in range(5):  # old runs, beyond the last 7: ignored
        plant(migrated, day, ttft_p95_ms=1000.0)
    for day in range(5, 12):  # the last 7 valid ones: 300, 310, ..., 360 -> median 330
        plant(migrated, day, ttft_p95_ms=300.0 + 10 * (day - 5))
    plant(migrated, 12, ttft_p95_ms=9000.0, status="failed")  # not valid: failed
    plant(migrated, 13, ttft_p95_ms=9000.0, valid=False)  # not valid: the client fell behind
    plant(migrated, 14, ttft_p95_ms=9000.0, strategy='{"type": "concurrent", "concurrency": 16}')  # other load
    plant(migrated, 15, ttft_p95_ms=9000.0, max_tokens=256)  # other output length
    plant(migrated, 16, target="other", ttft_p95_ms=9000.0)  # another target
    run = plant(migrated, 20, ttft_p95_ms=330.0)
    report = regressions.check_run(migrated, run)
    row = rows(migrated, run)["ttft_p95_ms"]
    assert (row["baseline_median"], row["baseline_runs"], row["direction"]) == (330.0, 7, "same")
    (check,) = [c for c in report.checks if c.metric == "ttft_p95_ms"]
    assert check.baseline_run_ids == tuple(f"scheduled__{(T0 + timedelta(days=d)).isoformat()}"
                                           for d in range(11, 4, -1))
    # the same run checked with a 3-run baseline: 340, 350, 360 -> median 350
    regressions.check_run(migrated, run, baseline_runs=3)
    assert rows(migrated, run)["ttft_p95_ms"]["baseline_median"] == 350.0


def test_later_runs_do_not_change_an_earlier_check(migrated):
    plant_history(migrated)
    run = plant(migrated, 10, ttft_p95_ms=500.0)
    regressions.check_run(migrated, run)
    before = rows(migrated, run)
    plant(migrated, 11, ttft_p95_ms=9000.0)
    regressions.check_run(migrated, run)
    after = rows(migrated, run)
    for row in (*before.values(), *after.values()):
        row.pop("started_at")
    assert before == after


def test_fewer_than_three_earlier_runs_give_no_comparison(migrated):
    plant_history(migrated, days=2)
    run = plant(migrated, 10, ttft_p95_ms=900.0)
    report = regressions.check_run(migrated, run)
    assert rows(migrated, run) == {}
    assert report.checks == []
    assert "local ttft_p95_ms: no baseline yet (2 comparable earlier run(s), at least 3 needed)" in report.not_checked
    plant(migrated, 2)  # a third earlier run: now there is a baseline
    report = regressions.check_run(migrated, run)
    assert rows(migrated, run)["ttft_p95_ms"]["baseline_runs"] == 3
    assert rows(migrated, run)["ttft_p95_ms"]["flagged"] is True


def test_a_failed_target_is_not_checked(migrated):
    plant_history(migrated)
    run = plant(migrated, 10, status="failed", ttft_p95_ms=900.0)
    report = regressions.check_run(migrated, run)
    assert rows(migrated, run) == {}
    assert report.not_checked == ["local: not checked (failed)"]


def test_fail_on_regression(migrated, database_url, monkeypatch):
    plant_history(migrated)
    run = plant(migrated, 10, ttft_p95_ms=600.0)
    monkeypatch.setenv("RAGBENCH_DATABASE_URL", database_url)
    result = regressions.run_check(run, {"regression_threshold_pct": 10, "fail_on_regression": False})
    assert result["checked"] == len(regressions.METRICS) and len(result["flagged"]) == 1
    with pytest.raises(RagbenchError, match=r"^1 regression\(s\) flagged: local ttft_p95_ms \(fail_on_regression"):
        regressions.run_check(run, {"regression_threshold_pct": 10, "fail_on_regression": True})
    assert rows(migrated, run)["ttft_p95_ms"]["flagged"] is True  # stored before failing
    # a higher threshold: nothing flagged, nothing fails
    assert regressions.run_check(run, {"regression_threshold_pct": 60, "fail_on_regression": True})["flagged"] == []


@pytest.mark.parametrize("value,median,higher_is_better,expected", [
    (110, 100, True, (10.0, "better", False)),
    (90, 100, True, (-10.0, "worse", False)),  # exactly at the threshold: not beyond it
    (89, 100, True, (-11.0, "worse", True)),
    (111, 100, False, (11.0, "worse", True)),
    (100, 100, False, (0.0, "same", False)),
    (0, 0, False, (0.0, "same", False)),
    (0.1, 0, False, (None, "worse", True)),
    (0.1, 0, True, (None, "better", False)),
])
def test_compare(value, median, higher_is_better, expected):
    change, direction, flagged = regressions.compare(value, median, higher_is_better, 10.0)
    assert (None if change is None else pytest.approx(change), direction, flagged) == expected
