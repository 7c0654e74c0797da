-- v_regressions: every regression check, one row per (target run, quantity), for the regressions
-- panel (definitions: docs/metrics.md, "Regressions"). flagged is true only when the change is
-- worse, significant (p_value < alpha, test says which test) and large (effect_size > min_effect,
-- in effect_unit: 'pct' relative percent, 'pp' percentage points); reason says which of these held.
-- change_pct is NULL when the baseline is 0 and the value is not (an error rate that rose from
-- none). Rows of the earlier median check have test 'median_of_runs' and no p-value.
DROP VIEW IF EXISTS v_regressions;
CREATE VIEW v_regressions AS
SELECT
    tr.run_id,
    tr.target,
    tr.started_at,
    rc.metric,
    rc.test,
    rc.value,
    rc.baseline_value,
    rc.change_pct,
    rc.effect_size,
    rc.effect_unit,
    rc.min_effect,
    rc.threshold_pct,
    rc.p_value,
    rc.alpha,
    rc.requests,
    rc.baseline_runs,
    rc.baseline_requests,
    rc.direction,
    rc.flagged,
    rc.reason,
    rc.comparable_on
FROM regression_checks rc
JOIN target_runs tr ON tr.target_run_id = rc.target_run_id;
