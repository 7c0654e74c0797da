"""v_ns_client_server over raw records loaded into a real PostgreSQL: client TTFT minus the server's
done.timings.ttft_ms per target run and scenario, the same figures as the run summary."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from ragbench import db, loader
from workload.bench.metrics import summarize
from workload.bench.records import RequestRecord
from workload.results import result_document

pytestmark = pytest.mark.integration

RUN_ID = "manual__2026-11-28T09:00:00+00:00"
STARTED = "2026-11-28T09:00:00.000+00:00"


def rec(index: int, scenario: str, t_sent: float, ttft_s: float, server_ttft, **kw) -> RequestRecord:
    rid = kw.pop("rid", f"{scenario}-{index}")
    t_first = t_sent + ttft_s
    return RequestRecord(index=index, scenario=scenario, prompt_id=f"q{index}", prompt_chars=30, http_status=200,
                         t_sent=t_sent, t_first_token=t_first, token_times=[t_first, t_first + 0.125],
                         t_end=t_first + 0.25, output_tokens=2, output_tokens_source="server_usage",
                         request_id=rid, server_request_id=rid,
                         server_timings={} if server_ttft is None else {"ttft_ms": server_ttft}, **kw)


def scenario_a() -> list[RequestRecord]:
    s = "concurrent-2"
    return [
        rec(0, s, 0.0, 0.5, 1.0, warmup=True),  # warm-up: excluded (diff 499)
        rec(1, s, 1.0, 0.125, 100.0),  # 25
        rec(2, s, 2.0, 0.25, 200.0),  # 50
        rec(3, s, 3.0, 0.375, 275.0),  # 100
        rec(4, s, 4.0, 0.5, 300.0),  # 200
        rec(5, s, 5.0, 0.25, None),  # ok, no server TTFT: unpaired
        rec(6, s, 6.0, 0.25, 10.0, error_code="server_error", error_message="x"),  # failed: excluded
    ]


def scenario_b() -> list[RequestRecord]:
    s = "concurrent-4"
    return [rec(0, s, 0.0, 0.0625, 50.0), rec(1, s, 1.0, 0.125, 120.0)]  # 12.5, 5


def north_south_doc() -> tuple[dict, list[dict]]:
    scenarios = []
    for records in (scenario_a(), scenario_b()):
        summary = summarize(records, wall_time_s=8.0).model_dump(mode="json")
        summary["stopped_by"] = "max_requests"
        scenarios.append({"scenario": records[0].scenario, "started_at_epoch": 1790000000.0, "summary": summary,
                          "records": [r.to_dict() for r in records]})
    data = {"endpoint": "http://127.0.0.1:18000",
            "config": {"endpoint_kind": "rag", "strategy": {"type": "concurrent", "concurrency": 2}},
            "scenarios": scenarios}
    return result_document("north-south", data, started_at=STARTED), scenarios


@pytest.fixture
def loaded(engine):
    db.migrate(engine)
    doc, scenarios = north_south_doc()
    loader.record_run(engine, RUN_ID, "ragbench", STARTED, "manual", {}, "abc123")
    trid = loader.upsert_target_run(engine, RUN_ID, "local", "local", "local", None, None, {}, STARTED)
    loader.load_document(engine, trid, doc)
    return engine, trid, scenarios


def view_rows(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM v_ns_client_server WHERE run_id = :r"), {"r": RUN_ID}).mappings()
        return {r["scenario"]: dict(r) for r in rows}


def test_view_percentiles_match_hand_computed_values(loaded):
    engine, trid, _ = loaded
    rows = view_rows(engine)
    assert set(rows) == {"concurrent-2", "concurrent-4"}
    a = rows["concurrent-2"]
    assert a["target_run_id"] == trid and a["target"] == "local"
    assert (a["ok_requests"], a["n"], a["unpaired"]) == (5, 4, 1)
    # sorted [25, 50, 100, 200]
    assert a["p50_ms"] == pytest.approx(75.0)
    assert a["p90_ms"] == pytest.approx(170.0)
    assert a["p99_ms"] == pytest.approx(197.0)
    assert a["mean_ms"] == pytest.approx(93.75)
    assert (a["min_ms"], a["max_ms"]) == (pytest.approx(25.0), pytest.approx(200.0))
    b = rows["concurrent-4"]
    assert (b["n"], b["unpaired"]) == (2, 0)
    assert b["p50_ms"] == pytest.approx(8.75) and b["min_ms"] == pytest.approx(5.0)


def test_view_agrees_with_the_stored_summary(loaded):
    engine, trid, scenarios = loaded
    rows = view_rows(engine)
    with engine.connect() as conn:
        stored = {r["scenario"]: r["summary"]["client_minus_server_ttft_ms"] for r in conn.execute(
            sa.text("SELECT scenario, summary FROM ns_summaries WHERE target_run_id = :id"), {"id": trid}).mappings()}
    for name, row in rows.items():
        s = stored[name]
        assert row["n"] == s["count"] and row["unpaired"] == s["unpaired"]
        for stat in ("p50", "p90", "p99", "mean", "min", "max"):
            assert row[f"{stat}_ms"] == pytest.approx(s[stat])


def test_summary_keys_need_no_schema_change(loaded):
    engine, trid, _ = loaded
    with engine.connect() as conn:
        summary = conn.execute(sa.text("SELECT summary FROM ns_summaries WHERE target_run_id = :id "
                                       "AND scenario = 'concurrent-2'"), {"id": trid}).scalar_one()
    assert summary["tcp_connect"]["before_load_ms"]["count"] == 0
    assert "ttft_p50_minus_rtt_ms" in summary
    assert summary["client_minus_server_ttft_ms"]["count"] == 4


def test_scenario_without_server_timings_has_no_figures(engine):
    db.migrate(engine)
    records = [rec(i, "openai", float(i), 0.125, None) for i in range(3)]
    summary = summarize(records, wall_time_s=3.0).model_dump(mode="json")
    data = {"endpoint": "http://127.0.0.1:8000", "config": {"endpoint_kind": "openai",
                                                             "strategy": {"type": "concurrent", "concurrency": 1}},
            "scenarios": [{"scenario": "openai", "started_at_epoch": 1790000000.0, "summary": summary,
                           "records": [r.to_dict() for r in records]}]}
    loader.record_run(engine, RUN_ID, "ragbench", STARTED, "manual", {}, None)
    trid = loader.upsert_target_run(engine, RUN_ID, "local", "local", "local", None, None, {}, STARTED)
    loader.load_document(engine, trid, result_document("north-south", data, started_at=STARTED))
    row = view_rows(engine)["openai"]
    assert (row["ok_requests"], row["n"], row["unpaired"]) == (3, 0, 3)
    assert row["p50_ms"] is None and row["mean_ms"] is None
