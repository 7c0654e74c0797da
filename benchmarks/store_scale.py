"""With 10M raw request rows in the results store, the scorecard and trend views answer in <= 100 ms.

Generates, inside PostgreSQL, a synthetic history spread like real use: four targets (local and three
clouds) benchmarked every night for NIGHTS nights, ~3% of target runs failed, each target run with a
headline summary, a few sweep levels, East-West and ingestion rows, and ROWS raw request records in
total (16 inter-token latencies each). Prices come from config/costs.yaml. Then it times the queries
a reader runs (the latest run's scorecard, each view over the last 30 days for one target, the last
50 scorecard rows), taking the median of several executions, and prints EXPLAIN ANALYZE of the
scorecard query. Exits non-zero when any query's median is above 100 ms.

Views are found in the database (every ``v_*``), so views added later are measured too. Each is
filtered the way a dashboard filters it: by ``target`` and a 30-day window on ``time`` or
``started_at`` when it has them, otherwise by ``run_id`` (the latest run). Drill-down views over
raw records (``PER_RUN_VIEWS``) are read for the latest run.

    .state/venv-orchestrator/bin/python benchmarks/store_scale.py [--rows 10000000] [--nights 730]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "plugins")]

import sqlalchemy as sa  # noqa: E402
from _store import scratch_database  # noqa: E402

from ragbench import costs, run_prices  # noqa: E402

TARGET_MS = 100.0
# Drill-down views over one run's raw records (not series): read per run, as the report reads them.
PER_RUN_VIEWS = {"v_ns_client_server"}
REPEATS = 7
TARGETS = [("local", "local", "local"), ("akamai-lke", "kubernetes", "akamai-lke"),
           ("aws-eks", "kubernetes", "aws-eks"), ("gcp-gke", "kubernetes", "gcp-gke")]
LAST_NIGHT = "2026-11-26"  # the history ends here; prices (as_of 2026-01-30) apply from then on

_GENERATE = [
    # one scheduled run per night at 02:00 UTC
    """INSERT INTO runs (run_id, dag_id, started_at, finished_at, run_type, params)
       SELECT 'scheduled__' || to_char(d, 'YYYY-MM-DD') || 'T02:00:00+00:00', 'rag_benchmark',
              d + interval '2 hours', d + interval '3 hours', 'scheduled', '{"targets": ["local"]}'::jsonb
       FROM generate_series(CAST(:last AS date) - (:nights - 1), CAST(:last AS date), interval '1 day') d""",
    """INSERT INTO target_runs (run_id, target, kind, provider, region, model_id, status, failed_steps, error,
                                started_at, finished_at)
       SELECT r.run_id, t.target, t.kind, t.provider, 'region-1', 'Qwen/Qwen2.5-1.5B-Instruct',
              CASE WHEN f THEN 'failed' ELSE 'succeeded' END,
              CASE WHEN f THEN ARRAY['north-south'] ELSE '{}' END,
              CASE WHEN f THEN 'steps without a result: north-south' END,
              r.started_at + interval '5 minutes', r.finished_at
       FROM runs r CROSS JOIN (VALUES {targets}) t(target, kind, provider)
       CROSS JOIN LATERAL (SELECT random() < 0.03 AS f) fail""",
    # the headline (concurrency 16) and three lower sweep levels per successful target run
    """INSERT INTO ns_summaries (target_run_id, scenario, headline, started_at, strategy, requests, completed,
              errored, error_rate, wall_time_s, output_tokens, output_tokens_per_s, requests_per_s,
              ttft_p50_ms, ttft_p90_ms, ttft_p95_ms, ttft_p99_ms, ttft_mean_ms,
              e2e_p50_ms, e2e_p90_ms, e2e_p95_ms, e2e_p99_ms, e2e_mean_ms,
              tpot_p50_ms, tpot_p90_ms, tpot_p95_ms, tpot_p99_ms, tpot_mean_ms,
              itl_p50_ms, itl_p90_ms, itl_p95_ms, itl_p99_ms, itl_mean_ms,
              slo_attainment, goodput_rps, valid, summary, operating_point)
       SELECT tr.target_run_id, 'sweep-c' || c, c = 16, tr.started_at + interval '10 minutes',
              jsonb_build_object('type', 'concurrent', 'concurrency', c), :per_run, :per_run - e, e,
              e::float / :per_run, w, (:per_run - e) * 256, (:per_run - e) * 256 / w, (:per_run - e) / w,
              t, t * 1.4, t * 1.6, t * 2.2, t * 1.1, t + 256 * p, t + 256 * p * 1.2, t + 256 * p * 1.3,
              t + 256 * p * 1.6, t + 256 * p * 1.05, p, p * 1.1, p * 1.2, p * 1.5, p * 1.02,
              p, p * 1.3, p * 1.6, p * 2.5, p * 1.05, 0.9 + random() * 0.1, (:per_run - e) / w * 0.95,
              true, '{}'::jsonb, c = 16
       FROM target_runs tr CROSS JOIN (VALUES (2), (4), (8), (16)) lv(c)
       CROSS JOIN LATERAL (SELECT 120 + random() * 200 + c * 10 AS t, 12 + random() * 8 AS p,
                                  (random() * 3)::int AS e, 300 + random() * 60 AS w) x
       WHERE tr.status = 'succeeded'""",
    """INSERT INTO ew_results (target_run_id, probe, client_node, server_node, cross_node, path, samples,
              throughput_gbps, throughput_ci95_low_gbps, throughput_ci95_high_gbps, retransmits, mean_rtt_ms,
              jitter_ms, loss_pct, detail)
       SELECT tr.target_run_id, p.probe, 'node-a', 'node-b', true, 'pod-network', 3, g, g * 0.95, g * 1.05,
              random() * 500, 0.1 + random() * 0.3, CASE WHEN p.probe = 'udp' THEN random() * 0.05 END,
              CASE WHEN p.probe = 'udp' THEN random() * 0.1 END, '{}'::jsonb
       FROM target_runs tr CROSS JOIN (VALUES ('tcp'), ('tcp_reverse'), ('udp')) p(probe)
       CROSS JOIN LATERAL (SELECT 5 + random() * 20 AS g) x""",
    """INSERT INTO ingest_results (target_run_id, files, documents, chunks, bytes, seconds, chunks_per_s,
              convert_split_ms, embed_ms, write_ms, store_documents)
       SELECT target_run_id, 58, 58, 640, 640000, s, 640 / s, 900, s * 900, 300, 58
       FROM target_runs CROSS JOIN LATERAL (SELECT 20 + random() * 40 AS s) x""",
    # the raw records of each headline scenario
    """INSERT INTO ns_requests (target_run_id, scenario, idx, warmup, prompt_id, t_scheduled_ms, t_sent_ms,
              t_first_byte_ms, t_first_token_ms, t_end_ms, ttft_ms, e2e_ms, tpot_ms, output_tokens,
              output_tokens_source, token_events, http_status, request_id, replica_id, error_code,
              server_error_code, error_message, itl_ms, server_timings)
       SELECT s.target_run_id, s.scenario, i, i < 8, 'q' || (i % 400), i * 20.0, i * 20.0, i * 20.0 + t - 1,
              i * 20.0 + t, i * 20.0 + t + 255 * p, t, t + 255 * p, p, 256, 'server_usage', 256, 200,
              md5(s.target_run_id::text || '-' || i), 'replica-' || (i % 2), NULL, NULL, NULL,
              ARRAY[p, p, p * 1.1, p, p * 0.9, p, p * 1.2, p, p, p * 1.05, p, p, p * 0.95, p, p, p],
              jsonb_build_object('ttft_ms', t - 2, 'embed_ms', 4.0, 'retrieve_ms', 1.5)
       FROM ns_summaries s CROSS JOIN generate_series(0, :per_run - 1) i
       CROSS JOIN LATERAL (SELECT 100 + random() * 300 + (i % 7) AS t, 10 + random() * 10 AS p) x
       WHERE s.headline""",
]


def generate(engine, rows: int, nights: int) -> int:
    runs = nights * len(TARGETS)
    per_run = max(16, rows // round(runs * 0.97))
    targets = ", ".join(f"('{t}', '{k}', '{p}')" for t, k, p in TARGETS)
    params = {"last": LAST_NIGHT, "nights": nights, "per_run": per_run}
    for i, sql in enumerate(_GENERATE, 1):
        t0 = time.perf_counter()
        with engine.begin() as conn:
            n = conn.execute(sa.text(sql.replace("{targets}", targets)), params).rowcount
        print(f"  generate {i}/{len(_GENERATE)}: {n:,} rows in {time.perf_counter() - t0:.1f} s", flush=True)
    costs.store(engine, costs.load_costs())
    with engine.begin() as conn:
        run_prices.freeze(conn)  # as each load does
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
        return conn.execute(sa.text("SELECT count(*) FROM ns_requests")).scalar_one()


def view_queries(engine) -> dict[str, tuple[str, dict]]:
    """Every v_* view, filtered as a dashboard would filter it."""
    with engine.connect() as conn:
        latest = conn.execute(sa.text("SELECT max(run_id) FROM runs")).scalar_one()
        end = conn.execute(sa.text("SELECT max(started_at) FROM runs")).scalar_one()
        cols = conn.execute(sa.text(
            "SELECT table_name, array_agg(column_name::text) FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name LIKE 'v\\_%' GROUP BY table_name")).all()
    queries = {"v_scorecard (latest run)": ("SELECT * FROM v_scorecard WHERE run_id = :run", {"run": latest}),
               "v_scorecard (last 50 rows)": ("SELECT * FROM v_scorecard ORDER BY started_at DESC LIMIT 50", {})}
    window = {"run": latest, "target": "aws-eks", "from": end - _days(30), "to": end}
    for view, columns in sorted(cols):
        where = ["target = :target"] if "target" in columns else []
        time_col = "time" if "time" in columns else "started_at" if "started_at" in columns else None
        if view in PER_RUN_VIEWS:
            where.append("run_id = :run")
            view_label = f"{view} (latest run)"
        elif time_col:  # a series: one target over the last 30 days
            where.append(f"{time_col} BETWEEN :from AND :to")
        elif "run_id" in columns:
            where.append("run_id = :run")
        sql = f"SELECT * FROM {view}" + (" WHERE " + " AND ".join(where) if where else "")
        queries[view_label if view in PER_RUN_VIEWS else view] = (sql, window)
    return queries


def _days(n: int):
    from datetime import timedelta

    return timedelta(days=n)


def time_query(engine, sql: str, params: dict) -> tuple[float, int]:
    samples, rows = [], 0
    with engine.connect() as conn:
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            rows = len(conn.execute(sa.text(sql), params).all())
            samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples), rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="raw request rows to generate")
    ap.add_argument("--nights", type=int, default=730, help="nightly runs per target")
    args = ap.parse_args()
    with scratch_database() as engine:
        print(f"generating ~{args.rows:,} raw rows over {args.nights} nights x {len(TARGETS)} targets ...", flush=True)
        t0 = time.perf_counter()
        total = generate(engine, args.rows, args.nights)
        print(f"{total:,} raw request rows in {time.perf_counter() - t0:.0f} s", flush=True)
        worst, failed = 0.0, []
        for name, (sql, params) in view_queries(engine).items():
            median, rows = time_query(engine, sql, params)
            worst = max(worst, median)
            mark = "ok" if median <= TARGET_MS else "SLOW"
            failed += [name] if median > TARGET_MS else []
            print(f"  {mark:4} {name:40} median {median:7.2f} ms  ({rows} rows)", flush=True)
        sql, params = view_queries(engine)["v_scorecard (latest run)"]
        with engine.connect() as conn:
            plan = conn.execute(sa.text("EXPLAIN (ANALYZE, BUFFERS) " + sql), params).scalars().all()
        print("EXPLAIN ANALYZE " + sql.replace(":run", repr(params["run"])))
        print("\n".join("    " + line for line in plan))
    verdict = "PASS" if not failed else "FAIL"
    print(f"{verdict}: slowest view query {worst:.2f} ms = {worst / TARGET_MS:.2f} x the {TARGET_MS:.0f} ms target"
          + (f" (slow: {', '.join(failed)})" if failed else ""))
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
