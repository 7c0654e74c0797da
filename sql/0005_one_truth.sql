-- One truth per target run: the steps a load saw, prices frozen when it was loaded, the operating
-- point stored with its scenario, and bootstrap intervals on the headline figures
-- (docs/results-store.md, docs/cost-model.md, docs/metrics.md).

-- Every step document the last load of a target run saw: whether it succeeded and when it ran (the
-- step's own clock). A step that failed or never ran on a re-attempt has no rows of its results
-- left (the loader deletes them); the cost window is the span of these steps.
CREATE TABLE step_results (
    target_run_id bigint NOT NULL REFERENCES target_runs (target_run_id) ON DELETE CASCADE,
    step          text NOT NULL,                  -- deploy | ingest | north_south | east_west | teardown
    ok            boolean NOT NULL,
    error         text,
    started_at    timestamptz,
    finished_at   timestamptz,
    host          text,
    PRIMARY KEY (target_run_id, step),
    CHECK (finished_at IS NULL OR started_at IS NULL OR finished_at >= started_at)
);

-- The price a target run was charged, frozen when it was first loaded: the provider's newest price
-- set whose as_of is not after the target run's start, as it stood then. Later edits of cost_inputs
-- do not change it; `ragbench costs reprice` does, explicitly. as_of NULL: no price set was in force
-- (the run is not priced).
CREATE TABLE target_run_prices (
    target_run_id     bigint PRIMARY KEY REFERENCES target_runs (target_run_id) ON DELETE CASCADE,
    provider          text NOT NULL,
    as_of             date,
    usd_per_hour      double precision CHECK (usd_per_hour >= 0),
    hourly_components jsonb NOT NULL DEFAULT '[]'::jsonb,  -- [{component, price_usd, quantity, source}]
    priced_at         timestamptz NOT NULL DEFAULT now(),
    repriced          boolean NOT NULL DEFAULT false,      -- set by `ragbench costs reprice`
    CHECK ((as_of IS NULL) = (usd_per_hour IS NULL))
);

-- operating_point: the load generator's verdict for a sweep level (true for the one level it chose,
-- false for the others, NULL outside sweeps); never true for an invalid scenario.
-- prefix_cache_hit_rate: vLLM's prefix-cache hit rate over the scenario (NULL when not measured).
-- *_lo / *_hi: the bootstrap 95 percent interval of the figure (intervals.py). low_confidence: the
-- percentile columns with fewer than 10 samples beyond them.
ALTER TABLE ns_summaries
    ADD COLUMN operating_point          boolean,
    ADD COLUMN prefix_cache_hit_rate    double precision CHECK (prefix_cache_hit_rate BETWEEN 0 AND 1),
    ADD COLUMN ttft_p50_ms_lo           double precision,
    ADD COLUMN ttft_p50_ms_hi           double precision,
    ADD COLUMN ttft_p95_ms_lo           double precision,
    ADD COLUMN ttft_p95_ms_hi           double precision,
    ADD COLUMN tpot_p50_ms_lo           double precision,
    ADD COLUMN tpot_p50_ms_hi           double precision,
    ADD COLUMN e2e_p95_ms_lo            double precision,
    ADD COLUMN e2e_p95_ms_hi            double precision,
    ADD COLUMN output_tokens_per_s_lo   double precision,
    ADD COLUMN output_tokens_per_s_hi   double precision,
    ADD COLUMN low_confidence           text[] NOT NULL DEFAULT '{}',
    ADD CONSTRAINT ns_summaries_operating_point_valid CHECK (NOT (operating_point AND NOT valid));

-- Sweeps loaded before: the load generator marked the level it chose as the headline and said
-- whether each level met the SLO target; the chosen level is the operating point when it met it.
UPDATE ns_summaries
SET operating_point = headline AND valid AND COALESCE((summary ->> 'meets_slo_target')::boolean, false)
WHERE summary ? 'meets_slo_target';

-- Target runs loaded before: freeze the price the views computed for them until now.
INSERT INTO target_run_prices (target_run_id, provider, as_of, usd_per_hour, hourly_components)
SELECT tr.target_run_id, tr.provider, p.as_of, p.usd_per_hour, COALESCE(p.components, '[]'::jsonb)
FROM target_runs tr
LEFT JOIN LATERAL (
    SELECT ci.as_of,
           COALESCE(sum(ci.price_usd * ci.quantity) FILTER (WHERE ci.unit = 'usd_per_hour'), 0)::double precision
               AS usd_per_hour,
           jsonb_agg(jsonb_build_object('component', ci.component, 'price_usd', ci.price_usd,
                                        'quantity', ci.quantity, 'source', ci.source) ORDER BY ci.component)
               FILTER (WHERE ci.unit = 'usd_per_hour') AS components
    FROM cost_inputs ci
    WHERE ci.provider = tr.provider
      AND ci.as_of = (SELECT max(c.as_of) FROM cost_inputs c
                      WHERE c.provider = tr.provider AND c.as_of <= (tr.started_at AT TIME ZONE 'UTC')::date)
    GROUP BY ci.as_of
) p ON true;
