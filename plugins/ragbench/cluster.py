"""What a step needs on a cluster target, as plain data: the pod's command line and labels, and the
North-South benchmark run from the orchestrator.

Pure functions of the step, the target, the run's params and the deploy document. The operator
(ragbench.kpo) calls them when its task renders; the tests call them directly. Nothing here talks
to a cluster or imports the Kubernetes client.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re

from ragbench import client_job
from ragbench.errors import RagbenchError
from ragbench.local_exec import step_argv
from ragbench.results_store import is_reference, resolve, run_prefix
from ragbench.steps import STEP_BY_NAME, Step, north_south_config
from ragbench.targets import Target

log = logging.getLogger("ragbench.cluster")

WORKLOAD_CLI = "ragbench-workload"  # the workload image's entry point
XCOM_RETURN = "/airflow/xcom/return.json"  # what KubernetesPodOperator's XCom sidecar reads
RUNNER_SERVICE_ACCOUNT = "ragbench-runner"  # k8s/bootstrap/runner-rbac.yaml
API_TOKEN_SECRET, API_TOKEN_KEY = "ragbench-api-token", "token"  # optional Secret
# Optional Secret: the bearer token of the cluster's Prometheus (a target's `prometheus_url`).
PROMETHEUS_TOKEN_SECRET, PROMETHEUS_TOKEN_KEY = "ragbench-prometheus-token", "token"
# The workload's names (k8s/base, docs/kubernetes.md "Names other parts of the project rely on").
IN_CLUSTER_BACKEND_URL = "http://ragbench-backend-serve-svc:8000"
# vLLM's own /metrics (the Service in k8s/base/vllm.yaml): its TTFT and ITL histograms are scraped
# around the load when North-South runs in a client pod (the orchestrator cannot reach it).
IN_CLUSTER_LLM_METRICS_URL = "http://vllm:8000/metrics"
IPERF3_SERVICE, IPERF3_PORT = "iperf3-server", 5201
IPERF3_SERVER_LABELS = {"app.kubernetes.io/name": "iperf3-server", "app.kubernetes.io/component": "east-west"}
BACKEND_LABELS = {"app.kubernetes.io/name": "ragbench-backend"}

# A pod may wait this long to be scheduled and started: the first step pod on a node pulls the
# workload image (several GB: Ray, torch, the embedder).
POD_STARTUP_TIMEOUT_S = 600
# The CLI inside the pod gets the task's time minus the pod's start-up and a margin, so that it
# reports its own one-line timeout before Airflow kills the task.
CLI_MARGIN_S = 60
# How long the North-South client first waits for the public endpoint's /readyz: a cloud load
# balancer admits its first targets minutes after the Service got its address (AWS NLB: 3-5 min).
PUBLIC_READY_TIMEOUT_S = 600

NORTH_SOUTH_FROM = ("orchestrator", "cluster")
# Where the orchestrator learns its own public address when a target sets no source ranges: a
# service that answers the caller's address as plain text. RAGBENCH_ORCHESTRATOR_CIDR skips it.
PUBLIC_ADDRESS_URL = "https://checkip.amazonaws.com"
PUBLIC_ADDRESS_TIMEOUT_S = 10
LABEL_PREFIX = "ragbench.io"


def label_value(value: str) -> str:
    """A valid label value (<= 63 of [A-Za-z0-9_.-], alphanumeric at both ends) that stays unique.

    Run ids such as ``manual__2026-11-27T04:10:43.628483+00:00`` are not valid label values: the
    invalid characters become ``-`` and, whenever anything changed, a short hash of the original
    keeps two different values from colliding (the untouched value is in an annotation).
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", value)
    safe = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", safe)
    if safe == value and len(safe) <= 63:
        return safe
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    head = re.sub(r"[^A-Za-z0-9]+$", "", safe[:54])
    return f"{head}-{digest}" if head else digest


def pod_name(target: Target, step: Step) -> str:
    """The pod's name before KubernetesPodOperator's random suffix (a DNS-1123 label)."""
    return f"ragbench-{target.name}-{step.name.replace('_', '-')}"[:50].rstrip("-")


