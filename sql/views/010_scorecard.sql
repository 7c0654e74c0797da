-- v_scorecard: one row per target run, the headline numbers people compare across providers.
DROP VIEW IF EXISTS v_scorecard CASCADE;
CREATE VIEW v_scorecard AS
SELECT
    tr.run_id,
    tr.target,
    tr.provider,
    tr.kind,
    tr.model_id,
    tr.status,
    tr.failed_steps,
    tr.error,
    tr.started_at,
    s.scenario,
    s.requests,
    s.completed,
    s.ttft_p50_ms,
    s.ttft_p95_ms,
    s.e2e_p50_ms,
    s.e2e_p95_ms,
    s.tpot_p50_ms,
    s.output_tokens,
    s.output_tokens_per_s,
    s.requests_per_s,
    s.error_rate,
    s.slo_attainment,
    s.goodput_rps,
    s.valid,
    s.wall_time_s,
    ew.throughput_gbps AS east_west_gbps,
    ew.cross_node      AS east_west_cross_node,
    ir.chunks          AS ingested_chunks,
    ir.chunks_per_s    AS ingest_chunks_per_s
FROM target_runs tr
LEFT JOIN ns_summaries s ON s.target_run_id = tr.target_run_id AND s.headline
LEFT JOIN ew_results ew ON ew.target_run_id = tr.target_run_id AND ew.probe = 'tcp'
LEFT JOIN ingest_results ir ON ir.target_run_id = tr.target_run_id;
