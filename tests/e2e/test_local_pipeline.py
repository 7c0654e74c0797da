"""End to end: the rag_benchmark DAG runs through Airflow on the local target with the real services
(vLLM on CPU, Ray Serve, Haystack, embedded Qdrant, iperf3), and its results land in PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 8


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, pg_url_factory):
    state = tmp_path_factory.mktemp("e2e") / "state"
    url = pg_url_factory()
    env = {**os.environ, "RAGBENCH_DATABASE_URL": url, "RAGBENCH_STATE_DIR": str(state)}
    env.setdefault("RAGBENCH_WORKLOAD_PYTHON", str(ROOT / ".state" / "venv-workload" / "bin" / "python"))
    argv = [str(Path(sys.executable).parent / "ragbench"), "run", "--requests", str(REQUESTS),
            "--concurrency", "2", "--warmup", "1", "--max-tokens", "32", "--ew-duration", "1",
            "--ew-samples", "2"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    yield proc, engine, state
    engine.dispose()


def _tail(proc) -> str:
    return (proc.stdout[-3000:] + "\n---\n" + proc.stderr[-3000:])


def test_run_succeeds_and_prints_the_scorecard(pipeline_run):
    proc, _, _ = pipeline_run
    assert proc.returncode == 0, _tail(proc)
    assert "=== scorecard ===" in proc.stdout
    table = proc.stdout.split("=== scorecard ===")[1]
    assert "local" in table and "succeeded" in table


def test_north_south_results_landed(pipeline_run):
    _, engine, _ = pipeline_run
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT r.* FROM ns_requests r JOIN target_runs t USING (target_run_id) "
            "WHERE t.target = 'local' AND NOT r.warmup")).mappings().all()
        summary = conn.execute(sa.text("SELECT * FROM ns_summaries")).mappings().one()
    assert len(rows) == REQUESTS
    for r in rows:
        assert r["error_code"] is None, r["error_message"]
        assert r["ttft_ms"] > 0
        assert r["output_tokens"] > 0
        assert r["output_tokens_source"] == "server_usage"
        assert r["request_id"] and r["replica_id"]
    assert summary["error_rate"] == 0
    assert summary["completed"] == REQUESTS
    assert summary["ttft_p50_ms"] > 0 and summary["output_tokens_per_s"] > 0
    # The summary agrees with the raw records it came from.
    assert summary["output_tokens"] == sum(r["output_tokens"] for r in rows)


def test_east_west_and_ingestion_landed(pipeline_run):
    _, engine, _ = pipeline_run
    with engine.connect() as conn:
        ew = conn.execute(sa.text("SELECT * FROM ew_results WHERE probe = 'tcp'")).mappings().one()
        ingest = conn.execute(sa.text("SELECT * FROM ingest_results")).mappings().one()
    assert ew["throughput_gbps"] > 0 and ew["samples"] == 2
    # two network namespaces joined by a veth pair when run as root, loopback otherwise
    assert ew["path"] == ("netns-veth" if os.geteuid() == 0 else "loopback")
    corpus = [p for p in (ROOT / "workload" / "corpus" / "docs").rglob("*") if p.is_file()]
    assert ingest["files"] == len(corpus)
    # A fresh store holds exactly the chunks this run wrote: nothing lost, nothing duplicated.
    assert ingest["chunks"] >= len(corpus)
    assert ingest["store_documents"] == ingest["chunks"]


def test_scorecard_row_and_no_process_left(pipeline_run):
    _, engine, state = pipeline_run
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM v_scorecard")).mappings().one()
    assert row["status"] == "succeeded" and row["target"] == "local"
    assert row["ttft_p50_ms"] > 0 and row["east_west_gbps"] > 0 and row["ingested_chunks"] > 0
    deploy = next((state / "results").rglob("deploy.json"))
    pids = json.loads(deploy.read_text())["data"]["pids"]
    for name, pid in pids.items():
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, name


def test_reloading_a_target_adds_no_rows(pipeline_run):
    """Re-running the load task (as a retry would) leaves every table as it was."""
    _, engine, state = pipeline_run
    from ragbench import pipeline

    tables = ("runs", "target_runs", "ns_requests", "ns_summaries", "ew_results", "ingest_results")

    def counts():
        with engine.connect() as conn:
            return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in tables}

    before = counts()
    with engine.connect() as conn:
        run_id, started = conn.execute(sa.text("SELECT run_id, started_at FROM runs")).one()
        params = conn.execute(sa.text("SELECT params FROM runs")).scalar()
    results = next((state / "results").iterdir()) / "local"
    refs = {p.stem: {"path": str(p)} for p in results.glob("*.json")}
    os.environ["RAGBENCH_DATABASE_URL"] = str(engine.url.render_as_string(hide_password=False))
    try:
        pipeline.load_target_results("local", run_id, params, started, refs)
    finally:
        os.environ.pop("RAGBENCH_DATABASE_URL")
    assert counts() == before
