"""Cluster telemetry from the cluster's Prometheus: GPU, CPU and memory over the benchmark window.

Every query is a range query (``/api/v1/query_range``) over the window of the North-South run;
each returned series is one component (the value of the query's ``by`` label, e.g. the container),
summarized as min/mean/max over the points. The queries live in :data:`QUERIES`, in one place:
``{namespace}`` is replaced by the target's namespace. CPU is in percent of one core, like the
local process sampler, and memory in bytes, so that targets compare. ``{rate_window}`` is the range
of ``rate()``: at least four scrape intervals of the cluster's Prometheus (1m suits the usual 15 s).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import httpx

from workload.telemetry.stats import RunningStats, usage_row

SOURCE = "prometheus"
MAX_POINTS = 11_000  # Prometheus refuses a range query of more points per series


@dataclass(frozen=True)
class Query:
    metric: str  # the stored metric name
    unit: str
    expr: str  # PromQL; {namespace} and {rate_window} are filled in
    component_label: str  # the label naming the component in each returned series


QUERIES: tuple[Query, ...] = (
    # NVIDIA DCGM exporter (GPU operator); its pod attribution puts namespace/pod/container labels on
    # the GPU's series while a container holds the GPU.
    Query("gpu_util_percent", "percent",
          'max by (container) (DCGM_FI_DEV_GPU_UTIL{{namespace="{namespace}"}})', "container"),
    Query("gpu_memory_bytes", "bytes",  # DCGM reports framebuffer memory in MiB
          'sum by (container) (DCGM_FI_DEV_FB_USED{{namespace="{namespace}"}}) * 1048576', "container"),
    # cAdvisor (kubelet): per container, summed over the container's pods.
    Query("cpu_percent", "percent",
          'sum by (container) (rate(container_cpu_usage_seconds_total'
          '{{namespace="{namespace}", container!="", container!="POD"}}[{rate_window}])) * 100', "container"),
    Query("memory_bytes", "bytes",
          'sum by (container) (container_memory_working_set_bytes'
          '{{namespace="{namespace}", container!="", container!="POD"}})', "container"),
)


@dataclass(frozen=True)
class PrometheusConfig:
    url: str
    namespace: str = "ragbench"
    step_s: float = 5.0
    timeout_s: float = 30.0
    token: str | None = None  # bearer token, e.g. for a managed Prometheus
    settle_s: float = 0.0  # wait this long after the run, so the last scrape of the window is in
    rate_window: str = "1m"

    def render(self, query: Query) -> str:
        return query.expr.format(namespace=self.namespace, rate_window=self.rate_window)


def step_for(start: float, end: float, step_s: float) -> float:
    """The requested resolution, coarsened so that the window stays under MAX_POINTS points."""
    return max(step_s, math.ceil((end - start) / (MAX_POINTS - 1)), 0.001)


def query_range(client: httpx.Client, expr: str, start: float, end: float, step_s: float) -> list[dict]:
    """The matrix of one range query: [{"metric": labels, "values": [[t, "v"], ...]}, ...]."""
    r = client.get("/api/v1/query_range", params={"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                                 "step": f"{step_s:g}"})
    try:
        body = r.json()
    except ValueError:
        r.raise_for_status()
        raise
    if r.status_code != 200 or body.get("status") != "success":
        raise RuntimeError(f"HTTP {r.status_code}: {body.get('errorType')}: {body.get('error')}")
    data = body["data"]
    if data.get("resultType") != "matrix":
        raise RuntimeError(f"expected a matrix, got {data.get('resultType')}")
    return data["result"]


def collect(config: PrometheusConfig, start: float, end: float,
            queries: tuple[Query, ...] = QUERIES) -> dict:
    """Run every query over [start, end] (epoch seconds); rows of min/mean/max per component.
    A failing query is recorded in ``errors`` and does not stop the others."""
    step = step_for(start, end, config.step_s)
    token = config.token or os.environ.get("RAGBENCH_PROMETHEUS_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    rows, errors, series = [], [], 0
    with httpx.Client(base_url=config.url.rstrip("/"), timeout=config.timeout_s, headers=headers) as client:
        for q in queries:
            expr = config.render(q)
            try:
                result = query_range(client, expr, start, end, step)
            except (httpx.HTTPError, RuntimeError, ValueError, KeyError) as exc:
                errors.append(f"{q.metric}: {type(exc).__name__}: {exc}"[:300])
                continue
            by_component: dict[str, RunningStats] = {}
            for s in result:
                component = s.get("metric", {}).get(q.component_label) or "unlabelled"
                stats = by_component.setdefault(component, RunningStats())
                for _, value in s.get("values", []):
                    stats.add(float(value))
                series += 1
            rows += [usage_row(SOURCE, c, q.metric, q.unit, st) for c, st in sorted(by_component.items())]
    return {"source": SOURCE, "url": config.url, "namespace": config.namespace, "step_s": step,
            "window": {"start_epoch": start, "end_epoch": end}, "series": series,
            "queries": {q.metric: config.render(q) for q in queries},
            "rows": rows, "errors": errors}
