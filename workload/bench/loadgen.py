"""The streaming load generator: named load strategies, stop conditions, one record per request."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from workload.bench.endpoints import FINISHED, Endpoint
from workload.bench.http1 import Exchange, HTTPClientError, Pool
from workload.bench.netprobe import ConnectSamples, tcp_connect_samples
from workload.bench.observer import ScenarioObserver
from workload.bench.records import RequestRecord
from workload.bench.shards import ShardPlan, plan_shard
from workload.bench.sse import MalformedEvent, SSEParser
from workload.bench.strategies import (  # noqa: F401 - re-exported
    ConcurrentStrategy,
    PoissonStrategy,
    StopConditions,
    Strategy,
    Timeouts,
)


def run_async(coro):
    """Run a load coroutine on uvloop when it is installed (less loop overhead per token event)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


@dataclass
class ScenarioResult:
    records: list[RequestRecord]
    wall_time_s: float  # the measured window (warm-up excluded)
    started_at: float  # epoch seconds of the measured window's start
    stopped_by: str
    ended_at: float | None = None  # epoch seconds of the measured window's end (the last request ended)
    offered_rate_rps: float | None = None
    meta: dict = field(default_factory=dict)
    connect: ConnectSamples | None = None  # TCP connect times to the endpoint, before the load
    cpu_s: float | None = None  # CPU seconds the load loop used over the measured window


class _Clock:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self.t0


async def send_one(
    client: Pool,
    endpoint: Endpoint,
    record: RequestRecord,
    prompt: str,
    max_tokens: int,
    timeouts: Timeouts,
    clock: _Clock,
) -> RequestRecord:
    """Send one streaming request and fill its record. Never raises (but for cancellation).

    Every piece of the response body is stamped when it arrives (``data_received``) and parsed
    right then, in the protocol callback; the coroutine only waits for the end."""
    path, body = endpoint.request(prompt, max_tokens, record.cache_salt)
    request = client.request_bytes("POST", path, json.dumps(body, separators=(",", ":")).encode())
    loop = asyncio.get_running_loop()
    parser = SSEParser()
    error_body: list[bytes] = []
    state = {"finished": False}
    exchange: Exchange | None = None
    conn = None
    drain_timer: asyncio.TimerHandle | None = None

    def on_body(data: bytes, now: float) -> None:
        nonlocal drain_timer
        if record.t_first_byte is None:
            record.t_first_byte = now
        if exchange.status != 200:
            if sum(map(len, error_body)) < 4096:
                error_body.append(data)
            return
        if state["finished"]:
            return
        had_token = record.t_first_token is not None
        for event in parser.feed(data):
            if endpoint.on_event(record, event, now) == FINISHED:
                state["finished"] = True
                # The body's end normally follows at once; do not wait long for it.
                drain_timer = loop.call_later(1.0, exchange.finish_early)
                break
        if not had_token and record.t_first_token is not None:
            deadline.reschedule(loop.time() + timeouts.total_s - (now - record.t_sent))

    record.t_sent = clock.now()
    try:
        async with asyncio.timeout_at(loop.time() + timeouts.first_token_s) as deadline:
            conn, record.connect_ms = await client.connect()
            exchange = client.start(conn, request, clock.now, on_body)
            await exchange.result
        record.http_status = exchange.status
        if exchange.status != 200:
            text = b"".join(error_body).decode(errors="replace")
            record.fail("http_error", f"HTTP {exchange.status}: {text[:200]}", clock.now())
        elif not state["finished"]:
            record.fail("stream_incomplete", "stream ended without a done or error event", clock.now())
    except TimeoutError:
        if not state["finished"]:  # after the final event only the body's end was missing
            code = "first_token_timeout" if record.t_first_token is None else "total_timeout"
            record.fail(code, f"no {'first token' if code == 'first_token_timeout' else 'end'} in time",
                        clock.now())
    except HTTPClientError as exc:
        if not state["finished"]:
            record.fail(exc.code, str(exc), clock.now())
    except (MalformedEvent, UnicodeDecodeError) as exc:
        record.fail("malformed_event", str(exc), clock.now())
    except Exception as exc:  # noqa: BLE001 - a record, never an escaped exception
        record.fail("client_error", f"{type(exc).__name__}: {exc}", clock.now())
    finally:
        if drain_timer is not None:
            drain_timer.cancel()
        if exchange is not None:
            record.http_status = exchange.status
            if not exchange.result.done():
                exchange.finish_early()
            if not exchange.result.cancelled() and exchange.result.done():
                exchange.result.exception()  # retrieved: no "exception never retrieved" warning
        if conn is not None:
            client.release(conn, exchange)
    return record


