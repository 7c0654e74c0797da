-- Regression checks become statistical tests (plugins/ragbench/regressions.py; docs/metrics.md,
-- "Regressions"): latencies compare the run's raw requests with the baseline's pooled requests
-- (Mann-Whitney U and the shift of the percentile), per-run figures use a t prediction interval,
-- the error rate a binomial test. A row now says which test ran, its p-value, the effect size and
-- its minimum, the sample sizes on both sides, what made the runs comparable, and why it was or
-- was not flagged. Rows of the earlier check (a figure against the median of the baseline runs'
-- figures) stay, marked with test 'median_of_runs' and without the new columns.
ALTER TABLE regression_checks RENAME COLUMN baseline_median TO baseline_value;

ALTER TABLE regression_checks
    ADD COLUMN test              text NOT NULL DEFAULT 'median_of_runs'
        CHECK (test IN ('median_of_runs', 'mann_whitney_u', 't_prediction_interval', 'binomial')),
    ADD COLUMN p_value           double precision CHECK (p_value BETWEEN 0 AND 1),  -- one-sided, "worse"
    ADD COLUMN alpha             double precision CHECK (alpha > 0 AND alpha < 1),   -- flagged needs p_value < alpha
    ADD COLUMN effect_size       double precision,  -- in effect_unit; positive is worse
    ADD COLUMN effect_unit       text CHECK (effect_unit IN ('pct', 'pp')),  -- relative percent | percentage points
    ADD COLUMN min_effect        double precision,  -- flagged needs effect_size > min_effect
    ADD COLUMN requests          integer,           -- this run's sample: latency values or requests
    ADD COLUMN baseline_requests integer,           -- the baseline's pooled sample (NULL for per-run figures)
    ADD COLUMN comparable_on     jsonb,             -- the comparability key the baseline runs share
    ADD COLUMN reason            text;              -- why flagged or not, in words

ALTER TABLE regression_checks ALTER COLUMN test DROP DEFAULT;

COMMENT ON COLUMN regression_checks.baseline_value IS
    'latency: the percentile of the pooled baseline requests; per-run figures: geometric mean of the '
    'baseline runs; error rate: pooled rate; median_of_runs rows: the median of the baseline runs';
COMMENT ON COLUMN regression_checks.threshold_pct IS
    'the run''s regression_threshold_pct: the minimum effect of the relative (pct) checks';
