"""End to end: the rag_benchmark DAG runs through Airflow with two targets, and one failing never
stops the other.

- `local` runs with the real services (vLLM on CPU, Ray Serve, Haystack, embedded Qdrant, iperf3),
  its North-South load from two load generator processes started inside the Airflow task, and its
  results land in PostgreSQL;
- `lab-unreachable` is a Kubernetes target whose Airflow connection does not exist, so its
  preflight fails for real, at once and without retries, and nothing after it runs.

The run uses its own targets config (RAGBENCH_CONFIG_DIR: these two targets, and the shipped price
of the local machine), its own state folder, database and Airflow metadata database.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
import yaml

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = 8
BAD = "lab-unreachable"
BAD_GROUP = "lab_unreachable"
BAD_CONNECTION = "ragbench_lab_unreachable"
MISSING_CONNECTION = f"cannot use the Airflow connection '{BAD_CONNECTION}'"
PREFLIGHT_FAILED = f"preflight failed: preflight of {BAD} found 1 error(s): connection: {MISSING_CONNECTION}"
DATA_TABLES = ("runs", "target_runs", "ns_requests", "ns_summaries", "ew_results", "ingest_results")


def write_config(folder: Path) -> None:
    folder.mkdir()
    (folder / "targets.yaml").write_text(textwrap.dedent(f"""\
        default_targets: [local]
        targets:
          - {{name: local, kind: local, provider: local, region: this-machine}}
          - name: {BAD}
            kind: kubernetes
            provider: generic
            connection_id: {BAD_CONNECTION}
            overlay: k8s/overlays/generic
        """))
    shipped = yaml.safe_load((ROOT / "config" / "costs.yaml").read_text())
    (folder / "costs.yaml").write_text(yaml.safe_dump({"local": shipped["local"]}, sort_keys=False))


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, pg_url_factory):
    base = tmp_path_factory.mktemp("e2e")
    state, config = base / "state", base / "config"
    write_config(config)
    url = pg_url_factory()
    airflow_home = state / "airflow"
    env = {**os.environ, "RAGBENCH_DATABASE_URL": url, "RAGBENCH_STATE_DIR": str(state),
           "RAGBENCH_CONFIG_DIR": str(config), "AIRFLOW_HOME": str(airflow_home),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}"}
    env.pop(f"AIRFLOW_CONN_{BAD_CONNECTION.upper()}", None)
    env.setdefault("RAGBENCH_WORKLOAD_PYTHON", str(ROOT / ".state" / "venv-workload" / "bin" / "python"))
    argv = [str(Path(sys.executable).parent / "ragbench"), "run", "--targets", "local", BAD,
            "--requests", str(REQUESTS), "--concurrency", "2", "--warmup-requests", "1", "--max-tokens", "32",
            "--workers", "2",
            "--conf", '{"ew_duration_s": 1, "ew_samples": 2}']
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    yield proc, engine, state, config
    engine.dispose()


def _tail(proc) -> str:
    return (proc.stdout[-3000:] + "\n---\n" + proc.stderr[-3000:])


def task_instances(state: Path) -> dict[str, dict]:
    """The Airflow metadata of the run's tasks: state, tries, start and end."""
    with sqlite3.connect(state / "airflow" / "airflow.db") as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT task_id, state, try_number, start_date, end_date FROM task_instance "
                            "WHERE dag_id = 'rag_benchmark'").fetchall()
    return {r["task_id"]: dict(r) for r in rows}


def seconds(ti: dict) -> float:
    return (datetime.fromisoformat(ti["end_date"]) - datetime.fromisoformat(ti["start_date"])).total_seconds()


def test_the_run_fails_and_its_scorecard_shows_both_targets(pipeline_run):
    proc, _, _, _ = pipeline_run
    assert proc.returncode != 0, _tail(proc)
    assert "=== scorecard ===" in proc.stdout, _tail(proc)
    table = proc.stdout.split("=== scorecard ===")[1]
    local_line = next(line for line in table.splitlines() if line.startswith("local "))
    assert "succeeded" in local_line and f"{REQUESTS}/{REQUESTS}" in local_line
    # the failed target is named, with its reason
    failed_line = next(line for line in table.splitlines() if line.startswith(f"{BAD} FAILED"))
    assert "deploy" in failed_line and PREFLIGHT_FAILED in failed_line
    assert f"failed: {BAD}" in proc.stderr


def test_the_terminal_shows_task_progress_and_airflow_logs_go_to_a_file(pipeline_run):
    proc, _, state, _ = pipeline_run
    assert "local.run_north_south: running" in proc.stdout and "local.run_north_south: success" in proc.stdout
    assert f"{BAD_GROUP}.preflight: failed" in proc.stdout  # the group stops at its preflight
    assert f"{BAD_GROUP}.deploy_workload: upstream_failed" in proc.stdout
    assert "[DAG TEST]" not in proc.stdout + proc.stderr  # Airflow's own lines are in the file
    log = Path(proc.stdout.split("Airflow's log: ")[1].splitlines()[0])
    assert log.parent == state / "logs" and "[DAG TEST]" in log.read_text()


def test_the_local_load_ran_in_two_worker_processes_merged_into_one_scenario(pipeline_run):
    _, _, state, _ = pipeline_run
    (path,) = (state / "results").glob("*/local/north_south.json")
    doc = json.loads(path.read_text())
    assert doc["ok"], doc["error"]
    (scenario,) = doc["data"]["scenarios"]
    summary = scenario["summary"]
    assert summary["requests"] == REQUESTS and summary["completed"] == REQUESTS and summary["valid"]
    workers = summary["workers"]
    assert workers["count"] == 2 and workers["failed"] is None
    assert sorted(w["shard_index"] for w in workers["per_worker"]) == [0, 1]
    assert all(w["finished"] and w["shard_count"] == 2 and w["requests"] > 0 for w in workers["per_worker"])
    assert sum(w["requests"] for w in workers["per_worker"]) == REQUESTS
    measured = [r for r in scenario["records"] if not r["warmup"]]
    assert len(measured) == len({r["index"] for r in measured}) == REQUESTS  # one schedule, each request once


