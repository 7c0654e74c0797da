"""Telemetry around one North-South run, per scenario: the samplers start with the run, and each
scenario's measured part (after its warm-up and TCP probe) gets its own figures.

:class:`ScenarioTelemetry` is the load generator's scenario observer
(``workload.bench.observer.ScenarioObserver``): at ``measure_started`` it opens a window of the
process sampler and scrapes vLLM's /metrics; at ``measure_finished`` it closes the window, scrapes
again and returns the scenario's ``resources``, ``server_histograms`` and ``prefix_cache``
sections. The cluster's Prometheus is queried once the whole run is over (it needs a settle time
for its last scrape), for every scenario's window (:meth:`ScenarioTelemetry.add_prometheus`).

Telemetry never fails the benchmark: whatever goes wrong is recorded under ``errors`` of the
section concerned and the load's own results are returned unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from workload.telemetry import histograms, prefix_cache
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


@dataclass
class _Scrape:
    """One scrape of vLLM's /metrics: its histograms and its summed samples (counters)."""

    histograms: dict[str, dict]
    totals: dict[str, float]


def scrape_metrics(url: str, timeout_s: float = 10.0) -> _Scrape:
    from workload.bench.promtext import totals

    r = httpx.get(url, timeout=timeout_s)
    r.raise_for_status()
    return _Scrape(histograms.parse_histograms(r.text), totals(r.text))


class ScenarioTelemetry:
    """The scenario observer of one North-South run (see the module docstring)."""

    def __init__(self, plan: TelemetryPlan, sampler: ProcessSampler | None = None) -> None:
        self.plan = plan
        self.sampler = sampler
        self._before: dict[str, tuple[_Scrape | None, list[str]]] = {}
        self.windows: dict[str, tuple[float, float]] = {}  # scenario -> measured (start, end) epochs

    def _scrape(self, when: str) -> tuple[_Scrape | None, list[str]]:
        try:
            return scrape_metrics(self.plan.llm_metrics_url), []
        except Exception as exc:  # noqa: BLE001 - a scrape failure is recorded, never raised
            return None, [f"{when} the scenario: {_error(exc)}"]

    def measure_started(self, scenario: str) -> None:
        if self.sampler is not None:
            self.sampler.open_window(scenario)
        if self.plan.llm_metrics_url:
            self._before[scenario] = self._scrape("before")

    def measure_finished(self, scenario: str, started_at_epoch: float, ended_at_epoch: float) -> dict:
        self.windows[scenario] = (started_at_epoch, ended_at_epoch)
        out: dict = {}
        resources: dict = {"window": {"start_epoch": started_at_epoch, "end_epoch": ended_at_epoch},
                           "rows": [], "sources": {}}
        if self.sampler is not None:
            window = self.sampler.close_window(scenario)
            resources["rows"] += window.pop("rows")
            resources["sources"]["psutil"] = window
        if resources["sources"]:
            out["resources"] = resources
        if self.plan.llm_metrics_url:
            before, errors = self._before.pop(scenario, (None, ["no scrape before the scenario"]))
            after, after_errors = self._scrape("after")
            errors = errors + after_errors
            section: dict = {"url": self.plan.llm_metrics_url, "metrics": {}, "errors": errors}
            if before is not None and after is not None:
                section["metrics"] = histograms.server_histograms(before.histograms, after.histograms)
            out["server_histograms"] = section
            out["prefix_cache"] = prefix_cache.section(before and before.totals, after and after.totals, errors)
        else:
            out["prefix_cache"] = prefix_cache.section(None, None, ["vLLM's /metrics is not reachable from here"])
        return out

    def add_prometheus(self, data: dict) -> None:
        """Query the Prometheus for every observed scenario's window and add its rows to that
        scenario's ``resources`` (after waiting ``settle_s`` past the last window, once)."""
        config = self.plan.prometheus
        if config is None or not self.windows:
            return
        last_end = max(end for _, end in self.windows.values())
        time.sleep(max(0.0, config.settle_s - (time.time() - last_end)))
        for sc in data.get("scenarios", []):
            window = self.windows.get(sc.get("scenario"))
            if window is None:
                continue
            resources = sc.setdefault("resources", {"window": {"start_epoch": window[0], "end_epoch": window[1]},
                                                    "rows": [], "sources": {}})
            try:
                prom = collect(config, *window)
                resources["rows"] += prom.pop("rows")
                resources["sources"]["prometheus"] = prom
            except Exception as exc:  # noqa: BLE001
                resources["sources"]["prometheus"] = {"url": config.url, "errors": [_error(exc)]}


def run_with_telemetry(run: Callable[[ScenarioTelemetry | None], dict], plan: TelemetryPlan) -> dict:
    """``run(observer)`` (the North-South load, given the scenario observer to call, or None when
    the plan observes nothing); each scenario document it returns carries its own telemetry."""
    if plan.empty():
        return run(None)
    sampler = None
    if plan.process_roots:
        sampler = ProcessSampler(plan.process_roots, extra=plan.process_extra, interval_s=plan.interval_s).start()
    observer = ScenarioTelemetry(plan, sampler)
    try:
        data = run(observer)
    finally:
        if sampler is not None:
            sampler.stop()
    observer.add_prometheus(data)
    return data
