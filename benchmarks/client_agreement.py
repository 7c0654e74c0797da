"""Does our load generator agree with an independent client? Target: within +-5% of vLLM's own
`vllm bench serve` client on mean TTFT, mean TPOT and output tokens/s.

Both clients hit the same local vLLM server (OpenAI chat API, streaming) with the same prompts
(all of one exact token length, checked against the server's usage report), the same output length
(`ignore_eos`, usage included in the stream), no sampling parameters (the server's defaults for
both), and the same concurrency. They take many short turns, alternating which goes first (AB BA
AB ...), after unmeasured warm-up rounds; the figures compared are the **medians over rounds of
each round's mean** (pooled means are printed too). Each turn is bracketed by scrapes of vLLM's
own `/metrics` histograms, so the server's TTFT and TPOT of that very turn are shown next to both
clients' figures: when the server itself is unsteady, the table shows it.

Definitions, per request (docs/metrics.md):
- ours: TTFT = first chunk with non-empty `delta.content` - send start; TPOT = (E2E - TTFT) /
  (N_out - 1) with E2E at `[DONE]` and N_out from the usage report (DESIGN.md section 5).
- vLLM's: TTFT = first chunk with `choices` (the role-only chunk) - send start; TPOT = (time of the
  last chunk with `choices` - send start - TTFT) / (N_out - 1).
Both clients use time.perf_counter; vLLM's send start is taken before its client builds and
serializes the request, ours after (just before the connection is taken and the bytes written).
Our records also give the figures under vLLM's definitions (`ours as vLLM`): first body chunk and
last token event; they show how much of any difference is definition rather than measurement.

Placement: on a 2-core machine the clients cannot have a core of their own, and a client's CPU use
slows the server it shares a core with, so a cheaper client sees a faster server. By default the
whole stack runs on the last core (`--pin before`) and the clients run at nice +19 once the server
is up, so that neither client can take CPU from the server; the server's own per-turn figures show
whether that held. Run with the workload environment, alone:

    flock .state/heavy.lock .state/venv-workload/bin/python benchmarks/client_agreement.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _local import fixed_length_prompts, local_stack  # noqa: E402

from workload.bench import promtext  # noqa: E402
from workload.bench.endpoints import OpenAIChatEndpoint  # noqa: E402
from workload.bench.loadgen import ConcurrentStrategy, StopConditions, run_async, run_scenario  # noqa: E402
from workload.bench.metrics import summarize  # noqa: E402
from workload.llm.tiny_model import MODEL_ID  # noqa: E402

KEYS = ("mean_ttft_ms", "mean_tpot_ms", "output_tokens_per_s")
OURS, THEIRS = "ours", "vllm bench"
SERVER_HISTOGRAMS = {"ttft": "vllm:time_to_first_token_seconds",
                     "tpot": "vllm:request_time_per_output_token_seconds",
                     "itl": "vllm:inter_token_latency_seconds"}


def scrape(base_url: str) -> dict[str, float]:
    return promtext.totals(httpx.get(f"{base_url}/metrics", timeout=10).text)


def server_view(before: dict, after: dict) -> dict:
    out = {}
    for key, name in SERVER_HISTOGRAMS.items():
        mean, n = promtext.histogram_mean(before, after, name)
        out[f"{key}_ms"] = None if mean is None else mean * 1000
        out[f"{key}_n"] = n
    for key in ("prompt_tokens", "prompt_tokens_cached", "generation_tokens", "request_success"):
        out[key] = promtext.delta(before, after, f"vllm:{key}_total")
    return out


def ours(base_url: str, prompts: list[str], args) -> dict:
    result = run_async(run_scenario(
        base_url, OpenAIChatEndpoint(model=MODEL_ID, ignore_eos=True),
        [(str(i), p) for i, p in enumerate(prompts)], ConcurrentStrategy(concurrency=args.concurrency),
        StopConditions(max_requests=args.requests), max_tokens=args.output_tokens,
        warmup_requests=0, progress=False, connect_samples=0))
    s = summarize(result.records, result.wall_time_s).model_dump(mode="json")
    if s["errored"]:
        raise SystemExit(f"our client: requests failed {s['errors_by_code']}")
    ok = [r for r in result.records if r.ok]
    # The same records under vLLM's definitions: first body chunk (the role chunk) and last token event.
    v_ttft = [(r.t_first_byte - r.t_sent) * 1000 for r in ok]
    v_tpot = [(r.token_times[-1] - r.t_first_byte) * 1000 / (r.n_out - 1) for r in ok if r.n_out > 1]
    return {"mean_ttft_ms": s["ttft_ms"]["mean"], "mean_tpot_ms": s["tpot_ms"]["mean"],
            "output_tokens_per_s": s["output_tokens_per_s"],
            "as_vllm_ttft_ms": statistics.fmean(v_ttft), "as_vllm_tpot_ms": statistics.fmean(v_tpot),
            "prompt_tokens": sorted({r.prompt_tokens for r in ok}), "output_tokens": sorted({r.n_out for r in ok}),
            "n": len(ok)}


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
        "--ignore-eos", "--num-warmups", "0", "--disable-tqdm", "--seed", "0", "--save-detailed",
    ])
    with contextlib.redirect_stdout(io.StringIO()):  # its own report; the figures are taken from the result
        r = main(bench_args)
    if r.get("failed"):
        raise SystemExit(f"vllm bench serve: {r['failed']} requests failed")
    return {"mean_ttft_ms": float(r["mean_ttft_ms"]), "mean_tpot_ms": float(r["mean_tpot_ms"]),
            "output_tokens_per_s": float(r["output_throughput"]),
            "prompt_tokens": sorted(set(r["input_lens"])), "output_tokens": sorted(set(r["output_lens"])),
            "n": int(r["completed"])}


def turn(name: str, base_url: str, run) -> dict:
    before = scrape(base_url)
    cpu0 = time.process_time()
    figures = run()
    figures["client_cpu_s"] = time.process_time() - cpu0
    figures["server"] = server_view(before, scrape(base_url))
    return figures


def placement(root_pid: int) -> list[str]:
    """Where the server's processes may run: per process, its threads' allowed cores (from /proc)."""
    import psutil

    lines = []
    root = psutil.Process(root_pid)
    for proc in [root, *root.children(recursive=True)]:
        allowed: dict[str, int] = {}
        for task in Path(f"/proc/{proc.pid}/task").glob("*"):
            try:
                status = (task / "status").read_text()
            except OSError:
                continue
            cores = next((ln.split(":", 1)[1].strip() for ln in status.splitlines()
                          if ln.startswith("Cpus_allowed_list")), "?")
            allowed[cores] = allowed.get(cores, 0) + 1
        lines.append(f"{proc.name()[:24]:<24} threads by allowed cores: "
                     + ", ".join(f"{c}: {n}" for c, n in sorted(allowed.items())))
    return lines


def fmt(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--requests", type=int, default=32, help="requests per client per round")
    # The default is about what the RAG service sends vLLM (a question plus up to 3,000 characters of
    # retrieved context). With short prompts TTFT is ~30 ms here and the clients' own fixed costs
    # (about 2 ms apart, docs/metrics.md) exceed 5% of it.
    parser.add_argument("--input-tokens", type=int, default=1024)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=12, help="measured rounds (each: both clients once)")
    parser.add_argument("--warmup-rounds", type=int, default=2, help="rounds run first and not counted")
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--pin", choices=("before", "after", "none"), default="before",
                        help="pin this process to the last core before the server starts (the whole server "
                             "inherits that core), after it started (vLLM's CPU worker then binds itself to "
                             "the first core, its other processes float), or not at all")
    parser.add_argument("--client-nice", type=int, default=19,
                        help="niceness of this process (both clients) once the server runs: with a positive "
                             "value a client's CPU use cannot slow the server on a shared core")
    parser.add_argument("--json", type=Path, help="also write every round's figures to this file")
    args = parser.parse_args()

    cores = sorted(os.sched_getaffinity(0))
    if args.pin == "before" and len(cores) >= 2:
        os.sched_setaffinity(0, {cores[-1]})
    runs: dict[str, list[dict]] = {OURS: [], THEIRS: []}
    with local_stack() as stack, tempfile.TemporaryDirectory() as tmp:
        prompts = fixed_length_prompts(stack, args.requests, args.input_tokens)
        dataset = Path(tmp) / "prompts.json"  # ShareGPT layout, which vllm bench reads without pandas
        dataset.write_text(json.dumps([{"conversations": [{"value": p}, {"value": "x"}]} for p in prompts]))
        tokenizer_dir = stack.state_dir / "models" / "tiny-qwen2"
        url = stack.llm_url
        if args.pin == "after" and len(cores) >= 2:
            os.sched_setaffinity(0, {cores[-1]})
        print(f"this process (both clients): cores {sorted(os.sched_getaffinity(0))}, nice +{args.client_nice}")
        for line in placement(stack.llm.pid()):
            print(f"server: {line}")
        if args.client_nice:
            os.nice(args.client_nice)  # this process only: the server started before keeps its priority
        names = sorted(n for n in scrape(url) if n.startswith("vllm:"))
        missing = [h for h in SERVER_HISTOGRAMS.values() if f"{h}_count" not in names]
        if missing:
            print(f"server metrics missing: {missing}; the server exposes {names}")
        clients = {OURS: lambda: ours(url, prompts, args), THEIRS: lambda: theirs(url, dataset, tokenizer_dir, args)}
        for _ in range(args.warmup_rounds):  # a cold server (caches, allocator) favours whoever runs second
            for run in clients.values():
                run()
        print(f"{'round':<6}{'client':<12}{'TTFT ms':>9}{'TPOT ms':>9}{'tok/s':>9}{'| server TTFT':>14}"
              f"{'TPOT':>7}{'ITL':>7}{'cached':>8}{'| client cpu s':>15}")
        for i in range(args.rounds):
            order = (OURS, THEIRS) if i % 2 == 0 else (THEIRS, OURS)
            for name in order:
                f = turn(name, url, clients[name])
                runs[name].append(f)
                sv = f["server"]
                print(f"{i + 1:<6}{name:<12}{f['mean_ttft_ms']:>9.2f}{f['mean_tpot_ms']:>9.3f}"
                      f"{f['output_tokens_per_s']:>9.1f}  | {fmt(sv['ttft_ms']):>10}{fmt(sv['tpot_ms']):>7}"
                      f"{fmt(sv['itl_ms']):>7}{sv['prompt_tokens_cached']:>8.0f}  | {f['client_cpu_s']:>12.2f}",
                      flush=True)
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs}, indent=1))
    return report(runs, args)


def report(runs: dict[str, list[dict]], args) -> int:
    def med(name: str, key: str, server: bool = False) -> float:
        vals = [(r["server"] if server else r)[key] for r in runs[name]]
        return statistics.median(v for v in vals if v is not None)

    def pooled(name: str, key: str) -> float:
        return statistics.fmean(r[key] for r in runs[name])

    print(f"\nclient agreement at concurrency {args.concurrency}, {args.requests} requests x {args.rounds} rounds "
          f"per client, {args.input_tokens} input / {args.output_tokens} output tokens")
    same = {k: tuple(sorted({v for r in runs[name] for v in r[k]}) for name in (OURS, THEIRS))
            for k in ("prompt_tokens", "output_tokens")}
    for k, (a, b) in same.items():
        print(f"{k} per request (server usage): ours {a}, vllm bench {b}{'' if a == b else '  DIFFERENT'}")
    print(f"{'metric (median of round means)':<32}{'ours':>10}{'vllm bench':>12}{'ratio':>8}{'pooled ratio':>14}")
    failed = []
    for key in KEYS:
        a, b = med(OURS, key), med(THEIRS, key)
        ratio, pooled_ratio = a / b, pooled(OURS, key) / pooled(THEIRS, key)
        ok = abs(ratio - 1) <= args.tolerance
        print(f"{key:<32}{a:>10.3f}{b:>12.3f}{ratio:>8.3f}{pooled_ratio:>14.3f}{'' if ok else '  MISSED'}")
        if not ok:
            failed.append(key)
    print(f"{'ours as vLLM defines TTFT':<32}{med(OURS, 'as_vllm_ttft_ms'):>10.3f}"
          f"{med(THEIRS, 'mean_ttft_ms'):>12.3f}{med(OURS, 'as_vllm_ttft_ms') / med(THEIRS, 'mean_ttft_ms'):>8.3f}")
    print(f"{'ours as vLLM defines TPOT':<32}{med(OURS, 'as_vllm_tpot_ms'):>10.3f}"
          f"{med(THEIRS, 'mean_tpot_ms'):>12.3f}{med(OURS, 'as_vllm_tpot_ms') / med(THEIRS, 'mean_tpot_ms'):>8.3f}")
    for key, label in (("ttft_ms", "server TTFT during the turns"), ("tpot_ms", "server TPOT during the turns")):
        a, b = med(OURS, key, server=True), med(THEIRS, key, server=True)
        print(f"{label:<32}{a:>10.3f}{b:>12.3f}{a / b:>8.3f}")
    print(f"{'client CPU s per turn':<32}{med(OURS, 'client_cpu_s'):>10.3f}{med(THEIRS, 'client_cpu_s'):>12.3f}")
    if any(a != b for a, b in same.values()):
        print("FAIL: the clients did not send the same requests")
        return 1
    if failed:
        print(f"FAIL: {', '.join(failed)} differ by more than {args.tolerance:.0%}")
        return 1
    print(f"PASS: all within {args.tolerance:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