def pod_labels(target: Target, step: Step, run_id: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "ragbench-step",
        "app.kubernetes.io/component": label_value(step.name.replace("_", "-")),
        "app.kubernetes.io/part-of": "ragbench",
        "app.kubernetes.io/managed-by": "airflow",
        f"{LABEL_PREFIX}/target": label_value(target.name),
        f"{LABEL_PREFIX}/step": label_value(step.name),
    }
    if run_id is not None:
        labels[f"{LABEL_PREFIX}/run-id"] = label_value(run_id)
    return labels


def cli_timeout_s(step: Step) -> int:
    return max(step.cluster_timeout - POD_STARTUP_TIMEOUT_S - CLI_MARGIN_S, 60)


def north_south_from(params: dict) -> str:
    value = params.get("north_south_from") or "orchestrator"
    if value not in NORTH_SOUTH_FROM:
        raise RagbenchError(f"north_south_from must be one of {', '.join(NORTH_SOUTH_FROM)}, not {value!r}")
    return value


def deploy_endpoint(target: str, deploy_doc: dict | None) -> str:
    """The public endpoint the deploy step reported (its document's data.endpoint; the document is
    read from the results store when the step returned a reference to it)."""
    conn_id = None
    if is_reference(deploy_doc):  # read with the target's store connection
        from ragbench.targets import load_targets

        conn_id = load_targets().get(target).results_store_conn_id
    endpoint = ((resolve(deploy_doc, conn_id) or {}).get("data") or {}).get("endpoint")
    if not endpoint:
        raise RagbenchError(f"the deploy step of {target} reported no public endpoint "
                            "(no deploy document in XCom, or one without data.endpoint)")
    return endpoint


def pod_arguments(step: Step, target: Target, params: dict, deploy_doc: dict | None = None,
                  run_id: str | None = None, *, ranges: list[str] | None = None, shards: int = 1,
                  start_at: float | None = None) -> list[str]:
    """The workload CLI arguments of a step's pod (the container's args; its command is the CLI).

    The measurement arguments are those of the local target (ragbench.local_exec.step_argv), so a
    step measures the same thing wherever it runs; only how to reach the workload differs. The
    deploy step's load balancer source ranges are ``ranges`` when given, else :func:`source_ranges`.
    With a results store (and the run id), the pod writes its document there and only a reference
    to XCom. The North-South client runs as ``shards`` pods starting together at ``start_at``
    (ragbench.client_job), each pod the shard of the Job index Kubernetes gives it.
    """
    head = [step.cluster_command, "--out", XCOM_RETURN]
    prefix = run_prefix(target, run_id) if run_id else None
    if step.name == "north_south":
        prefix = client_job.shard_results_store(prefix, shards)
    if prefix:
        head += ["--results-store", prefix]
    if step.name in ("deploy", "teardown"):
        args = ["--overlay", target.overlay, "--namespace", target.namespace, "--timeout", str(cli_timeout_s(step))]
        if step.name == "deploy":
            args += ["--backend-url", IN_CLUSTER_BACKEND_URL, "--image", target.image]
            if target.image_pull_secret:
                args += ["--image-pull-secret", target.image_pull_secret]
            for cidr in source_ranges(target) if ranges is None else ranges:
                args += ["--source-range", cidr]
        return head + args
    if step.name == "ingest":
        return head + step_argv("ingest", params, IN_CLUSTER_BACKEND_URL)
    if step.name == "north_south":  # a client pod measures through the public endpoint too
        return head + step_argv("north_south", params, deploy_endpoint(target.name, deploy_doc)) + [
            "--wait-ready", str(PUBLIC_READY_TIMEOUT_S), "--vantage", "cluster",
            "--llm-metrics-url", IN_CLUSTER_LLM_METRICS_URL] + prometheus_arguments(target) + \
            client_job.shard_arguments(shards, start_at)
    if step.name == "east_west":
        selector = ",".join(f"{k}={v}" for k, v in IPERF3_SERVER_LABELS.items())
        return head + ["--server", IPERF3_SERVICE, "--port", str(IPERF3_PORT), "--server-selector", selector,
                       "--namespace", target.namespace] + step_argv("east_west", params, None)
    raise RagbenchError(f"step {step.name!r} has no cluster rendering")


