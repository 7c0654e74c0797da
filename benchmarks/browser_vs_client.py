"""What a person in a browser sees against what the load generator measures, on the local target.

Both ask the same RAG service one question at a time (concurrency 1, fixed-length output), in
alternating rounds (client, browser, browser, client, ...) so that drift of a shared machine falls on
both. The browser is the service's chat page in headless Chromium (workload/browser), timing with
performance.now(); the load generator is workload/bench's client. Printed per side: TTFT and total
(E2E) p50, and TTFT minus the server's own TTFT (done.timings.ttft_ms) per request, which takes the
server's variation out. The figure: browser minus load generator, p50 of that client-minus-server
TTFT; target: at most --max-diff-ms (default 25 ms). Run with the workload environment:

    .state/venv-workload/bin/python benchmarks/browser_vs_client.py [--endpoint URL]

Without --endpoint it starts a private local stack (vLLM, the RAG service) and ingests the corpus.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload.bench.northsouth import NorthSouthConfig, run_north_south  # noqa: E402
from workload.bench.records import RequestRecord  # noqa: E402
from workload.browser.northsouth import run_browser_north_south  # noqa: E402


def config(args, seed: int) -> NorthSouthConfig:
    return NorthSouthConfig.model_validate({
        "strategy": {"type": "concurrent", "concurrency": 1}, "stop": {"max_requests": args.requests},
        "warmup_requests": 1, "max_tokens": args.output_tokens, "k": 4, "ignore_eos": True,
        "unique_prompts": True, "seed": seed, "connect_samples": 0,
        "slo": {"ttft_ms": 60000, "tpot_ms": 60000, "e2e_ms": None}})


def measured(data: dict) -> list[RequestRecord]:
    records = [RequestRecord.from_dict(r) for r in data["scenarios"][0]["records"]]
    return [r for r in records if not r.warmup]


def p50(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


@contextlib.contextmanager
def service(args):
    if args.endpoint:
        yield args.endpoint
        return
    from _local import local_stack

    from workload.ingest_client import ingest_corpus

    with local_stack(with_service=True) as stack:
        ingest_corpus(stack.service_url, Path(__file__).resolve().parents[1] / "workload" / "corpus" / "docs",
                      progress=False)
        yield stack.service_url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", help="a running RAG service with a corpus (default: start one)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds; each runs both sides once")
    parser.add_argument("--requests", type=int, default=10, help="measured requests per side and round")
    parser.add_argument("--output-tokens", type=int, default=32)
    parser.add_argument("--max-diff-ms", type=float, default=25.0)
    args = parser.parse_args()
    token = os.environ.get("RAGBENCH_API_TOKEN")
    sides: dict[str, list[RequestRecord]] = {"client": [], "browser": []}
    with service(args) as url:
        for i in range(args.rounds):
            order = ["client", "browser"] if i % 2 == 0 else ["browser", "client"]
            for side in order:
                cfg = config(args, seed=100 + i)
                if side == "client":
                    data = run_north_south(url, cfg, progress=False, token=token)
                else:
                    data = run_browser_north_south(url, cfg, args.requests, token=token, progress=False)
                records = measured(data)
                failed = [r for r in records if not r.ok]
                if failed:
                    print(f"error: {side} round {i + 1}: {len(failed)} failed, first: {failed[0].error_code} "
                          f"{failed[0].error_message}", file=sys.stderr)
                    return 2
                sides[side] += records
                print(f"round {i + 1} {side:7s}: ttft p50 {p50(r.ttft_ms for r in records):7.1f} ms, "
                      f"client-minus-server ttft p50 {p50(r.client_minus_server_ttft_ms for r in records):6.1f} ms",
                      flush=True)
    figures = {}
    for side, records in sides.items():
        figures[side] = {"ttft": p50(r.ttft_ms for r in records), "e2e": p50(r.e2e_ms for r in records),
                         "over_server": p50(r.client_minus_server_ttft_ms for r in records), "n": len(records)}
        f = figures[side]
        print(f"{side:7s} n={f['n']:3d}: TTFT p50 {f['ttft']:7.1f} ms, E2E p50 {f['e2e']:7.1f} ms, "
              f"TTFT minus server TTFT p50 {f['over_server']:6.1f} ms")
    diff_ttft = figures["browser"]["ttft"] - figures["client"]["ttft"]
    diff_e2e = figures["browser"]["e2e"] - figures["client"]["e2e"]
    diff = figures["browser"]["over_server"] - figures["client"]["over_server"]
    print(f"browser minus load generator: TTFT p50 {diff_ttft:+.1f} ms, E2E p50 {diff_e2e:+.1f} ms")
    ok = diff <= args.max_diff_ms
    print(f"browser minus load generator, TTFT over the server's own (p50): {diff:+.1f} ms "
          f"(target <= {args.max_diff_ms:g} ms): {'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
