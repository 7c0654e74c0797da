"""East-West: iperf3 TCP and UDP JSON parsing, confidence intervals, errors (iperf3's own, refused,
busy with retries, timeouts), the latency probe, the netns path's setup and cleanup, node placement."""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import socket
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from workload.eastwest import iperf, latency, netns, probe
from workload.eastwest.iperf import (IperfError, TcpSample, UdpSample, mean_ci95, parse_rate, parse_tcp, parse_udp,
                                     summarize_samples, summarize_udp)
from workload.eastwest.latency import LatencyError, LatencySample
from workload.errors import StepError

pytestmark = pytest.mark.unit

FIXTURE = Path(__file__).parent / "fixtures" / "iperf3_tcp.json"
UDP_FIXTURE = Path(__file__).parent / "fixtures" / "iperf3_udp.json"


@pytest.fixture
def report() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.fixture
def udp_report() -> dict:
    return json.loads(UDP_FIXTURE.read_text())


# --------------------------------------------------------------------------- parse_tcp


def test_parse_tcp_report(report):
    s = parse_tcp(report)
    assert s.throughput_gbps == pytest.approx(18.75)  # sum_received 18_750_000_000 bit/s
    assert s.retransmits == 7  # sum_sent.retransmits (3 + 4)
    assert s.mean_rtt_ms == pytest.approx(0.05)  # mean of 42 and 58 us = 50 us
    assert s.duration_s == pytest.approx(3.000412)  # sum_received.seconds
    assert s.streams == 2  # start.test_start.num_streams
    assert s.reverse is False


def test_parse_tcp_reverse_flag_is_recorded(report):
    assert parse_tcp(report, reverse=True).reverse is True


def test_parse_tcp_uses_received_not_sent_throughput(report):
    report["end"]["sum_sent"]["bits_per_second"] = 99e9
    assert parse_tcp(report).throughput_gbps == pytest.approx(18.75)


def test_parse_tcp_fallbacks(report):
    r = copy.deepcopy(report)
    del r["start"]["test_start"]["num_streams"]
    del r["end"]["sum_received"]["seconds"]
    del r["end"]["sum_sent"]["retransmits"]  # e.g. iperf3 on macOS reports none
    for stream in r["end"]["streams"]:
        del stream["sender"]["mean_rtt"]
    s = parse_tcp(r)
    assert s.streams == 2  # counted from end.streams
    assert s.duration_s == 3.0  # test_start.duration
    assert s.retransmits is None
    assert s.mean_rtt_ms is None


@pytest.mark.parametrize("message", ["the server is busy running a test. try again later",
                                     "error - the server is BUSY running a test"])
def test_parse_tcp_busy_server(message):
    with pytest.raises(IperfError) as info:
        parse_tcp({"error": message})
    assert info.value.busy is True
    assert str(info.value) == message


def test_parse_tcp_other_error_is_not_busy():
    with pytest.raises(IperfError) as info:
        parse_tcp({"start": {}, "error": "unable to connect to server: Connection refused"})
    assert info.value.busy is False
    assert "Connection refused" in str(info.value)


@pytest.mark.parametrize("mutate", [
    lambda r: r["end"].pop("sum_received"),
    lambda r: r["end"]["sum_received"].__setitem__("bits_per_second", 0),
    lambda r: r.pop("end"),
])
def test_parse_tcp_without_received_throughput(report, mutate):
    mutate(report)
    with pytest.raises(IperfError, match="no received throughput") as info:
        parse_tcp(report)
    assert info.value.busy is False


# --------------------------------------------------------------------------- mean_ci95


def test_mean_ci95_three_values():
    out = mean_ci95([1.0, 2.0, 3.0])
    # mean 2, sample stdev sqrt((1 + 0 + 1) / 2) = 1, t(df=2) = 4.303, half = 4.303 / sqrt(3) = 2.48434
    half = 4.303 * 1 / math.sqrt(3)
    assert out["n"] == 3
    assert out["mean"] == 2.0
    assert out["stdev"] == 1.0
    assert out["ci95_low"] == pytest.approx(2 - half)
    assert out["ci95_high"] == pytest.approx(2 + half)
    assert out["ci95_high"] == pytest.approx(4.48434, abs=1e-5)


def test_mean_ci95_two_values():
    out = mean_ci95([10.0, 12.0])
    # mean 11, stdev sqrt(2) , t(df=1) = 12.706, half = 12.706 * sqrt(2) / sqrt(2) = 12.706
    assert out["stdev"] == pytest.approx(math.sqrt(2))
    assert (out["ci95_low"], out["ci95_high"]) == (pytest.approx(11 - 12.706), pytest.approx(11 + 12.706))


def test_mean_ci95_uses_the_nearest_lower_tabulated_df():
    out = mean_ci95([1.0, 3.0] * 6)  # n = 12, df = 11 -> the table's df 10 (t = 2.228)
    # mean 2, stdev sqrt(12 / 11); half = 2.228 * sqrt(12/11) / sqrt(12) = 2.228 / sqrt(11)
    assert out["mean"] == 2.0
    assert out["ci95_high"] - out["mean"] == pytest.approx(2.228 / math.sqrt(11))
    big = mean_ci95([1.0, 3.0] * 20)  # n = 40, df = 39 -> df 30 (t = 2.042)
    assert big["ci95_high"] - big["mean"] == pytest.approx(2.042 * math.sqrt(40 / 39) / math.sqrt(40))


