"""Request/response latency probe: a tiny TCP echo server and a client timing small round trips.

The client connects once (TCP_NODELAY), sends a few warm-up messages that are not counted, then
sends ``payload_bytes`` and waits for the same bytes back, ``round_trips`` times or until
``time_budget_s`` runs out (the sample then says ``truncated``). A round trip is timed on the
client's monotonic clock (``time.perf_counter_ns``). Percentiles use linear interpolation
(``workload.bench.metrics.percentile``, as for the North-South figures).

Both sides also run as processes, so the probe can run between two network namespaces or two pods:

    python -m workload.eastwest.latency serve --bind 0.0.0.0 --port 15202
    python -m workload.eastwest.latency client --host 10.203.0.2 --port 15202 --round-trips 1000

``serve`` prints ``ready <host> <port>`` once it listens; ``client`` prints one JSON sample (or
``{"error": ...}`` and exits 1).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import socketserver
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workload.bench.metrics import percentile

MAX_ROUND_TRIPS = 100_000
MAX_PAYLOAD_BYTES = 65_536
MAX_TIME_BUDGET_S = 120.0
WARMUP_ROUND_TRIPS = 10


class LatencyError(Exception):
    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class LatencySample:
    round_trips: int
    payload_bytes: int
    truncated: bool  # the time budget ran out before all round trips were done
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    seconds: float
    # every timed round trip, for percentiles pooled over samples (docs/metrics.md)
    times_ms: list[float] = field(default_factory=list)


def check_bounds(round_trips: int, payload_bytes: int, time_budget_s: float) -> None:
    if not 1 <= round_trips <= MAX_ROUND_TRIPS:
        raise LatencyError(f"round_trips must be 1..{MAX_ROUND_TRIPS}, got {round_trips}", "bad_input")
    if not 1 <= payload_bytes <= MAX_PAYLOAD_BYTES:
        raise LatencyError(f"payload_bytes must be 1..{MAX_PAYLOAD_BYTES}, got {payload_bytes}", "bad_input")
    if not 0 < time_budget_s <= MAX_TIME_BUDGET_S:
        raise LatencyError(f"time_budget_s must be in (0, {MAX_TIME_BUDGET_S:g}], got {time_budget_s}", "bad_input")


def summarize_round_trips(times_ms: list[float], payload_bytes: int, truncated: bool, seconds: float) -> LatencySample:
    if not times_ms:
        raise LatencyError("no round trip completed", "no_data")
    return LatencySample(
        round_trips=len(times_ms), payload_bytes=payload_bytes, truncated=truncated,
        p50_ms=percentile(times_ms, 50), p90_ms=percentile(times_ms, 90), p99_ms=percentile(times_ms, 99),
        mean_ms=sum(times_ms) / len(times_ms), min_ms=min(times_ms), max_ms=max(times_ms), seconds=seconds,
        times_ms=[round(t, 4) for t in times_ms])


def _recv_exact(sock: socket.socket, n: int) -> None:
    got = 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            raise LatencyError("the echo server closed the connection", "closed")
        got += len(chunk)


def measure(host: str, port: int, round_trips: int = 1000, payload_bytes: int = 32, time_budget_s: float = 5.0,
            connect_timeout_s: float = 3.0, io_timeout_s: float = 2.0,
            warmup: int = WARMUP_ROUND_TRIPS) -> LatencySample:
    """One sample: ``round_trips`` timed echoes of ``payload_bytes`` over one TCP connection."""
    check_bounds(round_trips, payload_bytes, time_budget_s)
    payload = b"r" * payload_bytes
    try:
        sock = socket.create_connection((host, port), timeout=connect_timeout_s)
    except ConnectionRefusedError:
        raise LatencyError(f"connection refused by {host}:{port}: is the echo server "
                           "(python -m workload.eastwest.latency serve) running and the port right?",
                           "refused") from None
    except TimeoutError:
        raise LatencyError(f"no answer from {host}:{port} within {connect_timeout_s:g} s", "unreachable") from None
    except OSError as exc:
        raise LatencyError(f"cannot connect to {host}:{port}: {exc.strerror or exc}", "unreachable") from None
    times: list[float] = []
    truncated = False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(io_timeout_s)
        for _ in range(warmup):
            sock.sendall(payload)
            _recv_exact(sock, payload_bytes)
        start = time.perf_counter()
        deadline = start + time_budget_s
        for _ in range(round_trips):
            t0 = time.perf_counter_ns()
            sock.sendall(payload)
            _recv_exact(sock, payload_bytes)
            times.append((time.perf_counter_ns() - t0) / 1e6)
            if time.perf_counter() >= deadline and len(times) < round_trips:
                truncated = True
                break
        seconds = time.perf_counter() - start
    except TimeoutError:
        raise LatencyError(f"no echo from {host}:{port} within {io_timeout_s:g} s "
                           f"(after {len(times)} round trips)", "timeout") from None
    except OSError as exc:
        raise LatencyError(f"the connection to {host}:{port} failed after {len(times)} round trips: "
                           f"{exc.strerror or exc}", "closed") from None
    finally:
        sock.close()
    return summarize_round_trips(times, payload_bytes, truncated, seconds)


# --------------------------------------------------------------------------- server


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request.settimeout(60)
        try:
            while data := self.request.recv(MAX_PAYLOAD_BYTES):
                self.request.sendall(data)
        except OSError:
            pass


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, bind: str, port: int) -> None:
        super().__init__((bind, port), _EchoHandler)


# --------------------------------------------------------------------------- as processes


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def _argv(command_prefix: list[str] | None, *args: str) -> list[str]:
    return [*(command_prefix or []), sys.executable, "-m", "workload.eastwest.latency", *args]


def _env() -> dict[str, str]:
    # The child imports this very package (also inside `ip netns exec`, whose cwd may differ).
    root = _package_root()
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def start_server_process(bind: str, port: int, command_prefix: list[str] | None = None,
                         ready_timeout_s: float = 15.0) -> subprocess.Popen:
    """Start ``serve`` as a process; returns once it listens. Raises LatencyError if it does not."""
    proc = subprocess.Popen(_argv(command_prefix, "serve", "--bind", bind, "--port", str(port)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + ready_timeout_s
    line = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            line = proc.stdout.readline()
            break
        if proc.poll() is not None:
            break
    if not line.startswith("ready"):
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        err = (proc.stderr.read() or "").strip().splitlines()
        raise LatencyError(f"the echo server on {bind}:{port} did not start: "
                           f"{err[-1] if err else 'no ready line within %g s' % ready_timeout_s}", "server")
    return proc


def run_client_process(host: str, port: int, round_trips: int = 1000, payload_bytes: int = 32,
                       time_budget_s: float = 5.0, command_prefix: list[str] | None = None) -> LatencySample:
    """One sample measured by a ``client`` process (e.g. inside a network namespace)."""
    check_bounds(round_trips, payload_bytes, time_budget_s)
    argv = _argv(command_prefix, "client", "--host", host, "--port", str(port), "--round-trips", str(round_trips),
                 "--payload-bytes", str(payload_bytes), "--time-budget", str(time_budget_s))
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=_env(), timeout=time_budget_s + 30)
    except subprocess.TimeoutExpired:
        raise LatencyError(f"the latency client did not finish within {time_budget_s + 30:g} s", "timeout") from None
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise LatencyError(f"the latency client gave no JSON (exit {proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()[-200:]}", "no_json") from None
    if "error" in out:
        raise LatencyError(out["error"], out.get("kind", "error"))
    return LatencySample(**out)


def summarize_samples(samples: list[LatencySample]) -> dict:
    """p50, p99 and mean of every round trip of every sample, pooled (workload.eastwest.pooled);
    the per-sample figures stay under ``samples`` (without their raw round trips)."""
    from workload.eastwest.pooled import pooled_mean, pooled_percentile

    pooled = [t for s in samples for t in s.times_ms]
    return {
        "samples": [{k: v for k, v in asdict(s).items() if k != "times_ms"} for s in samples],
        "payload_bytes": samples[0].payload_bytes if samples else None,
        "round_trips": sum(s.round_trips for s in samples),
        "truncated": any(s.truncated for s in samples),
        "p50_ms": pooled_percentile(pooled, 50, len(samples)),
        "p99_ms": pooled_percentile(pooled, 99, len(samples)),
        "mean_ms": pooled_mean(pooled, len(samples)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workload.eastwest.latency", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="echo every byte back")
    s.add_argument("--bind", default="0.0.0.0")
    s.add_argument("--port", type=int, default=15202)
    c = sub.add_parser("client", help="measure one sample, print it as JSON")
    c.add_argument("--host", required=True)
    c.add_argument("--port", type=int, default=15202)
    c.add_argument("--round-trips", type=int, default=1000)
    c.add_argument("--payload-bytes", type=int, default=32)
    c.add_argument("--time-budget", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.command == "serve":
        try:
            server = EchoServer(args.bind, args.port)
        except OSError as exc:
            print(f"cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"ready {args.bind} {args.port}", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
        return 0
    try:
        sample = measure(args.host, args.port, args.round_trips, args.payload_bytes, args.time_budget)
    except LatencyError as exc:
        print(json.dumps({"error": str(exc), "kind": exc.kind}))
        return 1
    print(json.dumps(asdict(sample)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
