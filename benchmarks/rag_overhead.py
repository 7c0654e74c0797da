"""What does the RAG service add on top of the LLM? Target: RAG TTFT - (direct TTFT + the
service's own retrieval time) <= 5 ms, at concurrency 1 and 16; RAG ITL within 5% of direct ITL.

One local stack (vLLM on CPU, the RAG service on Ray Serve, embedded Qdrant). The corpus is short
passages (under 200 characters each), so the `meta` event shows every retrieved passage whole and
the benchmark can render, with the service's own prompt builder, exactly the messages the service
sends to vLLM. The direct requests send those same messages to vLLM's OpenAI endpoint: same prompt
tokens, same output length (ignore_eos, fixed max_tokens), same client code. Per round, the RAG arm
is followed at once by its replay (below), and the back-to-back direct arm runs before them in odd
rounds and after them in even ones, so that drift falls on all arms; a warm-up round is discarded.

Per request, "retrieval" is the service's `done.timings.retrieval_ms`: waiting for the CPU worker
thread + embedding the question + the vector search.

**The replayed direct arm.** vLLM should see the same arrivals in both arms: each LLM request of a
RAG round is sent straight to vLLM, open loop, at the offset from the round's first one at which
the service sent it (`done.timings.llm_request_at_s`, the service's stamp on this host's
monotonic clock). A back-to-back direct arm is the wrong baseline: vLLM on CPU answers a request
that comes after some idle time later than one that follows another at once (about 3 ms after 30 ms
idle, none after 5 ms: benchmarks/vllm_idle_penalty.py), so at concurrency 1 a RAG request would be
charged with an idle penalty that retrieval causes; at concurrency 16 the service's embedding
batches send their LLM requests in bursts, and a back-to-back arm would credit the service with the
lighter load of requests still in retrieval. The back-to-back arm still runs; its figures are
printed beside.

**vLLM's own time, taken out (the verdict).** Even with the same arrivals to within a millisecond,
vLLM on one CPU core does not repeat itself: at concurrency 16 its own mean TTFT (its /metrics,
from a request's arrival in vLLM to its first token) differed between a RAG round and its replay
by -10 to +35 ms, because a request that misses a scheduler step by a fraction of a millisecond
waits for the next one, tens of milliseconds later. A comparison of client TTFTs carries that noise
whole (run-to-run p50s swung from -2 to +17 ms). So each arm's mean TTFT is taken less vLLM's own
mean TTFT over the same arm (scraped before and after it; every request vLLM counted must be the
arm's): what remains is the path. For RAG: the HTTP hops, the service's hand-offs, prompt building
and its LLM client (retrieval taken out too); for direct: HTTP to vLLM and the client. The
overhead is the RAG path less the direct path. Means, not p50s, because vLLM reports a sum and a
count per window, not each request; the path's delays are skewed to the right, so a mean is the
stricter of the two. ITL likewise: each arm's mean per-stream ITL over vLLM's own mean per-request
TPOT (its first-to-last token over the tokens between, the same definition), RAG over direct.
The p50 figures against the replayed arm stay printed, with where a RAG request's time goes, stage
by stage, from the service's `done.timings`, and the CPU each side used (vLLM's processes, the
service's, this client), in cores: on a machine where vLLM alone keeps the cores busy, whatever
the service uses comes out of vLLM's share. Run:

    .state/venv-workload/bin/python benchmarks/rag_overhead.py

**Isolated mode** (``--isolated``): vLLM's processes on one core, the service (Ray and its
workers, the Serve replica with the embedder and embedded Qdrant) on another, in both arms, so
that what the service does cannot take CPU from vLLM and the comparison is of the service's path
alone. This client runs on vLLM's core (``--client-core vllm``, the default): there it shares a
core with the same vLLM doing the same work in every arm, so its share falls on both paths alike;
on the service's core it would compete with the service in the RAG arm only and be charged to it
(about 2.5 ms at c=16: 11.4-12.4 ms there against 7.8-10.0 ms here). Each side is started with this
process's affinity set to its core, so every process and thread it starts then or later inherits
it; the benchmark checks every thread of both trees after each arm and fails if one can run
elsewhere. The target must hold in ``--runs``
consecutive runs (3 by default in this mode) on one stack, each with its own warm-up round.
vLLM confined to one core generates at c=16 a token every ~10 ms per stream (against ~5 ms at
c=1), so the defaults here are 64 requests of 32 output tokens per round, arm and level: 4 waves of
16 at c=16, each arm's p50 from 192 requests (3 rounds), and a run of both levels and three arms
takes about 4 minutes on the 2-core VM. Fewer requests make the c=16 p50 the mean of a couple of
waves (one embedding batch each); more output tokens only lengthen the run (ITL settles within a
few tokens). Run (alone on the machine for figures to keep):

    .state/venv-workload/bin/python benchmarks/rag_overhead.py --isolated

**Stand-in mode** (``--llm standin``): ``standin_llm.py`` answers in vLLM's place, at vLLM's port,
with vLLM's step clock (every stream's next token at each step, ``--standin-step-ms``), a least
time to the first token (``--standin-prefill-ms``) and its own TTFT and TPOT under vLLM's metric
names; everything else is as above. It uses about 0.02 of a core, so the service has the machine's
cores to itself, as a replica with a node of its own would: what is left of the overhead is not
the service's share of the CPU. Known truth checks itself: the stand-in's own TPOT must equal its
step in every arm (within 2%), else it fell behind its clock and the run fails.

    .state/venv-workload/bin/python benchmarks/rag_overhead.py --llm standin --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from statistics import fmean as mean
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _local import local_stack, pin_threads, threads_outside  # noqa: E402

from workload.bench.endpoints import OpenAIChatEndpoint, RagStreamEndpoint  # noqa: E402
from workload.bench.http1 import Pool  # noqa: E402
from workload.bench.loadgen import (ConcurrentStrategy, StopConditions, Timeouts, _Clock, run_async,  # noqa: E402
                                    run_scenario, send_one)
from workload.bench.records import RequestRecord  # noqa: E402
from workload.bench.metrics import percentile  # noqa: E402
from workload.bench.promtext import histogram_mean, totals  # noqa: E402
from workload.bench.northsouth import DEFAULT_QUESTIONS, load_prompts  # noqa: E402
from workload.ingest_client import corpus_files  # noqa: E402
from workload.llm.tiny_model import MODEL_ID  # noqa: E402

CORPUS = Path(__file__).resolve().parents[1] / "workload" / "corpus" / "docs"
STAGES = ("cpu_wait_ms", "embed_ms", "retrieve_ms", "retrieval_ms", "prompt_ms", "first_byte_ms",
          "llm_first_token_ms", "ttft_ms")


def passages(count: int, max_chars: int = 190) -> list[dict]:
    """Short passages cut at word boundaries from the shipped corpus (text files only)."""
    words = " ".join(p.read_text() for p in corpus_files(CORPUS) if p.suffix in (".md", ".txt")).split()
    docs, current = [], []
    for word in words:
        if len(" ".join([*current, word])) > max_chars:
            docs.append({"name": f"passage-{len(docs):04d}.txt", "content": " ".join(current)})
            current = []
            if len(docs) == count:
                break
        current.append(word)
    return docs


def rendered_messages(base_url: str, questions: list[str], k: int) -> dict[str, list[dict]]:
    """For each question, the exact chat messages the service sends to vLLM (see module docstring)."""
    from haystack import Document

    from workload.service.pipelines import prompt_builder

    builder, out = prompt_builder(), {}
    with httpx.Client(base_url=base_url, timeout=120) as client:
        for q in questions:
            r = client.post("/query", json={"query": q, "k": k, "max_tokens": 1})
            r.raise_for_status()
            docs = [Document(content=d["content"]) for d in r.json()["documents"]]
            if any(len(d.content) >= 200 for d in docs):
                raise SystemExit("a passage is cut in `meta`; the direct prompt would differ")
            messages = builder.run(query=q, documents=docs)["prompt"]
            out[q] = [m.to_openai_dict_format() for m in messages]
    return out


@dataclass
class SameMessagesEndpoint:
    """vLLM's chat endpoint, sent the messages the RAG service would send for the same question."""

    messages: dict[str, list[dict]]
    inner: OpenAIChatEndpoint

    @property
    def name(self) -> str:
        return "openai"

    def request(self, prompt: str, max_tokens: int, cache_salt: str | None = None) -> tuple[str, dict]:
        path, body = self.inner.request(prompt, max_tokens, cache_salt)
        return path, {**body, "messages": self.messages[prompt]}

    def on_event(self, record, event, now):
        return self.inner.on_event(record, event, now)


