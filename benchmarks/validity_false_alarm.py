"""Does the open-loop validity gate judge the client, and only the client? Targets: <= 1% of correct
runs marked invalid; every run of a CPU-starved client marked invalid.

A stand-in SSE server (TTFT 200 ms, 50 tokens 10 ms apart; benchmarks/standin_sse_server.py) runs
in its own process on one core; the client runs in this process, pinned to the other core.

1. Correct runs: open loop (Poisson) at several rates, seeds and sizes (32 requests included); a
   run counts as a false alarm when the summary says ``valid: false``. The client and the server
   run under the lowest real-time priority (SCHED_RR 1; it needs CAP_SYS_NICE, else they stay as
   they are and the script says so), standing in for a load generator with a core of its own: on
   a shared machine the other processes would otherwise starve the client, and a starved client
   *should* be marked invalid, which is the second half. Both are mostly idle, so the real-time
   class costs the rest of the machine little.
2. Starved runs: the client, back in the normal scheduling class, shares its core with busy-loop
   processes (bounded in time) at a load that needs more of the core than it then gets; every one
   of these runs must be marked invalid.

The share of each is printed; the exit status is non-zero when either target is missed. Run it
alone, with the workload environment (it needs only the light client):

    python benchmarks/validity_false_alarm.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _net import free_port, wait_listening  # noqa: E402

from workload.bench.endpoints import RagStreamEndpoint  # noqa: E402
from workload.bench.loadgen import PoissonStrategy, StopConditions, Timeouts, run_async, run_scenario  # noqa: E402
from workload.bench.metrics import summarize  # noqa: E402

HERE = Path(__file__).resolve().parent
# (rate req/s, requests): 32 requests at the DAG's rates, plus smaller and larger runs.
CORRECT = [(4.0, 32), (8.0, 16), (8.0, 32), (16.0, 32), (16.0, 64), (32.0, 32), (32.0, 64)]
STARVED = [(64.0, 96), (32.0, 64)]
BUSY_SECONDS_MAX = 30.0  # a busy loop never outlives this, whatever happens to this script


def one_run(url: str, rate: float, requests: int, seed: int) -> dict:
    result = run_async(run_scenario(
        url, RagStreamEndpoint(k=0), [("p", "validity probe")], PoissonStrategy(rate_rps=rate, seed=seed),
        StopConditions(max_requests=requests, max_duration_s=60), scenario="validity", max_tokens=50,
        warmup_requests=1, timeouts=Timeouts(first_token_s=10, total_s=30), progress=False, connect_samples=0))
    return summarize(result.records, result.wall_time_s, offered_rate_rps=rate).model_dump(mode="json")


def line(kind: str, rate: float, requests: int, seed: int, s: dict) -> str:
    v = s["validity"]
    ratio = v["send_rate_ratio"]
    return (f"{kind:8s} {rate:5g} req/s x {requests:3d} seed {seed:2d}: lag p50 {v['schedule_lag_p50_ms']:7.2f} "
            f"p99 {v['schedule_lag_p99_ms']:7.2f} ms (limit {v['schedule_lag_p99_limit_ms']:5.1f}), send rate "
            f"{'-' if ratio is None else f'{ratio:.3f}'} -> {'valid' if s['valid'] else s['invalid_reason']}")


def set_realtime(on: bool) -> bool:
    """Move this process into (or out of) the lowest real-time priority; False when not allowed."""
    try:
        if on:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
        else:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        return True
    except PermissionError:
        print("not allowed to use the real-time class: the correct runs share the machine as it is")
        return False


def busy_loops(core: int, count: int, seconds: float) -> list[subprocess.Popen]:
    seconds = min(seconds, BUSY_SECONDS_MAX)
    code = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(count)]
    for p in procs:
        os.sched_setaffinity(p.pid, {core})
    return procs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8, help="seeds per correct (rate, size) pair")
    parser.add_argument("--starved-seeds", type=int, default=3)
    parser.add_argument("--no-realtime", action="store_true", help="leave the client in the normal class")
    parser.add_argument("--busy-loops", type=int, default=2, help="busy-loop processes on the client's core")
    parser.add_argument("--max-false-alarm", type=float, default=0.01)
    args = parser.parse_args()

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("needs two cores: one for the stand-in server, one for the client")
    server_core, client_core = cores[0], cores[1]
    realtime = not args.no_realtime and set_realtime(True)  # inherited by the server
    port = free_port()
    server = subprocess.Popen([sys.executable, str(HERE / "standin_sse_server.py"), "--port", str(port),
                               "--tokens", "50", "--itl-ms", "10", "--ttft-ms", "200"])
    url = f"http://127.0.0.1:{port}"
    correct, starved = [], []
    try:
        os.sched_setaffinity(server.pid, {server_core})
        os.sched_setaffinity(0, {client_core})
        wait_listening(port)
        t0 = time.monotonic()
        for rate, requests in CORRECT:
            for seed in range(1, args.seeds + 1):
                s = one_run(url, rate, requests, seed)
                correct.append(s)
                print(line("correct", rate, requests, seed, s), flush=True)
        set_realtime(False)
        for rate, requests in STARVED:
            for seed in range(1, args.starved_seeds + 1):
                procs = busy_loops(client_core, args.busy_loops, requests / rate + 5)
                try:
                    time.sleep(0.2)
                    s = one_run(url, rate, requests, seed)
                finally:
                    for p in procs:
                        p.kill()
                        p.wait(timeout=10)
                starved.append(s)
                print(line("starved", rate, requests, seed, s), flush=True)
        elapsed = time.monotonic() - t0
    finally:
        server.terminate()
        server.wait(timeout=10)

    false_alarms = sum(1 for s in correct if not s["valid"])
    flagged = sum(1 for s in starved if not s["valid"])
    fa_share, flagged_share = false_alarms / len(correct), flagged / len(starved)
    print(f"correct runs marked invalid: {false_alarms}/{len(correct)} = {fa_share:.1%} "
          f"(target <= {args.max_false_alarm:.0%})")
    print(f"starved runs marked invalid: {flagged}/{len(starved)} = {flagged_share:.0%} (target 100%; "
          f"{args.busy_loops} busy loops on the client's core)")
    print(f"took {elapsed:.0f} s; correct runs {'real-time (SCHED_RR 1)' if realtime else 'normal class'}; "
          f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    ok = fa_share <= args.max_false_alarm and flagged == len(starved)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
