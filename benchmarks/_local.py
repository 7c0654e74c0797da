"""Shared set-up of the benchmarks: a private vLLM (and optionally the RAG service) on free ports."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil

from workload.local.processes import free_port
from workload.local.stack import LocalStack

BENCH_STATE = Path(__file__).resolve().parents[1] / ".state" / "bench"
# Ray makes AF_UNIX sockets about 80 characters deep in a stack's state folder (its temp-dir
# folder, a session folder, sockets/plasma_store), and such a path may not exceed 107 bytes: a
# checkout deep in the file system puts the benchmarks' stacks under the system's temp folder.
if len(str(BENCH_STATE)) + 80 > 107:
    BENCH_STATE = Path(tempfile.gettempdir()) / "ragbench-bench"


@contextlib.contextmanager
def local_stack(with_service: bool = False, llm_cores: set[int] | None = None,
                other_cores: set[int] | None = None, standin: list[str] | None = None) -> Iterator[LocalStack]:
    """vLLM (and the RAG service) in a throw-away state folder; stopped on exit, whatever happens.

    ``llm_cores``/``other_cores``: start vLLM confined to the first set and the service (and this
    process, from then on) to the second. Both start from this process with its affinity set
    first, so every process and thread they start, then or later, inherits it; vLLM's CPU worker
    binds its threads within the cores it is allowed. ``standin``: in vLLM's place, at its port,
    ``standin_llm.py`` with these arguments."""
    BENCH_STATE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BENCH_STATE) as state:
        stack = LocalStack(Path(state), llm_port=free_port(), serve_port=free_port())
        try:
            if llm_cores:
                pin_threads(os.getpid(), llm_cores)
            if standin is not None:
                stack.llm.start([sys.executable, str(Path(__file__).with_name("standin_llm.py")),
                                 "--port", str(stack.llm_port), *standin])
            stack.start_llm(stack.build_model())  # waits for the stand-in, if it runs
            if other_cores:
                pin_threads(os.getpid(), other_cores)
            if with_service:
                stack.up()  # starts what is missing: the service
            yield stack
        finally:
            stack.down()


def pin_threads(pid: int, cores: set[int], tree: bool = False) -> int:
    """Confine every thread of a process (and with ``tree`` of its descendants) to ``cores``;
    returns the threads set. Affinity is per thread on Linux and a new thread or process inherits
    its creator's, so once every thread is pinned whatever starts later stays pinned too."""
    procs = [psutil.Process(pid)]
    if tree:
        procs += procs[0].children(recursive=True)
    done = 0
    for proc in procs:
        try:
            threads = proc.threads()
        except psutil.Error:  # exited meanwhile
            continue
        for thread in threads:
            try:
                os.sched_setaffinity(thread.id, cores)
                done += 1
            except OSError:  # the thread ended meanwhile
                pass
    return done


def threads_outside(pid: int, cores: set[int], tree: bool = True) -> list[str]:
    """Threads of the process (tree) allowed to run anywhere but ``cores`` ("name pid/tid: cores")."""
    procs = [psutil.Process(pid)]
    if tree:
        procs += procs[0].children(recursive=True)
    outside = []
    for proc in procs:
        try:
            name, threads = proc.name(), proc.threads()
        except psutil.Error:
            continue
        for thread in threads:
            try:
                allowed = os.sched_getaffinity(thread.id)
            except OSError:
                continue
            if not allowed <= cores:
                outside.append(f"{name} {proc.pid}/{thread.id}: {sorted(allowed)}")
    return outside


def tokenizer(stack: LocalStack):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(stack.state_dir / "models" / "tiny-qwen2")


def fixed_length_prompts(stack: LocalStack, count: int, tokens: int, seed: int = 0) -> list[str]:
    """Prompts of exactly ``tokens`` tokens (by the served model's tokenizer), cut from the corpus."""
    import random

    from workload.ingest_client import corpus_files

    tok = tokenizer(stack)
    text = " ".join(p.read_text() for p in corpus_files(Path(__file__).resolve().parents[1] / "workload"
                                                       / "corpus" / "docs")[:10])
    ids = tok(text)["input_ids"]
    rng = random.Random(seed)
    prompts = []
    while len(prompts) < count:
        start = rng.randrange(0, len(ids) - tokens)
        prompt = tok.decode(ids[start:start + tokens])
        if len(tok(prompt)["input_ids"]) == tokens:  # decoding can merge tokens: keep exact ones
            prompts.append(prompt)
    return prompts
