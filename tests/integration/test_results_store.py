"""Results that travel: with a results store, a step's document goes to the store and XCom carries a
reference; the load task reads it back through Airflow's ObjectStoragePath and loads every raw
record. A file:// URL (a local folder) takes the same code path as s3:// or gs://."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from ragbench import cluster, results_store
from ragbench.errors import RagbenchError
from ragbench.steps import STEP_BY_NAME, STEPS
from ragbench.targets import Target
from workload.bench.metrics import SLO, summarize
from workload.bench.records import RequestRecord
from workload.results import REF_SCHEMA, result_document, write_result

pytestmark = pytest.mark.integration

RUN_ID = "scheduled__2026-12-02T02:00:00+00:00"
RECORDS = 4000  # each with 64 token timestamps: a document of several MB


def north_south_document(n: int = RECORDS) -> dict:
    """A North-South document as the workload CLI writes it, with ``n`` raw request records."""
    t0 = 1_796_000_000.0
    records = []
    for i in range(n):
        start = t0 + i * 0.05
        r = RequestRecord(index=i, scenario="concurrent-4", prompt_id=f"q{i % 50}", prompt_chars=180,
                          t_sent=start, t_first_byte=start + 0.08, t_first_token=start + 0.1,
                          token_times=[start + 0.1 + 0.02 * k for k in range(64)], t_end=start + 1.4,
                          http_status=200, request_id=f"req-{i}", server_request_id=f"srv-{i}",
                          replica_id="replica-1", model_id="tiny", k=4, output_tokens=64,
                          output_tokens_source="server_usage")
        records.append(r)
    summary = summarize(records, wall_time_s=n * 0.05 + 1.4, slo=SLO(ttft_ms=2000, tpot_ms=200)).model_dump(mode="json")
    strategy = {"type": "concurrent", "concurrency": 4}
    data = {"endpoint": "http://203.0.113.10", "config": {"strategy": strategy},
            "scenarios": [{"scenario": "concurrent-4", "started_at_epoch": t0, "summary": summary,
                           "strategy": strategy, "headline": True, "records": [r.to_dict() for r in records]}],
            "vantage": "cluster"}
    return result_document("north-south", data, started_at="2026-12-02T02:10:00.000+00:00")


@pytest.fixture
def store_target(tmp_path, lab_target):
    """A cluster target with a file:// results store, in a config the load task reads."""
    store = f"file://{tmp_path / 'store'}"
    return lab_target(f'results_store: "{store}/ragbench"')


def test_a_north_south_document_with_many_records_goes_by_reference(store_target, tmp_path, database_url,
                                                                    monkeypatch):
    from ragbench import db, loader, pipeline

    doc = north_south_document()
    # the step pod: the workload CLI's output handling, with the prefix its arguments carry
    prefix = results_store.run_prefix(store_target, RUN_ID)
    assert prefix == f"{store_target.results_store}/scheduled__2026-12-02T02_00_00_00_00/lab"
    xcom = tmp_path / "return.json"  # what KubernetesPodOperator's sidecar reads into XCom
    write_result(doc, xcom, prefix)
    ref = json.loads(xcom.read_text())
    stored = tmp_path / "store" / "ragbench" / "scheduled__2026-12-02T02_00_00_00_00" / "lab" / "north-south.json"
    assert ref["schema"] == REF_SCHEMA and ref["url"] == f"file://{stored}"
    assert (ref["step"], ref["ok"], ref["error"]) == ("north-south", True, None)
    assert ref["bytes"] == stored.stat().st_size > 3_000_000  # the document: megabytes ...
    assert xcom.stat().st_size < 400  # ... XCom: a few hundred bytes

    # the load task: reads it back through ObjectStoragePath and loads every raw record
    monkeypatch.setenv("RAGBENCH_DATABASE_URL", database_url)
    engine = db.connect()
    db.migrate(engine)
    started = datetime(2026, 12, 2, 2, tzinfo=UTC)
    loader.record_run(engine, RUN_ID, "rag_benchmark", started, "scheduled", {"targets": ["lab"]}, None)
    deploy = result_document("deploy-cluster", {"endpoint": "http://203.0.113.10"}, started_at="2026-12-02T02:00:00+00:00")
    refs = {s.name: None for s in STEPS} | {
        "deploy": results_store.publish(deploy, store_target, RUN_ID), "north_south": ref,
        "ingest": result_document("ingest", {}, started_at="2026-12-02T02:00:00+00:00", ok=False, error="not run in this test")}
    assert results_store.is_reference(refs["deploy"])
    result = pipeline.load_target_results("lab", RUN_ID, {"targets": ["lab"]}, started, refs)
    assert "north_south" not in result["failed_steps"]
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM ns_requests WHERE target_run_id = :t"),
                             {"t": result["target_run_id"]}).scalar()
        endpoint = conn.execute(sa.text("SELECT fingerprint->'deploy'->>'endpoint' FROM target_runs "
                                        "WHERE target_run_id = :t"), {"t": result["target_run_id"]}).scalar()
    assert count == RECORDS
    assert endpoint == "http://203.0.113.10"  # the deploy document came through the store too


