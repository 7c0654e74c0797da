"""Streaming chat completions from vLLM's OpenAI-compatible server, as a Haystack chat generator.

Haystack's ``OpenAIChatGenerator`` goes through the OpenAI SDK, which runs every request body
through its type transformer and builds a pydantic model of every streamed chunk. Against a local
stand-in server that cost ~1.4 ms of time to first token per request on a small CPU, plus CPU per
token, all of it on the path the North-South benchmark measures. This component sends the request
with httpx and reads the SSE lines with ``json``; its ``run_async`` takes and returns what the
Haystack generator's does (messages, a streaming callback, generation kwargs -> replies).

Leaving ``run_async`` early (task cancelled because the client went away) closes the response and
its connection, which is how vLLM learns to abort the generation (see ``_hang_up``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from typing import Any

import httpx
from haystack import component
from haystack.dataclasses import ChatMessage, StreamingChunk

ERROR_BODY_CHARS = 500


class LLMStatusError(Exception):
    """The server answered with an error: an HTTP status other than 200, or an error chunk."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.message = message


@component
class VllmChatGenerator:
    def __init__(self, api_base_url: str, model: str, timeout: float = 60.0) -> None:
        self.api_base_url = api_base_url.rstrip("/")
        self.model = model
        self.timeout = timeout
        # One pooled client for the replica's life: connections to vLLM are kept alive.
        self._client = httpx.AsyncClient(timeout=timeout)

    def _body(self, messages: list[ChatMessage], generation_kwargs: dict[str, Any] | None) -> dict[str, Any]:
        return {"model": self.model, "messages": [m.to_openai_dict_format() for m in messages],
                **(generation_kwargs or {}), "stream": True}

    @component.output_types(replies=list[ChatMessage])
    def run(self, messages: list[ChatMessage], streaming_callback=None,
            generation_kwargs: dict[str, Any] | None = None) -> dict[str, list[ChatMessage]]:
        """The same call for code outside an event loop (a client of its own, closed after)."""

        async def once() -> dict[str, list[ChatMessage]]:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                return await self._stream(client, messages, streaming_callback, generation_kwargs)

        return asyncio.run(once())

    @component.output_types(replies=list[ChatMessage])
    async def run_async(self, messages: list[ChatMessage], streaming_callback=None,
                        generation_kwargs: dict[str, Any] | None = None) -> dict[str, list[ChatMessage]]:
        """Stream one chat completion; ``streaming_callback`` (async) gets every non-empty text chunk.
        Raises httpx.TransportError when the server cannot be reached or drops the stream, and
        LLMStatusError when it answers with an error."""
        return await self._stream(self._client, messages, streaming_callback, generation_kwargs)

    async def _stream(self, client: httpx.AsyncClient, messages, streaming_callback, generation_kwargs):
        parts: list[str] = []
        meta: dict[str, Any] = {"model": self.model, "finish_reason": None, "usage": {}}
        url = f"{self.api_base_url}/chat/completions"
        request = client.build_request("POST", url, json=self._body(messages, generation_kwargs))
        response = await client.send(request, stream=True)
        try:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                raise LLMStatusError(response.status_code, _error_message(text))
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    error = chunk["error"]
                    raise LLMStatusError(int(error.get("code") or 500) if isinstance(error, dict) else 500,
                                         _error_message(data))
                meta["model"] = chunk.get("model") or meta["model"]
                meta["usage"] = chunk.get("usage") or meta["usage"]
                for choice in chunk.get("choices") or []:
                    meta["finish_reason"] = choice.get("finish_reason") or meta["finish_reason"]
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        parts.append(content)
                        if streaming_callback is not None:
                            await streaming_callback(StreamingChunk(content=content))
        except BaseException:
            _hang_up(response)
            raise
        finally:
            await asyncio.shield(response.aclose())
        return {"replies": [ChatMessage.from_assistant("".join(parts), meta=meta)]}


def _hang_up(response: httpx.Response) -> None:
    """Shut an unfinished response's connection down now, without awaiting anything.

    A hung-up client is how vLLM learns to abort a generation. Closing the response is not enough
    when the caller was cancelled: under the HTTP layer's cancel scopes (anyio) every await of the
    close can be cancelled again, and the connection stayed open with vLLM generating into it
    (measured: a 1,200-token stream ran to its end after the client left). A socket shutdown is
    synchronous and cannot be interrupted; httpcore drops the dead connection from its pool."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is None:
        return
    # uvloop hands out a pseudo-socket without shutdown(); a duplicate descriptor reaches the same
    # connection (shutdown acts on the connection, not the descriptor).
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(sock.fileno())) as dup:
        dup.shutdown(socket.SHUT_RDWR)


def _error_message(text: str) -> str:
    """The ``message`` of an OpenAI-style error body, else the body itself (cut short)."""
    try:
        error = json.loads(text).get("error", {})
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:ERROR_BODY_CHARS]
    except (ValueError, AttributeError):
        pass
    return text[:ERROR_BODY_CHARS]