class Progress:
    """A one-line progress report on stderr, at most every ``every_s`` seconds (one line for the
    whole scenario, whichever processes its requests came from)."""

    def __init__(self, total: int, label: str, enabled: bool = True, every_s: float = 2.0) -> None:
        self.total, self.label, self.enabled, self.every_s = total, label, enabled, every_s
        self.done = self.errors = 0
        self._t0 = time.perf_counter()
        self._last = 0.0

    def started(self) -> None:
        """The measured load starts now (the rate counts from here)."""
        self._t0 = time.perf_counter()

    def update(self, record: RequestRecord, force: bool = False) -> None:
        self.add(1, 0 if record.ok else 1, force)

    def add(self, done: int, errors: int, force: bool = False) -> None:
        self.done += done
        self.errors += errors
        now = time.perf_counter()
        if self.enabled and (force or now - self._last >= self.every_s or self.done == self.total):
            self._last = now
            rate = self.done / max(now - self._t0, 1e-9)
            width = 24
            filled = int(width * self.done / max(self.total, 1))
            bar = "#" * filled + "." * (width - filled)
            print(
                f"[{self.label}] [{bar}] {self.done}/{self.total} requests, "
                f"{self.errors} errors, {rate:.2f} req/s",
                file=sys.stderr,
                flush=True,
            )


@dataclass
class ShardRun:
    """What one shard's run produced. Record times are relative to ``t0`` (the measured start)."""

    records: list[RequestRecord]
    t0: float  # the measured start, time.perf_counter()
    t0_epoch: float  # the same instant, epoch seconds
    wall_time_s: float  # from t0 until the shard's last request ended
    stopped_by: str
    cpu_s: float  # CPU seconds the load loop's thread used over the measured window
    process_cpu_s: float = 0.0  # CPU seconds of the whole process over the same window

    @property
    def events(self) -> int:
        return sum(len(r.token_times) for r in self.records if not r.warmup)


async def start_now() -> tuple[float, float]:
    """The measured load starts right away: (t0 as perf_counter, its epoch)."""
    return time.perf_counter(), time.time()


# The kernel lets a timed wait end late by 0.1% of its length (0.5% in a niced process): a 7 s
# sleep woke 10 ms late. Long waits are taken in steps this short, which end within 50 us.
LONGEST_SLEEP_S = 0.05


async def sleep_until(t: float, spin_s: float | None = None) -> None:
    """Sleep until ``time.perf_counter()`` reaches ``t``, as closely as the loop's timers allow
    (about 1 ms, either way). With ``spin_s``, the last ``spin_s`` is waited out by polling the
    clock instead, to the microsecond (this blocks the loop meanwhile)."""
    margin = spin_s or 0.0
    while (left := t - margin - time.perf_counter()) > LONGEST_SLEEP_S:
        await asyncio.sleep(LONGEST_SLEEP_S)
    if left > 0:
        await asyncio.sleep(left)
    if spin_s is not None:
        while time.perf_counter() < t:
            pass


def _thread_cpu_s() -> float:
    return time.thread_time()


async def run_shard(
    base_url: str,
    endpoint: Endpoint,
    prompts: Sequence[tuple[str, str]],
    plan: ShardPlan,
    stop: StopConditions,
    *,
    scenario: str = "default",
    max_tokens: int = 64,
    timeouts: Timeouts = Timeouts(),
    headers: dict[str, str] | None = None,
    cache_salt_prefix: str | None = None,
    start: Callable[[], Awaitable[tuple[float, float]]] = start_now,
    on_record: Callable[[RequestRecord], None] | None = None,
) -> ShardRun:
    """Run one shard of a scenario: its warm-up, then ``start()`` (which returns the measured
    start ``t0`` on the ``time.perf_counter`` clock and its epoch, possibly in the future: the
    shard sleeps until then), then its measured requests. Request ``g`` (global index) asks
    ``prompts[g % len(prompts)]`` and, with ``cache_salt_prefix``, carries the salt
    ``<prefix>.<g>``. A one-shard plan is the whole scenario."""
    if not prompts:
        raise ValueError("no prompts to send")
    clock = _Clock()
    records: list[RequestRecord] = []

    def new_record(g: int, warmup: bool) -> tuple[RequestRecord, str]:
        prompt_id, text = prompts[g % len(prompts)]
        rec = RequestRecord(g, scenario, prompt_id, len(text), warmup=warmup)
        if cache_salt_prefix is not None:
            rec.cache_salt = f"{cache_salt_prefix}.{g}"
        records.append(rec)
        return rec, text

    client = Pool(base_url, connect_timeout_s=timeouts.connect_s, headers=headers)
    try:
        warm = iter(plan.warmup_indices)
        await _closed_loop(client, endpoint, lambda: new_record(next(warm), True), len(plan.warmup_indices),
                           plan.warmup_concurrency, float("inf"), None, max_tokens, timeouts, clock, None)
        t0, t0_epoch = await start()
        await sleep_until(t0, spin_s=0.001)
        for rec in records:  # the warm-up, onto the measured start's clock
            rec.shift(clock.t0 - t0)
        clock.t0 = t0
        cpu0, process0 = _thread_cpu_s(), time.process_time()
        measured = iter(plan.measured_indices)
        if plan.open_loop:
            stopped_by = await _open_loop(client, endpoint, lambda g: new_record(g, False), plan,
                                          stop.max_error_rate, max_tokens, timeouts, clock, on_record)
        else:
            stopped_by = await _closed_loop(client, endpoint, lambda: new_record(next(measured), False),
                                            len(plan.measured_indices), plan.concurrency, stop.max_duration_s,
                                            stop.max_error_rate, max_tokens, timeouts, clock, on_record)
        wall = clock.now()
        cpu, process_cpu = _thread_cpu_s() - cpu0, time.process_time() - process0
    finally:
        await client.aclose()
    return ShardRun(records, t0, t0_epoch, wall, stopped_by, cpu, process_cpu)


