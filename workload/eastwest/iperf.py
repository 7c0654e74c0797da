"""East-West network probe: iperf3 in JSON mode, parsed into throughput, retransmits, RTT (TCP) and
jitter and loss (UDP), with mean and 95% confidence interval over samples.

Every failure of an iperf3 run becomes an :class:`IperfError` with a clear message and a ``kind``:
``busy`` (the server is running another client's test; retried with backoff), ``refused`` (nothing
listens on the port), ``unreachable``, ``timeout`` (the process did not finish in time), ``no_json``,
``no_data`` (a report without the figures) or ``iperf3`` (any other error iperf3 reported).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TypeVar

from workload.errors import StepError

IPERF3_MISSING = ("iperf3 not found on PATH: install it (Debian/Ubuntu: `sudo apt-get install iperf3`, "
                  "macOS: `brew install iperf3`) and run again")

# t-distribution two-sided 95% critical values for small sample counts (df = n - 1).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}

# iperf3's -b: a number with an optional decimal K/M/G/T suffix (bits per second); 0 = unlimited.
_RATE_RE = re.compile(r"^(\d+(?:\.\d+)?)([kmgt]?)$", re.IGNORECASE)
_RATE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}

# Slack on top of the test duration before a hung iperf3 client is killed (connect, setup, results
# exchange). iperf3 3.12's own --connect-timeout does not bound an unanswered connect, so this does.
PROCESS_SLACK_S = 20.0

_backoff_sleep = time.sleep  # the wait between busy retries (tests replace it)


def iperf3_path() -> str:
    path = shutil.which("iperf3")
    if path is None:
        raise StepError(IPERF3_MISSING)
    return path


@dataclass
class TcpSample:
    throughput_gbps: float
    retransmits: int | None
    mean_rtt_ms: float | None
    duration_s: float
    streams: int
    reverse: bool


@dataclass
class UdpSample:
    throughput_gbps: float  # received (end.sum_received; end.sum on iperf3 versions without it)
    sent_gbps: float | None
    jitter_ms: float | None
    loss_pct: float | None
    lost_packets: int | None
    packets: int | None
    duration_s: float
    target_rate_bps: int | None
    datagram_bytes: int | None
    reverse: bool = False


class IperfError(Exception):
    def __init__(self, message: str, busy: bool = False, kind: str | None = None) -> None:
        super().__init__(message)
        self.busy = busy or kind == "busy"
        self.kind = kind or ("busy" if busy else "iperf3")

    @property
    def refused(self) -> bool:
        return self.kind == "refused"


_UNREACHABLE = ("no route to host", "network is unreachable", "connection timed out",
                "name or service not known", "temporary failure in name resolution", "unable to resolve")


def error_kind(message: str) -> str:
    low = message.lower()
    if "busy" in low:
        return "busy"
    if "connection refused" in low:
        return "refused"
    if any(m in low for m in _UNREACHABLE):
        return "unreachable"
    return "iperf3"


def _raise_for_error(report: dict) -> None:
    if report.get("error"):
        message = str(report["error"])
        raise IperfError(message, kind=error_kind(message))


def parse_tcp(report: dict, reverse: bool = False) -> TcpSample:
    """One iperf3 ``--json`` TCP client report -> a sample. Raises IperfError on iperf3's own error."""
    _raise_for_error(report)
    end = report.get("end") or {}
    received = end.get("sum_received") or {}
    sent = end.get("sum_sent") or {}
    if not received.get("bits_per_second"):
        raise IperfError("iperf3 report has no received throughput", kind="no_data")
    # iperf3 reports microseconds. With -R the sender is the server, whose results carry no RTT
    # (iperf3 sends zeros): zero is "not measured", never a real round trip.
    rtts = [s["sender"]["mean_rtt"] for s in end.get("streams", [])
            if isinstance(s.get("sender"), dict) and s["sender"].get("mean_rtt")]
    start = report.get("start", {}).get("test_start", {})
    return TcpSample(
        throughput_gbps=received["bits_per_second"] / 1e9,
        retransmits=sent.get("retransmits"),
        mean_rtt_ms=(sum(rtts) / len(rtts) / 1000) if rtts else None,
        duration_s=float(received.get("seconds") or start.get("duration") or 0),
        streams=int(start.get("num_streams") or len(end.get("streams", [])) or 1),
        reverse=reverse,
    )


