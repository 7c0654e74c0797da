"""Prometheus metrics of the RAG service (per replica), served on GET /metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

# The server's TTFT: done.timings.ttft_ms, observed as it is (one stamp, docs/service.md).
TTFT = Histogram("ragbench_ttft_seconds", "Request received to first token handed to the HTTP layer", buckets=_BUCKETS)
STAGE = Histogram("ragbench_stage_seconds", "Time per query stage", ["stage"], buckets=_BUCKETS)
ERRORS = Counter("ragbench_errors_total", "Streams ended with an error event", ["code"])
REJECTED = Counter("ragbench_rejected_total", "Queries refused because too many were in flight")
INFLIGHT = Gauge("ragbench_inflight_requests", "Queries admitted and not yet finished (this replica)")
DISCONNECTS = Counter("ragbench_client_disconnects_total", "Streams cancelled by the client")
INGESTED_CHUNKS = Counter("ragbench_ingested_chunks_total", "Chunks written to the store")

# done.timings keys observed as ragbench_stage_seconds{stage=<key without _ms>}. Durations of a stage:
# cpu_wait (queued for the CPU worker thread), embed, search_wait (the searches before this one in
# its batch), retrieve, prompt, llm_first_token (LLM request
# sent -> first chunk back), generate. Times since the request was received: first_byte (meta event
# handed to the HTTP layer), ttft (first token event handed to the HTTP layer), total.
_STAGES = ("cpu_wait_ms", "embed_ms", "search_wait_ms", "retrieve_ms", "prompt_ms", "llm_first_token_ms", "first_byte_ms",
           "ttft_ms", "generate_ms", "total_ms")


def observe_stages(timings: dict) -> None:
    for key in _STAGES:
        if timings.get(key) is not None:
            STAGE.labels(stage=key.removesuffix("_ms")).observe(timings[key] / 1000)


def observe_done(timings: dict) -> None:
    """A streamed query's ``done.timings``: every stage, and its ``ttft_ms`` into the TTFT histogram."""
    observe_stages(timings)
    if timings.get("ttft_ms") is not None:
        TTFT.observe(timings["ttft_ms"] / 1000)


def exposition() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
