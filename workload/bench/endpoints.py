"""What the load generator talks to: the RAG SSE endpoint, or vLLM's OpenAI-compatible API.

An endpoint builds the HTTP request for a prompt and turns each SSE event into updates of the
request's record. Both share the same timing code in ``loadgen``, so the RAG path and the direct
LLM path are measured identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from workload.bench.records import RequestRecord
from workload.bench.sse import MalformedEvent, SSEEvent

FINISHED = "finished"


class Endpoint(Protocol):
    name: str

    def request(self, prompt: str, max_tokens: int, cache_salt: str | None = None) -> tuple[str, dict]:
        """(path, JSON body) of a streaming request; ``cache_salt`` keeps it out of any prefix
        cache entry that other requests made (vLLM's per-request ``cache_salt``)."""

    def on_event(self, record: RequestRecord, event: SSEEvent, now: float) -> str | None:
        """Update the record; return FINISHED when the stream's final event arrived."""


def _token(record: RequestRecord, text: str, now: float, tokens: int = 1) -> None:
    """One token event with text, carrying ``tokens`` tokens (at least one)."""
    if not text:
        return
    if record.t_first_token is None:
        record.t_first_token = now
    record.token_times.append(now)
    record.token_counts.append(max(tokens, 1))


@dataclass
class RagStreamEndpoint:
    """POST /query/stream of the RAG service (DESIGN.md section 2, SSE contract)."""

    k: int = 4
    ignore_eos: bool = True
    name: str = "rag"

    def request(self, prompt: str, max_tokens: int, cache_salt: str | None = None) -> tuple[str, dict]:
        body = {"query": prompt, "k": self.k, "max_tokens": max_tokens, "ignore_eos": self.ignore_eos}
        if cache_salt is not None:
            body["cache_salt"] = cache_salt  # the service passes it on to vLLM
        return "/query/stream", body

    def on_event(self, record: RequestRecord, event: SSEEvent, now: float) -> str | None:
        if event.event == "token":
            data = event.json()
            text, tokens = data.get("text"), data.get("tokens")
            count = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens > 0 else 1
            _token(record, text if isinstance(text, str) else "", now, count)
            return None
        if event.event == "meta":
            data = event.json()
            record.request_id = data.get("request_id")
            record.replica_id = data.get("replica_id")
            record.model_id = data.get("model_id")
            record.k = data.get("k")
            return None
        if event.event == "done":
            data = event.json()
            done_id = data.get("request_id")
            record.server_request_id = done_id
            if record.request_id is not None and done_id is not None and done_id != record.request_id:
                # The join of client and server timings is by request_id: a `done` of another
                # request breaks the contract, and its timings must not be paired with this one.
                record.fail("malformed_event", f"done.request_id {done_id!r} does not match "
                            f"meta.request_id {record.request_id!r}", now)
                return FINISHED
            record.request_id = record.request_id if record.request_id is not None else done_id
            record.replica_id = data.get("replica_id", record.replica_id)
            # Server timings are kept only when the `done` names its request: they are joined to the
            # client's timings by request_id (metrics.client_server_ttft, view v_ns_client_server).
            timings = data.get("timings")
            record.server_timings = timings if done_id is not None and isinstance(timings, dict) else {}
            if isinstance(data.get("token_count"), int):
                record.output_tokens = data["token_count"]
                record.output_tokens_source = "server_usage"
            else:
                record.output_tokens_source = "token_events"
            record.t_end = now
            return FINISHED
        if event.event == "error":
            data = event.json()
            record.server_error_code = str(data.get("code", "unknown"))
            record.fail("server_error", f"{record.server_error_code}: {data.get('message', '')}", now)
            return FINISHED
        raise MalformedEvent(f"unexpected event type {event.event!r}")


@dataclass
class OpenAIChatEndpoint:
    """POST /v1/chat/completions with ``stream: true`` (vLLM's OpenAI-compatible server)."""

    model: str
    ignore_eos: bool = True
    name: str = "openai"

    def request(self, prompt: str, max_tokens: int, cache_salt: str | None = None) -> tuple[str, dict]:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "stream": True,
            # Usage in every chunk: the completion-token deltas say how many tokens each chunk carried.
            "stream_options": {"include_usage": True, "continuous_usage_stats": True},
            "ignore_eos": self.ignore_eos,
        }
        if cache_salt is not None:
            body["cache_salt"] = cache_salt
        return "/v1/chat/completions", body

    def on_event(self, record: RequestRecord, event: SSEEvent, now: float) -> str | None:
        if event.data.strip() == "[DONE]":
            if record.output_tokens is None:
                record.output_tokens_source = "token_events"
            record.t_end = now
            return FINISHED
        data = event.json()
        if "error" in data:
            record.fail("server_error", str(data["error"])[:500], now)
            return FINISHED
        record.request_id = record.request_id or data.get("id")
        record.model_id = record.model_id or data.get("model")
        usage = data.get("usage")
        completion = usage.get("completion_tokens") if isinstance(usage, dict) else None
        # Tokens generated so far and not yet given to an event (a token whose text is still
        # incomplete goes with the next event that has text); one when the chunk has no usage.
        pending = (completion - sum(record.token_counts)) if isinstance(completion, int) else 1
        for choice in data.get("choices") or []:
            _token(record, (choice.get("delta") or {}).get("content") or "", now, pending)
        if usage and isinstance(usage.get("completion_tokens"), int):
            record.output_tokens = usage["completion_tokens"]
            record.output_tokens_source = "server_usage"
            if isinstance(usage.get("prompt_tokens"), int):
                record.prompt_tokens = usage["prompt_tokens"]
        return None
