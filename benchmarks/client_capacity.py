"""Can one client process on one core keep up? Target: >= 5,000 token events/s sustained with p99
schedule lag <= 10 ms, open loop (Poisson arrivals), against a fast local stand-in SSE source.

The stand-in server runs in its own process on the other core; the client is pinned to one core.
The client's own figures are checked against the offered load in the same run:

    python benchmarks/client_capacity.py        (either environment: it needs only the light client)
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _local import free_port  # noqa: E402

from workload.bench.endpoints import RagStreamEndpoint  # noqa: E402
from workload.bench.loadgen import PoissonStrategy, StopConditions, Timeouts, run_async, run_scenario  # noqa: E402
from workload.bench.metrics import summarize  # noqa: E402

HERE = Path(__file__).resolve().parent


def wait_listening(port: int, timeout_s: float = 10) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"stand-in server did not listen on {port}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=120.0, help="requests/s offered")
    parser.add_argument("--tokens", type=int, default=50, help="token events per request")
    parser.add_argument("--itl-ms", type=float, default=5.0)
    parser.add_argument("--requests", type=int, default=1800)
    parser.add_argument("--target-events-per-s", type=float, default=5000)
    parser.add_argument("--max-lag-p99-ms", type=float, default=10)
    args = parser.parse_args()

    cores = sorted(os.sched_getaffinity(0))
    port = free_port()
    server = subprocess.Popen([sys.executable, str(HERE / "standin_sse_server.py"), "--port", str(port),
                               "--tokens", str(args.tokens), "--itl-ms", str(args.itl_ms)])
    try:
        if len(cores) >= 2:  # client and server on different cores
            os.sched_setaffinity(server.pid, {cores[0]})
            os.sched_setaffinity(0, {cores[1]})
        wait_listening(port)
        result = run_async(run_scenario(
            f"http://127.0.0.1:{port}", RagStreamEndpoint(k=0), [("p", "capacity probe")],
            PoissonStrategy(rate_rps=args.rate), StopConditions(max_requests=args.requests, max_duration_s=120),
            scenario="capacity", max_tokens=args.tokens, warmup_requests=20,
            timeouts=Timeouts(first_token_s=10, total_s=30), progress=False))
    finally:
        server.terminate()
        server.wait(timeout=10)
    s = summarize(result.records, result.wall_time_s, offered_rate_rps=args.rate).model_dump(mode="json")
    measured = [r for r in result.records if not r.warmup and r.ok]
    events = sum(len(r.token_times) for r in measured)
    events_per_s = events / result.wall_time_s
    lag_p99 = s["schedule_lag_ms"]["p99"]
    print(f"client on core {cores[-1]} of {len(cores)}; offered {args.rate:g} req/s x {args.tokens} tokens")
    print(f"requests ok {s['completed']}/{s['requests']}, achieved/offered {s['achieved_rate_rps'] / args.rate:.3f}")
    print(f"token events/s: {events_per_s:,.0f} (target >= {args.target_events_per_s:,.0f}; "
          f"ratio {events_per_s / args.target_events_per_s:.2f})")
    print(f"schedule lag p50 {s['schedule_lag_ms']['p50']:.2f} ms, p99 {lag_p99:.2f} ms "
          f"(target <= {args.max_lag_p99_ms} ms)")
    ok = (events_per_s >= args.target_events_per_s and lag_p99 <= args.max_lag_p99_ms and s["errored"] == 0)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
