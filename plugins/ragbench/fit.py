"""Do a target's pods fit its node pools? A scheduling check over every placement the scheduler may pick.

The nodes come from the target's node pools (config/targets.yaml) and the node-type table
(config/node_types.yaml): allocatable CPU and memory after the provider's documented reservations
and a budget for its per-node add-ons, GPUs, the root disk, the labels and the GPU taint. The pods
come from the rendered overlay (Deployments, StatefulSets, the RayService's head and workers) and
from the step pods as KubernetesPodOperator builds them. A node stores each image once, whatever the
number of pods that run it (the Ray pods, the iperf3 server, the step pods: one workload image).

A phase is a list of pods created in order (the workload, then the step pod that runs beside it).
The check walks every node each pod could be put on, not only the one a scheduler would prefer:
the proof holds whatever the scoring chooses. A pod fits a node when the node's labels satisfy its
nodeSelector, it tolerates the node's NoSchedule taints, the node has the CPU, memory, GPUs and
disk left, and no required pod anti-affinity (its own, or a placed pod's) forbids the node.

Phases: ``deploy`` (the deploy pod, then the workload it applies), one per later step (the workload
and that step's pod; for North-South, its N client pods), and ``redeploy``: a deploy over a kept
deployment (``keep_deployment``), where the rolling update adds a surge pod per RollingUpdate
Deployment and KubeRay starts a whole new Ray cluster beside the old one before it switches over.

Pure: plain dicts in (rendered manifests, serialized pods), findings out; no Kubernetes client.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ragbench.errors import RagbenchError
from ragbench.paths import config_dir
from ragbench.targets import Target

GPU = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU, "value": "present", "effect": "NoSchedule"}
HOSTNAME = "kubernetes.io/hostname"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
DISK_HEADROOM = 1.2  # images and emptyDirs take at most 1/1.2 of the root disk: logs and the OS need room
GIB, MIB = 1024**3, 1024**2


# --- quantities -----------------------------------------------------------------------------------

_SUFFIX = {"Ki": 1024, "Mi": MIB, "Gi": GIB, "Ti": 1024**4, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "": 1}


def cpu_millis(value: str | int | float | None) -> int:
    if value in (None, ""):
        return 0
    text = str(value)
    if text.endswith("m"):
        return int(text[:-1])
    return int(math.ceil(float(text) * 1000))


def mem_bytes(value: str | int | float | None) -> int:
    if value in (None, ""):
        return 0
    m = re.fullmatch(r"([0-9.]+)([KMGT]i?|k)?", str(value))
    if not m:
        raise RagbenchError(f"not a memory quantity: {value!r}")
    return int(float(m.group(1)) * _SUFFIX[m.group(2) or ""])


@dataclass(frozen=True)
class Resources:
    cpu_m: int = 0
    mem: int = 0  # bytes
    gpus: int = 0
    disk: int = 0  # bytes of root disk (a pod's emptyDirs; a node's images are counted once per node)

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu_m + other.cpu_m, self.mem + other.mem, self.gpus + other.gpus,
                         self.disk + other.disk)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpu_m - other.cpu_m, self.mem - other.mem, self.gpus - other.gpus,
                         self.disk - other.disk)

    def covers(self, need: Resources) -> bool:
        return (self.cpu_m >= need.cpu_m and self.mem >= need.mem and self.gpus >= need.gpus
                and self.disk >= need.disk)

    def __str__(self) -> str:
        text = f"{self.cpu_m}m CPU, {self.mem / MIB:.0f}Mi memory"
        if self.gpus:
            text += f", {self.gpus} GPU"
        return text + f", {self.disk / GIB:.1f}Gi disk"


# --- nodes ----------------------------------------------------------------------------------------


def _tiered(amount: float, tiers: list[tuple[float, float]]) -> float:
    """Sum of rate x the part of ``amount`` in each (width, rate) tier; the last tier is unbounded."""
    reserved, left = 0.0, amount
    for width, rate in tiers:
        part = min(left, width)
        reserved += part * rate
        left -= part
        if left <= 0:
            break
    return reserved


# The providers' rules (config/node_types.yaml cites them).
CPU_TIERS = [(1, 0.06), (1, 0.01), (2, 0.005), (math.inf, 0.0025)]  # cores
GKE_MEMORY_TIERS = [(4, 0.25), (4, 0.20), (8, 0.10), (112, 0.06), (math.inf, 0.02)]  # GiB
EVICTION_MIB = 100


def reserved(rule: str, vcpu: int, memory_gib: float, max_pods: int | None) -> Resources:
    cpu_m = int(math.ceil(_tiered(vcpu, CPU_TIERS) * 1000))
    if rule in ("gke", "lke"):
        mem = _tiered(memory_gib, GKE_MEMORY_TIERS) * GIB
    elif rule == "eks":
        if not max_pods:
            raise RagbenchError("the eks reservation needs the node type's max_pods")
        mem = (255 + 11 * max_pods) * MIB
    else:
        raise RagbenchError(f"unknown reservation rule {rule!r} (known: eks, gke, lke)")
    return Resources(cpu_m, int(mem) + EVICTION_MIB * MIB)


@dataclass
class Node:
    name: str
    pool: str
    labels: dict[str, str]
    taints: list[dict]
    allocatable: Resources
    pods: list[Pod] = field(default_factory=list)

    def images(self) -> dict[str, int]:
        """The images on the node's disk (each stored once, however many pods run it)."""
        return {image: size for p in self.pods for image, size in p.images}

    def free(self) -> Resources:
        used = Resources(disk=sum(self.images().values()))
        for p in self.pods:
            used = used + p.requests
        return self.allocatable - used

    def need(self, pod: Pod) -> Resources:
        """What the pod takes here: its requests and the images the node does not hold yet."""
        have = self.images()
        return pod.requests + Resources(disk=sum(size for image, size in pod.images if image not in have))


