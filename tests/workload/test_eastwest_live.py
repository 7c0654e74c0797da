"""East-West with the real tools: iperf3 and the latency probe on this machine, over loopback and
(as root) between two network namespaces joined by a veth pair. Durations are tiny (1 s, 2
samples); the figures are only checked for sanity, the parsing is checked in tests/unit."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from workload.eastwest import iperf, latency, netns, probe
from workload.errors import StepError
from workload.local.processes import free_port

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 is not installed")]

ROOT = Path(__file__).resolve().parents[2]
NETNS_REASON = netns.unavailable_reason()
needs_netns = pytest.mark.skipif(NETNS_REASON is not None, reason=f"netns path unavailable: {NETNS_REASON}")
SETTINGS = {"duration_s": 1, "streams": 1, "samples": 2, "udp_rate": "50M", "latency_round_trips": 300}


def ours(pid: int | None = None) -> list[str]:
    """Network namespaces named after this process (or ``pid``)."""
    prefix = f"{netns.NAME_PREFIX}{pid or os.getpid()}-"
    return [n for n in netns.list_namespaces() if n.startswith(prefix)]


def check_result(out: dict) -> None:
    assert out["errors"] == {}
    assert out["flags"] == []
    assert out["probes"] == list(probe.PROBES)
    for name in ("tcp", "tcp_reverse"):
        tput = out[name]["throughput_gbps"]
        assert tput["n"] == 2
        assert tput["mean"] > 0.1  # any machine moves more than 100 Mbit/s between two local endpoints
        assert tput["ci95_low"] <= tput["mean"] <= tput["ci95_high"]
        assert [s["reverse"] for s in out[name]["samples"]] == [name == "tcp_reverse"] * 2
    assert out["tcp"]["mean_rtt_ms"]["mean"] > 0
    assert out["tcp_reverse"]["mean_rtt_ms"]["n"] == 0  # not measured with -R, not reported as 0
    udp = out["udp"]
    assert udp["target_rate_bps"] == 50_000_000
    assert 0.03 < udp["throughput_gbps"]["mean"] < 0.06  # about the rate asked for
    assert udp["jitter_ms"]["n"] == 2 and udp["jitter_ms"]["mean"] >= 0
    assert 0 <= udp["loss_pct"]["value"] < 5  # lost over sent packets, summed over the samples
    assert udp["packets"] > 0 and udp["loss_pct"]["packets"] == udp["packets"]
    lat = out["latency"]
    assert lat["round_trips"] == 600 and lat["truncated"] is False
    # pooled over every round trip of both samples (they cross the client process boundary too)
    assert lat["p99_ms"]["round_trips"] == 600 and lat["p99_ms"]["n"] == 2
    assert 0 < lat["p50_ms"]["value"] <= lat["p99_ms"]["value"] < 50
    assert min(s["min_ms"] for s in lat["samples"]) <= lat["p50_ms"]["value"] <= max(s["max_ms"] for s in lat["samples"])


@pytest.fixture(scope="module")
def loopback() -> dict:
    return probe.run_local(port=free_port(), latency_port=free_port(), path="loopback", **SETTINGS)


@pytest.fixture(scope="module")
def veth() -> dict:
    if NETNS_REASON is not None:
        pytest.skip(f"netns path unavailable: {NETNS_REASON}")
    before = set(netns.list_namespaces())
    out = probe.run_local(port=free_port(), path="netns-veth", **SETTINGS)
    assert set(netns.list_namespaces()) - before == set()  # none left behind
    return out


def test_loopback_tcp_udp_and_latency(loopback):
    check_result(loopback)
    assert (loopback["path"], loopback["path_reason"]) == ("loopback", "loopback requested")
    assert loopback["client_node"] == loopback["server_node"] == socket.gethostname()
    assert loopback["cross_node"] is False


@needs_netns
def test_netns_veth_tcp_udp_and_latency(veth):
    check_result(veth)
    assert (veth["path"], veth["path_reason"]) == ("netns-veth", None)
    ns = veth["namespaces"]
    assert ns["client"].startswith(f"{netns.NAME_PREFIX}{os.getpid()}-")
    assert (ns["client_addr"], ns["server_addr"], ns["prefix_len"]) == ("10.203.0.1", "10.203.0.2", 30)
    # over the veth pair (MTU 1500) iperf3 sends MSS-sized datagrams; over loopback (MTU 65536) far larger
    assert veth["udp"]["samples"][0]["datagram_bytes"] <= 1500
    assert ns["client"] not in netns.list_namespaces() and ns["server"] not in netns.list_namespaces()


@pytest.mark.skipif(os.geteuid() == 0 and NETNS_REASON is None, reason="as root the auto path is netns-veth")
def test_auto_path_without_root_is_loopback_and_says_why():
    out = probe.run_local(port=free_port(), latency_port=free_port(), probes="tcp", **SETTINGS)
    assert out["path"] == "loopback"
    assert out["path_reason"] == NETNS_REASON


@needs_netns
def test_auto_path_as_root_is_netns_veth():
    out = probe.run_local(port=free_port(), probes="tcp,latency", **{**SETTINGS, "samples": 1})
    assert (out["path"], out["path_reason"]) == ("netns-veth", None)
    assert set(out) >= {"tcp", "latency"} and "udp" not in out
    assert ours() == []


@needs_netns
def test_no_namespace_left_when_the_probe_fails(monkeypatch):
    seen = {}

    def broken(*args, **kwargs):
        seen["during"] = ours()
        raise RuntimeError("probe blew up")

    monkeypatch.setattr(probe, "measure", broken)
    with pytest.raises(RuntimeError, match="probe blew up"):
        probe.run_local(port=free_port(), path="netns-veth", **SETTINGS)
    assert len(seen["during"]) == 2  # they did exist while measuring
    assert ours() == []


def cmdline(process: psutil.Process) -> list[str]:
    """A process's command line; empty once it has exited, even if not yet reaped (a zombie has none)."""
    try:
        return process.cmdline()
    except psutil.NoSuchProcess:  # ZombieProcess is one of these
        return []


