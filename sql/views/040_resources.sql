-- v_resource_usage: what the workload used during the measured part of the headline scenario of
-- the North-South step (the scenario the scorecard shows), one row per target run, source,
-- component and metric. Runs loaded before per-scenario telemetry have one step-wide window
-- instead (scenario NULL; their window spans the TCP probe, warm-up and every scenario).
-- started_at (the target run's start) is the time column for Grafana. Sources, components and
-- units: sql/0003_telemetry.sql and docs/telemetry.md.
DROP VIEW IF EXISTS v_resource_usage CASCADE;
CREATE VIEW v_resource_usage AS
SELECT
    tr.run_id,
    tr.target,
    tr.provider,
    tr.started_at,
    ru.source,
    ru.component,
    ru.metric,
    ru.unit,
    ru.min_value,
    ru.mean_value,
    ru.max_value,
    ru.samples,
    ru.scenario,
    ru.window_start,
    ru.window_end
FROM resource_usage ru
JOIN target_runs tr ON tr.target_run_id = ru.target_run_id
LEFT JOIN ns_summaries s ON s.target_run_id = ru.target_run_id AND s.scenario = ru.scenario
WHERE ru.scenario IS NULL OR s.headline;

-- v_server_vs_client: the client's latency (the headline scenario's summary) next to vLLM's own
-- histograms over the same scenario's measured part, per target run and kind (ttft, itl, tpot,
-- e2e). The client's TTFT adds retrieval, prompt building, the service and the network to vLLM's;
-- a large gap in ITL points at the streaming path. server_count is the requests vLLM finished in
-- the window (the scenario's measured requests; warm-up excluded). Runs loaded before
-- per-scenario telemetry compare with a step-wide server window (server_window_whole_step: warm-up
-- and every scenario of a sweep).
DROP VIEW IF EXISTS v_server_vs_client CASCADE;
CREATE VIEW v_server_vs_client AS
SELECT
    tr.run_id,
    tr.target,
    tr.provider,
    tr.started_at,
    s.scenario,
    c.kind,
    c.client_mean_ms,
    c.client_p50_ms,
    c.client_p95_ms,
    h.mean_ms                       AS server_mean_ms,
    h.p50_ms                        AS server_p50_ms,
    h.p95_ms                        AS server_p95_ms,
    c.client_mean_ms - h.mean_ms    AS mean_gap_ms,
    c.client_p50_ms - h.p50_ms      AS p50_gap_ms,
    s.completed                     AS client_completed,
    h.count::bigint                 AS server_count,
    (SELECT count(*) FROM ns_summaries x WHERE x.target_run_id = tr.target_run_id) AS scenarios,
    h.metric                        AS server_metric,
    h.scenario IS NULL              AS server_window_whole_step
FROM target_runs tr
JOIN ns_summaries s ON s.target_run_id = tr.target_run_id AND s.headline
CROSS JOIN LATERAL (VALUES
    ('ttft', s.ttft_mean_ms, s.ttft_p50_ms, s.ttft_p95_ms),
    ('itl',  s.itl_mean_ms,  s.itl_p50_ms,  s.itl_p95_ms),
    ('tpot', s.tpot_mean_ms, s.tpot_p50_ms, s.tpot_p95_ms),
    ('e2e',  s.e2e_mean_ms,  s.e2e_p50_ms,  s.e2e_p95_ms)
) AS c (kind, client_mean_ms, client_p50_ms, client_p95_ms)
JOIN server_histograms h ON h.target_run_id = tr.target_run_id AND h.kind = c.kind
    AND (h.scenario = s.scenario OR h.scenario IS NULL);
