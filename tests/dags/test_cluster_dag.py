"""The DAG's shape for cluster targets: one task group per kubernetes target of the config, its
tasks, dependencies and trigger rules; a new target is a config change only; a target missing what
a cluster needs is a clear error."""

from __future__ import annotations

import textwrap

import pytest

from ragbench.errors import RagbenchError
from ragbench.steps import STEPS
from ragbench.targets import load_targets

pytestmark = pytest.mark.unit

CLUSTER_TASKS = ["preflight", "deploy_workload", "ingest_corpus", "run_north_south", "run_north_south_in_cluster",
                 "run_east_west", "teardown_workload", "load_results"]
KPO_TASKS = {"deploy_workload", "ingest_corpus", "run_north_south_in_cluster", "run_east_west",
             "teardown_workload"}


def cluster_targets():
    return [t for t in load_targets().targets if t.kind == "kubernetes"]


def test_the_three_clouds_are_configured():
    config = load_targets()
    assert {t.name for t in cluster_targets()} >= {"akamai-lke", "aws-eks", "gcp-gke"}
    assert config.default_targets == ["local"]  # nightly runs cost nothing until someone opts in
    pools = {t.name: {(p.pricing_key, p.instance_type, p.count, p.gpu) for p in t.node_pools}
             for t in cluster_targets()}
    assert pools["akamai-lke"] == {("gpu_node", "g2-gpu-rtx4000a1-s", 1, True), ("cpu_node", "g6-standard-8", 2, False)}
    assert pools["aws-eks"] == {("gpu_node", "g6.xlarge", 1, True), ("cpu_node", "m6i.2xlarge", 2, False)}
    assert pools["gcp-gke"] == {("gpu_node", "g2-standard-8", 1, True), ("cpu_node", "e2-standard-8", 2, False)}
    for t in cluster_targets():
        assert t.connection_id == f"ragbench_{t.name.replace('-', '_')}"
        assert t.overlay == f"k8s/overlays/{t.provider}"
        assert t.region and t.namespace == "ragbench"


@pytest.mark.parametrize("target", [t.name for t in cluster_targets()])
def test_cluster_group_tasks_dependencies_and_trigger_rules(checked_in_dag, target):
    dag = checked_in_dag
    g = target.replace("-", "_")
    ids = [t.task_id for t in dag.topological_sort() if t.task_id.startswith(f"{g}.")]
    assert sorted(ids) == sorted(f"{g}.{t}" for t in CLUSTER_TASKS)

    def task(name):
        return dag.get_task(f"{g}.{name}")

    def upstream(name):
        return {u.split(".", 1)[1] if "." in u else u for u in task(name).upstream_task_ids}

    assert ids[0] == f"{g}.preflight"  # before anything touches the cluster
    assert upstream("preflight") == {"start_run"}
    assert upstream("deploy_workload") == {"preflight"}
    assert upstream("ingest_corpus") == {"deploy_workload"}
    assert upstream("run_north_south") == upstream("run_north_south_in_cluster") == {"ingest_corpus"}
    assert upstream("run_east_west") == {"run_north_south", "run_north_south_in_cluster"}
    assert upstream("teardown_workload") == {"run_east_west", "deploy_workload"}  # also after a failed deploy
    assert upstream("load_results") == {"teardown_workload"}
    assert f"{g}.load_results" in dag.get_task("check_regressions").upstream_task_ids

    rules = {name: task(name).trigger_rule for name in CLUSTER_TASKS}  # str enums
    assert rules == {
        "preflight": "all_success",
        "deploy_workload": "all_success", "ingest_corpus": "all_success",
        "run_north_south": "all_success", "run_north_south_in_cluster": "all_success",
        "run_east_west": "none_failed_min_one_success",  # one of the two North-South tasks skips
        "teardown_workload": "all_done", "load_results": "all_done",
    }
    kinds = {name: type(task(name)).__name__ for name in CLUSTER_TASKS}
    assert {n for n, k in kinds.items() if k == "StepPodOperator"} == KPO_TASKS
    for name in KPO_TASKS:
        assert task(name).retries >= 1 and task(name).execution_timeout is not None
        assert task(name).preflight_task_id == f"{g}.preflight"
    assert task("preflight").execution_timeout.total_seconds() <= 180  # a preflight takes seconds


def test_local_group_is_unchanged(checked_in_dag):
    order = [t.task_id for t in checked_in_dag.topological_sort()]
    local = [t for t in order if t.startswith("local.")]
    assert local == ["local.deploy_workload", "local.ingest_corpus", "local.run_north_south", "local.run_east_west",
                     "local.run_browser_north_south", "local.teardown_workload", "local.load_results"]
    assert all(type(checked_in_dag.get_task(t)).__name__ != "StepPodOperator" for t in local)


def test_params(checked_in_dag):
    params = checked_in_dag.params
    assert params["targets"] == ["local"]
    assert set(params.get_param("targets").schema["items"]["enum"]) == {t.name for t in load_targets().targets}
    assert params["north_south_from"] == "orchestrator"
    from airflow.sdk.exceptions import ParamValidationError

    params.get_param("north_south_from").resolve("cluster")
    with pytest.raises(ParamValidationError):
        params.get_param("north_south_from").resolve("moon")


