"""How late does our client stamp the first token? Target: per request, t_first_token - t_first_byte
<= 1 ms at p50, at concurrency 16 against the local vLLM (OpenAI chat API, streaming, fixed-length
output with ignore_eos).

- "first byte" (``t_first_byte``): the first piece of the response body handed to the client by the
  HTTP layer, after the status line and headers. From vLLM this is the role-only chunk
  (``delta: {"role": "assistant", "content": ""}``), which vLLM writes in the same engine step as
  the first token, just before it.
- "first token" (``t_first_token``, DESIGN.md section 5): the first event whose text is non-empty
  (``delta.content``); a role-only or empty chunk is not a token.

Both are stamped on the same monotonic clock when a network chunk arrives, before it is parsed, so
the difference is 0 when both arrive in one chunk and otherwise the server's gap between its two
writes plus whatever delayed the client's next read (parsing the previous chunk, other streams on
the event loop). An event-loop lag probe (a 1 ms sleep, repeatedly, in the same loop during the
measured load) shows how long a ready socket can wait for the client. Run with the workload
environment, alone on the machine:

    flock .state/heavy.lock .state/venv-workload/bin/python benchmarks/client_overhead.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _local import fixed_length_prompts, local_stack  # noqa: E402

from workload.bench.endpoints import OpenAIChatEndpoint  # noqa: E402
from workload.bench.loadgen import ConcurrentStrategy, StopConditions, run_async, run_scenario  # noqa: E402
from workload.bench.metrics import distribution  # noqa: E402
from workload.llm.tiny_model import MODEL_ID  # noqa: E402


async def loop_lag(stop: asyncio.Event, interval_s: float = 0.001) -> list[float]:
    """Oversleep (ms) of repeated ``interval_s`` sleeps: how late the event loop runs a ready task."""
    lags = []
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(interval_s)
        lags.append((time.perf_counter() - t0 - interval_s) * 1000)
    return lags


async def measure(base_url: str, prompts: list[str], args):
    stop = asyncio.Event()
    probe = asyncio.create_task(loop_lag(stop))
    try:
        result = await run_scenario(
            base_url, OpenAIChatEndpoint(model=MODEL_ID, ignore_eos=True),
            [(str(i), p) for i, p in enumerate(prompts)], ConcurrentStrategy(concurrency=args.concurrency),
            StopConditions(max_requests=args.requests), max_tokens=args.output_tokens,
            warmup_requests=args.warmup, progress=False, connect_samples=0)
    finally:
        stop.set()
    return result, await probe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=320)
    parser.add_argument("--warmup", type=int, default=16)
    parser.add_argument("--input-tokens", type=int, default=128)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--max-p50-ms", type=float, default=1.0)
    parser.add_argument("--pin", choices=("after", "before", "none"), default="after",
                        help="pin this process to the last core after the server started (vLLM's CPU engine "
                             "binds itself to the first core), before (the whole server inherits the last "
                             "core), or not at all")
    args = parser.parse_args()

    cores = sorted(os.sched_getaffinity(0))
    if args.pin == "before" and len(cores) >= 2:
        os.sched_setaffinity(0, {cores[-1]})
    with local_stack() as stack:
        if args.pin == "after" and len(cores) >= 2:
            os.sched_setaffinity(0, {cores[-1]})
        print(f"client on cores {sorted(os.sched_getaffinity(0))}")
        prompts = fixed_length_prompts(stack, args.requests + args.warmup, args.input_tokens)
        result, lags = run_async(measure(stack.llm_url, prompts, args))

    measured = [r for r in result.records if not r.warmup]
    ok = [r for r in measured if r.ok]
    gaps = [(r.t_first_token - r.t_first_byte) * 1000 for r in ok
            if r.t_first_token is not None and r.t_first_byte is not None]
    if not gaps:
        print(f"FAIL: no request got a first token ({len(ok)}/{len(measured)} ok; "
              f"errors {[r.error_code for r in measured if not r.ok][:5]})")
        return 1
    same_chunk = sum(1 for g in gaps if g == 0)
    d = distribution(gaps)
    lag = distribution(lags)
    ttft = distribution(r.ttft_ms for r in ok)
    print(f"client overhead at concurrency {args.concurrency}: {len(ok)}/{len(measured)} requests ok, "
          f"{args.input_tokens} input / {args.output_tokens} output tokens (ignore_eos)")
    print(f"t_first_token - t_first_byte (ms, n={d['count']}): p50 {d['p50']:.3f}  p90 {d['p90']:.3f}  "
          f"p99 {d['p99']:.3f}  mean {d['mean']:.3f}  max {d['max']:.3f}")
    print(f"first token in the same network chunk as the first byte: {same_chunk}/{len(gaps)}")
    print(f"TTFT (ms): p50 {ttft['p50']:.2f}  p99 {ttft['p99']:.2f}")
    print(f"event-loop lag during the load (ms, n={lag['count']}): p50 {lag['p50']:.3f}  p90 {lag['p90']:.3f}  "
          f"p99 {lag['p99']:.3f}")
    ok_run = len(ok) == len(measured) and d["count"] > 0 and d["p50"] <= args.max_p50_ms
    print(f"{'PASS' if ok_run else 'FAIL'}: p50 {d['p50']:.3f} ms (target <= {args.max_p50_ms} ms)")
    return 0 if ok_run else 1


if __name__ == "__main__":
    sys.exit(main())
