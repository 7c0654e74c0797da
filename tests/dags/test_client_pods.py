"""North-South from N client pods: the Indexed Job the DAG would create, and the merge of its shards.

The Job is rendered the way the task runner does (prepare_for_execution, render_template_fields with a
run's context) and built with the provider's build_job_request_obj, then serialized and validated
strictly against the Kubernetes schemas. Nothing here has an API server: what Kubernetes itself
does with the Job (one pod per index, each with its JOB_COMPLETION_INDEX expanded into $(...) in the
arguments) is done by the test, and the pods' command lines are then run for real by the workload
CLI against a local stand-in SSE server (benchmarks/standin_sse_server.py), their documents merged
by the task's own code.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

kubernetes_validate = pytest.importorskip("kubernetes_validate")
from kubernetes.client import ApiClient  # noqa: E402
from kubernetes.client import models as k8s  # noqa: E402

from ragbench import client_job  # noqa: E402
from ragbench.errors import RagbenchError  # noqa: E402
from ragbench.steps import STEP_BY_NAME  # noqa: E402
from ragbench.targets import load_targets  # noqa: E402

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
RUN_ID = "scheduled__2026-12-03T02:00:00+00:00"
ENDPOINT = "http://203.0.113.10"
CLUSTER_TARGETS = [t for t in load_targets().targets if t.kind == "kubernetes"]
TASK = "run_north_south_in_cluster"
# A kubeconfig for an address nobody has: building a Job (not a dry run) reads the connection's
# config, and nothing here connects.
KUBECONFIG = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
              "clusters": [{"name": "c", "cluster": {"server": "https://192.0.2.1:6443"}}],
              "users": [{"name": "u", "user": {"token": "unused"}}],
              "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}
# A small load, so that the shards run in seconds against the stand-in.
SMALL = {"concurrency": 3, "requests": 24, "warmup_requests": 3, "max_tokens": 8}


@pytest.fixture(scope="module", autouse=True)
def _connections():
    mp = pytest.MonkeyPatch()
    mp.setenv("RAGBENCH_ORCHESTRATOR_CIDR", "198.51.100.20/32")
    for t in CLUSTER_TARGETS:
        mp.setenv(f"AIRFLOW_CONN_{t.connection_id.upper()}", json.dumps(
            {"conn_type": "kubernetes", "extra": {"namespace": t.namespace, "kube_config": KUBECONFIG}}))
    yield
    mp.undo()


class FakeTI:
    def __init__(self, task) -> None:
        self.dag_id, self.task_id, self.map_index, self.try_number, self.run_id = \
            task.dag_id, task.task_id, -1, 1, RUN_ID
        self.pushed: dict[str, object] = {}

    def xcom_pull(self, task_ids=None, key="return_value", **_):
        if key == "return_value" and task_ids and task_ids.endswith(".deploy_workload"):
            return {"schema": "ragbench.result/v1", "step": "deploy-cluster", "ok": True,
                    "data": {"endpoint": ENDPOINT}}
        return None

    def xcom_push(self, key, value, **_):
        self.pushed[key] = value


def render(dag, target, pods: int, **params):
    """(operator, context) of the target's North-South task after rendering, for ``pods`` client pods."""
    op = dag.get_task(f"{target.name.replace('-', '_')}.{TASK}").prepare_for_execution()
    all_params = {**op.dag.params.dump(), "targets": [target.name], "north_south_from": "cluster",
                  "client_pods": pods, **params}
    context = {"ti": FakeTI(op), "run_id": RUN_ID, "params": all_params, "dag": op.dag, "task": op}
    op.render_template_fields(context)
    return op, context


def job_of(dag, target, pods: int, **params) -> dict:
    op, context = render(dag, target, pods, **params)
    return ApiClient().sanitize_for_serialization(op.pod_operator().build_job_request_obj(context))


def base(job: dict) -> dict:
    return next(c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == "base")


def as_pod(args: list[str], index: int) -> list[str]:
    """What the kubelet runs in pod ``index``: $(JOB_COMPLETION_INDEX) expanded from the variable
    the Job controller sets."""
    return [a.replace(f"$({client_job.INDEX_ENV})", str(index)) for a in args]


