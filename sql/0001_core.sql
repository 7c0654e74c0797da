-- Core schema of the results store: runs, per-target runs, and the results of every step.
-- Append-only: change the schema with a new numbered migration, never by editing this file.

CREATE TABLE runs (
    run_id        text PRIMARY KEY,               -- the Airflow DAG run id (or a CLI-made id)
    dag_id        text NOT NULL,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    run_type      text,                           -- scheduled | manual | ...
    params        jsonb NOT NULL DEFAULT '{}'::jsonb,
    git_revision  text
);

-- One row per (run, target): the environment fingerprint says what exactly was measured.
CREATE TABLE target_runs (
    target_run_id bigserial PRIMARY KEY,
    run_id        text NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    target        text NOT NULL,
    kind          text NOT NULL,                  -- local | kubernetes
    provider      text NOT NULL,                  -- local | akamai-lke | aws-eks | gcp-gke | ...
    region        text,
    model_id      text,
    status        text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed')),
    failed_steps  text[] NOT NULL DEFAULT '{}',
    error         text,
    fingerprint   jsonb NOT NULL DEFAULT '{}'::jsonb,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    UNIQUE (run_id, target)
);

-- Raw north-south request records (loaded in bulk with COPY). Times in ms from the scenario start.
CREATE TABLE ns_requests (
    target_run_id     bigint NOT NULL REFERENCES target_runs (target_run_id) ON DELETE CASCADE,
    scenario          text NOT NULL,
    idx               integer NOT NULL,
    warmup            boolean NOT NULL,
    prompt_id         text,
    t_scheduled_ms    double precision,
    t_sent_ms         double precision,
    t_first_byte_ms   double precision,
    t_first_token_ms  double precision,
    t_end_ms          double precision,
    ttft_ms           double precision,
    e2e_ms            double precision,
    tpot_ms           double precision,
    output_tokens     integer,
    output_tokens_source text,
    token_events      integer,
    http_status       integer,
    request_id        text,
    replica_id        text,
    error_code        text,
    server_error_code text,
    error_message     text,
    itl_ms            double precision[],
    server_timings    jsonb,
    PRIMARY KEY (target_run_id, scenario, idx)
);

-- One summary per scenario (a load level); the headline scenario feeds the scorecard.
CREATE TABLE ns_summaries (
    target_run_id        bigint NOT NULL REFERENCES target_runs (target_run_id) ON DELETE CASCADE,
    scenario             text NOT NULL,
    headline             boolean NOT NULL DEFAULT true,
    started_at           timestamptz NOT NULL,
    strategy             jsonb NOT NULL,
    requests             integer NOT NULL,
    completed            integer NOT NULL,
    errored              integer NOT NULL,
    error_rate           double precision NOT NULL,
    wall_time_s          double precision NOT NULL,
    output_tokens        bigint NOT NULL,
    output_tokens_per_s  double precision NOT NULL,
    requests_per_s       double precision NOT NULL,
    ttft_p50_ms double precision, ttft_p90_ms double precision, ttft_p95_ms double precision,
    ttft_p99_ms double precision, ttft_mean_ms double precision,
    e2e_p50_ms double precision, e2e_p90_ms double precision, e2e_p95_ms double precision,
    e2e_p99_ms double precision, e2e_mean_ms double precision,
    tpot_p50_ms double precision, tpot_p90_ms double precision, tpot_p95_ms double precision,
    tpot_p99_ms double precision, tpot_mean_ms double precision,
    itl_p50_ms double precision, itl_p90_ms double precision, itl_p95_ms double precision,
    itl_p99_ms double precision, itl_mean_ms double precision,
    slo_attainment       double precision,
    goodput_rps          double precision,
    valid                boolean NOT NULL,
    invalid_reason       text,
    summary              jsonb NOT NULL,
    PRIMARY KEY (target_run_id, scenario)
);

CREATE TABLE ew_results (
    target_run_id     bigint NOT NULL REFERENCES target_runs (target_run_id) ON DELETE CASCADE,
    probe             text NOT NULL,              -- tcp | tcp_reverse | ...
    client_node       text NOT NULL,
    server_node       text NOT NULL,
    cross_node        boolean NOT NULL,
    path              text NOT NULL,              -- loopback | netns-veth | pod-network
    flags             text[] NOT NULL DEFAULT '{}',
    samples           integer NOT NULL,
    throughput_gbps   double precision,
    throughput_ci95_low_gbps  double precision,
    throughput_ci95_high_gbps double precision,
    retransmits       double precision,
    mean_rtt_ms       double precision,
    detail            jsonb NOT NULL,
    PRIMARY KEY (target_run_id, probe)
);

CREATE TABLE ingest_results (
    target_run_id     bigint PRIMARY KEY REFERENCES target_runs (target_run_id) ON DELETE CASCADE,
    files             integer NOT NULL,
    documents         integer NOT NULL,
    chunks            integer NOT NULL,
    bytes             bigint NOT NULL,
    seconds           double precision NOT NULL,
    chunks_per_s      double precision,
    convert_split_ms  double precision,
    embed_ms          double precision,
    write_ms          double precision,
    store_documents   integer
);

-- Priced inputs of the cost model, dated: a run is priced with the newest as_of not after its start.
CREATE TABLE cost_inputs (
    provider      text NOT NULL,
    as_of         date NOT NULL,
    component     text NOT NULL,                  -- gpu_node | cpu_node | control_plane | load_balancer | ...
    unit          text NOT NULL CHECK (unit IN ('usd_per_hour', 'usd_per_gb_month', 'usd_per_gb')),
    price_usd     numeric(12, 6) NOT NULL CHECK (price_usd >= 0),
    quantity      numeric(12, 3) NOT NULL DEFAULT 1 CHECK (quantity >= 0),
    source        text,
    PRIMARY KEY (provider, as_of, component)
);

CREATE INDEX target_runs_target_started ON target_runs (target, started_at DESC);
