-- Regression checks: after every run, each target's headline metrics compared with the median of
-- its last N valid earlier runs (plugins/ragbench/regressions.py; docs/operations.md). One row per
-- (target run, metric); checking a run again replaces its rows. Read through v_regressions.
CREATE TABLE regression_checks (
    target_run_id     bigint NOT NULL REFERENCES target_runs (target_run_id) ON DELETE CASCADE,
    metric            text NOT NULL,              -- a v_scorecard column, e.g. ttft_p95_ms
    value             double precision NOT NULL,  -- this run's figure
    baseline_median   double precision NOT NULL,  -- median of the metric over the baseline runs
    baseline_runs     integer NOT NULL CHECK (baseline_runs > 0),
    baseline_run_ids  text[] NOT NULL,            -- the earlier runs the median is taken over
    change_pct        double precision,           -- (value - median) / median x 100; NULL when the median is 0
    threshold_pct     double precision NOT NULL CHECK (threshold_pct > 0),
    direction         text NOT NULL CHECK (direction IN ('worse', 'better', 'same')),
    flagged           boolean NOT NULL,           -- worse by more than threshold_pct
    checked_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target_run_id, metric)
);

-- The cost file's load history, written by the cost_inputs maintenance DAG
-- (plugins/ragbench/cost_sync.py): a file whose SHA-256 matches the newest row is not loaded again.
CREATE TABLE cost_file_loads (
    load_id     bigserial PRIMARY KEY,
    path        text NOT NULL,                    -- as given, relative to the project when inside it
    sha256      text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    loaded_at   timestamptz NOT NULL DEFAULT now(),
    price_sets  integer NOT NULL,
    rows        integer NOT NULL,
    inserted    integer NOT NULL,
    updated     integer NOT NULL,
    deleted     integer NOT NULL
);

CREATE INDEX cost_file_loads_path_loaded ON cost_file_loads (path, loaded_at DESC);
