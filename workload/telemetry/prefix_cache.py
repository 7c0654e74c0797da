"""vLLM's prefix-cache hit rate over one window, from its /metrics counters.

vLLM counts prompt tokens looked up in its prefix cache (``vllm:prefix_cache_queries``) and the
tokens found there (``vllm:prefix_cache_hits``); both are counters, exposed with the ``_total``
suffix and labelled by model and engine (label sets are added up). The difference of two scrapes
is the window's lookups; hits / queries is the share of prompt tokens whose prefill was skipped.
A scenario meant to measure a cold cache should show a rate near 0 (only the shared system prompt
and chat template hit).
"""

from __future__ import annotations

QUERIES = "vllm:prefix_cache_queries_total"
HITS = "vllm:prefix_cache_hits_total"


def section(before: dict[str, float] | None, after: dict[str, float] | None, errors: list[str]) -> dict:
    """``{"queries_tokens", "hits_tokens", "hit_rate", "errors"}`` from two scrapes' totals
    (:func:`workload.bench.promtext.totals`); the rate is None without both scrapes, without the
    counters or without queries. A counter that went down (the server restarted) counts from 0."""
    out = {"queries_tokens": 0, "hits_tokens": 0, "hit_rate": None, "errors": list(errors)}
    if before is None or after is None:
        return out
    if QUERIES not in after or HITS not in after:
        out["errors"].append(f"{QUERIES} / {HITS} not exposed by the server")
        return out

    def delta(name: str) -> int:
        now, then = after[name], before.get(name, 0.0)
        return int(round(now - then if now >= then else now))

    queries, hits = delta(QUERIES), delta(HITS)
    out.update(queries_tokens=queries, hits_tokens=hits, hit_rate=hits / queries if queries > 0 else None)
    return out
