"""The service's streaming LLM client against an HTTP server on 127.0.0.1 that answers the way an
OpenAI-compatible server does when things go right and wrong (the live tests use real vLLM)."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from haystack.dataclasses import ChatMessage

from workload.service.llm import LLMStatusError, LLMUnavailableError, VllmChatGenerator
from workload.service.rag import _llm_error

MESSAGES = [ChatMessage.from_system("Be brief."), ChatMessage.from_user("Hi")]


def _chunk(payload: bytes) -> bytes:
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


def _data(obj) -> bytes:
    return _chunk(b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n")


def _delta(content: str | None = None, role: str | None = None, finish: str | None = None) -> dict:
    delta = {k: v for k, v in (("role", role), ("content", content)) if v is not None}
    return {"id": "c1", "model": "tiny", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


STREAM_OK = [_data(_delta("", role="assistant")), _data(_delta("Hel")), _data(_delta("lo")),
             _data(_delta(finish="length")),
             _data({"id": "c1", "model": "tiny", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}),
             _data(b"[DONE]")]


async def _serve(answer):
    """A one-behaviour HTTP/1.1 server; ``answer(body) -> (status, [body chunks], complete)``.
    Returns the server and the list of request bodies it received."""
    seen: list[dict] = []

    async def handle(reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            seen.append(json.loads(await reader.readexactly(length)))
            status, chunks, complete = answer(seen[-1])
            writer.write(f"HTTP/1.1 {status} X\r\ncontent-type: text/event-stream\r\n"
                         "transfer-encoding: chunked\r\nconnection: close\r\n\r\n".encode())
            for c in chunks:
                writer.write(c)
            if complete:
                writer.write(b"0\r\n\r\n")
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1", seen


def _run(answer, **kwargs):
    async def go():
        server, url, seen = await _serve(answer)
        got: list[str] = []

        async def on_chunk(chunk):
            got.append(chunk.content)

        try:
            async with server:
                async with VllmChatGenerator(api_base_url=url, model="tiny", timeout=10) as gen:
                    result = await gen.run_async(messages=MESSAGES, streaming_callback=on_chunk, **kwargs)
                return result, got, seen
        finally:
            server.close()

    return asyncio.run(go())


def test_streams_text_then_reports_usage_and_sends_the_kwargs():
    result, got, seen = _run(lambda body: (200, STREAM_OK, True),
                             generation_kwargs={"max_tokens": 2, "ignore_eos": True})
    assert got == ["Hel", "lo"]  # the role-only chunk is not text
    reply = result["replies"][0]
    assert reply.text == "Hello"
    assert reply.meta["usage"] == {"prompt_tokens": 7, "completion_tokens": 2}
    assert reply.meta["finish_reason"] == "length"
    body = seen[0]
    assert body["stream"] is True and body["max_tokens"] == 2 and body["ignore_eos"] is True
    assert body["model"] == "tiny"
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def _usage_delta(content: str, completion_tokens: int) -> dict:
    return {**_delta(content), "usage": {"prompt_tokens": 7, "completion_tokens": completion_tokens,
                                         "total_tokens": 7 + completion_tokens}}


def test_each_text_chunk_carries_its_token_count_from_the_usage_deltas():
    # Continuous usage stats: 2 tokens in the first chunk, then a token with no text yet (an
    # incomplete character), counted with the next text chunk, then 3 tokens in one chunk.
    stream = [_data({**_delta("", role="assistant"), "usage": {"prompt_tokens": 7, "completion_tokens": 0}}),
              _data(_usage_delta("ab", 2)), _data(_usage_delta("", 3)), _data(_usage_delta("c", 4)),
              _data(_usage_delta("def", 7)), _data(_delta("g")),  # no usage: one token
              _data({"id": "c1", "model": "tiny", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 8}}),
              _data(b"[DONE]")]

    async def go():
        server, url, seen = await _serve(lambda body: (200, stream, True))
        got: list[tuple[str, int]] = []

        async def on_chunk(chunk):
            got.append((chunk.content, chunk.meta["tokens"]))

        async with server:
            async with VllmChatGenerator(api_base_url=url, model="tiny", timeout=10) as gen:
                result = await gen.run_async(messages=MESSAGES, streaming_callback=on_chunk)
        return result, got

    result, got = asyncio.run(go())
    assert got == [("ab", 2), ("c", 2), ("def", 3), ("g", 1)]
    assert result["replies"][0].meta["usage"]["completion_tokens"] == 8


def test_http_error_status_is_an_llm_error_naming_the_server_message():
    error = _chunk(json.dumps({"error": {"message": "max_tokens is too large", "code": 400}}).encode())
    with pytest.raises(LLMStatusError) as info:
        _run(lambda body: (400, [error], True))
    assert info.value.status_code == 400 and info.value.message == "max_tokens is too large"
    rag_error = _llm_error(info.value)
    assert rag_error.code == "llm_error" and "HTTP 400" in rag_error.message


def test_error_chunk_in_the_stream_is_an_llm_error():
    chunks = [_data(_delta("Hel")), _data({"error": {"message": "engine died", "code": 500}})]
    with pytest.raises(LLMStatusError, match="engine died"):
        _run(lambda body: (200, chunks, True))


def test_stream_cut_midway_is_llm_unavailable():
    with pytest.raises(LLMUnavailableError) as info:
        _run(lambda body: (200, STREAM_OK[:2], False))
    assert _llm_error(info.value).code == "llm_unavailable"


def test_nothing_listening_is_llm_unavailable():
    async def go():
        async with VllmChatGenerator(api_base_url="http://127.0.0.1:9/v1", model="tiny", timeout=5) as gen:
            await gen.run_async(messages=MESSAGES)

    with pytest.raises(LLMUnavailableError) as info:
        asyncio.run(go())
    assert _llm_error(info.value).code == "llm_unavailable"


def test_a_silent_server_is_llm_unavailable_after_the_timeout():
    """The head arrives, then nothing: the call fails once the timeout passes, it does not hang."""

    async def go():
        async def silent(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(10)  # bounded; the client gives up long before
            writer.close()

        async with _listening(silent) as url:
            t0 = asyncio.get_running_loop().time()
            with pytest.raises(LLMUnavailableError, match="no answer from the LLM for 0.5 s") as info:
                async with VllmChatGenerator(api_base_url=url, model="tiny", timeout=0.5) as gen:
                    await gen.run_async(messages=MESSAGES)
            assert asyncio.get_running_loop().time() - t0 < 5
            return info.value

    assert _llm_error(asyncio.run(go())).code == "llm_unavailable"


async def _read_request(reader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    await reader.readexactly(length)


OK_RESPONSE = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + b"".join(STREAM_OK) + b"0\r\n\r\n"


@contextlib.asynccontextmanager
async def _listening(handler):
    """``handler`` serving on a free port of 127.0.0.1; yields the OpenAI-style base URL."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"


