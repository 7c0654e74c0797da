"""A stand-in Kubernetes API server for the preflight tests (no cluster can run here).

It answers the few paths preflight calls with objects shaped as the API server returns them
(kind, apiVersion, metadata, spec, status), each validated against the Kubernetes OpenAPI schema
(kubernetes-validate, strict: unknown fields are errors) when it is put in place, and errors as
the API's ``Status`` objects. Access reviews are answered by a policy function. A kubeconfig points
the real kubernetes client at it, so the whole client code path runs.

``healthy_cluster`` builds a cluster on which every check passes; each test breaks one thing.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import kubernetes_validate
import yaml

K8S_VERSION = kubernetes_validate.latest_version()
NOW = "2026-12-02T17:00:00Z"
VERSION_KEYS = {"major", "minor", "gitVersion", "gitCommit", "gitTreeState", "buildDate", "goVersion", "compiler",
                "platform"}


_VALID_SHAPES: set[str] = set()


def _shape(value):
    """The object's structure: keys, list lengths and leaf types, with string values kept only for
    the fields that select a schema (apiVersion, kind), so that answers differing only in names or
    verbs are validated once (a validation takes about 0.1 s)."""
    if isinstance(value, dict):
        return {k: (v if k in ("apiVersion", "kind") else _shape(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return type(value).__name__


def validated(obj: dict) -> dict:
    """The object, after checking it against the schema of its kind (raises if it does not fit)."""
    key = json.dumps(_shape(obj), sort_keys=True)
    if key not in _VALID_SHAPES:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        _VALID_SHAPES.add(key)
    return obj


# --- objects, as the API returns them ---------------------------------------------------------------


def version_info(minor: int) -> dict:
    info = {"major": "1", "minor": f"{minor}+", "gitVersion": f"v1.{minor}.5-eks-3025e55",
            "gitCommit": "3025e55a2b5e0b8a6c2d4e0f1b7c9d1e2f3a4b5c", "gitTreeState": "clean",
            "buildDate": "2026-11-01T10:00:00Z", "goVersion": "go1.25.3", "compiler": "gc",
            "platform": "linux/amd64"}
    assert set(info) == VERSION_KEYS  # the fields of version.Info
    return info


def namespace(name: str, phase: str = "Active") -> dict:
    return validated({"apiVersion": "v1", "kind": "Namespace",
                      "metadata": {"name": name, "uid": "0b6c1f0e-1", "resourceVersion": "101",
                                   "creationTimestamp": NOW, "labels": {"kubernetes.io/metadata.name": name}},
                      "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": phase}})


def service_account(ns: str, name: str) -> dict:
    return validated({"apiVersion": "v1", "kind": "ServiceAccount",
                      "metadata": {"name": name, "namespace": ns, "uid": "5d2a-1", "resourceVersion": "102",
                                   "creationTimestamp": NOW}})


def rayservice_crd(versions=(("v1", True, True),), established: bool = True) -> dict:
    return validated({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "rayservices.ray.io", "uid": "77aa-1", "resourceVersion": "103", "creationTimestamp": NOW,
                     "annotations": {"controller-gen.kubebuilder.io/version": "v0.16.4"}},
        "spec": {"group": "ray.io", "scope": "Namespaced",
                 "names": {"kind": "RayService", "listKind": "RayServiceList", "plural": "rayservices",
                           "singular": "rayservice"},
                 "versions": [{"name": n, "served": served, "storage": storage,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}},
                               "subresources": {"status": {}}} for n, served, storage in versions]},
        "status": {"acceptedNames": {"kind": "RayService", "listKind": "RayServiceList", "plural": "rayservices",
                                     "singular": "rayservice"},
                   "storedVersions": [n for n, _, storage in versions if storage],
                   "conditions": [{"type": "NamesAccepted", "status": "True", "lastTransitionTime": NOW,
                                   "reason": "NoConflicts", "message": "no conflicts found"},
                                  {"type": "Established", "status": "True" if established else "False",
                                   "lastTransitionTime": NOW, "reason": "InitialNamesAccepted",
                                   "message": "the initial names have been accepted"}]},
    })


def node(name: str, *, labels: dict | None = None, gpus: int = 0, disk: str = "95Gi", ready: bool = True,
         allocatable_gpus: int | None = None, taints: list | None = None) -> dict:
    capacity = {"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": disk}
    allocatable = {"cpu": "3920m", "memory": "14Gi", "pods": "110", "ephemeral-storage": disk}
    if gpus:
        capacity["nvidia.com/gpu"] = str(gpus)
        allocatable["nvidia.com/gpu"] = str(gpus if allocatable_gpus is None else allocatable_gpus)
    base_labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
    return validated({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "uid": f"{name}-uid", "resourceVersion": "200", "creationTimestamp": NOW,
                     "labels": {**base_labels, **(labels or {})}},
        "spec": {"providerID": f"aws:///us-east-1a/i-{abs(hash(name)) % 10**12:012d}", "taints": taints or []},
        "status": {
            "capacity": capacity, "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False", "lastHeartbeatTime": NOW,
                            "lastTransitionTime": NOW, "reason": "KubeletReady" if ready else "KubeletNotReady",
                            "message": "kubelet is posting ready status"}],
            "addresses": [{"type": "InternalIP", "address": "10.0.1.17"}, {"type": "Hostname", "address": name}],
            "nodeInfo": {"architecture": "amd64", "bootID": "b-1", "containerRuntimeVersion": "containerd://2.1.4",
                         "kernelVersion": "6.12.40", "kubeProxyVersion": "", "kubeletVersion": "v1.33.5-eks",
                         "machineID": "m-1", "operatingSystem": "linux", "osImage": "Amazon Linux 2023",
                         "systemUUID": "ec2-1"},
        },
    })


def node_list(nodes: list[dict]) -> dict:
    return validated({"apiVersion": "v1", "kind": "NodeList", "metadata": {"resourceVersion": "300"},
                      "items": nodes})


def storage_class(name: str, provisioner: str = "ebs.csi.aws.com", default: bool = False) -> dict:
    meta = {"name": name, "uid": f"{name}-uid", "resourceVersion": "400", "creationTimestamp": NOW}
    if default:
        meta["annotations"] = {"storageclass.kubernetes.io/is-default-class": "true"}
    return validated({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": meta,
                      "provisioner": provisioner, "reclaimPolicy": "Delete",
                      "volumeBindingMode": "WaitForFirstConsumer", "allowVolumeExpansion": True})


def storage_class_list(classes: list[dict]) -> dict:
    return validated({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClassList",
                      "metadata": {"resourceVersion": "401"}, "items": classes})


def deployment(ns: str, name: str, available: int = 2) -> dict:
    labels = {"app.kubernetes.io/name": name}
    status = {"observedGeneration": 1, "replicas": 2, "readyReplicas": available, "updatedReplicas": 2}
    if available:
        status["availableReplicas"] = available
    else:
        status["unavailableReplicas"] = 2
    return validated({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "uid": f"{name}-uid", "resourceVersion": "500",
                     "generation": 1, "creationTimestamp": NOW, "labels": labels},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "controller",
                                                       "image": f"public.ecr.aws/eks/{name}:v2.14.1"}]}}},
        "status": status,
    })


def secret(ns: str, name: str, data: dict[str, str], type_: str = "Opaque") -> dict:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return validated({"apiVersion": "v1", "kind": "Secret", "type": type_, "data": encoded,
                      "metadata": {"name": name, "namespace": ns, "uid": f"{name}-uid", "resourceVersion": "600",
                                   "creationTimestamp": NOW}})


def status(code: int, reason: str, message: str, kind: str = "", name: str = "") -> dict:
    """The API's error body (metav1.Status; not in the schemas kubernetes-validate ships)."""
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    if name:
        body["details"] = {"name": name, "kind": kind}
    return body


