-- v_regressions: every regression check, one row per (target run, metric), for the regressions
-- panel. direction says which way the metric moved for the user ('worse' | 'better' | 'same');
-- flagged is true only for a worse change beyond threshold_pct. change_pct is NULL when the
-- baseline median is 0 and the value is not (an error rate that rose from none).
DROP VIEW IF EXISTS v_regressions;
CREATE VIEW v_regressions AS
SELECT
    tr.run_id,
    tr.target,
    tr.started_at,
    rc.metric,
    rc.value,
    rc.baseline_median,
    rc.baseline_runs,
    rc.change_pct,
    rc.threshold_pct,
    rc.direction,
    rc.flagged
FROM regression_checks rc
JOIN target_runs tr ON tr.target_run_id = rc.target_run_id;