@needs_netns
def test_no_namespace_left_when_a_server_does_not_start(monkeypatch):
    def no_server(bind, port, command_prefix=None, ready_timeout_s=15.0):
        raise latency.LatencyError("the echo server on x did not start: nope", "server")

    monkeypatch.setattr(latency, "start_server_process", no_server)
    with pytest.raises(StepError, match="did not start: nope"):
        probe.run_local(port=free_port(), path="netns-veth", **SETTINGS)
    assert ours() == []
    assert not [p for p in psutil.Process().children(recursive=True) if "iperf3" in " ".join(cmdline(p))]


@needs_netns
def test_sigterm_removes_the_namespaces_and_stops_the_servers():
    code = ("from workload.eastwest import probe\n"
            "probe.run_local(30, 1, 1, port=15201, path='netns-veth', probes='tcp,latency')\n")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 20
        while len(ours(child.pid)) < 2:
            assert time.monotonic() < deadline, "the namespaces never appeared"
            assert child.poll() is None, child.stderr.read()
            time.sleep(0.1)
        while not [p for p in psutil.Process(child.pid).children(recursive=True) if "-c" in cmdline(p)]:
            assert time.monotonic() < deadline, "the iperf3 client never started"
            time.sleep(0.1)
        descendants = psutil.Process(child.pid).children(recursive=True)
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert "terminated by SIGTERM during the east-west probe" in err
    assert ours(child.pid) == []
    gone, alive = psutil.wait_procs(descendants, timeout=10)
    assert alive == []  # iperf3 server and client, echo server: all stopped


def test_refused_connection_is_a_clear_error():
    port = free_port()  # nothing listens there
    with pytest.raises(StepError) as info:
        probe.measure("127.0.0.1", port, duration_s=1, samples=1, latency_port=port)
    message = str(info.value)
    assert message.startswith("every east-west probe failed; tcp: unable to connect to server")
    assert f"Connection refused (nothing accepts connections on 127.0.0.1:{port}" in message
    assert message.endswith("(also failed: tcp_reverse, udp, latency)")


def test_a_busy_server_is_retried():
    port = free_port()
    server = iperf.start_server(port)
    try:
        other = subprocess.Popen([iperf.iperf3_path(), "-c", "127.0.0.1", "-p", str(port), "-t", "2", "--json"],
                                 stdout=subprocess.DEVNULL)
        time.sleep(0.5)  # the other client's test is running
        with pytest.raises(iperf.IperfError) as info:
            iperf.run_client("127.0.0.1", port, 1, 1, reverse=False, retries=0)
        assert info.value.kind == "busy"
        assert "the server is busy running a test" in str(info.value)
        started = time.monotonic()
        sample = iperf.run_client("127.0.0.1", port, 1, 1, reverse=False, retries=4, backoff_s=0.5)
        assert sample.throughput_gbps > 0.1
        assert time.monotonic() - started > 1.5  # it waited for the other test to end
        other.wait(timeout=30)
    finally:
        iperf.stop_process(server)
