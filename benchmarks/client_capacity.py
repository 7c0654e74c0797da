"""How much load can the client's worker processes carry, and do two scale like one? Targets: two
workers deliver >= 0.9 of one worker's token events per client CPU-second (scaling efficiency),
with p99 schedule lag <= 10 ms, open loop (Poisson arrivals) against the stand-in SSE server.

Fair comparison on a small machine: each worker gets the same offered load (requests/s x tokens;
two workers twice the total) from a stand-in server of its own, both counts run as spawned worker
processes (1, then 2, alternating), and the figure is token events per CPU-second of the worker
processes over the measured window (not per wall second). With ONE server for both workers, the
server interleaves two workers' streams on its timer ticks, each worker then finds fewer events per
wake-up and pays more per event: that measured about 0.8 on a quiet 2-core machine, an artifact of
the stand-in's write pattern (`--servers one` shows it), not of the client. The servers' CPU share
is printed: a saturated server would slow every stream alike and hide nothing here, but it must
not be starved either.

    python benchmarks/client_capacity.py        (either environment: it needs only the light client)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workload.bench.endpoints import RagStreamEndpoint  # noqa: E402
from workload.bench.loadgen import Progress  # noqa: E402
from workload.bench.merge import Part, merge_parts  # noqa: E402
from workload.bench.metrics import summarize  # noqa: E402
from workload.bench.shards import plan_shard  # noqa: E402
from workload.bench.strategies import PoissonStrategy, StopConditions, Timeouts  # noqa: E402
from workload.bench.workers import WorkerJob, run_workers  # noqa: E402

from _net import free_port, wait_listening  # noqa: E402

HERE = Path(__file__).resolve().parent


def run(urls: list[str], workers: int, args, servers: list[psutil.Process]) -> dict:
    """One open-loop scenario on ``workers`` spawned processes; its figures."""
    scale = workers if args.load == "per-worker" else 1
    rate, requests = args.rate * scale, args.requests * scale
    strategy = PoissonStrategy(rate_rps=rate, seed=args.seed)
    stop = StopConditions(max_requests=requests, max_duration_s=600)
    timeouts = Timeouts(first_token_s=10, total_s=30)
    prompts = [("p", "capacity probe")]
    jobs = [WorkerJob(urls[w % len(urls)], RagStreamEndpoint(k=1), prompts, plan_shard(strategy, stop, 20, 0, 1, w, workers), stop,
                      "capacity", args.tokens, timeouts, None, None) for w in range(workers)]
    cpu0 = [s.cpu_times() for s in servers]
    t0 = time.perf_counter()
    outcome = run_workers(jobs, Progress(requests, f"capacity x{workers}", enabled=False))
    wall_total = time.perf_counter() - t0
    cpu1 = [s.cpu_times() for s in servers]
    if outcome.failed:
        raise SystemExit(f"FAIL: {outcome.failed}")
    merged = merge_parts([Part(r.records, r.t0, r.wall_time_s, r.stopped_by) for r in outcome.runs])
    s = summarize(merged.records, merged.wall_time_s, offered_rate_rps=rate).model_dump(mode="json")
    events = sum(r.events for r in outcome.runs)
    cpu = sum(r.process_cpu_s for r in outcome.runs)  # the whole worker processes, measured window
    server_cpu = sum((b.user + b.system) - (a.user + a.system) for a, b in zip(cpu0, cpu1))
    return {"workers": workers, "rate": rate, "summary": s, "events": events, "cpu_s": cpu, "wall_s": merged.wall_time_s,
            "events_per_cpu_s": events / cpu, "events_per_s": events / merged.wall_time_s,
            "lag_p99_ms": s["schedule_lag_ms"]["p99"], "server_cpu_share": server_cpu / wall_total,
            "per_worker_cpu_s": [round(r.process_cpu_s, 2) for r in outcome.runs],
            "loop_cpu_s": sum(r.cpu_s for r in outcome.runs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s offered per worker (see --load)")
    parser.add_argument("--load", choices=["per-worker", "total"], default="per-worker",
                        help="per-worker: each worker gets --rate (2 workers: twice the total); total: both runs "
                             "get --rate in all")
    parser.add_argument("--tokens", type=int, default=50, help="token events per request")
    parser.add_argument("--itl-ms", type=float, default=5.0)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-efficiency", type=float, default=0.9)
    parser.add_argument("--max-lag-p99-ms", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each worker count, alternating (1 2 2 1 ...)")
    parser.add_argument("--servers", choices=["per-worker", "one"], default="per-worker",
                        help="per-worker: each worker streams from a stand-in server of its own, so a worker's "
                             "arrivals look alike with one worker or two; one: every worker from one server")
    parser.add_argument("--pin", choices=["split", "none"], default="none",
                        help="split: server on the first core, workers on the others; none: the scheduler's choice")
    args = parser.parse_args()

    cores = sorted(os.sched_getaffinity(0))
    ports = [free_port() for _ in range(2 if args.servers == "per-worker" else 1)]
    procs = [subprocess.Popen([sys.executable, str(HERE / "standin_sse_server.py"), "--port", str(port),
                               "--tokens", str(args.tokens), "--itl-ms", str(args.itl_ms)]) for port in ports]
    try:
        if args.pin == "split" and len(cores) >= 2:  # servers on the first core, the client's processes on the others
            for proc in procs:
                os.sched_setaffinity(proc.pid, {cores[0]})
            os.sched_setaffinity(0, set(cores[1:]))  # spawned workers inherit it
        for port in ports:
            wait_listening(port)
        servers = [psutil.Process(proc.pid) for proc in procs]
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        order = [n for k in range(args.rounds) for n in ((1, 2) if k % 2 == 0 else (2, 1))]
        runs = [run(urls, n, args, servers) for n in order]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
    load = os.getloadavg()[0]
    per = "per worker" if args.load == "per-worker" else "in all"
    placement = (f"server on core {cores[0]}, workers on {cores[1:]}" if args.pin == "split" and len(cores) >= 2
                 else "no pinning")
    print(f"offered {args.rate:g} req/s x {args.tokens} token events ({args.rate * args.tokens:,.0f} events/s) {per}, "
          f"{args.requests} requests {per}; {placement}; {args.rounds} rounds; load average {load:.1f} on "
          f"{len(cores)} CPUs")
    for r in runs:
        s = r["summary"]
        print(f"{r['workers']} worker(s) at {r['rate']:g} req/s: ok {s['completed']}/{s['requests']}, "
              f"{r['events']:,} events in {r['cpu_s']:.2f} client CPU-s {r['per_worker_cpu_s']} = "
              f"{r['events_per_cpu_s']:,.0f} events per CPU-second; {r['events_per_s']:,.0f} events/s; lag p50 "
              f"{s['schedule_lag_ms']['p50']:.2f} ms, p99 {r['lag_p99_ms']:.2f} ms; valid {s['valid']}; "
              f"server CPU {r['server_cpu_share']:.0%} of a core")
    one = statistics.median(r["events_per_cpu_s"] for r in runs if r["workers"] == 1)
    two = statistics.median(r["events_per_cpu_s"] for r in runs if r["workers"] == 2)
    efficiency = two / one
    print(f"one worker: {one:,.0f} token events per CPU-second (median; {1e6 / one:.1f} us per event)")
    print(f"scaling efficiency (2-worker / 1-worker events per CPU-second, medians): {efficiency:.3f} "
          f"(target >= {args.min_efficiency})")
    lag = max(r["lag_p99_ms"] for r in runs)
    print(f"worst p99 schedule lag {lag:.2f} ms (target <= {args.max_lag_p99_ms} ms)")
    ok = (efficiency >= args.min_efficiency and lag <= args.max_lag_p99_ms
          and all(r["summary"]["errored"] == 0 for r in runs))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