class CpuMeter:
    """CPU seconds used so far by vLLM's process tree, the service's, and the client (this process
    and whatever else it started: vLLM and the service are its children, counted apart)."""

    def __init__(self, stack) -> None:
        self.roots = {"vLLM": stack.llm.pid(), "service": stack.service.pid(), "client": os.getpid()}

    def read(self) -> dict[str, float]:
        trees = {}
        for group, pid in self.roots.items():
            root = psutil.Process(pid)
            trees[group] = {root, *root.children(recursive=True)}
        trees["client"] -= trees["vLLM"] | trees["service"]
        used = {}
        for group, procs in trees.items():
            used[group] = 0.0
            for proc in procs:
                try:
                    t = proc.cpu_times()
                except psutil.Error:  # exited meanwhile
                    continue
                used[group] += t.user + t.system
        return used


VLLM_TTFT, VLLM_TPOT = "vllm:time_to_first_token_seconds", "vllm:request_time_per_output_token_seconds"


def vllm_scrape(llm_url: str) -> dict[str, float]:
    r = httpx.get(f"{llm_url}/metrics", timeout=10)
    r.raise_for_status()
    return totals(r.text)


def vllm_after(llm_url: str, before: dict[str, float], requests: int) -> dict[str, float]:
    """A scrape once vLLM has counted all ``requests`` of the arm (it records a request's figures
    as its stream ends, which may be a moment after the client read the end)."""
    deadline = time.monotonic() + 2
    while True:
        after = vllm_scrape(llm_url)
        if histogram_mean(before, after, VLLM_TPOT)[1] >= requests or time.monotonic() > deadline:
            return after
        time.sleep(0.05)


