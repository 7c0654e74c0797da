"""Loading step result documents into a real PostgreSQL: row counts, idempotency, v_scorecard."""

from __future__ import annotations

import copy

import pytest
import sqlalchemy as sa

from ragbench import db, loader
from ragbench.errors import RagbenchError
from ragbench.scorecard import format_table, scorecard_rows
from workload.bench.metrics import SLO, summarize
from workload.bench.records import RequestRecord
from workload.eastwest.iperf import TcpSample, summarize_samples
from workload.eastwest.probe import placement
from workload.results import result_document

pytestmark = pytest.mark.integration

RUN_ID = "manual__2026-11-27T10:00:00+00:00"
STARTED = "2026-11-27T10:00:00.000+00:00"
TABLES = ("runs", "target_runs", "ns_requests", "ns_summaries", "ew_results", "ingest_results")


@pytest.fixture
def migrated(engine):
    db.migrate(engine)
    return engine


def rec(index: int, **kw) -> RequestRecord:
    fields = {"http_status": 200, "request_id": f"req-{index}", "replica_id": "pod-a", **kw}
    return RequestRecord(index=index, scenario="concurrent-2", prompt_id=f"q{index}", prompt_chars=40, **fields)


def ns_records() -> list[RequestRecord]:
    return [
        rec(0, warmup=True, t_sent=0.0, t_first_token=0.125, token_times=[0.125, 0.25], t_end=0.25,
            output_tokens=2, output_tokens_source="server_usage"),
        # ttft 125, e2e 625, N_out 5, tpot 125
        rec(1, t_sent=1.0, t_first_token=1.125, token_times=[1.125, 1.25, 1.375, 1.5, 1.625], t_end=1.625,
            output_tokens=5, output_tokens_source="server_usage", server_timings={"ttft_ms": 100.0}),
        # ttft 375, e2e 1000, N_out 3 (events), tpot 312.5
        rec(2, t_sent=2.0, t_first_token=2.375, token_times=[2.375, 2.5, 2.75], t_end=3.0,
            output_tokens_source="token_events"),
        # failed: error event after one token
        rec(3, t_sent=3.0, t_first_token=3.25, token_times=[3.25], t_end=3.5, error_code="server_error",
            server_error_code="llm_unavailable", error_message="llm_unavailable: vLLM is down"),
        # failed: never got a first token
        rec(4, t_sent=4.0, t_end=64.0, error_code="first_token_timeout", error_message="no first token in time"),
        # ttft 250, e2e 1000, N_out 10, tpot 83.33
        rec(5, t_sent=5.0, t_first_token=5.25, token_times=[5.25, 5.5], t_end=6.0, output_tokens=10,
            output_tokens_source="server_usage"),
    ]


def ns_doc(records: list[RequestRecord] | None = None) -> tuple[dict, dict]:
    records = ns_records() if records is None else records
    summary = summarize(records, wall_time_s=8.0, slo=SLO(ttft_ms=300, tpot_ms=200)).model_dump(mode="json")
    summary["stopped_by"] = "max_requests"
    data = {"endpoint": "http://127.0.0.1:18000",
            "config": {"endpoint_kind": "rag", "strategy": {"type": "concurrent", "concurrency": 2}},
            "scenarios": [{"scenario": "concurrent-2", "started_at_epoch": 1790000000.0, "summary": summary,
                           "records": [r.to_dict() for r in records]}]}
    return result_document("north-south", data, started_at=STARTED), summary


def ingest_doc(chunks: int = 96) -> dict:
    data = {"documents": 12, "chunks": chunks, "bytes": 123456, "files": 12, "seconds": 4.0,
            "chunks_per_s": chunks / 4.0, "stage_ms": {"convert_split_ms": 100.0, "embed_ms": 3500.0,
                                                       "write_ms": 150.0},
            "store_documents": 12}
    return result_document("ingest", data, started_at=STARTED)


