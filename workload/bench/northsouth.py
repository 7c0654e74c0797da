"""The north-south step: streaming load against an endpoint, summarized per scenario."""

from __future__ import annotations

import json
import random
import secrets
from pathlib import Path

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from workload.bench.endpoints import OpenAIChatEndpoint, RagStreamEndpoint
from workload.bench.loadgen import (
    ConcurrentStrategy,
    PoissonStrategy,
    StopConditions,
    Timeouts,
    run_async,
    run_scenario,
)
from workload.bench.metrics import SLO, summarize
from workload.bench.observer import ScenarioObserver
from workload.bench.summary import NorthSouthScenario
from workload.errors import StepError

DEFAULT_QUESTIONS = Path(__file__).resolve().parent.parent / "corpus" / "questions.jsonl"


class SweepStrategy(BaseModel):
    """Step the load up (closed loop, one scenario per concurrency level) and find the highest level
    whose SLO attainment stays at or above the target: the SLO operating point ("knee")."""

    type: Literal["sweep"] = "sweep"
    levels: list[int] = Field(default_factory=lambda: [1, 2, 4, 8, 16])
    slo_attainment_target: float = Field(0.95, gt=0, le=1)
    # Stop stepping up after this many consecutive levels miss the target (the curve is past the knee).
    stop_after_misses: int = Field(1, ge=1)

    @field_validator("levels")
    @classmethod
    def _increasing(cls, levels: list[int]) -> list[int]:
        if not levels or any(v < 1 for v in levels) or sorted(set(levels)) != levels:
            raise ValueError("levels must be distinct positive concurrencies in increasing order")
        return levels


class NorthSouthConfig(BaseModel):
    """Everything that determines a north-south run; saved with its results."""

    endpoint_kind: str = Field("rag", pattern="^(rag|openai)$")
    model: str = "ragbench/tiny-qwen2"  # for endpoint_kind openai
    strategy: ConcurrentStrategy | PoissonStrategy | SweepStrategy = Field(default_factory=ConcurrentStrategy,
                                                                           discriminator="type")
    stop: StopConditions = Field(default_factory=StopConditions)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    warmup_requests: int = Field(2, ge=0)
    max_tokens: int = Field(64, ge=1)
    k: int = Field(4, ge=1)
    ignore_eos: bool = True
    slo: dict = Field(default_factory=lambda: {"ttft_ms": 2000.0, "tpot_ms": 200.0, "e2e_ms": None})
    seed: int = 0
    # cold: every request (warm-up included) carries a prefix-cache salt never sent before, so no
    # request reuses KV blocks another request left in vLLM's prefix cache; warm: no salt, and
    # every scenario sends the same question sequence (docs/metrics.md, "Prefix cache").
    cache: Literal["cold", "warm"] = "cold"
    # TCP connects timed against the endpoint before each scenario's load (the network round trip).
    connect_samples: int = Field(20, ge=0, le=1000)


def load_prompts(path: Path, seed: int) -> list[tuple[str, str]]:
    """The questions as (id, text), in an order fixed by ``seed``."""
    if not path.exists():
        raise StepError(f"question file {path} not found")
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not items:
        raise StepError(f"question file {path} has no questions")
    prompts = [(q["id"], q["question"]) for q in items]
    random.Random(seed).shuffle(prompts)
    return prompts


def scenario_prompts(prompts: list[tuple[str, str]], index: int, count: int, cache: str) -> list[tuple[str, str]]:
    """The questions scenario ``index`` sends: with a cold cache each scenario goes on where the
    previous one stopped (the salt alone keeps vLLM's cache cold; fresh questions keep any other
    layer honest as far as the question file allows); with a warm one each starts at the first."""
    start = index * count if cache == "cold" else 0
    return [prompts[(start + i) % len(prompts)] for i in range(count)]