def vllm_own(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """vLLM's own mean TTFT and per-request TPOT, ms, over one arm (its /metrics histograms: from
    the request's arrival in vLLM to its first token, and first to last token over the tokens in
    between). Every request vLLM saw in the window must be the arm's own."""
    out = {}
    for key, name in (("ttft_ms", VLLM_TTFT), ("tpot_ms", VLLM_TPOT)):
        mean, count = histogram_mean(before, after, name)
        if mean is None or count != requests:
            raise SystemExit(f"vLLM's {name} counted {count} requests in an arm of {requests}: "
                             "something else used vLLM meanwhile, or this vLLM does not expose it")
        out[key] = mean * 1000
    return out


def run(base_url: str, endpoint, questions: list[str], concurrency: int, requests: int, max_tokens: int):
    result = run_async(run_scenario(
        base_url, endpoint, [(str(i), q) for i, q in enumerate(questions)],
        ConcurrentStrategy(concurrency=concurrency), StopConditions(max_requests=requests),
        max_tokens=max_tokens, warmup_requests=0, progress=False, connect_samples=0))
    failed = [r for r in result.records if not r.ok]
    if failed:
        raise SystemExit(f"{endpoint.name}: {len(failed)} requests failed, first: {failed[0].error_message}")
    return result.records


async def _replayed(base_url: str, endpoint, schedule: list[tuple[float, str]], max_tokens: int):
    """Each (offset in s, question) sent at that offset from the start, open loop, with the load
    generator's request code."""
    client, clock = Pool(base_url), _Clock()
    t0 = time.perf_counter()

    async def one(i: int, offset: float, question: str):
        await asyncio.sleep(max(0.0, t0 + offset - time.perf_counter()))
        record = RequestRecord(i, "replayed", str(i), len(question))
        return await send_one(client, endpoint, record, question, max_tokens, Timeouts(), clock)

    try:
        return await asyncio.gather(*(one(i, offset, q) for i, (offset, q) in enumerate(schedule)))
    finally:
        await client.aclose()


def llm_schedule(rag_records, questions: list[str]) -> list[tuple[float, str]]:
    """When the service sent each LLM request of a RAG round, from the round's first: the
    service's own stamps (`llm_request_at_s`, one monotonic clock), so vLLM sees the same arrivals."""
    sent = [(r.server_timings["llm_request_at_s"], questions[int(r.prompt_id)]) for r in rag_records]
    t0 = min(t for t, _ in sent)
    return sorted((t - t0, question) for t, question in sent)


def run_replayed(base_url, endpoint, schedule, max_tokens):
    records = run_async(_replayed(base_url, endpoint, schedule, max_tokens))
    failed = [r for r in records if not r.ok]
    if failed:
        raise SystemExit(f"replayed: {len(failed)} requests failed, first: {failed[0].error_message}")
    return records


def stream_itl(r) -> float:
    """Mean inter-token latency of one stream, ms: first to last token over the tokens in between.
    Robust to token events that reach the client in one read (their gaps read as zero)."""
    return (r.token_times[-1] - r.token_times[0]) * 1000 / (r.output_tokens - 1)


def zero_gaps(records) -> float:
    gaps = [v for r in records for v in r.itl_ms]
    return sum(1 for v in gaps if v == 0) / max(len(gaps), 1)


def p50(values) -> float:
    values = list(values)
    return percentile(values, 50) if values else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--requests", type=int, default=None,
                        help="per round, side and concurrency level (default 48; isolated: 64)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output-tokens", type=int, default=32)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--passages", type=int, default=200)
    parser.add_argument("--max-overhead-ms", type=float, default=5.0)
    parser.add_argument("--itl-tolerance", type=float, default=0.05)
    parser.add_argument("--isolated", action="store_true",
                        help="vLLM (and this client) on one core; the service on another")
    parser.add_argument("--client-core", choices=("vllm", "service"), default="vllm",
                        help="isolated: the core this client shares (default vLLM's: the same in every arm)")
    parser.add_argument("--llm", choices=("vllm", "standin"), default="vllm",
                        help="what answers the LLM requests: vLLM, or standin_llm.py (known timing, little CPU)")
    parser.add_argument("--standin-step-ms", type=float, default=12.0,
                        help="stand-in: one token per stream every this many ms (vLLM on one core, c=16: ~12)")
    parser.add_argument("--standin-prefill-ms", type=float, default=20.0,
                        help="stand-in: the least time from a request's arrival to its first token")
    parser.add_argument("--runs", type=int, default=None,
                        help="consecutive runs that must all meet the target (default 1; isolated: 3)")
    args = parser.parse_args()
    args.requests = args.requests or (64 if args.isolated else 48)
    args.runs = args.runs or (3 if args.isolated else 1)

    llm_cores = other_cores = None
    if args.isolated:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2:
            raise SystemExit("--isolated needs two cores")
        llm_cores, other_cores = {cores[0]}, {cores[1]}
        client_cores = llm_cores if args.client_core == "vllm" else other_cores
        print(f"isolated: vLLM on core {cores[0]}, the service on core {cores[1]}; "
              f"this client on core {min(client_cores)}")

    questions = [q for _, q in load_prompts(DEFAULT_QUESTIONS, 0)]
    failed: list[str] = []
    standin = None
    if args.llm == "standin":
        standin = ["--step-ms", str(args.standin_step_ms), "--prefill-ms", str(args.standin_prefill_ms)]
        print(f"LLM: the stand-in (benchmarks/standin_llm.py), a step every {args.standin_step_ms:g} ms, "
              f"prefill {args.standin_prefill_ms:g} ms; 'vLLM' below means the stand-in")
    with local_stack(with_service=True, llm_cores=llm_cores, other_cores=other_cores, standin=standin) as stack:
        r = httpx.post(f"{stack.service_url}/ingest", json={"documents": passages(args.passages)}, timeout=600)
        r.raise_for_status()
        messages = rendered_messages(stack.service_url, questions, args.k)
        rag = RagStreamEndpoint(k=args.k, ignore_eos=True)
        direct = SameMessagesEndpoint(messages, OpenAIChatEndpoint(model=MODEL_ID, ignore_eos=True))
        sides = {"rag": (stack.service_url, rag), "direct": (stack.llm_url, direct), "replayed": (stack.llm_url, direct)}
        meter = CpuMeter(stack)
        pins = {}
        if args.isolated:
            pins = {"vLLM": (stack.llm.pid(), llm_cores), "service": (stack.service.pid(), other_cores)}
            pin_threads(os.getpid(), client_cores)
        for run_no in range(1, args.runs + 1):
            if args.runs > 1:
                print(f"\n######## run {run_no} of {args.runs} ########")
            for c in args.concurrency:
                records: dict[str, list] = {side: [] for side in sides}
                own: dict[str, list] = {side: [] for side in sides}  # vLLM's own figures, per round
                cpu = {side: {"wall": 0.0} for side in sides}
                busy = {side: [0.0] * psutil.cpu_count() for side in sides}
                schedule: list[tuple[float, str]] = []  # of the last RAG round's LLM requests
                for rnd in range(args.rounds + 1):  # round 0 warms every path up and is discarded
                    # RAG first in even rounds, back-to-back direct first in odd ones; the replayed
                    # arm always right after its RAG round, whose LLM arrivals it replays.
                    order = ("rag", "replayed", "direct") if rnd % 2 == 0 else ("direct", "rag", "replayed")
                    for side in order:
                        url, endpoint = sides[side]
                        scraped = vllm_scrape(stack.llm_url)
                        before, per_core, t0 = meter.read(), psutil.cpu_times(percpu=True), time.monotonic()
                        if side == "replayed":
                            got = run_replayed(url, endpoint, schedule, args.output_tokens)
                        else:
                            got = run(url, endpoint, questions, c, args.requests, args.output_tokens)
                        if side == "rag":
                            schedule = llm_schedule(got, questions)
                        if rnd:
                            own[side].append(vllm_own(scraped, vllm_after(stack.llm_url, scraped, len(got)), len(got)))
                            records[side] += got
                            cpu[side]["wall"] += time.monotonic() - t0
                            for group, used in meter.read().items():
                                cpu[side][group] = cpu[side].get(group, 0.0) + used - before[group]
                            for i, (b, a) in enumerate(zip(per_core, psutil.cpu_times(percpu=True))):
                                busy[side][i] += (a.user + a.nice + a.system + a.irq + a.softirq + a.steal
                                                  - b.user - b.nice - b.system - b.irq - b.softirq - b.steal)
                        for group, (pid, cores) in pins.items():
                            outside = threads_outside(pid, cores)
                            if outside:
                                raise SystemExit(f"FAIL: {group} threads escaped core {sorted(cores)}: {outside[:5]}")
                missed = report(c, records, own, args)
                failed += [f"run {run_no}: {m}" for m in missed]
                print_cpu(cpu, busy)
                if pins:
                    print("  every vLLM thread stayed on its core, every service thread on the other")
    if failed:
        print(f"FAIL: {'; '.join(failed)}")
        return 1
    print(f"PASS: every target met{f' in {args.runs} consecutive runs' if args.runs > 1 else ''}")
    return 0