# --- RBAC, as the API server's authorizer applies it ------------------------------------------------


class Grant:
    """One rule of a Role (``namespace`` set) or a ClusterRole bound cluster-wide (``namespace`` None)."""

    def __init__(self, rule: dict, namespace: str | None) -> None:
        self.groups, self.resources, self.verbs = rule["apiGroups"], rule["resources"], rule["verbs"]
        self.names = rule.get("resourceNames") or []
        self.namespace = namespace

    def allows(self, group: str, resource: str, namespace: str | None, name: str | None, verb: str) -> bool:
        if group not in self.groups or resource not in self.resources or verb not in self.verbs:
            return False
        if self.names and name not in self.names:  # a list or create is never limited to names
            return False
        return self.namespace is None or self.namespace == namespace


def grants_of(paths: list[Path], default_namespace: str = "ragbench") -> list[Grant]:
    """The rules of every Role and ClusterRole in these files (each is bound to the identity the
    tests give them to: the files bind them to ragbench-airflow or ragbench-runner)."""
    grants = []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc["kind"] not in ("Role", "ClusterRole"):
                continue
            ns = None if doc["kind"] == "ClusterRole" else doc["metadata"].get("namespace", default_namespace)
            grants += [Grant(rule, ns) for rule in doc["rules"]]
    return grants