def parse_udp(report: dict, reverse: bool = False) -> UdpSample:
    """One iperf3 ``-u --json`` client report -> a sample.

    Jitter and loss are the receiver's (iperf3 puts them in ``end.sum``); throughput is what
    arrived (``end.sum_received``, iperf3 >= 3.11), else ``end.sum``'s rate.
    """
    _raise_for_error(report)
    end = report.get("end") or {}
    total = end.get("sum") or {}
    received = end.get("sum_received") or {}
    sent = end.get("sum_sent") or {}
    if not total and not received:
        raise IperfError("iperf3 UDP report has no end.sum", kind="no_data")
    packets = total.get("packets", received.get("packets"))
    if not packets:
        raise IperfError("iperf3 UDP report counts no packets sent", kind="no_data")
    lost = total.get("lost_packets", received.get("lost_packets"))
    loss = total.get("lost_percent", received.get("lost_percent"))
    if loss is None and lost is not None:
        loss = 100.0 * lost / packets
    jitter = total.get("jitter_ms", received.get("jitter_ms"))
    rx_bps = received.get("bits_per_second", total.get("bits_per_second"))
    if rx_bps is None:
        raise IperfError("iperf3 UDP report has no throughput", kind="no_data")
    tx_bps = sent.get("bits_per_second", total.get("bits_per_second") if received else None)
    start = report.get("start") or {}
    test_start = start.get("test_start") or {}
    target = test_start.get("target_bitrate", start.get("target_bitrate"))
    return UdpSample(
        throughput_gbps=rx_bps / 1e9,
        sent_gbps=tx_bps / 1e9 if tx_bps is not None else None,
        jitter_ms=float(jitter) if jitter is not None else None,
        loss_pct=float(loss) if loss is not None else None,
        lost_packets=int(lost) if lost is not None else None,
        packets=int(packets),
        duration_s=float(received.get("seconds") or total.get("seconds") or test_start.get("duration") or 0),
        target_rate_bps=int(target) if target is not None else None,
        datagram_bytes=test_start.get("blksize"),
        reverse=reverse,
    )


def parse_rate(rate: str | int | float) -> int:
    """iperf3's ``-b`` value (``100M``, ``1G``, ``500k``, ``0`` = unlimited) -> bits per second."""
    m = _RATE_RE.match(str(rate).strip())
    if not m:
        raise StepError(f"bad UDP rate {rate!r}: use a number of bit/s with an optional K, M, G or T suffix "
                        "(e.g. 100M, 1G)")
    return int(float(m.group(1)) * _RATE_UNITS[m.group(2).lower()])


def mean_ci95(values: list[float]) -> dict[str, float | int | None]:
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "ci95_low": None, "ci95_high": None, "stdev": None}
    mean = sum(values) / n
    if n == 1:
        return {"n": 1, "mean": mean, "ci95_low": None, "ci95_high": None, "stdev": None}
    stdev = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    df = n - 1
    t = _T95.get(df) or _T95[max(k for k in _T95 if k <= df)]
    half = t * stdev / math.sqrt(n)
    return {"n": n, "mean": mean, "ci95_low": mean - half, "ci95_high": mean + half, "stdev": stdev}


S = TypeVar("S")


def _hint(kind: str, server: str, port: int) -> str:
    return {
        "refused": f"nothing accepts connections on {server}:{port}: is the iperf3 server running and the port right?",
        "unreachable": f"{server}:{port} cannot be reached: check the address, routes and network policies",
        "busy": f"the iperf3 server on {server}:{port} stayed busy with another client's test",
    }.get(kind, "")


