"""The north-south step: streaming load against an endpoint, summarized per scenario."""

from __future__ import annotations

import json
import random
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
    unique_prompts: bool = False
    # TCP connects timed against the endpoint before each scenario's load (the network round trip).
    connect_samples: int = Field(20, ge=0, le=1000)


def load_prompts(path: Path, seed: int, unique: bool, count: int) -> list[tuple[str, str]]:
    if not path.exists():
        raise StepError(f"question file {path} not found")
    items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not items:
        raise StepError(f"question file {path} has no questions")
    rng = random.Random(seed)
    prompts = [(q["id"], q["question"]) for q in items]
    rng.shuffle(prompts)
    if unique:  # a run-specific prefix defeats any prefix or response cache
        tag = f"{rng.getrandbits(32):08x}"
        prompts = [(pid, f"[{tag}-{i}] {text}") for i, (pid, text) in
                   enumerate(prompts[i % len(prompts)] for i in range(count))]
    return prompts


def run_north_south(base_url: str, config: NorthSouthConfig, questions: Path = DEFAULT_QUESTIONS,
                    progress: bool = True, token: str | None = None) -> dict:
    """Run the configured load; a sweep runs one scenario per level and marks the operating point."""
    if isinstance(config.strategy, SweepStrategy):
        levels = [ConcurrentStrategy(concurrency=c) for c in config.strategy.levels]
    else:
        levels = [config.strategy]
    total = config.warmup_requests + config.stop.max_requests
    prompts = load_prompts(questions, config.seed, config.unique_prompts, total * len(levels))
    if config.endpoint_kind == "rag":
        endpoint = RagStreamEndpoint(k=config.k, ignore_eos=config.ignore_eos)
    else:
        endpoint = OpenAIChatEndpoint(model=config.model, ignore_eos=config.ignore_eos)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    slo = SLO(**config.slo)
    scenarios, misses = [], 0
    for i, strategy in enumerate(levels):
        scenario = _scenario_name(strategy, sweep=len(levels) > 1)
        batch = prompts[i * total:(i + 1) * total] if config.unique_prompts else prompts
        result = run_async(run_scenario(
            base_url, endpoint, batch, strategy, config.stop, scenario=scenario,
            max_tokens=config.max_tokens, warmup_requests=config.warmup_requests, timeouts=config.timeouts,
            progress=progress, headers=headers, connect_samples=config.connect_samples))
        connect = result.connect
        summary = summarize(result.records, result.wall_time_s, slo, result.offered_rate_rps,
                            connect_samples_ms=connect.samples_ms if connect else None,
                            connect_errors=connect.errors if connect else 0)
        summary["stopped_by"] = result.stopped_by
        if connect is not None and connect.first_error:
            summary["tcp_connect"]["first_error"] = connect.first_error
        scenarios.append({"scenario": scenario, "started_at_epoch": result.started_at, "summary": summary,
                          "strategy": strategy.model_dump(),
                          "records": [r.to_dict() for r in result.records]})
        if isinstance(config.strategy, SweepStrategy):
            meets = summary["slo_attainment"] >= config.strategy.slo_attainment_target
            summary["meets_slo_target"] = meets
            misses = 0 if meets else misses + 1
            if misses >= config.strategy.stop_after_misses:
                break
    out = {"endpoint": base_url, "config": config.model_dump(), "scenarios": scenarios}
    _mark_headline(out, config)
    return out


def _mark_headline(out: dict, config: NorthSouthConfig) -> None:
    """The headline scenario feeds the scorecard: the single scenario, or a sweep's operating point
    (the highest level meeting the SLO target; the lowest level when none does)."""
    scenarios = out["scenarios"]
    if not isinstance(config.strategy, SweepStrategy):
        scenarios[0]["headline"] = True
        return
    passing = [s for s in scenarios if s["summary"]["meets_slo_target"]]
    knee = passing[-1] if passing else scenarios[0]
    for s in scenarios:
        s["headline"] = s is knee
    out["sweep"] = {
        "levels_run": [s["strategy"]["concurrency"] for s in scenarios],
        "operating_point_concurrency": knee["strategy"]["concurrency"] if passing else None,
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
