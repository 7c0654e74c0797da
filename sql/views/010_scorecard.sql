-- v_scorecard: one row per target run, the headline numbers people compare across providers.
-- The cost columns (docs/cost-model.md) price the headline scenario with the cluster's $/hour from
-- the newest price set of the provider whose as_of (a UTC day) is not after the target run's start;
-- no price set gives NULL costs. The cost views of 020_cost.sql build on this view (the CASCADE
-- below drops them; that file, applied after this one, recreates them).
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
    -- per 1k successful requests
    price.usd_per_hour * s.wall_time_s / 3600.0 / NULLIF(s.output_tokens, 0) * 1e6 AS usd_per_1m_output_tokens,
    price.usd_per_hour * s.wall_time_s / 3600.0 / NULLIF(s.completed, 0) * 1e3     AS usd_per_1k_requests
FROM target_runs tr
LEFT JOIN ns_summaries s ON s.target_run_id = tr.target_run_id AND s.headline
LEFT JOIN ew_results ew ON ew.target_run_id = tr.target_run_id AND ew.probe = 'tcp'
LEFT JOIN ingest_results ir ON ir.target_run_id = tr.target_run_id
LEFT JOIN LATERAL (
    -- the price set in force at the start: hourly components x quantity (per-GB prices are not hourly)
    SELECT ci.as_of,
           COALESCE(sum(ci.price_usd * ci.quantity) FILTER (WHERE ci.unit = 'usd_per_hour'), 0)::double precision
               AS usd_per_hour
    FROM cost_inputs ci
    WHERE ci.provider = tr.provider
      AND ci.as_of = (SELECT max(c.as_of) FROM cost_inputs c
                      WHERE c.provider = tr.provider AND c.as_of <= (tr.started_at AT TIME ZONE 'UTC')::date)
    GROUP BY ci.as_of
) price ON true;