@contextlib.asynccontextmanager
async def _kept_alive(answered_on_first: int = 5):
    """A server that keeps connections alive; yields (base URL, connections accepted). The first
    connection answers ``answered_on_first`` requests, later ones 5; each then closes when the
    next request arrives, without answering it (an idle timeout racing the request)."""
    connections = []

    async def handle(reader, writer):
        connections.append(writer)
        try:
            for _ in range(answered_on_first if len(connections) == 1 else 5):
                await _read_request(reader)
                writer.write(OK_RESPONSE)
                await writer.drain()
            await _read_request(reader)
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    async with _listening(handle) as url:
        yield url, connections


def _texts(calls: int, answered_on_first: int = 5) -> tuple[list[str], int]:
    """The replies of ``calls`` calls in a row to a ``_kept_alive`` server, and its connection count."""

    async def go():
        async with _kept_alive(answered_on_first) as (url, connections):
            async with VllmChatGenerator(api_base_url=url, model="tiny", timeout=10) as gen:
                texts = [(await gen.run_async(messages=MESSAGES))["replies"][0].text for _ in range(calls)]
        return texts, len(connections)

    return asyncio.run(go())


def test_calls_reuse_one_kept_alive_connection():
    assert _texts(3) == (["Hello"] * 3, 1)


def test_a_kept_alive_connection_closed_unanswered_is_retried_once():
    """The first connection closes on its second request: that call goes again on a new one."""
    assert _texts(2, answered_on_first=1) == (["Hello", "Hello"], 2)


def test_a_new_connection_closed_unanswered_is_llm_unavailable():
    """No retry when the connection was new: the server itself does not answer."""
    with pytest.raises(LLMUnavailableError, match="closed the connection without answering"):
        _texts(1, answered_on_first=0)


