"""The load generator end to end against a small SSE server on 127.0.0.1 (in the test's own event
loop): records, arrival times, keep-alive, the network probe, and every failure path of send_one."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from workload.bench import loadgen
from workload.bench.endpoints import RagStreamEndpoint
from workload.bench.loadgen import ConcurrentStrategy, StopConditions, Timeouts, run_scenario
from workload.bench.metrics import summarize as summarize_model
from workload.bench.sse import format_event

pytestmark = pytest.mark.unit


def summarize(*args, **kwargs) -> dict:
    """The summary as the step document stores it (``model_dump(mode="json")``)."""
    return summarize_model(*args, **kwargs).model_dump(mode="json")


def chunk(payload: bytes) -> bytes:
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


async def respond(writer: asyncio.StreamWriter, behaviour: str, n: int) -> bool:
    """Write one response; False when the connection must be closed afterwards."""
    rid = f"req-{n}"
    meta = format_event("meta", {"request_id": rid, "replica_id": "pod-a", "model_id": "m", "k": 1})
    done = format_event("done", {"request_id": rid, "token_count": 3, "timings": {"ttft_ms": 1.0}})
    if behaviour == "http_error":
        body = b'{"detail":"overloaded"}'
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        return True
    writer.write(HEAD + chunk(meta))
    await writer.drain()
    if behaviour == "stall":
        await asyncio.sleep(5)
        return False
    if behaviour == "malformed":
        writer.write(chunk(b"event: token\ndata: {not json\n\n") + b"0\r\n\r\n")
        return True
    for text in ("a", "b", "c"):
        await asyncio.sleep(0.01)
        writer.write(chunk(format_event("token", {"text": text})))
        await writer.drain()
        if behaviour == "drop":
            return False
    if behaviour == "no_done":
        writer.write(b"0\r\n\r\n")
        return True
    if behaviour == "close_after_done":  # the final event, then the connection drops: no last chunk
        writer.write(chunk(done))
        return False
    writer.write(chunk(done) + b"0\r\n\r\n")
    return True


async def start_server(behaviour: str):
    stats = {"connections": 0, "requests": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stats["connections"] += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                json.loads(await reader.readexactly(length))
                stats["requests"] += 1
                if not await respond(writer, behaviour, stats["requests"]):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", stats


def run(behaviour: str, requests: int = 6, concurrency: int = 2, warmup: int = 0, connect_samples: int = 3,
        timeouts: Timeouts = Timeouts(connect_s=2, first_token_s=2, total_s=5)):
    async def go():
        server, url, stats = await start_server(behaviour)
        try:
            result = await run_scenario(url, RagStreamEndpoint(k=1), [("q0", "question")],
                                        ConcurrentStrategy(concurrency=concurrency),
                                        StopConditions(max_requests=requests), warmup_requests=warmup,
                                        timeouts=timeouts, progress=False, connect_samples=connect_samples)
        finally:
            server.close()
        return result, stats
    return asyncio.run(go())


def test_streams_are_recorded_with_arrival_times_and_joined_server_timings():
    result, stats = run("ok", requests=6, concurrency=2, warmup=2)
    measured = [r for r in result.records if not r.warmup]
    assert len(measured) == 6 and all(r.ok for r in measured)
    for r in measured:
        assert r.http_status == 200
        assert r.t_sent < r.t_first_byte < r.t_first_token <= r.token_times[-1] <= r.t_end
        assert len(r.token_times) == 3 and r.n_out == 3 and r.output_tokens_source == "server_usage"
        assert r.request_id == r.server_request_id and r.request_id.startswith("req-")
        assert r.client_minus_server_ttft_ms == pytest.approx(r.ttft_ms - 1.0)
        assert r.itl_ms and min(r.itl_ms) > 5  # the server spaces tokens 10 ms apart
    # two connections (concurrency 2), opened by the warm-up and kept alive for the measured load
    assert stats["connections"] == 2 + 3  # plus the three probe connects
    assert sum(r.connect_ms is not None for r in result.records if r.warmup) == 2
    assert all(r.connect_ms is None for r in measured)
    assert len(result.connect.samples_ms) == 3 and result.connect.errors == 0
    s = summarize(result.records, result.wall_time_s, connect_samples_ms=result.connect.samples_ms)
    assert s["client_minus_server_ttft_ms"]["count"] == 6
    assert s["ttft_p50_minus_rtt_ms"] == pytest.approx(s["ttft_ms"]["p50"]
                                                       - s["tcp_connect"]["before_load_ms"]["p50"])


@pytest.mark.parametrize(("behaviour", "code"), [
    ("http_error", "http_error"), ("drop", "stream_incomplete"), ("no_done", "stream_incomplete"),
    ("malformed", "malformed_event"),
])
def test_failures_become_records(behaviour, code):
    result, _ = run(behaviour, requests=2, concurrency=1, connect_samples=0)
    assert [r.error_code for r in result.records] == [code, code]
    for r in result.records:
        assert r.t_end is not None and not r.ok
    if behaviour == "http_error":
        assert result.records[0].http_status == 503
        assert "HTTP 503" in result.records[0].error_message and "overloaded" in result.records[0].error_message


def test_first_token_timeout():
    result, _ = run("stall", requests=1, concurrency=1, connect_samples=0,
                    timeouts=Timeouts(connect_s=1, first_token_s=0.3, total_s=5))
    r = result.records[0]
    assert r.error_code == "first_token_timeout"
    assert r.t_first_byte is not None and r.t_first_token is None  # meta arrived, no token
    assert 0.25 < r.e2e_ms / 1000 < 2


def test_connection_refused_is_a_connect_error_record():
    async def go():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        server.close()
        await server.wait_closed()
        return await run_scenario(url, RagStreamEndpoint(), [("q", "x")], ConcurrentStrategy(concurrency=1),
                                  StopConditions(max_requests=2), warmup_requests=0, progress=False,
                                  connect_samples=2)
    result = asyncio.run(go())
    assert [r.error_code for r in result.records] == ["connect_error", "connect_error"]
    assert result.connect.errors == 2 and result.connect.samples_ms == []


def test_connection_dropped_after_the_final_event_keeps_the_request_ok():
    result, stats = run("close_after_done", requests=3, concurrency=1, connect_samples=0)
    assert all(r.ok for r in result.records)
    assert all(r.connect_ms is not None for r in result.records)  # never reused: a new connection each
    assert stats["connections"] == 3


def test_a_long_wait_is_slept_in_short_steps(monkeypatch):
    # The kernel ends a timed wait late by 0.1% of its length: one 7 s sleep woke 10 ms after the
    # agreed start of every client pod. sleep_until never asks the loop for more than a short step.
    asked: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(delay: float) -> None:
        asked.append(delay)
        await real_sleep(delay)

    monkeypatch.setattr(loadgen.asyncio, "sleep", recording_sleep)
    target = time.perf_counter() + 0.3
    asyncio.run(loadgen.sleep_until(target, spin_s=0.001))
    assert time.perf_counter() >= target
    assert len(asked) > 1 and max(asked) <= loadgen.LONGEST_SLEEP_S and sum(asked) <= 0.3
