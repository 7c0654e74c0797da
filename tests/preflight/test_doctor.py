"""`ragbench doctor <target>` through the target's Airflow connection (a kubeconfig for the stand-in
API server), what preflight expects of each overlay, and the lists of verbs it asks about."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import kube_standin as ks
import pytest
import yaml

from ragbench import cli, preflight
from ragbench.targets import load_targets

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_doctor_passes_a_healthy_cluster_through_the_airflow_connection(eks_connection, capsys):
    t0 = time.monotonic()
    rc = cli.main(["doctor", "aws-eks"])
    elapsed = time.monotonic() - t0
    out = capsys.readouterr().out.splitlines()
    assert rc == 0, out
    assert all(line.startswith("OK ") for line in out[:-1]), out
    assert out[-1] == "aws-eks: 0 error(s), 0 warning(s), 12 check(s) passed"
    # the overlay's own vLLM image was compared with the node's driver
    assert any("driver R580 on ip-10-0-1-17.ec2.internal runs CUDA" in line for line in out)
    assert elapsed < 60  # "well under a minute", with Airflow's and the client's imports included
    assert ("GET", "/version/") in eks_connection.cluster.requests or ("GET", "/version") in \
        eks_connection.cluster.requests


def test_doctor_exits_non_zero_on_an_error_and_names_it(eks_connection, capsys):
    eks_connection.cluster.secrets.clear()
    eks_connection.cluster.crds.clear()
    rc = cli.main(["doctor", "aws-eks"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 1
    errors = [line for line in out if line.startswith("ERROR")]
    assert [line.split(":")[0] for line in errors] == ["ERROR   kuberay", "ERROR   token"]
    assert out[-1] == "aws-eks: 2 error(s), 0 warning(s), 10 check(s) passed"


def test_doctor_with_a_kubeconfig_instead_of_the_connection(standin, capsys, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_RAGBENCH_AWS_EKS", raising=False)
    assert cli.main(["doctor", "aws-eks", "--kubeconfig", str(standin.kubeconfig)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("0 error(s), 0 warning(s), 12 check(s) passed")


def test_doctor_without_a_connection_says_how_to_add_it(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW_CONN_RAGBENCH_GCP_GKE", raising=False)
    monkeypatch.setenv("RAGBENCH_STATE_DIR", str(tmp_path))  # an Airflow home without connections
    assert cli.main(["doctor", "gcp-gke"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ERROR   connection: cannot use the Airflow connection 'ragbench_gcp_gke': ")
    assert out[0].endswith("- add the cluster's kubeconfig as that Kubernetes connection")


def test_doctor_refuses_a_local_target(capsys):
    assert cli.main(["doctor", "local"]) == 1
    assert "local is a local target: doctor checks kubernetes targets" in capsys.readouterr().err


# --- what preflight expects, against the rest of the project --------------------------------------------


@pytest.mark.parametrize("target", [t for t in load_targets().targets if t.kind == "kubernetes"],
                         ids=lambda t: t.name)
def test_expectations_follow_the_rendered_overlay(target):
    e = preflight.expectations(target)
    facts = preflight.overlay_facts(target.overlay)
    assert facts["vllm_image"].startswith("vllm/vllm-openai:")
    assert e.vllm_image == facts["vllm_image"]
    # the fallback table (used where the manifests are not on the machine) agrees with the overlays
    assert preflight.STORAGE_CLASS[target.provider] == facts["storage_class"] == e.storage_class
    assert e.gpu_node_selector == target.gpu_node_selector and e.namespace == target.namespace
    assert (e.lb_controller is not None) == (target.provider == "aws-eks")


def test_expectations_in_the_airflow_images_layout(tmp_path, monkeypatch):
    """In the Airflow image the package is installed away from the manifests: RAGBENCH_K8S_DIR
    (docker/airflow.Dockerfile) is where the preflight finds the overlays to render."""
    import shutil

    target = next(t for t in load_targets().targets if t.kind == "kubernetes")
    copy = tmp_path / "opt-airflow-k8s"
    shutil.copytree(REPO / "k8s", copy)
    monkeypatch.setenv("RAGBENCH_K8S_DIR", str(copy))
    assert preflight.expectations(target).vllm_image.startswith("vllm/vllm-openai:")
    monkeypatch.setenv("RAGBENCH_K8S_DIR", str(tmp_path / "nowhere"))
    assert preflight.expectations(target).vllm_image is None  # then the driver check can only warn


def test_the_runner_kubectl_is_the_one_the_image_installs():
    # the preflight compares the cluster with the kubectl the workload image really installs
    dockerfile = (REPO / "docker" / "workload.Dockerfile").read_text()
    assert re.findall(r"^ARG KUBECTL_VERSION=(\S+)$", dockerfile, re.M) == [preflight.runner_kubectl_version()]
    assert "ENV KUBECTL=/usr/local/bin/kubectl" in dockerfile  # and the CLI runs that one


def _rules(path: Path) -> set[tuple[str, str, str, str]]:
    role = next(d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "Role")
    out = set()
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                name, _, sub = resource.partition("/")
                out |= {(group, name, sub, verb) for verb in rule["verbs"]}
    return out


def _needs(table) -> set[tuple[str, str, str, str]]:
    return {(g, r, s, v) for g, r, s, verbs, *_name in table for v in verbs}


def test_the_runner_verbs_asked_are_those_the_bootstrap_grants():
    assert _needs(preflight.RUNNER_NEEDS) == _rules(REPO / "k8s" / "bootstrap" / "runner-rbac.yaml")


def test_the_connection_verbs_asked_are_granted_by_the_bootstrap():
    assert _needs(preflight.CONNECTION_NEEDS) <= _rules(REPO / "k8s" / "bootstrap" / "airflow-rbac.yaml")


def test_the_stand_in_answers_are_schema_valid():
    """The stand-in refuses to serve an object its kind's schema rejects (so the tests cannot drift
    into shapes no API server returns)."""
    bad = ks.node("n1")
    bad["spec"]["unschedulable"] = "no"  # a boolean in the API
    with pytest.raises(Exception):
        ks.validated(json.loads(json.dumps(bad)))
    with pytest.raises(Exception):
        ks.validated({**ks.namespace("x"), "spec": {"finalizer": ["kubernetes"]}})  # unknown field
