"""Loading telemetry into a real PostgreSQL: resource_usage, server_histograms per scenario window
(and the step-wide sections of older documents), the corpus columns of ingest_results, the views
v_resource_usage and v_server_vs_client, idempotency."""

from __future__ import annotations

import copy
import math

import pytest
import sqlalchemy as sa

from ragbench import db, loader
from workload.bench.metrics import SLO, summarize
from workload.bench.records import RequestRecord
from workload.results import result_document
from workload.telemetry.histograms import server_histograms
from workload.telemetry.stats import RunningStats, usage_row

pytestmark = pytest.mark.integration

RUN_ID = "manual__2026-11-28T10:00:00+00:00"
STARTED = "2026-11-28T10:00:00.000+00:00"
INF = math.inf
VIEW_COLUMNS = ["run_id", "target", "provider", "started_at", "source", "component", "metric", "unit",
                "min_value", "mean_value", "max_value", "samples", "scenario", "window_start", "window_end"]


@pytest.fixture
def migrated(engine):
    db.migrate(engine)
    return engine


def stats(*values: float) -> RunningStats:
    s = RunningStats()
    for v in values:
        s.add(v)
    return s


def records() -> list[RequestRecord]:
    # TTFT 100, 200, 300 ms; tokens every 20 ms after the first
    return [RequestRecord(index=i, scenario="concurrent-1", prompt_id=f"q{i}", prompt_chars=30, http_status=200,
                          t_sent=float(i), t_first_token=i + 0.1 * (i + 1),
                          token_times=[i + 0.1 * (i + 1) + 0.02 * j for j in range(4)],
                          t_end=i + 0.1 * (i + 1) + 0.06, output_tokens=4, output_tokens_source="server_usage")
            for i in range(3)]


def histograms_section() -> dict:
    # what vLLM saw: TTFT 20, 40, 60 ms (buckets 25, 50, 100 ms); ITL 20 ms x 9
    before = {"vllm:time_to_first_token_seconds": {"buckets": [(0.025, 4.0), (0.05, 4.0), (0.1, 4.0),
                                                               (INF, 4.0)], "sum": 0.05, "count": 4.0}}
    after = {"vllm:time_to_first_token_seconds": {"buckets": [(0.025, 5.0), (0.05, 6.0), (0.1, 7.0),
                                                              (INF, 7.0)], "sum": 0.17, "count": 7.0},
             "vllm:inter_token_latency_seconds": {"buckets": [(0.01, 0.0), (0.025, 9.0), (INF, 9.0)],
                                                  "sum": 0.18, "count": 9.0}}
    return {"url": "http://127.0.0.1:18100/metrics", "metrics": server_histograms(before, after), "errors": []}


def resources_section(rows: list[dict], start: float = 1795860000.0) -> dict:
    return {"window": {"start_epoch": start, "end_epoch": start + 3.0}, "rows": rows,
            "sources": {"psutil": {"interval_s": 0.5}}}


def ns_doc(resource_rows: list[dict] | None = None, with_histograms: bool = True,
           step_wide: bool = False) -> tuple[dict, dict]:
    """A North-South document of one scenario with its telemetry; ``step_wide``: as written before
    per-scenario windows (one top-level section for the whole step)."""
    recs = records()
    summary = summarize(recs, wall_time_s=3.0, slo=SLO(ttft_ms=1000, tpot_ms=200)).model_dump(mode="json")
    scenario = {"scenario": "concurrent-1", "started_at_epoch": 1795860000.0, "summary": summary,
                "headline": True, "records": [r.to_dict() for r in recs]}
    data = {"endpoint": "http://127.0.0.1:18000",
            "config": {"endpoint_kind": "rag", "strategy": {"type": "concurrent", "concurrency": 1}},
            "scenarios": [scenario]}
    holder = data if step_wide else scenario
    if resource_rows is not None:
        holder["resources"] = resources_section(resource_rows)
    if with_histograms:
        holder["server_histograms"] = histograms_section()
    return result_document("north-south", data, started_at=STARTED), summary


ROWS = [usage_row("psutil", "vllm", "cpu_percent", "percent", stats(50.0, 150.0, 100.0)),
        usage_row("psutil", "vllm", "memory_bytes", "bytes", stats(2.2e9, 2.4e9)),
        usage_row("psutil", "serve-replica", "cpu_percent", "percent", stats(10.0, 30.0)),
        usage_row("prometheus", "vllm", "gpu_util_percent", "percent", stats(40.0, 80.0)),
        usage_row("prometheus", "idle", "memory_bytes", "bytes", stats())]  # a series with no points