def ew_doc() -> dict:
    forward = [TcpSample(9.0, 1, 0.05, 3.0, 1, False), TcpSample(10.0, 2, 0.05, 3.0, 1, False),
               TcpSample(11.0, 3, 0.05, 3.0, 1, False)]
    reverse = [TcpSample(8.0, 0, 0.04, 3.0, 1, True), TcpSample(8.0, 0, 0.04, 3.0, 1, True)]
    data = placement("laptop", "laptop", "loopback") | {
        "duration_s": 3.0, "streams": 1,
        "tcp": summarize_samples(forward), "tcp_reverse": summarize_samples(reverse)}
    return result_document("east-west", data, started_at=STARTED)


def deploy_doc() -> dict:
    data = {"endpoint": "http://127.0.0.1:18000", "model_id": "ragbench/tiny-qwen2",
            "timings": {"llm_ready_s": 41.5, "serve_ready_s": 12.0}, "images": {}, "pids": {"llm": 123}}
    return result_document("deploy-local", data, started_at=STARTED)


def load_local_target(engine, docs: list[dict]) -> int:
    loader.record_run(engine, RUN_ID, "ragbench", STARTED, "manual", {"requests": 5}, "abc123")
    trid = loader.upsert_target_run(engine, RUN_ID, "local", "local", "local", "this-machine", None,
                                    {"python": "3.11"}, STARTED)
    for doc in docs:
        loader.load_document(engine, trid, doc)
    loader.finish_target_run(engine, trid, [], None)
    return trid


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def scorecard(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM v_scorecard WHERE run_id = :r"), {"r": RUN_ID}).mappings()
        return {r["target"]: dict(r) for r in rows}


def test_load_all_documents(migrated):
    ns, _ = ns_doc()
    load_local_target(migrated, [deploy_doc(), ingest_doc(), ns, ew_doc()])
    assert counts(migrated) == {"runs": 1, "target_runs": 1, "ns_requests": 6,  # warm-up and failures kept
                                "ns_summaries": 1, "ew_results": 2, "ingest_results": 1}


def test_loading_again_is_idempotent(migrated):
    ns, _ = ns_doc()
    docs = [deploy_doc(), ingest_doc(), ns, ew_doc()]
    first_id = load_local_target(migrated, docs)
    first = counts(migrated)
    first_card = scorecard(migrated)
    second_id = load_local_target(migrated, copy.deepcopy(docs))
    assert second_id == first_id  # the same target run
    assert counts(migrated) == first
    assert scorecard(migrated) == first_card


def test_reloading_replaces_an_earlier_attempt(migrated):
    ns, _ = ns_doc()
    trid = load_local_target(migrated, [ingest_doc(chunks=96), ns])
    smaller, summary = ns_doc(ns_records()[:3])  # a retried step that wrote fewer records
    loader.load_document(migrated, trid, smaller)
    loader.load_document(migrated, trid, ingest_doc(chunks=40))
    c = counts(migrated)
    assert (c["ns_requests"], c["ns_summaries"], c["ingest_results"]) == (3, 1, 1)
    card = scorecard(migrated)["local"]
    assert card["ingested_chunks"] == 40
    assert card["requests"] == summary["requests"] == 2  # records 1 and 2 (0 is warm-up)


def test_scorecard_shows_the_loaded_numbers(migrated):
    ns, summary = ns_doc()
    load_local_target(migrated, [deploy_doc(), ingest_doc(), ns, ew_doc()])
    card = scorecard(migrated)["local"]
    assert card["status"] == "succeeded"
    assert card["failed_steps"] == []
    assert card["kind"] == "local" and card["provider"] == "local"
    assert card["model_id"] == "ragbench/tiny-qwen2"  # from the deploy document
    assert card["scenario"] == "concurrent-2"
    # the summary's own numbers (hand-checked in tests/unit/test_metrics.py): TTFT [125, 250, 375]
    assert card["ttft_p50_ms"] == summary["ttft_ms"]["p50"] == pytest.approx(250.0)
    assert card["ttft_p95_ms"] == summary["ttft_ms"]["p95"] == pytest.approx(362.5)
    assert card["e2e_p50_ms"] == summary["e2e_ms"]["p50"] == pytest.approx(1000.0)
    assert card["tpot_p50_ms"] == summary["tpot_ms"]["p50"] == pytest.approx(125.0)
    assert (card["requests"], card["completed"]) == (5, 3)
    assert card["error_rate"] == pytest.approx(0.4)
    assert card["output_tokens"] == 18
    assert card["output_tokens_per_s"] == pytest.approx(2.25)  # 18 / 8 s
    assert card["requests_per_s"] == pytest.approx(0.375)
    assert card["slo_attainment"] == pytest.approx(0.4)
    assert card["goodput_rps"] == pytest.approx(0.25)
    assert card["valid"] is True
    assert card["wall_time_s"] == 8.0
    assert card["east_west_gbps"] == pytest.approx(10.0)  # mean of 9, 10, 11 (the forward probe)
    assert card["east_west_cross_node"] is False  # loopback
    assert card["ingested_chunks"] == 96
    assert card["ingest_chunks_per_s"] == pytest.approx(24.0)


def test_summary_columns_and_json(migrated):
    ns, summary = ns_doc()
    trid = load_local_target(migrated, [ns])
    with migrated.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM ns_summaries WHERE target_run_id = :id"),
                           {"id": trid}).mappings().one()
    assert row["headline"] is True
    assert row["strategy"] == {"type": "concurrent", "concurrency": 2}
    assert row["started_at"].timestamp() == 1790000000.0
    assert row["errored"] == 2
    assert row["itl_p50_ms"] == pytest.approx(summary["itl_ms"]["p50"])
    assert row["tpot_mean_ms"] == pytest.approx(summary["tpot_ms"]["mean"])
    assert row["summary"]["errors_by_code"] == {"server_error": 1, "first_token_timeout": 1}
    assert row["summary"]["stopped_by"] == "max_requests"


