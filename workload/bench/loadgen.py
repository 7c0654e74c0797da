"""The streaming load generator: named load strategies, stop conditions, one record per request."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, Field

from workload.bench.endpoints import FINISHED, Endpoint
from workload.bench.http1 import Exchange, HTTPClientError, Pool
from workload.bench.netprobe import ConnectSamples, tcp_connect_samples
from workload.bench.observer import ScenarioObserver
from workload.bench.records import RequestRecord
from workload.bench.sse import MalformedEvent, SSEParser


def run_async(coro):
    """Run a load coroutine on uvloop when it is installed (less loop overhead per token event)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


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
    """A one-line progress report on stderr, at most every ``every_s`` seconds."""

    def __init__(self, total: int, label: str, enabled: bool = True, every_s: float = 2.0) -> None:
        self.total, self.label, self.enabled, self.every_s = total, label, enabled, every_s
        self.done = self.errors = 0
        self._t0 = time.perf_counter()
        self._last = 0.0

    def update(self, record: RequestRecord, force: bool = False) -> None:
        self.done += 1
        self.errors += 0 if record.ok else 1
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
    """Probe the network (``connect_samples`` TCP connects), run warm-up, then the measured load;
    return every record (warm-up ones flagged). With ``cache_salt_prefix`` every request, warm-up
    included, carries its own prefix-cache salt (``<prefix>.<index>``). ``observer.measure_started``
    is called between the warm-up and the measured load (``measure_finished`` is the caller's, once
    this returns)."""
    if not prompts:
        raise ValueError("no prompts to send")
    connect = await asyncio.to_thread(tcp_connect_samples, base_url, connect_samples,
                                      min(timeouts.connect_s, 2.0))
    clock = _Clock()
    records: list[RequestRecord] = []
    counter = iter(range(10**9))

    def new_record(warmup: bool) -> tuple[RequestRecord, str]:
        i = next(counter)
        prompt_id, text = prompts[i % len(prompts)]
        rec = RequestRecord(i, scenario, prompt_id, len(text), warmup=warmup)
        if cache_salt_prefix is not None:
            rec.cache_salt = f"{cache_salt_prefix}.{i}"
        records.append(rec)
        return rec, text

    client = Pool(base_url, connect_timeout_s=timeouts.connect_s, headers=headers)
    try:
        warm_conc = strategy.concurrency if isinstance(strategy, ConcurrentStrategy) else 1
        await _closed_loop(client, endpoint, lambda: new_record(True), warmup_requests, warm_conc,
                           float("inf"), None, max_tokens, timeouts, clock, None)

        if observer is not None:
            observer.measure_started(scenario)
        started_at = time.time()
        t_start = clock.now()
        prog = Progress(stop.max_requests, scenario, enabled=progress)
        if isinstance(strategy, ConcurrentStrategy):
            stopped_by = await _closed_loop(client, endpoint, lambda: new_record(False), stop.max_requests,
                                            strategy.concurrency, stop.max_duration_s, stop.max_error_rate,
                                            max_tokens, timeouts, clock, prog)
            offered = None
        else:
            stopped_by = await _open_loop(client, endpoint, lambda: new_record(False), strategy, stop,
                                          max_tokens, timeouts, clock, prog)
            offered = strategy.rate_rps
        wall = clock.now() - t_start
        ended_at = started_at + wall
    finally:
        await client.aclose()
    return ScenarioResult(records, wall, started_at, stopped_by, ended_at, offered,
                          meta={"endpoint": endpoint.name, "strategy": strategy.model_dump()}, connect=connect)


def _error_budget_spent(done: list[RequestRecord], budget: float | None) -> bool:
    if budget is None or len(done) < 10:
        return False
    return sum(1 for r in done if not r.ok) / len(done) > budget


async def _closed_loop(client, endpoint, make: Callable, count: int, concurrency: int, max_duration_s: float,
                       error_budget: float | None, max_tokens: int, timeouts: Timeouts, clock: _Clock,
                       prog: Progress | None) -> str:
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
            if prog:
                prog.update(rec)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    return stopped_by


async def _open_loop(client, endpoint, make: Callable, strategy: PoissonStrategy, stop: StopConditions,
                     max_tokens: int, timeouts: Timeouts, clock: _Clock, prog: Progress) -> str:
    rng = random.Random(strategy.seed)
    shape = strategy.burstiness
    scale = 1.0 / (strategy.rate_rps * shape)  # gamma mean = shape * scale = 1 / rate
    tasks: list[asyncio.Task] = []
    done: list[RequestRecord] = []
    stopped_by = "max_requests"
    t_next = clock.now()
    t_end = t_next + stop.max_duration_s

    async def fire(rec: RequestRecord, text: str) -> None:
        await send_one(client, endpoint, rec, text, max_tokens, timeouts, clock)
        done.append(rec)
        prog.update(rec)

    for _ in range(stop.max_requests):
        t_next += rng.gammavariate(shape, scale)
        if t_next >= t_end:
            stopped_by = "max_duration"
            break
        if _error_budget_spent(done, stop.max_error_rate):
            stopped_by = "error_budget"
            break
        delay = t_next - clock.now()
        if delay > 0:
            await asyncio.sleep(delay)
        rec, text = make()
        rec.t_scheduled = t_next
        tasks.append(asyncio.create_task(fire(rec, text)))
    if tasks:
        await asyncio.gather(*tasks)
    return stopped_by
