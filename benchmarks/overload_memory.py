"""Does the service stay bounded under overload? Drive 4x the normal concurrency for one minute
against a replica admitting the normal concurrency (max_inflight), and compare the service's
memory before and after. Target: the service's resident memory grows by less than 20%, and the
excess is refused with 503 `overloaded` (counted), while admitted streams complete.

"Service" is the RAG service's whole process tree (the Ray Serve driver, Ray's own processes,
the Serve controller, HTTP proxy and replica); vLLM is not included. "Before" is measured after a
warm-up minute at the normal concurrency, so caches and allocator pools are already in place.
Local addresses only; the load is bounded in count and time. Run:

    .state/venv-workload/bin/python benchmarks/overload_memory.py
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _local import local_stack  # noqa: E402
from rag_overhead import passages  # noqa: E402

from workload.bench.endpoints import RagStreamEndpoint  # noqa: E402
from workload.bench.loadgen import ConcurrentStrategy, StopConditions, Timeouts, run_async, run_scenario  # noqa: E402
from workload.bench.northsouth import DEFAULT_QUESTIONS, load_prompts  # noqa: E402


def service_rss(pid: int) -> dict[str, int]:
    """Resident bytes of the service's process tree, by process title."""
    out: dict[str, int] = collections.Counter()
    root = psutil.Process(pid)
    for p in [root, *root.children(recursive=True)]:
        try:
            name = " ".join(p.cmdline()[:1]).rsplit("/", 1)[-1][:40] or p.name()
            out[name] += p.memory_info().rss
        except psutil.Error:
            pass
    return dict(out)


def load(url: str, concurrency: int, seconds: float, max_tokens: int) -> collections.Counter:
    prompts = load_prompts(DEFAULT_QUESTIONS, 0, False, 0)
    result = run_async(run_scenario(
        url, RagStreamEndpoint(k=4, ignore_eos=True), prompts, ConcurrentStrategy(concurrency=concurrency),
        StopConditions(max_requests=1_000_000, max_duration_s=seconds), max_tokens=max_tokens,
        warmup_requests=0, progress=False, connect_samples=0,
        timeouts=Timeouts(first_token_s=30, total_s=60)))
    outcomes = collections.Counter()
    for r in result.records:
        outcomes["ok" if r.ok else f"HTTP {r.http_status}" if r.error_code == "http_error" else r.error_code] += 1
    return outcomes


def mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16, help="the normal load; max_inflight is set to it")
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--output-tokens", type=int, default=32)
    parser.add_argument("--max-growth", type=float, default=0.20)
    args = parser.parse_args()

    os.environ["RAGBENCH_MAX_INFLIGHT"] = str(args.concurrency)  # read by the replica's settings
    with local_stack(with_service=True) as stack:
        httpx.post(f"{stack.service_url}/ingest", json={"documents": passages(200)}, timeout=600).raise_for_status()
        pid = stack.service.pid()
        warm = load(stack.service_url, args.concurrency, args.seconds, args.output_tokens)
        before = service_rss(pid)
        over = load(stack.service_url, args.concurrency * args.factor, args.seconds, args.output_tokens)
        after = service_rss(pid)
        metrics = httpx.get(f"{stack.service_url}/metrics").text
        inflight = httpx.get(f"{stack.service_url}/readyz").json().get("inflight")

    rejected = [line for line in metrics.splitlines() if line.startswith("ragbench_rejected_total")]
    print(f"warm-up at concurrency {args.concurrency} for {args.seconds:g} s: {dict(warm)}")
    print(f"overload at concurrency {args.concurrency * args.factor} for {args.seconds:g} s "
          f"(max_inflight {args.concurrency}): {dict(over)}")
    print(f"service counter: {rejected[0] if rejected else 'ragbench_rejected_total missing'}; in flight after: {inflight}")
    print(f"{'process':<42}{'before':>12}{'after':>12}{'change':>12}")
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name, 0), after.get(name, 0)
        print(f"{name:<42}{mb(b):>12}{mb(a):>12}{mb(a - b):>12}")
    total_b, total_a = sum(before.values()), sum(after.values())
    growth = (total_a - total_b) / total_b
    print(f"{'service total':<42}{mb(total_b):>12}{mb(total_a):>12}{growth:>+12.1%}")
    failures = []
    if growth > args.max_growth:
        failures.append(f"service memory grew {growth:+.1%} > {args.max_growth:+.0%}")
    if over.get("HTTP 503", 0) == 0:
        failures.append("no request was refused with 503 at 4x the admitted concurrency")
    if over.get("ok", 0) == 0:
        failures.append("no admitted stream completed under overload")
    if set(over) - {"ok", "HTTP 503"}:
        failures.append(f"failures other than 503: {dict(over)}")
    if inflight != 0:
        failures.append(f"{inflight} queries still in flight after the load")
    if failures:
        print("FAIL: " + "; ".join(failures))
        return 1
    print(f"PASS: memory {growth:+.1%} (limit {args.max_growth:+.0%}), {over['HTTP 503']} refused with 503, "
          f"{over['ok']} completed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
