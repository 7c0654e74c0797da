"""Cluster telemetry from the cluster's Prometheus: GPU, CPU and memory over one scenario's window.

Every query is a range query (``/api/v1/query_range``) over the measured window of one scenario;
each returned series is one component (the value of the query's ``by`` label, e.g. the container),
summarized as min/mean/max over the points. The queries live in :data:`QUERIES`, in one place:
``{namespace}`` is replaced by the target's namespace. CPU is in percent of one core, like the
local process sampler, and memory in bytes, so that targets compare.

The resolution and the range of ``rate()`` follow from the window (:func:`window_for`): the step is
the window's duration over :data:`POINTS` points (never finer than the configured step), and
``rate()`` looks back one step but at least two scrape intervals (the fewest points a rate needs).
Rate points are evaluated from ``start + rate window`` on, so that each one reads only time inside
the scenario; a scenario shorter than its rate window gets one point at its end, and the result says
so (``rate_window_exceeds_scenario``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import httpx

from workload.telemetry.stats import RunningStats, usage_row

SOURCE = "prometheus"
MAX_POINTS = 11_000  # Prometheus refuses a range query of more points per series
POINTS = 30  # points per series over a scenario's window (the step is sized to this)


@dataclass(frozen=True)
class Query:
    metric: str  # the stored metric name
    unit: str
    expr: str  # PromQL; {namespace} and {rate_window} are filled in
    component_label: str  # the label naming the component in each returned series

    @property
    def uses_rate(self) -> bool:
        return "{rate_window}" in self.expr


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
    step_s: float = 1.0  # the finest resolution asked for; the window usually sets a coarser one
    timeout_s: float = 30.0
    token: str | None = None  # bearer token, e.g. for a managed Prometheus
    settle_s: float = 0.0  # wait this long after the load, so the last scrape of the window is in
    scrape_interval_s: float = 15.0  # of the cluster's Prometheus (its global scrape_interval)

    def render(self, query: Query, rate_window_s: float = 60.0) -> str:
        return query.expr.format(namespace=self.namespace, rate_window=promql_duration(rate_window_s))


@dataclass(frozen=True)
class QueryWindow:
    """The range query parameters of one scenario window (epoch seconds)."""

    start: float
    end: float
    step_s: float
    rate_window_s: float

    @property
    def rate_start(self) -> float:
        """Where rate points start: one rate window in, so that each reads only the scenario."""
        return min(self.end, self.start + self.rate_window_s)

    @property
    def rate_window_exceeds_scenario(self) -> bool:
        return self.rate_window_s > self.end - self.start


def promql_duration(seconds: float) -> str:
    """A PromQL range in whole milliseconds (``7500ms``), so short windows are not rounded to 0s."""
    return f"{max(1, round(seconds * 1000))}ms"


def step_for(start: float, end: float, step_s: float) -> float:
    """The requested resolution, coarsened so that the window stays under MAX_POINTS points."""
    return max(step_s, math.ceil((end - start) / (MAX_POINTS - 1)), 0.001)


def window_for(start: float, end: float, config: PrometheusConfig, points: int = POINTS) -> QueryWindow:
    """Step and rate range for a window: the step is the duration over ``points`` (at least the
    configured step, and under MAX_POINTS), the rate range one step but at least two scrapes."""
    step = step_for(start, end, max(config.step_s, (end - start) / points))
    return QueryWindow(start, end, round(step, 3), round(max(step, 2 * config.scrape_interval_s), 3))


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
    """Run every query over [start, end] (epoch seconds, one scenario's measured window); rows of
    min/mean/max per component. A failing query is recorded in ``errors`` and does not stop the others."""
    window = window_for(start, end, config)
    token = config.token or os.environ.get("RAGBENCH_PROMETHEUS_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    rows, errors, series = [], [], 0
    with httpx.Client(base_url=config.url.rstrip("/"), timeout=config.timeout_s, headers=headers) as client:
        for q in queries:
            expr = config.render(q, window.rate_window_s)
            q_start = window.rate_start if q.uses_rate else start
            try:
                result = query_range(client, expr, q_start, end, window.step_s)
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
    return {"source": SOURCE, "url": config.url, "namespace": config.namespace, "step_s": window.step_s,
            "rate_window_s": window.rate_window_s,
            "rate_window_exceeds_scenario": window.rate_window_exceeds_scenario,
            "window": {"start_epoch": start, "end_epoch": end}, "series": series,
            "queries": {q.metric: config.render(q, window.rate_window_s) for q in queries},
            "rows": rows, "errors": errors}
