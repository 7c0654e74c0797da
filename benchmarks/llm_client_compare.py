"""Which HTTP client should the service use to stream from vLLM? Candidates measured against the
same local vLLM in one run: aiohttp (the service's ``VllmChatGenerator`` as shipped), httpx, and
the load generator's own HTTP/1.1 client (``workload/bench/http1.py`` with its SSE parser).

Each candidate streams the same chat requests (a fixed-length prompt, ``max_tokens`` output tokens
with ignore_eos, usage in every chunk as the service asks for it, a new ``cache_salt`` per request
so vLLM's prefix cache favours no one) and hands every text chunk to an async callback, as the
service does. Rounds are interleaved (every round runs every candidate, in an order that rotates),
so drift in vLLM's speed falls on all of them; round 0 warms up and is discarded.

Per candidate:
- **first chunk**: the call started -> the first non-empty text chunk reached the callback (ms);
  vLLM's prefill is in it for every candidate alike, so differences are the clients';
- **stream**: the call started -> the call returned (ms);
- **CPU / stream**: this process's CPU time (user + system, ``time.process_time``) over the
  candidate's rounds, per stream: what the client costs the core it shares with the service.

No target: it prints the table (docs/service.md, "Talking to vLLM", keeps the figures); it exits
non-zero only when a call fails. vLLM runs confined to the first core and this client to the last
(``--no-pin``: both anywhere), so a client's CPU cannot slow vLLM down: what differs between the
candidates is the clients' own latency. Run with the workload environment:

    .state/venv-workload/bin/python benchmarks/llm_client_compare.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path

import httpx
from haystack.dataclasses import ChatMessage, StreamingChunk

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _local import fixed_length_prompts, local_stack  # noqa: E402

from workload.bench.http1 import Pool  # noqa: E402
from workload.bench.metrics import percentile  # noqa: E402
from workload.bench.sse import SSEParser  # noqa: E402
from workload.llm.tiny_model import MODEL_ID  # noqa: E402
from workload.service.llm import VllmChatGenerator  # noqa: E402

SYSTEM = "Answer the question from the passages."


def _text_of(data: str | bytes) -> str | None:
    choices = json.loads(data).get("choices") or []
    return (choices[0].get("delta") or {}).get("content") if choices else None


class AiohttpCandidate:
    """The service's client as shipped."""

    name = "aiohttp"

    def __init__(self, llm_url: str) -> None:
        self.gen = VllmChatGenerator(api_base_url=f"{llm_url}/v1", model=MODEL_ID)

    async def stream(self, messages: list[ChatMessage], kwargs: dict, on_chunk) -> None:
        await self.gen.run_async(messages=messages, streaming_callback=on_chunk, generation_kwargs=kwargs)

    async def aclose(self) -> None:
        await self.gen.aclose()


def _body(messages: list[ChatMessage], kwargs: dict) -> bytes:
    body = {"model": MODEL_ID, "messages": [m.to_openai_dict_format() for m in messages], **kwargs, "stream": True}
    return json.dumps(body, separators=(",", ":")).encode()


class HttpxCandidate:
    """httpx's AsyncClient (one, kept-alive connections), lines from ``aiter_lines``."""

    name = "httpx"

    def __init__(self, llm_url: str) -> None:
        self.client = httpx.AsyncClient(base_url=f"{llm_url}/v1", timeout=httpx.Timeout(60, connect=10),
                                        headers={"content-type": "application/json"})

    async def stream(self, messages: list[ChatMessage], kwargs: dict, on_chunk) -> None:
        async with self.client.stream("POST", "/chat/completions", content=_body(messages, kwargs)) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if line.startswith("data:") and line[5:].strip() != "[DONE]":
                    text = _text_of(line[5:])
                    if text:
                        await on_chunk(StreamingChunk(content=text, meta={"tokens": 1}))

    async def aclose(self) -> None:
        await self.client.aclose()