def source_ranges(target: Target) -> list[str]:
    """Who may reach the target's load balancer: its load_balancer_source_ranges, else the
    orchestrator's own public address (RAGBENCH_ORCHESTRATOR_CIDR, else asked of
    RAGBENCH_PUBLIC_ADDRESS_URL / PUBLIC_ADDRESS_URL), as a /32 or /128. Never open to everyone."""
    if target.load_balancer_source_ranges:
        return list(target.load_balancer_source_ranges)
    import ipaddress

    hint = (f"set load_balancer_source_ranges for target {target.name} in config/targets.yaml, or "
            "RAGBENCH_ORCHESTRATOR_CIDR")
    explicit = os.environ.get("RAGBENCH_ORCHESTRATOR_CIDR")
    if explicit:
        try:
            return [str(ipaddress.ip_network(c.strip(), strict=False)) for c in explicit.split(",") if c.strip()]
        except ValueError:
            raise RagbenchError(f"RAGBENCH_ORCHESTRATOR_CIDR={explicit!r} is not a list of IP networks") from None
    import httpx

    url = os.environ.get("RAGBENCH_PUBLIC_ADDRESS_URL") or PUBLIC_ADDRESS_URL
    try:
        answer = httpx.get(url, timeout=PUBLIC_ADDRESS_TIMEOUT_S, follow_redirects=True)
        answer.raise_for_status()
        address = ipaddress.ip_address(answer.text.strip())
    except (httpx.HTTPError, ValueError) as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
        raise RagbenchError(f"{target.name}: cannot find the orchestrator's public address at {url} ({reason}): "
                            f"{hint}") from None
    return [f"{address}/{address.max_prefixlen}"]


def prometheus_arguments(target: Target) -> list[str]:
    """The North-South step's cluster telemetry (docs/telemetry.md): the target's Prometheus, if set."""
    if not target.prometheus_url:
        return []
    return ["--prometheus-url", target.prometheus_url, "--prometheus-namespace", target.namespace]


def api_token(target: str) -> str | None:
    """The backend's bearer token as the orchestrator knows it: RAGBENCH_API_TOKEN_<TARGET> (e.g.
    RAGBENCH_API_TOKEN_AWS_EKS), else RAGBENCH_API_TOKEN, else none (the API is open)."""
    own = os.environ.get(f"RAGBENCH_API_TOKEN_{target.upper().replace('-', '_')}")
    return own or os.environ.get("RAGBENCH_API_TOKEN") or None


def run_north_south_from_orchestrator(target: str, params: dict, deploy_doc: dict | None, *,
                                      prometheus_url: str | None = None, namespace: str = "ragbench") -> dict:
    """The North-South benchmark from the orchestrator (one fixed vantage point outside every
    cluster) against the deploy step's public endpoint; the same document the CLI writes.

    The bearer token, if the cluster's backend wants one, comes from the orchestrator's
    environment (:func:`api_token`).
    """
    from pydantic import ValidationError

    from workload.bench.northsouth import NorthSouthConfig, run_north_south
    from workload.cluster import wait_ready
    from workload.errors import StepError, validation_summary
    from workload.results import now_iso, result_document

    endpoint = deploy_endpoint(target, deploy_doc)
    started = now_iso()
    try:
        config = NorthSouthConfig.model_validate(json.loads(json.dumps(north_south_config(params))))
    except ValidationError as exc:
        raise RagbenchError(f"north_south on {target}: bad load config: {validation_summary(exc)}") from None
    try:
        waited = wait_ready(f"{endpoint.rstrip('/')}/readyz", PUBLIC_READY_TIMEOUT_S)
        log.info("%s/readyz answered after %.1f s; starting the load", endpoint, waited)
        from workload.telemetry.collect import TelemetryPlan, run_with_telemetry
        from workload.telemetry.prometheus import PrometheusConfig

        plan = TelemetryPlan(prometheus=PrometheusConfig(prometheus_url, namespace=namespace, settle_s=15.0)
                             if prometheus_url else None)
        data = run_with_telemetry(lambda obs: run_north_south(endpoint, config, token=api_token(target),
                                                              observer=obs), plan)
    except StepError as exc:
        raise RagbenchError(f"north_south on {target} failed: {exc}") from None
    data["vantage"] = "orchestrator"
    return result_document(STEP_BY_NAME["north_south"].local_command, data, started_at=started)
