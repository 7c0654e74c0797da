"""The targets config (config/targets.yaml): what each target is and how to reach it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError

from ragbench.errors import RagbenchError
from ragbench.paths import config_dir

NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$"


class NodePool(BaseModel):
    name: str
    instance_type: str
    count: int = Field(1, ge=0)
    gpu: bool = False
    pricing_key: str  # the component name in the cost file (e.g. gpu_node)


class Target(BaseModel):
    name: str = Field(pattern=NAME_PATTERN)
    kind: Literal["local", "kubernetes"]
    provider: str
    region: str | None = None
    usd_per_hour: float | None = Field(None, ge=0)  # local: a user-set price for this machine
    # Kubernetes targets
    connection_id: str | None = None  # an Airflow Kubernetes connection (kubeconfig)
    namespace: str = "ragbench"
    overlay: str | None = None  # e.g. k8s/overlays/aws-eks
    node_pools: list[NodePool] = Field(default_factory=list)
    gpu_node_selector: dict[str, str] = Field(default_factory=dict)
    prometheus_url: str | None = None


class TargetsConfig(BaseModel):
    targets: list[Target]

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
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "top level"
        raise RagbenchError(f"{path}: {where}: {err['msg']}") from None
    names = config.names()
    if len(set(names)) != len(names):
        raise RagbenchError(f"{path}: target names must be unique")
    return config
