"""The stand-in LLM of rag_overhead.py --llm standin: vLLM's step clock, known timing, its own figures.

Two streams started 10 ms apart (half a step) must get their tokens at the same instants (one step clock), each
first token no sooner than the prefill time, and /metrics must report what the client saw."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from workload.bench.promtext import histogram_mean, totals
from workload.local.processes import free_port, http_ok

ROOT = Path(__file__).resolve().parents[2]
STEP_MS, PREFILL_MS, TOKENS = 20.0, 30.0, 6
TTFT, TPOT = "vllm:time_to_first_token_seconds", "vllm:request_time_per_output_token_seconds"


@pytest.fixture(scope="module")
def standin() -> str:
    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "standin_llm.py"), "--port", str(port),
                               "--step-ms", str(STEP_MS), "--prefill-ms", str(PREFILL_MS)])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not http_ok(f"{url}/health", timeout_s=1):
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the stand-in LLM did not start")
            time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(10)


async def _stream(client: httpx.AsyncClient, delay_s: float) -> tuple[float, list[float], list[dict]]:
    """(sent at, each token's arrival, each chunk) of one streamed completion."""
    await asyncio.sleep(delay_s)
    body = {"model": "m", "messages": [{"role": "user", "content": "q"}], "max_tokens": TOKENS, "stream": True}
    sent, times, chunks = time.monotonic(), [], []
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                times.append(time.monotonic())
                chunks.append(json.loads(line[6:]))
            elif line == "data: [DONE]":
                chunks.append({"done": True})
    return sent, times, chunks


def _two_streams(url: str):
    async def both():
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            return await asyncio.gather(_stream(client, 0), _stream(client, 0.010))

    return asyncio.run(both())


def test_streams_run_on_one_step_clock_and_the_metrics_say_what_the_client_saw(standin):
    before = totals(httpx.get(f"{standin}/metrics").text)
    streams = _two_streams(standin)
    after = totals(httpx.get(f"{standin}/metrics").text)

    for _, times, chunks in streams:
        assert chunks[-1] == {"done": True}
        tokens = chunks[:-1]
        assert [c["usage"]["completion_tokens"] for c in tokens] == list(range(1, TOKENS + 1))
        assert [c["choices"][0]["finish_reason"] for c in tokens] == [None] * (TOKENS - 1) + ["length"]
        gaps = [(b - a) * 1000 for a, b in zip(times, times[1:])]
        assert STEP_MS - 5 < sum(gaps) / len(gaps) < STEP_MS + 5
    # One clock: every token of the later stream arrives a whole number of steps after the
    # earlier stream's first token.
    (_, first, _), (_, second, _) = streams
    for t in second:
        phase = (t - first[0]) * 1000 % STEP_MS
        assert min(phase, STEP_MS - phase) < 7  # a timer per stream would read 10
    ttfts = [(times[0] - sent) * 1000 for sent, times, _ in streams]
    for ttft in ttfts:
        assert PREFILL_MS <= ttft < PREFILL_MS + STEP_MS + 15  # a step late would read + 20 more

    own_ttft, n = histogram_mean(before, after, TTFT)
    assert n == 2
    # Its own TTFT as defined (prefill, then the next step), and within what the client saw: the
    # server counts from after the request arrived to its first token's write.
    assert PREFILL_MS <= own_ttft * 1000 < PREFILL_MS + STEP_MS + 2
    assert own_ttft * 1000 <= sum(ttfts) / 2 + 0.5
    assert sum(ttfts) / 2 - own_ttft * 1000 < 15  # connecting and reading, on a busy machine too
    own_tpot, n = histogram_mean(before, after, TPOT)
    assert n == 2
    assert abs(own_tpot * 1000 - STEP_MS) < 2


def test_health_models_and_bad_requests(standin):
    assert httpx.get(f"{standin}/health").status_code == 200
    assert httpx.get(f"{standin}/v1/models").json()["data"]
    r = httpx.post(f"{standin}/v1/chat/completions", content=b"not json")
    assert r.status_code == 400 and "bad body" in r.json()["error"]["message"]
    assert httpx.post(f"{standin}/v1/other", json={}).status_code == 404
