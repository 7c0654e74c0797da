-- v_scorecard: one row per target run, the headline numbers people compare across providers.
-- status / failed_steps / error: the target run's verdict; its North-South columns come from the
-- headline scenario its last load stored (a step that failed on a re-attempt has no rows left, so
-- a failed target run never shows an earlier attempt's figures). *_lo / *_hi: bootstrap 95 percent
-- intervals; low_confidence: the percentile columns with fewer than 10 samples beyond them
-- (docs/metrics.md). operating_point: the headline is the sweep's operating point (NULL: not a
-- sweep); no_operating_point: a sweep where no level met the SLO target, whose costs are then NULL.
-- The cost columns (docs/cost-model.md) use the price frozen into the target run when it was loaded
-- (target_run_prices), not cost_inputs as it is now. The cost views of 020_cost.sql build on this
-- view (the CASCADE below drops them; that file, applied after this one, recreates them).
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
    ir.chunks_per_s    AS ingest_chunks_per_s,
    ir.corpus_version,
    price.as_of        AS cost_as_of,
    price.usd_per_hour,
    -- the headline scenario's cost (usd_per_hour x wall_time_s / 3600) per 1M output tokens and
    -- per 1k successful requests; NULL for a sweep without an operating point
    CASE WHEN sweep.no_operating_point IS NOT TRUE THEN
        price.usd_per_hour * s.wall_time_s / 3600.0 / NULLIF(s.output_tokens, 0) * 1e6 END AS usd_per_1m_output_tokens,
    CASE WHEN sweep.no_operating_point IS NOT TRUE THEN
        price.usd_per_hour * s.wall_time_s / 3600.0 / NULLIF(s.completed, 0) * 1e3 END     AS usd_per_1k_requests,
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
    s.operating_point,
    sweep.no_operating_point
FROM target_runs tr
LEFT JOIN ns_summaries s ON s.target_run_id = tr.target_run_id AND s.headline
LEFT JOIN ew_results ew ON ew.target_run_id = tr.target_run_id AND ew.probe = 'tcp'
LEFT JOIN ingest_results ir ON ir.target_run_id = tr.target_run_id
LEFT JOIN target_run_prices price ON price.target_run_id = tr.target_run_id
LEFT JOIN LATERAL (
    -- a sweep (its levels carry an operating_point flag) with no level chosen
    SELECT bool_or(x.operating_point IS NOT NULL) AND NOT COALESCE(bool_or(x.operating_point), false)
               AS no_operating_point
    FROM ns_summaries x WHERE x.target_run_id = tr.target_run_id
) sweep ON true;
