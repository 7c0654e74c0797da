"""The north-south step: streaming load against an endpoint, summarized per scenario."""

from __future__ import annotations

import json
import random
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from workload.bench.endpoints import OpenAIChatEndpoint, RagStreamEndpoint
from workload.bench.loadgen import (
    ConcurrentStrategy,
    PoissonStrategy,
    Progress,
    ShardRun,
    StopConditions,
    Timeouts,
    run_async,
    run_shard,
)
from workload.bench.merge import Merged, Part, merge_parts, scenario_document
from workload.bench.metrics import SLO
from workload.bench.netprobe import tcp_connect_samples
from workload.bench.observer import ScenarioObserver
from workload.bench.shards import ShardPlan, auto_workers, plan_shard, slots
from workload.bench.summary import WorkerFigures, WorkersReport
from workload.bench.workers import START_LEAD_S, WorkerJob, epoch_of, run_workers
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
    # Load generator processes sharing each scenario's schedule (docs/metrics.md, "Workers and
    # shards"); 0: as many as the offered load needs, up to the cores available.
    workers: int = Field(0, ge=0, le=64)


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


@dataclass(frozen=True)
class ShardSpec:
    """This run is shard ``index`` of ``count`` of the schedule, started at an agreed wall-clock
    instant (client pods: ``north-south --shard I/N --start-at EPOCH``)."""

    index: int
    count: int
    start_at_epoch: float


# A shard may start late (its warm-up ended after the agreed start) by at most this much.
MAX_LATE_S = 5.0


def agreed_start(shard: ShardSpec) -> tuple[float, float, float]:
    """(t0 on time.perf_counter, its epoch, late_by_s) for the agreed start: the agreed instant
    when this shard is ready before it, else now; a StepError past MAX_LATE_S."""
    now_p, now_e = time.perf_counter(), time.time()
    late = now_e - shard.start_at_epoch
    if late > MAX_LATE_S:
        raise StepError(f"shard {shard.index}/{shard.count} ready {late:.1f} s after the agreed start "
                        f"(start-at {shard.start_at_epoch:.3f}; at most {MAX_LATE_S:g} s late is allowed): "
                        f"start the shards further in the future")
    if late <= 0:
        return now_p - late, shard.start_at_epoch, 0.0
    return now_p, now_e, late


def offered_rate(strategy: ConcurrentStrategy | PoissonStrategy) -> float | None:
    return strategy.rate_rps if isinstance(strategy, PoissonStrategy) else None


def validity_concurrency(strategy: ConcurrentStrategy | PoissonStrategy) -> int | None:
    return strategy.concurrency if isinstance(strategy, ConcurrentStrategy) else None