def allowed(grants: list[Grant], attrs: dict) -> bool:
    resource = attrs.get("resource", "") + (f"/{attrs['subresource']}" if attrs.get("subresource") else "")
    return any(g.allows(attrs.get("group", ""), resource, attrs.get("namespace") or None, attrs.get("name"),
                        attrs["verb"]) for g in grants)


def rbac_policy(identities: dict[str | None, list[Grant]]) -> Callable[[str | None, dict], bool]:
    """A policy from RBAC grants per user (None: the identity making the requests)."""
    return lambda user, attrs: allowed(identities.get(user, []), attrs)


# What each GET the checks make asks of the authorizer: (pattern, group, resource, namespaced, verb).
GET_ATTRIBUTES = [
    (r"/api/v1/nodes", "", "nodes", False, "list"),
    (r"/apis/storage.k8s.io/v1/storageclasses", "storage.k8s.io", "storageclasses", False, "list"),
    (r"/api/v1/namespaces/([^/]+)", "", "namespaces", False, "get"),
    (r"/api/v1/namespaces/([^/]+)/serviceaccounts/([^/]+)", "", "serviceaccounts", True, "get"),
    (r"/api/v1/namespaces/([^/]+)/secrets/([^/]+)", "", "secrets", True, "get"),
    (r"/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)", "apps", "deployments", True, "get"),
    (r"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/([^/]+)", "apiextensions.k8s.io",
     "customresourcedefinitions", False, "get"),
]


def request_attributes(method: str, path: str) -> dict | None:
    """The resource attributes of a request (None: a non-resource path such as /version)."""
    if method == "POST":
        m = re.fullmatch(r"/apis/authorization.k8s.io/v1/namespaces/([^/]+)/localsubjectaccessreviews", path)
        if m:
            return {"group": "authorization.k8s.io", "resource": "localsubjectaccessreviews",
                    "namespace": m.group(1), "verb": "create"}
        return None  # SelfSubjectAccessReview: every authenticated user may (system:basic-user)
    for pattern, group, resource, namespaced, verb in GET_ATTRIBUTES:
        if m := re.fullmatch(pattern, path):
            groups = m.groups()
            if namespaced:
                return {"group": group, "resource": resource, "namespace": groups[0], "name": groups[1],
                        "verb": verb}
            return {"group": group, "resource": resource, "name": groups[0] if groups else None, "verb": verb}
    return None


# --- the cluster and its server ----------------------------------------------------------------------

