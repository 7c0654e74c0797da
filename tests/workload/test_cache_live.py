"""A cold run never reads vLLM's prefix cache; a warm one does. Against the real local stack (vLLM on
CPU with its default prefix caching, Ray Serve, Haystack), both through the RAG service (which
passes the load generator's cache_salt on) and straight to vLLM's OpenAI API. The figures are
vLLM's own counters from its /metrics, read before and after each run."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from live_service import DOCS, live_service, wait_until

from workload.bench import promtext
from workload.bench.loadgen import ConcurrentStrategy, StopConditions
from workload.bench.northsouth import NorthSouthConfig, run_north_south
from workload.llm.tiny_model import MODEL_ID
from workload.local.processes import http_ok

pytestmark = pytest.mark.integration

HITS, QUERIES = "vllm:prefix_cache_hits_total", "vllm:prefix_cache_queries_total"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with live_service(tmp_path_factory.mktemp("cache")) as s:
        assert wait_until(lambda: http_ok(f"{s.service_url}/readyz"), 300), "service not ready"
        r = httpx.post(f"{s.service_url}/ingest", json={"documents": DOCS}, timeout=300)
        assert r.status_code == 200, r.text
        yield s


def one_question(directory: Path, repeats: int) -> Path:
    """A question file with a single question: every request of a run sends the same prompt."""
    path = directory / "questions.jsonl"
    text = "Which taint do GPU nodes carry, and how is pod to pod throughput measured across nodes? " * repeats
    path.write_text(json.dumps({"id": "q0", "question": text}) + "\n")
    return path


def cache_counters(stack) -> dict[str, float]:
    return promtext.totals(httpx.get(f"{stack.llm_url}/metrics", timeout=10).text)


def run_and_count(stack, url: str, questions: Path, cache: str, endpoint_kind: str) -> tuple[float, float, dict]:
    config = NorthSouthConfig(endpoint_kind=endpoint_kind, model=MODEL_ID, cache=cache, k=2, max_tokens=4,
                              strategy=ConcurrentStrategy(concurrency=1), stop=StopConditions(max_requests=4),
                              warmup_requests=1, connect_samples=0)
    before = cache_counters(stack)
    out = run_north_south(url, config, questions, progress=False)
    after = cache_counters(stack)
    summary = out["scenarios"][0]["summary"]
    assert summary["completed"] == 4, summary["errors_by_code"]
    return promtext.delta(before, after, HITS), promtext.delta(before, after, QUERIES), out


# vLLM caches whole KV blocks only (128 tokens on CPU): the prompt must fill at least one. The RAG
# prompt does with its documents; straight to vLLM the question alone must.
@pytest.mark.parametrize("endpoint_kind,repeats", [("rag", 4), ("openai", 16)])
def test_a_cold_run_gets_no_prefix_cache_hits_and_a_warm_run_does(stack, tmp_path, endpoint_kind, repeats):
    url = stack.service_url if endpoint_kind == "rag" else f"{stack.llm_url}"
    questions = one_question(tmp_path, repeats)
    hits, queries, out = run_and_count(stack, url, questions, "cold", endpoint_kind)
    assert queries > 0  # 5 prompts were looked up in the cache ...
    assert hits == 0  # ... and none found a block, although all 5 are the same prompt
    salts = [r["cache_salt"] for r in out["scenarios"][0]["records"]]
    assert len(set(salts)) == 5 and None not in salts

    hits, queries, out = run_and_count(stack, url, questions, "warm", endpoint_kind)
    assert queries > 0
    assert hits > 0  # the same prompt again, unsalted: its blocks come from the cache
    assert all(r["cache_salt"] is None for r in out["scenarios"][0]["records"])


def test_token_events_carry_token_counts_that_add_up_to_the_usage(stack):
    from live_service import stream_events

    with httpx.Client(base_url=stack.service_url, timeout=120) as client:
        events = stream_events(client, {"query": "Which taint do GPU nodes carry?", "k": 2, "max_tokens": 24,
                                        "ignore_eos": True, "cache_salt": "token-count-check"})
    tokens = [d["tokens"] for n, d in events if n == "token"]
    assert tokens and all(isinstance(n, int) and n >= 1 for n in tokens)
    assert sum(tokens) == events[-1][1]["token_count"] == 24


def test_a_bad_cache_salt_is_refused_before_it_reaches_vllm(stack):
    r = httpx.post(f"{stack.service_url}/query", json={"query": "hi", "max_tokens": 2, "cache_salt": "a/b"}, timeout=60)
    assert r.status_code == 422
    assert r.json()["detail"]["errors"][0]["loc"] == ["body", "cache_salt"]
