-- Trend views: one row per target run, started_at (the target run's start) as the time column, for
-- the Grafana dashboards in grafana/dashboards/. They read summary tables and other views only,
-- never the raw ns_requests table, so a panel over months of runs stays cheap. East-West over time
-- needs no view of its own: v_east_west (030_east_west.sql) already has one row per target run.
-- v_trend_cost builds on the cost views of 020_cost.sql, which 010's DROP ... CASCADE removes and
-- 020 recreates before this file runs.
DROP VIEW IF EXISTS v_targets, v_trend_north_south, v_trend_cost CASCADE;

-- v_targets: every target that has run, for Grafana's `target` variable (the read-only role reads
-- views, not tables). provider and kind are those of the target's newest run.
CREATE VIEW v_targets AS
SELECT
    target,
    (array_agg(provider ORDER BY started_at DESC))[1] AS provider,
    (array_agg(kind ORDER BY started_at DESC))[1]     AS kind,
    count(*)                                          AS target_runs,
    min(started_at)                                   AS first_started_at,
    max(started_at)                                   AS last_started_at
FROM target_runs
GROUP BY target;

-- v_trend_north_south: the headline North-South scenario of each target run: latency percentiles
-- (TTFT, E2E, TPOT, ITL), throughput, errors, SLO attainment and validity, and the ingestion rate
-- of the same target run, the figures' bootstrap intervals and vLLM's prefix-cache hit rate. Target
-- runs without a headline scenario (North-South failed) have no row.
CREATE VIEW v_trend_north_south AS
SELECT
    tr.run_id,
    tr.target_run_id,
    tr.target,
    tr.provider,
    tr.kind,
    tr.status,
    tr.started_at,
    s.scenario,
    s.requests,
    s.completed,
    s.errored,
    s.error_rate,
    s.output_tokens_per_s,
    s.requests_per_s,
    s.goodput_rps,
    s.slo_attainment,
    s.valid,
    s.wall_time_s,
    s.ttft_p50_ms,
    s.ttft_p95_ms,
    s.ttft_p99_ms,
    s.e2e_p50_ms,
    s.e2e_p95_ms,
    s.e2e_p99_ms,
    s.tpot_p50_ms,
    s.tpot_p95_ms,
    s.itl_p50_ms,
    s.itl_p95_ms,
    ir.chunks_per_s AS ingest_chunks_per_s,
    -- bootstrap 95 percent intervals and low-confidence percentiles (docs/metrics.md)
    s.ttft_p50_ms_lo,
    s.ttft_p50_ms_hi,
    s.ttft_p95_ms_lo,
    s.ttft_p95_ms_hi,
    s.tpot_p50_ms_lo,
    s.tpot_p50_ms_hi,
    s.e2e_p95_ms_lo,
    s.e2e_p95_ms_hi,
    s.output_tokens_per_s_lo,
    s.output_tokens_per_s_hi,
    s.low_confidence,
    s.prefix_cache_hit_rate,
    s.operating_point
FROM target_runs tr
JOIN ns_summaries s ON s.target_run_id = tr.target_run_id AND s.headline
LEFT JOIN ingest_results ir ON ir.target_run_id = tr.target_run_id;

-- v_trend_cost: cost efficiency per target run: the headline scenario priced as in v_cost_run ($ per
-- 1M output tokens, $ per 1k requests, output tokens/s bought by one $/hour) next to the same
-- figures at the SLO operating point (v_cost_slo_operating_point; NULL when no scenario met the
-- SLOs). Unpriced target runs (no price set in force) keep their row with NULL costs.
CREATE VIEW v_trend_cost AS
SELECT
    cr.run_id,
    cr.target,
    cr.provider,
    cr.status,
    cr.started_at,
    cr.cost_as_of,
    cr.usd_per_hour,
    cr.scenario,
    cr.ns_cost_usd,
    cr.target_run_cost_usd,
    cr.usd_per_1m_output_tokens,
    cr.usd_per_1k_requests,
    cr.output_tokens_per_s_per_usd_per_hour,
    op.scenario                              AS slo_scenario,
    op.usd_per_1m_output_tokens              AS slo_usd_per_1m_output_tokens,
    op.output_tokens_per_s_per_usd_per_hour  AS slo_output_tokens_per_s_per_usd_per_hour
FROM v_cost_run cr
LEFT JOIN v_cost_slo_operating_point op ON op.run_id = cr.run_id AND op.target = cr.target
WHERE cr.scenario IS NOT NULL;
