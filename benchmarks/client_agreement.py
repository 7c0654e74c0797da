"""Does our load generator agree with an independent client? Target: within +-5% of vLLM's own
`vllm bench serve` client on mean TTFT, mean TPOT and output tokens/s.

Both clients hit the same local vLLM server (OpenAI chat API, streaming) with the same prompts
(all of one exact token length), the same output length (ignore_eos) and the same concurrency.
They take turns, several rounds, so that machine noise falls on both alike; the figures compared
are the means over rounds. Run with the workload environment:

    .state/venv-workload/bin/python benchmarks/client_agreement.py
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _local import fixed_length_prompts, local_stack  # noqa: E402

from workload.bench.endpoints import OpenAIChatEndpoint  # noqa: E402
from workload.bench.loadgen import ConcurrentStrategy, StopConditions, run_async, run_scenario  # noqa: E402
from workload.bench.metrics import summarize  # noqa: E402
from workload.llm.tiny_model import MODEL_ID  # noqa: E402


def ours(base_url: str, prompts: list[str], args) -> dict:
    result = run_async(run_scenario(
        base_url, OpenAIChatEndpoint(model=MODEL_ID, ignore_eos=True),
        [(str(i), p) for i, p in enumerate(prompts)], ConcurrentStrategy(concurrency=args.concurrency),
        StopConditions(max_requests=args.requests), max_tokens=args.output_tokens,
        warmup_requests=args.warmup, progress=False))
    s = summarize(result.records, result.wall_time_s)
    if s["errored"]:
        raise SystemExit(f"our client: requests failed {s['errors_by_code']}")
    return {"mean_ttft_ms": s["ttft_ms"]["mean"], "mean_tpot_ms": s["tpot_ms"]["mean"],
            "output_tokens_per_s": s["output_tokens_per_s"]}


def theirs(base_url: str, dataset: Path, tokenizer_dir: Path, args) -> dict:
    from vllm.benchmarks.serve import add_cli_args, main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    bench_args = parser.parse_args([
        "--backend", "openai-chat", "--base-url", base_url, "--endpoint", "/v1/chat/completions",
        "--model", MODEL_ID, "--tokenizer", str(tokenizer_dir), "--dataset-name", "sharegpt",
        "--dataset-path", str(dataset), "--sharegpt-output-len", str(args.output_tokens),
        "--num-prompts", str(args.requests), "--max-concurrency", str(args.concurrency),
        "--ignore-eos", "--num-warmups", str(args.warmup), "--disable-tqdm", "--seed", "0",
    ])
    r = main(bench_args)
    if r.get("failed"):
        raise SystemExit(f"vllm bench serve: {r['failed']} requests failed")
    return {"mean_ttft_ms": float(r["mean_ttft_ms"]), "mean_tpot_ms": float(r["mean_tpot_ms"]),
            "output_tokens_per_s": float(r["output_throughput"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--input-tokens", type=int, default=128)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup-rounds", type=int, default=1, help="rounds run first and not counted")
    parser.add_argument("--tolerance", type=float, default=0.05)
    args = parser.parse_args()

    with local_stack() as stack, tempfile.TemporaryDirectory() as tmp:
        prompts = fixed_length_prompts(stack, args.requests + args.warmup, args.input_tokens)
        dataset = Path(tmp) / "prompts.json"  # ShareGPT layout, which vllm bench reads without pandas
        dataset.write_text(json.dumps([{"conversations": [{"value": p}, {"value": "x"}]} for p in prompts]))
        runs: dict[str, list[dict]] = {"ours": [], "vllm bench serve": []}
        tokenizer_dir = stack.state_dir / "models" / "tiny-qwen2"
        for _ in range(args.warmup_rounds):  # a cold server (caches, allocator) favours whoever runs second
            ours(stack.llm_url, prompts, args)
            theirs(stack.llm_url, dataset, tokenizer_dir, args)
        for i in range(args.rounds):
            runs["ours"].append(ours(stack.llm_url, prompts, args))
            runs["vllm bench serve"].append(theirs(stack.llm_url, dataset, tokenizer_dir, args))
            print(f"round {i + 1}: ours {runs['ours'][-1]} | vllm {runs['vllm bench serve'][-1]}", flush=True)

    def mean(name: str, key: str) -> float:
        return sum(r[key] for r in runs[name]) / len(runs[name])

    print(f"\nclient agreement at concurrency {args.concurrency}, {args.requests} requests x {args.rounds} rounds, "
          f"{args.input_tokens} input / {args.output_tokens} output tokens")
    print(f"{'metric':<22}{'ours':>12}{'vllm bench':>12}{'ratio':>9}")
    failed = []
    for key in ("mean_ttft_ms", "mean_tpot_ms", "output_tokens_per_s"):
        a, b = mean("ours", key), mean("vllm bench serve", key)
        ratio = a / b
        ok = abs(ratio - 1) <= args.tolerance
        print(f"{key:<22}{a:>12.3f}{b:>12.3f}{ratio:>9.3f}{'' if ok else '  MISSED'}")
        if not ok:
            failed.append(key)
    if failed:
        print(f"FAIL: {', '.join(failed)} differ by more than {args.tolerance:.0%}")
        return 1
    print(f"PASS: all within {args.tolerance:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
