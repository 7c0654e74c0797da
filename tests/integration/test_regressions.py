"""The regression check against a real PostgreSQL: planted histories, the rows it stores, the view.

Each planted run is one target run whose step documents (north-south with its raw request
records, ingest, east-west) are built here and loaded by the loader, as the pipeline loads them.
Request latencies are deterministic log-normal quantiles (median 200 ms TTFT, sigma 0.4) unless a
test says otherwise, so a run "with no change" has exactly the baseline's distribution.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from scipy import stats

from ragbench import db, loader, regressions
from ragbench.errors import RagbenchError
from workload.bench.metrics import summarize
from workload.bench.records import RequestRecord

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
PARAMS = {"load_mode": "concurrent", "concurrency": 4, "requests": 32, "warmup_requests": 2, "max_tokens": 64,
          "north_south_from": "orchestrator", "ew_streams": 1, "ew_duration_s": 3, "ew_samples": 3}
MODEL, CORPUS = "ragbench/tiny-qwen2", "ragbench-corpus-v1"
VIEW_COLUMNS = ["run_id", "target", "started_at", "metric", "test", "value", "baseline_value", "change_pct",
                "effect_size", "effect_unit", "min_effect", "threshold_pct", "p_value", "alpha", "requests",
                "baseline_runs", "baseline_requests", "direction", "flagged", "reason", "comparable_on"]
QUANTITIES = {"ttft_p95_ms", "tpot_p50_ms", "e2e_p95_ms", "output_tokens_per_s", "error_rate", "east_west_gbps"}


@pytest.fixture
def migrated(engine):
    db.migrate(engine)
    return engine


def lognormal(n: int, median: float, sigma: float = 0.4) -> np.ndarray:
    return median * np.exp(sigma * stats.norm.ppf((np.arange(n) + 0.5) / n))


def records(ttft_ms, tpot_ms, errors: int, tokens: int, scenario: str) -> list[RequestRecord]:
    """Warm-up requests (very slow: they must not count), then the measured ones, then failures."""
    out, t = [], 0.0
    for i in range(2):
        out.append(RequestRecord(index=i, scenario=scenario, prompt_id=f"w{i}", prompt_chars=40, warmup=True,
                                 t_sent=t, t_first_token=t + 9.0, token_times=[t + 9.0, t + 20.0], t_end=t + 20.0,
                                 output_tokens=tokens, output_tokens_source="server_usage"))
    for i, (ttft, tpot) in enumerate(zip(ttft_ms, tpot_ms, strict=True), start=2):
        first, end = t + ttft / 1000, t + (ttft + tpot * (tokens - 1)) / 1000
        out.append(RequestRecord(index=i, scenario=scenario, prompt_id=f"q{i}", prompt_chars=40, t_sent=t,
                                 t_first_token=first, token_times=[first, end], t_end=end, output_tokens=tokens,
                                 output_tokens_source="server_usage", http_status=200))
        t += 0.01
    for i in range(errors):
        r = RequestRecord(index=len(out), scenario=scenario, prompt_id=f"e{i}", prompt_chars=40, t_sent=t,
                          http_status=200)
        r.fail("server_error", "the model failed", t + 0.5)
        out.append(r)
    return out


def plant(engine, day: int, *, target: str = "local", kind: str = "local", status: str = "succeeded",
          valid: bool = True, ttft=None, ttft_scale: float = 1.0, tpot_ms: float = 20.0, errors: int = 0,
          wall_time_s: float = 10.0, gbps: float = 5.0, model: str = MODEL, corpus: str = CORPUS,
          **params) -> str:
    """One run of `target` on day `day` (days after T0) with its documents loaded; returns its run id."""
    p = {**PARAMS, **params}
    started = T0 + timedelta(days=day)
    run_id = f"scheduled__{started.isoformat()}"
    loader.record_run(engine, run_id, "rag_benchmark", started, "scheduled", p, None)
    trid = loader.upsert_target_run(engine, run_id, target, kind, "local", None, model, {"params": p}, started)
    n = p["requests"] - errors
    ttft = lognormal(n, 200.0) * ttft_scale if ttft is None else np.asarray(ttft)
    strategy = ({"type": "poisson", "rate_rps": p["rate_rps"], "burstiness": 1.0, "seed": day}
                if p["load_mode"] == "poisson" else {"type": "concurrent", "concurrency": p["concurrency"]})
    scenario = f"{p['load_mode']}-x"
    recs = records(ttft, lognormal(n, tpot_ms, 0.2), errors, p["max_tokens"], scenario)
    summary = summarize(recs, wall_time_s).model_dump(mode="json")
    summary["valid"] = valid
    docs = [
        {"step": "ingest", "data": {"files": 1, "documents": 1, "chunks": 4, "bytes": 100, "seconds": 1.0,
                                    "corpus": {"version": corpus}}},
        {"step": "north-south", "data": {"config": {"strategy": strategy}, "scenarios": [
            {"scenario": scenario, "headline": True, "started_at_epoch": started.timestamp(), "summary": summary,
             "strategy": strategy, "records": [r.to_dict() for r in recs]}]}},
        {"step": "east-west", "data": {"client_node": "ns-client", "server_node": "ns-server", "cross_node": False,
                                       "path": "netns-veth", "flags": [],
                                       "tcp": {"throughput_gbps": {"n": 3, "mean": gbps, "ci95_low": gbps * 0.9,
                                                                   "ci95_high": gbps * 1.1}}}},
    ]
    for doc in docs:
        loader.load_document(engine, trid, {"schema": loader.SCHEMA, "ok": True, **doc})
    loader.finish_target_run(engine, trid, [] if status == "succeeded" else ["deploy"],
                             None if status == "succeeded" else "deploy failed")
    return run_id


# wall times of the history's runs: tokens/s varies by a few percent from run to run
WALLS = [10.0, 10.2, 9.9, 10.1, 9.8, 10.3, 10.0]


def plant_history(engine, days: int = 7, **kwargs) -> list[str]:
    return [plant(engine, day, wall_time_s=WALLS[day % len(WALLS)], gbps=5.0 + 0.05 * (day % 3), **kwargs)
            for day in range(days)]


def rows(engine, run_id: str) -> dict[str, dict]:
    with engine.connect() as conn:
        found = conn.execute(sa.text("SELECT * FROM v_regressions WHERE run_id = :r"), {"r": run_id}).mappings()
        return {r["metric"]: dict(r) for r in found}


def test_the_view_has_exactly_the_panel_columns(migrated):
    with migrated.connect() as conn:
        result = conn.execute(sa.text("SELECT * FROM v_regressions LIMIT 0"))
        assert list(result.keys()) == VIEW_COLUMNS


def test_a_noisy_run_with_no_change_is_not_flagged(migrated):
    # Two slow requests of 32 lift this run's TTFT p95 by more than 10% over every baseline run's
    # p95 (which the median check flagged); its other 30 requests are exactly the baseline's.
    plant_history(migrated)
    ttft = lognormal(32, 200.0)
    ttft[-2:] *= 1.8
    run = plant(migrated, 10, ttft=ttft)
    report = regressions.check_run(migrated, run)
    row = rows(migrated, run)["ttft_p95_ms"]
    assert row["value"] > 1.10 * row["baseline_value"] and row["effect_size"] > row["min_effect"] == 10.0
    assert (row["test"], row["direction"], row["flagged"]) == ("mann_whitney_u", "worse", False)
    assert row["p_value"] > row["alpha"] == 0.01
    assert "not significant" in row["reason"]
    assert report.flagged == []


def test_one_error_against_a_baseline_without_errors_is_not_flagged(migrated):
    plant_history(migrated)
    run = plant(migrated, 10, errors=1)
    regressions.check_run(migrated, run)
    row = rows(migrated, run)["error_rate"]
    assert (row["test"], row["value"], row["baseline_value"]) == ("binomial", 1 / 32, 0.0)
    assert (row["requests"], row["baseline_requests"], row["baseline_runs"]) == (32, 7 * 32, 7)
    assert (row["change_pct"], row["direction"], row["flagged"]) == (None, "worse", False)


def test_many_errors_are_flagged(migrated):
    plant_history(migrated)
    run = plant(migrated, 10, errors=6)
    regressions.check_run(migrated, run)
    row = rows(migrated, run)["error_rate"]
    assert (row["flagged"], row["effect_unit"]) == (True, "pp")
    assert row["effect_size"] == pytest.approx(6 / 32 * 100)


def test_a_clear_regression_is_flagged(migrated, caplog):
    plant_history(migrated)
    run = plant(migrated, 10, ttft_scale=1.5)
    with caplog.at_level(logging.INFO, logger="ragbench.regressions"):
        report = regressions.check_run(migrated, run)
        regressions.log_report(report)
    found = rows(migrated, run)
    ttft = found["ttft_p95_ms"]
    # the baseline is the 7 runs' pooled 224 requests; warm-up requests count on neither side
    assert (ttft["requests"], ttft["baseline_runs"], ttft["baseline_requests"]) == (32, 7, 224)
    assert ttft["value"] == pytest.approx(np.percentile(lognormal(32, 300.0), 95))
    assert ttft["baseline_value"] == pytest.approx(np.percentile(np.tile(lognormal(32, 200.0), 7), 95))
    assert ttft["change_pct"] == pytest.approx((ttft["value"] / ttft["baseline_value"] - 1) * 100)
    assert (ttft["direction"], ttft["flagged"], ttft["threshold_pct"]) == ("worse", True, 10.0)
    assert ttft["p_value"] < 1e-6 and ttft["reason"].startswith("worse by +")
    assert ttft["comparable_on"] == {
        "vantage": "local", "endpoint_kind": "rag", "load_mode": "concurrent", "level": {"type": "concurrent",
        "concurrency": 4}, "requests": 32, "warmup_requests": 2, "k": 4, "max_tokens": 64, "unique_prompts": None,
        "cache": "cold", "model": MODEL, "corpus_version": CORPUS}
    # E2E rises by the same 100-150 ms, a few percent of its 1.5 s: compared, not flagged; TPOT,
    # tokens/s, errors and East-West are as before
    assert set(found) == QUANTITIES
    assert [c.metric for c in report.flagged] == ["ttft_p95_ms"]
    assert found["e2e_p95_ms"]["direction"] == "worse" and found["e2e_p95_ms"]["effect_size"] < 10
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("REGRESSION")]
    assert len(lines) == 1 and all(r.levelno == logging.WARNING for r in caplog.records
                                   if r.getMessage().startswith("REGRESSION"))
    assert lines[0].startswith("REGRESSION local ttft_p95_ms: ") and "over 7 earlier run(s), 224 requests" in lines[0]
    assert lines[0].endswith(f"in run {run}") and "mann_whitney_u" in lines[0]


def test_dollars_are_not_a_separate_signal(migrated):
    # Half the tokens/s: the cost per token doubles with it, and is not flagged a second time.
    plant_history(migrated)
    run = plant(migrated, 10, wall_time_s=20.0)
    report = regressions.check_run(migrated, run)
    found = rows(migrated, run)
    assert set(found) == QUANTITIES and not any("usd" in m for m in found)
    assert [c.metric for c in report.flagged] == ["output_tokens_per_s"]
    tps = found["output_tokens_per_s"]
    assert (tps["test"], tps["direction"], tps["requests"], tps["baseline_requests"]) == \
        ("t_prediction_interval", "worse", None, None)
    assert tps["baseline_value"] == pytest.approx(np.exp(np.mean(np.log([32 * 64 / w for w in WALLS]))))


def test_an_improvement_is_not_flagged(migrated):
    plant_history(migrated)
    run = plant(migrated, 10, ttft_scale=0.6, wall_time_s=6.0, gbps=6.0)
    regressions.check_run(migrated, run)
    found = rows(migrated, run)
    for metric in ("ttft_p95_ms", "e2e_p95_ms", "output_tokens_per_s", "east_west_gbps"):
        assert (found[metric]["direction"], found[metric]["flagged"]) == ("better", False), metric


@pytest.mark.parametrize("differs", [
    {"kind": "kubernetes"},  # another vantage point: the load came from the orchestrator, not this machine
    {"requests": 64},
    {"warmup_requests": 0},
    {"k": 8},
    {"max_tokens": 128},
    {"model": "Qwen/Qwen2.5-7B-Instruct"},
    {"corpus": "custom-0123abcd"},
    {"concurrency": 8},
    {"load_mode": "poisson", "rate_rps": 2.0},
], ids=lambda d: ",".join(d))
def test_runs_that_measured_something_else_are_not_compared(migrated, differs):
    for day in range(3):  # far slower, but not comparable
        plant(migrated, day, ttft_scale=3.0, **differs)
    run = plant(migrated, 10)
    report = regressions.check_run(migrated, run)
    found = rows(migrated, run)
    assert set(found) == {"east_west_gbps"}  # East-West depends on none of these
    assert "local ttft_p95_ms: no baseline yet (0 comparable earlier run(s), at least 3 needed)" in report.not_checked


def test_the_vantage_point_separates_cluster_runs(migrated):
    for day in range(3):
        plant(migrated, day, target="eks", kind="kubernetes", north_south_from="cluster", ttft_scale=0.5)
    for day in range(3, 6):
        plant(migrated, day, target="eks", kind="kubernetes", ttft_scale=1.0)
    run = plant(migrated, 10, target="eks", kind="kubernetes")
    regressions.check_run(migrated, run)
    row = rows(migrated, run)["ttft_p95_ms"]
    assert (row["baseline_runs"], row["flagged"], row["comparable_on"]["vantage"]) == (3, False, "orchestrator")
    assert abs(row["change_pct"]) < 10  # against the 3 runs from the orchestrator, not the 2x faster in-cluster ones


def test_the_baseline_is_the_last_n_comparable_succeeded_valid_runs(migrated):
    for day in range(5):  # old runs, beyond the last 7: ignored
        plant(migrated, day, ttft_scale=5.0)
    plant_history_days = range(5, 12)
    for day in plant_history_days:
        plant(migrated, day)
    plant(migrated, 12, ttft_scale=5.0, status="failed")  # failed
    plant(migrated, 13, ttft_scale=5.0, valid=False)  # the client fell behind
    plant(migrated, 16, target="other", ttft_scale=5.0)  # another target
    run = plant(migrated, 20)
    report = regressions.check_run(migrated, run)
    row = rows(migrated, run)["ttft_p95_ms"]
    assert (row["baseline_runs"], row["flagged"]) == (7, False) and abs(row["change_pct"]) < 10
    (check,) = [c for c in report.checks if c.metric == "ttft_p95_ms"]
    assert check.baseline_run_ids == tuple(f"scheduled__{(T0 + timedelta(days=d)).isoformat()}"
                                           for d in range(11, 4, -1))
    regressions.check_run(migrated, run, baseline_runs=3)
    assert rows(migrated, run)["ttft_p95_ms"]["baseline_requests"] == 3 * 32


def test_the_threshold_is_the_minimum_effect(migrated):
    plant_history(migrated, requests=256)
    run = plant(migrated, 10, requests=256, ttft_scale=1.07)  # significant at 256 requests, but 7%
    regressions.check_run(migrated, run)
    row = rows(migrated, run)["ttft_p95_ms"]
    assert row["p_value"] < 0.01 and (row["direction"], row["flagged"]) == ("worse", False)
    assert "but worse by only" in row["reason"]
    regressions.check_run(migrated, run, threshold_pct=5)  # checking again replaces the rows
    row = rows(migrated, run)["ttft_p95_ms"]
    assert (row["flagged"], row["threshold_pct"], row["min_effect"]) == (True, 5.0, 5.0)
    with migrated.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM regression_checks")).scalar() == len(QUANTITIES)


def test_later_runs_do_not_change_an_earlier_check(migrated):
    plant_history(migrated)
    run = plant(migrated, 10, ttft_scale=1.5)
    regressions.check_run(migrated, run)
    before = rows(migrated, run)
    plant(migrated, 11, ttft_scale=9.0)
    regressions.check_run(migrated, run)
    assert rows(migrated, run) == before


def test_fewer_than_three_earlier_runs_give_no_comparison(migrated):
    plant_history(migrated, days=2)
    run = plant(migrated, 10, ttft_scale=2.0)
    report = regressions.check_run(migrated, run)
    assert rows(migrated, run) == {}
    assert report.checks == []
    assert "local ttft_p95_ms: no baseline yet (2 comparable earlier run(s), at least 3 needed)" in report.not_checked
    plant(migrated, 2)  # a third earlier run: now there is a baseline
    regressions.check_run(migrated, run)
    assert rows(migrated, run)["ttft_p95_ms"]["baseline_runs"] == 3
    assert rows(migrated, run)["ttft_p95_ms"]["flagged"] is True


def test_a_failed_target_is_not_checked(migrated):
    plant_history(migrated)
    run = plant(migrated, 10, status="failed", ttft_scale=3.0)
    report = regressions.check_run(migrated, run)
    assert rows(migrated, run) == {}
    assert report.not_checked == ["local: not checked (failed)"]


def test_rows_of_the_earlier_median_check_stay_readable(engine):
    """A database migrated before 0006 keeps its rows, marked as the old check's."""
    old = [(v, p) for v, p in db.migration_files() if v <= "0004"]
    with engine.begin() as conn:  # the schema as it was: 0001-0004 only
        conn.execute(sa.text("CREATE TABLE schema_migrations (version text PRIMARY KEY, name text NOT NULL, "
                             "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"))
        for version, path in old:
            sql = path.read_text()
            conn.exec_driver_sql(sql)
            conn.execute(sa.text("INSERT INTO schema_migrations (version, name, checksum) VALUES (:v, :n, :c)"),
                         {"v": version, "n": path.name, "c": hashlib.sha256(sql.encode()).hexdigest()})
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO runs (run_id, dag_id, started_at) VALUES ('r', 'rag_benchmark', now())"))
        trid = conn.execute(sa.text("INSERT INTO target_runs (run_id, target, kind, provider, started_at) "
                                    "VALUES ('r', 'local', 'local', 'local', now()) RETURNING target_run_id")).scalar()
        conn.execute(sa.text(
            "INSERT INTO regression_checks (target_run_id, metric, value, baseline_median, baseline_runs, "
            " baseline_run_ids, change_pct, threshold_pct, direction, flagged) "
            "VALUES (:id, 'ttft_p95_ms', 520, 400, 7, '{}', 30, 10, 'worse', true)"), {"id": trid})
    db.migrate(engine)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM v_regressions")).mappings().one()
    assert (row["test"], row["value"], row["baseline_value"], row["flagged"], row["p_value"]) == \
        ("median_of_runs", 520.0, 400.0, True, None)


def test_fail_on_regression(migrated, database_url, monkeypatch):
    plant_history(migrated)
    run = plant(migrated, 10, ttft_scale=1.5)
    monkeypatch.setenv("RAGBENCH_DATABASE_URL", database_url)
    result = regressions.run_check(run, {"regression_threshold_pct": 10, "fail_on_regression": False})
    assert result["checked"] == len(QUANTITIES) and len(result["flagged"]) == 1
    with pytest.raises(RagbenchError, match=r"^1 regression\(s\) flagged: local ttft_p95_ms \(fail_on_regression"):
        regressions.run_check(run, {"regression_threshold_pct": 10, "fail_on_regression": True})
    assert rows(migrated, run)["ttft_p95_ms"]["flagged"] is True  # stored before failing
    # a higher threshold (minimum effect): nothing flagged, nothing fails
    assert regressions.run_check(run, {"regression_threshold_pct": 60, "fail_on_regression": True})["flagged"] == []