def test_raw_requests_keep_failures(migrated):
    ns, _ = ns_doc()
    trid = load_local_target(migrated, [ns])
    with migrated.connect() as conn:
        rows = {r["idx"]: dict(r) for r in conn.execute(sa.text(
            "SELECT * FROM ns_requests WHERE target_run_id = :id ORDER BY idx"), {"id": trid}).mappings()}
    assert sorted(rows) == [0, 1, 2, 3, 4, 5]
    assert rows[0]["warmup"] is True
    ok = rows[1]
    assert ok["error_code"] is None
    assert ok["t_sent_ms"] == 1000.0 and ok["t_end_ms"] == 1625.0
    assert ok["ttft_ms"] == pytest.approx(125.0)
    assert ok["e2e_ms"] == pytest.approx(625.0)
    assert ok["tpot_ms"] == pytest.approx(125.0)
    assert ok["output_tokens"] == 5 and ok["output_tokens_source"] == "server_usage"
    assert ok["token_events"] == 5
    assert ok["itl_ms"] == [125.0, 125.0, 125.0, 125.0]
    assert ok["server_timings"] == {"ttft_ms": 100.0}
    assert rows[2]["output_tokens"] == 3 and rows[2]["output_tokens_source"] == "token_events"
    server_err = rows[3]
    assert server_err["error_code"] == "server_error"
    assert server_err["server_error_code"] == "llm_unavailable"
    assert server_err["error_message"] == "llm_unavailable: vLLM is down"
    assert server_err["ttft_ms"] is None and server_err["tpot_ms"] is None  # not figures of a failed request
    assert server_err["output_tokens"] is None
    assert server_err["e2e_ms"] == pytest.approx(500.0)  # time until the failure was noticed
    assert server_err["token_events"] == 1
    timeout = rows[4]
    assert timeout["error_code"] == "first_token_timeout"
    assert timeout["t_first_token_ms"] is None
    assert timeout["e2e_ms"] == pytest.approx(60000.0)


def test_east_west_rows(migrated):
    trid = load_local_target(migrated, [ew_doc()])
    with migrated.connect() as conn:
        rows = {r["probe"]: dict(r) for r in conn.execute(sa.text(
            "SELECT * FROM ew_results WHERE target_run_id = :id"), {"id": trid}).mappings()}
    assert set(rows) == {"tcp", "tcp_reverse"}
    tcp = rows["tcp"]
    assert (tcp["client_node"], tcp["server_node"], tcp["cross_node"], tcp["path"], tcp["flags"]) == \
        ("laptop", "laptop", False, "loopback", [])
    assert tcp["samples"] == 3
    assert tcp["throughput_gbps"] == pytest.approx(10.0)
    assert tcp["throughput_ci95_low_gbps"] == pytest.approx(10 - 4.303 / 3 ** 0.5)  # stdev 1, t(2) 4.303
    assert tcp["retransmits"] == pytest.approx(2.0)
    assert tcp["mean_rtt_ms"] == pytest.approx(0.05)
    rev = rows["tcp_reverse"]
    assert (rev["samples"], rev["throughput_gbps"]) == (2, pytest.approx(8.0))
    assert rev["throughput_ci95_low_gbps"] == pytest.approx(8.0)  # zero spread