def print_cpu(cpu: dict[str, dict[str, float]], busy: dict[str, list[float]]) -> None:
    """Cores in use on average while each side ran (CPU seconds over wall seconds), by this
    benchmark's process groups, then each core's busy share whoever used it (other load shows)."""
    print(f"CPU in use, cores (this machine has {os.cpu_count()}):")
    for side, used in cpu.items():
        wall = used.pop("wall")
        shares = ", ".join(f"{group} {seconds / wall:.2f}" for group, seconds in used.items())
        per_core = ", ".join(f"cpu{i} {seconds / wall:.2f}" for i, seconds in enumerate(busy[side]))
        print(f"  {side:<10}{shares}; total {sum(used.values()) / wall:.2f}  (busy, any process: {per_core})")


def report(c: int, records: dict[str, list], own: dict[str, list], args) -> list[str]:
    rag, direct, replayed = records["rag"], records["direct"], records["replayed"]
    timings = [r.server_timings for r in rag]
    rag_ttft = p50(r.ttft_ms for r in rag)
    retrieval = p50(t["retrieval_ms"] for t in timings)
    rag_less_retrieval = p50(r.ttft_ms - r.server_timings["retrieval_ms"] for r in rag)
    overhead = rag_less_retrieval - p50(r.ttft_ms for r in replayed)
    overhead_b2b = rag_less_retrieval - p50(r.ttft_ms for r in direct)
    rag_itl, replayed_itl = p50(stream_itl(r) for r in rag), p50(stream_itl(r) for r in replayed)
    itl_ratio = rag_itl / replayed_itl
    itl_ratio_b2b = rag_itl / p50(stream_itl(r) for r in direct)
    print(f"\n== concurrency {c}: {len(rag)} RAG, {len(replayed)} replayed direct and {len(direct)} back-to-back "
          f"direct requests, {args.output_tokens} output tokens, k={args.k} ==")
    print("RAG stages, p50 ms (service clock, from request received):")
    for key in STAGES:
        print(f"  {key:<22}{p50(t[key] for t in timings if key in t):>10.2f}")
    print("client view, p50 ms:")
    print(f"  {'RAG first byte':<22}{p50((r.t_first_byte - r.t_sent) * 1000 for r in rag):>10.2f}")
    print(f"  {'RAG TTFT':<22}{rag_ttft:>10.2f}")
    print(f"  {'replayed direct TTFT':<22}{p50(r.ttft_ms for r in replayed):>10.2f}  (sent when the service sent its LLM requests)")
    print(f"  {'direct TTFT':<22}{p50(r.ttft_ms for r in direct):>10.2f}  (back to back)")
    print(f"  {'RAG ITL':<22}{rag_itl:>10.3f}  (per request: first to last token / (tokens - 1))")
    print(f"  {'replayed direct ITL':<22}{replayed_itl:>10.3f}")
    print(f"  {'direct ITL':<22}{p50(stream_itl(r) for r in direct):>10.3f}")
    print(f"  {'RAG token-event gap':<22}{p50(v for r in rag for v in r.itl_ms):>10.3f}  "
          f"(p50 of the gaps between token events; {zero_gaps(rag):.0%} zero: events read together)")
    print(f"  {'direct token-event gap':<22}{p50(v for r in direct for v in r.itl_ms):>10.3f}  "
          f"({zero_gaps(direct):.0%} zero)")
    server_to_client = p50(r.ttft_ms - r.server_timings["ttft_ms"] for r in rag)
    print(f"  {'TTFT - server ttft_ms':<30}{server_to_client:>8.2f}  (HTTP layers + network, both ways)")
    in_service = p50(t["ttft_ms"] - t["retrieval_ms"] - t["prompt_ms"] - t["llm_first_token_ms"] for t in timings)
    print(f"  {'server ttft_ms - stages':<30}{in_service:>8.2f}  (ttft_ms - retrieval - prompt - LLM first token: "
          "the hand-offs inside the service)")
    print(f"  {'LLM first token, service':<30}{p50(t['llm_first_token_ms'] for t in timings):>8.2f}  "
          f"(replayed direct TTFT {p50(r.ttft_ms for r in replayed):.2f}: the same arrivals at vLLM)")
    print(f"p50 against the replayed arm: RAG TTFT - retrieval - replayed direct TTFT = {overhead:.2f} ms; "
          f"ITL ratio RAG/replayed direct = {itl_ratio:.3f}; p50 retrieval {retrieval:.2f} ms")
    print(f"  against back-to-back direct: overhead {overhead_b2b:.2f} ms, ITL ratio {itl_ratio_b2b:.3f}")

    # The verdict: each arm with vLLM's own time taken out (module docstring, "vLLM's own time").
    vllm = {side: {key: mean(o[key] for o in rounds) for key in ("ttft_ms", "tpot_ms")}
            for side, rounds in own.items()}
    rag_path = mean(r.ttft_ms - r.server_timings["retrieval_ms"] for r in rag) - vllm["rag"]["ttft_ms"]
    direct_path = mean(r.ttft_ms for r in replayed) - vllm["replayed"]["ttft_ms"]
    path_overhead = rag_path - direct_path
    rag_relay = mean(stream_itl(r) for r in rag) / vllm["rag"]["tpot_ms"]
    direct_relay = mean(stream_itl(r) for r in replayed) / vllm["replayed"]["tpot_ms"]
    relay_ratio = rag_relay / direct_relay
    print("beyond vLLM's own time, means over requests (vLLM's from its /metrics, per arm):")
    print(f"  {'vLLM TTFT, own':<30}RAG {vllm['rag']['ttft_ms']:.2f}, replayed {vllm['replayed']['ttft_ms']:.2f}, "
          f"back to back {vllm['direct']['ttft_ms']:.2f} ms  (same arrivals, RAG and replayed)")
    print(f"  {'vLLM TPOT, own':<30}RAG {vllm['rag']['tpot_ms']:.3f}, replayed {vllm['replayed']['tpot_ms']:.3f}, "
          f"back to back {vllm['direct']['tpot_ms']:.3f} ms")
    print(f"  {'RAG path':<30}{rag_path:>8.2f}  (TTFT - retrieval - vLLM's TTFT: HTTP, the service, its LLM client)")
    print(f"  {'direct path':<30}{direct_path:>8.2f}  (TTFT - vLLM's TTFT: HTTP to vLLM, the client)")
    print(f"  {'RAG ITL / vLLM TPOT':<30}{rag_relay:>8.3f}  (direct: {direct_relay:.3f})")
    print(f"overhead: RAG path - direct path = {path_overhead:.2f} ms (limit {args.max_overhead_ms:g}); "
          f"ITL ratio (RAG ITL / vLLM's) / (direct ITL / vLLM's) = {relay_ratio:.3f} (limit 1 +- {args.itl_tolerance:g})")
    missed = []
    if args.llm == "standin":  # its own TPOT is its step, unless it fell behind its clock
        late = {side: v["tpot_ms"] for side, v in vllm.items() if abs(v["tpot_ms"] / args.standin_step_ms - 1) > 0.02}
        if late:
            missed.append(f"c={c} the stand-in kept no {args.standin_step_ms:g} ms step (TPOT {late}): "
                          "it or this machine was overloaded, the figures are not known truth")
    if path_overhead > args.max_overhead_ms:
        missed.append(f"c={c} TTFT overhead {path_overhead:.2f} ms > {args.max_overhead_ms:g} ms")
    if abs(relay_ratio - 1) > args.itl_tolerance:
        missed.append(f"c={c} ITL ratio {relay_ratio:.3f}")
    return missed


if __name__ == "__main__":
    sys.exit(main())