def run_north_south(base_url: str, config: NorthSouthConfig, questions: Path = DEFAULT_QUESTIONS,
                    progress: bool = True, token: str | None = None,
                    observer: ScenarioObserver | None = None) -> dict:
    """Run the configured load; a sweep runs one scenario per level and marks the operating point.

    ``observer`` is called around the measured part of every scenario (``workload.bench.observer``)."""
    if isinstance(config.strategy, SweepStrategy):
        levels = [ConcurrentStrategy(concurrency=c) for c in config.strategy.levels]
    else:
        levels = [config.strategy]
    total = config.warmup_requests + config.stop.max_requests
    prompts = load_prompts(questions, config.seed)
    # A per-run nonce, not derived from the seed: two runs with the same seed still never share
    # a cache entry.
    run_nonce = secrets.token_hex(8) if config.cache == "cold" else None
    if config.endpoint_kind == "rag":
        endpoint = RagStreamEndpoint(k=config.k, ignore_eos=config.ignore_eos)
    else:
        endpoint = OpenAIChatEndpoint(model=config.model, ignore_eos=config.ignore_eos)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    slo = SLO(**config.slo)
    scenarios, misses = [], 0
    for i, strategy in enumerate(levels):
        scenario = _scenario_name(strategy, sweep=len(levels) > 1)
        result = run_async(run_scenario(
            base_url, endpoint, scenario_prompts(prompts, i, total, config.cache), strategy, config.stop,
            scenario=scenario, max_tokens=config.max_tokens, warmup_requests=config.warmup_requests,
            timeouts=config.timeouts, progress=progress, headers=headers, connect_samples=config.connect_samples,
            observer=observer, cache_salt_prefix=None if run_nonce is None else f"{run_nonce}-{i}"))
        connect = result.connect
        summary = summarize(result.records, result.wall_time_s, slo, result.offered_rate_rps,
                            connect_samples_ms=connect.samples_ms if connect else None,
                            connect_errors=connect.errors if connect else 0,
                            concurrency=strategy.concurrency if isinstance(strategy, ConcurrentStrategy) else None)
        summary.stopped_by = result.stopped_by
        summary.cache = config.cache
        if connect is not None and connect.first_error:
            summary.tcp_connect.first_error = connect.first_error
        if isinstance(config.strategy, SweepStrategy):
            summary.meets_slo_target = summary.slo_attainment >= config.strategy.slo_attainment_target
        observed = {} if observer is None else observer.measure_finished(scenario, result.started_at,
                                                                         result.ended_at)
        document = NorthSouthScenario(
            scenario=scenario, started_at_epoch=result.started_at, measured_started_at_epoch=result.started_at,
            measured_ended_at_epoch=result.ended_at, summary=summary, strategy=strategy.model_dump(),
            records=[r.to_dict() for r in result.records], **observed)
        scenarios.append(document.model_dump(mode="json"))
        if isinstance(config.strategy, SweepStrategy):
            misses = 0 if summary.meets_slo_target else misses + 1
            if misses >= config.strategy.stop_after_misses:
                break
    out = {"endpoint": base_url, "config": config.model_dump(), "scenarios": scenarios}
    _mark_headline(out, config)
    return out


def _mark_headline(out: dict, config: NorthSouthConfig) -> None:
    """Mark the operating point and the headline scenario.

    A sweep's operating point is the highest level among its *valid* scenarios whose SLO attainment
    meets the target; there is none when no level does. Every sweep scenario says whether it is the
    operating point (``operating_point: true|false``); a single scenario has ``operating_point:
    null`` (there was no sweep to find one). The headline scenario feeds the scorecard: the single
    scenario, or the operating point, or a sweep's lowest level when there is none."""
    scenarios = out["scenarios"]
    if not isinstance(config.strategy, SweepStrategy):
        for s in scenarios:
            s["headline"] = s is scenarios[0]
            s["operating_point"] = None
        return
    passing = [s for s in scenarios if s["summary"]["meets_slo_target"] and s["summary"].get("valid", True)]
    point = max(passing, key=lambda s: s["strategy"]["concurrency"]) if passing else None
    headline = point or scenarios[0]
    for s in scenarios:
        s["headline"] = s is headline
        s["operating_point"] = s is point
    out["sweep"] = {
        "levels_run": [s["strategy"]["concurrency"] for s in scenarios],
        "operating_point_concurrency": point["strategy"]["concurrency"] if point else None,
        "slo_attainment_target": config.strategy.slo_attainment_target,
        "curve": [{"concurrency": s["strategy"]["concurrency"], "slo_attainment": s["summary"]["slo_attainment"],
                   "goodput_rps": s["summary"]["goodput_rps"],
                   "output_tokens_per_s": s["summary"]["output_tokens_per_s"],
                   "ttft_p95_ms": s["summary"]["ttft_ms"]["p95"]} for s in scenarios],
    }


def _scenario_name(s: ConcurrentStrategy | PoissonStrategy, sweep: bool = False) -> str:
    if isinstance(s, ConcurrentStrategy):
        return f"{'sweep-' if sweep else ''}concurrent-{s.concurrency}"
    return f"poisson-{s.rate_rps:g}rps"