def test_run_and_fingerprint(migrated):
    load_local_target(migrated, [deploy_doc()])
    with migrated.connect() as conn:
        run = conn.execute(sa.text("SELECT * FROM runs")).mappings().one()
        tr = conn.execute(sa.text("SELECT * FROM target_runs")).mappings().one()
    assert run["run_id"] == RUN_ID and run["params"] == {"requests": 5} and run["git_revision"] == "abc123"
    assert tr["fingerprint"]["python"] == "3.11"
    assert tr["fingerprint"]["deploy"] == {"endpoint": "http://127.0.0.1:18000", "model_id": "ragbench/tiny-qwen2",
                                           "timings": {"llm_ready_s": 41.5, "serve_ready_s": 12.0}, "images": {}}
    assert tr["finished_at"] is not None


def test_failed_target(migrated):
    ns, _ = ns_doc()
    load_local_target(migrated, [ingest_doc(), ns, ew_doc()])
    trid = loader.upsert_target_run(migrated, RUN_ID, "aws-eks", "kubernetes", "aws-eks", "us-east-1",
                                    "Qwen/Qwen2.5-7B-Instruct", {}, STARTED)
    error = "north_south on aws-eks failed: connect timeout"
    failed_ns = result_document("north-south", {}, started_at=STARTED, ok=False, error=error)
    assert loader.load_document(migrated, trid, ingest_doc(chunks=50)) == "ingest"
    assert loader.load_document(migrated, trid, failed_ns) == "north-south"  # loads nothing
    loader.finish_target_run(migrated, trid, ["north_south", "east_west"], error)
    card = scorecard(migrated)
    failed = card["aws-eks"]
    assert failed["status"] == "failed"
    assert failed["failed_steps"] == ["north_south", "east_west"]
    assert failed["error"] == error
    assert failed["ttft_p50_ms"] is None and failed["east_west_gbps"] is None
    assert failed["ingested_chunks"] == 50
    assert card["local"]["status"] == "succeeded"
    c = counts(migrated)
    assert (c["target_runs"], c["ns_summaries"], c["ns_requests"], c["ingest_results"]) == (2, 1, 6, 2)
    # the terminal scorecard names the failed target and its steps
    table = format_table(scorecard_rows(migrated, RUN_ID))
    assert f"aws-eks FAILED in north_south, east_west: {error}" in table.splitlines()


def test_scorecard_rows_default_to_the_newest_run(migrated):
    assert scorecard_rows(migrated) == []
    load_local_target(migrated, [ingest_doc()])
    loader.record_run(migrated, "older", "ragbench", "2026-01-01T00:00:00+00:00", "manual", {}, None)
    rows = scorecard_rows(migrated)
    assert [(r["run_id"], r["target"]) for r in rows] == [(RUN_ID, "local")]


def test_unknown_schema_is_rejected(migrated):
    trid = load_local_target(migrated, [])
    doc = ingest_doc()
    for bad in ("ragbench.result/v0", "something-else", None):
        d = dict(doc, schema=bad)
        with pytest.raises(RagbenchError, match="unknown result document schema"):
            loader.load_document(migrated, trid, d)
    assert counts(migrated)["ingest_results"] == 0


def test_a_malformed_summary_is_refused_with_its_field_and_stores_nothing(migrated):
    trid = load_local_target(migrated, [])
    doc, _ = ns_doc()
    bad = copy.deepcopy(doc)
    del bad["data"]["scenarios"][0]["summary"]["ttft_ms"]["count"]
    with pytest.raises(RagbenchError, match=r"scenario 'concurrent-2': bad summary: ttft_ms.count"):
        loader.load_document(migrated, trid, bad)
    assert counts(migrated)["ns_summaries"] == 0 and counts(migrated)["ns_requests"] == 0
    loader.load_document(migrated, trid, doc)  # the well-formed document loads
    assert counts(migrated)["ns_summaries"] == 1


