"""One scenario's schedule, split into shards that independent processes or pods run side by side.

Every shard is computed from (strategy, stop conditions, warm-up count, index, count) alone, so
processes or pods that know only those compute the same partition without talking to each other.
Merged, the shards send exactly the requests a one-process run would: the same global request
indices, hence the same questions and the same cache salts (both chosen by global index).

- Open loop (``poisson``): the whole arrival schedule (the seeded gamma gaps, bounded by
  ``max_requests`` and ``max_duration_s``) is generated up front; shard i gets arrivals i, i+N,
  i+2N, ... with their global indices and due times.
- Closed loop (``concurrent``): the C slots are dealt out round robin (slot s to shard s % N, so
  shard i has C // N slots, one more for the first C % N shards), and measured request j goes to
  the shard that owns slot j % C: the requests split in the same proportion as the slots.
- Warm-up: request g of the warm-up goes to shard g % N; each shard warms up before the start.

Global indices: warm-up requests are 0 .. W-1, measured request j is W + j (as in one process).
A shard of a shard (a pod's own worker processes) is a shard of the whole: worker w of W inside
shard i of N runs shard i + w*N of N*W (``plan_shard(..., worker=w, workers=W)``), the same partition either way.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass

from workload.bench.strategies import ConcurrentStrategy, PoissonStrategy, StopConditions

# Token events per second given to one load generator process: about a quarter of a core at the
# measured cost (benchmarks/client_capacity.py: 40-57k events per CPU-second), headroom for bursts.
CAPACITY_EVENTS_PER_S = 10000.0
# A closed loop's event rate is set by the server; the rule assumes each stream delivers at most
# this many token events per second (an inter-token latency of 10 ms).
STREAM_EVENTS_PER_S = 100.0


@dataclass(frozen=True)
class ShardPlan:
    index: int
    count: int
    warmup_indices: tuple[int, ...]  # global indices of this shard's warm-up requests
    warmup_concurrency: int
    measured_indices: tuple[int, ...]  # global indices of its measured requests, in issue order
    due_s: tuple[float, ...] | None  # open loop: when each measured request is due, s after t0
    concurrency: int | None  # closed loop: this shard's requests in flight
    schedule_stopped_by: str | None  # open loop: "max_duration" when the schedule was cut by the duration

    @property
    def open_loop(self) -> bool:
        return self.due_s is not None


def arrival_schedule(strategy: PoissonStrategy, stop: StopConditions) -> tuple[list[float], str]:
    """The open loop's due times (s after the start) and what ended the schedule."""
    rng = random.Random(strategy.seed)
    shape = strategy.burstiness
    scale = 1.0 / (strategy.rate_rps * shape)  # gamma mean = shape * scale = 1 / rate
    due: list[float] = []
    t = 0.0
    for _ in range(stop.max_requests):
        t += rng.gammavariate(shape, scale)
        if t >= stop.max_duration_s:
            return due, "max_duration"
        due.append(t)
    return due, "max_requests"


def slots(concurrency: int, index: int, count: int) -> int:
    """The closed-loop slots shard ``index`` of ``count`` keeps in flight."""
    return concurrency // count + (1 if index < concurrency % count else 0)


def plan_shard(strategy: ConcurrentStrategy | PoissonStrategy, stop: StopConditions, warmup_requests: int,
               index: int = 0, count: int = 1, worker: int = 0, workers: int = 1) -> ShardPlan:
    """Shard ``index`` of ``count`` of the scenario's schedule (``count`` 1: the whole of it), or,
    with ``workers`` > 1, worker ``worker``'s part of that shard: shard index + worker * count of
    count * workers. Each shard may choose its own number of workers: the partition of the whole
    is the same."""
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: the index must be in 0..count-1 and the count at least 1")
    if workers < 1 or not 0 <= worker < workers:
        raise ValueError(f"worker {worker} of {workers}: the index must be in 0..workers-1")
    if isinstance(strategy, ConcurrentStrategy):
        c = strategy.concurrency
        if count > c:
            raise ValueError(f"{count} shards for concurrency {c}: a closed loop cannot be split into more "
                             f"shards (client pods) than requests in flight")
        if workers > slots(c, index, count):
            raise ValueError(f"{workers} workers for {slots(c, index, count)} requests in flight (concurrency {c}"
                             + (f", shard {index}/{count}" if count > 1 else "")
                             + "): a closed loop cannot be split into more workers than requests in flight")
    index, count = index + worker * count, count * workers
    warmup = tuple(g for g in range(warmup_requests) if g % count == index)
    if isinstance(strategy, PoissonStrategy):
        due, stopped_by = arrival_schedule(strategy, stop)
        mine = range(index, len(due), count)
        return ShardPlan(index, count, warmup, 1, tuple(warmup_requests + j for j in mine),
                         tuple(due[j] for j in mine), None, stopped_by)
    measured = tuple(warmup_requests + j for j in range(stop.max_requests) if (j % c) % count == index)
    mine = slots(c, index, count)
    return ShardPlan(index, count, warmup, mine, measured, None, mine, None)


def offered_events_per_s(strategy: ConcurrentStrategy | PoissonStrategy, max_tokens: int) -> float:
    """An upper estimate of the token events per second the scenario asks of the client."""
    if isinstance(strategy, PoissonStrategy):
        return strategy.rate_rps * max_tokens  # at most one event per token
    return strategy.concurrency * STREAM_EVENTS_PER_S


CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"  # cgroup v2: "<quota> <period>" or "max <period>"


def cgroup_cpu_limit(path: str | None = None) -> float | None:
    """The CPUs a container's quota allows (a pod's CPU limit), None when unlimited or unknown."""
    try:
        with open(path or CGROUP_CPU_MAX) as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by the container's CPU quota (in a pod
    limited to 1 CPU on an 8-core node the affinity still lists 8 cores)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return cores if limit is None else max(1, min(cores, math.floor(limit)))


def auto_workers(strategy: ConcurrentStrategy | PoissonStrategy, max_tokens: int, shard_index: int = 0,
                 shard_count: int = 1, cores: int | None = None) -> int:
    """Workers = 0 ("auto"): enough processes for this shard's share of the offered load at
    CAPACITY_EVENTS_PER_S each, at most one per available core and (closed loop) one per slot."""
    need = math.ceil(offered_events_per_s(strategy, max_tokens) / shard_count / CAPACITY_EVENTS_PER_S)
    cap = cores if cores is not None else available_cores()
    if isinstance(strategy, ConcurrentStrategy):
        cap = min(cap, max(1, slots(strategy.concurrency, shard_index, shard_count)))
    return max(1, min(need, cap))