def load_node_types(path: Path | None = None) -> dict:
    path = path or config_dir() / "node_types.yaml"
    try:
        return yaml.safe_load(path.read_text())
    except OSError as exc:
        raise RagbenchError(f"cannot read the node-type table {path}: {exc.strerror}") from None


def nodes_of(target: Target, table: dict) -> list[Node]:
    """One Node per node of each of the target's pools, as the scheduler would see it."""
    provider = table.get(target.provider)
    if provider is None:
        raise RagbenchError(f"{target.name}: provider {target.provider} is not in the node-type table")
    overhead = Resources(cpu_millis(provider["daemonsets"]["cpu"]), mem_bytes(provider["daemonsets"]["memory"]))
    nodes = []
    for pool in target.node_pools:
        spec = provider["node_types"].get(pool.instance_type)
        if spec is None:
            raise RagbenchError(f"{target.name}: node type {pool.instance_type} of pool {pool.name} is not in "
                                f"the node-type table (config/node_types.yaml, {target.provider})")
        disk_gib = pool.disk_gib or spec.get("disk_gib") or provider.get("root_disk_gib") or 0
        capacity = Resources(spec["vcpu"] * 1000, int(spec["memory_gib"] * GIB), int(spec.get("gpus", 0)),
                             int(disk_gib * GIB / DISK_HEADROOM))
        allocatable = capacity - reserved(provider["reservation"], spec["vcpu"], spec["memory_gib"],
                                          spec.get("max_pods")) - overhead
        labels = {INSTANCE_TYPE: pool.instance_type, **(spec.get("labels") or {})}
        taints = [dict(GPU_TAINT)] if pool.gpu else []
        for i in range(pool.count):
            name = f"{pool.name}-{i + 1}"
            nodes.append(Node(name, pool.name, {**labels, HOSTNAME: name}, taints, allocatable))
    return nodes


# --- pods -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pod:
    name: str
    labels: dict[str, str]
    requests: Resources
    node_selector: dict[str, str]
    tolerations: tuple[dict, ...]
    anti_affinity: tuple[dict, ...]  # required terms with topologyKey kubernetes.io/hostname
    images: tuple[tuple[str, int], ...] = ()  # (image, bytes on disk)

    def tolerates(self, taint: dict) -> bool:
        for t in self.tolerations:
            if t.get("effect") not in (None, "", taint["effect"]):
                continue
            if t.get("operator") == "Exists" and t.get("key") in (None, "", taint["key"]):
                return True
            if t.get("key") == taint["key"] and t.get("value") == taint.get("value"):
                return True
        return False


def _image_disk(image: str, table: dict) -> int:
    sizes = table.get("image_disk_gib") or {}
    repo = image.split("@", 1)[0].rsplit(":", 1)[0] if "/" in image or ":" in image else image
    for key, gib in sizes.items():
        if repo == key or repo.endswith("/" + key) or repo.rsplit("/", 1)[-1] == key:
            return int(gib * GIB)
    raise RagbenchError(f"image {image} has no size in the node-type table (image_disk_gib)")