def test_the_step_list_drives_both_renderings():
    for step in STEPS:
        assert step.local_command and (step.cluster_command or step.local_only), step.name
    assert [s.name for s in STEPS if s.local_only] == ["browser_north_south"]
    assert [s.name for s in STEPS if s.orchestrator_option] == ["north_south"]


# --- the config decides: a new target needs no code ------------------------------------------------------

LOCAL = """\
  - name: local
    kind: local
    provider: local
"""


def write_config(tmp_path, body: str, head: str = "") -> None:
    (tmp_path / "targets.yaml").write_text(textwrap.dedent(head) + "targets:\n" + textwrap.dedent(body))


def test_a_new_cluster_target_adds_its_group(tmp_path, monkeypatch, build_dagbag):
    write_config(tmp_path, LOCAL + """\
  - name: my-cluster
    kind: kubernetes
    provider: generic
    region: lab
    connection_id: k8s_my_cluster
    overlay: k8s/overlays/generic
    node_pools:
      - {name: cpu, instance_type: my-4vcpu, count: 2, pricing_key: cpu_node}
""", head="default_targets: [local, my-cluster]\n")
    monkeypatch.setenv("RAGBENCH_CONFIG_DIR", str(tmp_path))
    bag = build_dagbag()
    assert bag.import_errors == {}
    dag = bag.dags["rag_benchmark"]
    groups = {t.task_id.split(".")[0] for t in dag.tasks if "." in t.task_id}
    assert groups == {"local", "my_cluster"}
    assert {t.task_id for t in dag.tasks if t.task_id.startswith("my_cluster.")} == \
        {f"my_cluster.{t}" for t in CLUSTER_TASKS}
    deploy = dag.get_task("my_cluster.deploy_workload")
    assert (deploy.kubernetes_conn_id, deploy.namespace) == ("k8s_my_cluster", "ragbench")
    assert dag.params["targets"] == ["local", "my-cluster"]  # default_targets: nightly runs it


@pytest.mark.parametrize("missing,message", [
    ("connection_id", "kubernetes target 'box' needs connection_id (the Airflow Kubernetes connection and the "
                      "Kustomize overlay to apply)"),
    ("overlay", "kubernetes target 'box' needs overlay (the Airflow Kubernetes connection and the Kustomize "
                "overlay to apply)"),
])
def test_a_cluster_target_without_connection_or_overlay_is_a_clear_error(tmp_path, monkeypatch, build_dagbag,
                                                                          missing, message):
    fields = {"connection_id": "k8s_box", "overlay": "k8s/overlays/generic"}
    del fields[missing]
    write_config(tmp_path, LOCAL + "  - name: box\n    kind: kubernetes\n    provider: generic\n"
                 + "".join(f"    {k}: {v}\n" for k, v in fields.items()))
    with pytest.raises(RagbenchError) as info:
        load_targets(tmp_path / "targets.yaml")
    assert str(info.value) == f"{tmp_path / 'targets.yaml'}: targets.1: {message}"

    monkeypatch.setenv("RAGBENCH_CONFIG_DIR", str(tmp_path))
    bag = build_dagbag()
    assert "rag_benchmark" not in bag.dags
    (error,) = bag.import_errors.values()
    assert message in error


@pytest.mark.parametrize("extra,message", [
    ("    usd_per_hour: 0.0\n", "usd_per_hour is no longer read here: prices live in config/costs.yaml"),
    ("    conection_id: typo\n", "targets.0.conection_id: Extra inputs are not permitted"),
    ("    image: ghcr.io/ragbench/ragbench-workload:latest\n", "is not pinned"),
    ("    image: ghcr.io/ragbench/ragbench-workload\n", "is not pinned"),
])
def test_config_mistakes_are_named(tmp_path, extra, message):
    write_config(tmp_path, LOCAL + extra)
    with pytest.raises(RagbenchError, match=message.replace("(", r"\(")):
        load_targets(tmp_path / "targets.yaml")


@pytest.mark.parametrize("head,message", [
    ("default_targets: [mars]\n", "default_targets names unknown targets: mars (known: local)"),
    ("default_targets: [local, local]\n", "default_targets lists a target twice"),
])
def test_default_targets_are_checked(tmp_path, head, message):
    write_config(tmp_path, LOCAL, head=head)
    with pytest.raises(RagbenchError) as info:
        load_targets(tmp_path / "targets.yaml")
    assert str(info.value).endswith(message)


def test_without_a_local_target_default_targets_is_required(tmp_path):
    write_config(tmp_path, "  - {name: box, kind: kubernetes, provider: generic, connection_id: c, "
                           "overlay: k8s/overlays/generic}\n")
    with pytest.raises(RagbenchError, match="default_targets is required when no target is of kind local"):
        load_targets(tmp_path / "targets.yaml")