async def run_scenario(
    base_url: str,
    endpoint: Endpoint,
    prompts: Sequence[tuple[str, str]],
    strategy: Strategy,
    stop: StopConditions,
    *,
    scenario: str = "default",
    max_tokens: int = 64,
    warmup_requests: int = 2,
    timeouts: Timeouts = Timeouts(),
    progress: bool = True,
    headers: dict[str, str] | None = None,
    connect_samples: int = 20,
    observer: ScenarioObserver | None = None,
    cache_salt_prefix: str | None = None,
) -> ScenarioResult:
    """Probe the network (``connect_samples`` TCP connects), run warm-up, then the measured load,
    all in this process; return every record (warm-up ones flagged). With ``cache_salt_prefix``
    every request, warm-up included, carries its own prefix-cache salt (``<prefix>.<index>``).
    ``observer.measure_started`` is called between the warm-up and the measured load
    (``measure_finished`` is the caller's, once this returns)."""
    if not prompts:
        raise ValueError("no prompts to send")
    connect = await asyncio.to_thread(tcp_connect_samples, base_url, connect_samples,
                                      min(timeouts.connect_s, 2.0))
    plan = plan_shard(strategy, stop, warmup_requests)
    prog = Progress(len(plan.measured_indices), scenario, enabled=progress)

    async def start() -> tuple[float, float]:
        if observer is not None:
            observer.measure_started(scenario)
        return await start_now()

    run = await run_shard(base_url, endpoint, prompts, plan, stop, scenario=scenario, max_tokens=max_tokens,
                          timeouts=timeouts, headers=headers, cache_salt_prefix=cache_salt_prefix, start=start,
                          on_record=prog.update)
    return ScenarioResult(run.records, run.wall_time_s, run.t0_epoch, run.stopped_by,
                          run.t0_epoch + run.wall_time_s,
                          strategy.rate_rps if isinstance(strategy, PoissonStrategy) else None,
                          meta={"endpoint": endpoint.name, "strategy": strategy.model_dump()}, connect=connect,
                          cpu_s=run.cpu_s)


def _error_budget_spent(done: list[RequestRecord], budget: float | None) -> bool:
    if budget is None or len(done) < 10:
        return False
    return sum(1 for r in done if not r.ok) / len(done) > budget


async def _closed_loop(client, endpoint, make: Callable, count: int, concurrency: int, max_duration_s: float,
                       error_budget: float | None, max_tokens: int, timeouts: Timeouts, clock: _Clock,
                       on_record: Callable[[RequestRecord], None] | None) -> str:
    if count <= 0:
        return "max_requests"
    issued = 0
    done: list[RequestRecord] = []
    stopped_by = "max_requests"
    t_end = clock.now() + max_duration_s

    async def worker() -> None:
        nonlocal issued, stopped_by
        while issued < count:
            if clock.now() >= t_end:
                stopped_by = "max_duration"
                return
            if _error_budget_spent(done, error_budget):
                stopped_by = "error_budget"
                return
            issued += 1
            rec, text = make()
            await send_one(client, endpoint, rec, text, max_tokens, timeouts, clock)
            done.append(rec)
            if on_record:
                on_record(rec)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return stopped_by


async def _open_loop(client, endpoint, make: Callable, plan: ShardPlan, error_budget: float | None,
                     max_tokens: int, timeouts: Timeouts, clock: _Clock,
                     on_record: Callable[[RequestRecord], None] | None) -> str:
    """Send each of the plan's arrivals when it is due (times from the measured start)."""
    tasks: list[asyncio.Task] = []
    done: list[RequestRecord] = []
    stopped_by = plan.schedule_stopped_by or "max_requests"

    async def fire(rec: RequestRecord, text: str) -> None:
        await send_one(client, endpoint, rec, text, max_tokens, timeouts, clock)
        done.append(rec)
        if on_record:
            on_record(rec)

    for g, due in zip(plan.measured_indices, plan.due_s):
        if _error_budget_spent(done, error_budget):
            stopped_by = "error_budget"
            break
        await sleep_until(clock.t0 + due)
        rec, text = make(g)
        rec.t_scheduled = due
        tasks.append(asyncio.create_task(fire(rec, text)))
    if tasks:
        await asyncio.gather(*tasks)
    return stopped_by