def test_sync_run_outside_an_event_loop():
    async def serve_and_call():
        server, url, _ = await _serve(lambda body: (200, STREAM_OK, True))
        async with server:
            gen = VllmChatGenerator(api_base_url=url, model="tiny")
            return await asyncio.to_thread(gen.run, messages=MESSAGES)

    result = asyncio.run(serve_and_call())
    assert result["replies"][0].text == "Hello"


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_cancelled_stream_hangs_up_on_the_server(loop):
    """The caller is cancelled mid-stream (its client went away): the server sees the connection
    end at once, which is what makes vLLM abort the generation. uvloop is what Ray Serve runs."""

    async def go():
        hung_up = asyncio.Event()

        async def endless(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            try:
                for _ in range(2000):  # bounded: ~20 s at most
                    writer.write(_data(_delta("x")))
                    await writer.drain()
                    await asyncio.sleep(0.01)
            except ConnectionError:
                hung_up.set()
            finally:
                writer.close()

        server = await asyncio.start_server(endless, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        got = asyncio.Event()

        async def on_chunk(chunk):
            got.set()

        async with server:
            async with VllmChatGenerator(api_base_url=url, model="tiny") as gen:
                task = asyncio.create_task(gen.run_async(messages=MESSAGES, streaming_callback=on_chunk))
                await asyncio.wait_for(got.wait(), 10)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await asyncio.wait_for(hung_up.wait(), 2)

    if loop == "uvloop":
        import uvloop

        uvloop.run(go())
    else:
        asyncio.run(go())


def test_silence_between_pieces_fails_after_the_timeout_but_a_slow_stream_does_not():
    """The timeout bounds each silence, not the whole response: chunks every 0.2 s for 1.6 s pass
    with a 0.5 s timeout; a stream that goes quiet after three chunks (0.4 s) fails 0.5 s later."""

    async def go():
        async def paced(reader, writer):
            body = await _read_request_body(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            steady = body["messages"][-1]["content"] == "steady"
            for i in range(8 if steady else 3):
                writer.write(_data(_delta(str(i))))
                await writer.drain()
                await asyncio.sleep(0.2)
            if steady:
                writer.write(_data(b"[DONE]") + b"0\r\n\r\n")
                await writer.drain()
            else:  # silent until the client hangs up (bounded)
                await asyncio.wait_for(reader.read(), 5)
            writer.close()

        async with _listening(paced) as url:
            gen = VllmChatGenerator(api_base_url=url, model="tiny", timeout=0.5)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            steady = await gen.run_async(messages=[ChatMessage.from_user("steady")])
            steady_s = loop.time() - t0
            got = []

            async def on_chunk(chunk):
                got.append(chunk.content)

            t0 = loop.time()
            with pytest.raises(LLMUnavailableError, match="no answer from the LLM for 0.5 s"):
                await gen.run_async(messages=[ChatMessage.from_user("quiet")], streaming_callback=on_chunk)
            quiet_s = loop.time() - t0
            await gen.aclose()
            return steady["replies"][0].text, steady_s, got, quiet_s

    text, steady_s, got, quiet_s = asyncio.run(go())
    assert text == "01234567" and steady_s > 1.5
    assert got == ["0", "1", "2"] and 0.85 < quiet_s < 3


async def _read_request_body(reader) -> dict:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return json.loads(await reader.readexactly(length))


def test_the_retry_goes_once_only():
    """A kept-alive connection closes unanswered, and so does the new one the request is retried
    on: the call fails, and the server saw exactly two connections (no third attempt)."""

    async def go():
        connections = []

        async def handle(reader, writer):
            connections.append(writer)
            try:
                if len(connections) == 1:
                    await _read_request(reader)
                    writer.write(OK_RESPONSE)
                    await writer.drain()
                await _read_request(reader)  # then close without answering
            except asyncio.IncompleteReadError:
                pass
            finally:
                writer.close()

        async with _listening(handle) as url:
            gen = VllmChatGenerator(api_base_url=url, model="tiny", timeout=10)
            first = await gen.run_async(messages=MESSAGES)
            with pytest.raises(LLMUnavailableError, match="closed the connection without answering"):
                await gen.run_async(messages=MESSAGES)
            await gen.aclose()
        return first["replies"][0].text, len(connections)

    assert asyncio.run(go()) == ("Hello", 2)


def test_the_pool_holds_at_most_max_connections_and_the_rest_wait_their_turn():
    async def go():
        open_now, most = 0, 0

        async def handle(reader, writer):
            nonlocal open_now, most
            open_now += 1
            most = max(most, open_now)
            try:
                while True:
                    await _read_request(reader)
                    await asyncio.sleep(0.05)  # a stream that takes a while
                    writer.write(OK_RESPONSE)
                    await writer.drain()
            except asyncio.IncompleteReadError:
                pass
            finally:
                open_now -= 1
                writer.close()

        async with _listening(handle) as url:
            gen = VllmChatGenerator(api_base_url=url, model="tiny", timeout=10, max_connections=2)
            replies = await asyncio.gather(*(gen.run_async(messages=MESSAGES) for _ in range(6)))
            await gen.aclose()
        return [r["replies"][0].text for r in replies], most

    texts, most = asyncio.run(go())
    assert texts == ["Hello"] * 6 and most == 2


def test_an_error_chunk_closes_the_connection_at_once():
    """An error chunk ends the call; the connection is closed, not left open for the rest of the
    stream, so the server stops sending."""

    async def go():
        hung_up = asyncio.Event()

        async def erring(reader, writer):
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            writer.write(_data({"error": {"message": "engine died", "code": 500}}))
            try:
                for _ in range(500):  # bounded: ~5 s at most
                    await asyncio.sleep(0.01)
                    writer.write(_data(_delta("x")))
                    await writer.drain()
            except ConnectionError:
                hung_up.set()
            finally:
                writer.close()

        async with _listening(erring) as url:
            gen = VllmChatGenerator(api_base_url=url, model="tiny", timeout=10)
            with pytest.raises(LLMStatusError, match="engine died") as info:
                await gen.run_async(messages=MESSAGES)
            await asyncio.wait_for(hung_up.wait(), 2)
            await gen.aclose()
        return info.value.status_code

    assert asyncio.run(go()) == 500


def test_one_generator_serves_calls_from_successive_event_loops():
    """The session belongs to the loop that made it; a call from another loop gets its own."""

    async def serve_and_call(gen_holder):
        server, url, _ = await _serve(lambda body: (200, STREAM_OK, True))
        async with server:
            gen_holder.setdefault("gen", VllmChatGenerator(api_base_url=url, model="tiny"))
            gen_holder["gen"].api_base_url = url
            text = (await gen_holder["gen"].run_async(messages=MESSAGES))["replies"][0].text
            await gen_holder["gen"].aclose()
            return text

    holder: dict = {}
    assert [asyncio.run(serve_and_call(holder)) for _ in range(2)] == ["Hello", "Hello"]


STREAM_BYTES = (b": a comment\n\ndata: {\"a\": 1}\n\nevent: x\r\ndata: two\r\ndata: lines\r\n\r\n"
                b"id: 3\ndata:no-space\n\ndata: [DONE]\n\n")
STREAM_EVENTS = [b'{"a": 1}', b"two\nlines", b"no-space", b"[DONE]"]


@pytest.mark.parametrize("cut", range(1, len(STREAM_BYTES)))
def test_sse_data_is_the_same_wherever_the_pieces_are_cut(cut):
    from workload.service.llm import SSEData

    parser = SSEData()
    events = parser.feed(STREAM_BYTES[:cut]) + parser.feed(STREAM_BYTES[cut:])
    assert events == STREAM_EVENTS


def test_sse_data_byte_by_byte_and_an_unfinished_event_is_held_back():
    from workload.service.llm import SSEData

    parser = SSEData()
    events = [e for i in range(len(STREAM_BYTES)) for e in parser.feed(STREAM_BYTES[i:i + 1])]
    assert events == STREAM_EVENTS
    assert parser.feed(b"data: half") == [] and parser.feed(b"\n") == [] and parser.feed(b"\n") == [b"half"]


def test_leaving_the_generators_context_closes_its_connections():
    async def go():
        server, url, _ = await _serve(lambda body: (200, STREAM_OK, True))
        async with server:
            async with VllmChatGenerator(api_base_url=url, model="tiny") as gen:
                await gen.run_async(messages=MESSAGES)
                session = gen._session
                assert session is not None and not session.closed
            return session.closed

    assert asyncio.run(go())
