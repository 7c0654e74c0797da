"""The load's named, serializable settings: strategies, stop conditions, timeouts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ConcurrentStrategy(BaseModel):
    """Closed loop: a fixed number of requests in flight."""

    type: Literal["concurrent"] = "concurrent"
    concurrency: int = Field(4, ge=1, le=1024)


class PoissonStrategy(BaseModel):
    """Open loop: arrivals at a fixed mean rate, Poisson (burstiness 1) or gamma-distributed gaps."""

    type: Literal["poisson"] = "poisson"
    rate_rps: float = Field(2.0, gt=0)
    burstiness: float = Field(1.0, gt=0)  # gamma shape; 1.0 is Poisson, < 1 burstier
    seed: int = 0


Strategy = ConcurrentStrategy | PoissonStrategy


class StopConditions(BaseModel):
    max_requests: int = Field(32, ge=1)
    max_duration_s: float = Field(600.0, gt=0)
    max_error_rate: float | None = Field(None, ge=0, le=1)  # error budget, checked after 10 requests


class Timeouts(BaseModel):
    connect_s: float = Field(5.0, gt=0)
    first_token_s: float = Field(60.0, gt=0)
    total_s: float = Field(300.0, gt=0)