def test_mean_ci95_identical_values_have_zero_width():
    out = mean_ci95([5.0, 5.0, 5.0])
    assert out == {"n": 3, "mean": 5.0, "ci95_low": 5.0, "ci95_high": 5.0, "stdev": 0.0}


def test_mean_ci95_one_and_zero_values():
    assert mean_ci95([4.0]) == {"n": 1, "mean": 4.0, "ci95_low": None, "ci95_high": None, "stdev": None}
    assert mean_ci95([]) == {"n": 0, "mean": None, "ci95_low": None, "ci95_high": None, "stdev": None}


def test_summarize_samples():
    samples = [TcpSample(9.0, 0, 0.05, 3.0, 1, False), TcpSample(10.0, 3, None, 3.0, 1, False),
               TcpSample(11.0, None, None, 3.0, 1, False)]
    out = summarize_samples(samples)
    assert out["samples"][0] == {"throughput_gbps": 9.0, "retransmits": 0, "mean_rtt_ms": 0.05,
                                 "duration_s": 3.0, "streams": 1, "reverse": False}
    assert out["throughput_gbps"]["n"] == 3
    assert out["throughput_gbps"]["mean"] == 10.0
    assert out["throughput_gbps"]["ci95_low"] == pytest.approx(10 - 4.303 / math.sqrt(3))
    # retransmits: the None sample is left out -> [0, 3], mean 1.5, stdev sqrt(4.5), half 12.706 * 1.5
    assert out["retransmits"]["n"] == 2
    assert out["retransmits"]["mean"] == 1.5
    assert out["retransmits"]["ci95_high"] == pytest.approx(1.5 + 12.706 * 1.5)
    assert out["mean_rtt_ms"] == {"n": 1, "mean": 0.05, "ci95_low": None, "ci95_high": None, "stdev": None}
    json.dumps(out)  # goes into the result document as is


# --------------------------------------------------------------------------- run_client with a fake iperf3


