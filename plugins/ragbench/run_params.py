"""The parameters of a benchmark run, defined once: name, default, JSON schema, description.

dags/rag_benchmark.py builds its trigger Params from this list, the steps read their defaults from
it (``default()``), and ``ragbench run`` derives its options from it and validates a run's conf
with the same schemas before anything starts. A new parameter is one more entry here.

This module imports neither Airflow nor jsonschema at import time: the DAG file, the steps and the
command line all load it, and parsing the DAG must stay cheap.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from ragbench.errors import RagbenchError


@dataclass(frozen=True)
class RunParam:
    name: str
    default: Any
    schema: dict  # JSON schema keywords of the value (type, bounds, enum, items, ...)
    description: str

    @property
    def type(self) -> str:
        return self.schema["type"]


RUN_PARAMS: tuple[RunParam, ...] = (
    # `targets` is completed per targets config by targets_param(): its choices and default come
    # from config/targets.yaml.
    RunParam("load_mode", "concurrent", {"type": "string", "enum": ["concurrent", "poisson", "sweep"]},
             "concurrent: a fixed number in flight (closed loop); poisson: a fixed mean arrival rate (open "
             "loop); sweep: step concurrency up through sweep_levels and report the highest level meeting "
             "the SLOs."),
    RunParam("sweep_levels", [1, 2, 4, 8, 16],
             {"type": "array", "minItems": 1, "maxItems": 32, "uniqueItems": True,
              "items": {"type": "integer", "minimum": 1, "maximum": 1024}},
             "sweep: the concurrency levels (1-1024), increasing; `requests` are sent at each."),
    RunParam("slo_attainment_target", 0.95, {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
             "sweep: the share of requests (0-1] that must meet the SLOs."),
    RunParam("concurrency", 4, {"type": "integer", "minimum": 1, "maximum": 1024},
             "concurrent: requests in flight (1-1024)."),
    RunParam("rate_rps", 2.0, {"type": "number", "exclusiveMinimum": 0, "maximum": 10000},
             "poisson: mean arrival rate, requests per second (> 0, up to 10000)."),
    # 256: the request count at which a TTFT p95 bootstrap interval is narrower than the default 10%
    # regression threshold on the local target (benchmarks/interval_width.py, docs/metrics.md).
    RunParam("requests", 256, {"type": "integer", "minimum": 1, "maximum": 100000},
             "Measured requests per scenario (1-100000), warm-up not counted. 256 keeps a TTFT p95's 95% "
             "interval narrower than the 10% regression threshold on the local target."),
    RunParam("warmup_requests", 2, {"type": "integer", "minimum": 0, "maximum": 1000},
             "Requests sent first and excluded from every metric (0-1000)."),
    RunParam("max_tokens", 64, {"type": "integer", "minimum": 1, "maximum": 4096},
             "Output tokens per request (1-4096; the local model's context is 2048)."),
    RunParam("cache", "cold", {"type": "string", "enum": ["cold", "warm"]},
             "cold sends prompts never sent before, so vLLM's prefix cache cannot flatter TTFT; warm "
             "measures a warm cache on purpose."),
    RunParam("slo_ttft_ms", 2000, {"type": "number", "exclusiveMinimum": 0, "maximum": 600000},
             "SLO: time to first token, ms (> 0, up to 600000)."),
    RunParam("slo_tpot_ms", 200, {"type": "number", "exclusiveMinimum": 0, "maximum": 60000},
             "SLO: time per output token, ms (> 0, up to 60000)."),
    RunParam("browser_requests", 0, {"type": "integer", "minimum": 0, "maximum": 1000},
             "Local target: questions asked one at a time through the service's chat page in headless "
             "Chromium after the other steps, measured by the page (the browser vantage point, scenario "
             "`browser`; 0-1000, 0 = off)."),
    RunParam("ew_duration_s", 3, {"type": "number", "minimum": 1, "maximum": 300},
             "East-West: iperf3 seconds per sample (1-300)."),
    RunParam("ew_streams", 1, {"type": "integer", "minimum": 1, "maximum": 128},
             "East-West: iperf3 parallel streams (1-128)."),
    RunParam("ew_samples", 3, {"type": "integer", "minimum": 1, "maximum": 20},
             "East-West: iperf3 samples per probe (1-20)."),
    RunParam("keep_deployment", False, {"type": "boolean"},
             "Leave the workload running after the run (teardown skips)."),
    RunParam("north_south_from", "orchestrator", {"type": "string", "enum": ["orchestrator", "cluster"]},
             "Cluster targets: where the North-South load comes from: the orchestrator (one fixed vantage "
             "point for every cluster) or a client pod in the cluster. Both go through the public endpoint."),
    RunParam("workers", 0, {"type": "integer", "minimum": 0, "maximum": 64},
             "North-South: load generator processes sharing one schedule (open loop: arrivals dealt out; "
             "closed loop: concurrency split), started together, their records merged into one scenario "
             "(0-64; 0 = as many as the offered load needs, up to the cores available)."),
    RunParam("client_pods", 1, {"type": "integer", "minimum": 1, "maximum": 64},
             "Cluster targets with north_south_from cluster: client pods sharing the North-South load, "
             "each a shard of the same schedule, started together at an agreed time; their records merge "
             "into one scenario (1-64)."),
    RunParam("regression_threshold_pct", 10.0, {"type": "number", "exclusiveMinimum": 0, "maximum": 1000},
             "Regression check: the minimum effect (> 0, up to 1000 percent): a latency percentile, output "
             "tokens/s or East-West Gbit/s is flagged when it is worse than its comparable baseline by more "
             "than this many percent and the change is significant (p < 0.01)."),
    RunParam("regression_baseline_runs", 7, {"type": "integer", "minimum": 3, "maximum": 100},
             "Regression check: how many valid, comparable earlier runs of the same target form the "
             "baseline (3-100; at least 3 must exist for a quantity to be compared)."),
    RunParam("fail_on_regression", False, {"type": "boolean"},
             "Fail check_regressions (so alerting fires) when a regression is flagged. Off: flagged ones "
             "are logged and stored only."),
)

# Settings of the load generator that are not trigger params (yet): one place for their defaults too.
FIXED_DEFAULTS: dict[str, Any] = {"k": 4, "seed": 0, "max_duration_s": 600, "slo_e2e_ms": None}

_BY_NAME = {p.name: p for p in RUN_PARAMS}


def targets_param(names: list[str], default_targets: list[str]) -> RunParam:
    """The `targets` param of a targets config. `examples` lists the choices, so Airflow's trigger
    form shows a multi-select; `items.enum` makes the schema refuse anything else."""
    return RunParam("targets", list(default_targets),
                    {"type": "array", "items": {"type": "string", "enum": list(names)}, "minItems": 1,
                     "uniqueItems": True, "examples": list(names)},
                    "Targets to benchmark, from config/targets.yaml (the default is its default_targets). "
                    "A cluster target needs its Airflow Kubernetes connection.")


def run_params(targets_config=None) -> tuple[RunParam, ...]:
    """Every param of a run, `targets` first (from the targets config; default: the shipped one)."""
    if targets_config is None:
        from ragbench.targets import load_targets

        targets_config = load_targets()
    return (targets_param(targets_config.names(), targets_config.default_targets), *RUN_PARAMS)


def default(name: str) -> Any:
    """The default of a param (or of a fixed load-generator setting); `targets` has none here."""
    if name in _BY_NAME:
        return _BY_NAME[name].default
    if name in FIXED_DEFAULTS:
        return FIXED_DEFAULTS[name]
    raise KeyError(name)


def airflow_params(targets_config=None) -> dict:
    """The DAG's Params (airflow.sdk.Param), in the order of run_params()."""
    from airflow.sdk import Param

    return {p.name: Param(p.default, description=p.description, **p.schema) for p in run_params(targets_config)}


def validate_conf(conf: dict, params: tuple[RunParam, ...]) -> dict:
    """Check a run's conf against the params' schemas, as Airflow will; return the conf with every
    default filled in. Raises RagbenchError with one line naming the param and the schema's message,
    e.g. "concurrency: 0 is less than the minimum of 1"."""
    from jsonschema import FormatChecker, validate
    from jsonschema.exceptions import ValidationError

    by_name = {p.name: p for p in params}
    unknown = [k for k in conf if k not in by_name]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(by_name), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise RagbenchError(f"{unknown[0]}: not a parameter of the run{hint}")
    resolved = {}
    for p in params:
        value = conf.get(p.name, p.default)
        try:
            validate(value, p.schema, format_checker=FormatChecker())
        except ValidationError as exc:
            raise RagbenchError(f"{p.name}: {exc.message}") from None
        resolved[p.name] = value
    return resolved