def test_the_orchestrator_side_publishes_and_reads_back(store_target):
    doc = north_south_document(50)
    ref = results_store.publish(doc, store_target, RUN_ID)
    assert results_store.is_reference(ref) and ref["url"].endswith("/lab/north-south.json")
    assert results_store.resolve(ref) == json.loads(json.dumps(doc))
    # the North-South tasks read the deploy step's endpoint through a reference as well
    deploy = results_store.publish(result_document("deploy-cluster", {"endpoint": "http://198.51.100.7"},
                                                   started_at="2026-12-02T02:00:00+00:00"), store_target, RUN_ID)
    assert cluster.deploy_endpoint("lab", deploy) == "http://198.51.100.7"
    args = cluster.pod_arguments(STEP_BY_NAME["north_south"], store_target, {}, deploy, RUN_ID)
    assert args[:5] == ["north-south", "--out", cluster.XCOM_RETURN, "--results-store",
                        results_store.run_prefix(store_target, RUN_ID)]
    assert args[args.index("--endpoint") + 1] == "http://198.51.100.7"


def test_a_document_changed_in_the_store_is_refused(store_target):
    ref = results_store.publish(result_document("east-west", {"x": 1}, started_at="2026-12-02T02:00:00+00:00"), store_target, RUN_ID)
    path = Path(ref["url"].removeprefix("file://"))
    path.write_text(path.read_text().replace('"x":1', '"x":2'))
    with pytest.raises(RagbenchError, match=r"^the east-west document at file://.* is not the one the step wrote"):
        results_store.resolve(ref)
    path.unlink()
    with pytest.raises(RagbenchError, match=r"^cannot read the east-west document at file://"):
        results_store.resolve(ref)


def test_without_a_store_the_documents_travel_as_before():
    target = Target(name="lab", kind="kubernetes", provider="generic", connection_id="c",
                    overlay="k8s/overlays/generic")
    doc = result_document("north-south", {"scenarios": []}, started_at="2026-12-02T02:00:00+00:00")
    assert results_store.publish(doc, target, RUN_ID) is doc
    assert results_store.resolve(doc) is doc
    assert "--results-store" not in cluster.pod_arguments(STEP_BY_NAME["ingest"], target, {}, None, RUN_ID)


def test_a_results_store_must_be_a_url_on_a_cluster_target():
    with pytest.raises(ValueError, match="results_store"):
        Target(name="lab", kind="kubernetes", provider="generic", connection_id="c", overlay="k8s/overlays/generic",
               results_store="/just/a/folder")
    with pytest.raises(ValueError, match="results_store applies to kubernetes targets; 'local' is local"):
        Target(name="local", kind="local", provider="local", results_store="s3://bucket/ragbench")
