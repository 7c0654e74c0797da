"""East-West results in PostgreSQL: migration 0002, one ew_results row per probe (tcp, tcp_reverse,
udp, latency), failed probes as rows, reloading, and the v_east_west view."""

from __future__ import annotations

import copy

import pytest
import sqlalchemy as sa

from ragbench import db, loader
from workload.eastwest import latency
from workload.eastwest.iperf import TcpSample, UdpSample, mean_ci95, summarize_samples, summarize_udp
from workload.eastwest.latency import LatencySample
from workload.eastwest.probe import placement
from workload.results import result_document

pytestmark = pytest.mark.integration

RUN_ID = "manual__2026-11-27T11:00:00+00:00"
STARTED = "2026-11-27T11:00:00.000+00:00"
NEW_COLUMNS = {"jitter_ms", "loss_pct", "lost_packets", "packets", "target_rate_bps", "latency_p50_ms",
               "latency_p50_ci95_low_ms", "latency_p50_ci95_high_ms", "latency_p99_ms", "latency_p99_ci95_low_ms",
               "latency_p99_ci95_high_ms", "round_trips", "path_reason", "error"}


@pytest.fixture
def migrated(engine):
    db.migrate(engine)
    return engine


def lat(p50: float, tail: float) -> LatencySample:
    """1,000 round trips: 990 at ``p50`` and a 1 % tail at ``tail``."""
    return latency.summarize_round_trips([p50] * 990 + [tail] * 10, 32, False, 0.2)


LATS = [lat(0.10, 0.30), lat(0.12, 0.36), lat(0.14, 0.33)]
POOLED = [t for s in LATS for t in s.times_ms]


def ew_data(**overrides) -> dict:
    tcp = [TcpSample(9.0, 1, 0.05, 3.0, 1, False), TcpSample(10.0, 2, 0.06, 3.0, 1, False),
           TcpSample(11.0, 3, 0.07, 3.0, 1, False)]
    rev = [TcpSample(8.0, 0, None, 3.0, 1, True), TcpSample(8.0, 2, None, 3.0, 1, True),
           TcpSample(8.0, 4, None, 3.0, 1, True)]
    udp = [UdpSample(0.099, 0.1, 0.02, 0.1, 10, 10000, 3.0, 10**8, 1448),
           UdpSample(0.098, 0.1, 0.04, 0.3, 30, 10000, 3.0, 10**8, 1448),
           UdpSample(0.097, 0.1, 0.03, 0.5, 5, 1000, 3.0, 10**8, 1448)]  # a short sample
    lats = LATS
    data = placement("vm", "vm", "loopback") | {
        "path": "netns-veth", "path_reason": None, "duration_s": 3.0, "streams": 1, "samples": 3,
        "probes": ["tcp", "tcp_reverse", "udp", "latency"], "udp_rate": "100M", "errors": {},
        "tcp": summarize_samples(tcp), "tcp_reverse": summarize_samples(rev), "udp": summarize_udp(udp, "100M"),
        "latency": latency.summarize_samples(lats)}
    return data | overrides


def load(engine, data: dict, target: str = "local", kind: str = "local") -> int:
    loader.record_run(engine, RUN_ID, "ragbench", STARTED, "manual", {}, None)
    trid = loader.upsert_target_run(engine, RUN_ID, target, kind, target, None, None, {}, STARTED)
    loader.load_document(engine, trid, result_document("east-west", data, started_at=STARTED))
    loader.finish_target_run(engine, trid, [], None)
    return trid


def rows(engine, trid: int) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r["probe"]: dict(r) for r in conn.execute(sa.text(
            "SELECT * FROM ew_results WHERE target_run_id = :id"), {"id": trid}).mappings()}


def view(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r["target"]: dict(r) for r in conn.execute(sa.text("SELECT * FROM v_east_west")).mappings()}