def run_north_south(base_url: str, config: NorthSouthConfig, questions: Path = DEFAULT_QUESTIONS,
                    progress: bool = True, token: str | None = None,
                    observer: ScenarioObserver | None = None, workers: int | None = None,
                    shard: ShardSpec | None = None) -> dict:
    """Run the configured load; a sweep runs one scenario per level and marks the operating point.

    ``observer`` is called around the measured part of every scenario (``workload.bench.observer``).
    ``workers`` overrides ``config.workers`` (load generator processes; 0: auto). With ``shard``
    only that shard of the schedule runs, from the agreed start; the document says so
    (``shard``) and ``workload.bench.merge.merge_shard_documents`` merges the shards' documents."""
    if isinstance(config.strategy, SweepStrategy):
        if shard is not None:
            raise StepError("a sweep cannot run as shards: its levels could not be started together "
                            "without a channel between the shards; shard each level as its own run")
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
    sweep_target = config.strategy.slo_attainment_target if isinstance(config.strategy, SweepStrategy) else None
    scenarios, misses, shard_info = [], 0, None
    for i, strategy in enumerate(levels):
        scenario = _scenario_name(strategy, sweep=len(levels) > 1)
        count = config.workers if workers is None else workers
        index, count_of = (shard.index, shard.count) if shard else (0, 1)
        if count == 0:
            count = auto_workers(strategy, config.max_tokens, index, count_of)
        elif isinstance(config.strategy, SweepStrategy):  # a low level cannot use more workers than slots
            count = min(count, slots(strategy.concurrency, index, count_of))
        try:
            plans = [plan_shard(strategy, config.stop, config.warmup_requests, index, count_of, w, count)
                     for w in range(count)]
        except ValueError as exc:
            raise StepError(str(exc)) from None
        connect = tcp_connect_samples(base_url, config.connect_samples, min(config.timeouts.connect_s, 2.0))
        jobs = [WorkerJob(base_url, endpoint, scenario_prompts(prompts, i, total, config.cache), plan, config.stop,
                          scenario, config.max_tokens, config.timeouts, headers,
                          None if run_nonce is None else f"{run_nonce}-{i}") for plan in plans]
        prog = Progress(sum(len(p.measured_indices) for p in plans), scenario, enabled=progress)
        late = {"by": 0.0}

        def choose_start() -> tuple[float, float]:
            if observer is not None:
                observer.measure_started(scenario)
            prog.started()
            if shard is not None:
                t0, t0_epoch, late["by"] = agreed_start(shard)
                return t0, t0_epoch
            t0 = time.perf_counter() + (START_LEAD_S if count > 1 else 0.0)
            return t0, epoch_of(t0)

        if count == 1:
            async def start() -> tuple[float, float]:
                return choose_start()

            job = jobs[0]
            runs = [run_async(run_shard(base_url, endpoint, job.prompts, job.plan, config.stop, scenario=scenario,
                                        max_tokens=config.max_tokens, timeouts=config.timeouts, headers=headers,
                                        cache_salt_prefix=job.cache_salt_prefix, start=start,
                                        on_record=prog.update))]
            failed = None
        else:
            outcome = run_workers(jobs, prog, choose_start)
            runs, failed = outcome.runs, outcome.failed
        figures = [_figures(plan, run) for plan, run in zip(plans, runs)]
        parts = [Part(run.records, run.t0, run.wall_time_s, run.stopped_by) for run in runs if run is not None]
        if parts:
            merged = merge_parts(parts)
            started_at = epoch_of_run(runs, merged.base)
        else:  # every worker failed before the start
            merged, started_at = Merged([], 0.0, 0.0, "worker_failed"), time.time()
        observed = {} if observer is None else observer.measure_finished(scenario, started_at,
                                                                         started_at + merged.wall_time_s)
        document = scenario_document(
            scenario, strategy.model_dump(), merged, started_at, slo=SLO(**config.slo), cache=config.cache,
            concurrency=_shard_concurrency(plans, strategy), offered_rate_rps=offered_rate(strategy),
            connect_samples_ms=connect.samples_ms, connect_errors=connect.errors,
            connect_first_error=connect.first_error, slo_attainment_target=sweep_target,
            workers=WorkersReport(count=count, failed=failed, per_worker=figures), observed=observed)
        scenarios.append(document)
        if shard is not None:
            shard_info = {"index": shard.index, "count": shard.count, "start_at_epoch": shard.start_at_epoch,
                          "t0_epoch": started_at, "late_by_s": late["by"]}
        if isinstance(config.strategy, SweepStrategy):
            misses = 0 if document["summary"]["meets_slo_target"] else misses + 1
            if misses >= config.strategy.stop_after_misses:
                break
    out = {"endpoint": base_url, "config": config.model_dump(), "scenarios": scenarios}
    _mark_headline(out, config)
    if shard_info is not None:
        out["shard"] = shard_info
    return out


def epoch_of_run(runs: list[ShardRun | None], base: float) -> float:
    """The epoch of the merged records' t0 (``base``, on the perf_counter clock the runs share)."""
    run = next(r for r in runs if r is not None)
    return run.t0_epoch + (base - run.t0)


def _shard_concurrency(plans: list[ShardPlan], strategy) -> int | None:
    """A closed loop's requests in flight over the plans run here (the whole, or a pod's shard)."""
    if not isinstance(strategy, ConcurrentStrategy):
        return None
    return sum(p.concurrency for p in plans)


def _figures(plan: ShardPlan, run: ShardRun | None) -> WorkerFigures:
    if run is None:
        return WorkerFigures(shard_index=plan.index, shard_count=plan.count, finished=False)
    return WorkerFigures(shard_index=plan.index, shard_count=plan.count, finished=True,
                         requests=sum(1 for r in run.records if not r.warmup), events=run.events,
                         cpu_s=round(run.cpu_s, 4), wall_time_s=run.wall_time_s)


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
