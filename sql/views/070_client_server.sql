-- v_ns_client_server: per target run and scenario, client TTFT minus the server's own TTFT
-- (the RAG service's done.timings.ttft_ms), from the raw records. Only measured (non-warm-up),
-- successful records whose done event named their request (server_timings are stored only then;
-- a done for another request_id fails the record as malformed_event). The difference is the
-- network plus everything outside the server's clock. Percentiles interpolate linearly, like the
-- summaries (docs/metrics.md). A drill-down over raw records: read it for a run (run_id or
-- target_run_id), not as a series; the summary of each scenario holds the same figures
-- (summary -> 'client_minus_server_ttft_ms') for trends.
DROP VIEW IF EXISTS v_ns_client_server CASCADE;
-- One lateral aggregate per (target run, scenario) of ns_summaries, so a filter on the run or the
-- target reaches the raw rows through their primary key instead of aggregating the whole table.
CREATE VIEW v_ns_client_server AS
SELECT
    tr.run_id,
    tr.target_run_id,
    tr.target,
    tr.provider,
    tr.started_at,
    s.scenario,
    x.ok_requests,
    x.n,
    x.ok_requests - x.n AS unpaired,
    x.p50_ms,
    x.p90_ms,
    x.p99_ms,
    x.mean_ms,
    x.min_ms,
    x.max_ms
FROM target_runs tr
JOIN ns_summaries s ON s.target_run_id = tr.target_run_id
CROSS JOIN LATERAL (
    SELECT
        count(*)                                                   AS ok_requests,
        count(p.diff_ms)                                           AS n,
        percentile_cont(0.5)  WITHIN GROUP (ORDER BY p.diff_ms)    AS p50_ms,
        percentile_cont(0.9)  WITHIN GROUP (ORDER BY p.diff_ms)    AS p90_ms,
        percentile_cont(0.99) WITHIN GROUP (ORDER BY p.diff_ms)    AS p99_ms,
        avg(p.diff_ms)                                             AS mean_ms,
        min(p.diff_ms)                                             AS min_ms,
        max(p.diff_ms)                                             AS max_ms
    FROM ns_requests r
    -- paired: the done event named this request and carried the server's ttft_ms
    CROSS JOIN LATERAL (
        SELECT CASE WHEN r.request_id IS NOT NULL AND jsonb_typeof(r.server_timings -> 'ttft_ms') = 'number'
                    THEN r.ttft_ms - (r.server_timings ->> 'ttft_ms')::double precision END AS diff_ms
    ) p
    WHERE r.target_run_id = s.target_run_id
      AND r.scenario = s.scenario
      AND NOT r.warmup
      AND r.error_code IS NULL
      AND r.ttft_ms IS NOT NULL
) x
WHERE x.ok_requests > 0;
