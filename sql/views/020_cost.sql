-- The cost model's views (docs/cost-model.md). Price sets come from cost_inputs (config/costs.yaml);
-- what a run is charged comes from the price frozen into it when it was loaded (target_run_prices,
-- also in v_scorecard, 010_scorecard.sql): the cluster's $/hour from the newest price set of the
-- provider with as_of not after the target run's start, as cost_inputs held it then. These views
-- depend on v_scorecard, so this file runs after 010 (whose DROP ... CASCADE removes them) and
-- recreates them. A target with no price set gets NULL costs; a price of 0 gives 0.
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
-- run at the cluster's $/hour. The target run's window is its own steps' (step_results: the first
-- step's start to the last step's end, by the steps' clocks), so reloading a run never moves it;
-- target runs loaded before step_results existed fall back to target_runs.started_at/finished_at.
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
    win.window_start,
    win.window_end,
    extract(epoch FROM win.window_end - win.window_start)::double precision AS target_run_duration_s,
    sc.usd_per_hour * extract(epoch FROM win.window_end - win.window_start)::double precision / 3600.0
                                                          AS target_run_cost_usd,
    sc.output_tokens,
    sc.completed                                          AS completed_requests,
    sc.output_tokens_per_s,
    sc.usd_per_1m_output_tokens,
    sc.usd_per_1k_requests,
    -- efficiency: output tokens/s bought by one $/hour (NULL at a price of 0: there is no ratio)
    sc.output_tokens_per_s / NULLIF(sc.usd_per_hour, 0)  AS output_tokens_per_s_per_usd_per_hour
FROM v_scorecard sc
JOIN target_runs tr ON tr.run_id = sc.run_id AND tr.target = sc.target
LEFT JOIN LATERAL (
    SELECT CASE WHEN count(*) > 0 THEN min(st.started_at) ELSE tr.started_at END  AS window_start,
           CASE WHEN count(*) > 0 THEN max(st.finished_at) ELSE tr.finished_at END AS window_end
    FROM step_results st WHERE st.target_run_id = tr.target_run_id
) win ON true;

-- Cost at the SLO operating point: the scenario the load generator chose as the sweep's operating
-- point (ns_summaries.operating_point: the highest level meeting the SLO attainment target it was
-- given, never an invalid one). One row per target run; the scenario columns are NULL when the run
-- did not sweep or no level met the target (no_operating_point). No threshold is applied here.
CREATE VIEW v_cost_slo_operating_point AS
SELECT
    tr.run_id,
    tr.target,
    tr.provider,
    tr.started_at,
    counts.scenarios,
    counts.scenarios_meeting_slo,
    counts.swept AND op.scenario IS NULL                                              AS no_operating_point,
    op.scenario,
    op.slo_attainment,
    op.goodput_rps,
    op.output_tokens_per_s,
    op.requests_per_s,
    op.wall_time_s,
    op.output_tokens,
    op.completed                                                                      AS completed_requests,
    op.valid,
    price.as_of                                                                       AS cost_as_of,
    price.usd_per_hour,
    price.usd_per_hour * op.wall_time_s / 3600.0                                      AS cost_usd,
    price.usd_per_hour * op.wall_time_s / 3600.0 / NULLIF(op.output_tokens, 0) * 1e6  AS usd_per_1m_output_tokens,
    price.usd_per_hour * op.wall_time_s / 3600.0 / NULLIF(op.completed, 0) * 1e3      AS usd_per_1k_requests,
    op.output_tokens_per_s / NULLIF(price.usd_per_hour, 0)                            AS output_tokens_per_s_per_usd_per_hour
FROM target_runs tr
LEFT JOIN target_run_prices price ON price.target_run_id = tr.target_run_id
LEFT JOIN LATERAL (
    -- scenarios_meeting_slo: the levels whose SLO attainment met the sweep's target (the load
    -- generator's meets_slo_target; NULL outside sweeps)
    SELECT count(*) AS scenarios,
           count(*) FILTER (WHERE (s.summary ->> 'meets_slo_target')::boolean) AS scenarios_meeting_slo,
           COALESCE(bool_or(s.operating_point IS NOT NULL), false) AS swept
    FROM ns_summaries s WHERE s.target_run_id = tr.target_run_id
) counts ON true
LEFT JOIN LATERAL (
    SELECT s.* FROM ns_summaries s
    WHERE s.target_run_id = tr.target_run_id AND s.operating_point
    ORDER BY s.scenario
    LIMIT 1
) op ON true;
