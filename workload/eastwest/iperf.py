"""East-West network probe: iperf3 in JSON mode, parsed into throughput, retransmits and RTT."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass

from workload.errors import StepError

IPERF3_MISSING = ("iperf3 not found on PATH: install it (Debian/Ubuntu: `sudo apt-get install iperf3`, "
                  "macOS: `brew install iperf3`) and run again")

# t-distribution two-sided 95% critical values for small sample counts (df = n - 1).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
        10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}


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


class IperfError(Exception):
    def __init__(self, message: str, busy: bool = False) -> None:
        super().__init__(message)
        self.busy = busy


def parse_tcp(report: dict, reverse: bool = False) -> TcpSample:
    """One iperf3 ``--json`` TCP client report -> a sample. Raises IperfError on iperf3's own error."""
    if report.get("error"):
        message = str(report["error"])
        raise IperfError(message, busy="busy" in message.lower())
    end = report.get("end") or {}
    received = end.get("sum_received") or {}
    sent = end.get("sum_sent") or {}
    if not received.get("bits_per_second"):
        raise IperfError("iperf3 report has no received throughput")
    rtts = [s["sender"]["mean_rtt"] for s in end.get("streams", [])
            if isinstance(s.get("sender"), dict) and s["sender"].get("mean_rtt") is not None]
    start = report.get("start", {}).get("test_start", {})
    return TcpSample(
        throughput_gbps=received["bits_per_second"] / 1e9,
        retransmits=sent.get("retransmits"),
        mean_rtt_ms=(sum(rtts) / len(rtts) / 1000) if rtts else None,  # iperf3 reports microseconds
        duration_s=float(received.get("seconds") or start.get("duration") or 0),
        streams=int(start.get("num_streams") or len(end.get("streams", [])) or 1),
        reverse=reverse,
    )


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


def run_client(server: str, port: int, duration_s: float, streams: int, reverse: bool,
               retries: int = 3, backoff_s: float = 1.0, command_prefix: list[str] | None = None) -> TcpSample:
    """Run one iperf3 TCP test; retry with backoff while the server is busy with another client."""
    argv = [*(command_prefix or []), iperf3_path(), "-c", server, "-p", str(port), "-t", str(duration_s),
            "-P", str(streams), "--json"]
    if reverse:
        argv.append("-R")
    last: IperfError | None = None
    for attempt in range(retries + 1):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 30)
        try:
            report = json.loads(proc.stdout)
        except ValueError:
            raise IperfError(f"iperf3 gave no JSON (exit {proc.returncode}): "
                             f"{(proc.stderr or proc.stdout).strip()[:200]}") from None
        try:
            return parse_tcp(report, reverse)
        except IperfError as exc:
            last = exc
            if not exc.busy or attempt == retries:
                raise
            time.sleep(backoff_s * 2**attempt)
    raise last  # pragma: no cover - loop always returns or raises


def start_server(port: int, bind: str = "127.0.0.1", command_prefix: list[str] | None = None) -> subprocess.Popen:
    argv = [*(command_prefix or []), iperf3_path(), "-s", "-p", str(port), "-B", bind]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    if proc.poll() is not None:
        raise StepError(f"iperf3 server on {bind}:{port} did not start: {proc.stderr.read().strip()[:200]}")
    return proc


def summarize_samples(samples: list[TcpSample]) -> dict:
    return {
        "samples": [asdict(s) for s in samples],
        "throughput_gbps": mean_ci95([s.throughput_gbps for s in samples]),
        "retransmits": mean_ci95([float(s.retransmits) for s in samples if s.retransmits is not None]),
        "mean_rtt_ms": mean_ci95([s.mean_rtt_ms for s in samples if s.mean_rtt_ms is not None]),
    }
