"""East-West: iperf3 JSON parsing, confidence intervals, retries on a busy server, node placement."""

from __future__ import annotations

import copy
import json
import math
import os
import stat
from pathlib import Path

import pytest

from workload.eastwest import iperf, probe
from workload.eastwest.iperf import IperfError, TcpSample, mean_ci95, parse_tcp, summarize_samples
from workload.errors import StepError

pytestmark = pytest.mark.unit

FIXTURE = Path(__file__).parent / "fixtures" / "iperf3_tcp.json"


@pytest.fixture
def report() -> dict:
    return json.loads(FIXTURE.read_text())


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

    def install(busy_calls: int = 0, output: str | None = None):
        (tmp_path / "busy_calls").write_text(str(busy_calls))
        if output is not None:  # a fixed answer and exit code 1
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