# --- the Job ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("pods", [1, 3])
@pytest.mark.parametrize("target", CLUSTER_TARGETS, ids=[t.name for t in CLUSTER_TARGETS])
def test_job_validates_strictly(checked_in_dag, target, pods):
    job = job_of(checked_in_dag, target, pods)
    kubernetes_validate.validate(job, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("pods", [1, 3])
def test_job_spec(checked_in_dag, pods):
    target = next(t for t in CLUSTER_TARGETS if t.name == "aws-eks")
    step = STEP_BY_NAME["north_south"]
    job = job_of(checked_in_dag, target, pods)
    spec, template = job["spec"], job["spec"]["template"]
    pod, c = template["spec"], base(job)

    assert (job["apiVersion"], job["kind"], job["metadata"]["namespace"]) == ("batch/v1", "Job", target.namespace)
    assert job["metadata"]["name"].startswith("job-ragbench-aws-eks-north-south-")
    # one pod per index, all at once, none started again
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", pods, pods)
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == pod["activeDeadlineSeconds"] == step.cluster_timeout
    assert spec["ttlSecondsAfterFinished"] > 0  # a Job the task could not delete goes away by itself

    # the step pod every step gets: image, identity, resources, security, XCom sidecar
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "ragbench-runner" and pod["automountServiceAccountToken"] is False
    assert (c["image"], c["imagePullPolicy"], c["command"]) == (target.image, "Always", ["ragbench-workload"])
    assert c["resources"]["requests"] == c["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert [x["name"] for x in pod["containers"]] == ["base", "airflow-xcom-sidecar"]
    assert pod["containers"][1]["resources"]["limits"] == {"cpu": "100m", "memory": "32Mi"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert not pod.get("tolerations")  # never on the GPU node

    labels = template["metadata"]["labels"]
    assert labels["ragbench.io/step"] == "north_south" and labels["ragbench.io/target"] == "aws-eks"
    assert labels["ragbench.io/run-id"].startswith("scheduled__2026-12-03T02-00-00-00-00-")
    assert labels["app.kubernetes.io/component"] == "north-south"
    for key in ("dag_id", "task_id", "run_id"):  # how the task finds the Job's pods
        assert key in labels
    assert {k: v for k, v in job["metadata"]["labels"].items() if k.startswith("ragbench.io/")} == \
        {k: v for k, v in labels.items() if k.startswith("ragbench.io/")}
    assert template["metadata"]["annotations"]["ragbench.io/run-id"] == RUN_ID

    # off the backend's nodes if it can, and spread over the nodes: preferences, never Pending
    (pref,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert pref["podAffinityTerm"]["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": "ragbench-backend"}
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in pod["affinity"]["podAntiAffinity"]
    (spread,) = pod["topologySpreadConstraints"]
    assert (spread["topologyKey"], spread["maxSkew"], spread["whenUnsatisfiable"]) == \
        ("kubernetes.io/hostname", 1, "ScheduleAnyway")
    selector = spread["labelSelector"]["matchLabels"]
    assert selector.items() <= labels.items() and "ragbench.io/run-id" in selector  # this run's client pods


def test_every_pod_runs_its_own_shard_from_one_agreed_start(checked_in_dag):
    from workload.cli import build_parser

    target = CLUSTER_TARGETS[0]
    before = time.time()
    args = base(job_of(checked_in_dag, target, 3))["args"]
    after = time.time()
    assert args[:5] == ["north-south", "--out", "/airflow/xcom/return.json", "--endpoint", ENDPOINT]
    assert args[args.index("--shard") + 1] == "$(JOB_COMPLETION_INDEX)/3"  # the controller's index
    parser = build_parser()
    parsed = [parser.parse_args(as_pod(args, i)) for i in range(3)]
    assert [p.shard for p in parsed] == ["0/3", "1/3", "2/3"]
    starts = {p.start_at for p in parsed}
    assert len(starts) == 1  # one instant for every pod
    (start,) = starts
    assert before + client_job.START_GRACE_S - 0.01 <= start <= after + client_job.START_GRACE_S + 0.01
    assert {p.config for p in parsed} == {args[args.index("--config") + 1]}  # one schedule
    assert all(p.vantage == "cluster" for p in parsed)


def test_one_pod_runs_the_whole_schedule_as_before(checked_in_dag):
    """client_pods 1: no shard flags (a sweep stays possible) and no wait for an agreed start."""
    from workload.cli import build_parser

    for mode in ("concurrent", "sweep"):
        op, _ = render(checked_in_dag, CLUSTER_TARGETS[0], 1, load_mode=mode)
        assert "--shard" not in op.arguments and "--start-at" not in op.arguments
        assert op.start_at is None and op.client_pods == 1
        parsed = build_parser().parse_args(op.arguments)
        assert parsed.shard is None and json.loads(parsed.config)["strategy"]["type"] == mode


def test_own_image_pull_secret_and_results_store_reach_the_job(checked_in_dag, monkeypatch, tmp_path):
    target = CLUSTER_TARGETS[0]
    image = "registry.example.com/team/ragbench-workload@sha256:" + "ab" * 32
    own = target.model_copy(update={"image": image, "image_pull_secret": "regcred",
                                    "results_store": tmp_path.as_uri()})
    op = checked_in_dag.get_task(f"{target.name.replace('-', '_')}.{TASK}")
    monkeypatch.setattr(op, "target", own)
    monkeypatch.setattr(op, "image", image)
    for pods in (1, 3):
        job = job_of(checked_in_dag, target, pods)
        pod, c = job["spec"]["template"]["spec"], base(job)
        assert (c["image"], c["imagePullPolicy"]) == (image, "IfNotPresent")
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]
        store = c["args"][c["args"].index("--results-store") + 1]
        prefix = f"{tmp_path.as_uri()}/scheduled__2026-12-03T02_00_00_00_00/{target.name}"
        # one pod writes the step's document in place; shards write apart, the merged one goes in place
        assert store == (prefix if pods == 1 else f"{prefix}/north-south-shards/$(JOB_COMPLETION_INDEX)")


# --- refusals ---------------------------------------------------------------------------------------


def test_a_sweep_with_several_pods_is_refused_by_the_preflight(checked_in_dag, monkeypatch):
    """Before any pod starts: the group's first task refuses it, without a retry, and records why."""
    from airflow.sdk.exceptions import AirflowFailException

    from ragbench.step_errors import ERROR_KEY

    op = checked_in_dag.get_task("aws_eks.preflight")
    params = {**checked_in_dag.params.dump(), "targets": ["aws-eks"], "north_south_from": "cluster",
              "client_pods": 4, "load_mode": "sweep"}
    ti = FakeTI(op)
    fn = op.python_callable
    monkeypatch.setitem(fn.__globals__, "get_current_context", lambda: {"run_id": RUN_ID, "params": params, "ti": ti})
    with pytest.raises(AirflowFailException) as info:
        fn()
    message = "aws-eks: client_pods 4 cannot run a sweep (the pods cannot synchronise its levels): use " \
              "client_pods 1 for a sweep, or load_mode concurrent or poisson"
    assert str(info.value) == message
    assert ti.pushed[ERROR_KEY] == message
    # the same sweep from one pod, or several pods of a fixed load, pass this check
    client_job.check_params("aws-eks", {**params, "client_pods": 1})
    client_job.check_params("aws-eks", {**params, "load_mode": "poisson"})
    client_job.check_params("aws-eks", {**params, "north_south_from": "orchestrator"})


def test_the_north_south_task_refuses_it_too_before_creating_a_job(checked_in_dag):
    op, context = render(checked_in_dag, CLUSTER_TARGETS[0], 2, load_mode="sweep")
    with pytest.raises(RagbenchError, match="client_pods 2 cannot run a sweep"):
        op.execute(context)
    assert op._pod_operator is None  # no Job was built, let alone created


# --- watching the pods ------------------------------------------------------------------------------


def _pod(name: str, index: int, *, waiting: str | None = None, unscheduled: str | None = None,
         exit_code: int | None = None) -> k8s.V1Pod:
    statuses, conditions = None, None
    if unscheduled:
        conditions = [k8s.V1PodCondition(type="PodScheduled", status="False", reason="Unschedulable",
                                         message=unscheduled)]
    elif waiting:
        statuses = [k8s.V1ContainerStatus(name="base", image="i", image_id="", ready=False, restart_count=0,
                                          state=k8s.V1ContainerState(waiting=k8s.V1ContainerStateWaiting(
                                              reason=waiting)))]
    else:
        state = k8s.V1ContainerState(running=k8s.V1ContainerStateRunning()) if exit_code is None else \
            k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(exit_code=exit_code,
                                                                            reason="Error" if exit_code else None))
        statuses = [k8s.V1ContainerStatus(name="base", image="i", image_id="", ready=True, restart_count=0,
                                          state=state)]
    return k8s.V1Pod(metadata=k8s.V1ObjectMeta(name=name, namespace="ragbench",
                                               annotations={client_job.INDEX_ANNOTATION: str(index)}),
                     status=k8s.V1PodStatus(phase="Pending" if unscheduled or waiting else "Running",
                                            container_statuses=statuses, conditions=conditions))


def test_pods_not_started_by_the_agreed_start_fail_the_task_with_the_schedulers_reason(checked_in_dag,
                                                                                      monkeypatch):
    from ragbench import client_job_operator

    op, context = render(checked_in_dag, CLUSTER_TARGETS[0], 3)
    job = op.pod_operator()
    job.start_at = time.time() - 1  # the agreed start has passed
    pods = {0: _pod("p0", 0), 1: _pod("p1", 1, unscheduled="0/3 nodes are available: 2 Insufficient cpu.")}
    monkeypatch.setattr(job, "_list", lambda ctx: pods)
    with pytest.raises(RagbenchError) as info:
        job._await_started(context)
    assert str(info.value) == ("2 of 3 client pods had not started by the agreed start: pod 1 (p1): not "
                               "scheduled: 0/3 nodes are available: 2 Insufficient cpu.; pods 2 not created")
    # started pods (running or already ended) are enough
    pods[1], pods[2] = _pod("p1", 1, exit_code=0), _pod("p2", 2)
    assert [p.metadata.name for p in job._await_started(context)] == ["p0", "p1", "p2"]
    assert client_job_operator._state(_pod("p", 0, waiting="ImagePullBackOff")) == ("waiting", "ImagePullBackOff")
    assert client_job_operator._state(_pod("p", 0, exit_code=1)) == ("failed", "exit code 1 (Error)")


def test_the_first_failed_pod_ends_the_watch_with_its_result(checked_in_dag, monkeypatch):
    """The API's answers stand in for a cluster's: pod 1 fails while pods 0 and 2 still run; its
    result is read at once and the watch stops (the task then fails and deletes the Job)."""
    from ragbench import client_job_operator

    op, _ = render(checked_in_dag, CLUSTER_TARGETS[0], 3)
    job = op.pod_operator()
    job.pods = [_pod(f"p{i}", i) for i in range(3)]
    states = {"p0": [None, None], "p1": [None, 1], "p2": [None, None, None]}  # exit codes over successive reads
    late = {"schema": "ragbench.result/v1", "step": "north-south", "ok": False, "error": "shard 1/3 ready 7.0 s late"}

    class API:
        read: list[str] = []

        def read_pod(self, pod):
            self.read.append(pod.metadata.name)
            seq = states[pod.metadata.name]
            return _pod(pod.metadata.name, int(pod.metadata.name[1]), exit_code=seq.pop(0) if len(seq) > 1 else seq[0])

        def fetch_requested_container_logs(self, **_):
            return []

        def extract_xcom(self, pod):
            return json.dumps(late)

    monkeypatch.setattr(client_job_operator, "POLL_S", 0)
    monkeypatch.setattr(job, "pod_manager", API())
    results = job._collect()
    assert [(r.index, r.value, r.pod) for r in results] == [(1, late, "p1")]
    with pytest.raises(RagbenchError, match=r"^north_south on aws-eks: shard 1/3 \(pod p1\) failed: shard 1/3 ready"):
        client_job.merge_results("aws-eks", results, 3)


# --- shards merged: real documents from the workload CLI ----------------------------------------------


@pytest.fixture(scope="module")
def standin():
    """The stand-in SSE server (8 tokens, 5 ms apart) on a free local port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "standin_sse_server.py"), "--port", str(port),
                             "--tokens", "8", "--itl-ms", "5"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def workload_python() -> str:
    from ragbench.paths import workload_python as path

    python = path()
    if not Path(python).exists():
        pytest.skip(f"the workload environment is missing ({python})")
    return python


def run_pods(args: list[str], endpoint: str, indices, tmp_path: Path, *, delay_s: float = 0.0) -> dict[int, dict]:
    """Run the pods' command lines (index ``i`` as Kubernetes would expand it) with the workload CLI,
    against the stand-in instead of the load balancer; their --out documents by index."""
    def argv(i: int) -> list[str]:
        a = as_pod(args, i)
        a[a.index("--endpoint") + 1] = endpoint
        a[a.index("--out") + 1] = str(tmp_path / f"pod-{i}.json")
        k = a.index("--llm-metrics-url")  # vLLM's /metrics is the cluster's; the stand-in has none
        return a[:k] + a[k + 2:]

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)  # this checkout's workload package
    time.sleep(delay_s)
    procs = {i: subprocess.Popen([workload_python(), "-m", "workload.cli", *argv(i)], cwd=REPO, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in indices}
    out = {}
    for i, p in procs.items():
        log, _ = p.communicate(timeout=180)
        path = tmp_path / f"pod-{i}.json"
        assert path.exists(), f"pod {i} wrote nothing (rc {p.returncode}): {log[-2000:]}"
        out[i] = json.loads(path.read_text())
    return out


@pytest.fixture(scope="module")
def shard_run(checked_in_dag, standin, tmp_path_factory):
    """Three client pods of one run with a results store: (operator, context, the pods' XCom values)."""
    mp = pytest.MonkeyPatch()
    store = tmp_path_factory.mktemp("store")
    target = CLUSTER_TARGETS[0]
    op_in_dag = checked_in_dag.get_task(f"{target.name.replace('-', '_')}.{TASK}")
    mp.setattr(op_in_dag, "target", target.model_copy(update={"results_store": store.as_uri()}))
    mp.setattr(client_job, "START_GRACE_S", 15)  # the CLI's start-up and warm-up here, not a cluster's
    try:
        op, context = render(checked_in_dag, target, 3, **SMALL)
        values = run_pods(op.arguments, standin, range(3), tmp_path_factory.mktemp("pods"))
    finally:
        mp.undo()
    return op, context, values


def test_the_task_merges_the_shards_into_one_north_south_document(shard_run, monkeypatch):
    from ragbench.results_store import resolve

    op, context, values = shard_run
    assert all(v["schema"] == "ragbench.result-ref/v1" and v["ok"] for v in values.values())
    assert len({v["url"] for v in values.values()}) == 3  # each pod wrote its own document

    class Job:  # what ClientJob.execute returns after watching the Job's pods
        def execute(self, _context):
            return [client_job.ShardResult(i, values[i], pod=f"pod-{i}") for i in (2, 0, 1)]

    monkeypatch.setattr(op, "pod_operator", lambda: Job())
    ref = op.execute(context)
    assert ref["schema"] == "ragbench.result-ref/v1" and ref["url"].endswith(f"/{op.target.name}/north-south.json")
    doc = resolve(ref)
    assert (doc["schema"], doc["step"], doc["ok"]) == ("ragbench.result/v1", "north-south", True)
    data = doc["data"]
    (scenario,) = data["scenarios"]  # one scenario, as from one client
    assert scenario["summary"]["requests"] == SMALL["requests"]
    # every request of the one schedule once, by its global index: warm-up first, then the measured ones
    warmup, total = SMALL["warmup_requests"], SMALL["warmup_requests"] + SMALL["requests"]
    assert sorted(r["index"] for r in scenario["records"]) == list(range(total))
    assert sorted(r["index"] for r in scenario["records"] if not r["warmup"]) == list(range(warmup, total))
    assert [s["index"] for s in data["shards"]] == [0, 1, 2]
    assert all(s["late_by_s"] <= client_job.LATE_LIMIT_S for s in data["shards"])
    assert data["vantage"] == "cluster" and "shard" not in data
    from ragbench.loader import _summary

    assert _summary(scenario) == scenario["summary"]  # the loader checks it as any one client's summary


def test_a_missing_shard_fails_the_task_and_nothing_is_merged(shard_run):
    _, _, values = shard_run
    results = [client_job.ShardResult(0, values[0], pod="pod-0"),
               client_job.ShardResult(2, values[2], pod="pod-2")]
    with pytest.raises(RagbenchError) as info:
        client_job.merge_results("aws-eks", results, 3)
    assert str(info.value) == ("north_south on aws-eks: shard 1/3: no result (the Job stopped before it "
                               "finished); 2 of 3 client pods succeeded, nothing merged")
    unreadable = results + [client_job.ShardResult(1, pod="pod-1", problem="its result could not be read (x)")]
    with pytest.raises(RagbenchError, match=r"shard 1/3 \(pod pod-1\): its result could not be read \(x\);"):
        client_job.merge_results("aws-eks", unreadable, 3)
    twice = results + [client_job.ShardResult(0, values[0])]
    with pytest.raises(RagbenchError, match="client pod index 0 came back twice"):
        client_job.merge_results("aws-eks", twice, 3)


def test_a_late_shard_fails_the_task_with_its_own_reason(checked_in_dag, standin, shard_run, tmp_path, monkeypatch):
    """Shard 1 is ready after the agreed start plus the load generator's 5 s: it fails with its
    lateness, and the task says so (the shards that did run are not merged without it)."""
    _, _, values = shard_run
    monkeypatch.setattr(client_job, "START_GRACE_S", -10)  # the agreed start is 10 s in the past
    op, _ = render(checked_in_dag, CLUSTER_TARGETS[0], 3, **SMALL)
    late = run_pods(op.arguments, standin, [1], tmp_path)[1]
    assert late["ok"] is False
    results = [client_job.ShardResult(0, values[0]), client_job.ShardResult(1, late, pod="pod-1"),
               client_job.ShardResult(2, values[2])]
    with pytest.raises(RagbenchError) as info:
        client_job.merge_results("aws-eks", results, 3)
    message = str(info.value)
    assert message.startswith("north_south on aws-eks: shard 1/3 (pod pod-1) failed: shard 1/3 ready ")
    assert "s after the agreed start" in message and message.endswith("2 of 3 client pods succeeded, nothing merged")
