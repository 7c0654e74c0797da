"""Faults with every part real (vLLM on CPU, Ray Serve, Haystack, embedded Qdrant), on free ports.

The service here is started while another process holds its embedded Qdrant folder (the store is
unavailable until that process lets go), with at most 4 queries in flight, so that overload is
reached with few streams. Tests run in file order: the store fault comes first.
(vLLM killed and restarted is in test_service_live.py.)
"""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx
import pytest
from live_service import DOCS, free_port, live_service, stream_events, wait_until
from prometheus_client.parser import text_string_to_metric_families
from qdrant_client import QdrantClient

from workload.bench.sse import SSEParser

pytestmark = pytest.mark.integration

MAX_INFLIGHT = 4
LONG = 1200  # output tokens of a stream that runs for several seconds (k=1 keeps prompt + output < 2048)
QUESTION = "Which taint do GPU nodes carry?"


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total



@pytest.fixture(scope="module")
def held(tmp_path_factory):
    """The service, started while this process holds its embedded store folder open."""
    state = tmp_path_factory.mktemp("faults")
    holder = QdrantClient(path=str(state / "qdrant"))  # takes the folder's lock, as a second service would
    try:
        with live_service(state, max_inflight=MAX_INFLIGHT, max_tokens_limit=LONG) as stack:
            yield stack, holder
    finally:
        holder.close()


@pytest.fixture(scope="module")
def stack(held):
    """The same service once the store is free again, ready, with a small corpus."""
    stack, holder = held
    holder.close()
    assert wait_until(lambda: httpx.get(f"{stack.service_url}/readyz", timeout=10).status_code == 200, 60)
    assert httpx.post(f"{stack.service_url}/ingest", json={"documents": DOCS}, timeout=120).status_code == 200
    return stack


@pytest.fixture(scope="module")
def client(held):
    stack, _ = held
    with httpx.Client(base_url=stack.service_url, timeout=120) as c:
        yield c


def test_store_unavailable_then_recovers(held, client):
    stack, holder = held
    ready = client.get("/readyz")
    assert ready.status_code == 503, ready.text
    checks = ready.json()
    assert checks["store"] is False and checks["llm"] is True and checks["ready"] is False
    assert "already accessed" in checks["store_error"]

    events = stream_events(client, {"query": QUESTION, "max_tokens": 4})
    assert [n for n, _ in events] == ["error"], events
    assert events[0][1]["code"] == "store_unavailable" and events[0][1]["request_id"]
    r = client.post("/query", json={"query": QUESTION, "max_tokens": 4})
    assert r.status_code == 503 and r.json()["detail"]["code"] == "store_unavailable"
    r = client.post("/ingest", json={"documents": DOCS})
    assert r.status_code == 503 and r.json()["detail"]["code"] == "store_unavailable"
    assert client.get("/documents").status_code == 503

    holder.close()  # the other process lets go: the service recovers without a restart
    t0 = time.monotonic()
    assert wait_until(lambda: client.get("/readyz").status_code == 200, 30), "store did not come back"
    print(f"ready {time.monotonic() - t0:.2f} s after the store was released")
    assert client.post("/ingest", json={"documents": DOCS}).status_code == 200
    events = stream_events(client, {"query": QUESTION, "max_tokens": 4, "ignore_eos": True})
    assert events[0][0] == "meta" and events[-1][0] == "done" and events[-1][1]["token_count"] == 4


def test_remote_store_on_a_closed_port(held):
    """A Qdrant server that does not answer (cluster mode): the engine, without Ray, reports it."""
    from workload.service.rag import RagEngine
    from workload.service.settings import ServiceSettings

    stack, _ = held
    engine = RagEngine(ServiceSettings(qdrant_url=f"http://127.0.0.1:{free_port()}",
                                       llm_base_url=f"{stack.llm_url}/v1"))
    engine.warm_up()

    async def run() -> tuple[dict, list]:
        return await engine.readiness(), [e async for e in engine.stream(QUESTION, max_tokens=4)]

    checks, events = asyncio.run(run())
    assert checks["store"] is False and checks["llm"] is True and checks["ready"] is False
    assert [e.name for e in events] == ["error"] and events[0].data["code"] == "store_unavailable"