def test_the_failed_target_is_recorded_with_its_reason(pipeline_run):
    _, engine, _, _ = pipeline_run
    with engine.connect() as conn:
        rows = {r["target"]: dict(r) for r in conn.execute(sa.text(
            "SELECT target, status, failed_steps, error FROM target_runs")).mappings()}
    assert rows["local"]["status"] == "succeeded" and rows["local"]["error"] is None
    bad = rows[BAD]
    assert bad["status"] == "failed"
    assert bad["failed_steps"] == ["deploy", "ingest", "north_south", "east_west"]
    assert bad["error"].startswith(PREFLIGHT_FAILED)
    assert "- add the cluster's kubeconfig as that Kubernetes connection" in bad["error"]
    assert bad["error"].endswith("steps without a result: deploy, ingest, north_south, east_west")


def test_the_bad_target_failed_fast_and_the_rest_ran(pipeline_run):
    _, _, state, _ = pipeline_run
    tis = task_instances(state)
    preflight = tis[f"{BAD_GROUP}.preflight"]
    assert preflight["state"] == "failed" and preflight["try_number"] == 1  # no retry: no attempt could succeed
    assert seconds(preflight) < 30
    assert tis[f"{BAD_GROUP}.deploy_workload"]["state"] == "upstream_failed"  # nothing touched the cluster
    assert tis[f"{BAD_GROUP}.ingest_corpus"]["state"] == "upstream_failed"
    assert tis[f"{BAD_GROUP}.teardown_workload"]["state"] == "skipped"  # nothing was applied
    assert tis[f"{BAD_GROUP}.load_results"]["state"] == "failed"
    assert tis[f"{BAD_GROUP}.load_results"]["try_number"] == 1  # a verdict, not retried
    for task in ("deploy_workload", "ingest_corpus", "run_north_south", "run_east_west", "teardown_workload",
                 "load_results"):
        assert tis[f"local.{task}"]["state"] == "success", task
    assert tis["check_regressions"]["state"] == "success"
    assert tis["report_scorecard"]["state"] == "failed"  # the run fails so alerting fires


def test_results_asset_updated_for_the_loaded_target_only(pipeline_run):
    _, _, state, _ = pipeline_run
    with sqlite3.connect(state / "airflow" / "airflow.db") as conn:
        uris = [r[0] for r in conn.execute(
            "SELECT a.uri FROM asset_event e JOIN asset a ON a.id = e.asset_id")]
    assert uris == ["ragbench://results/local"]


def test_north_south_results_landed(pipeline_run):
    _, engine, _, _ = pipeline_run
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT r.* FROM ns_requests r JOIN target_runs t USING (target_run_id) "
            "WHERE t.target = 'local' AND NOT r.warmup")).mappings().all()
        summary = conn.execute(sa.text("SELECT * FROM ns_summaries")).mappings().one()  # local's only
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
    _, engine, _, _ = pipeline_run
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


def test_scorecard_rows_and_no_process_left(pipeline_run):
    _, engine, state, _ = pipeline_run
    with engine.connect() as conn:
        rows = {r["target"]: dict(r) for r in conn.execute(sa.text("SELECT * FROM v_scorecard")).mappings()}
    assert set(rows) == {"local", BAD}
    row = rows["local"]
    assert row["status"] == "succeeded"
    assert row["ttft_p50_ms"] > 0 and row["east_west_gbps"] > 0 and row["ingested_chunks"] > 0
    assert rows[BAD]["status"] == "failed" and rows[BAD]["ttft_p50_ms"] is None
    # local's teardown ran: none of the processes its deploy started is left
    deploy = next((state / "results").rglob("deploy.json"))
    pids = json.loads(deploy.read_text())["data"]["pids"]
    for name, pid in pids.items():
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, name


def test_no_regression_rows_without_earlier_runs(pipeline_run):
    _, engine, _, _ = pipeline_run
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM v_regressions")).scalar() == 0


def test_reloading_adds_no_rows(pipeline_run, monkeypatch):
    """Re-running both load tasks (as a retry would) leaves every table as it was."""
    _, engine, state, config = pipeline_run
    from ragbench import pipeline

    def counts():
        with engine.connect() as conn:
            return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in DATA_TABLES}

    before = counts()
    with engine.connect() as conn:
        run_id, started, params = conn.execute(sa.text("SELECT run_id, started_at, params FROM runs")).one()
        bad_error = conn.execute(sa.text("SELECT error FROM target_runs WHERE target = :t"), {"t": BAD}).scalar()
    results = next((state / "results").iterdir()) / "local"
    refs = {p.stem: {"path": str(p)} for p in results.glob("*.json")}
    monkeypatch.setenv("RAGBENCH_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("RAGBENCH_CONFIG_DIR", str(config))
    pipeline.load_target_results("local", run_id, params, started, refs)
    reason = bad_error.split("preflight failed: ", 1)[1].split("; steps without a result")[0]
    pipeline.load_target_results(BAD, run_id, params, started, {}, {"preflight": reason})
    assert counts() == before
    with engine.connect() as conn:
        statuses = dict(conn.execute(sa.text("SELECT target, status FROM target_runs")).all())
        assert conn.execute(sa.text("SELECT error FROM target_runs WHERE target = :t"), {"t": BAD}).scalar() \
            == bad_error
    assert statuses == {"local": "succeeded", BAD: "failed"}
