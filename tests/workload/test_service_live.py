"""The RAG service with its real parts running: vLLM on CPU serving the tiny model, Ray Serve,
Haystack, embedded Qdrant. Checks the SSE contract, ingestion, bad input, and what happens when
vLLM goes away while the service is up and comes back. Tests run in file order: the LLM is
stopped and restarted last. No bearer token is configured here: the API is open by default."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import httpx
import psutil
import pytest
from live_service import stream_events

from workload.bench.northsouth import NorthSouthConfig, run_north_south
from workload.errors import StepError
from workload.local.stack import ENGINE_CORE_NICENESS, LocalStack

pytestmark = pytest.mark.integration

LLM_PORT, SERVE_PORT = 18310, 18210
DOCS = [
    {"name": "gpu.md", "content": "# GPU pools\n\nGPU nodes carry the nvidia.com/gpu taint. " * 40},
    {"name": "net.txt", "content": "Pod to pod throughput is measured with iperf3 across nodes. " * 60},
    {"name": "page.html", "content": "<html><body><h1>Qdrant</h1><p>" + "Qdrant stores vectors. " * 50
                                     + "</p></body></html>"},
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = LocalStack(tmp_path_factory.mktemp("stack"), llm_port=LLM_PORT, serve_port=SERVE_PORT)
    s.up()
    yield s
    s.down()


@pytest.fixture(scope="module")
def client(stack):
    with httpx.Client(base_url=stack.service_url, timeout=120) as c:
        yield c



def test_ready_and_ingest_is_idempotent(client):
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    first = client.post("/ingest", json={"documents": DOCS}).json()
    assert first["documents"] == 3 and first["chunks"] >= 3
    assert set(first["timings"]) >= {"convert_split_ms", "embed_ms", "write_ms"}
    second = client.post("/ingest", json={"documents": DOCS}).json()
    assert second["chunks"] == first["chunks"]
    assert client.get("/documents").json()["documents"] == first["chunks"]  # no duplicates


def test_the_replica_itself_serves_the_port(stack):
    """Direct ingress: requests and tokens do not cross Ray's proxy actor (docs/service.md)."""
    listeners = [c for c in psutil.net_connections(kind="tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == SERVE_PORT]
    assert listeners and all(c.pid for c in listeners)
    titles = {" ".join(psutil.Process(c.pid).cmdline()) for c in listeners}
    assert all("ServeReplica" in t for t in titles), titles


def engine_core_niceness(stack) -> list[int]:
    """The niceness of each thread of vLLM's engine-core process."""
    procs = psutil.Process(stack.llm.pid()).children(recursive=True)
    core = next(p for p in procs if (p.cmdline() or [""])[0].startswith("VLLM::EngineCore"))
    return [os.getpriority(os.PRIO_PROCESS, t.id) for t in core.threads()]


def test_vllm_engine_core_gives_way_to_the_rest(stack):
    """The engine core's spin-wait runs at the lowest priority (workload/local/stack.py)."""
    niceness = engine_core_niceness(stack)
    assert niceness and all(n == ENGINE_CORE_NICENESS for n in niceness), niceness


def test_sse_contract(client):
    events = stream_events(client, {"query": "Which taint do GPU nodes carry?", "k": 2, "max_tokens": 16,
                                    "ignore_eos": True})
    names = [n for n, _ in events]
    assert names[0] == "meta" and names[-1] == "done", events[-1]
    assert set(names[1:-1]) == {"token"}
    meta, done = events[0][1], events[-1][1]
    for key in ("session_id", "request_id", "replica_id", "model_id", "k", "documents", "timings"):
        assert key in meta, key
    assert meta["k"] == 2 and len(meta["documents"]) == 2
    assert {"retrieval_ms", "embed_ms", "retrieve_ms"} <= set(meta["timings"])
    assert all({"content", "meta", "score"} <= set(d) for d in meta["documents"])
    assert done["request_id"] == meta["request_id"]
    assert done["token_count"] == 16  # vLLM's usage report, ignore_eos gives the exact length
    assert done["tokens_per_sec"] > 0
    for key in ("ttft_ms", "total_ms", "embed_ms", "retrieve_ms", "prompt_ms", "generate_ms"):
        assert done["timings"][key] >= 0, key
    assert "".join(d["text"] for n, d in events if n == "token")
    # every token event says how many tokens it carried; together they are vLLM's count
    assert sum(d["tokens"] for n, d in events if n == "token") == done["token_count"]


def ttft_histogram(client) -> tuple[float, float]:
    """(sum, count) of the replica's ragbench_ttft_seconds."""
    from workload.bench.promtext import totals

    r = client.get("/metrics")
    assert r.status_code == 200
    t = totals(r.text)
    return t.get("ragbench_ttft_seconds_sum", 0.0), t.get("ragbench_ttft_seconds_count", 0.0)


def test_done_timings_and_the_ttft_histogram_share_one_stamp(client):
    """The server's TTFT is one stamp: the first token handed to the HTTP layer. done.timings.ttft_ms
    and ragbench_ttft_seconds carry the same value; the LLM's first chunk arrives before it."""
    before_sum, before_count = ttft_histogram(client)
    events = stream_events(client, {"query": "Which taint do GPU nodes carry?", "k": 2, "max_tokens": 8,
                                    "ignore_eos": True})
    timings = events[-1][1]["timings"]
    after_sum, after_count = ttft_histogram(client)
    assert after_count - before_count == 1
    assert (after_sum - before_sum) * 1000 == pytest.approx(timings["ttft_ms"], abs=1e-6)
    assert "first_token_sent_ms" not in timings  # no second definition
    # received -> (retrieval, prompt) -> LLM request sent -> first chunk back -> first token sent
    assert timings["first_byte_ms"] <= timings["ttft_ms"] <= timings["total_ms"]
    assert timings["llm_first_token_ms"] + timings["retrieval_ms"] + timings["prompt_ms"] <= timings["ttft_ms"] + 0.01


def test_the_llm_request_instant_is_on_the_hosts_monotonic_clock(client):
    """done.timings.llm_request_at_s is when the service sent its LLM request, on this host's
    monotonic clock (benchmarks/rag_overhead.py replays vLLM's arrivals from it): inside the
    request's own window as this process saw it, later than retrieval, and in order across requests."""
    stamps = []
    for question in ("Which taint do GPU nodes carry?", "How is the load balancer exposed?"):
        t_sent = time.perf_counter()
        events = stream_events(client, {"query": question, "k": 2, "max_tokens": 4, "ignore_eos": True})
        t_done = time.perf_counter()
        timings = events[-1][1]["timings"]
        stamp = timings["llm_request_at_s"]
        assert t_sent + (timings["retrieval_ms"] + timings["prompt_ms"]) / 1000 < stamp < t_done
        assert events[0][1]["timings"]["llm_request_at_s"] == stamp  # meta carries it too
        stamps.append((t_sent, stamp, t_done))
    assert stamps[0][2] < stamps[1][1]  # the second request went out after the first ended


@pytest.mark.parametrize("payload,status", [
    ({"documents": [{"name": "a.exe", "content": "x"}]}, 415),
    ({"documents": []}, 400),
    ({"documents": [{"name": "a.txt"}]}, 400),
])
def test_bad_uploads_are_refused(client, payload, status):
    r = client.post("/ingest", json=payload)
    assert r.status_code == status, r.text


@pytest.mark.parametrize("body", [{"query": "x" * 5000}, {"query": "ok", "k": 0}, {"query": "ok", "max_tokens": 10**6},
                                  {"query": "   "}])
def test_bad_queries_are_refused(client, body):
    r = client.post("/query/stream", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["detail"]["code"] == "bad_request"


def test_port_in_use_is_a_clear_error(tmp_path, stack):
    other = LocalStack(tmp_path, llm_port=stack.llm_port, serve_port=SERVE_PORT + 1)
    with pytest.raises(StepError, match=f"port {stack.llm_port} on 127.0.0.1 is in use"):
        other.up()


def test_llm_down_ends_streams_with_an_error_event(stack, client):
    """Stop vLLM while the service is up: queries end with `error`, never hang."""
    assert stack.llm.stop()
    events = stream_events(client, {"query": "Which taint do GPU nodes carry?", "max_tokens": 8})
    assert events[0][0] == "meta"
    assert events[-1][0] == "error"
    assert events[-1][1]["code"] == "llm_unavailable"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["llm"] is False

    config = NorthSouthConfig.model_validate({"strategy": {"type": "concurrent", "concurrency": 2},
                                              "stop": {"max_requests": 4}, "warmup_requests": 0,
                                              "max_tokens": 8, "timeouts": {"first_token_s": 30, "total_s": 60}})
    result = run_north_south(stack.service_url, config, progress=False)
    scenario = result["scenarios"][0]
    assert scenario["summary"]["errored"] == 4 and scenario["summary"]["error_rate"] == 1.0
    for record in scenario["records"]:
        assert record["error_code"] == "server_error"
        assert record["server_error_code"] == "llm_unavailable"


def test_llm_restarted_the_service_recovers_by_itself(stack, client):
    """vLLM comes back on the same port: the same service process serves again, no restart."""
    service_pid = stack.service.pid()
    stack.start_llm(stack.build_model())
    deadline = time.monotonic() + 30
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "not ready 30 s after vLLM came back"
        time.sleep(0.5)
    events = stream_events(client, {"query": "Which taint do GPU nodes carry?", "max_tokens": 8, "ignore_eos": True})
    assert events[-1][0] == "done" and events[-1][1]["token_count"] == 8
    assert stack.service.pid() == service_pid
    assert set(engine_core_niceness(stack)) == {ENGINE_CORE_NICENESS}  # the new vLLM's too


def test_teardown_leaves_no_process(stack):
    pids = [p for p in (stack.llm.pid(), stack.service.pid()) if p]
    children = [c["pid"] for proc in (stack.llm, stack.service) for c in (proc.info() or {}).get("children", [])]
    stack.down()
    for pid in pids + children:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, pid
    with socket.socket() as s:  # the service port is free again (TIME_WAIT aside)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", SERVE_PORT))


def test_empty_corpus_is_a_clear_error(tmp_path: Path):
    from workload.ingest_client import ingest_corpus

    with pytest.raises(StepError, match="is empty"):
        ingest_corpus("http://127.0.0.1:9", tmp_path)
