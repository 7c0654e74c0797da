"""Shared set-up of the benchmarks: a private vLLM (and optionally the RAG service) on free ports."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from workload.local.processes import free_port
from workload.local.stack import LocalStack

BENCH_STATE = Path(__file__).resolve().parents[1] / ".state" / "bench"


@contextlib.contextmanager
def local_stack(with_service: bool = False) -> Iterator[LocalStack]:
    """vLLM (and the RAG service) in a throw-away state folder; stopped on exit, whatever happens."""
    BENCH_STATE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=BENCH_STATE) as state:
        stack = LocalStack(Path(state), llm_port=free_port(), serve_port=free_port())
        try:
            if with_service:
                stack.up()
            else:
                stack.start_llm(stack.build_model())
            yield stack
        finally:
            stack.down()


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