def test_migration_adds_the_columns(migrated):
    with migrated.connect() as conn:
        cols = {r[0] for r in conn.execute(sa.text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'ew_results'"))}
        versions = {r[0] for r in conn.execute(sa.text("SELECT version FROM schema_migrations"))}
    assert NEW_COLUMNS <= cols
    assert "0002" in versions
    assert db.migrate(migrated) == []  # applied once


def test_every_probe_is_a_row(migrated):
    trid = load(migrated, ew_data())
    r = rows(migrated, trid)
    assert set(r) == {"tcp", "tcp_reverse", "udp", "latency"}
    for row in r.values():
        assert (row["client_node"], row["server_node"], row["cross_node"], row["path"], row["flags"]) == \
            ("vm", "vm", False, "netns-veth", [])
        assert row["samples"] == 3 and row["error"] is None
    tcp = r["tcp"]
    # [9, 10, 11]: mean 10, stdev 1, half 4.303 / sqrt(3) = 2.48434
    assert tcp["throughput_gbps"] == pytest.approx(10.0)
    assert tcp["throughput_ci95_high_gbps"] == pytest.approx(12.48434, abs=1e-5)
    assert tcp["retransmits"] == pytest.approx(2.0)
    assert tcp["mean_rtt_ms"] == pytest.approx(0.06)
    assert tcp["jitter_ms"] is None and tcp["latency_p50_ms"] is None
    rev = r["tcp_reverse"]
    assert rev["throughput_gbps"] == pytest.approx(8.0) and rev["throughput_ci95_low_gbps"] == pytest.approx(8.0)
    assert rev["retransmits"] == pytest.approx(2.0)
    assert rev["mean_rtt_ms"] is None  # not measured with -R
    udp = r["udp"]
    assert udp["throughput_gbps"] == pytest.approx(0.098)
    assert udp["jitter_ms"] == pytest.approx(0.03)  # [0.02, 0.04, 0.03]
    # 45 lost of 21,000 packets, not the mean of [0.1, 0.3, 0.5] %
    assert udp["loss_pct"] == pytest.approx(100 * 45 / 21000)
    assert (udp["lost_packets"], udp["packets"], udp["target_rate_bps"]) == (45, 21000, 100_000_000)
    assert udp["retransmits"] is None and udp["mean_rtt_ms"] is None
    assert udp["detail"]["target_rate"] == "100M"
    la = r["latency"]
    assert la["throughput_gbps"] is None
    # percentiles of the 3,000 round trips pooled (the per-sample p99s average 0.33 ms; pooled, the
    # 1 % tails are 30 of 3,000 round trips and p99 sits at their edge)
    assert la["latency_p50_ms"] == pytest.approx(0.12) == latency.percentile(POOLED, 50)
    assert la["latency_p50_ci95_low_ms"] == pytest.approx(0.12) == la["latency_p50_ci95_high_ms"]
    assert la["latency_p99_ms"] == pytest.approx(latency.percentile(POOLED, 99)) == pytest.approx(0.1416)
    assert la["latency_p99_ci95_low_ms"] <= la["latency_p99_ms"] <= la["latency_p99_ci95_high_ms"]
    assert la["round_trips"] == 3000
    assert len(la["detail"]["samples"]) == 3


def test_v_east_west(migrated):
    load(migrated, ew_data())
    v = view(migrated)["local"]
    assert v["run_id"] == RUN_ID
    assert v["started_at"].isoformat() == "2026-11-27T11:00:00+00:00"
    assert (v["client_node"], v["server_node"], v["cross_node"], v["path"], v["path_reason"], v["flags"]) == \
        ("vm", "vm", False, "netns-veth", None, [])
    assert v["tcp_gbps"] == pytest.approx(10.0)
    assert v["tcp_ci95_low_gbps"] == pytest.approx(10 - 2.48434, abs=1e-5)
    assert (v["tcp_samples"], v["tcp_retransmits"], v["tcp_rtt_ms"]) == (3, pytest.approx(2.0), pytest.approx(0.06))
    assert v["tcp_reverse_gbps"] == pytest.approx(8.0) and v["tcp_reverse_rtt_ms"] is None
    assert (v["udp_gbps"], v["udp_jitter_ms"], v["udp_loss_pct"]) == \
        (pytest.approx(0.098), pytest.approx(0.03), pytest.approx(100 * 45 / 21000))
    assert (v["udp_lost_packets"], v["udp_packets"]) == (45, 21000)
    assert v["udp_target_rate_bps"] == 100_000_000
    assert (v["latency_p50_ms"], v["latency_p99_ms"], v["latency_round_trips"]) == \
        (pytest.approx(0.12), pytest.approx(0.1416), 3000)
    assert v["failed_probes"] == [] and v["errors"] is None


def test_reloading_replaces_the_rows(migrated):
    data = ew_data()
    trid = load(migrated, data)
    first = rows(migrated, trid)
    assert load(migrated, copy.deepcopy(data)) == trid
    assert rows(migrated, trid) == first
    # a retried step that measured fewer probes leaves no stale rows behind
    fewer = {k: v for k, v in data.items() if k not in ("udp", "latency")}
    load(migrated, fewer)
    assert set(rows(migrated, trid)) == {"tcp", "tcp_reverse"}


def test_a_failed_probe_is_a_recorded_row(migrated):
    message = ("unable to connect to server: Connection refused (nothing accepts connections on 10.0.0.2:5201: "
               "is the iperf3 server running and the port right?)")
    data = ew_data(errors={"udp": message}, flags=["udp_failed"])
    del data["udp"]
    trid = load(migrated, data)
    r = rows(migrated, trid)
    udp = r["udp"]
    assert (udp["error"], udp["samples"], udp["throughput_gbps"], udp["jitter_ms"]) == (message, 0, None, None)
    assert udp["detail"] == {"error": message}
    assert udp["flags"] == ["udp_failed"]
    assert r["tcp"]["error"] is None
    v = view(migrated)["local"]
    assert v["failed_probes"] == ["udp"]
    assert v["errors"] == f"udp: {message}"
    assert v["flags"] == ["udp_failed"]
    assert v["udp_gbps"] is None and v["tcp_gbps"] == pytest.approx(10.0)


def test_cluster_same_node_and_cross_node(migrated):
    same = ew_data(**placement("node-a", "node-a", "pod-network"))
    load(migrated, same, target="aws-eks", kind="kubernetes")
    cross = ew_data(**placement("node-a", "node-b", "pod-network"))
    load(migrated, cross, target="gcp-gke", kind="kubernetes")
    v = view(migrated)
    assert (v["aws-eks"]["cross_node"], v["aws-eks"]["flags"]) == (False, ["same_node"])
    assert (v["gcp-gke"]["cross_node"], v["gcp-gke"]["flags"]) == (True, [])
    assert (v["gcp-gke"]["client_node"], v["gcp-gke"]["server_node"]) == ("node-a", "node-b")


def test_a_tcp_only_document_still_loads(migrated):
    # what run_remote writes today: placement, tcp and tcp_reverse; no errors, no path_reason
    data = {k: v for k, v in ew_data(**placement("node-a", "node-b", "pod-network")).items()
            if k not in ("udp", "latency", "errors", "path_reason", "probes", "udp_rate", "samples")}
    trid = load(migrated, data, target="akamai-lke", kind="kubernetes")
    assert set(rows(migrated, trid)) == {"tcp", "tcp_reverse"}
    v = view(migrated)["akamai-lke"]
    assert v["tcp_gbps"] == pytest.approx(10.0)
    assert v["udp_jitter_ms"] is None and v["latency_p50_ms"] is None and v["path_reason"] is None


def test_a_document_of_per_sample_means_still_loads_and_the_view_pools_udp_loss(migrated):
    # written before pooling: latency percentiles and UDP loss as means over samples
    data = ew_data()
    data["latency"]["p99_ms"] = mean_ci95([0.30, 0.36, 0.33])
    data["udp"]["loss_pct"] = mean_ci95([0.1, 0.3, 0.5])
    trid = load(migrated, data)
    r = rows(migrated, trid)
    assert r["latency"]["latency_p99_ms"] == pytest.approx(0.33)
    assert r["udp"]["loss_pct"] == pytest.approx(0.3)  # stored as the document says
    assert view(migrated)["local"]["udp_loss_pct"] == pytest.approx(100 * 45 / 21000)  # from the packets


def test_loopback_reason_and_scorecard(migrated):
    data = ew_data(path="loopback", path_reason="not running as root (creating network namespaces needs "
                                                "CAP_SYS_ADMIN)")
    load(migrated, data)
    v = view(migrated)["local"]
    assert v["path"] == "loopback" and v["path_reason"].startswith("not running as root")
    with migrated.connect() as conn:
        card = conn.execute(sa.text("SELECT east_west_gbps, east_west_cross_node FROM v_scorecard "
                                    "WHERE run_id = :r"), {"r": RUN_ID}).mappings().one()
    assert card["east_west_gbps"] == pytest.approx(10.0)  # the tcp row, as before
    assert card["east_west_cross_node"] is False
