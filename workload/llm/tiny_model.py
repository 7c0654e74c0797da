"""Build the tiny Qwen2-architecture model the local target serves.

No model hub is reachable from where the local target runs, so the project builds its own model:
random weights (the benchmark measures the serving path, not answer quality), a byte-level BPE
tokenizer trained on the shipped corpus, and a chat template. Building takes seconds and the
result is cached: a directory that already holds a complete model is reused as is.
"""

from __future__ import annotations

import json
from pathlib import Path

MODEL_ID = "ragbench/tiny-qwen2"
VOCAB_SIZE = 4096
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# ChatML, the template Qwen2 models use.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

MAX_POSITIONS = 2048
BUILD_VERSION = 2  # bump when the recipe changes: cached models of another version are rebuilt
_MARKER = "ragbench-model.json"


def _is_built(out_dir: Path) -> bool:
    try:
        marker = json.loads((out_dir / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("build_version") == BUILD_VERSION and (out_dir / "model.safetensors").exists()


def _training_text(corpus_dir: Path | None) -> list[str]:
    texts: list[str] = []
    if corpus_dir is not None and corpus_dir.is_dir():
        for path in sorted(corpus_dir.rglob("*")):
            if path.is_file() and path.suffix in {".md", ".txt", ".html"}:
                texts.append(path.read_text(encoding="utf-8", errors="replace"))
    # A fixed fallback keeps the build deterministic even without a corpus.
    texts.append(
        "Retrieval augmented generation answers a question from documents found in a vector store. "
        "The benchmark measures time to first token, time per output token and throughput."
    )
    return texts


def build_tiny_model(out_dir: Path, corpus_dir: Path | None = None, seed: int = 0) -> Path:
    """Create the model in ``out_dir`` unless it is already there; return the directory."""
    out_dir = Path(out_dir)
    if _is_built(out_dir):
        return out_dir

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    out_dir.mkdir(parents=True, exist_ok=True)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_text(corpus_dir), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        model_max_length=MAX_POSITIONS,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out_dir)

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        torch_dtype="float32",
    )
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(out_dir, safe_serialization=True)
    n_params = sum(p.numel() for p in model.parameters())
    (out_dir / _MARKER).write_text(
        json.dumps({"model_id": MODEL_ID, "parameters": n_params, "seed": seed,
                    "build_version": BUILD_VERSION}, indent=2)
    )
    return out_dir