def test_steps_without_data_to_store(migrated):
    trid = load_local_target(migrated, [])
    teardown = result_document("teardown-local", {"stopped": ["llm"]}, started_at=STARTED)
    assert loader.load_document(migrated, trid, teardown) == "teardown-local"
    assert counts(migrated) == {"runs": 1, "target_runs": 1, "ns_requests": 0, "ns_summaries": 0,
                                "ew_results": 0, "ingest_results": 0}


def test_north_south_with_every_request_failed(migrated):
    records = [rec(1, t_sent=1.0, t_end=1.5, http_status=503, error_code="http_error", error_message="HTTP 503"),
               rec(2, t_sent=2.0, t_end=62.0, error_code="first_token_timeout", error_message="no first token")]
    doc, summary = ns_doc(records)
    assert summary["ttft_ms"]["p50"] is None
    trid = load_local_target(migrated, [doc])
    card = scorecard(migrated)["local"]
    assert (card["requests"], card["completed"]) == (2, 0)
    assert card["error_rate"] == 1.0
    assert card["ttft_p50_ms"] is None and card["tpot_p50_ms"] is None
    assert card["output_tokens_per_s"] == 0.0
    with migrated.connect() as conn:
        codes = conn.execute(sa.text("SELECT idx, http_status, error_code FROM ns_requests "
                                     "WHERE target_run_id = :id ORDER BY idx"), {"id": trid}).all()
    assert [tuple(c) for c in codes] == [(1, 503, "http_error"), (2, 200, "first_token_timeout")]


# --- a re-attempt leaves exactly one truth ---------------------------------------------------------

def failed_doc(step: str, error: str) -> dict:
    return result_document(step, {}, started_at=STARTED, ok=False, error=error)


def test_a_re_attempt_that_fails_removes_the_earlier_attempts_rows(migrated):
    ns, _ = ns_doc()
    trid = load_local_target(migrated, [deploy_doc(), ingest_doc(), ns, ew_doc()])
    assert scorecard(migrated)["local"]["ttft_p50_ms"] is not None
    # the steps ran again: North-South and East-West failed this time, ingest succeeded
    error = "north-south failed: connection refused"
    for doc in (deploy_doc(), ingest_doc(chunks=40), failed_doc("north-south", error),
                failed_doc("east-west", "iperf3 not found")):
        loader.load_document(migrated, trid, doc)
    loader.finish_target_run(migrated, trid, ["north_south", "east_west"], error)
    c = counts(migrated)
    assert (c["ns_summaries"], c["ns_requests"], c["ew_results"], c["ingest_results"]) == (0, 0, 0, 1)
    with migrated.connect() as conn:
        for table in ("resource_usage", "server_histograms"):
            assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() == 0
        steps = {r.step: (r.ok, r.error) for r in conn.execute(sa.text(
            "SELECT step, ok, error FROM step_results WHERE target_run_id = :id"), {"id": trid})}
    assert steps == {"deploy": (True, None), "ingest": (True, None), "north_south": (False, error),
                     "east_west": (False, "iperf3 not found")}
    card = scorecard(migrated)["local"]
    assert (card["status"], card["failed_steps"], card["error"]) == ("failed", ["north_south", "east_west"], error)
    assert card["scenario"] is None and card["ttft_p50_ms"] is None and card["east_west_gbps"] is None
    assert card["ingested_chunks"] == 40
    table = format_table(scorecard_rows(migrated, RUN_ID))
    assert f"local FAILED in north_south, east_west: {error}" in table.splitlines()


