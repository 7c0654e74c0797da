-- v_resource_usage: what the workload used during the North-South step, one row per target run,
-- source, component and metric. started_at (the target run's start) is the time column for
-- Grafana. Sources, components and units: sql/0003_telemetry.sql and docs/telemetry.md.
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
    ru.samples
FROM resource_usage ru
JOIN target_runs tr ON tr.target_run_id = ru.target_run_id;

-- v_server_vs_client: the client's latency (the headline scenario's summary) next to vLLM's own
-- histograms, per target run and kind (ttft, itl, tpot, e2e). The client's TTFT adds retrieval,
-- prompt building, the service and the network to vLLM's; a large gap in ITL points at the
-- streaming path. The server side covers every request of the step (warm-up and all scenarios:
-- server_count); with several scenarios (a sweep) it is not the headline scenario alone.
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
    h.metric                        AS server_metric
FROM target_runs tr
JOIN ns_summaries s ON s.target_run_id = tr.target_run_id AND s.headline
CROSS JOIN LATERAL (VALUES
    ('ttft', s.ttft_mean_ms, s.ttft_p50_ms, s.ttft_p95_ms),
    ('itl',  s.itl_mean_ms,  s.itl_p50_ms,  s.itl_p95_ms),
    ('tpot', s.tpot_mean_ms, s.tpot_p50_ms, s.tpot_p95_ms),
    ('e2e',  s.e2e_mean_ms,  s.e2e_p50_ms,  s.e2e_p95_ms)
) AS c (kind, client_mean_ms, client_p50_ms, client_p95_ms)
JOIN server_histograms h ON h.target_run_id = tr.target_run_id AND h.kind = c.kind;