Policy = Callable[[str | None, dict], bool]  # (user under review or None for self, resourceAttributes)


def allow_all(_user, _attrs) -> bool:
    return True


class StandInCluster:
    """What the stand-in serves; tests change these fields before (or between) calls."""

    def __init__(self) -> None:
        self.version: dict = version_info(33)
        self.namespaces: dict[str, dict] = {}
        self.service_accounts: dict[tuple[str, str], dict] = {}
        self.crds: dict[str, dict] = {}
        self.nodes: list[dict] = []
        self.storage_classes: list[dict] = []
        self.deployments: dict[tuple[str, str], dict] = {}
        self.secrets: dict[tuple[str, str], dict] = {}
        self.policy: Policy = allow_all
        self.enforce_rbac = False  # when True, every request is also authorized by ``policy``
        self.forbidden: set[str] = set()  # path prefixes answered 403
        self.requests: list[tuple[str, str]] = []
        self.server_errors: list[str] = []
        self.delay_s = 0.0
        self.hang_paths: set[str] = set()  # answered only after a minute (an API server under load)


def _route(cluster: StandInCluster, method: str, path: str, body: dict | None) -> tuple[int, dict]:
    for prefix in cluster.forbidden:
        if path.startswith(prefix):
            return 403, status(403, "Forbidden", f'{path} is forbidden: User "system:serviceaccount:ragbench:'
                                                 f'ragbench-airflow" cannot get this resource')
    path = path.rstrip("/") or "/"
    attrs = request_attributes(method, path) if cluster.enforce_rbac else None
    if attrs is not None and not cluster.policy(None, attrs):
        return 403, status(403, "Forbidden", f'{attrs["resource"]} is forbidden: User "system:serviceaccount:'
                                             f'ragbench:ragbench-airflow" cannot {attrs["verb"]} this resource')
    if method == "GET" and path == "/version":
        return 200, cluster.version
    if method == "GET" and path == "/api/v1/nodes":
        return 200, node_list(cluster.nodes)
    if method == "GET" and path == "/apis/storage.k8s.io/v1/storageclasses":
        return 200, storage_class_list(cluster.storage_classes)
    if method == "POST" and path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews":
        return 201, _review(cluster, body, None)
    if method == "POST" and (m := re.fullmatch(r"/apis/authorization.k8s.io/v1/namespaces/([^/]+)/"
                                               r"localsubjectaccessreviews", path)):
        return 201, _review(cluster, body, body["spec"].get("user"), m.group(1))
    lookups = [
        (r"/api/v1/namespaces/([^/]+)", lambda m: cluster.namespaces.get(m[0]), "namespaces"),
        (r"/api/v1/namespaces/([^/]+)/serviceaccounts/([^/]+)", lambda m: cluster.service_accounts.get(m),
         "serviceaccounts"),
        (r"/api/v1/namespaces/([^/]+)/secrets/([^/]+)", lambda m: cluster.secrets.get(m), "secrets"),
        (r"/apis/apps/v1/namespaces/([^/]+)/deployments/([^/]+)", lambda m: cluster.deployments.get(m),
         "deployments.apps"),
        (r"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/([^/]+)", lambda m: cluster.crds.get(m[0]),
         "customresourcedefinitions.apiextensions.k8s.io"),
    ]
    if method == "GET":
        for pattern, find, kind in lookups:
            if m := re.fullmatch(pattern, path):
                found = find(m.groups())
                if found is None:
                    name = m.groups()[-1]
                    return 404, status(404, "NotFound", f'{kind} "{name}" not found', kind.split(".")[0], name)
                return 200, found
    return 404, status(404, "NotFound", "the server could not find the requested resource")