def test_a_step_without_a_document_on_a_re_attempt_leaves_nothing(migrated, monkeypatch):
    from ragbench import pipeline

    ns, _ = ns_doc()
    trid = load_local_target(migrated, [deploy_doc(), ingest_doc(), ns, ew_doc()])
    # the re-attempt's deploy failed, so nothing after it ran: only deploy left a document
    refs = {"deploy": failed_doc("deploy-local", "vLLM did not start"), "ingest": None, "north_south": None,
            "east_west": None, "teardown": None}
    monkeypatch.setenv("RAGBENCH_DATABASE_URL", migrated.url.render_as_string(hide_password=False))
    result = pipeline.load_target_results("local", RUN_ID, {"requests": 5}, STARTED, refs)
    assert result["target_run_id"] == trid
    assert result["failed_steps"] == ["deploy", "ingest", "north_south", "east_west"]
    c = counts(migrated)
    assert (c["ns_summaries"], c["ns_requests"], c["ew_results"], c["ingest_results"]) == (0, 0, 0, 0)
    with migrated.connect() as conn:
        tr = conn.execute(sa.text("SELECT fingerprint FROM target_runs WHERE target_run_id = :id"),
                          {"id": trid}).scalar_one()
        steps = list(conn.execute(sa.text("SELECT step, ok FROM step_results WHERE target_run_id = :id"),
                                  {"id": trid}))
    assert "deploy" not in tr  # the failed deploy's fingerprint is not the earlier attempt's
    assert [tuple(s) for s in steps] == [("deploy", False)]
    card = scorecard(migrated)["local"]
    assert card["status"] == "failed" and card["ttft_p50_ms"] is None and card["ingested_chunks"] is None


# --- operating point, prefix cache and intervals ---------------------------------------------------

def sweep_doc(levels: list[tuple[int, bool | None, bool]], prefix_hit_rates: list[float | None] | None = None) -> dict:
    """A sweep's document: (concurrency, operating_point flag, valid) per level."""
    scenarios = []
    for i, (conc, op, valid) in enumerate(levels):
        records = [rec(j, t_sent=j * 0.1, t_first_token=j * 0.1 + 0.1 + conc / 100,
                       token_times=[j * 0.1 + 0.1 + conc / 100, j * 0.1 + 0.2 + conc / 100],
                       t_end=j * 0.1 + 0.3 + conc / 100, output_tokens=2, output_tokens_source="server_usage")
                   for j in range(40)]
        summary = summarize(records, wall_time_s=4.0, slo=SLO(ttft_ms=300)).model_dump(mode="json")
        summary["valid"] = valid
        summary["invalid_reason"] = None if valid else "schedule lag"
        summary["meets_slo_target"] = bool(op)
        sc = {"scenario": f"sweep-concurrent-{conc}", "started_at_epoch": 1790000000.0 + i * 10,
              "summary": summary, "strategy": {"type": "concurrent", "concurrency": conc},
              "records": [r.to_dict() for r in records], "headline": bool(op), "operating_point": op}
        if prefix_hit_rates is not None:
            sc["prefix_cache"] = {"hit_rate": prefix_hit_rates[i], "queries": 100, "hits": 10}
        scenarios.append(sc)
    if not any(s["headline"] for s in scenarios):
        scenarios[0]["headline"] = True  # no level met the SLO: the lowest level is shown
    data = {"endpoint": "http://127.0.0.1:18000",
            "config": {"endpoint_kind": "rag", "strategy": {"type": "sweep"}},
            "scenarios": scenarios,
            "sweep": {"operating_point_concurrency": next((c for c, op, _ in levels if op), None)}}
    return result_document("north-south", data, started_at=STARTED)


def summaries(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r["scenario"]: dict(r) for r in conn.execute(sa.text("SELECT * FROM ns_summaries")).mappings()}


def test_the_operating_point_is_stored_with_its_scenario(migrated):
    load_local_target(migrated, [sweep_doc([(1, False, True), (2, True, True), (4, False, True)],
                                           [0.0, 0.25, None])])
    rows = summaries(migrated)
    assert {k: v["operating_point"] for k, v in rows.items()} == {
        "sweep-concurrent-1": False, "sweep-concurrent-2": True, "sweep-concurrent-4": False}
    assert {k: v["prefix_cache_hit_rate"] for k, v in rows.items()} == {
        "sweep-concurrent-1": 0.0, "sweep-concurrent-2": 0.25, "sweep-concurrent-4": None}
    card = scorecard(migrated)["local"]
    assert (card["scenario"], card["operating_point"], card["no_operating_point"]) == \
        ("sweep-concurrent-2", True, False)
    assert card["prefix_cache_hit_rate"] == 0.25


