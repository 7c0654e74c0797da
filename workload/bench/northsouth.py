"""The north-south step: streaming load against an endpoint, summarized per scenario."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

from pydantic import BaseModel, Field

from workload.bench.endpoints import OpenAIChatEndpoint, RagStreamEndpoint
from workload.bench.loadgen import ConcurrentStrategy, PoissonStrategy, StopConditions, Timeouts, run_scenario
from workload.bench.metrics import SLO, summarize
from workload.errors import StepError

DEFAULT_QUESTIONS = Path(__file__).resolve().parent.parent / "corpus" / "questions.jsonl"


class NorthSouthConfig(BaseModel):
    """Everything that determines a north-south run; saved with its results."""

    endpoint_kind: str = Field("rag", pattern="^(rag|openai)$")
    model: str = "ragbench/tiny-qwen2"  # for endpoint_kind openai
    strategy: ConcurrentStrategy | PoissonStrategy = Field(default_factory=ConcurrentStrategy,
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
    total = config.warmup_requests + config.stop.max_requests
    prompts = load_prompts(questions, config.seed, config.unique_prompts, total)
    if config.endpoint_kind == "rag":
        endpoint = RagStreamEndpoint(k=config.k, ignore_eos=config.ignore_eos)
    else:
        endpoint = OpenAIChatEndpoint(model=config.model, ignore_eos=config.ignore_eos)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    scenario = _scenario_name(config)
    result = asyncio.run(run_scenario(
        base_url, endpoint, prompts, config.strategy, config.stop, scenario=scenario,
        max_tokens=config.max_tokens, warmup_requests=config.warmup_requests, timeouts=config.timeouts,
        progress=progress, headers=headers))
    slo = SLO(**config.slo)
    summary = summarize(result.records, result.wall_time_s, slo, result.offered_rate_rps)
    summary["stopped_by"] = result.stopped_by
    return {
        "endpoint": base_url,
        "config": config.model_dump(),
        "scenarios": [{
            "scenario": scenario,
            "started_at_epoch": result.started_at,
            "summary": summary,
            "records": [r.to_dict() for r in result.records],
        }],
    }


def _scenario_name(config: NorthSouthConfig) -> str:
    s = config.strategy
    if isinstance(s, ConcurrentStrategy):
        return f"concurrent-{s.concurrency}"
    return f"poisson-{s.rate_rps:g}rps"
