"""Streaming chat completions from vLLM's OpenAI-compatible server, as a Haystack chat generator.

Every token the service relays crosses this client, and its first chunk is on the path the
North-South benchmark measures. It speaks HTTP through aiohttp: one ``ClientSession`` per replica
(kept-alive connections, a pool sized for the replica's concurrency), the response body read from
aiohttp's stream as it arrives and split into server-sent events by a few lines here. It shares no
code with the load generator's HTTP client and SSE parser (``workload/bench``), so a fault in one
cannot hide in both sides of a measurement. Against vLLM in one run, aiohttp, httpx and the load
generator's client were measured side by side (``benchmarks/llm_client_compare.py``, figures in
docs/service.md, "Talking to vLLM"). ``run_async`` takes and returns what Haystack's chat
generators do (messages, a streaming callback, generation kwargs -> replies).

A stream left early (the task is cancelled because the client went away) closes its connection at
once, synchronously: a hung-up client is how vLLM learns to stop the generation.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import aiohttp
from haystack import component
from haystack.dataclasses import ChatMessage, StreamingChunk

ERROR_BODY_CHARS = 500
USER_AGENT = "ragbench-service"
# vLLM (uvicorn) closes a connection idle for 5 s (VLLM_HTTP_TIMEOUT_KEEP_ALIVE). The pool lets go
# of idle ones a little sooner, so a request rarely races the server's close; the retry below
# covers the race that remains.
KEEPALIVE_S = 4.0


class LLMUnavailableError(Exception):
    """The server could not be reached, went silent for longer than the timeout, or cut the stream."""


class LLMStatusError(Exception):
    """The server answered with an error: an HTTP status other than 200, or an error chunk."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message


class SSEData:
    """The ``data`` of each server-sent event in a byte stream fed piece by piece: the event's
    ``data:`` lines joined by newlines, handed on at the blank line that ends the event. Other
    fields and comments are skipped. Lines end with LF or CRLF (what OpenAI-style servers send)."""

    def __init__(self) -> None:
        self._tail = b""
        self._data: list[bytes] = []

    def feed(self, piece: bytes) -> list[bytes]:
        lines = (self._tail + piece).split(b"\n") if self._tail else piece.split(b"\n")
        self._tail = lines.pop()  # the unfinished last line (b"" when the piece ended a line)
        events = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
        return events


async def _mark_reused(_session, ctx: SimpleNamespace, _params) -> None:
    ctx.trace_request_ctx["reused"] = True