def test_client_disconnect_cancels_generation(stack, client):
    """A client leaves after a few tokens of a long stream: vLLM stops generating it at once.

    Evidence from vLLM's own metrics: no request running, and its generated-token counter stops
    well short of the stream's length (it would otherwise grow by ~100+ tokens a second)."""
    llm_metrics = lambda: httpx.get(f"{stack.llm_url}/metrics", timeout=10).text  # noqa: E731
    own_metrics = lambda: client.get("/metrics").text  # noqa: E731
    generated = lambda: metric(llm_metrics(), "vllm:generation_tokens_total")  # noqa: E731
    generated_before = generated()
    disconnects_before = metric(own_metrics(), "ragbench_client_disconnects_total")

    parser, tokens = SSEParser(), 0
    with httpx.Client(base_url=stack.service_url, timeout=60) as own:
        with own.stream("POST", "/query/stream", json={"query": QUESTION, "max_tokens": LONG, "k": 1,
                                                       "ignore_eos": True}) as r:
            assert r.status_code == 200
            for chunk in r.iter_raw():
                events = list(parser.feed(chunk))
                assert all(e.event in ("meta", "token") for e in events), [e.data for e in events]
                tokens += sum(1 for e in events if e.event == "token")
                if tokens >= 5:
                    break
            assert tokens >= 5
            t_closed = time.monotonic()
    # The response and its connection are closed here, long before the stream's end.

    assert wait_until(lambda: metric(llm_metrics(), "vllm:num_requests_running") == 0, 3), \
        "vLLM still generating 3 s after the client left"
    stopped_s = time.monotonic() - t_closed
    at_stop = generated()
    time.sleep(1.0)
    after = generated()
    print(f"vLLM stopped {stopped_s:.2f} s after the disconnect, "
          f"{at_stop - generated_before:.0f} of {LONG} tokens generated")
    assert after == at_stop, f"vLLM generated {after - at_stop:.0f} more tokens after the disconnect"
    assert at_stop - generated_before < LONG / 2
    assert wait_until(lambda: metric(own_metrics(), "ragbench_inflight_requests") == 0, 5)
    assert metric(own_metrics(), "ragbench_client_disconnects_total") == disconnects_before + 1
    assert client.get("/readyz").json()["inflight"] == 0


async def _overload(base_url: str, extra: int) -> tuple[list[list[str]], list[tuple[int, dict, float]]]:
    async with httpx.AsyncClient(base_url=base_url, timeout=120,
                                 limits=httpx.Limits(max_connections=None)) as client:
        admitted = [asyncio.Event() for _ in range(MAX_INFLIGHT)]

        async def long_stream(i: int) -> list[str]:
            parser, names = SSEParser(), []
            async with client.stream("POST", "/query/stream", json={"query": QUESTION, "max_tokens": 400,
                                                                    "ignore_eos": True}) as r:
                assert r.status_code == 200
                admitted[i].set()
                async for chunk in r.aiter_raw():
                    names += [e.event for e in parser.feed(chunk)]
            return names

        async def excess() -> tuple[int, dict, float]:
            t0 = time.perf_counter()
            r = await client.post("/query/stream", json={"query": QUESTION, "max_tokens": 4})
            return r.status_code, {**r.json(), "retry_after": r.headers.get("retry-after")}, time.perf_counter() - t0

        streams = [asyncio.create_task(long_stream(i)) for i in range(MAX_INFLIGHT)]
        await asyncio.wait_for(asyncio.gather(*(a.wait() for a in admitted)), 60)
        refused = await asyncio.gather(*(excess() for _ in range(extra)))
        return await asyncio.gather(*streams), refused


def test_overload_is_refused_fast_and_admitted_streams_finish(stack, client):
    rejected_before = metric(client.get("/metrics").text, "ragbench_rejected_total")
    finished, refused = asyncio.run(_overload(stack.service_url, extra=2 * MAX_INFLIGHT))
    for status, body, _ in refused:
        assert status == 503, body
        assert body["detail"]["code"] == "overloaded" and body["retry_after"] == "1"
    latencies = sorted(s * 1000 for _, _, s in refused)
    print(f"503 latency over {len(latencies)} refused: p50 {statistics.median(latencies):.1f} ms, "
          f"max {latencies[-1]:.1f} ms")
    assert latencies[-1] < 1000, latencies
    for names in finished:
        assert names[0] == "meta" and names[-1] == "done" and names.count("token") > 0, names[-3:]
    assert metric(client.get("/metrics").text, "ragbench_rejected_total") == rejected_before + 2 * MAX_INFLIGHT
    assert wait_until(lambda: client.get("/readyz").json()["inflight"] == 0, 5)
    # Below the limit again, queries are admitted.
    assert client.post("/query", json={"query": QUESTION, "max_tokens": 4}).status_code == 200