class Http1Candidate:
    """The load generator's client: body pieces handed over from the protocol's callback, parsed
    by its SSEParser, events passed to the caller through a queue (as the service once did)."""

    name = "http1"

    def __init__(self, llm_url: str) -> None:
        self.pool = Pool(f"{llm_url}/v1", connect_timeout_s=10)

    async def stream(self, messages: list[ChatMessage], kwargs: dict, on_chunk) -> None:
        conn, _ = await self.pool.connect()
        pieces: asyncio.Queue = asyncio.Queue()
        parser, end = SSEParser(), object()

        def on_body(data: bytes, _arrived: float) -> None:
            for event in parser.feed(data):
                pieces.put_nowait(event.data)

        exchange = self.pool.start(conn, self.pool.request_bytes("POST", "/chat/completions", _body(messages, kwargs)),
                                   time.perf_counter, on_body)
        exchange.result.add_done_callback(lambda _: pieces.put_nowait(end))
        try:
            while (data := await pieces.get()) is not end:
                if data != "[DONE]":
                    text = _text_of(data)
                    if text:
                        await on_chunk(StreamingChunk(content=text, meta={"tokens": 1}))
            await exchange.result
            if exchange.status != 200:
                raise RuntimeError(f"HTTP {exchange.status}")
        finally:
            if not exchange.complete:
                exchange.finish_early()
            self.pool.release(conn, exchange)

    async def aclose(self) -> None:
        await self.pool.aclose()


CANDIDATES = (AiohttpCandidate, HttpxCandidate, Http1Candidate)


async def one_round(candidate, prompts: list[str], args) -> tuple[list[float], list[float], float]:
    """``prompts`` streamed ``args.concurrency`` at a time; (first-chunk ms, stream ms, CPU s)."""
    firsts, totals = [], []
    queue = list(prompts)

    async def worker() -> None:
        while queue:
            prompt = queue.pop()
            messages = [ChatMessage.from_system(SYSTEM), ChatMessage.from_user(prompt)]
            kwargs = {"max_tokens": args.output_tokens, "ignore_eos": True, "cache_salt": uuid.uuid4().hex,
                      "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
            first: list[float] = []

            async def on_chunk(chunk: StreamingChunk) -> None:
                if not first:
                    first.append(time.perf_counter())

            t0 = time.perf_counter()
            await candidate.stream(messages, kwargs, on_chunk)
            totals.append((time.perf_counter() - t0) * 1000)
            firsts.append((first[0] - t0) * 1000)

    cpu0 = time.process_time()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return firsts, totals, time.process_time() - cpu0


async def compare(llm_url: str, prompts: list[str], args) -> dict[str, dict]:
    candidates = [cls(llm_url) for cls in CANDIDATES]
    results = {c.name: {"first": [], "total": [], "cpu_s": 0.0, "streams": 0} for c in candidates}
    try:
        for rnd in range(args.rounds + 1):  # round 0 warms every candidate up and is discarded
            order = candidates[rnd % len(candidates):] + candidates[:rnd % len(candidates)]
            for candidate in order:
                firsts, totals, cpu_s = await one_round(candidate, prompts, args)
                if rnd:
                    got = results[candidate.name]
                    got["first"] += firsts
                    got["total"] += totals
                    got["cpu_s"] += cpu_s
                    got["streams"] += len(firsts)
    finally:
        for c in candidates:
            await c.aclose()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40, help="per candidate and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--input-tokens", type=int, default=128)
    parser.add_argument("--output-tokens", type=int, default=32)
    parser.add_argument("--no-pin", action="store_true", help="leave this process on every core")
    args = parser.parse_args()

    try:
        import uvloop  # the loop Ray Serve runs the replica on
    except ImportError:
        uvloop = None
    cores = sorted(os.sched_getaffinity(0))
    pin = not args.no_pin and len(cores) >= 2
    with local_stack(llm_cores={cores[0]} if pin else None, other_cores={cores[-1]} if pin else None) as stack:
        prompts = fixed_length_prompts(stack, args.requests, args.input_tokens)
        runner = uvloop.run if uvloop else asyncio.run
        try:
            results = runner(compare(stack.llm_url, prompts, args))
        except Exception as exc:  # noqa: BLE001 - any failed call fails the run
            print(f"FAIL: a call failed: {type(exc).__name__}: {exc}")
            return 1

    print(f"\n{args.rounds} rounds x {args.requests} streams per candidate, concurrency {args.concurrency}, "
          f"{args.input_tokens} prompt / {args.output_tokens} output tokens, "
          f"{'uvloop' if uvloop else 'asyncio'}, " + (f"vLLM on core {cores[0]}, client on core {cores[-1]}"
                                                       if pin else "vLLM and client on any core"))
    print(f"{'client':<10}{'first chunk p50':>16}{'p90':>9}{'stream p50':>12}{'CPU / stream':>14}")
    for name, got in results.items():
        print(f"{name:<10}{percentile(got['first'], 50):>13.2f} ms{percentile(got['first'], 90):>9.2f}"
              f"{percentile(got['total'], 50):>12.1f}{got['cpu_s'] * 1000 / got['streams']:>11.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