def test_a_sweep_without_an_operating_point_says_so(migrated):
    load_local_target(migrated, [sweep_doc([(1, False, True), (2, False, True)])])
    card = scorecard(migrated)["local"]
    assert (card["scenario"], card["operating_point"], card["no_operating_point"]) == \
        ("sweep-concurrent-1", False, True)
    assert card["usd_per_1m_output_tokens"] is None  # nothing priced as the operating point
    lines = format_table(scorecard_rows(migrated, RUN_ID)).splitlines()
    assert "local: sweep: no level met the SLO (no operating point, not priced)" in lines


def test_an_invalid_scenario_is_never_the_operating_point(migrated):
    load_local_target(migrated, [sweep_doc([(1, False, True), (2, True, False)])])
    assert summaries(migrated)["sweep-concurrent-2"]["operating_point"] is False
    assert scorecard(migrated)["local"]["no_operating_point"] is True


def test_a_single_scenario_has_no_operating_point_flag(migrated):
    ns, _ = ns_doc()
    load_local_target(migrated, [ns])
    card = scorecard(migrated)["local"]
    assert (card["operating_point"], card["no_operating_point"], card["prefix_cache_hit_rate"]) == \
        (None, False, None)


def test_documents_before_the_operating_point_flag(migrated):
    doc = sweep_doc([(1, False, True), (2, True, True)])
    for sc in doc["data"]["scenarios"]:
        del sc["operating_point"]  # an older load generator: headline + meets_slo_target only
    load_local_target(migrated, [doc])
    assert {k: v["operating_point"] for k, v in summaries(migrated).items()} == {
        "sweep-concurrent-1": False, "sweep-concurrent-2": True}


def test_intervals_are_stored_and_shown(migrated):
    ns, summary = ns_doc()
    load_local_target(migrated, [ns])
    card = scorecard(migrated)["local"]
    # three successful requests, TTFT 125/250/375: every resample's value lies within the data
    assert 125.0 <= card["ttft_p50_ms_lo"] <= card["ttft_p50_ms"] <= card["ttft_p50_ms_hi"] <= 375.0
    assert 125.0 <= card["ttft_p95_ms_lo"] <= card["ttft_p95_ms_hi"] <= 375.0
    assert card["tpot_p50_ms_lo"] <= card["tpot_p50_ms"] <= card["tpot_p50_ms_hi"]
    assert card["e2e_p95_ms_lo"] <= card["e2e_p95_ms_hi"] <= 1000.0
    # tokens/s: 5 measured requests (2 failed, 0 tokens) of 5, 3 and 10 tokens over 8 s
    assert 0.0 <= card["output_tokens_per_s_lo"] <= 2.25 <= card["output_tokens_per_s_hi"] <= 50 / 8
    # three samples: every checked percentile of TTFT, E2E and TPOT is low-confidence
    assert {"ttft_p50_ms", "ttft_p95_ms", "tpot_p50_ms", "e2e_p95_ms", "ttft_p99_ms"} <= set(card["low_confidence"])
    load_local_target(migrated, [ns])
    assert scorecard(migrated)["local"] == card  # a reload stores the same intervals


def test_enough_samples_are_not_low_confidence(migrated):
    records = [rec(j, t_sent=float(j), t_first_token=j + 0.1 + (j % 17) / 100, token_times=[j + 0.2, j + 0.3],
                   t_end=j + 0.4, output_tokens=3, output_tokens_source="server_usage") for j in range(1, 251)]
    doc, summary = ns_doc(records)
    load_local_target(migrated, [doc])
    card = scorecard(migrated)["local"]
    # 250 successes: p50 and p95 have >= 10 samples beyond them (12.5 for p95), p99 has 2.5
    assert "ttft_p95_ms" not in card["low_confidence"] and "ttft_p50_ms" not in card["low_confidence"]
    assert "ttft_p99_ms" in card["low_confidence"]
    assert card["ttft_p95_ms_lo"] < card["ttft_p95_ms"] <= card["ttft_p95_ms_hi"]
    # every request has 3 tokens and none failed: the tokens/s interval is the point itself
    assert card["output_tokens_per_s_lo"] == pytest.approx(card["output_tokens_per_s"]) == \
        pytest.approx(card["output_tokens_per_s_hi"])
