"""Streaming chat completions from vLLM's OpenAI-compatible server, as a Haystack chat generator.

Every token the service relays crosses this client, and its first chunk is on the path the
North-South benchmark measures. It speaks HTTP/1.1 through the load generator's lean client
(``workload/bench/http1.py``: asyncio protocols, body pieces handed over as they arrive, no
coroutine switch per chunk). Measured against vLLM on a 2-core machine, alternating calls in one
process: first text chunk p50 12.45 ms against 15.25 ms with httpx, and 4.2 against 10.3 ms of the
client's CPU per 32-token stream (docs/service.md). Haystack's ``OpenAIChatGenerator`` (OpenAI SDK,
a pydantic model per chunk) cost more still. ``run_async`` takes and returns what Haystack's chat
generators do (messages, a streaming callback, generation kwargs -> replies).

A stream left early (the task is cancelled because the client went away) aborts its connection
at once, synchronously: a hung-up client is how vLLM learns to stop the generation.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from haystack import component
from haystack.dataclasses import ChatMessage, StreamingChunk

from workload.bench.http1 import HTTPClientError, Pool
from workload.bench.sse import SSEParser

ERROR_BODY_CHARS = 500
USER_AGENT = "ragbench-service"
_END = object()


class _ClosedUnanswered(Exception):
    """The connection closed before a single byte of the response arrived."""


class LLMUnavailableError(Exception):
    """The server could not be reached, went silent for longer than the timeout, or cut the stream."""


class LLMStatusError(Exception):
    """The server answered with an error: an HTTP status other than 200, or an error chunk."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message


@component
class VllmChatGenerator:
    def __init__(self, api_base_url: str, model: str, timeout: float = 60.0) -> None:
        """``timeout``: the longest the server may stay silent (connecting, or between two pieces
        of the response) before the call fails with LLMUnavailableError."""
        self.api_base_url = api_base_url.rstrip("/")
        self.model = model
        self.timeout = timeout
        # One pool for the replica's life: connections to vLLM are kept alive.
        self._pool = self._new_pool()

    def _new_pool(self) -> Pool:
        return Pool(self.api_base_url, connect_timeout_s=min(self.timeout, 10.0), user_agent=USER_AGENT)

    def _body(self, messages: list[ChatMessage], generation_kwargs: dict[str, Any] | None) -> bytes:
        body = {"model": self.model, "messages": [m.to_openai_dict_format() for m in messages],
                **(generation_kwargs or {}), "stream": True}
        return json.dumps(body, separators=(",", ":")).encode()

    @component.output_types(replies=list[ChatMessage])
    def run(self, messages: list[ChatMessage], streaming_callback=None,
            generation_kwargs: dict[str, Any] | None = None) -> dict[str, list[ChatMessage]]:
        """The same call for code outside an event loop (a pool of its own, closed after)."""

        async def once() -> dict[str, list[ChatMessage]]:
            pool = self._new_pool()
            try:
                return await self._stream(pool, messages, streaming_callback, generation_kwargs)
            finally:
                await pool.aclose()

        return asyncio.run(once())

    @component.output_types(replies=list[ChatMessage])
    async def run_async(self, messages: list[ChatMessage], streaming_callback=None,
                        generation_kwargs: dict[str, Any] | None = None) -> dict[str, list[ChatMessage]]:
        """Stream one chat completion; ``streaming_callback`` (async) gets every non-empty text chunk.
        Raises LLMUnavailableError when the server cannot be reached, stays silent or drops the
        stream, and LLMStatusError when it answers with an error."""
        return await self._stream(self._pool, messages, streaming_callback, generation_kwargs)

    async def _stream(self, pool: Pool, messages, streaming_callback, generation_kwargs):
        request = pool.request_bytes("POST", "/chat/completions", self._body(messages, generation_kwargs))
        retried = False
        while True:
            try:
                conn, connect_ms = await pool.connect()
            except HTTPClientError as exc:
                raise LLMUnavailableError(str(exc)) from None
            try:
                return await self._exchange(pool, conn, request, streaming_callback)
            except _ClosedUnanswered:
                # A kept-alive connection the server closed as the request went out (vLLM closes
                # idle ones after a few seconds). Nothing came back, so the request goes once more.
                if connect_ms is not None or retried:
                    raise LLMUnavailableError("the LLM closed the connection without answering") from None
                retried = True

    async def _exchange(self, pool: Pool, conn, request: bytes, streaming_callback):
        # Body pieces arrive in the protocol's callback: SSE data (or an error body) goes to a queue.
        pieces: asyncio.Queue = asyncio.Queue()
        parser, error_body = SSEParser(), bytearray()

        def on_body(data: bytes, _arrived: float) -> None:
            if exchange.status != 200:
                error_body.extend(data[:ERROR_BODY_CHARS * 4 - len(error_body)])
                return
            for event in parser.feed(data):
                pieces.put_nowait(event.data)

        exchange = pool.start(conn, request, time.perf_counter, on_body)
        exchange.result.add_done_callback(lambda _: pieces.put_nowait(_END))
        parts: list[str] = []
        meta: dict[str, Any] = {"model": self.model, "finish_reason": None, "usage": {}}
        counted = 0  # completion tokens already handed on with a text chunk
        try:
            while True:
                try:
                    async with asyncio.timeout(self.timeout):
                        data = await pieces.get()
                except TimeoutError:
                    raise LLMUnavailableError(f"no answer from the LLM for {self.timeout:g} s") from None
                if data is _END:
                    break
                if data == "[DONE]":
                    continue  # the end of the body follows
                chunk = json.loads(data)
                if "error" in chunk:
                    error = chunk["error"]
                    raise LLMStatusError(int(error.get("code") or 500) if isinstance(error, dict) else 500,
                                         _error_message(data))
                meta["model"] = chunk.get("model") or meta["model"]
                meta["usage"] = chunk.get("usage") or meta["usage"]
                # With continuous usage stats every chunk reports the completion tokens so far: the
                # tokens a text chunk carries are the ones not yet counted (a token whose text is
                # still an incomplete character goes with the next chunk that has text).
                completion = (chunk.get("usage") or {}).get("completion_tokens")
                for choice in chunk.get("choices") or []:
                    meta["finish_reason"] = choice.get("finish_reason") or meta["finish_reason"]
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        parts.append(content)
                        tokens = max(completion - counted, 1) if isinstance(completion, int) else 1
                        counted += tokens
                        if streaming_callback is not None:
                            await streaming_callback(StreamingChunk(content=content, meta={"tokens": tokens}))
            try:
                await exchange.result
            except HTTPClientError as exc:
                if not exchange.got_bytes:
                    raise _ClosedUnanswered from None
                raise LLMUnavailableError(f"the LLM's response broke off: {exc}") from None
            if exchange.status != 200:
                raise LLMStatusError(exchange.status or 0, _error_message(error_body.decode(errors="replace")))
        finally:
            if not exchange.complete:  # left early: abort now, so the server stops generating
                exchange.finish_early()
            if not exchange.result.cancelled():
                exchange.result.exception()  # mark a failure as seen (else asyncio logs it as lost)
            pool.release(conn, exchange)
        return {"replies": [ChatMessage.from_assistant("".join(parts), meta=meta)]}


def _error_message(text: str) -> str:
    """The ``message`` of an OpenAI-style error body, else the body itself (cut short)."""
    try:
        error = json.loads(text).get("error", {})
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:ERROR_BODY_CHARS]
    except (ValueError, AttributeError):
        pass
    return text[:ERROR_BODY_CHARS]
