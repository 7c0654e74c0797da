"""Every pod the DAG would launch on a cluster, rendered and validated offline.

For each kubernetes target of config/targets.yaml and each of its KubernetesPodOperator tasks, the
task is rendered the way the task runner does (prepare_for_execution, render_template_fields with
a run's context), its pod is built with build_pod_request_obj(context, dry_run=True), serialized
with the Kubernetes client and validated strictly (unknown fields are errors) against the schemas
of a current Kubernetes version. Then the project's expectations: image, command line (which the
workload CLI's own parser must accept), service account, namespace, resources, anti-affinity,
environment, labels, security context, XCom sidecar, and the skips.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")
from kubernetes.client import ApiClient  # noqa: E402 - after the importorskip

from ragbench import cluster  # noqa: E402
from ragbench.errors import RagbenchError  # noqa: E402
from ragbench.steps import STEP_BY_NAME, north_south_config  # noqa: E402
from ragbench.targets import DEFAULT_WORKLOAD_IMAGE, load_targets  # noqa: E402

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
RUN_ID = "scheduled__2026-11-27T02:00:00.123456+00:00"
ENDPOINT = "http://203.0.113.10"
DEPLOY_DOC = {"schema": "ragbench.result/v1", "step": "deploy-cluster", "ok": True, "data": {"endpoint": ENDPOINT}}
POD_TASKS = {  # task id -> step
    "deploy_workload": "deploy", "ingest_corpus": "ingest", "run_north_south_in_cluster": "north_south",
    "run_east_west": "east_west", "teardown_workload": "teardown",
}
ORCHESTRATOR_CIDR = "198.51.100.20/32"
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
CLUSTER_TARGETS = [t for t in load_targets().targets if t.kind == "kubernetes"]


@pytest.fixture(scope="module", autouse=True)
def _connections():
    """The targets' Airflow connections (the XCom sidecar's settings are read from them)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("RAGBENCH_ORCHESTRATOR_CIDR", ORCHESTRATOR_CIDR)  # no address lookup from the tests
    for t in CLUSTER_TARGETS:
        mp.setenv(f"AIRFLOW_CONN_{t.connection_id.upper()}",
                  json.dumps({"conn_type": "kubernetes", "extra": {"namespace": t.namespace}}))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def k8s_version() -> str:
    return kubernetes_validate.latest_version()


class FakeTI:
    def __init__(self, task, xcoms: dict) -> None:
        self.dag_id, self.task_id = task.dag_id, task.task_id
        self.map_index, self.try_number = -1, 1
        self.xcoms = xcoms
        self.pulled: list[str] = []

    def xcom_pull(self, task_ids=None, key="return_value", **_):
        self.pulled.append(task_ids)
        return self.xcoms.get(task_ids)


def context_for(op, params: dict, xcoms: dict | None = None) -> dict:
    all_params = {**op.dag.params.dump(), **params}
    return {"ti": FakeTI(op, xcoms or {}), "run_id": RUN_ID, "params": all_params, "dag": op.dag, "task": op}


def render(dag, task_id: str, params: dict | None = None, xcoms: dict | None = None):
    """(operator, context) after rendering, as the task runner would leave them."""
    op = dag.get_task(task_id).prepare_for_execution()
    context = context_for(op, params or {}, xcoms)
    op.render_template_fields(context)
    return op, context


def pod_of(dag, target, task_name: str, params: dict | None = None) -> dict:
    g = target.name.replace("-", "_")
    params = {"targets": [target.name], "north_south_from": "cluster", **(params or {})}
    op, context = render(dag, f"{g}.{task_name}", params, {f"{g}.deploy_workload": DEPLOY_DOC})
    return ApiClient().sanitize_for_serialization(op.build_pod_request_obj(context, dry_run=True))


def base_container(pod: dict) -> dict:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "base")


CASES = [(t, task) for t in CLUSTER_TARGETS for task in POD_TASKS]
IDS = [f"{t.name}-{task}" for t, task in CASES]


@pytest.mark.parametrize("target,task_name", CASES, ids=IDS)
def test_pod_validates_strictly(checked_in_dag, k8s_version, target, task_name):
    pod = pod_of(checked_in_dag, target, task_name)
    kubernetes_validate.validate(pod, k8s_version, strict=True)


