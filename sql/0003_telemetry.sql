-- Telemetry of the North-South step (docs/telemetry.md) and the identity of the ingested corpus.

-- What the workload used while the load ran: one row per (source, component, metric), summarized
-- over the samples of the benchmark window.
--   source psutil:     the local target's processes, sampled by the benchmark client; components
--                      are process groups (vllm, raylet, ray-gcs, serve-replica, ..., total, host,
--                      client).
--   source prometheus: a cluster's Prometheus; components are containers.
-- Units: cpu_percent in percent of one core (100 = one busy core); *_bytes in bytes;
-- gpu_util_percent in percent of the GPU; processes a count.
CREATE TABLE resource_usage (
    target_run_id bigint NOT NULL REFERENCES target_runs (target_run_id) ON DELETE CASCADE,
    source        text NOT NULL,
    component     text NOT NULL,
    metric        text NOT NULL,
    unit          text NOT NULL,
    min_value     double precision,
    mean_value    double precision,
    max_value     double precision,
    samples       integer NOT NULL CHECK (samples >= 0),  -- 0: the series existed but had no points
    window_start  timestamptz,
    window_end    timestamptz,
    PRIMARY KEY (target_run_id, source, component, metric)
);

-- vLLM's own latency histograms over the North-South step: the difference of two scrapes of its
-- /metrics (before and after), so exactly the requests the step sent (warm-up and every scenario
-- included). Quantiles are interpolated within buckets, like PromQL's histogram_quantile.
CREATE TABLE server_histograms (
    target_run_id bigint NOT NULL REFERENCES target_runs (target_run_id) ON DELETE CASCADE,
    metric        text NOT NULL,                  -- the server's name, e.g. vllm:time_to_first_token_seconds
    kind          text NOT NULL CHECK (kind IN ('ttft', 'itl', 'tpot', 'e2e')),
    unit          text NOT NULL DEFAULT 'seconds',  -- of the bucket bounds and of sum
    buckets       jsonb NOT NULL,                 -- [[le, cumulative count], ..., ["+Inf", count]]
    sum           double precision NOT NULL,
    count         double precision NOT NULL,
    mean_ms       double precision,
    p50_ms        double precision,
    p90_ms        double precision,
    p95_ms        double precision,
    p99_ms        double precision,
    source_url    text,
    PRIMARY KEY (target_run_id, metric),
    UNIQUE (target_run_id, kind)
);

-- The corpus an ingest step posted: CORPUS_VERSION when it is exactly the shipped corpus, else
-- custom-<hash prefix>; the SHA-256 over its files' paths and bytes; its size.
ALTER TABLE ingest_results
    ADD COLUMN corpus_version   text,
    ADD COLUMN corpus_sha256    text,
    ADD COLUMN corpus_documents integer,
    ADD COLUMN corpus_bytes     bigint;
