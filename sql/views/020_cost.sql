-- The cost model's views (docs/cost-model.md). Prices come from cost_inputs (config/costs.yaml);
-- what a run is charged comes from v_scorecard (010_scorecard.sql), whose usd_per_hour is the
-- cluster's $/hour from the newest price set of the provider with as_of not after the target run's
-- start. These views depend on v_scorecard, so this file runs after 010 (whose DROP ... CASCADE
-- removes them) and recreates them. A target with no price set gets NULL costs; a price of 0 gives 0.
DROP VIEW IF EXISTS v_cost_slo_operating_point, v_cost_run, v_cost_usage_prices, v_cost_cluster CASCADE;

-- Cluster $/hour per provider and price set: the hourly components (node pools, control plane,
-- load balancer, NAT gateway) x their quantity. superseded_on: the next set's as_of (NULL: in force).
CREATE VIEW v_cost_cluster AS
SELECT
    provider,
    as_of,
    lead(as_of) OVER (PARTITION BY provider ORDER BY as_of) AS superseded_on,
    COALESCE(sum(price_usd * quantity) FILTER (WHERE unit = 'usd_per_hour'), 0)::double precision AS usd_per_hour,
    array_agg(component || ': ' || trim_scale(quantity) || ' x $' || trim_scale(price_usd) || '/h'
              ORDER BY component) FILTER (WHERE unit = 'usd_per_hour') AS hourly_components
FROM cost_inputs
GROUP BY provider, as_of;

-- The per-GB prices, which are not hourly and so not in usd_per_hour: storage ($/GB-month for the
-- provisioned GB: usd_per_month), egress and NAT data ($/GB moved; quantity 1 = the price of one GB).
CREATE VIEW v_cost_usage_prices AS
SELECT
    provider,
    as_of,
    component,
    unit,
    price_usd::double precision AS price_usd,
    quantity::double precision  AS quantity,
    CASE WHEN unit = 'usd_per_gb_month' THEN (price_usd * quantity)::double precision END AS usd_per_month,
    source
FROM cost_inputs
WHERE unit <> 'usd_per_hour';

-- What each target run cost: the headline north-south scenario's measured time, and the whole target
-- run (start to finish of its task group; NULL while it runs) at the cluster's $/hour.
CREATE VIEW v_cost_run AS
SELECT
    sc.run_id,
    sc.target,
    sc.provider,
    sc.kind,
    sc.status,
    sc.started_at,
    tr.finished_at,
    sc.cost_as_of,
    sc.usd_per_hour,
    sc.scenario,
    sc.wall_time_s                                        AS ns_wall_time_s,
    sc.usd_per_hour * sc.wall_time_s / 3600.0             AS ns_cost_usd,
    extract(epoch FROM tr.finished_at - tr.started_at)::double precision AS target_run_duration_s,
    sc.usd_per_hour * extract(epoch FROM tr.finished_at - tr.started_at)::double precision / 3600.0
                                                          AS target_run_cost_usd,
    sc.output_tokens,
    sc.completed                                          AS completed_requests,
    sc.output_tokens_per_s,
    sc.usd_per_1m_output_tokens,
    sc.usd_per_1k_requests,
    -- efficiency: output tokens/s bought by one $/hour (NULL at a price of 0: there is no ratio)
    sc.output_tokens_per_s / NULLIF(sc.usd_per_hour, 0)  AS output_tokens_per_s_per_usd_per_hour
FROM v_scorecard sc
JOIN target_runs tr ON tr.run_id = sc.run_id AND tr.target = sc.target;

-- Cost at the SLO operating point: among a target run's scenarios (a sweep writes several), the one
-- with the highest goodput whose SLO attainment is at least 0.95 (ties: more output tokens/s, then
-- the scenario name). One row per target run; the scenario columns are NULL when none qualifies.
CREATE VIEW v_cost_slo_operating_point AS
SELECT
    tr.run_id,
    tr.target,
    tr.provider,
    tr.started_at,
    counts.scenarios,
    counts.scenarios_meeting_slo,
    op.scenario,
    op.slo_attainment,
    op.goodput_rps,
    op.output_tokens_per_s,
    op.requests_per_s,
    op.wall_time_s,
    op.output_tokens,
    op.completed                                                                      AS completed_requests,
    op.valid,
    price.cost_as_of,
    price.usd_per_hour,
    price.usd_per_hour * op.wall_time_s / 3600.0                                      AS cost_usd,
    price.usd_per_hour * op.wall_time_s / 3600.0 / NULLIF(op.output_tokens, 0) * 1e6  AS usd_per_1m_output_tokens,
    price.usd_per_hour * op.wall_time_s / 3600.0 / NULLIF(op.completed, 0) * 1e3      AS usd_per_1k_requests,
    op.output_tokens_per_s / NULLIF(price.usd_per_hour, 0)                            AS output_tokens_per_s_per_usd_per_hour
FROM target_runs tr
LEFT JOIN (SELECT DISTINCT run_id, target, cost_as_of, usd_per_hour FROM v_scorecard) price
       ON price.run_id = tr.run_id AND price.target = tr.target
LEFT JOIN LATERAL (
    SELECT count(*) AS scenarios, count(*) FILTER (WHERE s.slo_attainment >= 0.95) AS scenarios_meeting_slo
    FROM ns_summaries s WHERE s.target_run_id = tr.target_run_id
) counts ON true
LEFT JOIN LATERAL (
    SELECT s.*
    FROM ns_summaries s
    WHERE s.target_run_id = tr.target_run_id AND s.slo_attainment >= 0.95 AND s.goodput_rps IS NOT NULL
    ORDER BY s.goodput_rps DESC, s.output_tokens_per_s DESC, s.scenario
    LIMIT 1
) op ON true;