def ingest_doc(corpus: dict | None) -> dict:
    data = {"documents": 58, "chunks": 540, "bytes": 598851, "files": 58, "seconds": 30.0, "chunks_per_s": 18.0,
            "stage_ms": {"convert_split_ms": 1.0, "embed_ms": 2.0, "write_ms": 3.0}, "store_documents": 540}
    if corpus is not None:
        data["corpus"] = corpus
    return result_document("ingest", data, started_at=STARTED)


def target_run(engine) -> int:
    loader.record_run(engine, RUN_ID, "ragbench", STARTED, "manual", {}, None)
    return loader.upsert_target_run(engine, RUN_ID, "local", "local", "local", "this-machine", None, {}, STARTED)


def query(engine, sql: str, **params) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]


@pytest.mark.parametrize("step_wide", [False, True], ids=["per-scenario", "older-step-wide-document"])
def test_resource_rows_load_and_the_view_has_the_agreed_columns(migrated, step_wide):
    trid = target_run(migrated)
    loader.load_document(migrated, trid, ns_doc(ROWS, step_wide=step_wide)[0])
    with migrated.connect() as conn:
        result = conn.execute(sa.text("SELECT * FROM v_resource_usage ORDER BY source, component, metric"))
        assert list(result.keys()) == VIEW_COLUMNS
        rows = [dict(r) for r in result.mappings()]
    assert len(rows) == 5
    cpu = next(r for r in rows if (r["component"], r["metric"]) == ("vllm", "cpu_percent"))
    assert (cpu["min_value"], cpu["mean_value"], cpu["max_value"], cpu["samples"]) == (50.0, 100.0, 150.0, 3)
    assert (cpu["run_id"], cpu["target"], cpu["provider"], cpu["unit"]) == (RUN_ID, "local", "local", "percent")
    idle = next(r for r in rows if r["component"] == "idle")
    assert idle["samples"] == 0 and idle["mean_value"] is None
    window = query(migrated, "SELECT DISTINCT window_end - window_start AS w FROM resource_usage")
    assert [w["w"].total_seconds() for w in window] == [3.0]
    assert {r["scenario"] for r in rows} == {None if step_wide else "concurrent-1"}


@pytest.mark.parametrize("step_wide", [False, True], ids=["per-scenario", "older-step-wide-document"])
def test_server_histograms_load_and_compare_with_the_client(migrated, step_wide):
    trid = target_run(migrated)
    doc, summary = ns_doc(ROWS, step_wide=step_wide)
    loader.load_document(migrated, trid, doc)
    hist = {r["kind"]: r for r in query(migrated, "SELECT * FROM server_histograms")}
    assert set(hist) == {"ttft", "itl"}
    ttft = hist["ttft"]
    assert ttft["metric"] == "vllm:time_to_first_token_seconds"
    assert ttft["count"] == 3 and ttft["sum"] == pytest.approx(0.12)  # the difference of the scrapes
    assert ttft["buckets"] == [[0.025, 1.0], [0.05, 2.0], [0.1, 3.0], ["+Inf", 3.0]]
    assert ttft["mean_ms"] == pytest.approx(40.0)
    assert ttft["p50_ms"] == pytest.approx(37.5)  # rank 1.5: halfway through (25, 50] ms
    assert ttft["source_url"] == "http://127.0.0.1:18100/metrics"
    assert ttft["scenario"] == (None if step_wide else "concurrent-1")

    rows = {r["kind"]: r for r in query(migrated, "SELECT * FROM v_server_vs_client WHERE run_id = :r", r=RUN_ID)}
    assert set(rows) == {"ttft", "itl"}  # no server tpot/e2e histograms in this document
    t = rows["ttft"]
    assert t["client_mean_ms"] == pytest.approx(summary["ttft_ms"]["mean"]) == pytest.approx(200.0)
    assert t["client_p50_ms"] == pytest.approx(summary["ttft_ms"]["p50"])
    assert t["server_mean_ms"] == pytest.approx(40.0)
    assert t["mean_gap_ms"] == pytest.approx(160.0)
    assert (t["server_count"], t["client_completed"], t["scenarios"]) == (3, 3, 1)
    assert t["server_window_whole_step"] is step_wide
    assert rows["itl"]["client_p50_ms"] == pytest.approx(20.0)
    assert rows["itl"]["server_p50_ms"] == pytest.approx(17.5)  # rank 4.5 of 9 in (10, 25] ms


