"""How the DAGs operate: the regression check's place, the results assets, the cost maintenance DAG,
a cluster target without its connection failing at once with its reason recorded, and a DAG parse
that never imports the Kubernetes client."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ragbench.targets import load_targets

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
GROUPS = {t.name: t.name.replace("-", "_") for t in load_targets().targets}


@pytest.fixture(scope="module")
def bag():
    from tests.dags.conftest import build_dagbag

    dagbag = build_dagbag()
    assert dagbag.import_errors == {}
    return dagbag


def test_check_regressions_runs_after_every_load_and_before_the_report(checked_in_dag):
    check = checked_in_dag.get_task("check_regressions")
    assert check.upstream_task_ids == {f"{g}.load_results" for g in GROUPS.values()}
    assert check.downstream_task_ids == {"report_scorecard"}
    assert checked_in_dag.get_task("report_scorecard").upstream_task_ids == {"check_regressions"}
    assert check.trigger_rule == "all_done"  # runs whatever targets failed
    assert check.retries >= 2 and check.execution_timeout is not None


@pytest.mark.parametrize("target", sorted(GROUPS))
def test_each_load_task_publishes_its_targets_results_asset(checked_in_dag, target):
    from airflow.sdk import Asset

    load = checked_in_dag.get_task(f"{GROUPS[target]}.load_results")
    assert load.outlets == [Asset(f"ragbench://results/{target}")]
    others = [t for t in checked_in_dag.tasks if t.task_id != load.task_id and t.outlets
              and Asset(f"ragbench://results/{target}") in t.outlets]
    assert others == []  # only the load task says "results loaded"


def test_a_new_target_gets_its_own_asset(tmp_path, monkeypatch, build_dagbag):
    from airflow.sdk import Asset

    (tmp_path / "targets.yaml").write_text(textwrap.dedent("""\
        targets:
          - {name: local, kind: local, provider: local}
          - {name: lab-k3s, kind: kubernetes, provider: generic, connection_id: k8s_lab, overlay: k8s/overlays/generic}
        """))
    monkeypatch.setenv("RAGBENCH_CONFIG_DIR", str(tmp_path))
    dag = build_dagbag().dags["rag_benchmark"]
    assert dag.get_task("lab_k3s.load_results").outlets == [Asset("ragbench://results/lab-k3s")]


def test_cost_inputs_dag(bag):
    from airflow.sdk import Asset

    dag = bag.dags["cost_inputs"]
    assert dag.schedule == "*/15 * * * *"
    assert dag.max_active_runs == 1 and not dag.catchup
    (load,) = dag.tasks
    assert load.task_id == "load_cost_inputs"
    assert load.outlets == [Asset("ragbench://cost-inputs")]
    assert load.retries >= 1 and load.execution_timeout.total_seconds() <= 600


def test_parsing_the_dags_imports_no_kubernetes_client(tmp_path):
    """With the shipped config (three cluster targets), in a fresh interpreter as the DAG processor."""
    code = textwrap.dedent(f"""
        import json, sys
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder={str(ROOT / 'dags')!r})
        heavy = sorted(m for m in sys.modules if m == "kubernetes" or m.startswith(("kubernetes.",
                       "airflow.providers.cncf.kubernetes.operators", "ragbench.pod_spec", "ragbench.pipeline",
                       "ragbench.db")))
        print(json.dumps({{"errors": {{str(k): v for k, v in bag.import_errors.items()}},
                          "dags": sorted(bag.dag_ids), "heavy": heavy}}))
        """)
    env = {"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(ROOT / "plugins")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["errors"] == {}
    assert result["dags"] == ["cost_inputs", "rag_benchmark"]
    assert result["heavy"] == []


# --- a cluster target without its connection ----------------------------------------------------------


class RecordingTI:
    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key, value, **_):
        self.pushed[key] = value

    def xcom_pull(self, task_ids=None, key="return_value", **_):
        return None


def test_a_missing_connection_fails_the_step_at_once_with_its_reason(checked_in_dag, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from ragbench.step_errors import ERROR_KEY

    monkeypatch.delenv("AIRFLOW_CONN_RAGBENCH_AWS_EKS", raising=False)
    op = checked_in_dag.get_task("aws_eks.deploy_workload").prepare_for_execution()
    ti = RecordingTI()
    context = {"ti": ti, "run_id": "manual__1", "params": {**checked_in_dag.params.dump(), "targets": ["aws-eks"]},
               "dag": checked_in_dag, "task": op}
    op.render_template_fields(context)
    with pytest.raises(AirflowFailException) as info:  # fails without retries: no attempt can succeed
        op.execute(context)
    message = ("aws-eks: the Airflow connection 'ragbench_aws_eks' does not exist (add the cluster's kubeconfig "
               "as that Kubernetes connection)")
    assert str(info.value) == message
    assert ti.pushed == {ERROR_KEY: message}  # the load task stores it in target_runs.error
    assert op._pod_operator is None  # nothing was built, nothing talked to a cluster


def test_no_source_range_fails_the_deploy_with_its_reason(checked_in_dag, monkeypatch):
    """Closed by default: when the orchestrator cannot learn its own address, the deploy step fails
    before any pod exists, and the reason is stored like any step error."""
    from ragbench.errors import RagbenchError
    from ragbench.step_errors import ERROR_KEY

    monkeypatch.setenv("AIRFLOW_CONN_RAGBENCH_AWS_EKS", '{"conn_type": "kubernetes", "extra": {}}')
    monkeypatch.delenv("RAGBENCH_ORCHESTRATOR_CIDR", raising=False)
    monkeypatch.setenv("RAGBENCH_PUBLIC_ADDRESS_URL", "http://127.0.0.1:9/")  # nothing answers
    op = checked_in_dag.get_task("aws_eks.deploy_workload").prepare_for_execution()
    ti = RecordingTI()
    context = {"ti": ti, "run_id": "manual__1", "params": {**checked_in_dag.params.dump(), "targets": ["aws-eks"]},
               "dag": checked_in_dag, "task": op}
    op.render_template_fields(context)  # rendering itself does not fail
    with pytest.raises(RagbenchError) as info:
        op.execute(context)
    assert str(info.value).startswith("aws-eks: cannot find the orchestrator's public address at http://127.0.0.1:9/")
    assert ti.pushed == {ERROR_KEY: str(info.value)}
    assert op._pod_operator is None


def test_step_errors_are_recorded_but_skips_are_not():
    from airflow.sdk.exceptions import AirflowSkipException

    from ragbench.step_errors import ERROR_KEY, recorded, reasons

    ti = RecordingTI()
    with pytest.raises(AirflowSkipException), recorded(ti):
        raise AirflowSkipException("not selected")
    assert ti.pushed == {}
    with pytest.raises(RuntimeError), recorded(ti):
        raise RuntimeError("vLLM did not start:\n  port 18100 in use")
    assert ti.pushed == {ERROR_KEY: "vLLM did not start: port 18100 in use"}

    class PullTI:
        def xcom_pull(self, task_ids=None, key="return_value", **_):
            return {"g.deploy_workload": "no connection"}.get(task_ids) if key == ERROR_KEY else "doc"

    assert reasons(PullTI(), {"deploy": "g.deploy_workload", "ingest": "g.ingest_corpus"}) == {
        "deploy": "no connection"}
