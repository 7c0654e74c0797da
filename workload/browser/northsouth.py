"""The browser vantage point of North-South: N questions asked through the chat page, one at a time.

What a person in a browser sees: TTFT and total time measured by the page itself (performance.now()
from the request's send to the first non-empty token and to `done`/`error`), through the browser's
fetch and stream reader. The result has the shape of the load generator's North-South document: one
scenario, ``browser``, never the headline, with records that carry the load generator's
RequestRecord fields, so the loader stores it next to the load generator's scenario
(docs/metrics.md, "The browser vantage point").
"""

from __future__ import annotations

import secrets
import sys
import time
from typing import Any

from workload.bench.metrics import SLO, summarize
from workload.bench.northsouth import DEFAULT_QUESTIONS, NorthSouthConfig, load_prompts, scenario_prompts
from workload.bench.records import RequestRecord
from workload.browser.chat_driver import open_chat_page

SCENARIO = "browser"
VANTAGE = "browser"
# The prompts are tagged so that none repeats a load generator's prompt (warm prefix caches flatter TTFT);
# a different seed than the load generator's keeps the tags apart too.
SEED_OFFSET = 7919


def page_record(raw: dict[str, Any], index: int, prompt_id: str, warmup: bool, base_ms: float) -> RequestRecord:
    """The page's record (ms of performance.now()) as a RequestRecord (s since ``base_ms``)."""

    def s(v: float | None) -> float | None:
        return None if v is None else (float(v) - base_ms) / 1000

    timings = raw.get("server_timings") or {}
    return RequestRecord(
        index=index, scenario=SCENARIO, prompt_id=prompt_id, prompt_chars=int(raw.get("prompt_chars") or 0),
        warmup=warmup, t_sent=s(raw.get("t_sent")), t_first_byte=s(raw.get("t_first_byte")),
        t_first_token=s(raw.get("t_first_token")), token_times=[s(t) for t in raw.get("token_times") or []],
        t_end=s(raw.get("t_end")), http_status=raw.get("http_status"), request_id=raw.get("request_id"),
        server_request_id=raw.get("server_request_id"), replica_id=raw.get("replica_id"),
        model_id=raw.get("model_id"), k=raw.get("k"), output_tokens=raw.get("output_tokens"),
        output_tokens_source=raw.get("output_tokens_source"), server_timings=timings,
        error_code=raw.get("error_code"), server_error_code=raw.get("server_error_code"),
        error_message=raw.get("error_message"))


def run_browser_north_south(base_url: str, config: NorthSouthConfig, requests: int, *, token: str | None = None,
                            progress: bool = True) -> dict:
    """Ask ``config.warmup_requests`` + ``requests`` questions through the chat page, one at a time
    (a person waits for the answer); returns the North-South-shaped result data."""
    total = config.warmup_requests + requests
    # Its own order of the questions, each tagged with this run's nonce: no question repeats one the
    # load generator (or an earlier run) sent. The page sends no cache_salt, so vLLM may still reuse
    # a shared prefix of retrieved documents (docs/metrics.md, "The browser vantage point").
    tag = secrets.token_hex(4)
    prompts = [(pid, f"[{tag}-{i}] {text}") for i, (pid, text) in
               enumerate(scenario_prompts(load_prompts(DEFAULT_QUESTIONS, config.seed + SEED_OFFSET), 0, total, "cold"))]
    timeout_s = config.timeouts.total_s
    records: list[RequestRecord] = []
    stopped_by = "max_requests"
    with open_chat_page(base_url, token) as chat:
        started_at, t_start = time.time(), time.monotonic()
        base_ms = chat.now_ms()
        for i in range(total):
            if time.monotonic() - t_start > config.stop.max_duration_s:
                stopped_by = "max_duration"
                break
            prompt_id, question = prompts[i % len(prompts)]
            raw = chat.ask(question, k=config.k, max_tokens=config.max_tokens, ignore_eos=config.ignore_eos,
                           timeout_s=timeout_s)
            rec = page_record(raw, i, prompt_id, i < config.warmup_requests, base_ms)
            records.append(rec)
            if progress:
                what = (f"ttft {rec.ttft_ms:.1f} ms, total {rec.e2e_ms:.1f} ms" if rec.ok
                        else f"error {rec.server_error_code or rec.error_code}: {rec.error_message}")
                print(f"browser {i + 1}/{total}{' (warm-up)' if rec.warmup else ''}: {what}", file=sys.stderr,
                      flush=True)
        user_agent = chat.page.evaluate("navigator.userAgent")
    return browser_result(base_url, config, requests, records, started_at, stopped_by, user_agent)


def browser_result(base_url: str, config: NorthSouthConfig, requests: int, records: list[RequestRecord],
                   started_at: float, stopped_by: str, user_agent: str | None) -> dict:
    """The step's data: one ``browser`` scenario summarized like the load generator's."""
    measured = [r for r in records if not r.warmup]
    ends = [r.t_end for r in measured if r.t_end is not None]
    sends = [r.t_sent for r in measured if r.t_sent is not None]
    wall = max(ends) - min(sends) if ends and sends else 0.0
    summary = summarize(records, wall, SLO(**config.slo))
    summary.stopped_by = stopped_by
    scenario = {"scenario": SCENARIO, "headline": False, "vantage": VANTAGE, "started_at_epoch": started_at,
                "strategy": {"type": "browser", "concurrency": 1}, "summary": summary.model_dump(mode="json"),
                "records": [r.to_dict() for r in records]}
    return {"endpoint": base_url, "vantage": VANTAGE, "browser": {"user_agent": user_agent},
            "config": {**config.model_dump(), "strategy": scenario["strategy"],
                       "stop": {**config.stop.model_dump(), "max_requests": requests}},
            "scenarios": [scenario]}