def test_reloading_replaces_and_older_documents_load(migrated):
    trid = target_run(migrated)
    doc = ns_doc(ROWS)[0]
    loader.load_document(migrated, trid, doc)
    loader.load_document(migrated, trid, copy.deepcopy(doc))
    count = "SELECT (SELECT count(*) FROM resource_usage) AS r, (SELECT count(*) FROM server_histograms) AS h"
    assert query(migrated, count) == [{"r": 5, "h": 2}]
    loader.load_document(migrated, trid, ns_doc(ROWS[:2])[0])  # a retry that saw less
    assert query(migrated, count) == [{"r": 2, "h": 2}]
    loader.load_document(migrated, trid, ns_doc(None, with_histograms=False)[0])  # no telemetry at all
    assert query(migrated, count) == [{"r": 0, "h": 0}]
    assert query(migrated, "SELECT count(*) AS n FROM ns_summaries") == [{"n": 1}]


def sweep_doc() -> dict:
    """A two-level sweep whose second level is the headline; each level with its own telemetry."""
    doc = ns_doc(ROWS)[0]
    first = doc["data"]["scenarios"][0]
    first.update(scenario="sweep-concurrent-1", headline=False)
    second = copy.deepcopy(first)
    second.update(scenario="sweep-concurrent-2", headline=True, started_at_epoch=1795860010.0)
    second["resources"] = resources_section(
        [usage_row("psutil", "vllm", "cpu_percent", "percent", stats(180.0, 190.0))], start=1795860010.0)
    hist = second["server_histograms"]["metrics"]["ttft"]
    hist.update(count=3.0, sum=0.6, mean_ms=200.0)
    doc["data"]["scenarios"].append(second)
    return doc


def test_a_sweep_keeps_each_levels_window_and_the_views_read_the_headline(migrated):
    trid = target_run(migrated)
    loader.load_document(migrated, trid, sweep_doc())
    per_scenario = query(migrated, "SELECT scenario, count(*) AS n, min(window_start) AS ws FROM resource_usage "
                                   "GROUP BY scenario ORDER BY scenario")
    assert [(r["scenario"], r["n"]) for r in per_scenario] == [("sweep-concurrent-1", 5), ("sweep-concurrent-2", 1)]
    assert (per_scenario[1]["ws"] - per_scenario[0]["ws"]).total_seconds() == 10.0
    hists = query(migrated, "SELECT scenario, kind, mean_ms FROM server_histograms ORDER BY scenario, kind")
    assert [(h["scenario"], h["kind"]) for h in hists] == [("sweep-concurrent-1", "itl"), ("sweep-concurrent-1", "ttft"),
                                                           ("sweep-concurrent-2", "itl"), ("sweep-concurrent-2", "ttft")]
    view = query(migrated, "SELECT scenario, component, metric, mean_value FROM v_resource_usage")
    assert view == [{"scenario": "sweep-concurrent-2", "component": "vllm", "metric": "cpu_percent",
                     "mean_value": 185.0}]
    vs = {r["kind"]: r for r in query(migrated, "SELECT * FROM v_server_vs_client")}
    assert set(vs) == {"ttft", "itl"} and vs["ttft"]["scenario"] == "sweep-concurrent-2"
    assert vs["ttft"]["server_mean_ms"] == pytest.approx(200.0) and vs["ttft"]["scenarios"] == 2
    assert not vs["ttft"]["server_window_whole_step"]


def test_ingest_records_the_corpus(migrated):
    trid = target_run(migrated)
    corpus = {"version": "1", "sha256": "ab" * 32, "documents": 58, "bytes": 598851}
    loader.load_document(migrated, trid, ingest_doc(corpus))
    cols = "SELECT corpus_version, corpus_sha256, corpus_documents, corpus_bytes FROM ingest_results"
    assert query(migrated, cols) == [{"corpus_version": "1", "corpus_sha256": "ab" * 32, "corpus_documents": 58,
                                      "corpus_bytes": 598851}]
    loader.load_document(migrated, trid, ingest_doc(None))  # a document written before the corpus was recorded
    assert query(migrated, cols) == [{"corpus_version": None, "corpus_sha256": None, "corpus_documents": None,
                                      "corpus_bytes": None}]
