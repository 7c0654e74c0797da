-- Telemetry per scenario window (docs/telemetry.md): resource usage and vLLM's histograms are
-- measured over each scenario's measured part (after its warm-up and TCP probe), no longer over
-- the whole North-South step.
--   scenario: the ns_summaries scenario the row's window belongs to; NULL for rows loaded from
--   documents written before per-scenario telemetry, whose window was the whole step.

ALTER TABLE resource_usage ADD COLUMN scenario text;
ALTER TABLE resource_usage DROP CONSTRAINT resource_usage_pkey;
CREATE UNIQUE INDEX resource_usage_window_key
    ON resource_usage (target_run_id, (coalesce(scenario, '')), source, component, metric);

ALTER TABLE server_histograms ADD COLUMN scenario text;
ALTER TABLE server_histograms DROP CONSTRAINT server_histograms_pkey;
ALTER TABLE server_histograms DROP CONSTRAINT server_histograms_target_run_id_kind_key;
CREATE UNIQUE INDEX server_histograms_window_metric_key
    ON server_histograms (target_run_id, (coalesce(scenario, '')), metric);
CREATE UNIQUE INDEX server_histograms_window_kind_key
    ON server_histograms (target_run_id, (coalesce(scenario, '')), kind);
