"""Find the SLO operating point ("knee") of the local stack: a North-South sweep over increasing
concurrency, one scenario per level, stopping after the first level that misses the target.

Default: the RAG service (vLLM + Ray Serve + the embedded store, corpus ingested first), SLOs
TTFT <= 500 ms and TPOT <= 30 ms per request, attainment target 0.95. `--target vllm` sweeps
vLLM's OpenAI endpoint directly. Prints the curve and the operating point; exits non-zero only when
the sweep could not run (a knee at the lowest level, or none, is a result, not a failure).

    flock .state/heavy.lock .state/venv-workload/bin/python benchmarks/client_sweep.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _local import local_stack  # noqa: E402

from workload.bench.loadgen import StopConditions  # noqa: E402
from workload.bench.northsouth import NorthSouthConfig, SweepStrategy, run_north_south  # noqa: E402
from workload.llm.tiny_model import MODEL_ID  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / "workload" / "corpus" / "docs"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=("rag", "vllm"), default="rag")
    parser.add_argument("--levels", default="1,2,4,8,16,32")
    parser.add_argument("--requests", type=int, default=32, help="measured requests per level")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--slo-ttft-ms", type=float, default=500.0)
    parser.add_argument("--slo-tpot-ms", type=float, default=30.0)
    parser.add_argument("--target-attainment", type=float, default=0.95)
    parser.add_argument("--stop-after-misses", type=int, default=1,
                        help="stop stepping up after this many consecutive levels miss the target")
    parser.add_argument("--json", type=Path, help="also write the whole result (records included) here")
    args = parser.parse_args()

    config = NorthSouthConfig(
        endpoint_kind="rag" if args.target == "rag" else "openai", model=MODEL_ID,
        strategy=SweepStrategy(levels=[int(v) for v in args.levels.split(",")],
                               slo_attainment_target=args.target_attainment,
                               stop_after_misses=args.stop_after_misses),
        stop=StopConditions(max_requests=args.requests, max_duration_s=300), warmup_requests=args.warmup,
        max_tokens=args.output_tokens, slo={"ttft_ms": args.slo_ttft_ms, "tpot_ms": args.slo_tpot_ms, "e2e_ms": None},
        cache="cold")
    with local_stack(with_service=args.target == "rag") as stack:
        if args.target == "rag":
            from workload.ingest_client import ingest_corpus

            ingest = ingest_corpus(stack.service_url, CORPUS, progress=False)
            print(f"ingested {ingest.get('documents')} documents, {ingest.get('chunks')} chunks")
            url = stack.service_url
        else:
            url = stack.llm_url
        result = run_north_south(url, config, progress=False)
    if args.json:
        args.json.write_text(json.dumps(result))

    print(f"\nsweep of the local {args.target} endpoint: {args.requests} requests per level (+{args.warmup} warm-up), "
          f"{args.output_tokens} output tokens (ignore_eos); SLO TTFT <= {args.slo_ttft_ms:g} ms, "
          f"TPOT <= {args.slo_tpot_ms:g} ms, target attainment {args.target_attainment:g}")
    print(f"{'conc':>5}{'attain':>8}{'goodput/s':>10}{'req/s':>7}{'tok/s':>8}{'TTFT p50':>10}{'TTFT p95':>10}"
          f"{'TPOT p50':>10}{'TPOT p95':>10}{'c-s TTFT p50':>14}{'RTT p50':>9}{'errors':>7}")
    for sc in result["scenarios"]:
        s = sc["summary"]
        cs = s["client_minus_server_ttft_ms"]["p50"]
        rtt = s["tcp_connect"]["before_load_ms"]["p50"]
        print(f"{sc['strategy']['concurrency']:>5}{s['slo_attainment']:>8.2f}{s['goodput_rps']:>10.2f}"
              f"{s['requests_per_s']:>7.2f}{s['output_tokens_per_s']:>8.0f}{s['ttft_ms']['p50']:>10.1f}"
              f"{s['ttft_ms']['p95']:>10.1f}{s['tpot_ms']['p50']:>10.2f}{s['tpot_ms']['p95']:>10.2f}"
              f"{'-' if cs is None else f'{cs:.1f}':>14}{'-' if rtt is None else f'{rtt:.3f}':>9}{s['errored']:>7}")
    knee = result["sweep"]["operating_point_concurrency"]
    print(f"operating point: concurrency {knee}" if knee else "operating point: none (no level met the target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
