-- v_east_west: one row per target run with East-West results, every probe side by side.
-- started_at (the target run's start) is the time column for Grafana. Definitions: docs/metrics.md.
-- UDP loss is lost over sent packets summed over the samples (also for rows loaded before the
-- loader pooled it, whose loss_pct is a mean of per-sample percentages); latency percentiles are
-- pooled over every round trip of every sample by the workload.
DROP VIEW IF EXISTS v_east_west CASCADE;
CREATE VIEW v_east_west AS
SELECT
    tr.run_id,
    tr.target_run_id,
    tr.target,
    tr.provider,
    tr.kind,
    tr.started_at,
    min(ew.client_node)                                              AS client_node,
    min(ew.server_node)                                              AS server_node,
    bool_and(ew.cross_node)                                          AS cross_node,
    min(ew.path)                                                     AS path,
    min(ew.path_reason)                                              AS path_reason,
    ARRAY(SELECT DISTINCT f FROM ew_results x, unnest(x.flags) AS f
          WHERE x.target_run_id = tr.target_run_id ORDER BY f)       AS flags,
    max(ew.throughput_gbps)           FILTER (WHERE ew.probe = 'tcp')         AS tcp_gbps,
    max(ew.throughput_ci95_low_gbps)  FILTER (WHERE ew.probe = 'tcp')         AS tcp_ci95_low_gbps,
    max(ew.throughput_ci95_high_gbps) FILTER (WHERE ew.probe = 'tcp')         AS tcp_ci95_high_gbps,
    max(ew.samples)                   FILTER (WHERE ew.probe = 'tcp')         AS tcp_samples,
    max(ew.retransmits)               FILTER (WHERE ew.probe = 'tcp')         AS tcp_retransmits,
    max(ew.mean_rtt_ms)               FILTER (WHERE ew.probe = 'tcp')         AS tcp_rtt_ms,
    max(ew.throughput_gbps)           FILTER (WHERE ew.probe = 'tcp_reverse') AS tcp_reverse_gbps,
    max(ew.throughput_ci95_low_gbps)  FILTER (WHERE ew.probe = 'tcp_reverse') AS tcp_reverse_ci95_low_gbps,
    max(ew.throughput_ci95_high_gbps) FILTER (WHERE ew.probe = 'tcp_reverse') AS tcp_reverse_ci95_high_gbps,
    max(ew.retransmits)               FILTER (WHERE ew.probe = 'tcp_reverse') AS tcp_reverse_retransmits,
    max(ew.mean_rtt_ms)               FILTER (WHERE ew.probe = 'tcp_reverse') AS tcp_reverse_rtt_ms,
    max(ew.target_rate_bps)           FILTER (WHERE ew.probe = 'udp')         AS udp_target_rate_bps,
    max(ew.throughput_gbps)           FILTER (WHERE ew.probe = 'udp')         AS udp_gbps,
    max(ew.jitter_ms)                 FILTER (WHERE ew.probe = 'udp')         AS udp_jitter_ms,
    max(coalesce(100.0 * ew.lost_packets / nullif(ew.packets, 0), ew.loss_pct))
                                      FILTER (WHERE ew.probe = 'udp')         AS udp_loss_pct,
    max(ew.latency_p50_ms)            FILTER (WHERE ew.probe = 'latency')     AS latency_p50_ms,
    max(ew.latency_p99_ms)            FILTER (WHERE ew.probe = 'latency')     AS latency_p99_ms,
    max(ew.round_trips)               FILTER (WHERE ew.probe = 'latency')     AS latency_round_trips,
    coalesce(array_agg(ew.probe ORDER BY ew.probe) FILTER (WHERE ew.error IS NOT NULL), '{}')
                                                                     AS failed_probes,
    string_agg(ew.probe || ': ' || ew.error, '; ' ORDER BY ew.probe) AS errors,
    max(ew.lost_packets)              FILTER (WHERE ew.probe = 'udp')         AS udp_lost_packets,
    max(ew.packets)                   FILTER (WHERE ew.probe = 'udp')         AS udp_packets
FROM target_runs tr
JOIN ew_results ew ON ew.target_run_id = tr.target_run_id
GROUP BY tr.run_id, tr.target_run_id, tr.target, tr.provider, tr.kind, tr.started_at;
