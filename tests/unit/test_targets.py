"""The targets config: validation, lookups, and one-line error messages."""

from __future__ import annotations

import textwrap

import pytest

from ragbench.errors import RagbenchError
from ragbench.paths import config_dir
from ragbench.targets import load_targets

pytestmark = pytest.mark.unit

VALID = """\
targets:
  - name: local
    kind: local
    provider: local
    region: this-machine
  - name: aws-eks
    kind: kubernetes
    provider: aws-eks
    region: us-east-1
    connection_id: kube_aws_eks
    overlay: k8s/overlays/aws-eks
    node_pools:
      - name: gpu
        instance_type: g5.xlarge
        count: 1
        gpu: true
        pricing_key: gpu_node
      - name: system
        instance_type: m6i.large
        pricing_key: cpu_node
    gpu_node_selector:
      nvidia.com/gpu.present: "true"
"""


def write(tmp_path, text: str):
    path = tmp_path / "targets.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def error_of(path) -> str:
    with pytest.raises(RagbenchError) as info:
        load_targets(path)
    message = str(info.value)
    assert "\n" not in message, f"not one line: {message!r}"
    assert info.value.__cause__ is None  # raised `from None`: no chained traceback for the user
    return message


def test_valid_file(tmp_path):
    config = load_targets(write(tmp_path, VALID))
    assert config.names() == ["local", "aws-eks"]
    local = config.get("local")
    assert (local.kind, local.provider, local.region) == ("local", "local", "this-machine")
    assert local.namespace == "ragbench"  # default
    assert local.node_pools == []
    eks = config.get("aws-eks")
    assert eks.kind == "kubernetes"
    assert eks.connection_id == "kube_aws_eks"
    assert eks.overlay == "k8s/overlays/aws-eks"
    assert [(p.name, p.instance_type, p.count, p.gpu, p.pricing_key) for p in eks.node_pools] == [
        ("gpu", "g5.xlarge", 1, True, "gpu_node"), ("system", "m6i.large", 1, False, "cpu_node")]
    assert eks.gpu_node_selector == {"nvidia.com/gpu.present": "true"}


def test_checked_in_targets_file_is_valid():
    config = load_targets(config_dir() / "targets.yaml")
    assert "local" in config.names()
    assert config.get("local").kind == "local"


def test_unknown_target_lists_known_names(tmp_path):
    config = load_targets(write(tmp_path, VALID))
    with pytest.raises(RagbenchError) as info:
        config.get("gcp-gke")
    assert str(info.value) == "target 'gcp-gke' is not in the targets config (known: local, aws-eks)"


def test_missing_file(tmp_path):
    message = error_of(tmp_path / "nope.yaml")
    assert message.startswith(f"cannot read targets config {tmp_path / 'nope.yaml'}")
    assert "No such file or directory" in message


def test_bad_yaml_is_one_line_with_the_position(tmp_path):
    # the flow sequence opened on line 3 is never closed: the parser notices at the end (line 4, col 1)
    path = write(tmp_path, "targets:\n  - name: local\n    kind: [local\n")
    assert error_of(path) == f"{path} is not valid YAML at line 4, column 1: expected ',' or ']', but got '<stream end>'"


def test_tab_indentation_is_reported_with_its_position(tmp_path):
    path = write(tmp_path, "targets:\n\t- name: local\n")
    message = error_of(path)
    assert message.startswith(f"{path} is not valid YAML at line 2, column 1: ")
    assert "cannot start any token" in message


def test_missing_kind_names_the_field(tmp_path):
    path = write(tmp_path, """\
        targets:
          - name: local
            provider: local
        """)
    assert error_of(path) == f"{path}: targets.0.kind: Field required"


def test_wrong_kind_names_the_field(tmp_path):
    path = write(tmp_path, """\
        targets:
          - name: local
            kind: local
            provider: local
          - name: box
            kind: docker
            provider: local
        """)
    assert error_of(path) == f"{path}: targets.1.kind: Input should be 'local' or 'kubernetes'"


def test_duplicate_names(tmp_path):
    path = write(tmp_path, """\
        targets:
          - {name: local, kind: local, provider: local}
          - {name: local, kind: local, provider: other}
        """)
    assert error_of(path) == f"{path}: target names must be unique"


@pytest.mark.parametrize("name", ["Local", "aws_eks", "-aws", "aws-", "a" * 43, ""])
def test_bad_name_pattern(tmp_path, name):
    path = write(tmp_path, f"targets:\n  - {{name: '{name}', kind: local, provider: local}}\n")
    message = error_of(path)
    assert message.startswith(f"{path}: targets.0.name: String should match pattern")


@pytest.mark.parametrize("name", ["a", "a1", "aws-eks", "x" * 42])
def test_good_names(tmp_path, name):
    path = write(tmp_path, f"targets:\n  - {{name: '{name}', kind: local, provider: local}}\n")
    assert load_targets(path).names() == [name]


def test_negative_node_count_names_the_nested_field(tmp_path):
    path = write(tmp_path, """\
        targets:
          - name: lke
            kind: kubernetes
            provider: akamai-lke
            node_pools:
              - {name: gpu, instance_type: g1, count: -1, pricing_key: gpu_node}
        """)
    assert error_of(path) == f"{path}: targets.0.node_pools.0.count: Input should be greater than or equal to 0"


def test_empty_file_is_an_error(tmp_path):
    message = error_of(write(tmp_path, ""))
    assert "Input should be a valid dictionary" in message


def test_source_ranges_and_pull_secret(tmp_path):
    text = VALID.replace("    gpu_node_selector:", "    image: registry.example.com/ragbench-workload@sha256:" + "ab" * 32 +
                         "\n    image_pull_secret: regcred\n    load_balancer_source_ranges: [203.0.113.7, 2001:db8::/48]"
                         "\n    gpu_node_selector:")
    eks = load_targets(write(tmp_path, text)).get("aws-eks")
    assert eks.load_balancer_source_ranges == ["203.0.113.7/32", "2001:db8::/48"]  # a bare address is one host
    assert eks.image_pull_secret == "regcred"
    bad = VALID.replace("    gpu_node_selector:", "    load_balancer_source_ranges: [the-office]\n    gpu_node_selector:")
    assert "'the-office' is not an IP network" in error_of(write(tmp_path, bad))
