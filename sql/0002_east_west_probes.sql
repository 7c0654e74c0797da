-- East-West beyond TCP: UDP jitter and loss (probe 'udp'), the request/response latency probe
-- (probe 'latency'), why the local target used the path it did, and failed probes recorded as
-- rows (error set, samples 0, figures NULL). Definitions: docs/metrics.md, "East-West".
ALTER TABLE ew_results
    ADD COLUMN jitter_ms                double precision,  -- udp: mean over samples of end.sum.jitter_ms
    ADD COLUMN loss_pct                 double precision,  -- udp: mean over samples of end.sum.lost_percent
    ADD COLUMN lost_packets             bigint,            -- udp: summed over samples
    ADD COLUMN packets                  bigint,            -- udp: summed over samples
    ADD COLUMN target_rate_bps          bigint,            -- udp: iperf3 -b
    ADD COLUMN latency_p50_ms           double precision,  -- latency: mean over samples of each sample's p50
    ADD COLUMN latency_p50_ci95_low_ms  double precision,
    ADD COLUMN latency_p50_ci95_high_ms double precision,
    ADD COLUMN latency_p99_ms           double precision,  -- latency: mean over samples of each sample's p99
    ADD COLUMN latency_p99_ci95_low_ms  double precision,
    ADD COLUMN latency_p99_ci95_high_ms double precision,
    ADD COLUMN round_trips              integer,           -- latency: timed round trips over all samples
    ADD COLUMN path_reason              text,              -- local target: why this path (e.g. not root)
    ADD COLUMN error                    text;              -- the probe failed: iperf3's or the probe's message

COMMENT ON COLUMN ew_results.probe IS 'tcp | tcp_reverse | udp | latency';
COMMENT ON COLUMN ew_results.error IS 'set when the probe failed; its figures are then NULL and samples 0';
