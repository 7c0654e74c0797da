"""The North-South documents as types: one scenario's summary, and one scenario's document.

``metrics.summarize`` returns a ``NorthSouthSummary``; the step's result document stores
``model_dump(mode="json")`` of it, which is what the loader, the report and the views read
(docs/metrics.md defines every figure). Only the standard library and pydantic: the load generator
stays a light client.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Distribution(BaseModel):
    """count, mean, min, max and p50/p90/p95/p99 of a set of values (None when there are none)."""

    model_config = ConfigDict(extra="forbid")

    count: int
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None


class ClientServerTTFT(Distribution):
    """Client TTFT minus the server's ``timings.ttft_ms``; ``unpaired``: ok records without a pair."""

    unpaired: int = 0


class TcpConnect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    before_load_ms: Distribution
    before_load_errors: int = 0
    before_load_samples_ms: list[float] = Field(default_factory=list)
    during_run_ms: Distribution
    first_error: str | None = None  # the first failed connect of the probe, if any


class SLOLimits(BaseModel):
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None


class RulesApplied(BaseModel):
    """The thresholds the verdict used (workload.bench.validity.ValidityRules)."""

    lag_p99_floor_ms: float
    lag_p99_max_share_of_gap: float
    min_send_rate_ratio: float
    min_inflight_ratio: float


class OpenLoopValidity(BaseModel):
    """An open loop judged by its realised schedule (workload.bench.validity)."""

    mode: Literal["open_loop"] = "open_loop"
    valid: bool
    invalid_reason: str | None = None
    requests: int
    schedule_lag_p50_ms: float
    schedule_lag_p99_ms: float
    schedule_lag_max_ms: float
    mean_scheduled_gap_ms: float | None = None
    schedule_lag_p99_share_of_gap: float | None = None
    schedule_lag_p99_limit_ms: float
    scheduled_rate_rps: float | None = None
    achieved_send_rate_rps: float | None = None
    send_rate_ratio: float | None = None
    rules: RulesApplied


class ClosedLoopValidity(BaseModel):
    """A closed loop judged by the requests it kept in flight while issuing."""

    mode: Literal["closed_loop"] = "closed_loop"
    valid: bool
    invalid_reason: str | None = None
    requests: int
    concurrency: int
    issuing_window_s: float | None = None
    mean_in_flight: float | None = None
    in_flight_ratio: float | None = None
    refill_delay_p50_ms: float | None = None
    refill_delay_p99_ms: float | None = None
    rules: RulesApplied


class NotJudged(BaseModel):
    """Nothing to judge: no measured request, or a closed loop without its concurrency."""

    mode: Literal["none"] = "none"
    valid: Literal[True] = True
    invalid_reason: None = None


Validity = OpenLoopValidity | ClosedLoopValidity | NotJudged


class WorkerFigures(BaseModel):
    """One load generator process of the scenario: which shard of the whole schedule it ran and
    what it did in the measured window."""

    model_config = ConfigDict(extra="forbid")

    shard_index: int  # its shard of the whole scenario (docs/metrics.md, "Workers and shards")
    shard_count: int
    finished: bool  # it returned its records; False: it died or timed out (the scenario is invalid)
    requests: int | None = None  # measured requests it sent
    events: int | None = None  # token events of those requests
    cpu_s: float | None = None  # CPU seconds of its load loop over the measured window
    wall_time_s: float | None = None  # its measured start to its last request's end
    late_by_s: float | None = None  # how late it started against the agreed start (client pods)


class WorkersReport(BaseModel):
    """The processes (and client pods) that produced the scenario's load; their records are merged."""

    model_config = ConfigDict(extra="forbid")

    count: int  # load generator processes, over every client pod
    failed: str | None = None  # why the scenario is invalid when a worker did not finish
    per_worker: list[WorkerFigures]


class NorthSouthSummary(BaseModel):
    """The summary of one scenario (one load level). Warm-up requests are in none of the figures."""

    requests: int
    completed: int
    errored: int
    error_rate: float
    errors_by_code: dict[str, int]
    wall_time_s: float
    output_tokens: int
    output_tokens_per_s: float
    requests_per_s: float
    token_count_sources: dict[str, int]
    ttft_ms: Distribution
    ttft_from_schedule_ms: Distribution
    e2e_ms: Distribution
    tpot_ms: Distribution
    itl_ms: Distribution
    tokens_per_event: Distribution
    slo: SLOLimits
    slo_attainment: float
    goodput_rps: float
    schedule_lag_ms: Distribution
    client_minus_server_ttft_ms: ClientServerTTFT
    tcp_connect: TcpConnect
    offered_rate_rps: float | None = None
    achieved_rate_rps: float  # measured requests / measured wall time (not the validity yardstick)
    ttft_p50_minus_rtt_ms: float | None = None
    validity: Validity = Field(discriminator="mode")
    valid: bool
    invalid_reason: str | None = None
    # Set by run_north_south once the scenario has run.
    stopped_by: str | None = None
    cache: Literal["cold", "warm"] | None = None
    meets_slo_target: bool | None = None  # sweeps only
    workers: WorkersReport | None = None


class NorthSouthScenario(BaseModel):
    """One scenario's document in the north-south result. Keys an observer returned are kept too."""

    model_config = ConfigDict(extra="allow")

    scenario: str
    started_at_epoch: float
    measured_started_at_epoch: float
    measured_ended_at_epoch: float
    summary: NorthSouthSummary
    strategy: dict[str, Any]
    records: list[dict[str, Any]]
    headline: bool = False
    operating_point: bool | None = None  # sweeps: whether this level is the operating point
