"""Each preflight check against a stand-in API server: it passes on a healthy cluster and reports
its one-line finding on a cluster broken in exactly the way it looks for, while every other check
still passes. The real kubernetes client runs (kubeconfig -> HTTP -> JSON -> models)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import kube_standin as ks
import pytest

from ragbench import preflight
from ragbench.preflight import ERROR, OK, WARNING

pytestmark = pytest.mark.unit

RUNNER = "system:serviceaccount:ragbench:ragbench-runner"


def run(standin, e: preflight.Expectations, **kwargs) -> list[preflight.Finding]:
    return preflight.run_checks(preflight.Cluster(standin.client(), **kwargs), e)


def test_a_healthy_cluster_passes_every_check(standin, eks):
    findings = run(standin, eks)
    assert [f.line() for f in findings if f.level != OK] == []
    assert [f.check for f in findings] == ["api", "kubectl", "namespace", "access", "runner", "kuberay", "gpu",
                                           "driver", "disk", "storage", "load-balancer", "token"]
    for f in findings:
        assert "\n" not in f.line()
    # every object the checks read came from the stand-in, through the client
    paths = {p for _, p in standin.cluster.requests}
    assert {"/version", "/api/v1/nodes", "/apis/storage.k8s.io/v1/storageclasses",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            "/apis/authorization.k8s.io/v1/namespaces/ragbench/localsubjectaccessreviews",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/rayservices.ray.io",
            "/api/v1/namespaces/ragbench/secrets/ragbench-api-token"} <= {p.rstrip("/") for p in paths}


def _deny(user: str | None, resource: str, verb: str, subresource: str = "") -> Callable:
    def policy(who, attrs) -> bool:
        return not (who == user and attrs.get("resource") == resource and attrs.get("verb") == verb
                    and (attrs.get("subresource") or "") == subresource)
    return policy


def _gpu(c: ks.StandInCluster, **kwargs) -> None:
    labels = {k: v for k, v in c.nodes[0]["metadata"]["labels"].items()
              if k.startswith(("node.kubernetes.io/", "nvidia.com/"))}
    labels.update(kwargs.pop("labels", {}))
    for k in kwargs.pop("drop", ()):
        labels.pop(k, None)
    c.nodes[0] = ks.node(c.nodes[0]["metadata"]["name"], labels=labels, **{"gpus": 1, "disk": "95Gi", **kwargs})


# (id, break the cluster, change the expectations, check, level, what the line says)
BROKEN = [
    ("kubectl-skew", lambda c: setattr(c, "version", ks.version_info(int(c.version["minor"].rstrip("+")) - 2)),
     None, "kubectl", ERROR, "outside the version-skew policy"),
    ("namespace-missing", lambda c: c.namespaces.clear(), None, "namespace", ERROR,
     "namespace ragbench does not exist - kubectl apply -k k8s/bootstrap"),
    ("namespace-terminating", lambda c: c.namespaces.update(ragbench=ks.namespace("ragbench", "Terminating")),
     None, "namespace", ERROR, "namespace ragbench is being deleted"),
    ("connection-may-not-exec", lambda c: setattr(c, "policy", _deny(None, "pods", "create", "exec")),
     None, "access", ERROR, "may not create pods/exec in namespace ragbench - bind it to the Role ragbench-airflow"),
    ("runner-missing", lambda c: c.service_accounts.clear(), None, "runner", ERROR,
     "ServiceAccount ragbench-runner is missing in ragbench - kubectl apply -k k8s/bootstrap"),
    ("runner-may-not-delete-rayservices", lambda c: setattr(c, "policy", _deny(RUNNER, "rayservices", "delete")),
     None, "runner", ERROR, "ragbench-runner may not delete rayservices.ray.io in ragbench"),
    ("runner-unverifiable", lambda c: setattr(c, "policy", _deny(None, "localsubjectaccessreviews", "create")),
     None, "runner", WARNING, "cannot check ragbench-runner's verbs"),
    ("kuberay-missing", lambda c: c.crds.clear(), None, "kuberay", ERROR,
     "CRD rayservices.ray.io is missing: the KubeRay operator is not installed"),
    ("kuberay-too-old", lambda c: c.crds.update({"rayservices.ray.io": ks.rayservice_crd(
        versions=(("v1alpha1", True, True),))}), None, "kuberay", ERROR, "not ray.io/v1 - upgrade the KubeRay"),
    ("kuberay-not-established", lambda c: c.crds.update({"rayservices.ray.io": ks.rayservice_crd(established=False)}),
     None, "kuberay", ERROR, "is not Established"),
    ("no-gpu-node", lambda c: _gpu(c, labels={"node.kubernetes.io/instance-type": "m7i.xlarge"}), None, "gpu",
     ERROR, "no node matches node.kubernetes.io/instance-type=g6.xlarge - create the GPU node pool"),
    ("no-device-plugin", lambda c: _gpu(c, allocatable_gpus=0), None, "gpu", ERROR,
     "have no allocatable nvidia.com/gpu (or are not ready/schedulable) - install the NVIDIA device plugin"),
    ("gpu-node-not-ready", lambda c: _gpu(c, ready=False), None, "gpu", ERROR, "have no allocatable nvidia.com/gpu"),
    ("driver-too-old", lambda c: _gpu(c, labels={"nvidia.com/cuda.driver-version.major": "550",
                                                 "nvidia.com/cuda.driver.major": "550"}),
     None, "driver", ERROR, "driver R550 on ip-10-0-1-17.ec2.internal cannot run vllm/vllm-openai:v0.32.0 "
                            "(CUDA 13.x needs R580+)"),
    ("driver-unknown", lambda c: _gpu(c, drop=preflight.DRIVER_MAJOR_LABELS), None, "driver", WARNING,
     "unknown driver on ip-10-0-1-17.ec2.internal"),
    ("gpu-disk-too-small", lambda c: _gpu(c, disk="18Gi"), None, "disk", ERROR,
     "too little allocatable ephemeral-storage on ip-10-0-1-17.ec2.internal (18 GiB, needs 40)"),
    ("storage-class-missing", lambda c: c.storage_classes.pop(1), None, "storage", ERROR,
     "StorageClass gp3 is missing"),
    ("no-default-storage-class", lambda c: c.storage_classes.pop(0), {"storage_class": None}, "storage", ERROR,
     "no default StorageClass"),
    ("lb-controller-missing", lambda c: c.deployments.clear(), None, "load-balancer", ERROR,
     "Deployment kube-system/aws-load-balancer-controller is missing"),
    ("lb-controller-unavailable", lambda c: c.deployments.update({
        ("kube-system", "aws-load-balancer-controller"): ks.deployment("kube-system", "aws-load-balancer-controller",
                                                                       available=0)}),
     None, "load-balancer", ERROR, "aws-load-balancer-controller has no available replica"),
    ("token-missing", lambda c: c.secrets.clear(), None, "token", ERROR,
     "Secret ragbench-api-token is missing in ragbench - kubectl -n ragbench create secret generic"),
    ("token-without-key", lambda c: c.secrets.update({("ragbench", "ragbench-api-token"): ks.secret(
        "ragbench", "ragbench-api-token", {"api-key": "x"})}), None, "token", ERROR, "has no key token"),
    ("pull-secret-missing", lambda c: c.secrets.pop(("ragbench", "regcred")), {"image_pull_secret": "regcred"},
     "pull-secret", ERROR,
     "image pull secret regcred is missing in ragbench - kubectl -n ragbench create secret docker-registry"),
    ("pull-secret-wrong-type", lambda c: c.secrets.update({("ragbench", "regcred"): ks.secret(
        "ragbench", "regcred", {"password": "x"})}), {"image_pull_secret": "regcred"}, "pull-secret", ERROR,
     "Secret regcred is of type Opaque, not kubernetes.io/dockerconfigjson"),
    ("store-secret-missing", lambda c: c.secrets.pop(("ragbench", "store-keys")),
     {"results_store_secret": "store-keys"}, "store-secret", ERROR,
     "results store Secret store-keys is missing in ragbench - kubectl -n ragbench create secret generic store-keys"),
    ("nodes-forbidden", lambda c: c.forbidden.add("/api/v1/nodes"), None, "nodes", WARNING,
     "cannot read nodes (GPU, driver and disk are not checked) (forbidden)"),
]


@pytest.mark.parametrize("breaks,change,check,level,says", [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_each_finding(standin, eks, breaks, change, check, level, says):
    e = replace(eks, **(change or {}))
    if e.image_pull_secret:
        _add_pull_secret(standin.cluster, e.image_pull_secret)
    if e.results_store_secret:
        standin.cluster.secrets[("ragbench", e.results_store_secret)] = ks.secret(
            "ragbench", e.results_store_secret, {"AWS_ACCESS_KEY_ID": "a2V5"})
    assert [f.line() for f in run(standin, e) if f.level != OK] == [], "the unbroken cluster must pass"
    breaks(standin.cluster)
    findings = run(standin, e)
    mine = [f for f in findings if f.check == check and f.level != OK]
    assert len(mine) == 1, [f.line() for f in findings]
    assert mine[0].level == level
    assert says in mine[0].message
    if level == ERROR:
        assert " - " in mine[0].message  # what is wrong - how to fix it
    others = [f.line() for f in findings if f is not mine[0] and f.level != OK]
    assert others == []


def _add_pull_secret(c: ks.StandInCluster, name: str) -> None:
    c.secrets[("ragbench", name)] = ks.secret("ragbench", name, {".dockerconfigjson": '{"auths":{"ghcr.io":'
                                                                 '{"auth":"dTpw"}}}'},
                                              type_="kubernetes.io/dockerconfigjson")


def test_a_pull_secret_that_exists_passes(standin, eks):
    _add_pull_secret(standin.cluster, "regcred")
    findings = run(standin, replace(eks, image_pull_secret="regcred"))
    assert [f.line() for f in findings if f.check == "pull-secret"] == ["OK      pull-secret: image pull secret "
                                                                        "regcred exists"]


def test_the_kubectl_skew_allows_one_minor_either_way(standin, eks, kubectl_minor):
    for minor in (kubectl_minor - 1, kubectl_minor + 1):
        standin.cluster.version = ks.version_info(minor)
        assert [f.level for f in run(standin, eks) if f.check == "kubectl"] == [OK]


def test_a_cuda_12_image_runs_on_an_older_driver(standin, eks):
    ks_nodes = standin.cluster
    _gpu(ks_nodes, labels={"nvidia.com/cuda.driver-version.major": "550", "nvidia.com/cuda.driver.major": "550"})
    findings = run(standin, replace(eks, vllm_image="vllm/vllm-openai:v0.32.0-cu129"))
    assert [f.line() for f in findings if f.check == "driver"] == [
        "OK      driver: driver R550 on ip-10-0-1-17.ec2.internal runs CUDA 12.x (needs R525+)"]


def test_an_unreachable_api_is_one_finding_and_quick(standin, eks):
    standin.server.stop()
    t0 = time.monotonic()
    findings = run(standin, eks)
    elapsed = time.monotonic() - t0
    assert [(f.level, f.check) for f in findings] == [(ERROR, "api")]
    assert findings[0].message.startswith("the API server did not answer (")
    assert findings[0].message.endswith("- check the Airflow connection's kubeconfig, the cluster endpoint and "
                                        "its network access")
    assert elapsed < 60  # bounded by the call timeouts, not by how long anyone waits


def test_a_slow_api_stops_at_the_budget(standin, eks):
    standin.cluster.delay_s = 0.3
    t0 = time.monotonic()
    findings = run(standin, eks, budget_s=1.0)
    elapsed = time.monotonic() - t0
    # what the budget cut short is an error that says so: preflight never passes by not looking
    assert any(f.level == ERROR and "time budget is spent" in f.message for f in findings)
    assert elapsed < 30  # a budget of 1 s plus calls already in flight, never the 66 reviews in sequence


def test_an_api_that_never_answers_cannot_hold_preflight(standin, eks):
    standin.cluster.hang_paths.add("/version")  # the connection is accepted, the answer takes a minute
    t0 = time.monotonic()
    findings = run(standin, eks, budget_s=2.0)
    elapsed = time.monotonic() - t0
    # the call's read timeout ends it, or, should the client retry, the run's own cut-off does
    assert [(f.level, f.check) for f in findings] in ([(ERROR, "api")], [(ERROR, "budget")]), findings
    assert "Timeout" in findings[0].message or "did not finish within 2 s" in findings[0].message
    assert elapsed < 40  # the budget plus one read timeout, not the client's retries of a minute-long call


def test_a_cordoned_node_needs_no_disk(standin, eks):
    small = ks.node("ip-10-0-9-9.ec2.internal", disk="8Gi")
    small["spec"]["unschedulable"] = True
    standin.cluster.nodes.append(ks.validated(small))
    assert [f.line() for f in run(standin, eks) if f.check == "disk"] == [
        "OK      disk: 3 node(s) have room for the images"]


def test_quantities_and_versions():
    assert preflight.quantity_bytes("95Gi") == 95 * 2**30
    assert preflight.quantity_bytes("20959212Ki") == 20959212 * 1024
    assert preflight.quantity_bytes("100G") == 100e9
    assert preflight.quantity_bytes("1e3") == 1000
    assert preflight.quantity_bytes(None) == 0
    assert preflight.minor_of("v1.33.5-eks-3025e55") == 33
    assert preflight.minor_of("1.37.1") == 37
    assert preflight.minor_of("1.33+") == 33
    assert preflight.cuda_major_of("vllm/vllm-openai:v0.32.0") == preflight.DEFAULT_VLLM_CUDA
    assert preflight.cuda_major_of("vllm/vllm-openai:v0.32.0-cu129") == 12
    assert preflight.cuda_major_of("vllm/vllm-openai:v0.32.0-cu130@sha256:" + "a" * 64) == 13
    assert preflight.cuda_major_of(None) is None


# --- the identity the bootstrap gives the connection ----------------------------------------------------

BOOTSTRAP = Path(__file__).resolve().parents[2] / "k8s" / "bootstrap"


def _bootstrapped(standin, *airflow_files: str) -> None:
    """The stand-in authorizes like the API server, with the bootstrap's Roles as the only grants."""
    standin.cluster.policy = ks.rbac_policy({
        None: ks.grants_of([BOOTSTRAP / f for f in airflow_files]),
        RUNNER: ks.grants_of([BOOTSTRAP / "runner-rbac.yaml"]),
    })
    standin.cluster.enforce_rbac = True