def _matches(selector: dict, labels: dict) -> bool:
    match = selector.get("matchLabels") or {}
    if selector.get("matchExpressions"):
        raise RagbenchError("fit check: matchExpressions in anti-affinity are not supported")
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def pod_from_spec(name: str, labels: dict, spec: dict, table: dict) -> Pod:
    """A pod's scheduling demand from a pod spec (a template's or a built pod's)."""
    total = Resources()
    images = set()
    for c in spec.get("containers", []):
        req = (c.get("resources") or {}).get("requests") or (c.get("resources") or {}).get("limits") or {}
        total = total + Resources(cpu_millis(req.get("cpu")), mem_bytes(req.get("memory")), int(req.get(GPU, 0)))
        images.add(c["image"])
    disk = 0
    for v in spec.get("volumes") or []:
        empty = v.get("emptyDir")
        if empty is not None and empty.get("medium") != "Memory":
            disk += mem_bytes(empty.get("sizeLimit") or 0)
    anti = (spec.get("affinity") or {}).get("podAntiAffinity") or {}
    terms = tuple(t for t in anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []
                  if t.get("topologyKey") == HOSTNAME)
    return Pod(name, dict(labels or {}), total + Resources(disk=disk), dict(spec.get("nodeSelector") or {}),
               tuple(spec.get("tolerations") or []), terms, tuple((i, _image_disk(i, table)) for i in sorted(images)))


def workload_pods(objects: list[dict], table: dict, suffix: str = "") -> list[Pod]:
    """The pods a rendered overlay runs, one per replica."""
    pods = []
    for o in objects:
        kind, name = o["kind"], o["metadata"]["name"]
        if kind in ("Deployment", "StatefulSet"):
            t = o["spec"]["template"]
            for i in range(o["spec"].get("replicas", 1)):
                pods.append(pod_from_spec(f"{name}-{i}{suffix}", t["metadata"].get("labels"), t["spec"], table))
        elif kind == "RayService":
            rc = o["spec"]["rayClusterConfig"]
            head = rc["headGroupSpec"]["template"]
            pods.append(pod_from_spec(f"{name}-head{suffix}", head["metadata"].get("labels"), head["spec"], table))
            for g in rc.get("workerGroupSpecs", []):
                t = g["template"]
                for i in range(g.get("replicas", 1)):
                    pods.append(pod_from_spec(f"{name}-{g['groupName']}-{i}{suffix}", t["metadata"].get("labels"),
                                              t["spec"], table))
    return pods


def surge_pods(objects: list[dict], table: dict) -> list[Pod]:
    """What a rolling update adds beside the running pods (a deploy over a kept deployment)."""
    pods = []
    for o in objects:
        kind, name = o["kind"], o["metadata"]["name"]
        if kind == "Deployment":
            strategy = o["spec"].get("strategy") or {}
            if strategy.get("type", "RollingUpdate") != "RollingUpdate":
                continue
            replicas = o["spec"].get("replicas", 1)
            surge = (strategy.get("rollingUpdate") or {}).get("maxSurge", "25%")
            if isinstance(surge, str) and surge.endswith("%"):
                n = math.ceil(replicas * int(surge[:-1]) / 100)  # Kubernetes rounds a surge percentage up
            else:
                n = int(surge)
            t = o["spec"]["template"]
            pods += [pod_from_spec(f"{name}-surge-{i}", t["metadata"].get("labels"), t["spec"], table)
                     for i in range(n)]
        elif kind == "RayService":
            upgrade = ((o["spec"].get("upgradeStrategy") or {}).get("type")) or "NewCluster"
            if upgrade != "None":  # KubeRay's zero-downtime upgrade: a second Ray cluster until the switch
                pods += workload_pods([o], table, suffix="-new")
        # StatefulSets replace pods one at a time (no surge); Recreate Deployments stop first.
    return pods


def step_pod(step: str, pod: dict, table: dict, copy: int | None = None) -> Pod:
    """A step pod, from the serialized V1Pod that KubernetesPodOperator builds (``copy``: which of
    the North-South client Job's pods)."""
    name = f"step:{step}" if copy is None else f"step:{step}[{copy}]"
    return pod_from_spec(name, pod["metadata"].get("labels"), pod["spec"], table)


# --- the search -----------------------------------------------------------------------------------


def why_not(pod: Pod, node: Node) -> str | None:
    """None if ``pod`` fits on ``node`` now, else the first reason it does not."""
    for k, v in pod.node_selector.items():
        if node.labels.get(k) != v:
            return f"nodeSelector {k}={v}"
    for taint in node.taints:
        if not pod.tolerates(taint):
            return f"taint {taint['key']}"
    for term in pod.anti_affinity:
        if any(_matches(term["labelSelector"], p.labels) for p in node.pods):
            return "anti-affinity"
    for p in node.pods:  # a placed pod's required anti-affinity keeps this one away too
        if any(_matches(term["labelSelector"], pod.labels) for term in p.anti_affinity):
            return f"anti-affinity of {p.name}"
    need = node.need(pod)
    if not node.free().covers(need):
        return f"needs {need}, {node.free()} free"
    return None