def _review(cluster: StandInCluster, body: dict, user: str | None, ns: str | None = None) -> dict:
    if body.get("apiVersion") != "authorization.k8s.io/v1" or body.get("kind") not in (
            "SelfSubjectAccessReview", "LocalSubjectAccessReview"):
        raise ValueError(f"not an access review: {body}")
    attrs = body["spec"]["resourceAttributes"]
    allowed = cluster.policy(user, attrs)
    answer = copy.deepcopy(body)
    answer["metadata"] = {"namespace": ns} if ns else {}
    answer["status"] = {"allowed": allowed}
    if allowed:
        answer["status"]["reason"] = 'RBAC: allowed by RoleBinding "ragbench-airflow/ragbench"'
    return validated(answer)


class _Handler(BaseHTTPRequestHandler):
    cluster: StandInCluster

    def _answer(self, method: str) -> None:
        import time

        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.cluster.requests.append((method, path))  # type: ignore[attr-defined]
        if path.rstrip("/") in self.server.cluster.hang_paths:  # type: ignore[attr-defined]
            time.sleep(60)
        if self.server.cluster.delay_s:  # type: ignore[attr-defined]
            time.sleep(self.server.cluster.delay_s)  # type: ignore[attr-defined]
        try:
            code, obj = _route(self.server.cluster, method, path, body)  # type: ignore[attr-defined]
        except Exception as exc:  # a request the stand-in does not expect: the test sees it
            self.server.cluster.server_errors.append(f"{method} {path}: {exc}")  # type: ignore[attr-defined]
            code, obj = 500, status(500, "InternalError", str(exc))
        data = json.dumps(obj).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a hung request)
            pass

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        self._answer("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._answer("POST")

    def log_message(self, *args) -> None:
        pass


class StandInServer:
    """The stand-in on 127.0.0.1 (a free port), in a thread; ``kubeconfig(path)`` writes a kubeconfig."""

    def __init__(self, cluster: StandInCluster) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.cluster = cluster  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> StandInServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def write_kubeconfig(path: Path, server_url: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "standin",
        "clusters": [{"name": "standin", "cluster": {"server": server_url}}],
        "users": [{"name": "airflow", "user": {"token": "standin-token"}}],
        "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "airflow",
                                                     "namespace": "ragbench"}}],
    }))
    return path


def healthy_cluster(*, server_minor: int, ns: str = "ragbench", gpu_labels: dict | None = None,
                    driver_major: int = 580) -> StandInCluster:
    """An EKS-like cluster ready for the aws-eks overlay: every check passes on it."""
    c = StandInCluster()
    c.version = version_info(server_minor)
    c.namespaces[ns] = namespace(ns)
    c.service_accounts[(ns, "ragbench-runner")] = service_account(ns, "ragbench-runner")
    c.crds["rayservices.ray.io"] = rayservice_crd()
    gfd = {"nvidia.com/gpu.present": "true", "nvidia.com/cuda.driver-version.major": str(driver_major),
           "nvidia.com/cuda.driver-version.minor": "95", "nvidia.com/cuda.driver.major": str(driver_major)}
    c.nodes = [
        node("ip-10-0-1-17.ec2.internal", gpus=1, disk="95Gi",
             labels={"node.kubernetes.io/instance-type": "g6.xlarge", **gfd, **(gpu_labels or {})},
             taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]),
        node("ip-10-0-2-31.ec2.internal", disk="75Gi", labels={"node.kubernetes.io/instance-type": "m7i.xlarge"}),
        node("ip-10-0-3-44.ec2.internal", disk="75Gi", labels={"node.kubernetes.io/instance-type": "m7i.xlarge"}),
    ]
    c.storage_classes = [storage_class("gp2", provisioner="kubernetes.io/aws-ebs", default=True),
                         storage_class("gp3")]
    c.deployments[("kube-system", "aws-load-balancer-controller")] = deployment("kube-system",
                                                                                "aws-load-balancer-controller")
    c.secrets[(ns, "ragbench-api-token")] = secret(ns, "ragbench-api-token", {"token": "s3cr3t-token-value"})
    return c
