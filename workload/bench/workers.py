"""Load generator worker processes: one scenario's shards run side by side, started on one clock.

The parent spawns one process per shard (multiprocessing "spawn", uvloop in each); each worker
warms up and reports ready; the parent then sets ONE start instant on ``time.perf_counter`` (the
system-wide CLOCK_MONOTONIC on Linux, so the same clock in every process) a little in the future;
every worker sleeps until it and uses it as its ``t0``. Records come back to the parent as dicts.
A worker that exits, raises or sends nothing in time fails the scenario with its reason.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue as queue_mod
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from workload.bench.endpoints import Endpoint
from workload.bench.loadgen import Progress, ShardRun, run_async, run_shard
from workload.bench.records import RequestRecord
from workload.bench.shards import ShardPlan
from workload.bench.strategies import StopConditions, Timeouts

# How far ahead of "all ready" the start instant is set: every worker must be sleeping for it.
START_LEAD_S = 0.25
PROGRESS_EVERY_S = 0.5


@dataclass
class WorkerJob:
    base_url: str
    endpoint: Endpoint
    prompts: Sequence[tuple[str, str]]
    plan: ShardPlan
    stop: StopConditions
    scenario: str
    max_tokens: int
    timeouts: Timeouts
    headers: dict[str, str] | None
    cache_salt_prefix: str | None


@dataclass
class WorkersOutcome:
    runs: list[ShardRun | None]  # per worker; None: it did not finish
    failed: str | None  # why the scenario is invalid, when a worker did not finish


def epoch_of(t: float) -> float:
    """The epoch time of instant ``t`` on the ``time.perf_counter`` clock."""
    return time.time() + (t - time.perf_counter())


def _request_bound_s(timeouts: Timeouts) -> float:
    return max(timeouts.first_token_s, timeouts.total_s) + 2.0


def ready_timeout_s(job: WorkerJob) -> float:
    """Spawning and importing, then the warm-up: a request lasts at most its timeouts."""
    rounds = -(-len(job.plan.warmup_indices) // max(job.plan.warmup_concurrency, 1))
    return 60.0 + rounds * _request_bound_s(job.timeouts)


def run_timeout_s(job: WorkerJob) -> float:
    """From the start instant: the schedule's duration, then the last request's timeouts."""
    return job.stop.max_duration_s + _request_bound_s(job.timeouts) + 30.0


def _worker_main(job: WorkerJob, worker: int, messages, start_at, go, wait_s: float) -> None:
    """A worker process: run the shard, send the records back; on an exception say why."""
    try:
        run = run_async(_work(job, worker, messages, start_at, go, wait_s))
        messages.put(("result", worker, {"records": [r.to_dict() for r in run.records], "t0": run.t0,
                                         "t0_epoch": run.t0_epoch, "wall_time_s": run.wall_time_s,
                                         "stopped_by": run.stopped_by, "cpu_s": run.cpu_s,
                                         "process_cpu_s": run.process_cpu_s}))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which fails the scenario
        messages.put(("error", worker, f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None
    finally:
        messages.close()
        messages.join_thread()


async def _work(job: WorkerJob, worker: int, messages, start_at, go, wait_s: float) -> ShardRun:
    counts = {"done": 0, "errors": 0, "sent_at": time.perf_counter()}

    def flush() -> None:
        if counts["done"]:
            messages.put(("progress", worker, counts["done"], counts["errors"]))
        counts.update(done=0, errors=0, sent_at=time.perf_counter())

    def on_record(rec: RequestRecord) -> None:
        counts["done"] += 1
        counts["errors"] += 0 if rec.ok else 1
        if time.perf_counter() - counts["sent_at"] >= PROGRESS_EVERY_S:
            flush()

    async def start() -> tuple[float, float]:
        messages.put(("ready", worker))
        if not await asyncio.to_thread(go.wait, wait_s):
            raise RuntimeError(f"no start signal within {wait_s:.0f} s")
        t0 = start_at.value
        return t0, epoch_of(t0)

    run = await run_shard(job.base_url, job.endpoint, job.prompts, job.plan, job.stop, scenario=job.scenario,
                          max_tokens=job.max_tokens, timeouts=job.timeouts, headers=job.headers,
                          cache_salt_prefix=job.cache_salt_prefix, start=start, on_record=on_record)
    flush()
    return run


def run_workers(jobs: Sequence[WorkerJob], progress: Progress,
                choose_start: Callable[[], tuple[float, float]] | None = None) -> WorkersOutcome:
    """Run each job in its own process, all started at one instant: ``choose_start()`` (called
    once every worker is ready) returns it as (perf_counter, epoch); by default START_LEAD_S
    from then. It may raise (e.g. a client pod ready too late): the workers are then stopped."""
    n = len(jobs)
    ctx = mp.get_context("spawn")
    messages = ctx.Queue()
    start_at = ctx.Value("d", 0.0)
    go = ctx.Event()
    ready_s = max(ready_timeout_s(j) for j in jobs)
    procs = [ctx.Process(target=_worker_main, args=(job, w, messages, start_at, go, ready_s + 30.0),
                         name=f"ragbench-loadgen-{w}", daemon=True) for w, job in enumerate(jobs)]
    ready: set[int] = set()
    results: dict[int, dict] = {}
    failed: list[str] = []

    def handle(msg) -> None:
        kind, w = msg[0], msg[1]
        if kind == "ready":
            ready.add(w)
        elif kind == "progress":
            progress.add(msg[2], msg[3])
        elif kind == "result":
            results[w] = msg[2]
        elif kind == "error" and not failed:
            failed.append(f"worker {w} of {n} failed: {msg[2]}")

    def poll(timeout: float) -> None:
        try:
            handle(messages.get(timeout=timeout))
        except queue_mod.Empty:
            pass
        for w, p in enumerate(procs):
            if w in results or p.exitcode is None or failed:
                continue
            # Exited without a result we have read: anything it sent is in the pipe by now.
            until = time.monotonic() + 1.0
            try:
                while w not in results and not failed and time.monotonic() < until:
                    handle(messages.get(timeout=max(until - time.monotonic(), 0.01)))
            except queue_mod.Empty:
                pass
            if w not in results and not failed:
                failed.append(f"worker {w} of {n} exited with code {p.exitcode} before finishing its shard")

    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + ready_s
        while len(ready) < n and not failed:
            poll(0.1)
            if time.monotonic() > deadline and len(ready) < n:
                late = min(set(range(n)) - ready)
                failed.append(f"worker {late} of {n} was not ready within {ready_s:.0f} s")
        if failed:
            return WorkersOutcome([None] * n, failed[0])
        if choose_start is None:
            t0 = time.perf_counter() + START_LEAD_S
        else:
            t0, _ = choose_start()
        start_at.value = t0
        go.set()
        deadline = time.monotonic() + max(t0 - time.perf_counter(), 0) + max(run_timeout_s(j) for j in jobs)
        while len(results) < n and not failed:
            poll(0.1)
            if time.monotonic() > deadline and len(results) < n:
                late = min(set(range(n)) - set(results))
                failed.append(f"worker {late} of {n} sent no result within "
                              f"{max(run_timeout_s(j) for j in jobs):.0f} s of the start")
        runs = [_run(results[w]) if w in results else None for w in range(n)]
        return WorkersOutcome(runs, failed[0] if failed else None)
    finally:
        started = [p for p in procs if p.pid is not None]
        for p in started:
            if p.is_alive():
                p.kill()
        for p in started:
            p.join(10)
        messages.close()
        messages.cancel_join_thread()


def _run(payload: dict) -> ShardRun:
    return ShardRun([RequestRecord.from_dict(r) for r in payload["records"]], payload["t0"], payload["t0_epoch"],
                    payload["wall_time_s"], payload["stopped_by"], payload["cpu_s"], payload["process_cpu_s"])