@component
class VllmChatGenerator:
    def __init__(self, api_base_url: str, model: str, timeout: float = 60.0, max_connections: int = 64) -> None:
        """``timeout``: the longest the server may stay silent (connecting, or between two pieces
        of the response) before the call fails with LLMUnavailableError; there is no limit on a
        whole response. ``max_connections``: the pool's size, the replica's streams at once."""
        self.api_base_url = api_base_url.rstrip("/")
        self.model = model
        self.timeout = timeout
        self.max_connections = max_connections
        # One session for the replica's life (connections to vLLM are kept alive), made on the
        # event loop that first uses it: aiohttp's sessions belong to one loop.
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    def _new_session(self) -> aiohttp.ClientSession:
        tracing = aiohttp.TraceConfig()
        tracing.on_connection_reuseconn.append(_mark_reused)
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.max_connections, keepalive_timeout=KEEPALIVE_S),
            timeout=aiohttp.ClientTimeout(total=None, connect=self.timeout,
                                          sock_connect=min(self.timeout, 10.0), sock_read=self.timeout),
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity",
                     "Content-Type": "application/json"},
            auto_decompress=False, trace_configs=[tracing])

    def _replica_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session, self._session_loop = self._new_session(), loop
        return self._session

    async def aclose(self) -> None:
        """Close the replica's session and its kept-alive connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> VllmChatGenerator:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    def _body(self, messages: list[ChatMessage], generation_kwargs: dict[str, Any] | None) -> bytes:
        body = {"model": self.model, "messages": [m.to_openai_dict_format() for m in messages],
                **(generation_kwargs or {}), "stream": True}
        return json.dumps(body, separators=(",", ":")).encode()

    @component.output_types(replies=list[ChatMessage])
    def run(self, messages: list[ChatMessage], streaming_callback=None,
            generation_kwargs: dict[str, Any] | None = None) -> dict[str, list[ChatMessage]]:
        """The same call for code outside an event loop (a session of its own, closed after)."""

        async def once() -> dict[str, list[ChatMessage]]:
            async with self._new_session() as session:
                return await self._stream(session, messages, streaming_callback, generation_kwargs)

        return asyncio.run(once())

    @component.output_types(replies=list[ChatMessage])
    async def run_async(self, messages: list[ChatMessage], streaming_callback=None,
                        generation_kwargs: dict[str, Any] | None = None) -> dict[str, list[ChatMessage]]:
        """Stream one chat completion; ``streaming_callback`` (async) gets every non-empty text chunk.
        Raises LLMUnavailableError when the server cannot be reached, stays silent or drops the
        stream, and LLMStatusError when it answers with an error."""
        return await self._stream(self._replica_session(), messages, streaming_callback, generation_kwargs)

    async def _post(self, session: aiohttp.ClientSession, body: bytes) -> aiohttp.ClientResponse:
        """Send the request; returns once the response's head is in."""
        retried = False
        while True:
            ctx = {"reused": False}  # set by the tracing hook when the pool hands out a kept-alive connection
            try:
                return await session.post(f"{self.api_base_url}/chat/completions", data=body,
                                          trace_request_ctx=ctx)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if isinstance(exc, aiohttp.ClientConnectorError):
                    raise LLMUnavailableError(f"cannot connect to the LLM: {exc}") from None
                # A kept-alive connection the server closed as the request went out (vLLM closes
                # idle ones after a few seconds). Nothing came back, so the request goes once
                # more, on a new connection. aiohttp retries only idempotent methods by itself.
                if not ctx["reused"] or retried:
                    raise LLMUnavailableError(f"the LLM closed the connection without answering: {exc}") from None
                retried = True
            except aiohttp.ConnectionTimeoutError:
                raise LLMUnavailableError(f"cannot connect to the LLM within {self.timeout:g} s") from None
            except TimeoutError:  # aiohttp's sock_read: no head within the timeout
                raise LLMUnavailableError(f"no answer from the LLM for {self.timeout:g} s") from None
            except aiohttp.ClientError as exc:
                raise LLMUnavailableError(f"the LLM's response broke off: {exc}") from None

    async def _stream(self, session: aiohttp.ClientSession, messages, streaming_callback, generation_kwargs):
        response = await self._post(session, self._body(messages, generation_kwargs))
        finished = False
        try:
            if response.status != 200:
                raise LLMStatusError(response.status, _error_message(await _error_text(response)))
            reply = await self._read_stream(response, streaming_callback)
            finished = True
            return reply
        finally:
            if finished:
                response.release()  # the body was read to its end: the connection goes back to the pool
            else:
                # Left early (cancelled, an error chunk, a failure): close the connection now,
                # synchronously, so that the server stops generating.
                response.close()

    async def _read_stream(self, response: aiohttp.ClientResponse, streaming_callback):
        parser = SSEData()
        parts: list[str] = []
        meta: dict[str, Any] = {"model": self.model, "finish_reason": None, "usage": {}}
        counted = 0  # completion tokens already handed on with a text chunk
        try:
            async for piece in response.content.iter_any():
                for data in parser.feed(piece):
                    if data == b"[DONE]":
                        continue  # the end of the body follows
                    chunk = json.loads(data)
                    if "error" in chunk:
                        error = chunk["error"]
                        raise LLMStatusError(int(error.get("code") or 500) if isinstance(error, dict) else 500,
                                             _error_message(data.decode(errors="replace")))
                    meta["model"] = chunk.get("model") or meta["model"]
                    meta["usage"] = chunk.get("usage") or meta["usage"]
                    # With continuous usage stats every chunk reports the completion tokens so far:
                    # the tokens a text chunk carries are the ones not yet counted (a token whose
                    # text is still an incomplete character goes with the next chunk that has text).
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
        except TimeoutError:  # aiohttp's sock_read: silent between two pieces
            raise LLMUnavailableError(f"no answer from the LLM for {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:  # cut mid-body: ClientPayloadError, a reset, ...
            raise LLMUnavailableError(f"the LLM's response broke off: {exc}") from None
        return {"replies": [ChatMessage.from_assistant("".join(parts), meta=meta)]}


async def _error_text(response: aiohttp.ClientResponse) -> str:
    """The start of an error response's body (whatever arrived, if the body breaks off)."""
    body = bytearray()
    try:
        async for piece in response.content.iter_any():
            body += piece
            if len(body) >= ERROR_BODY_CHARS * 4:
                break
    except (aiohttp.ClientError, TimeoutError):
        pass
    return bytes(body[:ERROR_BODY_CHARS * 4]).decode(errors="replace")


def _error_message(text: str) -> str:
    """The ``message`` of an OpenAI-style error body, else the body itself (cut short)."""
    try:
        error = json.loads(text).get("error", {})
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:ERROR_BODY_CHARS]
    except (ValueError, AttributeError):
        pass
    return text[:ERROR_BODY_CHARS]