def _run(argv: list[str], parse: Callable[[dict], S], server: str, port: int, timeout_s: float,
         retries: int, backoff_s: float) -> S:
    """Run one iperf3 client; retry with exponential backoff while the server is busy."""
    for attempt in range(retries + 1):
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise IperfError(f"iperf3 did not finish within {timeout_s:g} s: {server}:{port} unreachable "
                             f"or the test stalled", kind="timeout") from None
        except OSError as exc:
            raise IperfError(f"iperf3 could not run: {exc}", kind="exec") from None
        try:
            report = json.loads(proc.stdout)
        except ValueError:
            text = (proc.stderr or proc.stdout).strip()[:200]
            kind = error_kind(text) if text else "no_json"
            hint = _hint(kind, server, port)
            raise IperfError(f"iperf3 gave no JSON (exit {proc.returncode}): {text}" + (f" ({hint})" if hint else ""),
                             kind=kind if kind in ("refused", "unreachable") else "no_json") from None
        if not isinstance(report, dict):
            raise IperfError(f"iperf3 gave unexpected JSON (exit {proc.returncode})", kind="no_json")
        try:
            return parse(report)
        except IperfError as exc:
            if exc.busy and attempt < retries:
                _backoff_sleep(backoff_s * 2**attempt)
                continue
            hint = _hint(exc.kind, server, port)
            if hint:
                suffix = f" after {attempt + 1} attempts" if exc.busy else ""
                raise IperfError(f"{exc}{suffix} ({hint})", kind=exc.kind) from None
            raise
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises


def run_client(server: str, port: int, duration_s: float, streams: int, reverse: bool,
               retries: int = 3, backoff_s: float = 1.0, command_prefix: list[str] | None = None) -> TcpSample:
    """Run one iperf3 TCP test; retry with backoff while the server is busy with another client."""
    argv = [*(command_prefix or []), iperf3_path(), "-c", server, "-p", str(port), "-t", str(duration_s),
            "-P", str(streams), "--json"]
    if reverse:
        argv.append("-R")
    return _run(argv, lambda r: parse_tcp(r, reverse), server, port, duration_s + PROCESS_SLACK_S,
                retries, backoff_s)


def run_udp_client(server: str, port: int, duration_s: float, rate: str = "100M", streams: int = 1,
                   reverse: bool = False, retries: int = 3, backoff_s: float = 1.0,
                   command_prefix: list[str] | None = None) -> UdpSample:
    """Run one iperf3 UDP test at ``rate`` (iperf3's ``-b``): received throughput, jitter, loss."""
    parse_rate(rate)
    argv = [*(command_prefix or []), iperf3_path(), "-c", server, "-p", str(port), "-u", "-b", str(rate),
            "-t", str(duration_s), "-P", str(streams), "--json"]
    if reverse:
        argv.append("-R")
    return _run(argv, lambda r: parse_udp(r, reverse), server, port, duration_s + PROCESS_SLACK_S,
                retries, backoff_s)


def start_server(port: int, bind: str = "127.0.0.1", command_prefix: list[str] | None = None) -> subprocess.Popen:
    argv = [*(command_prefix or []), iperf3_path(), "-s", "-p", str(port), "-B", bind]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    if proc.poll() is not None:
        raise StepError(f"iperf3 server on {bind}:{port} did not start: {proc.stderr.read().strip()[:200]}")
    return proc


def stop_process(proc: subprocess.Popen, timeout_s: float = 10) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)


def summarize_samples(samples: list[TcpSample]) -> dict:
    return {
        "samples": [asdict(s) for s in samples],
        "throughput_gbps": mean_ci95([s.throughput_gbps for s in samples]),
        "retransmits": mean_ci95([float(s.retransmits) for s in samples if s.retransmits is not None]),
        "mean_rtt_ms": mean_ci95([s.mean_rtt_ms for s in samples if s.mean_rtt_ms is not None]),
    }


def summarize_udp(samples: list[UdpSample], rate: str | None = None) -> dict:
    return {
        "samples": [asdict(s) for s in samples],
        "target_rate": rate,
        "target_rate_bps": parse_rate(rate) if rate is not None else None,
        "throughput_gbps": mean_ci95([s.throughput_gbps for s in samples]),
        "jitter_ms": mean_ci95([s.jitter_ms for s in samples if s.jitter_ms is not None]),
        "loss_pct": _pooled_loss(samples),
        "lost_packets": sum(s.lost_packets for s in samples if s.lost_packets is not None),
        "packets": sum(s.packets for s in samples if s.packets is not None),
    }


def _pooled_loss(samples: list[UdpSample]) -> dict:
    """Lost over sent packets, both summed over the samples that count both (docs/metrics.md)."""
    from workload.eastwest.pooled import pooled_loss_pct

    counted = [s for s in samples if s.lost_packets is not None and s.packets]
    return pooled_loss_pct(sum(s.lost_packets for s in counted), sum(s.packets for s in counted), len(counted))
