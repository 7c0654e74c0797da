"""The targets config (config/targets.yaml): what each target is and how to reach it."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ragbench.errors import RagbenchError
from ragbench.paths import config_dir
from workload.errors import validation_summary

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$"
# The step pods' image: the release k8s/base/kustomization.yaml deploys (`images:`), which follows
# the project version (tests/dags/test_cluster_pods.py checks that they agree).
DEFAULT_WORKLOAD_IMAGE = "ghcr.io/ragbench/ragbench-workload:0.1.0"
# A tag or a digest, never an implicit or explicit `latest`.
PINNED_IMAGE = re.compile(r"^[^\s@]+(:(?!latest$)[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})$")


class NodePool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    instance_type: str
    count: int = Field(1, ge=0)
    gpu: bool = False
    pricing_key: str  # the component name in the cost file (e.g. gpu_node)
    # The nodes' root disk in GiB as the pool is created with it (images live there); unset: the
    # provider's default or the plan's own disk (config/node_types.yaml).
    disk_gib: int | None = Field(None, ge=1)


class Target(BaseModel):
    """One place the workload runs. Prices are not here: they live in config/costs.yaml by provider."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not silently ignored

    name: str = Field(pattern=NAME_PATTERN)
    kind: Literal["local", "kubernetes"]
    provider: str
    region: str | None = None
    # Kubernetes targets
    connection_id: str | None = None  # an Airflow Kubernetes connection (kubeconfig)
    namespace: str = Field("ragbench", pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    overlay: str | None = None  # e.g. k8s/overlays/aws-eks (the image's copy: $RAGBENCH_K8S_DIR/overlays/...)
    # The workload image, pinned (a digest is best): what the step pods, the Ray pods and the iperf3
    # server run on this target (the deploy step sets it on the manifests it applies).
    image: str = DEFAULT_WORKLOAD_IMAGE
    # A docker-registry Secret in the namespace to pull `image` with (a private registry).
    image_pull_secret: str | None = Field(None, pattern=r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
    # Who may reach the backend's load balancer (CIDRs). Unset: the orchestrator's own public address,
    # found when the deploy task runs (docs/kubernetes.md, "Who may reach the load balancer").
    load_balancer_source_ranges: list[str] | None = Field(None, min_length=1)
    node_pools: list[NodePool] = Field(default_factory=list)
    gpu_node_selector: dict[str, str] = Field(default_factory=dict)
    # The cluster's Prometheus (e.g. http://prometheus.monitoring:9090 as the North-South client
    # reaches it): GPU (DCGM exporter), CPU and memory of the namespace over the benchmark window
    # are stored with the results (docs/telemetry.md). Unset: no cluster telemetry.
    prometheus_url: str | None = Field(None, pattern=r"^https?://\S+$")
    # An object store for the result documents (any fsspec URL: s3://bucket/prefix, gs://..., file://...):
    # step pods write each document there and XCom carries only a reference (docs/kubernetes.md,
    # "Results that travel"). Unset: the documents themselves go through XCom.
    results_store: str | None = Field(None, pattern=r"^[a-z][a-z0-9+.-]*://\S+$")
    # The Airflow connection the orchestrator reads and writes the store with (an `aws` connection
    # for s3://, whose extra may name an S3-compatible endpoint_url). Unset: the scheme's default
    # credentials of the environment (e.g. an instance role).
    results_store_conn_id: str | None = None
    # A Secret in the namespace whose keys the step pods get as environment variables, e.g.
    # AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL_S3 for an S3-compatible store
    # (Linode Object Storage, GCS's XML API). Unset: the pods' ServiceAccount identity (EKS IRSA).
    results_store_secret: str | None = Field(None, pattern=r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")

    @field_validator("image")
    @classmethod
    def _image_is_pinned(cls, value: str) -> str:
        if not PINNED_IMAGE.match(value):
            raise ValueError(f"image {value!r} is not pinned: give a release tag (not latest) or a digest")
        return value

    @field_validator("load_balancer_source_ranges")
    @classmethod
    def _ranges_are_networks(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        out = []
        for item in value:
            try:
                out.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP network (e.g. 203.0.113.7/32)") from None
        return out

    @model_validator(mode="before")
    @classmethod
    def _prices_moved(cls, data):
        if isinstance(data, dict) and "usd_per_hour" in data:
            raise ValueError("usd_per_hour is no longer read here: prices live in config/costs.yaml, "
                             "by provider (the local machine's under provider local)")
        return data

    @model_validator(mode="after")
    def _results_store_is_for_clusters(self):
        if self.results_store and self.kind != "kubernetes":
            raise ValueError(f"results_store applies to kubernetes targets; {self.name!r} is {self.kind} "
                             "(its documents are files in the state folder already)")
        if not self.results_store and (self.results_store_conn_id or self.results_store_secret):
            raise ValueError(f"{self.name!r}: results_store_conn_id and results_store_secret need results_store")
        return self

    @model_validator(mode="after")
    def _kubernetes_needs_a_cluster(self):
        if self.kind == "kubernetes":
            missing = [f for f in ("connection_id", "overlay") if not getattr(self, f)]
            if missing:
                raise ValueError(f"kubernetes target {self.name!r} needs {' and '.join(missing)} "
                                 "(the Airflow Kubernetes connection and the Kustomize overlay to apply)")
        return self


class TargetsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    targets: list[Target]
    # What the DAG's `targets` param selects when nobody chooses (the nightly schedule). Unset: the
    # targets of kind local, so a checked-in cloud target costs nothing until someone opts in.
    default_targets: list[str] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _defaults_are_known(self):
        if self.default_targets is None:
            self.default_targets = list(dict.fromkeys(t.name for t in self.targets if t.kind == "local"))
            if not self.default_targets:
                raise ValueError("default_targets is required when no target is of kind local: name the "
                                 "targets a run benchmarks when nobody chooses (the nightly schedule)")
        unknown = [n for n in self.default_targets if n not in self.names()]
        if unknown:
            raise ValueError(f"default_targets names unknown targets: {', '.join(unknown)} "
                             f"(known: {', '.join(self.names())})")
        if len(set(self.default_targets)) != len(self.default_targets):
            raise ValueError("default_targets lists a target twice")
        return self

    def names(self) -> list[str]:
        return [t.name for t in self.targets]

    def get(self, name: str) -> Target:
        for t in self.targets:
            if t.name == name:
                return t
        raise RagbenchError(f"target {name!r} is not in the targets config (known: {', '.join(self.names())})")


def load_targets(path: Path | None = None) -> TargetsConfig:
    path = path or config_dir() / "targets.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise RagbenchError(f"cannot read targets config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise RagbenchError(f"{path} is not valid YAML{where}: {problem}") from None
    try:
        config = TargetsConfig.model_validate(raw)
    except ValidationError as exc:
        raise RagbenchError(f"{path}: {validation_summary(exc)}") from None
    names = config.names()
    if len(set(names)) != len(names):
        raise RagbenchError(f"{path}: target names must be unique")
    return config