@pytest.fixture
def fake_iperf3(tmp_path, monkeypatch, report):
    """An `iperf3` on PATH that answers `busy` for the first N calls, then the fixture report."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "report.json").write_text(json.dumps(report))
    (tmp_path / "busy_calls").write_text("0")

    def install(busy_calls: int = 0, output: str | None = None, answer: dict | None = None, hang: bool = False):
        (tmp_path / "busy_calls").write_text(str(busy_calls))
        if answer is not None:
            (tmp_path / "report.json").write_text(json.dumps(answer))
        if hang:  # never answers (exec: the process the timeout kills is the one holding stdout)
            body = "exec sleep 30"
        elif output is not None:  # a fixed answer and exit code 1
            (tmp_path / "output").write_text(output)
            body = f"cat {tmp_path}/output; exit 1"
        else:
            body = (f'if [ "$n" -le "$(cat {tmp_path}/busy_calls)" ]; then '
                    "echo '{\"error\": \"the server is busy running a test. try again later\"}'; exit 1; fi\n"
                    f"cat {tmp_path}/report.json")
        script = bin_dir / "iperf3"
        script.write_text(
            "#!/bin/sh\n"
            f'echo "$@" >> {tmp_path}/calls\n'
            f"n=$(wc -l < {tmp_path}/calls)\n"
            f"{body}\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        return tmp_path / "calls"

    return install


def calls(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_run_client_passes_the_test_parameters(fake_iperf3):
    log = fake_iperf3()
    s = iperf.run_client("10.0.0.2", 5201, 2, 4, reverse=True, backoff_s=0)
    assert s.throughput_gbps == pytest.approx(18.75)
    assert s.reverse is True
    assert calls(log) == ["-c 10.0.0.2 -p 5201 -t 2 -P 4 --json -R"]


def test_run_client_retries_while_the_server_is_busy(fake_iperf3):
    log = fake_iperf3(busy_calls=2)
    s = iperf.run_client("10.0.0.2", 5201, 1, 1, reverse=False, retries=3, backoff_s=0)
    assert s.retransmits == 7
    assert len(calls(log)) == 3  # busy, busy, report


def test_run_client_gives_up_after_the_retries(fake_iperf3):
    log = fake_iperf3(busy_calls=99)
    with pytest.raises(IperfError, match="busy") as info:
        iperf.run_client("10.0.0.2", 5201, 1, 1, reverse=False, retries=2, backoff_s=0)
    assert info.value.busy is True
    assert len(calls(log)) == 3  # the first try and two retries


def test_run_client_does_not_retry_other_errors(fake_iperf3):
    log = fake_iperf3(output=json.dumps({"error": "unable to connect to server: Connection refused"}))
    with pytest.raises(IperfError, match="Connection refused"):
        iperf.run_client("10.0.0.2", 5201, 1, 1, reverse=False, retries=3, backoff_s=0)
    assert len(calls(log)) == 1


def test_run_client_without_json_output(fake_iperf3):
    fake_iperf3(output="iperf3: error - unable to connect")
    with pytest.raises(IperfError, match=r"iperf3 gave no JSON \(exit 1\): iperf3: error - unable to connect"):
        iperf.run_client("10.0.0.2", 5201, 1, 1, reverse=False, backoff_s=0)


def test_iperf3_missing_from_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(StepError) as info:
        iperf.iperf3_path()
    assert str(info.value) == iperf.IPERF3_MISSING


def test_run_remote_result(fake_iperf3):
    log = fake_iperf3()
    out = probe.run_remote("10.0.0.2", 5201, 1, 2, samples=2, client_node="node-a", server_node="node-b")
    assert (out["client_node"], out["server_node"], out["cross_node"], out["path"], out["flags"]) == \
        ("node-a", "node-b", True, "pod-network", [])
    assert out["duration_s"] == 1 and out["streams"] == 2
    assert out["tcp"]["throughput_gbps"]["n"] == 2
    assert out["tcp"]["throughput_gbps"]["mean"] == pytest.approx(18.75)
    assert out["tcp"]["throughput_gbps"]["stdev"] == 0.0
    assert [s["reverse"] for s in out["tcp_reverse"]["samples"]] == [True, True]
    lines = calls(log)
    assert len(lines) == 4  # 2 forward + 2 reverse samples
    assert sum(line.endswith("-R") for line in lines) == 2


def test_run_remote_turns_iperf_errors_into_step_errors(fake_iperf3):
    fake_iperf3(output=json.dumps({"error": "unable to connect to server: No route to host"}))
    with pytest.raises(StepError, match=r"^iperf3 against 10\.0\.0\.2:5201 failed: unable to connect"):
        probe.run_remote("10.0.0.2", 5201, 1, 1, samples=1, client_node="a", server_node="b")


# --------------------------------------------------------------------------- placement


def test_placement_cross_node():
    assert probe.placement("node-a", "node-b", "pod-network") == {
        "client_node": "node-a", "server_node": "node-b", "cross_node": True, "path": "pod-network", "flags": []}


def test_placement_same_node_is_flagged():
    out = probe.placement("node-a", "node-a", "pod-network")
    assert out["cross_node"] is False
    assert out["flags"] == ["same_node"]


def test_placement_loopback_is_not_flagged():
    out = probe.placement("laptop", "laptop", "loopback")
    assert out["cross_node"] is False
    assert out["flags"] == []


@pytest.mark.parametrize(("client", "server"), [("", "node-b"), ("node-a", ""), ("", "")])
def test_placement_requires_node_names(client, server):
    with pytest.raises(StepError, match="node names are required"):
        probe.placement(client, server, "pod-network")


# --------------------------------------------------------------------------- TCP details


def test_parse_tcp_reverse_zero_rtt_is_not_a_measurement(report):
    # With -R the sender is the server; iperf3 3.12 reports its RTT as 0, which means "not measured".
    for stream in report["end"]["streams"]:
        stream["sender"].update({"mean_rtt": 0, "min_rtt": 0, "max_rtt": 0})
    assert parse_tcp(report, reverse=True).mean_rtt_ms is None


@pytest.mark.parametrize(("message", "kind"), [
    ("the server is busy running a test. try again later", "busy"),
    ("unable to connect to server: Connection refused", "refused"),
    ("unable to connect to server - server may have stopped running or use a different port, firewall issue, "
     "etc.: Connection refused", "refused"),
    ("unable to connect to server: No route to host", "unreachable"),
    ("unable to connect to server: Connection timed out", "unreachable"),
    ("error - unable to resolve host 'nowhere': Name or service not known", "unreachable"),
    ("error - control socket has closed unexpectedly", "iperf3"),
])
def test_error_kinds(message, kind):
    assert iperf.error_kind(message) == kind
    with pytest.raises(IperfError) as info:
        parse_tcp({"error": message})
    assert info.value.kind == kind
    assert info.value.busy is (kind == "busy")
    assert info.value.refused is (kind == "refused")
    assert str(info.value) == message  # iperf3's own words, unchanged


# --------------------------------------------------------------------------- parse_udp


def test_parse_udp_report(udp_report):
    s = parse_udp(udp_report)
    # received: (258979 - 412) packets * 1448 bytes * 8 / 3.000412 s = 998276279.39 bit/s
    assert s.throughput_gbps == pytest.approx(374_405_016 * 8 / 3.000412 / 1e9)
    assert s.throughput_gbps == pytest.approx(0.998276279)
    # sent: 258979 * 1448 * 8 / 3.000087 = 999975246.05 bit/s
    assert s.sent_gbps == pytest.approx(0.999975246)
    assert s.jitter_ms == pytest.approx(0.02131)  # end.sum.jitter_ms
    assert s.loss_pct == pytest.approx(412 / 258979 * 100)  # end.sum.lost_percent = 0.15909 %
    assert (s.lost_packets, s.packets) == (412, 258979)
    assert s.duration_s == pytest.approx(3.000412)
    assert s.target_rate_bps == 1_000_000_000
    assert s.datagram_bytes == 1448
    assert s.reverse is False


def test_parse_udp_without_sum_received(udp_report):
    # iperf3 before 3.11 has only end.sum: its rate, and the receiver's jitter and loss
    del udp_report["end"]["sum_received"], udp_report["end"]["sum_sent"]
    udp_report["end"]["sum"]["jitter_ms"] = 0.5
    s = parse_udp(udp_report)
    assert s.throughput_gbps == pytest.approx(0.999975246)
    assert s.sent_gbps is None
    assert s.jitter_ms == 0.5
    assert s.loss_pct == pytest.approx(0.15908626)


def test_parse_udp_computes_loss_when_only_counts_are_given(udp_report):
    for key in ("sum", "sum_received"):
        del udp_report["end"][key]["lost_percent"]
    udp_report["end"]["sum"].update({"lost_packets": 50, "packets": 1000})
    assert parse_udp(udp_report).loss_pct == pytest.approx(5.0)


def test_parse_udp_all_lost_is_a_result_not_an_error(udp_report):
    # e.g. a network policy that drops UDP: the control connection works, no datagram arrives
    end = udp_report["end"]
    for key in ("sum", "sum_received"):
        end[key].update({"lost_packets": 258979, "lost_percent": 100, "jitter_ms": 0})
    end["sum_received"].update({"bytes": 0, "bits_per_second": 0})
    s = parse_udp(udp_report)
    assert (s.loss_pct, s.throughput_gbps, s.jitter_ms) == (100.0, 0.0, 0.0)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda r: r.update({"error": "the server is busy running a test. try again later"}), "busy"),
    (lambda r: r.__setitem__("end", {}), "no end.sum"),
    (lambda r: r.pop("end"), "no end.sum"),
    (lambda r: [r["end"][k].__setitem__("packets", 0) for k in ("sum", "sum_received")], "no packets"),
])
def test_parse_udp_errors(udp_report, mutate, message):
    mutate(udp_report)
    with pytest.raises(IperfError, match=message):
        parse_udp(udp_report)


@pytest.mark.parametrize(("rate", "bps"), [("100M", 100_000_000), ("1G", 10**9), ("1.5g", 1_500_000_000),
                                           ("500k", 500_000), ("2500", 2500), ("0", 0), (" 10M ", 10**7)])
def test_parse_rate(rate, bps):
    assert parse_rate(rate) == bps  # decimal units, as iperf3's -b


@pytest.mark.parametrize("rate", ["", "fast", "-1M", "10 M", "1Gb", "1e9", "M"])
def test_parse_rate_rejects(rate):
    with pytest.raises(StepError, match="bad UDP rate"):
        parse_rate(rate)


def test_summarize_udp():
    samples = [UdpSample(0.99, 1.0, 0.02, 0.1, 10, 10000, 3.0, 10**9, 1448),
               UdpSample(0.98, 1.0, 0.04, 0.3, 30, 10000, 3.0, 10**9, 1448),
               UdpSample(0.97, 1.0, 0.03, 0.2, 20, 10000, 3.0, 10**9, 1448)]
    out = summarize_udp(samples, "1G")
    assert out["target_rate"] == "1G" and out["target_rate_bps"] == 10**9
    # jitter [0.02, 0.04, 0.03]: mean 0.03, stdev 0.01, half = 4.303 * 0.01 / sqrt(3) = 0.024843
    assert out["jitter_ms"]["mean"] == pytest.approx(0.03)
    assert out["jitter_ms"]["stdev"] == pytest.approx(0.01)
    assert out["jitter_ms"]["ci95_high"] == pytest.approx(0.03 + 0.0248434, abs=1e-7)
    # loss: 60 lost of 30,000 packets, Wilson's interval around 0.2 %
    assert out["loss_pct"]["value"] == pytest.approx(0.2)
    assert out["loss_pct"]["ci95_low"] == pytest.approx(0.1554, abs=1e-4)
    assert out["loss_pct"]["ci95_high"] == pytest.approx(0.2574, abs=1e-4)
    assert (out["loss_pct"]["n"], out["loss_pct"]["packets"]) == (3, 30000)
    assert out["throughput_gbps"]["mean"] == pytest.approx(0.98)
    assert (out["lost_packets"], out["packets"]) == (60, 30000)
    assert out["samples"][1]["jitter_ms"] == 0.04
    json.dumps(out)


def test_udp_loss_is_lost_over_sent_packets_summed_not_a_mean_of_percentages():
    # a long sample losing 1 % and a short one losing nothing: 1,000 of 100,100 packets are lost
    samples = [UdpSample(0.99, 1.0, 0.02, 1.0, 1000, 100_000, 3.0, 10**9, 1448),
               UdpSample(0.99, 1.0, 0.02, 0.0, 0, 100, 3.0, 10**9, 1448)]
    loss = summarize_udp(samples, "1G")["loss_pct"]
    assert loss["value"] == pytest.approx(100 * 1000 / 100_100)  # 0.999 %, not the mean 0.5 %
    assert loss["ci95_low"] < loss["value"] < loss["ci95_high"]
    none_lost = summarize_udp([UdpSample(0.99, 1.0, 0.02, 0.0, 0, 5000, 3.0, 10**9, 1448)])["loss_pct"]
    assert none_lost["value"] == 0.0 and none_lost["ci95_low"] == 0.0 and 0 < none_lost["ci95_high"] < 0.1
    no_counts = summarize_udp([UdpSample(0.99, None, None, None, None, None, 3.0, None, None)])["loss_pct"]
    assert no_counts["value"] is None and no_counts["n"] == 0


# --------------------------------------------------------------------------- clients: UDP, refused, timeouts


def test_run_udp_client_passes_the_rate(fake_iperf3, udp_report):
    log = fake_iperf3(answer=udp_report)
    s = iperf.run_udp_client("10.0.0.2", 5201, 2, "1G", backoff_s=0)
    assert s.jitter_ms == pytest.approx(0.02131)
    assert calls(log) == ["-c 10.0.0.2 -p 5201 -u -b 1G -t 2 -P 1 --json"]


def test_run_udp_client_retries_while_busy(fake_iperf3, udp_report):
    log = fake_iperf3(busy_calls=1, answer=udp_report)
    assert iperf.run_udp_client("10.0.0.2", 5201, 1, "100M", backoff_s=0).packets == 258979
    assert len(calls(log)) == 2


def test_run_udp_client_rejects_a_bad_rate_before_running(fake_iperf3):
    log = fake_iperf3()
    with pytest.raises(StepError, match="bad UDP rate"):
        iperf.run_udp_client("10.0.0.2", 5201, 1, "lots")
    assert calls(log) == []


def test_refused_connection_is_a_clear_error(fake_iperf3):
    log = fake_iperf3(output=json.dumps({"start": {"connected": []}, "intervals": [], "end": {},
                                         "error": "unable to connect to server: Connection refused"}))
    with pytest.raises(IperfError) as info:
        iperf.run_client("10.0.0.2", 5201, 1, 1, reverse=False, retries=3, backoff_s=0)
    assert info.value.kind == "refused"
    assert str(info.value) == ("unable to connect to server: Connection refused (nothing accepts connections on "
                               "10.0.0.2:5201: is the iperf3 server running and the port right?)")
    assert len(calls(log)) == 1  # not retried


def test_refused_without_json_is_recognised(fake_iperf3):
    fake_iperf3(output="iperf3: error - unable to connect to server: Connection refused")
    with pytest.raises(IperfError, match=r"gave no JSON \(exit 1\).*nothing accepts connections on 10\.0\.0\.2:5201") \
            as info:
        iperf.run_client("10.0.0.2", 5201, 1, 1, reverse=False, backoff_s=0)
    assert info.value.kind == "refused"


def test_busy_after_all_retries_says_so(fake_iperf3):
    fake_iperf3(busy_calls=99)
    with pytest.raises(IperfError) as info:
        iperf.run_client("10.0.0.2", 5201, 1, 1, reverse=False, retries=1, backoff_s=0)
    assert str(info.value) == ("the server is busy running a test. try again later after 2 attempts "
                               "(the iperf3 server on 10.0.0.2:5201 stayed busy with another client's test)")


def test_busy_backoff_doubles(fake_iperf3, monkeypatch):
    fake_iperf3(busy_calls=3)
    slept = []
    monkeypatch.setattr(iperf, "_backoff_sleep", slept.append)
    iperf.run_client("10.0.0.2", 5201, 1, 1, reverse=False, retries=3, backoff_s=0.5)
    assert slept == [0.5, 1.0, 2.0]


def test_a_hung_iperf3_is_killed_and_reported(fake_iperf3, monkeypatch):
    fake_iperf3(hang=True)
    monkeypatch.setattr(iperf, "PROCESS_SLACK_S", 0.3)
    with pytest.raises(IperfError, match=r"did not finish within 0\.4 s: 10\.0\.0\.2:5201 unreachable") as info:
        iperf.run_client("10.0.0.2", 5201, 0.1, 1, reverse=False, backoff_s=0)
    assert info.value.kind == "timeout"


@pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 is not installed")
def test_real_iperf3_against_a_closed_port():
    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with pytest.raises(IperfError) as info:
            iperf.run_client("127.0.0.1", port, 1, 1, reverse=False, retries=2, backoff_s=0)
        with pytest.raises(IperfError) as udp_info:
            iperf.run_udp_client("127.0.0.1", port, 1, "10M", retries=2, backoff_s=0)
    for err in (info.value, udp_info.value):
        assert err.kind == "refused"
        assert "Connection refused" in str(err)
        assert f"nothing accepts connections on 127.0.0.1:{port}" in str(err)


# --------------------------------------------------------------------------- latency probe


@pytest.fixture
def echo_server():
    server = latency.EchoServer("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_summarize_round_trips_math():
    times = [float(v) for v in range(1, 101)]  # 1..100 ms
    s = latency.summarize_round_trips(times, 32, False, 5.05)
    # linear interpolation: p50 at rank 49.5 -> 50.5; p90 at 89.1 -> 90.1; p99 at 98.01 -> 99.01
    assert (s.p50_ms, s.p90_ms, s.p99_ms) == (pytest.approx(50.5), pytest.approx(90.1), pytest.approx(99.01))
    assert (s.mean_ms, s.min_ms, s.max_ms, s.round_trips) == (50.5, 1.0, 100.0, 100)
    with pytest.raises(LatencyError, match="no round trip"):
        latency.summarize_round_trips([], 32, True, 0.0)


def latency_sample(times_ms: list[float]) -> LatencySample:
    return latency.summarize_round_trips(times_ms, 32, False, 0.1)


def test_latency_summary_over_samples():
    # three samples of 1,000 round trips: 0.10 ms, 0.12 ms and 0.14 ms each, and one 0.3 ms round trip
    samples = [latency_sample([base] * 999 + [0.3]) for base in (0.10, 0.12, 0.14)]
    out = latency.summarize_samples(samples)
    pooled = sorted(t for s in samples for t in s.times_ms)
    assert out["p50_ms"]["value"] == pytest.approx(0.12) == latency.percentile(pooled, 50)
    assert out["p99_ms"]["value"] == pytest.approx(0.14) == latency.percentile(pooled, 99)
    assert out["mean_ms"]["value"] == pytest.approx(sum(pooled) / 3000)
    assert (out["p50_ms"]["n"], out["p50_ms"]["round_trips"]) == (3, 3000)
    assert out["p50_ms"]["ci95_low"] == pytest.approx(0.12) == out["p50_ms"]["ci95_high"]
    assert (out["round_trips"], out["payload_bytes"], out["truncated"]) == (3000, 32, False)
    assert "times_ms" not in out["samples"][0] and out["samples"][2]["p50_ms"] == pytest.approx(0.14)
    json.dumps(out)


def test_latency_p99_is_pooled_from_raw_round_trips_not_a_mean_of_sample_p99s():
    # one sample with a 2 % tail at 5 ms among four clean ones: per-sample p99s 0.1 x 4 and 5.0
    clean = [latency_sample([0.1] * 1000) for _ in range(4)]
    tailed = latency_sample([0.1] * 980 + [5.0] * 20)
    out = latency.summarize_samples([*clean, tailed])
    assert tailed.p99_ms == pytest.approx(5.0)
    # 20 slow of 5,000 round trips is 0.4 %: the pooled p99 is a fast round trip, where the mean of
    # per-sample p99s would say (4 x 0.1 + 5.0) / 5 = 1.08 ms
    assert out["p99_ms"]["value"] == pytest.approx(0.1)
    assert out["p99_ms"]["ci95_high"] in (0.1, 5.0) and out["p99_ms"]["ci95_low"] == 0.1
    # and a tail present in every sample shows in full
    everywhere = latency.summarize_samples([latency_sample([0.1] * 980 + [5.0] * 20) for _ in range(5)])
    assert everywhere["p99_ms"]["value"] == pytest.approx(5.0)


def test_a_pooled_percentile_of_too_few_values_has_no_interval():
    out = latency.summarize_samples([latency_sample([0.1, 0.2, 0.3])])
    assert out["p99_ms"]["value"] == pytest.approx(0.298)
    assert out["p99_ms"]["ci95_low"] is None and out["p99_ms"]["ci95_high"] is None


def test_latency_measure_against_an_echo_server(echo_server):
    s = latency.measure("127.0.0.1", echo_server, round_trips=200, payload_bytes=64)
    assert s.round_trips == 200 and s.payload_bytes == 64 and s.truncated is False
    assert 0 < s.min_ms <= s.p50_ms <= s.p90_ms <= s.p99_ms <= s.max_ms
    assert s.min_ms <= s.mean_ms <= s.max_ms


def test_latency_measure_stops_at_the_time_budget(echo_server):
    s = latency.measure("127.0.0.1", echo_server, round_trips=100_000, time_budget_s=0.05)
    assert s.truncated is True
    assert 1 <= s.round_trips < 100_000
    assert s.seconds < 1


def test_latency_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with pytest.raises(LatencyError, match=rf"connection refused by 127\.0\.0\.1:{port}: is the echo server") \
                as info:
            latency.measure("127.0.0.1", port, round_trips=10)
    assert info.value.kind == "refused"


def test_latency_server_that_never_answers():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(LatencyError, match=r"no echo from 127\.0\.0\.1:\d+ within 0\.2 s \(after 0 round trips\)") \
                as info:
            latency.measure("127.0.0.1", port, round_trips=10, io_timeout_s=0.2)
    assert info.value.kind == "timeout"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"round_trips": 0}, "round_trips must be 1..100000"),
    ({"round_trips": 100_001}, "round_trips must be"),
    ({"payload_bytes": 0}, "payload_bytes must be 1..65536"),
    ({"payload_bytes": 70_000}, "payload_bytes must be"),
    ({"time_budget_s": 0}, "time_budget_s must be"),
    ({"time_budget_s": 600}, "time_budget_s must be"),
])
def test_latency_bounds(kwargs, message):
    with pytest.raises(LatencyError, match=message):
        latency.measure("127.0.0.1", 1, **kwargs)


def test_latency_as_processes():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = latency.start_server_process("127.0.0.1", port)
    try:
        sample = latency.run_client_process("127.0.0.1", port, round_trips=50, payload_bytes=16)
        assert (sample.round_trips, sample.payload_bytes) == (50, 16)
        with pytest.raises(LatencyError, match="did not start: cannot listen on 127.0.0.1"):
            latency.start_server_process("127.0.0.1", port)  # the port is taken
    finally:
        iperf.stop_process(server)
    with pytest.raises(LatencyError, match="connection refused") as info:
        latency.run_client_process("127.0.0.1", port, round_trips=5)
    assert info.value.kind == "refused"


# --------------------------------------------------------------------------- measure: probes, rounds, failures


def tcp_sample(gbps: float, reverse: bool = False) -> TcpSample:
    return TcpSample(gbps, 0, 0.05, 1.0, 1, reverse)


@pytest.fixture
def fake_probes(monkeypatch):
    """Replace the three clients; ``fail`` maps a probe to the error it raises."""
    order: list[str] = []
    fail: dict[str, Exception] = {}

    def tcp(server, port, duration_s, streams, reverse, **kw):
        name = "tcp_reverse" if reverse else "tcp"
        order.append(name)
        if name in fail:
            raise fail[name]
        return tcp_sample(10.0 + len(order), reverse)

    def udp(server, port, duration_s, rate, streams, **kw):
        order.append("udp")
        assert streams == 1
        if "udp" in fail:
            raise fail["udp"]
        return UdpSample(0.1, 0.1, 0.01, 0.0, 0, 1000, 1.0, 10**8, 1448)

    def lat(host, port, round_trips, payload_bytes, time_budget_s, command_prefix=None):
        order.append("latency")
        if "latency" in fail:
            raise fail["latency"]
        return latency.summarize_round_trips([0.05] * 98 + [0.09, 0.2], payload_bytes, False, 0.1)

    monkeypatch.setattr(iperf, "run_client", tcp)
    monkeypatch.setattr(iperf, "run_udp_client", udp)
    monkeypatch.setattr(latency, "run_client_process", lat)
    return order, fail


def test_measure_takes_samples_in_rounds(fake_probes):
    order, _ = fake_probes
    out = probe.measure("10.0.0.2", 5201, duration_s=1, samples=2, latency_round_trips=100)
    assert order == ["tcp", "tcp_reverse", "udp", "latency"] * 2
    assert out["errors"] == {}
    assert out["tcp"]["throughput_gbps"]["n"] == 2
    assert out["udp"]["target_rate"] == "100M"
    assert out["latency"]["round_trips"] == 200
    assert out["latency"]["p99_ms"]["value"] == pytest.approx(0.0911)  # pooled over both samples


def test_measure_records_a_failed_probe_and_runs_the_others(fake_probes):
    order, fail = fake_probes
    fail["udp"] = IperfError("unable to connect to server: Connection refused", kind="refused")
    out = probe.measure("10.0.0.2", 5201, duration_s=1, samples=3)
    assert out["errors"] == {"udp": "unable to connect to server: Connection refused"}
    assert "udp" not in out
    assert order.count("udp") == 1  # not tried again in later rounds
    assert out["tcp"]["throughput_gbps"]["n"] == 3 and out["latency"]["p50_ms"]["n"] == 3


def test_measure_fails_when_every_probe_fails(fake_probes):
    _, fail = fake_probes
    for name in probe.PROBES:
        fail[name] = IperfError(f"{name}: Connection refused", kind="refused")
    with pytest.raises(StepError, match=r"^every east-west probe failed; tcp: tcp: Connection refused "
                                        r"\(also failed: tcp_reverse, udp, latency\)$"):
        probe.measure("10.0.0.2", 5201, samples=2)


def test_measure_only_the_chosen_probes(fake_probes):
    order, _ = fake_probes
    out = probe.measure("10.0.0.2", 5201, duration_s=1, samples=1, probes="latency, tcp")
    assert order == ["tcp", "latency"]
    assert set(out) == {"errors", "tcp", "latency"}


@pytest.mark.parametrize(("probes", "expected"), [
    (None, probe.PROBES), ("udp,tcp", ("tcp", "udp")), (["latency"], ("latency",)), ("tcp,,tcp", ("tcp",))])
def test_parse_probes(probes, expected):
    assert probe.parse_probes(probes) == expected


@pytest.mark.parametrize("probes", ["icmp", "tcp,sctp", "", " , "])
def test_parse_probes_rejects(probes):
    with pytest.raises(StepError, match="unknown east-west probe"):
        probe.parse_probes(probes)


@pytest.mark.parametrize("kwargs", [{"samples": 0}, {"duration_s": 0}, {"streams": 0}, {"udp_rate": "x"},
                                    {"latency_round_trips": 0}])
def test_measure_rejects_bad_settings(fake_probes, kwargs):
    with pytest.raises(StepError):
        probe.measure("10.0.0.2", 5201, **kwargs)


# --------------------------------------------------------------------------- the local target's path


@pytest.fixture
def fake_ip(tmp_path, monkeypatch):
    """An `ip` on PATH that logs its arguments and fails for the argument pattern given."""
    bin_dir = tmp_path / "ipbin"
    bin_dir.mkdir()
    log = tmp_path / "ip_calls"

    def install(fail_on: str | None = None):
        cond = (f'case "$*" in *"{fail_on}"*) echo "RTNETLINK answers: Operation not permitted" >&2; exit 2;; esac\n'
                if fail_on else "")
        script = bin_dir / "ip"
        script.write_text(f'#!/bin/sh\necho "$*" >> {log}\n{cond}exit 0\n')
        script.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        return log

    return install


def test_veth_pair_commands_and_cleanup(fake_ip):
    log = fake_ip()
    with netns.veth_pair(pid=4242) as pair:
        assert pair.client_ns.startswith("ragbench-ew-4242-") and pair.client_ns.endswith("-client")
        assert pair.server_ns == pair.client_ns[:-len("client")] + "server"
        assert pair.exec_prefix("server")[-3:] == ["netns", "exec", pair.server_ns]
        created = calls(log)
    c, s = pair.client_ns, pair.server_ns
    assert created == [
        f"netns add {c}", f"netns add {s}",
        f"link add ew-client netns {c} type veth peer name ew-server netns {s}",
        f"-n {c} addr add 10.203.0.1/30 dev ew-client", f"-n {c} link set lo up", f"-n {c} link set ew-client up",
        f"-n {s} addr add 10.203.0.2/30 dev ew-server", f"-n {s} link set lo up", f"-n {s} link set ew-server up",
        f"netns exec {c} true", f"netns exec {s} true"]
    assert calls(log)[len(created):] == [f"netns delete {s}", f"netns delete {c}"]
    assert pair.cleanup_errors == []


def test_veth_pair_is_removed_when_the_body_fails(fake_ip):
    log = fake_ip()
    with pytest.raises(RuntimeError, match="boom"), netns.veth_pair() as pair:
        raise RuntimeError("boom")
    assert calls(log)[-2:] == [f"netns delete {pair.server_ns}", f"netns delete {pair.client_ns}"]


def test_veth_pair_setup_failure_removes_what_was_created(fake_ip):
    log = fake_ip(fail_on="type veth")
    with pytest.raises(netns.NetnsError, match="type veth.*failed: RTNETLINK answers: Operation not permitted"):
        with netns.veth_pair():
            pytest.fail("the body must not run")
    lines = calls(log)
    deleted = [line for line in lines if line.startswith("netns delete")]
    assert len(deleted) == 2  # both namespaces were created before the veth failed
    assert sorted(d.split()[-1] for d in deleted) == sorted(line.split()[-1] for line in lines[:2])


def test_veth_pair_where_netns_exec_fails(fake_ip):
    log = fake_ip(fail_on="true")  # e.g. a container that may not remount /sys
    with pytest.raises(netns.NetnsError, match=r"netns exec .* true` failed"):
        with netns.veth_pair():
            pytest.fail("the body must not run")
    assert sum(line.startswith("netns delete") for line in calls(log)) == 2


def test_veth_pair_second_namespace_failing(fake_ip):
    log = fake_ip(fail_on="-server")  # the second `netns add` fails
    with pytest.raises(netns.NetnsError):
        with netns.veth_pair():
            pass
    lines = calls(log)
    assert lines[-1].startswith("netns delete ") and lines[-1].endswith("-client")  # only what exists
    assert sum(line.startswith("netns delete") for line in lines) == 1


def test_veth_pair_reports_cleanup_failures(fake_ip, capsys):
    fake_ip(fail_on="netns delete")
    with netns.veth_pair() as pair:
        pass
    assert len(pair.cleanup_errors) == 2
    assert "network namespaces not removed" in capsys.readouterr().err


def test_unavailable_reasons(monkeypatch):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    assert "not running as root" in netns.unavailable_reason()
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns, "ip_path", lambda: None)
    assert netns.unavailable_reason() == "the `ip` command (iproute2) is not installed"
    monkeypatch.setattr(netns, "ip_path", lambda: "/usr/sbin/ip")
    assert netns.unavailable_reason() is None


@pytest.fixture
def local_stubs(monkeypatch):
    """run_local without real servers or clients: records where servers started and clients ran."""
    seen: dict = {"servers": [], "measure": None}

    def server(port, bind="127.0.0.1", command_prefix=None):
        seen["servers"].append(("iperf3", bind, command_prefix))
        return subprocess.Popen(["sleep", "30"])

    def echo(bind, port, command_prefix=None):
        seen["servers"].append(("echo", bind, command_prefix))
        return subprocess.Popen(["sleep", "30"])

    def measure(server_addr, port, **kw):
        seen["measure"] = (server_addr, kw["client_prefix"])
        return {"errors": {"udp": "boom"}, "tcp": {"throughput_gbps": mean_ci95([1.0])}}

    monkeypatch.setattr(iperf, "iperf3_path", lambda: "/usr/bin/iperf3")
    monkeypatch.setattr(iperf, "start_server", server)
    monkeypatch.setattr(latency, "start_server_process", echo)
    monkeypatch.setattr(probe, "measure", measure)
    monkeypatch.setattr(probe, "require_port_free", lambda port, what: None)
    return seen


def test_run_local_falls_back_to_loopback_and_says_why(local_stubs, monkeypatch):
    def broken(pid=None):
        raise netns.NetnsError("`ip netns add x` failed: mount --make-shared /run/netns failed")

    monkeypatch.setattr(netns, "unavailable_reason", lambda: None)
    monkeypatch.setattr(netns, "veth_pair", broken)
    out = probe.run_local(1, 1, 1, port=25999)
    assert out["path"] == "loopback"
    assert out["path_reason"].startswith("network namespaces could not be set up: `ip netns add x` failed")
    assert local_stubs["servers"] == [("iperf3", "127.0.0.1", None), ("echo", "127.0.0.1", None)]
    assert local_stubs["measure"] == ("127.0.0.1", None)
    assert out["flags"] == ["udp_failed"]
    assert out["errors"] == {"udp": "boom"}
    assert out["cross_node"] is False and out["client_node"] == out["server_node"]


def test_run_local_not_root(local_stubs, monkeypatch):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    out = probe.run_local(1, 1, 1, port=25999, probes="tcp")
    assert (out["path"], out["path_reason"]) == (
        "loopback", "not running as root (creating network namespaces needs CAP_SYS_ADMIN)")
    assert local_stubs["servers"] == [("iperf3", "127.0.0.1", None)]  # no echo server without the probe
    with pytest.raises(StepError, match="the netns-veth path is not available: not running as root"):
        probe.run_local(1, 1, 1, port=25999, path="netns-veth")


def test_run_local_in_namespaces(local_stubs, fake_ip, monkeypatch):
    log = fake_ip()
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)  # the fake `ip` needs no privileges
    out = probe.run_local(1, 1, 1, port=25999)
    ns = out["namespaces"]
    assert (out["path"], out["path_reason"]) == ("netns-veth", None)
    assert out["flags"] == ["udp_failed"]  # not same_node: one machine is the local target's design
    assert local_stubs["servers"][0][1] == "10.203.0.2"
    assert local_stubs["servers"][0][2][-2:] == ["exec", ns["server"]]
    assert local_stubs["measure"][0] == "10.203.0.2"
    assert local_stubs["measure"][1][-2:] == ["exec", ns["client"]]
    assert calls(log)[-2:] == [f"netns delete {ns['server']}", f"netns delete {ns['client']}"]


@pytest.mark.parametrize("path", ["veth", "", "NETNS"])
def test_run_local_unknown_path(path):
    with pytest.raises(StepError, match="unknown local east-west path"):
        probe.run_local(1, 1, 1, path=path)