def _describe(nodes: list[Node]) -> str:
    return "; ".join(f"{n.name}: {', '.join(p.name for p in n.pods) or 'empty'} ({n.free()} free)" for n in nodes)


def _twins(a: Pod, b: Pod) -> bool:
    """Pods the scheduler cannot tell apart (copies of one template, e.g. a Job's pods)."""
    return (a.labels, a.requests, a.node_selector, a.tolerations, a.anti_affinity, a.images) == \
        (b.labels, b.requests, b.node_selector, b.tolerations, b.anti_affinity, b.images)


def unschedulable(pods: list[Pod], nodes: list[Node], limit: int = 200_000) -> str | None:
    """None when every pod, created in order, finds a node whichever nodes the earlier ones took;
    else a description of the first placement that leaves a pod without a node.

    Copies of one template in a row are interchangeable: which copy went where does not change what
    is left, so only how many copies each node took is walked (copy i goes to a node at or after copy
    i-1's), which keeps N client pods from multiplying the placements by nodes**N."""
    budget = [limit]

    def walk(i: int, first: int = 0) -> str | None:
        if i == len(pods):
            return None
        budget[0] -= 1
        if budget[0] < 0:
            raise RagbenchError(f"fit check: more than {limit} placements to try; simplify the phase")
        pod = pods[i]
        fitting = [k for k, n in enumerate(nodes) if why_not(pod, n) is None]
        if not fitting:
            reasons = ", ".join(f"{n.name}: {why_not(pod, n)}" for n in nodes)
            return f"{pod.name} fits no node ({reasons}) when {_describe(nodes)}"
        for k in fitting:
            if k < first:
                continue  # the same placement as one already walked, with the copies swapped
            nodes[k].pods.append(pod)
            try:
                twin_next = i + 1 < len(pods) and _twins(pod, pods[i + 1])
                problem = walk(i + 1, k if twin_next else 0)
            finally:
                nodes[k].pods.pop()
            if problem:
                return problem
        return None

    return walk(0)


def phases(objects: list[dict], step_pods: dict[str, dict], table: dict,
           client_pods: int = 1) -> dict[str, list[Pod]]:
    """Phase name -> the pods it creates, in order (see the module docstring). The North-South step
    runs as ``client_pods`` copies of its pod (ragbench.client_job), all at once."""
    workload = workload_pods(objects, table)
    out = {}
    if "deploy" in step_pods:
        deploy = step_pod("deploy", step_pods["deploy"], table)
        out["deploy"] = [deploy] + workload  # the deploy pod is there first: it applies the rest
        out["redeploy"] = workload + [deploy] + surge_pods(objects, table)
    for name, pod in step_pods.items():
        if name == "deploy":
            continue
        if name == "north_south" and client_pods > 1:
            out[f"{name} ({client_pods} client pods)"] = workload + [step_pod(name, pod, table, i)
                                                                    for i in range(client_pods)]
        else:
            out[name] = workload + [step_pod(name, pod, table)]
    return out


def check_target(target: Target, objects: list[dict], step_pods: dict[str, dict],
                 table: dict | None = None, client_pods: int = 1) -> list[str]:
    """One line per phase in which some pod finds no node, or [] when everything fits."""
    table = table if table is not None else load_node_types()
    nodes = nodes_of(target, table)
    findings = []
    for phase, pods in phases(objects, step_pods, table, client_pods).items():
        problem = unschedulable(pods, nodes)
        if problem:
            findings.append(f"{target.name} {phase}: {problem}")
    return findings


def max_client_pods(target: Target, objects: list[dict], step_pods: dict[str, dict], table: dict | None = None,
                    limit: int = 64) -> int:
    """The most North-South client pods that schedule beside the workload whatever the placements
    (0: not even one), up to ``limit`` (the client_pods param's maximum)."""
    table = table if table is not None else load_node_types()
    nodes = nodes_of(target, table)
    ns = {"north_south": step_pods["north_south"]}
    best = 0
    for n in range(1, limit + 1):
        pods = next(iter(phases(objects, ns, table, n).values()))
        if unschedulable(pods, nodes) is not None:
            break
        best = n
    return best
