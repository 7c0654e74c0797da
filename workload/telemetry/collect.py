"""Telemetry around one North-South run: start the samplers, run the load, attach what they saw.

Telemetry never fails the benchmark: whatever goes wrong is recorded under ``errors`` of the
section concerned and the load's own results are returned unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from workload.telemetry import histograms
from workload.telemetry.processes import DEFAULT_INTERVAL_S, ProcessSampler
from workload.telemetry.prometheus import PrometheusConfig, collect


@dataclass
class TelemetryPlan:
    """What to observe: the local processes ({root: pid}), vLLM's /metrics, a Prometheus."""

    process_roots: dict[str, int] = field(default_factory=dict)
    process_extra: dict[str, list[int]] = field(default_factory=dict)
    interval_s: float = DEFAULT_INTERVAL_S
    llm_metrics_url: str | None = None
    prometheus: PrometheusConfig | None = None

    def empty(self) -> bool:
        return not (self.process_roots or self.llm_metrics_url or self.prometheus)


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def run_with_telemetry(run: Callable[[], dict], plan: TelemetryPlan) -> dict:
    """``run()`` (the North-South load) observed as ``plan`` says; adds ``resources`` and
    ``server_histograms`` to the dict it returns."""
    if plan.empty():
        return run()
    sampler, before, hist_errors = None, None, []
    if plan.llm_metrics_url:
        try:
            before = histograms.scrape(plan.llm_metrics_url)
        except Exception as exc:  # noqa: BLE001
            hist_errors.append(f"before the run: {_error(exc)}")
    if plan.process_roots:
        sampler = ProcessSampler(plan.process_roots, extra=plan.process_extra, interval_s=plan.interval_s).start()
    start = time.time()
    try:
        data = run()
    finally:
        end = time.time()
        process_result = sampler.stop() if sampler is not None else None
    resources: dict = {"window": {"start_epoch": start, "end_epoch": end}, "rows": [], "sources": {}}
    if process_result is not None:
        resources["rows"] += process_result.pop("rows")
        resources["sources"]["psutil"] = process_result
    if plan.prometheus is not None:
        time.sleep(max(0.0, plan.prometheus.settle_s - (time.time() - end)))
        try:
            prom = collect(plan.prometheus, start, end)
            resources["rows"] += prom.pop("rows")
            resources["sources"]["prometheus"] = prom
        except Exception as exc:  # noqa: BLE001
            resources["sources"]["prometheus"] = {"url": plan.prometheus.url, "errors": [_error(exc)]}
    if resources["sources"]:
        data["resources"] = resources
    if plan.llm_metrics_url:
        section: dict = {"url": plan.llm_metrics_url, "metrics": {}, "errors": hist_errors}
        if before is not None:
            try:
                section["metrics"] = histograms.server_histograms(before, histograms.scrape(plan.llm_metrics_url))
            except Exception as exc:  # noqa: BLE001
                hist_errors.append(f"after the run: {_error(exc)}")
        data["server_histograms"] = section
    return data
