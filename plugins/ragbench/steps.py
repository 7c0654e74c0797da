"""The benchmark's steps, defined once: a plain list rendered into tasks per target kind.

Each step is a command of the workload CLI that writes one JSON result document. The local
renderer (dags/rag_benchmark.py with ragbench.local_exec) runs it as a process of the workload
environment; the cluster renderer (ragbench.kpo) runs it in a pod of the workload image, started by
a KubernetesPodOperator. What a step needs on a cluster (its command, the pod's size, whether it
talks to the Kubernetes API) is declared here, next to its local command, so that no step is
defined twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from ragbench.run_params import default


@dataclass(frozen=True)
class Step:
    name: str  # the document's step name, also the key of its result
    task_id: str  # verb_noun
    local_command: str  # workload CLI command on the local target
    timeout_s: int  # execution timeout of the task
    is_teardown: bool = False
    # --- on a cluster target: a pod of the workload image runs `ragbench-workload <cluster_command>`
    cluster_command: str = ""
    cluster_timeout_s: int | None = None  # the task's execution timeout there (default: timeout_s)
    cluster_cpu: str = "250m"  # the pod's CPU and memory, requests = limits (Guaranteed QoS)
    cluster_memory: str = "384Mi"
    cluster_api_access: bool = False  # the pod calls the Kubernetes API (kubectl) as ragbench-runner
    # The step may run in the orchestrator process instead of a pod (a fixed vantage point outside
    # every cluster); the DAG param north_south_from chooses.
    orchestrator_option: bool = False
    # Only on the local target (a cluster group has no task for it).
    local_only: bool = False
    # An optional step: runs only when this DAG param is non-zero; skipped otherwise.
    enabled_by: str | None = None

    @property
    def cluster_timeout(self) -> int:
        return self.cluster_timeout_s or self.timeout_s


STEPS: tuple[Step, ...] = (
    # A first deploy on a fresh cluster pulls the vLLM image and downloads the model (minutes).
    Step("deploy", "deploy_workload", "deploy-local", timeout_s=1800,
         cluster_command="deploy-cluster", cluster_timeout_s=3600, cluster_api_access=True),
    Step("ingest", "ingest_corpus", "ingest", timeout_s=1800, cluster_command="ingest"),
    # As a pod: the load generator must not be the bottleneck it measures (one full core).
    Step("north_south", "run_north_south", "north-south", timeout_s=3600,
         cluster_command="north-south", cluster_cpu="1", cluster_memory="1Gi", orchestrator_option=True),
    # The iperf3 client gets a full core, like the server (k8s/base/iperf3-server.yaml); it looks up
    # the server pod's node with kubectl.
    Step("east_west", "run_east_west", "east-west", timeout_s=900,
         cluster_command="east-west", cluster_cpu="1", cluster_memory="512Mi", cluster_api_access=True),
    # Optional (param browser_requests): questions through the service's chat page in headless Chromium,
    # the browser vantage point; its own scenario next to the load generator's (docs/metrics.md).
    Step("browser_north_south", "run_browser_north_south", "browser-north-south", timeout_s=1800,
         local_only=True, enabled_by="browser_requests"),
    Step("teardown", "teardown_workload", "teardown-local", timeout_s=300, is_teardown=True,
         cluster_command="teardown-cluster", cluster_timeout_s=1200, cluster_api_access=True),
)

STEP_BY_NAME = {s.name: s for s in STEPS}
MEASURING_STEPS = ("ingest", "north_south", "east_west")

# Measuring steps of different targets never overlap: target groups run in parallel, and on one
# orchestrator two load generators (or a load generator and the local stack) take each other's CPU,
# so each would measure the other's interference. One slot: one measuring step at a time, across
# targets and DAG runs. The pool must exist where the DAG runs (a task in a missing pool is never
# scheduled): docker-compose.yaml's airflow-init, `ragbench airflow up` and `ragbench run` create it
# (docs/operations.md).
MEASURE_POOL = "ragbench_measure"
MEASURE_POOL_SLOTS = 1
MEASURE_POOL_DESCRIPTION = "ragbench: one measuring step (ingest, north-south, east-west) at a time across targets"


def measures(step: Step) -> bool:
    """The step measures the workload: the fixed measuring steps, and every optional step (each is
    an extra vantage point, such as the browser's)."""
    return step.name in MEASURING_STEPS or step.enabled_by is not None


def measure_pool(step_name: str, target_kind: str) -> str | None:
    """The pool of a step's task, None for Airflow's default pool. The measuring steps of every
    target are in :data:`MEASURE_POOL`; so is the local target's deploy, which starts vLLM and Ray
    on the orchestrator's own CPU for minutes. A cluster's deploy is not: it waits on the cluster
    (up to an hour on a cold one) and would hold the only slot while using no local CPU."""
    if measures(STEP_BY_NAME[step_name]) or (step_name == "deploy" and target_kind == "local"):
        return MEASURE_POOL
    return None


def measure_pool_command() -> list[str]:
    """The `airflow` arguments that create (or reset) the measuring pool."""
    return ["pools", "set", MEASURE_POOL, str(MEASURE_POOL_SLOTS), MEASURE_POOL_DESCRIPTION]


def north_south_config(params: dict) -> dict:
    """The load generator's config (workload.bench.northsouth.NorthSouthConfig) from DAG params; a
    param the run does not set takes its default from ragbench.run_params."""

    def get(name: str):
        value = params.get(name)
        return default(name) if value is None else value

    mode = get("load_mode")
    if mode == "poisson":
        strategy = {"type": "poisson", "rate_rps": get("rate_rps"), "seed": get("seed")}
    elif mode == "sweep":
        strategy = {"type": "sweep", "levels": sorted(set(get("sweep_levels"))),
                    "slo_attainment_target": get("slo_attainment_target")}
    else:
        strategy = {"type": "concurrent", "concurrency": get("concurrency")}
    return {
        "endpoint_kind": "rag",
        "strategy": strategy,
        "stop": {"max_requests": get("requests"), "max_duration_s": get("max_duration_s")},
        "warmup_requests": get("warmup_requests"),
        "max_tokens": get("max_tokens"),
        "k": get("k"),
        "cache": get("cache"),
        "slo": {"ttft_ms": get("slo_ttft_ms"), "tpot_ms": get("slo_tpot_ms"), "e2e_ms": get("slo_e2e_ms")},
        "seed": get("seed"),
        "workers": get("workers"),
    }
