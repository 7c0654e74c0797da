"""Does vLLM on CPU answer later after it has been idle? Why rag_overhead.py paces its direct arm.

One local vLLM confined to the first core, this client (the service's LLM client) on the last.
Requests alternate one by one: one sent as soon as the previous ended, the next after an idle
pause of ``--pause-ms`` (several pauses, one pass each). Alternating request by request puts any
drift or other load on both kinds alike. Prints the first-chunk p50 of each kind and their
difference per pause; no target (exit 0 unless a call fails). A RAG request reaches vLLM after the
service's retrieval, with vLLM idle meanwhile at concurrency 1, so a back-to-back direct arm would
charge the service with whatever penalty this shows. Run with the workload environment:

    .state/venv-workload/bin/python benchmarks/vllm_idle_penalty.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

from haystack.dataclasses import ChatMessage

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _local import fixed_length_prompts, local_stack  # noqa: E402

from workload.bench.loadgen import run_async  # noqa: E402
from workload.bench.metrics import percentile  # noqa: E402
from workload.llm.tiny_model import MODEL_ID  # noqa: E402
from workload.service.llm import VllmChatGenerator  # noqa: E402


async def alternate(llm_url: str, prompts: list[str], pause_s: float, requests: int, output_tokens: int):
    gen = VllmChatGenerator(api_base_url=f"{llm_url}/v1", model=MODEL_ID)
    firsts: dict[str, list[float]] = {"back-to-back": [], "after pause": []}
    kwargs = {"max_tokens": output_tokens, "ignore_eos": True,
              "stream_options": {"include_usage": True, "continuous_usage_stats": True}}
    try:
        for i in range(requests + 10):  # the first 10 warm up
            kind = "after pause" if i % 2 else "back-to-back"
            if i % 2:
                await asyncio.sleep(pause_s)
            first: list[float] = []

            async def on_chunk(_chunk) -> None:
                if not first:
                    first.append(time.perf_counter())

            t0 = time.perf_counter()
            await gen.run_async(messages=[ChatMessage.from_user(prompts[i % len(prompts)])],
                                streaming_callback=on_chunk, generation_kwargs=kwargs)
            if i >= 10:
                firsts[kind].append((first[0] - t0) * 1000)
    finally:
        await gen.aclose()
    return firsts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pause-ms", type=float, nargs="+", default=[5, 30, 100])
    parser.add_argument("--requests", type=int, default=200, help="per pause, both kinds together")
    parser.add_argument("--input-tokens", type=int, default=300)
    parser.add_argument("--output-tokens", type=int, default=32)
    args = parser.parse_args()

    cores = sorted(os.sched_getaffinity(0))
    pin = len(cores) >= 2
    with local_stack(llm_cores={cores[0]} if pin else None, other_cores={cores[-1]} if pin else None) as stack:
        prompts = fixed_length_prompts(stack, 20, args.input_tokens)
        print(f"vLLM on core {cores[0]}, client on core {cores[-1]}" if pin else "vLLM and client on any core")
        for pause_ms in args.pause_ms:
            try:
                firsts = run_async(alternate(stack.llm_url, prompts, pause_ms / 1000, args.requests,
                                             args.output_tokens))
            except Exception as exc:  # noqa: BLE001 - a failed call fails the run
                print(f"FAIL: a call failed: {type(exc).__name__}: {exc}")
                return 1
            b2b, paused = percentile(firsts["back-to-back"], 50), percentile(firsts["after pause"], 50)
            print(f"pause {pause_ms:g} ms: first chunk p50 back-to-back {b2b:.2f} ms, after the pause "
                  f"{paused:.2f} ms: {paused - b2b:+.2f} ms ({len(firsts['after pause'])} requests each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