@pytest.mark.parametrize("target,task_name", CASES, ids=IDS)
def test_pod_spec(checked_in_dag, target, task_name):
    step = STEP_BY_NAME[POD_TASKS[task_name]]
    pod = pod_of(checked_in_dag, target, task_name)
    spec, meta, c = pod["spec"], pod["metadata"], base_container(pod)

    assert meta["namespace"] == target.namespace
    assert meta["name"].startswith(f"ragbench-{target.name}-{step.name.replace('_', '-')}-")
    assert c["image"] == target.image == DEFAULT_WORKLOAD_IMAGE
    assert c["imagePullPolicy"] == "Always"  # a release tag can be moved; a digest would be IfNotPresent
    assert not spec.get("imagePullSecrets")  # none configured
    assert c["command"] == ["ragbench-workload"]
    assert c["args"][:3] == [step.cluster_command, "--out", "/airflow/xcom/return.json"]
    assert spec["serviceAccountName"] == "ragbench-runner"
    assert spec["automountServiceAccountToken"] is step.cluster_api_access
    assert spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == step.cluster_timeout
    assert not spec.get("tolerations")  # step pods never land on the (tainted) GPU node

    # requests = limits (Guaranteed QoS), as every container of the workload
    assert c["resources"]["requests"] == c["resources"]["limits"] == {"cpu": step.cluster_cpu,
                                                                       "memory": step.cluster_memory}

    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["RAGBENCH_API_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "ragbench-api-token", "key": "token", "optional": True}}
    assert env["RAGBENCH_PROMETHEUS_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "ragbench-prometheus-token", "key": "token", "optional": True}}
    assert env["HOME"]["value"] == env["TMPDIR"]["value"] == "/tmp"

    # non-root, nothing to escalate, read-only root with a writable /tmp
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 1000
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec["containers"]:
        sc = container["securityContext"]
        assert (sc["allowPrivilegeEscalation"], sc["readOnlyRootFilesystem"], sc["capabilities"]) == \
            (False, True, {"drop": ["ALL"]}), container["name"]
        assert container["resources"].get("limits"), f"{container['name']} has no limits"
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]

    # the result comes back through the XCom sidecar
    assert {"name": "xcom", "mountPath": "/airflow/xcom"} in c["volumeMounts"]
    assert [x["name"] for x in spec["containers"]] == ["base", "airflow-xcom-sidecar"]

    labels = meta["labels"]
    assert labels["ragbench.io/target"] == target.name
    assert labels["ragbench.io/step"] == step.name
    assert labels["ragbench.io/run-id"].startswith("scheduled__2026-11-27T02-00-00.123456-00-00-")
    assert labels["app.kubernetes.io/part-of"] == "ragbench"
    assert labels["app.kubernetes.io/name"] == "ragbench-step"
    assert meta["annotations"]["ragbench.io/run-id"] == RUN_ID  # the untouched run id
    for key in ("dag_id", "task_id", "run_id", "try_number"):  # KubernetesPodOperator's own, for re-attaching
        assert key in labels
    for key, value in labels.items():
        assert LABEL_VALUE.match(value) and len(value) <= 63, (key, value)


@pytest.mark.parametrize("target", CLUSTER_TARGETS, ids=[t.name for t in CLUSTER_TARGETS])
def test_command_lines(checked_in_dag, target):
    """Each step's arguments, and that the workload CLI accepts them as they are."""
    from workload.cli import build_parser

    params = {"ew_duration_s": 5, "ew_streams": 2, "ew_samples": 4, "load_mode": "poisson", "rate_rps": 1.5}
    args = {name: base_container(pod_of(checked_in_dag, target, name, params))["args"] for name in POD_TASKS}
    out = ["--out", "/airflow/xcom/return.json"]
    assert args["deploy_workload"] == ["deploy-cluster", *out, "--overlay", target.overlay, "--namespace",
                                       target.namespace, "--timeout", "2940",
                                       "--backend-url", "http://ragbench-backend-serve-svc:8000",
                                       "--image", target.image, "--source-range", ORCHESTRATOR_CIDR]
    assert args["teardown_workload"] == ["teardown-cluster", *out, "--overlay", target.overlay,
                                         "--namespace", target.namespace, "--timeout", "540"]
    assert args["ingest_corpus"] == ["ingest", *out, "--endpoint", "http://ragbench-backend-serve-svc:8000"]
    ns = args["run_north_south_in_cluster"]
    assert ns[:5] == ["north-south", *out, "--endpoint", ENDPOINT]
    assert ns[5] == "--config"
    all_params = {**checked_in_dag.params.dump(), **params}
    assert json.loads(ns[6]) == north_south_config(all_params)
    assert ns[7:] == ["--wait-ready", "600", "--vantage", "cluster", "--llm-metrics-url", "http://vllm:8000/metrics"]
    assert args["run_east_west"] == [
        "east-west", *out, "--server", "iperf3-server", "--port", "5201",
        "--server-selector", "app.kubernetes.io/name=iperf3-server,app.kubernetes.io/component=east-west",
        "--namespace", target.namespace, "--duration", "5", "--streams", "2", "--samples", "4"]

    parser = build_parser()
    for name, argv in args.items():
        parsed = parser.parse_args(argv)
        assert parsed.out == "/airflow/xcom/return.json", name
    assert parser.parse_args(args["run_east_west"]).port == 5201
    assert parser.parse_args(ns).llm_metrics_url == "http://vllm:8000/metrics"


def test_the_north_south_client_pod_may_reach_vllm_metrics(checked_in_dag):
    """vLLM's NetworkPolicy admits the in-cluster North-South pod (it scrapes vLLM's /metrics); it
    admits no other step pod."""
    import yaml

    policies = list(yaml.safe_load_all((REPO / "k8s/base/networkpolicies.yaml").read_text()))
    vllm = next(p for p in policies if p["metadata"]["name"] == "vllm-from-backend")
    selectors = [peer["podSelector"]["matchLabels"] for rule in vllm["spec"]["ingress"] for peer in rule["from"]]

    def admitted(labels: dict) -> bool:
        return any(all(labels.get(k) == v for k, v in sel.items()) for sel in selectors)

    target = CLUSTER_TARGETS[0]
    for name in POD_TASKS:
        labels = pod_of(checked_in_dag, target, name, {})["metadata"]["labels"]
        assert admitted(labels) == (name == "run_north_south_in_cluster"), name


def test_overlays_named_by_targets_exist_in_the_image_layout():
    """deploy-cluster reads the target's overlay under $RAGBENCH_K8S_DIR (the image's copy of k8s/)."""
    from workload.cluster import resolve_overlay

    for t in CLUSTER_TARGETS:
        assert resolve_overlay(t.overlay) == REPO / t.overlay


def test_default_image_is_what_the_manifests_deploy():
    kustomization = yaml.safe_load((REPO / "k8s/base/kustomization.yaml").read_text())
    (image,) = [i for i in kustomization["images"] if i["name"] == "ragbench-workload"]
    assert DEFAULT_WORKLOAD_IMAGE == f"{image['newName']}:{image['newTag']}"


@pytest.mark.parametrize("target", CLUSTER_TARGETS, ids=[t.name for t in CLUSTER_TARGETS])
def test_east_west_pod_avoids_the_iperf3_servers_node(checked_in_dag, target):
    server = next(d for d in yaml.safe_load_all((REPO / "k8s/base/iperf3-server.yaml").read_text())
                  if d["kind"] == "Deployment")
    server_labels = server["spec"]["template"]["metadata"]["labels"]
    pod = pod_of(checked_in_dag, target, "run_east_west")
    (term,) = pod["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    selector = term["labelSelector"]["matchLabels"]
    assert selector == cluster.IPERF3_SERVER_LABELS
    assert selector.items() <= server_labels.items()  # the selector matches the server's pods
    # the server's selector in the client's arguments is the same one
    args = base_container(pod)["args"]
    assert args[args.index("--server-selector") + 1] == ",".join(f"{k}={v}" for k, v in selector.items())


def test_only_east_west_and_north_south_pods_have_affinity(checked_in_dag):
    target = CLUSTER_TARGETS[0]
    for name in ("deploy_workload", "ingest_corpus", "teardown_workload"):
        assert not pod_of(checked_in_dag, target, name)["spec"].get("affinity"), name
    ns = pod_of(checked_in_dag, target, "run_north_south_in_cluster")["spec"]["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in ns  # a preference, never unschedulable
    (pref,) = ns["preferredDuringSchedulingIgnoredDuringExecution"]
    assert pref["podAffinityTerm"]["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": "ragbench-backend"}


def test_xcom_sidecar_resources_from_the_connection_win(checked_in_dag, monkeypatch):
    target = CLUSTER_TARGETS[0]
    monkeypatch.setenv(f"AIRFLOW_CONN_{target.connection_id.upper()}", json.dumps({
        "conn_type": "kubernetes", "extra": {"xcom_sidecar_container_image": "registry.example/alpine:3.24.2",
                                             "xcom_sidecar_container_resources": json.dumps(
                                                 {"requests": {"cpu": "5m"}, "limits": {"cpu": "20m"}})}}))
    pod = pod_of(checked_in_dag, target, "ingest_corpus")
    sidecar = pod["spec"]["containers"][1]
    assert sidecar["image"] == "registry.example/alpine:3.24.2"
    assert sidecar["resources"] == {"requests": {"cpu": "5m"}, "limits": {"cpu": "20m"}}


# --- one image per target; who may reach the load balancer ----------------------------------------------


def test_a_targets_own_image_and_pull_secret_reach_every_pod(checked_in_dag, monkeypatch):
    """Pinned by digest in the target config: pulled IfNotPresent, with the target's pull secret, and
    handed to the deploy step, which sets it on the Ray and iperf3 pods (tests/workload/test_cluster_cli.py)."""
    target = CLUSTER_TARGETS[0]
    image = "registry.example.com/team/ragbench-workload@sha256:" + "cd" * 32
    own = target.model_copy(update={"image": image, "image_pull_secret": "regcred",
                                    "load_balancer_source_ranges": ["203.0.113.0/28", "2001:db8::/48"]})
    for task in POD_TASKS:
        op = checked_in_dag.get_task(f"{target.name.replace('-', '_')}.{task}")
        monkeypatch.setattr(op, "target", own)
        monkeypatch.setattr(op, "image", image)
    for task in POD_TASKS:
        pod = pod_of(checked_in_dag, target, task)
        c = base_container(pod)
        assert (c["image"], c["imagePullPolicy"]) == (image, "IfNotPresent"), task
        assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}], task
    args = base_container(pod_of(checked_in_dag, target, "deploy_workload"))["args"]
    assert args[args.index("--image") + 1] == image
    assert args[args.index("--image-pull-secret") + 1] == "regcred"
    assert [args[i + 1] for i, a in enumerate(args) if a == "--source-range"] == ["203.0.113.0/28", "2001:db8::/48"]


def test_the_results_store_secret_reaches_every_step_pod(checked_in_dag, k8s_version, monkeypatch):
    """An S3-compatible store's keys and endpoint come to the pods from the Secret the target names."""
    target = CLUSTER_TARGETS[0]
    own = target.model_copy(update={"results_store": "s3://bucket/ragbench", "results_store_secret": "store-keys"})
    for task in POD_TASKS:
        monkeypatch.setattr(checked_in_dag.get_task(f"{target.name.replace('-', '_')}.{task}"), "target", own)
    for task in POD_TASKS:
        pod = pod_of(checked_in_dag, target, task)
        kubernetes_validate.validate(pod, k8s_version, strict=True)
        assert base_container(pod)["envFrom"] == [{"secretRef": {"name": "store-keys"}}], task


def test_without_a_store_secret_no_pod_reads_one(checked_in_dag):
    for task in POD_TASKS:
        assert not base_container(pod_of(checked_in_dag, CLUSTER_TARGETS[0], task)).get("envFrom"), task


def _answering(text: str, status: int = 200):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def test_source_ranges_default_to_the_orchestrators_public_address(monkeypatch):
    target = CLUSTER_TARGETS[0]
    monkeypatch.delenv("RAGBENCH_ORCHESTRATOR_CIDR")
    server, url = _answering("203.0.113.77\n")
    try:
        monkeypatch.setenv("RAGBENCH_PUBLIC_ADDRESS_URL", url)
        assert cluster.source_ranges(target) == ["203.0.113.77/32"]
    finally:
        server.shutdown()
        server.server_close()
    # configured ranges win, and the variable overrides the lookup
    assert cluster.source_ranges(target.model_copy(update={"load_balancer_source_ranges": ["10.1.2.3/8"]})) == \
        ["10.1.2.3/8"]
    monkeypatch.setenv("RAGBENCH_ORCHESTRATOR_CIDR", "198.51.100.7, 2001:db8::1")
    assert cluster.source_ranges(target) == ["198.51.100.7/32", "2001:db8::1/128"]


@pytest.mark.parametrize("answer", ["<html>captive portal</html>", None])
def test_no_address_means_no_deploy(monkeypatch, answer):
    """Closed by default: without a known address the deploy task fails, it never opens the backend."""
    target = CLUSTER_TARGETS[0]
    monkeypatch.delenv("RAGBENCH_ORCHESTRATOR_CIDR")
    server = None
    if answer is None:
        url = "http://127.0.0.1:9/"  # nothing listens
    else:
        server, url = _answering(answer)
    monkeypatch.setenv("RAGBENCH_PUBLIC_ADDRESS_URL", url)
    try:
        with pytest.raises(RagbenchError) as info:
            cluster.source_ranges(target)
    finally:
        if server:
            server.shutdown()
            server.server_close()
    message = str(info.value)
    assert message.startswith(f"{target.name}: cannot find the orchestrator's public address at {url} (")
    assert message.endswith(f"set load_balancer_source_ranges for target {target.name} in config/targets.yaml, "
                            "or RAGBENCH_ORCHESTRATOR_CIDR")
    assert "\n" not in message


# --- skips and runtime errors ---------------------------------------------------------------------------


def _skip_reason(dag, task_id: str, params: dict) -> str | None:
    from airflow.sdk.exceptions import AirflowSkipException

    op, context = render(dag, task_id, params)
    try:
        op.execute(context)  # raises the skip before anything talks to a cluster
    except AirflowSkipException as exc:
        return str(exc)
    raise AssertionError(f"{task_id} did not skip")


@pytest.mark.parametrize("task_id,params,reason", [
    ("aws_eks.deploy_workload", {"targets": ["local"]}, "aws-eks not selected in params.targets"),
    ("aws_eks.run_north_south_in_cluster", {"targets": ["local"]}, "aws-eks not selected in params.targets"),
    ("aws_eks.teardown_workload", {"targets": ["aws-eks"], "keep_deployment": True},
     "keep_deployment is set: the workload stays deployed"),
    ("aws_eks.run_north_south_in_cluster", {"targets": ["aws-eks"]},
     "north_south_from is orchestrator: the orchestrator runs this step"),
])
def test_pods_skip_themselves(checked_in_dag, task_id, params, reason):
    assert _skip_reason(checked_in_dag, task_id, params) == reason


class KeyedTI(FakeTI):
    """XComs by (task id, key), for the teardown's look at the preflight's recorded error."""

    def xcom_pull(self, task_ids=None, key="return_value", **_):
        self.pulled.append(task_ids)
        return self.xcoms.get((task_ids, key))


@pytest.mark.parametrize("preflight_failed", [True, False])
def test_teardown_skips_only_after_a_failed_preflight(checked_in_dag, monkeypatch, preflight_failed):
    """A failed preflight stopped the group before anything was applied; a passed one never skips
    the teardown (its skip would leave a paid deployment running)."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from ragbench.step_errors import ERROR_KEY

    monkeypatch.delenv("AIRFLOW_CONN_RAGBENCH_AWS_EKS")  # a teardown that does not skip fails here, offline
    op, context = render(checked_in_dag, "aws_eks.teardown_workload", {"targets": ["aws-eks"]})
    xcoms = {("aws_eks.preflight", "return_value"): {"target": "aws-eks", "findings": []}}
    if preflight_failed:
        xcoms = {("aws_eks.preflight", ERROR_KEY): "preflight of aws-eks found 1 error(s): token: ..."}
    context["ti"] = KeyedTI(op, xcoms)
    if preflight_failed:
        with pytest.raises(AirflowSkipException, match="^the preflight failed: nothing was applied"):
            op.execute(context)
    else:
        with pytest.raises(AirflowFailException, match="the Airflow connection 'ragbench_aws_eks' does not exist"):
            op.execute(context)
    assert context["ti"].pulled == ["aws_eks.preflight"]


def test_an_unselected_target_renders_without_its_deploy_document(checked_in_dag):
    op, context = render(checked_in_dag, "aws_eks.run_north_south_in_cluster", {"targets": ["local"]})
    assert context["ti"].pulled == []  # nothing pulled, nothing failed: execute() skips
    assert op.labels["ragbench.io/target"] == "aws-eks"


def test_north_south_pod_without_a_deploy_endpoint_fails_clearly(checked_in_dag):
    with pytest.raises(RagbenchError, match=r"^the deploy step of aws-eks reported no public endpoint"):
        render(checked_in_dag, "aws_eks.run_north_south_in_cluster",
               {"targets": ["aws-eks"], "north_south_from": "cluster"})


def test_label_values():
    assert cluster.label_value("aws-eks") == "aws-eks"
    a = cluster.label_value("manual__2026-11-27T04:10:43.628483+00:00")
    b = cluster.label_value("manual__2026-11-27T04:10:43.628484+00:00")
    assert a != b
    for value in (a, b, cluster.label_value("x" * 100), cluster.label_value(":::"), cluster.label_value("-a-")):
        assert LABEL_VALUE.match(value) and 0 < len(value) <= 63, value


# --- North-South from the orchestrator --------------------------------------------------------------------


def test_orchestrator_north_south_waits_for_the_public_endpoint(monkeypatch):
    monkeypatch.setattr(cluster, "PUBLIC_READY_TIMEOUT_S", 1)
    with pytest.raises(RagbenchError) as info:
        cluster.run_north_south_from_orchestrator("aws-eks", {}, {"data": {"endpoint": "http://127.0.0.1:9"}})
    message = str(info.value)
    assert message.startswith("north_south on aws-eks failed: readyz timeout: http://127.0.0.1:9/readyz was not "
                              "ready within 1 s (last: ConnectError")
    assert "\n" not in message


def test_orchestrator_north_south_needs_the_deploy_endpoint():
    with pytest.raises(RagbenchError, match="^the deploy step of aws-eks reported no public endpoint"):
        cluster.run_north_south_from_orchestrator("aws-eks", {}, None)


def test_orchestrator_north_south_document(monkeypatch):
    """The wrapping only (the load generator itself is tested against the real service elsewhere)."""
    import workload.bench.northsouth as northsouth
    import workload.cluster as wcluster

    seen = {}

    def fake_run(base_url, config, token=None, **_):
        seen.update(url=base_url, strategy=config.strategy.type, token=token)
        return {"endpoint": base_url, "config": config.model_dump(), "scenarios": []}

    monkeypatch.setattr(northsouth, "run_north_south", fake_run)
    monkeypatch.setattr(wcluster, "wait_ready", lambda url, timeout_s, **_: 0.0)
    monkeypatch.setenv("RAGBENCH_API_TOKEN", "s3cret")
    doc = cluster.run_north_south_from_orchestrator("aws-eks", {"load_mode": "poisson"}, DEPLOY_DOC)
    assert (doc["schema"], doc["step"], doc["ok"]) == ("ragbench.result/v1", "north-south", True)
    assert doc["data"]["vantage"] == "orchestrator"
    assert seen == {"url": ENDPOINT, "strategy": "poisson", "token": "s3cret"}
    monkeypatch.setenv("RAGBENCH_API_TOKEN_AWS_EKS", "eks-only")  # a cluster's own token wins
    cluster.run_north_south_from_orchestrator("aws-eks", {}, DEPLOY_DOC)
    assert seen["token"] == "eks-only"
