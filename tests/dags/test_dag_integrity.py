"""Every DAG file imports cleanly, and rag_benchmark has the shape, params and limits users rely on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow")
    os.environ.setdefault("AIRFLOW_HOME", str(home))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_every_dag_file_imports(dagbag):
    assert dagbag.import_errors == {}
    assert "rag_benchmark" in dagbag.dags


# Tasks that never retry, and why: their failure is a verdict that a retry cannot change.
NO_RETRY = {("rag_benchmark", "report_scorecard"): "fails the run when a target failed"}
# Tasks whose retry is known to be safe and that must retry at least twice (idempotent writes).
RETRY_TWICE = {("rag_benchmark", "check_regressions"), ("cost_inputs", "load_cost_inputs")}


def test_tags_retries_and_timeouts_on_every_task(dagbag):
    assert set(dagbag.dags) == {"rag_benchmark", "cost_inputs"}
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        for t in dag.tasks:
            assert t.execution_timeout is not None, f"{dag_id}.{t.task_id} has no timeout"
            assert t.execution_timeout.total_seconds() <= 3 * 3600, f"{dag_id}.{t.task_id}: timeout too long"
            if (dag_id, t.task_id) in NO_RETRY:
                assert t.retries == 0, f"{dag_id}.{t.task_id} retries, but {NO_RETRY[dag_id, t.task_id]}"
                continue
            assert t.retries >= 1, f"{dag_id}.{t.task_id} has no retries"
            if (dag_id, t.task_id) in RETRY_TWICE or t.task_id.endswith(".load_results"):
                assert t.retries >= 2, f"{dag_id}.{t.task_id} should retry twice"


def test_local_target_steps_in_order(dagbag):
    dag = dagbag.dags["rag_benchmark"]
    order = [t.task_id for t in dag.topological_sort()]
    expected = ["start_run", "local.deploy_workload", "local.ingest_corpus", "local.run_north_south",
                "local.run_east_west", "local.teardown_workload", "local.load_results", "check_regressions",
                "report_scorecard"]
    assert [t for t in order if t in expected] == expected
    assert dag.get_task("local.teardown_workload").trigger_rule == "all_done"
    assert dag.get_task("local.load_results").trigger_rule == "all_done"
    assert dag.get_task("check_regressions").trigger_rule == "all_done"
    assert dag.get_task("report_scorecard").trigger_rule == "all_done"
    # teardown also runs right after a failed deploy
    assert "local.deploy_workload" in dag.get_task("local.teardown_workload").upstream_task_ids


def test_schedule_and_params(dagbag):
    dag = dagbag.dags["rag_benchmark"]
    assert dag.schedule == "0 2 * * *" or str(dag.timetable.summary) == "0 2 * * *"
    params = dag.params
    for name in ("targets", "load_mode", "concurrency", "requests", "warmup_requests", "max_tokens",
                 "slo_ttft_ms", "slo_tpot_ms", "ew_duration_s", "ew_streams", "keep_deployment"):
        assert name in params, name
    assert params["targets"] == ["local"]


@pytest.mark.parametrize("name,value", [("concurrency", 0), ("requests", -1), ("targets", ["mars"]),
                                        ("load_mode", "random"), ("max_tokens", "many")])
def test_bad_param_values_are_refused(dagbag, name, value):
    from airflow.sdk.exceptions import ParamValidationError

    param = dagbag.dags["rag_benchmark"].params.get_param(name)
    with pytest.raises(ParamValidationError):
        param.resolve(value)
    param.resolve(param.value)  # the default itself is valid


def test_dag_file_stays_thin():
    """No heavy or networked imports at parse time."""
    text = (DAGS / "rag_benchmark.py").read_text()
    header = text.split("@dag(")[0]
    for heavy in ("import sqlalchemy", "import httpx", "import pandas", "from ragbench import db",
                  "ragbench.pipeline import"):
        assert heavy not in header.split("def _target_group")[0], heavy
