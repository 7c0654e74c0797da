"""Loading 100k raw North-South request records into the results store takes at most 5 s.

Builds one North-South result document of 100,000 successful requests (64 output tokens each, so
every record carries 64 token timestamps and 63 inter-token latencies, like a real run), then times
``ragbench.loader.load_document``: one transaction, raw rows through COPY. It loads the document
twice (the second load replaces the first, as a retried task would) and reports both.

Run with the orchestrator environment:  .state/venv-orchestrator/bin/python benchmarks/store_load.py
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "plugins")]

import sqlalchemy as sa  # noqa: E402
from _store import scratch_database  # noqa: E402

from ragbench import loader  # noqa: E402
from workload.bench.metrics import SLO, summarize  # noqa: E402
from workload.bench.records import RequestRecord  # noqa: E402
from workload.results import result_document  # noqa: E402

RECORDS = 100_000
OUTPUT_TOKENS = 64
TARGET_S = 5.0


def records(n: int, seed: int = 7) -> list[RequestRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        sent = i * 0.01
        first = sent + rng.uniform(0.05, 0.5)
        times = [first]
        for _ in range(OUTPUT_TOKENS - 1):
            times.append(times[-1] + rng.uniform(0.005, 0.02))
        out.append(RequestRecord(
            index=i, scenario="concurrent-16", prompt_id=f"q{i % 500}", prompt_chars=120, t_scheduled=sent,
            t_sent=sent, t_first_byte=first - 0.0004, t_first_token=first, token_times=times, t_end=times[-1],
            http_status=200, request_id=f"{i:032x}", replica_id="replica-a", model_id="tiny-qwen2", k=4,
            output_tokens=OUTPUT_TOKENS, output_tokens_source="server_usage",
            server_timings={"embed_ms": 4.1, "retrieve_ms": 1.2, "ttft_ms": (first - sent) * 1000 - 0.8}))
    return out


def document(recs: list[RequestRecord]) -> dict:
    wall = recs[-1].t_end - recs[0].t_sent
    summary = summarize(recs, wall_time_s=wall, slo=SLO(ttft_ms=1000, tpot_ms=50)).model_dump(mode="json")
    data = {"endpoint": "http://127.0.0.1:8000",
            "config": {"endpoint_kind": "rag", "strategy": {"type": "concurrent", "concurrency": 16}},
            "scenarios": [{"scenario": "concurrent-16", "started_at_epoch": time.time(), "summary": summary,
                           "records": [r.to_dict() for r in recs]}]}
    return result_document("north-south", data, started_at="2026-11-27T02:00:00+00:00")


def main() -> int:
    print(f"building a document of {RECORDS:,} records ({OUTPUT_TOKENS} tokens each) ...", flush=True)
    doc = document(records(RECORDS))
    with scratch_database() as engine:
        loader.record_run(engine, "bench-load", "rag_benchmark", "2026-11-27T02:00:00+00:00", "manual", {}, None)
        trid = loader.upsert_target_run(engine, "bench-load", "local", "local", "local", None, None, {},
                                        "2026-11-27T02:00:00+00:00")
        timings = []
        for attempt in ("first load", "reload (replaces)"):
            t0 = time.perf_counter()
            loader.load_document(engine, trid, doc)
            timings.append(time.perf_counter() - t0)
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT count(*) FROM ns_requests WHERE target_run_id = :t"),
                                    {"t": trid}).scalar_one()
            print(f"{attempt}: {timings[-1]:.2f} s for {rows:,} rows "
                  f"({rows / timings[-1]:,.0f} rows/s)", flush=True)
            if rows != RECORDS:
                print(f"FAIL: expected {RECORDS:,} rows, found {rows:,}")
                return 1
    worst = max(timings)
    verdict = "PASS" if worst <= TARGET_S else "FAIL"
    print(f"{verdict}: slowest load {worst:.2f} s = {worst / TARGET_S:.2f} x the {TARGET_S:.0f} s target")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