def test_the_bootstrap_connection_role_alone_gives_warnings_never_errors(standin, eks):
    """A cluster prepared as k8s/bootstrap says is not failed for what its connection may not read."""
    _bootstrapped(standin, "airflow-rbac.yaml")
    findings = run(standin, eks)
    assert [f.line() for f in findings if f.level == ERROR] == []
    warned = [f.check for f in findings if f.level == WARNING]
    assert warned == ["namespace", "runner", "runner", "kuberay", "nodes", "storage", "load-balancer", "token"]
    assert all("(forbidden) - grant the connection's identity read access (k8s/bootstrap/optional/"
               "preflight-rbac.yaml)" in f.message or "localsubjectaccessreviews" in f.message
               for f in findings if f.level == WARNING)
    assert [f.level for f in findings if f.check == "access"] == [OK]  # its own verbs are all there


def test_with_the_optional_preflight_role_every_check_gives_a_verdict(standin, eks):
    _bootstrapped(standin, "airflow-rbac.yaml", "optional/preflight-rbac.yaml")
    findings = run(standin, eks)
    assert [f.line() for f in findings if f.level != OK] == []
    # and it still catches what it is for: a runner Role missing a verb
    standin.cluster.policy = ks.rbac_policy({
        None: ks.grants_of([BOOTSTRAP / "airflow-rbac.yaml", BOOTSTRAP / "optional" / "preflight-rbac.yaml"]),
        RUNNER: [g for g in ks.grants_of([BOOTSTRAP / "runner-rbac.yaml"]) if "replicasets" not in g.resources],
    })
    assert [f.line() for f in run(standin, eks) if f.level != OK] == [
        "ERROR   runner: ragbench-runner may not get replicasets.apps, list replicasets.apps, watch "
        "replicasets.apps in ragbench - kubectl apply -k k8s/bootstrap (runner-rbac.yaml)"]
