"""vLLM's prefix-cache hit rate per scenario from two scrapes of its counters."""

from __future__ import annotations

import pytest

from workload.telemetry.prefix_cache import HITS, QUERIES, section

pytestmark = pytest.mark.unit


def scrape(queries: float, hits: float) -> dict[str, float]:
    """Two scrapes' summed samples as workload.bench.promtext.totals gives them (its parsing of
    vLLM's real exposition is tested with the live stack in tests/workload/test_telemetry_live.py)."""
    return {QUERIES: queries, HITS: hits, "vllm:num_requests_running": 0.0}


def test_the_rate_is_the_windows_hits_over_its_queries():
    before, after = scrape(1200, 600), scrape(2200, 1000)
    out = section(before, after, [])
    assert out == {"queries_tokens": 1000, "hits_tokens": 400, "hit_rate": 0.4, "errors": []}


def test_no_queries_or_no_scrape_gives_no_rate():
    same = scrape(10, 5)
    assert section(same, same, [])["hit_rate"] is None
    missing = section(None, same, ["before the scenario: ConnectError: refused"])
    assert missing == {"queries_tokens": 0, "hits_tokens": 0, "hit_rate": None,
                       "errors": ["before the scenario: ConnectError: refused"]}


def test_a_server_without_the_counters_says_so():
    out = section({}, {"vllm:num_requests_running": 0.0}, [])
    assert out["hit_rate"] is None and QUERIES in out["errors"][0] and HITS in out["errors"][0]


def test_a_restarted_server_counts_from_zero():
    out = section(scrape(5000, 4000), scrape(100, 25), [])
    assert (out["queries_tokens"], out["hits_tokens"], out["hit_rate"]) == (100, 25, 0.25)
